//! `prism patch`, `prism attribute` and `prism circuit`: exact activation patching sweeps as
//! TransformerLens' `patching.py` offers them, attribution patching and integrated gradients,
//! and node-level feature circuits as in Sparse Feature Circuits.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prism_core::{HookPoint, PrismError, Result};
use prism_models::Model;
use prism_patch::{
    Dictionaries, EdgeOptions, EdgeTarget, FaithfulnessSweep, MeanStates, Method, Node, PairBatch,
    PatchOptions, PatchSweep, PromptPair, attribute, circuit, dictionary_nodes, edges,
    faithfulness, nodes, patch, read_pairs,
};
use serde_json::json;

use crate::forward::ModelArgs;

/// The inputs every patching command shares.
#[derive(clap::Args)]
pub struct PairArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The clean prompt …
    #[arg(long, requires_all = ["corrupt", "answer", "wrong"], conflicts_with = "pairs")]
    clean: Option<String>,
    /// … the corrupted one (same token length) …
    #[arg(long)]
    corrupt: Option<String>,
    /// … the clean answer (one token) …
    #[arg(long)]
    answer: Option<String>,
    /// … and the corrupted answer (one token).
    #[arg(long)]
    wrong: Option<String>,
    /// Or a JSONL file of pairs in feature-circuits' format (clean_prefix, patch_prefix,
    /// clean_answer, patch_answer).
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// Sweeps: resid_pre, attn_out, mlp_out, resid_post (block × position), z (block × head),
    /// z_pos (block × head × position), neurons (block × neuron), or full hook names. Default:
    /// resid_pre,attn_out,mlp_out — or none where dictionaries (--sae) give the nodes.
    #[arg(long, value_delimiter = ',')]
    hooks: Option<Vec<String>>,
    /// denoise (clean activations into the corrupted run) or noise (the reverse).
    #[arg(long, default_value = "denoise")]
    direction: String,
    /// logit-diff, loss or prob (of the answer), at the last real position.
    #[arg(long, default_value = "logit-diff")]
    metric: String,
    /// Plots (heat maps; for `circuit` the faithfulness curve): FILE.png or FILE.svg; both are
    /// written (`FILE_<sweep>.png` when there are several sweeps).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Rows (pairs × patched copies) per forward pass.
    #[arg(long, default_value_t = 32)]
    rows_per_forward: usize,
}

/// `prism patch` arguments.
#[derive(clap::Args)]
pub struct PatchArgs {
    #[command(flatten)]
    pairs: PairArgs,
}

/// Dictionaries and the attribution method (`attribute`, `circuit`).
#[derive(clap::Args)]
pub struct AttributionArgs {
    /// atp (gradient × difference, one forward + backward) or ig (integrated gradients).
    #[arg(long)]
    method: Option<String>,
    /// Interpolation steps of integrated gradients.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// A dictionary spliced in with its error term kept, `DIR` (its own hook) or `HOOK=DIR`
    /// (SAELens directory or dictionary_learning ae.pt); its features and error term become
    /// nodes at every position. Repeatable.
    #[arg(long)]
    sae: Vec<String>,
}

impl AttributionArgs {
    fn method(&self, default: &str) -> Result<Method> {
        match self.method.as_deref().unwrap_or(default) {
            "ig" => Ok(Method::IntegratedGradients { steps: self.steps }),
            other => other.parse(),
        }
    }

    fn dictionaries(&self, model: &Model) -> Result<Dictionaries> {
        let mut out = Dictionaries::new();
        for spec in &self.sae {
            let (hook, sae) = open_dictionary(spec, model)?;
            out.insert(hook, Arc::new(sae));
        }
        Ok(out)
    }
}

/// A dictionary from `DIR` (its own hook) or `HOOK=DIR` (SAELens directory or
/// dictionary_learning ae.pt), checked against the hook's width on `model`.
pub fn open_dictionary(spec: &str, model: &Model) -> Result<(HookPoint, prism_sae::Sae)> {
    let (hook, dir) = match spec.split_once('=') {
        Some((h, d)) if h.parse::<HookPoint>().is_ok() => (Some(h.parse()?), d),
        _ => (None, spec),
    };
    let name = hook.as_ref().map(|h: &HookPoint| h.to_string());
    let sae = crate::hub::open_sae(Path::new(dir), name.as_deref(), model.device())?;
    let hook = sae.hook_in(&model.config().shape(), hook)?;
    Ok((hook, sae))
}

