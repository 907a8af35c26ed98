//! # Exact patching vs attribution patching on SmolLM2
//!
//! Indirect-object prompts ("When Mary and John went to the store, John gave a drink to" → " Mary";
//! corrupted: the second name swapped, so the answer flips), metric = logit difference. Times, in
//! one process:
//! 1. the baseline: one forward pass of the clean prompts (median of 3);
//! 2. the exact sweep — every block × position of `hook_resid_pre`, `hook_attn_out`,
//!    `hook_mlp_out`, `hook_resid_post`, and every block × head of `attn.hook_z` — one patched
//!    copy of the batch per node, many copies per forward pass;
//! 3. attribution patching of the same nodes, per sweep and all at once (the source run, then
//!    one forward pass that is also the target run, and one backward pass);
//!
//! and prints each in forward passes, the speed-up, and AtP's Pearson correlation with the exact
//! effects per sweep. `--json` ends with one JSON line (the token ids too, so that
//! `scripts/bench_patching_torch.py` can run the same sweep in PyTorch); `--plot DIR` writes an
//! AtP-vs-exact scatter plot.
//!
//! ```text
//! cargo run --release --example bench_patching -- [--model PATH] [--pairs N] [--sweeps resid_pre,z] [--plot DIR] [--json]
//! ```

#[path = "common/allocator.rs"]
mod allocator;
#[path = "common/args.rs"]
mod args;

use std::time::Instant;

use prism::core::Hooks;
use prism::patch::{Method, PairBatch, PatchOptions, PromptPair, attribute, nodes, patch};
use prism::{Model, Result};

const NAMES: [(&str, &str); 4] = [
    ("Mary", "John"),
    ("Alice", "Bob"),
    ("Sarah", "James"),
    ("Anna", "David"),
];

fn main() -> Result<()> {
    let args = args::Args::from_env();
    let opt = |name: &str| args.opt(name);
    let json = args.flag("--json");
    let model_path = args.model();
    let n_pairs: usize = opt("--pairs").and_then(|v| v.parse().ok()).unwrap_or(4);
    let device = prism::core::device("cpu")?;
    let model = Model::load(model_path.as_ref(), &device)?;

    let template = |a: &str, b: &str, giver: &str| {
        format!("When {a} and {b} went to the store, {giver} gave a drink to")
    };
    let pairs: Vec<PromptPair> = NAMES
        .iter()
        .cycle()
        .take(n_pairs)
        .map(|&(a, b)| {
            PromptPair::from_texts(
                &model,
                &template(a, b, b),
                &template(a, b, a),
                &format!(" {a}"),
                &format!(" {b}"),
            )
        })
        .collect::<Result<_>>()?;
    let batch = PairBatch::new(&pairs, model.pad_id())?;
    let seq = batch.clean.seq;
    let shape = model.config().shape();

    // 1. Baseline: one forward pass of the clean prompts.
    let mut forward = Vec::new();
    for _ in 0..4 {
        let t = Instant::now();
        model.forward(&batch.clean, &Hooks::new())?.logits()?;
        forward.push(t.elapsed().as_secs_f64());
    }
    forward.remove(0);
    forward.sort_by(f64::total_cmp);
    let forward = forward[1];

    let chosen = opt("--sweeps");
    let sweeps: Vec<&str> = match &chosen {
        Some(list) => list.split(',').collect(),
        None => vec!["resid_pre", "attn_out", "mlp_out", "resid_post", "z"],
    };
    let options = PatchOptions {
        rows_per_forward: 64,
        ..Default::default()
    };
    let mut exact_s = 0.0;
    let mut atp_s = 0.0;
    let mut resid_pre_s = 0.0;
    let mut resid_pre_values: Vec<f64> = Vec::new();
    let mut rows = Vec::new();
    let mut all: Vec<(f64, f64)> = Vec::new();
    let mut per_sweep = Vec::new();
    for &item in &sweeps {
        let ns = nodes(&shape, item.parse()?, seq)?;
        let t = Instant::now();
        let exact = patch(&model, &batch, &ns, &options, |_, _| {})?;
        let e = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let atp = attribute(&model, &batch, &ns, Method::Atp, &options, |_, _| {})?;
        let a = t.elapsed().as_secs_f64();
        if item == "resid_pre" {
            resid_pre_s = e;
            resid_pre_values = exact.results.iter().map(|r| r.value).collect();
        }
        exact_s += e;
        atp_s += a;
        let pts = prism::patch::exact_vs_estimate(&exact, &atp);
        let r = prism::stats::pearson(&pts);
        eprintln!(
            "{item:<11} {:>5} nodes: exact {e:7.2} s, AtP {a:6.2} s, r = {r:.3}",
            ns.len()
        );
        per_sweep.push(
            serde_json::json!({"sweep": item, "nodes": ns.len(), "exact_s": e,
            "atp_s": a, "pearson": r}),
        );
        rows.push((item, pts.clone()));
        all.extend(pts);
    }
    // Every node of the five sweeps in one attribution call.
    let mut every = Vec::new();
    for &item in &sweeps {
        every.extend(nodes(&shape, item.parse()?, seq)?);
    }
    let t = Instant::now();
    attribute(&model, &batch, &every, Method::Atp, &options, |_, _| {})?;
    let atp_all_s = t.elapsed().as_secs_f64();
    eprintln!(
        "AtP of all {} nodes in one call: {atp_all_s:.2} s = {:.2} forward passes",
        every.len(),
        atp_all_s / forward
    );
    let r_all = prism::stats::pearson(&all);
    eprintln!(
        "{n_pairs} pairs × {seq} tokens; one forward pass {forward:.3} s\n\
         exact sweep {exact_s:.1} s = {:.0} forward passes; AtP {atp_s:.2} s = {:.2} forward \
         passes (speed-up {:.0}×); AtP vs exact over all nodes r = {r_all:.3}",
        exact_s / forward,
        atp_s / forward,
        exact_s / atp_s
    );
    if let Some(dir) = opt("--plot") {
        std::fs::create_dir_all(&dir).map_err(|e| prism::core::PrismError::io(&dir, e))?;
        let series: Vec<prism::stats::Series> = rows
            .into_iter()
            .map(|(name, points)| prism::stats::Series {
                name: name.to_string(),
                points,
                mark: prism::stats::Mark::Dots,
            })
            .collect();
        let stem = std::path::Path::new(&dir).join("atp_vs_exact");
        prism::stats::plot_xy(
            &series,
            &prism::stats::XyPlot {
                title: &format!("Attribution patching vs exact patching (r = {r_all:.2})"),
                x: "exact effect on the logit difference",
                y: "AtP estimate",
                log_x: false,
            },
            Some(&stem.with_extension("png")),
            Some(&stem.with_extension("svg")),
            (720, 520),
        )?;
    }
    if json {
        let ids =
            |b: &prism::TokenBatch| b.ids.chunks(b.seq).map(<[u32]>::to_vec).collect::<Vec<_>>();
        println!(
            "{}",
            serde_json::json!({
                "pairs": n_pairs, "seq": seq, "forward_s": forward,
                "exact_s": exact_s, "atp_s": atp_s, "atp_all_nodes_s": atp_all_s, "resid_pre_exact_s": resid_pre_s,
                "resid_pre_exact": resid_pre_values,
                "pearson": r_all, "sweeps": per_sweep,
                "clean_ids": ids(&batch.clean), "corrupt_ids": ids(&batch.corrupt),
                "answer": batch.answer, "wrong": batch.wrong,
            })
        );
    }
    Ok(())
}
