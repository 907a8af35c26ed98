//! `prism demo`: the research notes' dictionary experiments end to end on the default assets
//! (SmolLM2-135M-Instruct, the Python documentation), written as a report.
//!
//! 1. Harvest one MLP-output hook point in the middle of the model into a disk cache.
//! 2. From that one stream, train a ReLU+L1 dictionary with a low penalty and 8× expansion
//!    (the notes' "0_8192"), the same configuration with a second seed, and one with a higher
//!    penalty and 32× expansion ("1_32768").
//! 3. Evaluate them on held-out text: every METRICS.md metric, density histograms.
//! 4. Prune the first dictionary's densest features until its L0 matches the sparser one's, and
//!    re-evaluate: does it keep more loss recovered at the same L0?
//! 5. Mean max cosine similarity across seeds.
//! 6. Randomise the model (all weights; all but the embeddings), train the first configuration
//!    on each, compare with the real model's dictionary: MMCS, densities, what features respond
//!    to (single-token features, features firing on > 10% of tokens).
//! 7. A feature browser of every feature of the first dictionary: top contexts from distinct
//!    windows, quantile samples, activation and logit-effect histograms, nearest features.
//! 8. Causal patching on capital-city prompt pairs (GeoNames): exact patching of the residual
//!    stream, attribution patching against it, and a circuit of the first dictionary's features.
//! 9. Truth probes on GeoNames city statements and number comparisons (geometry-of-truth):
//!    accuracy per layer, the generalisation matrix, the first dictionary's features as truth
//!    classifiers, and SHIFT with the city's continent as the confound.

mod patching;
mod probes;
mod report;
mod steps;

use std::path::PathBuf;
use std::time::Instant;

use prism_core::{HookPoint, PrismError, Result};
use prism_models::{Model, Randomization};

pub use report::write_report;
use steps::{DictResult, Stage};

/// `prism demo` arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    /// Small sizes that exercise every step in a few minutes (for CI and a first look).
    #[arg(long)]
    pub quick: bool,
    /// Where the report goes.
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
    /// The model (fetched if it is the default and missing).
    #[arg(long, default_value = "assets/SmolLM2-135M-Instruct.Q4_1.gguf")]
    pub model: PathBuf,
    /// The corpus (fetched if it is the default and missing).
    #[arg(long, default_value = "assets/python-docs")]
    pub data: PathBuf,
    /// GeoNames' country list for the patching step (fetched if it is the default and missing).
    #[arg(long, default_value = "assets/geonames-countries.json")]
    pub countries: PathBuf,
    /// geometry-of-truth's statement datasets for the probing step (built by `prism fetch
    /// cities` if it is the default and missing).
    #[arg(long, default_value = "assets/datasets")]
    pub datasets: PathBuf,
    /// Hook point (default: the MLP output of the middle block).
    #[arg(long)]
    pub hook: Option<String>,
    /// Activation vectors harvested from the real model (default 196608; --quick 16384).
    #[arg(long)]
    pub tokens: Option<u64>,
    /// Held-out tokens for evaluation (default 4096; --quick 1024).
    #[arg(long)]
    pub eval_tokens: Option<u64>,
    /// Passes over the harvested activations when training.
    #[arg(long, default_value_t = 3)]
    pub epochs: u64,
    /// Expansion factors of the two dictionaries.
    #[arg(long, value_delimiter = ',', default_value = "8,32")]
    pub expansion: Vec<usize>,
    /// L1 coefficients of the two dictionaries (low, high).
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub l1: Vec<f32>,
    /// cpu, or wgpu / cuda in a build with that cargo feature: where the model runs (harvest,
    /// evaluation) and where dictionaries train (the host kernels on `cpu`, burn elsewhere).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Keep the activation caches (they are deleted at the end otherwise).
    #[arg(long)]
    pub keep_cache: bool,
}

