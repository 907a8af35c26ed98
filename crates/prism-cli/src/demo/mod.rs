//! `prism demo`: the research notes' dictionary experiments end to end on the default assets
//! (SmolLM2-135M-Instruct, the Python documentation), written as a report.
//!
//! 1. Harvest one MLP-output hook point in the middle of the model into a disk cache; its last
//!    rows are held out for the convergence measurements.
//! 2. From that one stream (several epochs when it is short), train a ReLU+L1 dictionary with a
//!    low penalty and 8× expansion (the notes' "0_8192") under every seed of the preset, and one
//!    with a higher penalty and 32× expansion ("1_32768"); held-out variance explained, L0,
//!    alive and dense features and the seeds' MMCS are measured at token counts ×√2 apart.
//! 3. Evaluate them on held-out text: every metric of docs/metrics.md, density histograms.
//! 4. Prune each 8× dictionary's densest features until its L0 matches the sparser one's, and
//!    re-evaluate: does it keep more loss recovered at the same L0?
//! 5. Mean max cosine similarity across seeds (all features and features alive in both).
//! 6. Randomise the model (all weights; all but the embeddings), train the first configuration
//!    on each under every seed, compare with the real model's dictionaries: MMCS, densities,
//!    what features respond to (single-token features, features firing on > 10% of tokens).
//! 7. A feature browser of every feature of the first dictionary: top contexts from distinct
//!    windows, quantile samples, activation and logit-effect histograms, nearest features.
//! 8. Causal patching on capital-city prompt pairs (GeoNames): exact patching of the residual
//!    stream, attribution patching against it, and a circuit of the first dictionary's features.
//! 9. Truth probes on GeoNames city statements and number comparisons (geometry-of-truth):
//!    accuracy per layer, the generalisation matrix, the first dictionary's features as truth
//!    classifiers, and SHIFT with the city's continent as the confound.
//!
//! The report sets each finding next to the notes' claim, with its spread over seeds and a
//! verdict (reproduced, not reproduced, or not yet converged — with the curve that shows it).

mod estimate;
mod patching;
mod probes;
mod report;
mod steps;

use std::path::PathBuf;
use std::time::Instant;

use prism_core::{HookPoint, PrismError, Result};
use prism_models::{Model, Randomization};

use estimate::Timings;
pub use report::write_report;
use steps::{DictResult, Stage};

/// How big a run: `default` fits in 30 minutes on a 2-core CPU, `long` is sized for a GPU or an
/// overnight CPU run, `quick` exercises every step in a few minutes (CI, a first look).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Every step at small sizes.
    Quick,
    /// ≤ 30 minutes on a 2-core CPU (25.8 min measured on an AVX2 EPYC, 7.3 on an AVX-512 Xeon).
    Default,
    /// Sized for the curves to flatten: ~9.5 h on a 2-core AVX2 CPU, ~3 h on a 2-core AVX-512
    /// one (nine tenths of it training), by the demo's own estimate; it prints its estimate for
    /// the machine and device it runs on before it starts.
    Long,
}

impl Preset {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Quick => "quick",
            Preset::Default => "default",
            Preset::Long => "long",
        }
    }
}

/// `prism demo` arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    /// The run's size (see docs/experiments.md for what each trains and how long it takes).
    #[arg(long, value_enum, default_value = "default")]
    pub preset: Preset,
    /// The same as `--preset quick`.
    #[arg(long, conflicts_with = "preset")]
    pub quick: bool,
    /// Where the report goes.
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
    /// The model: a path (HF directory or GGUF file), or `smollm2` / `gemma3` for the fetched
    /// SmolLM2-135M-Instruct / Gemma 3 270M (fetched if missing, as the default is).
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
    /// Distinct activation vectors harvested from the real model (default: the preset's).
    #[arg(long)]
    pub tokens: Option<u64>,
    /// Held-out tokens for evaluation (default: the preset's).
    #[arg(long)]
    pub eval_tokens: Option<u64>,
    /// Passes over the harvested activations when training (default: the preset's).
    #[arg(long)]
    pub epochs: Option<u64>,
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
    /// Continue a killed run in the same `--out`: finished caches are reused and partial ones
    /// continued (as always), and training resumes exactly from each group's last checkpoint
    /// (written every `checkpoint_every` steps of the plan) instead of starting again;
    /// evaluation and everything after it are redone.
    #[arg(long)]
    pub resume: bool,
}