/// `prism attribute` arguments.
#[derive(clap::Args)]
pub struct AttributeArgs {
    #[command(flatten)]
    pairs: PairArgs,
    #[command(flatten)]
    attribution: AttributionArgs,
}

/// `prism circuit` arguments.
#[derive(clap::Args)]
pub struct CircuitArgs {
    #[command(flatten)]
    pairs: PairArgs,
    #[command(flatten)]
    attribution: AttributionArgs,
    /// Nodes listed (largest |effect| first).
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Circuit sizes of the faithfulness curve (default: 1, 2, 4, … up to every node).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Feature edges (Sparse Feature Circuits): with a dictionary at every block's
    /// hook_attn_out, hook_mlp_out and hook_resid_post (`--sae HOOK=DIR` each), the effect of
    /// each upstream node on each downstream node; the pruned circuit's faithfulness.
    #[arg(long)]
    edges: bool,
    /// With --edges: a node counts where its effect for one pair at one position exceeds this in size.
    #[arg(long, default_value_t = 0.2)]
    node_threshold: f64,
    /// With --edges: edges smaller than this are left out.
    #[arg(long, default_value_t = 0.02)]
    edge_threshold: f64,
    /// With --edges: write the circuit as JSON here, and drawn by layer beside it (.svg).
    #[arg(long)]
    graph: Option<std::path::PathBuf>,
}

/// A loaded experiment: the model, its pairs, and the options.
struct Experiment {
    model: Model,
    pairs: Vec<PromptPair>,
    batch: PairBatch,
    options: PatchOptions,
}

impl PairArgs {
    fn load(&self, attribution: Option<&AttributionArgs>) -> Result<Experiment> {
        let model = self.model.load()?;
        let pairs = match (
            &self.pairs,
            &self.clean,
            &self.corrupt,
            &self.answer,
            &self.wrong,
        ) {
            (Some(path), ..) => {
                let file = read_pairs(path, &model)?;
                eprintln!("{} prompt pairs from {}", file.pairs.len(), path.display());
                if let Some(note) = file.skipped_note() {
                    eprintln!("{note}");
                }
                file.pairs
            }
            (None, Some(c), Some(k), Some(a), Some(w)) => {
                vec![PromptPair::from_texts(&model, c, k, a, w)?]
            }
            _ => {
                return Err(PrismError::InvalidInput(
                    "give --pairs FILE, or --clean, --corrupt, --answer and --wrong".into(),
                ));
            }
        };
        let batch = PairBatch::new(&pairs, model.pad_id())?;
        let dictionaries = match attribution {
            Some(a) => a.dictionaries(&model)?,
            None => Dictionaries::new(),
        };
        let options = PatchOptions {
            direction: self.direction.parse()?,
            metric: self.metric.parse()?,
            rows_per_forward: self.rows_per_forward,
            dictionaries,
        };
        Ok(Experiment {
            model,
            pairs,
            batch,
            options,
        })
    }

    /// The sweeps asked for: (name, nodes), dictionaries' nodes last.
    fn sweeps(&self, e: &Experiment) -> Result<Vec<(String, Vec<Node>)>> {
        let shape = e.model.config().shape();
        let seq = e.batch.clean.seq;
        let items: Vec<String> = match &self.hooks {
            Some(h) => h.clone(),
            None if e.options.dictionaries.is_empty() => {
                vec!["resid_pre".into(), "attn_out".into(), "mlp_out".into()]
            }
            None => Vec::new(),
        };
        let mut out = Vec::new();
        for item in items {
            let ns = nodes(&shape, item.parse()?, seq)?;
            if ns
                .iter()
                .any(|n| e.options.dictionaries.contains_key(&n.hook))
            {
                return Err(PrismError::InvalidInput(format!(
                    "{item} is at a hook with a dictionary: its nodes are the dictionary's features"
                )));
            }
            out.push((item, ns));
        }
        for (&hook, dict) in &e.options.dictionaries {
            out.push((
                format!("{hook} (dictionary)"),
                dictionary_nodes(hook, dict.d_sae(), Some(seq)),
            ));
        }
        Ok(out)
    }
}

