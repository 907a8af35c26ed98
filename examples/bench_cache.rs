//! # Harvesting and cache-reading throughput
//!
//! 1. Plain forward pass (no hooks) over 8 windows × 128 tokens, tokens/s.
//! 2. The same full pass with two hook points of the last block captured and read back: the
//!    cost of hooking itself (goal: ≤ 10 % over the plain pass).
//! 3. Harvesting those two hook points (`capture_only`: stops after the block, no unembedding).
//! 4. Harvesting the middle block's MLP output (the pass stops after that block).
//! 5. Writing a cache of `--tokens` rows in f32 and bf16: bytes per token on disk.
//! 6. Reading it back as globally shuffled batches of 8192 rows: GB/s.
//!
//! ```text
//! cargo run --release --example bench_cache -- [--model PATH] [--data DIR] [--tokens N] [--device cpu|wgpu|cuda]
//! ```

#[path = "common/allocator.rs"]
mod allocator;
#[path = "common/args.rs"]
mod args;
#[allow(dead_code)] // this benchmark times its own passes
#[path = "common/timing.rs"]
mod timing;

use std::time::Instant;

use prism::core::{FloatDtype, HookPoint, Hooks};
use prism::{Model, Result, TokenBatch};
use prism_cache::{
    ActivationStore, CacheOptions, Corpus, Harvester, WindowConfig, build_cache, windows,
};
use timing::median;

fn main() -> Result<()> {
    allocator::system_if_asked();
    let args = args::Args::from_env();
    let opt = |name: &str| args.opt(name);
    let model_path = args.model();
    let data = opt("--data").unwrap_or_else(|| "assets/python-docs".into());
    let tokens: u64 = opt("--tokens")
        .and_then(|v| v.parse().ok())
        .unwrap_or(16384);
    let iters = 3;
    let device = prism::core::device(&opt("--device").unwrap_or_else(|| "cpu".into()))?;
    let model = Model::load(model_path.as_ref(), &device)?;
    let corpus = Corpus::open(data.as_ref(), "text")?;
    let ctx = 128.min(model.config().max_positions);
    let cfg = WindowConfig {
        ctx,
        ..Default::default()
    };
    let wins: Vec<Vec<u32>> = windows(&corpus, &model.tokenizer, cfg.clone())?
        .take(8)
        .collect::<Result<_>>()?;
    let batch = TokenBatch::from_sequences(&wins, model.pad_id())?;
    let n_tok = (wins.len() * ctx) as f64;
    let last = model.config().n_layers - 1;
    let mid = model.config().n_layers / 2;

    let plain = median(
        (0..iters)
            .map(|_| {
                let t0 = Instant::now();
                let l = model.forward(&batch, &Hooks::new())?.logits()?;
                let _ = l.narrow(2, 0, 1).sum().into_scalar::<f32>();
                Ok(t0.elapsed().as_secs_f64())
            })
            .collect::<Result<Vec<_>>>()?,
    );
    let time_harvest = |hooks: Vec<HookPoint>| -> Result<f64> {
        let h = Harvester::new(&model, hooks, false)?;
        Ok(median(
            (0..iters)
                .map(|_| {
                    let t0 = Instant::now();
                    h.harvest(&wins)?;
                    Ok(t0.elapsed().as_secs_f64())
                })
                .collect::<Result<Vec<_>>>()?,
        ))
    };
    // The same full pass (logits included) with two captures read back to the host: the cost of
    // hooking itself.
    let capture = Hooks::new()
        .capture(HookPoint::MlpOut(last))
        .capture(HookPoint::ResidPost(last));
    let hooked = median(
        (0..iters)
            .map(|_| {
                let t0 = Instant::now();
                let mut out = model.forward(&batch, &capture)?;
                let _ = out.logits()?.narrow(2, 0, 1).sum().into_scalar::<f32>();
                for h in [HookPoint::MlpOut(last), HookPoint::ResidPost(last)] {
                    prism::HostTensor::from_burn(out.take(h)?.into_rank3()?)?;
                }
                Ok(t0.elapsed().as_secs_f64())
            })
            .collect::<Result<Vec<_>>>()?,
    );
    let deep = time_harvest(vec![HookPoint::MlpOut(last), HookPoint::ResidPost(last)])?;
    let middle = time_harvest(vec![HookPoint::MlpOut(mid)])?;
    println!("model {model_path}, batch {}×{ctx}", wins.len());
    println!(
        "plain forward (logits):               {:>8.0} tokens/s",
        n_tok / plain
    );
    println!(
        "forward + 2 captures read back:       {:>8.0} tokens/s ({:+.1}% time vs plain forward)",
        n_tok / hooked,
        100.0 * (hooked / plain - 1.0)
    );
    println!(
        "harvest 2 hooks of the last block:    {:>8.0} tokens/s ({:+.1}% time vs plain forward; no unembedding)",
        n_tok / deep,
        100.0 * (deep / plain - 1.0)
    );
    println!(
        "harvest mlp_out of block {mid:>2}:          {:>8.0} tokens/s",
        n_tok / middle
    );

    let dir = std::env::temp_dir().join(format!("prism-bench-cache-{}", std::process::id()));
    for dtype in [FloatDtype::F32, FloatDtype::BF16] {
        let out = dir.join(dtype.to_string());
        let options = CacheOptions {
            hooks: vec![HookPoint::MlpOut(mid)],
            window: cfg.clone(),
            drop_bos: false,
            dtype,
            target_tokens: tokens,
            windows_per_shard: 32,
            windows_per_forward: 8,
            stop_after_shards: None,
        };
        let t0 = Instant::now();
        let m = build_cache(&model, &corpus, &options, &out, &mut |_| {})?;
        let build = t0.elapsed().as_secs_f64();
        let bytes: u64 = m
            .shards
            .iter()
            .map(|s| {
                std::fs::metadata(out.join(&s.file))
                    .map(|x| x.len())
                    .unwrap_or(0)
            })
            .sum();
        let t0 = Instant::now();
        let store = ActivationStore::open(&out)?;
        let open = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let mut read = 0usize;
        for b in store.shuffled_batches(&[0], 8192, 0) {
            read += b?[0].len() * 4;
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "cache {dtype:>4}: {} tokens in {} shards, {:.0} tokens/s harvest+write, {:.0} bytes/token, \
             open+verify {:.2}s, shuffled read {:.2} GB/s (f32 delivered)",
            m.token_count,
            m.shards.len(),
            m.token_count as f64 / build,
            bytes as f64 / m.token_count as f64,
            open,
            read as f64 / secs / 1e9
        );
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