/// Sizes for one run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    pub preset: Preset,
    pub hook: String,
    pub ctx: usize,
    /// Distinct real-model tokens trained on (the cache holds `held_out` more).
    pub tokens: u64,
    /// … and from each randomised model.
    pub random_tokens: u64,
    /// The cache's last rows, never trained on: convergence is measured on them.
    pub held_out: u64,
    pub eval_tokens: u64,
    pub batch: usize,
    pub epochs: u64,
    /// Training steps between checkpoints (each group also writes one at its end).
    pub checkpoint_every: u64,
    pub lr: f32,
    /// Seeds of every configuration (the findings' spread is over them).
    pub seeds: u64,
    /// Seeds of the large dictionary (the most expensive to train).
    pub large_seeds: u64,
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
    fn preset(&self) -> Preset {
        if self.quick {
            Preset::Quick
        } else {
            self.preset
        }
    }

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
        let preset = self.preset();
        let pick = |quick: u64, default: u64, long: u64| match preset {
            Preset::Quick => quick,
            Preset::Default => default,
            Preset::Long => long,
        };
        let tokens = self
            .tokens
            .unwrap_or_else(|| pick(16_384, 65_536, 1_048_576));
        let small = preset == Preset::Quick;
        let batch = pick(256, 1024, 1024) as usize;
        Ok(Plan {
            preset,
            hook,
            ctx: 128,
            tokens,
            random_tokens: tokens / 2,
            held_out: pick(1024, 2048, 4096),
            eval_tokens: self.eval_tokens.unwrap_or_else(|| pick(1024, 2048, 8192)),
            batch,
            epochs: self.epochs.unwrap_or_else(|| pick(3, 4, 8)).max(1),
            checkpoint_every: pick(32, 128, 512),
            lr: learning_rate(batch),
            seeds: pick(2, 3, 3),
            large_seeds: pick(1, 1, 3),
            sizes: [self.expansion[0] * c.d_model, self.expansion[1] * c.d_model],
            l1: [self.l1[0], self.l1[1]],
            browser_tokens: pick(4096, 16_384, 65_536),
            context_features: if small { 16 } else { 48 },
            probe_statements: pick(96, 320, 640) as usize,
            probe_stride: if small { 10 } else { 1 },
            shift_statements: pick(400, 1100, 2200) as usize,
            shift_heads: if small { 2 } else { 6 },
            shift_trials: if small { 1 } else { 3 },
        })
    }
}

/// The demo's learning rate for a batch size: 4e-3 at 1024, scaled with √batch. Chosen by the
/// sweep in docs/experiments.md (8×, L1 = 1, two seeds, 524 288 tokens): at batches of 1024,
/// 1e-3 reached seeds' MMCS 0.39 and 4e-3 0.52 at the same held-out variance explained; at
/// batches of 256, 2e-3 reached 0.53 and 8e-3 killed features (L0 17, a third dead).
fn learning_rate(batch: usize) -> f32 {
    4e-3 * (batch as f32 / 1024.0).sqrt()
}

/// One of the demo's caches and the dictionaries trained on it.
#[derive(Clone, Copy, Debug)]
struct Group {
    /// The cache's directory under `cache/` (and the group's label in plots).
    label: &'static str,
    /// The model it is harvested from: the real one, or a randomised copy.
    model: Option<Randomization>,
    /// The small dictionaries' base name.
    base: &'static str,
    /// The seed of the first small dictionary.
    first_seed: u64,
    /// Whether the large configuration is trained too.
    large: bool,
}