impl Experiment {
    fn tokens(&self) -> Vec<String> {
        self.pairs[0]
            .clean
            .iter()
            .map(|&t| {
                self.model
                    .tokenizer
                    .decode(&[t])
                    .unwrap_or_else(|_| t.to_string())
            })
            .collect()
    }
}

pub fn run(args: &PatchArgs) -> Result<()> {
    let e = args.pairs.load(None)?;
    let mut sweeps = Vec::new();
    for (item, ns) in args.pairs.sweeps(&e)? {
        let bar = crate::progress::bar(ns.len() as u64, &format!("patching {item}"), "nodes");
        let s = patch(&e.model, &e.batch, &ns, &e.options, |done, _| {
            bar.set_position(done as u64)
        })?;
        bar.finish_and_clear();
        sweeps.push((item, s));
    }
    report(&args.pairs, &e, &sweeps, None)
}

pub fn attribute_cmd(args: &AttributeArgs) -> Result<()> {
    let e = args.pairs.load(Some(&args.attribution))?;
    let method = args.attribution.method("atp")?;
    let mut sweeps = Vec::new();
    for (item, ns) in args.pairs.sweeps(&e)? {
        let bar = crate::progress::bar(1, &format!("attributing {item}"), "passes");
        let s = attribute(
            &e.model,
            &e.batch,
            &ns,
            method,
            &e.options,
            |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64)
            },
        )?;
        bar.finish_and_clear();
        sweeps.push((item, s));
    }
    report(&args.pairs, &e, &sweeps, Some(method))
}

pub fn circuit_cmd(args: &CircuitArgs) -> Result<()> {
    let e = args.pairs.load(Some(&args.attribution))?;
    let method = args.attribution.method("ig")?;
    if args.edges {
        return edge_circuit(args, &e, method);
    }
    let universe: Vec<Node> = args
        .pairs
        .sweeps(&e)?
        .into_iter()
        .flat_map(|(_, n)| n)
        .collect();
    if universe.is_empty() {
        return Err(PrismError::InvalidInput(
            "no nodes: give --sae HOOK=DIR and/or --hooks".into(),
        ));
    }
    // Means over the dataset's own clean prompts (padding excluded), as feature-circuits does.
    let hooks: Vec<HookPoint> = universe
        .iter()
        .map(|n| n.hook)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let means = MeanStates::compute(
        &e.model,
        [Ok(e.batch.clean.clone())],
        &hooks,
        &e.options.dictionaries,
    )?;
    let means = Arc::new(means);
    let sweep = match &args.sizes {
        Some(s) => FaithfulnessSweep {
            means,
            sizes: s.clone(),
        },
        None => FaithfulnessSweep::geometric(means, 2, universe.len()),
    };
    let bar = crate::progress::bar(1, "attributing", "passes");
    let c = circuit(
        &e.model,
        &e.batch,
        &universe,
        method,
        &sweep,
        &e.options,
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64)
        },
    )?;
    bar.finish_and_clear();
    if let Some(plot) = &args.pairs.plot {
        let stem = plot.with_extension("");
        let points: Vec<(f64, f64)> = c
            .faithfulness
            .curve
            .iter()
            .filter(|p| p.nodes > 0)
            .map(|p| (p.nodes as f64, p.faithfulness))
            .collect();
        prism_stats::plot_xy(
            &[prism_stats::Series {
                name: format!("top-n nodes, the rest mean-ablated ({})", c.metric),
                points,
                mark: prism_stats::Mark::Line,
            }],
            &prism_stats::XyPlot {
                title: "Circuit faithfulness",
                x: "nodes in the circuit",
                y: "faithfulness",
                log_x: true,
            },
            Some(&stem.with_extension("png")),
            Some(&stem.with_extension("svg")),
            (720, 440),
        )?;
        eprintln!("faithfulness curve: {}.png and .svg", stem.display());
    }
    let top: Vec<&prism_patch::PatchResult> = c.ranked.iter().take(args.top).collect();
    if args.pairs.model.json {
        println!(
            "{}",
            json!({
                "metric": c.metric,
                "method": c.method,
                "direction": e.options.direction,
                "pairs": e.pairs.len(),
                "universe": universe.len(),
                "nodes": top,
                "faithfulness": c.faithfulness,
            })
        );
    } else {
        println!(
            "{} pairs, {} nodes; {}: whole model {:.4}, everything mean-ablated {:.4}",
            e.pairs.len(),
            universe.len(),
            c.metric,
            c.faithfulness.full,
            c.faithfulness.empty
        );
        println!("strongest nodes (estimated effect, {:?})", c.method);
        for r in &top {
            println!("  {:<48} {:+.4}", r.node.to_string(), r.value);
        }
        println!("faithfulness of the top n:");
        for p in &c.faithfulness.curve {
            println!("  {:>8} {:.3}", p.nodes, p.faithfulness);
        }
    }
    Ok(())
}

