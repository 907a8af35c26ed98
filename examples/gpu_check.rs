//! # The GPU check: forward, harvest and dictionary-training throughput on each GPU backend
//!
//! One binary for a short session on a GPU machine without network (`scripts/gpu_check.sh`
//! builds, bundles and runs it). For each device in `--devices` (default `wgpu,cuda`):
//!
//! 1. Forward tokens/s of the model (SmolLM2) on batches of 8 × 128 and 64 × 128 tokens of
//!    the benchmark text (median of `--iters` passes after a warm-up).
//! 2. Harvest tokens/s: the residual stream after the middle block captured and read back to
//!    the host (the pass stops after that block), 64 × 128 tokens.
//! 3. The TopK training step (k = 32, batch 4096, AuxK, clipping, Adam, decoder
//!    renormalisation) on the burn engine at d = 576 with 32× features (SmolLM2's width) and
//!    d = 768 with 32768 features.
//!
//! With `--python PATH` (an interpreter with torch and CUDA) the same training steps run in
//! PyTorch on the GPU (`scripts/bench_train_torch.py --device cuda`) and the ratio is printed.
//! (`--torch-script PATH` where the sources are not where the binary was built.) A device that cannot start (no adapter, a build without `--features cuda`) is reported and
//! skipped. Results go to stdout as a markdown table and, with `--json PATH`, as JSON.
//!
//! ```text
//! cargo run --release --features cuda --example gpu_check -- --model assets/SmolLM2-135M-Instruct.Q4_1.gguf \
//!     [--devices wgpu,cuda] [--python python3] [--steps 10] [--iters 5] [--batch 4096] [--json out.json]
//! ```

#[path = "common/args.rs"]
mod args;
#[path = "common/synthetic.rs"]
mod synthetic;
#[path = "common/text.rs"]
mod text;
#[path = "common/timing.rs"]
mod timing;

use std::time::Instant;

use prism::core::HookPoint;
use prism::sae::train::{ArchitectureConfig, EngineChoice, TrainConfig, Trainer};
use prism::{Model, Result, TokenBatch};
use prism_cache::Harvester;
use serde_json::{Value, json};
use synthetic::{Sizes, inputs};
use timing::{forward_seconds, median};

/// Forward and harvest tokens/s on one device.
fn model_rates(model_path: &str, device_name: &str, iters: usize) -> Result<Value> {
    let device = prism::core::device(device_name)?;
    let model = Model::load(model_path.as_ref(), &device)?;
    let ids = model.encode(&text::TEXT.repeat(200))?;
    let seq = 128;
    let windows = |n: usize| -> Vec<Vec<u32>> {
        (0..n)
            .map(|i| ids[(i * 97) % (ids.len() - seq)..][..seq].to_vec())
            .collect()
    };
    let mut out = serde_json::Map::new();
    for batch_size in [8, 64] {
        let batch = TokenBatch::from_sequences(&windows(batch_size), model.pad_id())?;
        let t = forward_seconds(&model, &batch, iters)?;
        out.insert(
            format!("forward_{batch_size}x{seq}"),
            json!((batch_size * seq) as f64 / t),
        );
    }
    let mid = model.config().n_layers / 2;
    let harvester = Harvester::new(&model, vec![HookPoint::ResidPost(mid)], false)?;
    let wins = windows(64);
    harvester.harvest(&wins)?;
    let t = median(
        (0..iters)
            .map(|_| {
                let t0 = Instant::now();
                harvester.harvest(&wins)?;
                Ok(t0.elapsed().as_secs_f64())
            })
            .collect::<Result<_>>()?,
    );
    out.insert(
        format!("harvest_resid_post_{mid}_64x{seq}"),
        json!((64 * seq) as f64 / t),
    );
    Ok(Value::Object(out))
}

/// TopK training steps per second on the burn engine on one device, in tokens/s.
fn train_rate(device_name: &str, s: Sizes, steps: usize) -> Result<f64> {
    let engine = EngineChoice::burn_on(device_name)?;
    let mut c = TrainConfig::new(ArchitectureConfig::topk(32), s.d, s.m);
    c.warmup_steps = 20;
    c.lr = 1e-3;
    let mut t = Trainer::new_on(c, &engine)?;
    let data = inputs(s, 4);
    for b in data.iter().take(3) {
        t.step(b)?;
    }
    let t0 = Instant::now();
    for i in 0..steps {
        t.step(&data[i % data.len()])?;
    }
    Ok((steps * s.batch) as f64 / t0.elapsed().as_secs_f64())
}