/// The real model's group, then the two randomised models' (their own seeds: a dictionary that
/// barely moved from a shared initialisation would look similar for the wrong reason).
const GROUPS: [Group; 3] = [
    Group {
        label: "real",
        model: None,
        base: "small_low_l1",
        first_seed: 0,
        large: true,
    },
    Group {
        label: "random_all",
        model: Some(Randomization::All),
        base: "random_all",
        first_seed: 10,
        large: false,
    },
    Group {
        label: "random_but_embeddings",
        model: Some(Randomization::AllButEmbeddings),
        base: "random_but_embeddings",
        first_seed: 20,
        large: false,
    },
];

impl Group {
    /// The dictionaries trained on it: each seed of the small configuration (and, on the real
    /// model, of the large one).
    fn specs(&self, plan: &Plan) -> Vec<steps::DictSpec> {
        let spec = |name: String, size: usize, seed: u64| steps::DictSpec {
            name,
            features: plan.sizes[size],
            l1: plan.l1[size],
            seed,
        };
        let small = (0..plan.seeds).map(|i| self.first_seed + i);
        let mut out: Vec<_> = small
            .map(|seed| spec(format!("{}_s{seed}", self.base), 0, seed))
            .collect();
        if self.large {
            let large = (0..plan.large_seeds).map(|i| self.first_seed + 4 + i);
            out.extend(large.map(|seed| spec(format!("large_high_l1_s{seed}"), 1, seed)));
        }
        out
    }
}

