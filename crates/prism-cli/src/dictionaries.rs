//! `prism eval` and `prism similarity`: judging and comparing dictionaries.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use prism_cache::{Corpus, WindowConfig, windows};
use prism_core::{HookPoint, PrismError, Result};
use prism_models::TokenBatch;
use prism_sae::Sae;
use prism_similarity::{SimilarityOptions, compare};
use prism_stats::{DownstreamStats, ReconstructionStats, evaluate_batch};
use serde_json::json;

use crate::forward::ModelArgs;

/// `prism eval` arguments.
#[derive(clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Corpus to evaluate on.
    #[arg(long)]
    data: PathBuf,
    /// Dictionary directory (SAELens layout).
    #[arg(long)]
    sae: PathBuf,
    /// Hook point (default: the dictionary's `hook_name`).
    #[arg(long)]
    hook: Option<String>,
    /// Tokens to evaluate on.
    #[arg(long, default_value_t = 8192)]
    tokens: usize,
    /// Tokens per window.
    #[arg(long, default_value_t = 128)]
    ctx: usize,
    /// Skip this many windows first (evaluate on a held-out slice, not the training tokens).
    #[arg(long, default_value_t = 0)]
    skip_windows: usize,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
}

pub fn eval(args: &EvalArgs) -> Result<()> {
    let model = args.model.load()?;
    let sae = Sae::load(&args.sae, model.device())?;
    let hook_name = args.hook.clone().or(sae.hook_name.clone()).ok_or_else(|| {
        PrismError::InvalidInput("the dictionary names no hook_name; pass --hook".into())
    })?;
    let hook: HookPoint = hook_name.parse()?;
    let corpus = Corpus::open(&args.data, "text")?;
    let cfg = WindowConfig {
        ctx: args.ctx,
        ..Default::default()
    };
    let n_windows = args.tokens.div_ceil(args.ctx).max(1);
    let wins: Vec<Vec<u32>> = windows(&corpus, &model.tokenizer, cfg)?
        .skip(args.skip_windows)
        .take(n_windows)
        .collect::<Result<_>>()?;
    let bar = ProgressBar::new(wins.len() as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} evaluating [{bar:40}] {pos}/{len} windows  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let (mut recon, mut down) = (ReconstructionStats::default(), DownstreamStats::default());
    for group in wins.chunks(args.batch.max(1)) {
        let batch = TokenBatch::from_sequences(group, model.pad_id())?;
        evaluate_batch(&model, &sae, hook, &batch, &mut recon, &mut down)?;
        bar.inc(group.len() as u64);
    }
    bar.finish_and_clear();
    let (r, d) = (recon.finish()?, down.finish()?);
    let mut out = serde_json::to_value(&r).unwrap_or_default();
    if let (Some(o), Ok(serde_json::Value::Object(extra))) =
        (out.as_object_mut(), serde_json::to_value(&d))
    {
        o.extend(extra);
        o.insert("hook".into(), json!(hook.to_string()));
        o.insert("sae".into(), json!(args.sae.display().to_string()));
    }
    if args.model.json {
        println!("{out}");
    } else {
        println!("{} on {} tokens at {hook}:", args.sae.display(), r.tokens);
        for (k, v) in out.as_object().into_iter().flatten() {
            if let Some(x) = v.as_f64() {
                println!("  {k:<30} {x:.6}");
            }
        }
    }
    Ok(())
}

/// `prism similarity` arguments.
#[derive(clap::Args)]
pub struct SimilarityArgs {
    /// Dictionary A (the "ground truth" for mmcs_a_to_b), SAELens layout.
    #[arg(long)]
    a: PathBuf,
    /// Dictionary B.
    #[arg(long)]
    b: PathBuf,
    /// cpu, ndarray or wgpu.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub fn similarity(args: &SimilarityArgs) -> Result<()> {
    let device = prism_core::device(&args.device)?;
    let (a, b) = (Sae::load(&args.a, &device)?, Sae::load(&args.b, &device)?);
    let s = compare(&a, &b, &SimilarityOptions::default())?;
    let matching = s.matching.as_ref();
    let hist = prism_similarity::histogram(&s.max_cos_a, -1.0, 1.0, 20);
    if args.json {
        println!(
            "{}",
            json!({
                "mmcs_a_to_b": s.mmcs_a_to_b,
                "mmcs_b_to_a": s.mmcs_b_to_a,
                "matched_mean_cos": s.matched_mean_cos(),
                "matching_method": matching.map(|m| m.method),
                "matched_pairs": matching.map(|m| m.pairs.len()),
                "max_cos_a_histogram": hist,
            })
        );
    } else {
        println!(
            "mean max cosine similarity A→B {:.4}, B→A {:.4}",
            s.mmcs_a_to_b, s.mmcs_b_to_a
        );
        if let Some(m) = matching {
            println!(
                "one-to-one matching ({}): {} pairs, mean cosine {:.4}",
                m.method,
                m.pairs.len(),
                m.mean_cos
            );
        }
    }
    Ok(())
}