fn torch_rate(python: &str, script: &str, s: Sizes, steps: usize) -> Result<f64> {
    let out = std::process::Command::new(python)
        .arg(script)
        .args(["--device", "cuda", "--only", "topk", "--k", "32"])
        .args(["--steps", &steps.to_string()])
        .args(["--d", &s.d.to_string(), "--m", &s.m.to_string()])
        .args(["--batch", &s.batch.to_string()])
        .output();
    let fail = |message: String| prism::PrismError::Command {
        command: "scripts/bench_train_torch.py".into(),
        message,
    };
    let out = out.map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    let v: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("unreadable output: {e}")))?;
    v["topk_k32"]["tokens_per_s"]
        .as_f64()
        .ok_or_else(|| fail(format!("no tokens/s in {v}")))
}

fn main() -> Result<()> {
    let args = args::Args::from_env();
    let opt = |name: &str| args.opt(name);
    let model_path = args.model();
    let devices: Vec<String> = opt("--devices")
        .unwrap_or_else(|| "wgpu,cuda".into())
        .split(',')
        .map(|d| d.trim().to_string())
        .collect();
    let steps: usize = opt("--steps").and_then(|v| v.parse().ok()).unwrap_or(10);
    let iters: usize = opt("--iters").and_then(|v| v.parse().ok()).unwrap_or(5);
    let batch: usize = opt("--batch").and_then(|v| v.parse().ok()).unwrap_or(4096);
    let sizes = [
        Sizes {
            d: 576,
            m: 576 * 32,
            batch,
        },
        Sizes {
            d: 768,
            m: 32768,
            batch,
        },
    ];
    let mut report = serde_json::Map::new();
    let mut rows = Vec::new();
    for device in &devices {
        let mut entry = serde_json::Map::new();
        match model_rates(&model_path, device, iters) {
            Ok(v) => {
                for (k, r) in v.as_object().into_iter().flatten() {
                    rows.push(format!(
                        "| {device} | {k} | {:.0} | | |",
                        r.as_f64().unwrap_or(0.0)
                    ));
                }
                entry.insert("model".into(), v);
            }
            Err(e) => {
                eprintln!("{device}: model throughput skipped: {e}");
                entry.insert("model_error".into(), json!(e.to_string()));
            }
        }
        for s in sizes {
            let key = format!("train_topk32_d{}_m{}_b{}", s.d, s.m, s.batch);
            match train_rate(device, s, steps) {
                Ok(r) => {
                    entry.insert(key.clone(), json!(r));
                    rows.push(format!("| {device} | {key} | {r:.0} | | |"));
                }
                Err(e) => {
                    eprintln!("{device}: {key} skipped: {e}");
                    entry.insert(format!("{key}_error"), json!(e.to_string()));
                }
            }
        }
        report.insert(device.clone(), Value::Object(entry));
    }
    if let Some(python) = opt("--python") {
        let script = opt("--torch-script").unwrap_or_else(|| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../scripts/bench_train_torch.py"
            )
            .into()
        });
        let mut torch = serde_json::Map::new();
        for s in sizes {
            let key = format!("train_topk32_d{}_m{}_b{}", s.d, s.m, s.batch);
            match torch_rate(&python, &script, s, steps) {
                Ok(base) => {
                    torch.insert(key.clone(), json!(base));
                    for device in &devices {
                        if let Some(r) = report[device.as_str()][&key].as_f64() {
                            rows.push(format!(
                                "| {device} vs torch cuda | {key} | {r:.0} | {base:.0} | {:.2}× |",
                                r / base
                            ));
                        }
                    }
                }
                Err(e) => eprintln!("torch {key} skipped: {e}"),
            }
        }
        report.insert("torch_cuda".into(), Value::Object(torch));
    }
    println!("| device | measurement | Prism tokens/s | PyTorch tokens/s | ratio |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    if let Some(path) = opt("--json") {
        let text = serde_json::to_string_pretty(&Value::Object(report)).expect("JSON");
        prism::core::atomic_write(std::path::Path::new(&path), text.as_bytes())?;
    }
    Ok(())
}
