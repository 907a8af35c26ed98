//! The demo's causal step: which activations carry a country's capital, how well attribution
//! patching estimates exact patching, and a small circuit of the demo dictionary's features.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prism_core::{HookPoint, Result};
use prism_models::Model;
use prism_patch::{
    Dictionaries, FaithfulnessPoint, FaithfulnessSweep, MeanStates, Method, PairBatch,
    PatchOptions, attribute, capital_pairs, circuit, dictionary_nodes, exact_vs_estimate, nodes,
    patch,
};
use prism_stats::{Mark, Series, XyPlot, pearson, plot_heatmap, plot_xy};

use super::steps::DictResult;

/// What the report says about the causal step.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PatchingResult {
    pub pairs: usize,
    /// One pair as text: clean prompt, answer, corrupted prompt, wrong answer.
    pub example: [String; 4],
    pub clean: f64,
    pub corrupt: f64,
    /// AtP vs exact patching: (sweep, Pearson r), and r over every node.
    pub pearson: Vec<(String, f64)>,
    pub pearson_all: f64,
    /// The circuit's strongest nodes and its faithfulness curve.
    pub dictionary: String,
    pub universe: usize,
    pub top_nodes: Vec<(String, f64)>,
    pub faithfulness: Vec<FaithfulnessPoint>,
    pub heatmap: PathBuf,
    pub scatter: PathBuf,
    pub curve: PathBuf,
}

/// Patching, attribution and a feature circuit on capital-city prompt pairs (GeoNames).
pub fn patching_step(
    model: &Model,
    countries: &Path,
    dict: &DictResult,
    hook: HookPoint,
    quick: bool,
    out: &Path,
) -> Result<PatchingResult> {
    let pairs = capital_pairs(model, countries, if quick { 4 } else { 8 }, 0)?;
    let batch = PairBatch::new(&pairs, model.pad_id())?;
    let decode = |ids: &[u32]| model.tokenizer.decode(ids).unwrap_or_default();
    let shape = model.config().shape();
    let seq = batch.clean.seq;
    let bar = crate::progress::bar(1, "patching: capitals", "steps");
    let plain = PatchOptions {
        rows_per_forward: 64,
        ..Default::default()
    };

    // Exact patching and AtP, sweep by sweep.
    let sweeps: &[&str] = if quick {
        &["resid_pre"]
    } else {
        &["resid_pre", "attn_out", "mlp_out", "z"]
    };
    bar.set_length(sweeps.len() as u64 + 1);
    let mut series = Vec::new();
    let mut rs = Vec::new();
    let mut heat = None;
    for item in sweeps {
        let ns = nodes(&shape, item.parse()?, seq)?;
        let exact = patch(model, &batch, &ns, &plain, |_, _| {})?;
        let atp = attribute(model, &batch, &ns, Method::Atp, &plain, |_, _| {})?;
        let points = exact_vs_estimate(&exact, &atp);
        rs.push((item.to_string(), pearson(&points)));
        series.push(Series {
            name: item.to_string(),
            points,
            mark: Mark::Dots,
        });
        if heat.is_none() {
            heat = Some(exact);
        }
        bar.inc(1);
    }
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.clone()).collect();
    let pearson_all = pearson(&all);
    let resid = heat.ok_or_else(|| prism_core::PrismError::InvalidInput("no sweep".into()))?;
    let tokens: Vec<String> = pairs[0].clean.iter().map(|&t| decode(&[t])).collect();
    let heatmap = out.join("patching_resid_pre.png");
    plot_heatmap(
        &resid
            .results
            .iter()
            .map(|r| r.normalized)
            .collect::<Vec<_>>(),
        &(0..shape.n_layers)
            .map(|l| format!("block {l}"))
            .collect::<Vec<_>>(),
        &tokens
            .iter()
            .enumerate()
            .map(|(p, t)| format!("{p} {t}"))
            .collect::<Vec<_>>(),
        "resid_pre: normalised logit difference (denoising)",
        Some(&heatmap),
        Some(&heatmap.with_extension("svg")),
        (640, 900),
    )?;
    let scatter = out.join("patching_atp_vs_exact.png");
    plot_xy(
        &series,
        &XyPlot {
            title: &format!("Attribution patching vs exact patching (r = {pearson_all:.2})"),
            x: "exact effect on the logit difference",
            y: "AtP estimate",
            log_x: false,
        },
        Some(&scatter),
        Some(&scatter.with_extension("svg")),
        (720, 520),
    )?;

    // A circuit of the dictionary's features and error terms at its hook.
    let mut dictionaries = Dictionaries::new();
    dictionaries.insert(hook, Arc::new(dict.sae.clone()));
    let options = PatchOptions {
        dictionaries,
        ..plain
    };
    let d_sae = dict.sae.w_dec().dims()[0];
    let universe = dictionary_nodes(hook, d_sae, Some(seq));
    let means = MeanStates::compute(
        model,
        [Ok(batch.clean.clone())],
        &[hook],
        &options.dictionaries,
    )?;
    let sweep = FaithfulnessSweep::geometric(Arc::new(means), 4, universe.len());
    let c = circuit(
        model,
        &batch,
        &universe,
        Method::IntegratedGradients {
            steps: if quick { 4 } else { 10 },
        },
        &sweep,
        &options,
        |_, _| {},
    )?;
    bar.finish_and_clear();
    let curve = out.join("patching_faithfulness.png");
    plot_xy(
        &[Series {
            name: format!("top-n nodes of {}, the rest mean-ablated", dict.name),
            points: c
                .faithfulness
                .curve
                .iter()
                .map(|p| (p.nodes as f64, p.faithfulness))
                .collect(),
            mark: Mark::Line,
        }],
        &XyPlot {
            title: "Feature-circuit faithfulness (capitals)",
            x: "nodes in the circuit",
            y: "faithfulness",
            log_x: true,
        },
        Some(&curve),
        Some(&curve.with_extension("svg")),
        (720, 440),
    )?;
    Ok(PatchingResult {
        pairs: pairs.len(),
        example: [
            decode(&pairs[0].clean),
            decode(&[pairs[0].answer]),
            decode(&pairs[0].corrupt),
            decode(&[pairs[0].wrong]),
        ],
        clean: resid.clean,
        corrupt: resid.corrupt,
        pearson: rs,
        pearson_all,
        dictionary: dict.name.clone(),
        universe: universe.len(),
        top_nodes: c
            .ranked
            .iter()
            .take(8)
            .map(|r| (r.node.to_string(), r.value))
            .collect(),
        faithfulness: c.faithfulness.curve,
        heatmap,
        scatter,
        curve,
    })
}