/// Sizes for one run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    pub hook: String,
    pub ctx: usize,
    pub tokens: u64,
    pub random_tokens: u64,
    pub eval_tokens: u64,
    pub batch: usize,
    pub epochs: u64,
    pub sizes: [usize; 2],
    pub l1: [f32; 2],
    /// Held-out tokens the feature browser scans.
    pub browser_tokens: u64,
    pub context_features: usize,
    /// Statements probed per dataset (cities, neg_cities, larger_than) …
    pub probe_statements: usize,
    /// … every how many blocks …
    pub probe_stride: usize,
    /// … and `cities` statements SHIFT samples its sets from, heads it may ablate, random
    /// baseline trials.
    pub shift_statements: usize,
    pub shift_heads: usize,
    pub shift_trials: usize,
}

impl DemoArgs {
    fn plan(&self, model: &Model) -> Result<Plan> {
        let c = model.config();
        let hook = self
            .hook
            .clone()
            .unwrap_or_else(|| format!("blocks.{}.hook_mlp_out", c.n_layers / 2));
        hook.parse::<HookPoint>()?.validate(&c.shape())?;
        if self.expansion.len() != 2 || self.l1.len() != 2 {
            return Err(PrismError::InvalidInput(
                "--expansion and --l1 take two values each (first and second dictionary)".into(),
            ));
        }
        let tokens = self
            .tokens
            .unwrap_or(if self.quick { 16_384 } else { 196_608 });
        Ok(Plan {
            hook,
            ctx: 128,
            tokens,
            random_tokens: tokens / 2,
            eval_tokens: self
                .eval_tokens
                .unwrap_or(if self.quick { 1024 } else { 4096 }),
            batch: if self.quick { 256 } else { 1024 },
            epochs: self.epochs.max(1),
            sizes: [self.expansion[0] * c.d_model, self.expansion[1] * c.d_model],
            l1: [self.l1[0], self.l1[1]],
            browser_tokens: if self.quick { 4096 } else { 32_768 },
            context_features: if self.quick { 16 } else { 48 },
            probe_statements: if self.quick { 96 } else { 640 },
            probe_stride: if self.quick { 10 } else { 1 },
            shift_statements: if self.quick { 400 } else { 2200 },
            shift_heads: if self.quick { 2 } else { 6 },
            shift_trials: if self.quick { 1 } else { 3 },
        })
    }
}

/// Rough durations on a 2-core CPU, to print before starting.
fn expected_seconds(plan: &Plan, layers: usize, hook_layer: usize) -> f64 {
    let depth = (hook_layer + 1) as f64 / layers as f64;
    let harvest_rate = 400.0 / depth; // tokens/s for a pass that stops at the hook
    let harvest = (plan.tokens + 2 * plan.random_tokens) as f64 / harvest_rate;
    let train_tokens =
        plan.epochs as f64 * (3.0 * plan.tokens as f64 + 2.0 * plan.random_tokens as f64);
    let train = train_tokens / 20_000.0 + plan.epochs as f64 * plan.tokens as f64 / 6_000.0;
    let eval = 6.0 * plan.eval_tokens as f64 * 3.5 / 380.0;
    let contexts =
        4.0 * plan.eval_tokens as f64 / 380.0 + plan.browser_tokens as f64 / harvest_rate;
    // Probes: ~16 tokens a statement (padded), every block; SHIFT: about 60 % of its sample in
    // the sets, 3 + trials passes up to the hook.
    let probes = 3.0 * plan.probe_statements as f64 * 16.0 / 400.0
        + (3 + plan.shift_trials) as f64 * 0.6 * plan.shift_statements as f64 * 16.0 / harvest_rate;
    harvest + train + eval + contexts + probes + 20.0
}