pub fn demo(args: &DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let device = prism_core::device(&args.device)?;
    let args = &steps::with_named_model(args)?;
    steps::ensure_assets(args)?;
    let model = Model::load(&args.model, &device)?;
    let plan = args.plan(&model)?;
    // Before anything is measured or written: a second demo on the same --out stops here.
    let _lock = prism_core::DirLock::acquire(&args.out)?;
    let hook: HookPoint = plan.hook.parse()?;
    let corpus = prism_cache::Corpus::open(&args.data, "text")?;
    let stage = Stage::new(args, &plan, &corpus, &device, hook)?;
    let rates = estimate::measure(&model, &corpus, &plan, hook, stage.engine())?;
    let done = if args.resume {
        estimate::done(&args.out, &plan)?
    } else {
        estimate::Done::default()
    };
    let expected = estimate::expected_seconds(&plan, &rates, &done);
    let total: f64 = expected.iter().map(|(_, s)| s).sum();
    eprintln!(
        "prism demo --preset {}: {} at {} — {} distinct tokens × {} epochs, {} seeds of {} \
         features (L1 {}) and {} of {} (L1 {}), the first configuration also on two randomised \
         models",
        plan.preset.name(),
        args.model.display(),
        plan.hook,
        plan.tokens,
        plan.epochs,
        plan.seeds,
        plan.sizes[0],
        plan.l1[0],
        plan.large_seeds,
        plan.sizes[1],
        plan.l1[1],
    );
    if done != estimate::Done::default() {
        eprintln!(
            "resuming in {}: {done} (the estimate below is what is left)",
            args.out.display()
        );
    }
    eprintln!(
        "measured here: {:.0} tok/s to the hook, {:.0} tok/s whole model, training {:.0} and \
         {:.0} tok/s per dictionary; expected ≈ {:.0} min ({})",
        rates.to_hook,
        rates.full,
        rates.train[0],
        rates.train[1],
        (total / 60.0).ceil(),
        expected
            .iter()
            .map(|(p, s)| format!("{p} {:.1}", s / 60.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    std::fs::create_dir_all(&args.out).map_err(|e| PrismError::io(&args.out, e))?;
    let mut time = Timings::default();

    // 1–2. Harvest the real model; train every seed of both configurations from one stream.
    let held = plan.held_out;
    let real = GROUPS[0];
    let real_cache = time.time("harvest", || {
        stage.harvest(&model, real.label, plan.tokens + held)
    })?;
    let real_group = time.time("train", || {
        stage.train(&real_cache, &real.specs(&plan), real.label)
    })?;

    // 3. Evaluate on held-out windows (after every cache's training data: the randomised
    // models' caches take a shorter prefix of the same window stream).
    let eval_windows = stage.eval_windows(&model, &[&real_cache], plan.eval_tokens)?;
    let results = time.time("evaluate", || {
        stage.evaluate_all(&model, &real_group.dicts, &eval_windows, "real model")
    })?;
    let seeds = plan.seeds as usize;
    let (small, large) = results.split_at(seeds);

    // 4. Prune each seed of the small dictionary to the first large one's L0.
    let target_l0 = large[0].eval.reconstruction.l0;
    let pruned = time.time("evaluate", || {
        stage.prune_all(&model, small, target_l0, &eval_windows)
    })?;

    // 6. Randomised models: the small configuration, every seed.
    let mut random: Vec<Vec<DictResult>> = Vec::new();
    let mut groups = vec![(real.label.to_string(), real_group)];
    for g in &GROUPS[1..] {
        let Some(mode) = g.model else { continue };
        let label = g.label;
        let rmodel = model.randomized(mode, 1234)?;
        let cache = time.time("harvest", || {
            stage.harvest(&rmodel, label, plan.random_tokens + held)
        })?;
        let group = time.time("train", || stage.train(&cache, &g.specs(&plan), label))?;
        let mut rs = time.time("evaluate", || {
            stage.evaluate_all(
                &rmodel,
                &group.dicts,
                &eval_windows,
                &format!("{label} model"),
            )
        })?;
        for r in &mut rs {
            r.traits = Some(time.time("evaluate", || {
                stage.feature_traits(&rmodel, r, &eval_windows)
            })?);
        }
        random.push(rs);
        groups.push((label.to_string(), group));
    }
    let mut results = results;
    for r in &mut results[..seeds] {
        r.traits = Some(time.time("evaluate", || {
            stage.feature_traits(&model, r, &eval_windows)
        })?);
    }
    let (small, large) = results.split_at(seeds);

    // 5 and 6. Similarities: every pair of seeds, each seed against the randomised models'
    // dictionary of the same rank, and the two sizes.
    let mut sims = Vec::new();
    for i in 0..seeds {
        for j in i + 1..seeds {
            sims.push(stage.similarity("seeds", &small[i], &small[j])?);
        }
    }
    for rs in &random {
        for (a, b) in small.iter().zip(rs) {
            let kind = b.on.trim_end_matches(" model");
            sims.push(stage.similarity(kind, a, b)?);
        }
    }
    sims.push(stage.similarity("sizes", &small[0], &large[0])?);

    let all_random = random.iter().flatten();
    let density_overlay = stage.density_overlay(results.iter().chain(&pruned).chain(all_random))?;

    // 7. Feature browser for every feature of the first dictionary, on more held-out text.
    let browser_windows = stage.eval_windows(&model, &[&real_cache], plan.browser_tokens)?;
    let browser = time.time("feature browser", || {
        stage.browser(&model, &small[0], &small[1], &browser_windows)
    })?;

    // 8. Causal patching and a circuit of the first dictionary's features.
    let patching = time.time("patching", || {
        patching::patching_step(
            &model,
            &args.countries,
            &small[0],
            hook,
            plan.preset == Preset::Quick,
            &args.out,
        )
    })?;

    // 9. Truth probes and SHIFT.
    let probes = time.time("probes and SHIFT", || {
        probes::probes_step(&model, &args.datasets, &small[0], hook, &plan, &args.out)
    })?;

    if !args.keep_cache {
        let _ = std::fs::remove_dir_all(args.out.join("cache"));
    }
    let findings = report::Findings {
        results: &results,
        pruned: &pruned,
        random: &random,
        groups: &groups,
        sims: &sims,
        browser: &browser,
        density_overlay: &density_overlay,
        patching: &patching,
        probes: &probes,
        rates: &rates,
        expected: &expected,
        timings: &time,
        resumed_from: &done,
    };
    let report = write_report(&args.out, &plan, &findings, t0.elapsed().as_secs_f64())?;
    eprintln!(
        "report written to {} in {:.1} min (expected {:.0})",
        report.display(),
        t0.elapsed().as_secs_f64() / 60.0,
        (total / 60.0).ceil()
    );
    Ok(())
}