/// `prism circuit --edges`: feature edges, the pruned circuit's faithfulness, JSON and SVG.
fn edge_circuit(args: &CircuitArgs, e: &Experiment, method: Method) -> Result<()> {
    let options = EdgeOptions::default()
        .with_node_threshold(args.node_threshold)
        .with_edge_threshold(args.edge_threshold)
        .with_method(method);
    let bar = crate::progress::bar(1, "feature edges", "passes");
    let c = edges(&e.model, &e.batch, &e.options, &options, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let universe: Vec<Node> = c.nodes.iter().map(|n| n.node).collect();
    let kept = c.circuit_nodes();
    let means = MeanStates::compute(
        &e.model,
        [Ok(e.batch.clean.clone())],
        &c.sites,
        &e.options.dictionaries,
    )?;
    let f = faithfulness(
        &e.model,
        &e.batch,
        &universe,
        &kept,
        &[kept.len()],
        Arc::new(means),
        &e.options,
    )?;
    let score = f.curve.first().map(|p| p.faithfulness);
    if let Some(path) = &args.graph {
        let text = c.to_json().to_string();
        prism_core::atomic_write(path, text.as_bytes())?;
        let svg = path.with_extension("svg");
        prism_core::atomic_write(&svg, c.svg(12).as_bytes())?;
        eprintln!("circuit: {} and {}", path.display(), svg.display());
    }
    let top: Vec<_> = c.edges.iter().take(args.top).collect();
    if args.pairs.model.json {
        println!(
            "{}",
            json!({
                "metric": c.metric,
                "direction": c.direction,
                "pairs": e.pairs.len(),
                "sites": c.sites.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "nodes": c.nodes.len(),
                "circuit_nodes": kept.len(),
                "edges": c.edges.len(),
                "top_edges": top,
                "faithfulness": score,
                "full": f.full,
                "empty": f.empty,
            })
        );
    } else {
        println!(
            "{} pairs, {} sites, {} nodes; {} in the circuit with {} edges ≥ {}",
            e.pairs.len(),
            c.sites.len(),
            c.nodes.len(),
            kept.len(),
            c.edges.len(),
            args.edge_threshold
        );
        println!("strongest edges:");
        for edge in &top {
            let to = match edge.to {
                EdgeTarget::Node(n) => n.to_string(),
                EdgeTarget::Metric => "metric".into(),
            };
            println!(
                "  {:<40} → {:<40} {:+.4}",
                edge.from.to_string(),
                to,
                edge.weight
            );
        }
        if let Some(score) = score {
            println!(
                "faithfulness of the circuit's {} nodes (the rest mean-ablated): {score:.3}",
                kept.len()
            );
        }
    }
    Ok(())
}

/// Heat maps, JSON or text for `patch` and `attribute`.
fn report(
    args: &PairArgs,
    e: &Experiment,
    sweeps: &[(String, PatchSweep)],
    method: Option<Method>,
) -> Result<()> {
    let first = &sweeps
        .first()
        .ok_or_else(|| PrismError::InvalidInput("no sweeps asked for".into()))?
        .1;
    let tokens = e.tokens();
    if let Some(plot) = &args.plot {
        for (item, s) in sweeps {
            if s.results.iter().any(|r| r.node.needs_dictionary()) {
                continue;
            }
            let stem = if sweeps.len() == 1 {
                plot.with_extension("")
            } else {
                let name = plot.file_stem().unwrap_or_default().to_string_lossy();
                plot.with_file_name(format!("{name}_{}", item.replace('.', "-")))
            };
            heatmap(s, item, &tokens, &stem)?;
            eprintln!("heat map: {}.png and .svg", stem.display());
        }
    }
    let results: Vec<serde_json::Value> = sweeps
        .iter()
        .flat_map(|(_, s)| s.results.iter())
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect();
    if args.model.json {
        let mut out = json!({
            "metric": first.metric,
            "direction": first.direction,
            "clean": first.clean,
            "corrupt": first.corrupt,
            "pairs": e.pairs.len(),
            "tokens": tokens,
            "results": results,
        });
        if let Some(m) = method {
            out["method"] = serde_json::to_value(m).unwrap_or_default();
        }
        println!("{out}");
    } else {
        println!(
            "{} pairs, {}: clean {:.4}, corrupted {:.4} ({:?})",
            e.pairs.len(),
            first.metric,
            first.clean,
            first.corrupt,
            first.direction
        );
        for (item, s) in sweeps {
            let mut top: Vec<_> = s.results.iter().collect();
            top.sort_by(|a, b| b.normalized.abs().total_cmp(&a.normalized.abs()));
            println!("{item}: strongest nodes (normalised effect)");
            for r in top.iter().take(8) {
                println!("  {:<48} {:+.4}", r.node.to_string(), r.normalized);
            }
        }
    }
    Ok(())
}

/// One heat map: blocks × (positions | heads | neurons), normalised effects.
fn heatmap(s: &PatchSweep, item: &str, tokens: &[String], stem: &Path) -> Result<()> {
    let layers: Vec<usize> = s
        .results
        .iter()
        .filter_map(|r| r.node.hook.layer())
        .collect();
    let (lo, hi) = (
        layers.iter().copied().min().unwrap_or(0),
        layers.iter().copied().max().unwrap_or(0),
    );
    let col_of = |n: &Node| n.head().or(n.neuron()).or(n.position).unwrap_or(0);
    let ncols = s
        .results
        .iter()
        .map(|r| col_of(&r.node) + 1)
        .max()
        .unwrap_or(1);
    let cols: Vec<String> = if s
        .results
        .iter()
        .all(|r| r.node.head().is_none() && r.node.neuron().is_none())
    {
        (0..ncols)
            .map(|p| format!("{p} {}", tokens.get(p).map(String::as_str).unwrap_or("")))
            .collect()
    } else if s.results.iter().any(|r| r.node.head().is_some()) {
        (0..ncols).map(|h| format!("head {h}")).collect()
    } else {
        (0..ncols).map(|k| k.to_string()).collect()
    };
    let rows: Vec<String> = (lo..=hi).map(|l| format!("block {l}")).collect();
    let mut values = vec![f64::NAN; rows.len() * ncols];
    for r in &s.results {
        if let Some(l) = r.node.hook.layer() {
            values[(l - lo) * ncols + col_of(&r.node)] = r.normalized;
        }
    }
    let title = format!("{item}: normalised {} ({:?})", s.metric, s.direction);
    let size = (
        (160 + 28 * ncols.min(60)) as u32,
        (140 + 24 * rows.len()) as u32,
    );
    prism_stats::plot_heatmap(
        &values,
        &rows,
        &cols,
        &title,
        Some(&stem.with_extension("png")),
        Some(&stem.with_extension("svg")),
        (size.0.max(480), size.1.max(240)),
    )
}
