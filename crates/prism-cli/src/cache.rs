//! `prism cache`: harvest activations from a corpus into a sharded on-disk store.

use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use prism_cache::{CacheOptions, Corpus, WindowConfig, build_cache};
use prism_core::{HookPoint, Result};
use serde_json::json;

use crate::forward::ModelArgs;

/// `prism cache` arguments.
#[derive(clap::Args)]
pub struct CacheArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Corpus: a .txt/.rst/.md/.jsonl/.jsonl.zst file or a directory of them.
    #[arg(long)]
    data: PathBuf,
    /// Hook points to capture, comma-separated (all in one forward pass).
    #[arg(long, value_delimiter = ',', required = true)]
    hooks: Vec<String>,
    /// Activation rows (tokens) to store.
    #[arg(long)]
    tokens: u64,
    /// Tokens per window.
    #[arg(long, default_value_t = 128)]
    ctx: usize,
    /// Output directory (resumed if it holds a partial cache with the same settings).
    #[arg(long)]
    out: PathBuf,
    /// Storage dtype: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Windows per shard file.
    #[arg(long, default_value_t = 256)]
    shard_windows: usize,
    /// Shuffle windows with this seed (deterministic); omit to keep corpus order.
    #[arg(long)]
    seed: Option<u64>,
    /// Size of the shuffle buffer, in windows (with --seed).
    #[arg(long, default_value_t = 4096)]
    shuffle_windows: usize,
    /// Start every window with BOS.
    #[arg(long)]
    prepend_bos: bool,
    /// Do not store rows whose token is BOS.
    #[arg(long)]
    drop_bos: bool,
    /// JSON field holding the text in .jsonl files.
    #[arg(long, default_value = "text")]
    text_field: String,
}

pub fn cache(args: &CacheArgs) -> Result<()> {
    let model = args.model.load()?;
    let hooks = args
        .hooks
        .iter()
        .map(|h| h.trim().parse::<HookPoint>())
        .collect::<Result<Vec<_>>>()?;
    let corpus = Corpus::open(&args.data, &args.text_field)?;
    let options = CacheOptions {
        hooks,
        window: WindowConfig {
            ctx: args.ctx,
            prepend_bos: args.prepend_bos,
            seed: args.seed,
            shuffle_windows: args.shuffle_windows,
        },
        drop_bos: args.drop_bos,
        dtype: args.dtype.parse()?,
        target_tokens: args.tokens,
        windows_per_shard: args.shard_windows,
        windows_per_forward: args.batch,
        stop_after_shards: None,
    };
    let bar = ProgressBar::new(args.tokens).with_style(
        ProgressStyle::with_template(
            "{spinner} harvesting [{bar:40}] {human_pos}/{human_len} tokens  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let t0 = Instant::now();
    let mut resumed_from = None;
    let manifest = build_cache(&model, &corpus, &options, &args.out, &mut |p| {
        if resumed_from.is_none() {
            resumed_from = Some(p.tokens);
            bar.reset_elapsed();
        }
        bar.set_position(p.tokens);
    })?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let new_tokens = manifest.token_count - resumed_from.unwrap_or(0);
    let bytes: u64 = manifest
        .shards
        .iter()
        .filter_map(|s| std::fs::metadata(args.out.join(&s.file)).ok())
        .map(|m| m.len())
        .sum();
    if manifest.token_count < args.tokens {
        eprintln!(
            "warning: the corpus ended after {} of {} tokens",
            manifest.token_count, args.tokens
        );
    }
    let summary = json!({
        "out": args.out.display().to_string(),
        "tokens": manifest.token_count,
        "new_tokens": new_tokens,
        "shards": manifest.shards.len(),
        "hooks": manifest.hooks,
        "dtype": manifest.dtype,
        "seconds": secs,
        "tokens_per_s": new_tokens as f64 / secs.max(1e-9),
        "bytes_on_disk": bytes,
        "bytes_per_token": bytes as f64 / manifest.token_count.max(1) as f64,
        "skipped": manifest.corpus["skipped"],
    });
    if args.model.json {
        println!("{summary}");
    } else {
        eprintln!(
            "cached {} tokens × {} hook(s) in {} shard(s) at {} ({:.0} tokens/s, {:.0} bytes/token)",
            manifest.token_count,
            manifest.hooks.len(),
            manifest.shards.len(),
            args.out.display(),
            summary["tokens_per_s"].as_f64().unwrap_or(0.0),
            summary["bytes_per_token"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}
