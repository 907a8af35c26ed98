//! The feature browser: scan cost, page size, open time (`bench_stats --only browser`).
//!
//! 1. Scanning every feature of a dictionary over held-out tokens (`scan_features`: forward to
//!    the hook, encode, stream the codes through the collector) against the part any scan must
//!    pay — the same forwards and encodings with the codes read back to the host — on the same
//!    windows, in the same process.
//! 2. Writing the browser: time, files and bytes.
//! 3. Opening it in headless Chromium (when `/usr/bin/chromium` exists): the time from
//!    navigation to the first feature's panel, measured by the page itself.
//!
//! ```text
//! cargo run --release --example bench_stats -- --only browser --sae DIR [--tokens 32768] [--model PATH] [--data DIR] [--out DIR]
//! ```
//! Without `--sae`, a random TopK dictionary of 32 × d_model features (k = 32) at the middle
//! block's `hook_mlp_out` stands in.

use super::args;

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use prism::core::{Dictionary, HookPoint, Hooks, HostTensor, PrismError};
use prism::{Model, Result, TokenBatch};
use prism_cache::{Corpus, WindowConfig, windows};
use prism_sae::{Architecture, Sae};
use prism_stats::{BrowserOptions, build_feature_browser};

/// Runs the three measurements and prints them.
pub fn run(args: &args::Args) -> Result<()> {
    let device = prism::core::device("cpu")?;
    let model = Model::load(args.model().as_ref(), &device)?;
    let data = args
        .opt("--data")
        .unwrap_or_else(|| "assets/python-docs".into());
    let tokens: usize = args
        .opt("--tokens")
        .and_then(|t| t.parse().ok())
        .unwrap_or(32_768);
    let out =
        std::path::PathBuf::from(args.opt("--out").unwrap_or_else(|| "target/browser".into()));
    let dm = model.config().d_model;
    let (sae, hook) = match args.opt("--sae") {
        Some(dir) => {
            let sae = Sae::open(dir.as_ref(), &device)?;
            let hook: HookPoint = sae.hook_name().unwrap_or_default().parse()?;
            (sae, hook)
        }
        None => (
            Sae::new(
                Architecture::TopK { k: 32 },
                Tensor::random([dm, 32 * dm], Distribution::Normal(0.0, 0.05), &device),
                Tensor::zeros([1, 32 * dm], &device),
                Tensor::random([32 * dm, dm], Distribution::Normal(0.0, 0.05), &device),
                Tensor::zeros([1, dm], &device),
            )?,
            HookPoint::MlpOut(model.config().n_layers / 2),
        ),
    };
    let corpus = Corpus::open(data.as_ref(), "text")?;
    let wins: Vec<Vec<u32>> = windows(&corpus, &model.tokenizer, WindowConfig::default())?
        .take(tokens / 128)
        .collect::<Result<_>>()?;
    println!(
        "{} features at {hook}, {} windows of 128 tokens",
        sae.d_sae(),
        wins.len()
    );

    // 1. The floor: forward to the hook, encode, codes to the host.
    let t0 = Instant::now();
    for group in wins.chunks(8) {
        let batch = TokenBatch::from_sequences(group, model.pad_id())?;
        let mut acts = model
            .transformer
            .capture_only(&batch, &Hooks::new().capture(hook))?;
        let x = acts.take(hook)?.into_rank3()?;
        let [b, s, d] = x.dims();
        std::hint::black_box(HostTensor::from_burn(sae.encode(x.reshape([b * s, d])))?);
    }
    let floor = t0.elapsed().as_secs_f64();

    // 1–2. The browser (the scan, logit effects, nearest features, the files).
    let page = out.join("features.html");
    let t0 = Instant::now();
    let mut scanned = 0.0;
    let title = format!("bench: {hook}");
    let browser = build_feature_browser(
        &model,
        &sae,
        hook,
        &wins,
        &page,
        &BrowserOptions {
            title: &title,
            ..BrowserOptions::default()
        },
        |done| {
            if done == wins.len() {
                scanned = t0.elapsed().as_secs_f64();
            }
        },
    )?;
    let total = t0.elapsed().as_secs_f64();
    println!(
        "scan {scanned:.1}s = {:.2}× the forwards + encodings alone ({floor:.1}s); logit effects, nearest features and files {:.1}s",
        scanned / floor,
        total - scanned
    );
    println!(
        "browser: {} data files, {:.1} MB ({:.0} bytes per feature); {}",
        browser.files.files,
        browser.files.bytes as f64 / 1e6,
        browser.files.bytes as f64 / sae.d_sae() as f64,
        page.display()
    );

    // 3. Open time, as the page measures it (navigation start → first feature shown).
    if let Some(chrome) = prism_testkit::chromium::find() {
        let profile = out.join("chromium-profile");
        let abs = std::path::absolute(&page).map_err(|e| PrismError::io(&page, e))?;
        for run in 0..3 {
            // No virtual time: the page's clock is the real one.
            let command = prism_testkit::chromium::command(&chrome, &profile, 1280);
            let report = prism_testkit::chromium::selftest(
                command,
                &format!("file://{}?selftest", abs.display()),
            )
            .unwrap_or_else(|e| e);
            println!("open {run}: {report}");
        }
    }
    Ok(())
}