pub fn demo(args: &DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let device = prism_core::device(&args.device)?;
    steps::ensure_assets(args)?;
    let model = Model::load(&args.model, &device)?;
    let plan = args.plan(&model)?;
    let hook: HookPoint = plan.hook.parse()?;
    let hook_layer = plan
        .hook
        .split('.')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let eta = expected_seconds(&plan, model.config().n_layers, hook_layer);
    eprintln!(
        "prism demo{}: {} at {} — {} harvested tokens, dictionaries of {} and {} features; \
         expected ≈ {:.0} min on a 2-core CPU",
        if args.quick { " --quick" } else { "" },
        args.model.display(),
        plan.hook,
        plan.tokens,
        plan.sizes[0],
        plan.sizes[1],
        (eta / 60.0).ceil()
    );
    std::fs::create_dir_all(&args.out).map_err(|e| PrismError::io(&args.out, e))?;
    let corpus = prism_cache::Corpus::open(&args.data, "text")?;
    let stage = Stage::new(args, &plan, &corpus, &device, hook)?;

    // 1–2. Harvest the real model and train three dictionaries from one stream.
    let real_cache = stage.harvest(&model, "real", plan.tokens)?;
    let names = ["small_low_l1", "small_low_l1_seed1", "large_high_l1"];
    let configs = [
        (names[0], plan.sizes[0], plan.l1[0], 0),
        (names[1], plan.sizes[0], plan.l1[0], 1),
        (names[2], plan.sizes[1], plan.l1[1], 4),
    ];
    let trained = stage.train(&real_cache, &configs)?;

    // 3. Evaluate on held-out windows.
    // The randomised models' caches (below) take a shorter prefix of the same window stream,
    // so text after the real cache's training data is held out from all of them.
    let eval_windows = stage.eval_windows(&model, &[&real_cache], plan.eval_tokens)?;
    let mut results: Vec<DictResult> = Vec::new();
    for (name, dir) in &trained {
        results.push(stage.evaluate(&model, name, dir, &eval_windows, "real model")?);
    }

    // 4. Prune the first dictionary to the second's L0.
    let target_l0 = results[2].eval.reconstruction.l0;
    results.push(stage.prune_to(&model, &results[0], target_l0, &eval_windows)?);

    // 6. Randomised models: same configuration as the first dictionary.
    let mut random = Vec::new();
    // Their own seeds: a dictionary that barely moved from a shared initialisation would
    // otherwise look similar for the wrong reason.
    for (mode, label, seed) in [
        (Randomization::All, "random_all", 2),
        (Randomization::AllButEmbeddings, "random_but_embeddings", 3),
    ] {
        let rmodel = model.randomized(mode, 1234)?;
        let cache = stage.harvest(&rmodel, label, plan.random_tokens)?;
        let trained = stage.train(&cache, &[(label, plan.sizes[0], plan.l1[0], seed)])?;
        let (name, dir) = &trained[0];
        let mut r = stage.evaluate(&rmodel, name, dir, &eval_windows, &format!("{label} model"))?;
        r.traits = Some(stage.feature_traits(&rmodel, &r, &eval_windows)?);
        random.push(r);
    }
    results[0].traits = Some(stage.feature_traits(&model, &results[0], &eval_windows)?);

    // 5 and 6. Similarities.
    let sims = stage.similarities(&results, &random)?;

    let density_overlay = stage.density_overlay(results.iter().chain(&random))?;

    // 7. Feature browser for every feature of the first dictionary, on more held-out text.
    let browser_windows = stage.eval_windows(&model, &[&real_cache], plan.browser_tokens)?;
    let browser = stage.browser(&model, &results[0], &results[1], &browser_windows)?;

    // 8. Causal patching and a circuit of the first dictionary's features.
    let patching = patching::patching_step(
        &model,
        &args.countries,
        &results[0],
        hook,
        args.quick,
        &args.out,
    )?;

    // 9. Truth probes and SHIFT.
    let probes = probes::probes_step(&model, &args.datasets, &results[0], hook, &plan, &args.out)?;

    if !args.keep_cache {
        let _ = std::fs::remove_dir_all(args.out.join("cache"));
    }
    let findings = report::Findings {
        results: &results,
        random: &random,
        sims: &sims,
        browser: &browser,
        density_overlay: &density_overlay,
        patching: &patching,
        probes: &probes,
    };
    let report = write_report(&args.out, &plan, &findings, t0.elapsed().as_secs_f64())?;
    eprintln!(
        "report written to {} in {:.1} min",
        report.display(),
        t0.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}
