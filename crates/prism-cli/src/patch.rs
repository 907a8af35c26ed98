//! `prism patch`: exact activation patching sweeps, as TransformerLens' `patching.py` offers.

use std::path::{Path, PathBuf};

use prism_core::{PrismError, Result};
use prism_patch::{
    Node, PairBatch, PatchOptions, PatchSweep, PromptPair, nodes, patch, read_pairs,
};
use serde_json::json;

use crate::forward::ModelArgs;

/// `prism patch` arguments.
#[derive(clap::Args)]
pub struct PatchArgs {
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
    /// z_pos (block × head × position), neurons (block × neuron), or full hook names.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "resid_pre,attn_out,mlp_out"
    )]
    hooks: Vec<String>,
    /// denoise (clean activations into the corrupted run) or noise (the reverse).
    #[arg(long, default_value = "denoise")]
    direction: String,
    /// logit-diff, loss or prob (of the answer), at the last real position.
    #[arg(long, default_value = "logit-diff")]
    metric: String,
    /// Heat maps (block × position with the tokens, block × head): FILE.png or FILE.svg; both
    /// are written, one pair per sweep (`FILE_<sweep>.png` when there are several).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Rows (pairs × patched copies) per forward pass.
    #[arg(long, default_value_t = 32)]
    rows_per_forward: usize,
}

pub fn run(args: &PatchArgs) -> Result<()> {
    let model = args.model.load()?;
    let pairs = match (
        &args.pairs,
        &args.clean,
        &args.corrupt,
        &args.answer,
        &args.wrong,
    ) {
        (Some(path), ..) => read_pairs(path, &model)?,
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
    let options = PatchOptions {
        direction: args.direction.parse()?,
        metric: args.metric.parse()?,
        rows_per_forward: args.rows_per_forward,
    };
    let shape = model.config().shape();
    let seq = batch.clean.seq;
    let mut sweeps: Vec<(String, PatchSweep)> = Vec::new();
    for item in &args.hooks {
        let ns = nodes(&shape, item, seq)?;
        let bar = crate::progress::bar(ns.len() as u64, &format!("patching {item}"), "nodes");
        let s = patch(&model, &batch, &ns, &options, |done, _| {
            bar.set_position(done as u64)
        })?;
        bar.finish_and_clear();
        sweeps.push((item.clone(), s));
    }
    let first = &sweeps[0].1;
    let tokens: Vec<String> = pairs[0]
        .clean
        .iter()
        .map(|&t| {
            model
                .tokenizer
                .decode(&[t])
                .unwrap_or_else(|_| t.to_string())
        })
        .collect();
    if let Some(plot) = &args.plot {
        for (item, s) in &sweeps {
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
        println!(
            "{}",
            json!({
                "metric": first.metric,
                "direction": first.direction,
                "clean": first.clean,
                "corrupt": first.corrupt,
                "pairs": pairs.len(),
                "tokens": tokens,
                "results": results,
            })
        );
    } else {
        println!(
            "{} pairs, {}: clean {:.4}, corrupted {:.4} ({:?})",
            pairs.len(),
            first.metric,
            first.clean,
            first.corrupt,
            first.direction
        );
        for (item, s) in &sweeps {
            let mut top: Vec<_> = s.results.iter().collect();
            top.sort_by(|a, b| b.normalized.abs().total_cmp(&a.normalized.abs()));
            println!("{item}: strongest nodes (normalised effect)");
            for r in top.iter().take(8) {
                println!("  {:<40} {:+.4}", describe(&r.node), r.normalized);
            }
        }
    }
    Ok(())
}

fn describe(n: &Node) -> String {
    let mut s = n.hook.to_string();
    if let Some(p) = n.position {
        s.push_str(&format!(" pos {p}"));
    }
    if let Some(h) = n.head {
        s.push_str(&format!(" head {h}"));
    }
    if let Some(k) = n.neuron {
        s.push_str(&format!(" neuron {k}"));
    }
    s
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
    let col_of = |n: &Node| n.head.or(n.neuron).or(n.position).unwrap_or(0);
    let ncols = s
        .results
        .iter()
        .map(|r| col_of(&r.node) + 1)
        .max()
        .unwrap_or(1);
    let cols: Vec<String> = if s
        .results
        .iter()
        .all(|r| r.node.head.is_none() && r.node.neuron.is_none())
    {
        (0..ncols)
            .map(|p| format!("{p} {}", tokens.get(p).map(String::as_str).unwrap_or("")))
            .collect()
    } else if s.results.iter().any(|r| r.node.head.is_some()) {
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
