//! How long the run will take, from throughput measured on this machine before it starts, and
//! where the time went once it has run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use prism_cache::{Corpus, Harvester, Manifest, WindowConfig, windows};
use prism_core::{HookPoint, HostTensor, PrismError, Result};
use prism_models::{Model, TokenBatch};
use prism_sae::train::{EngineChoice, Trainer, resume_step};

use super::Plan;
use super::steps::dictionary_config;

/// Rates measured at the start.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Throughput {
    /// Tokens per second of a forward pass that stops at the hook (harvest, feature scans).
    pub to_hook: f64,
    /// Tokens per second of a whole forward pass with logits (evaluation, probes, patching).
    pub full: f64,
    /// Training tokens per second of one dictionary of each size, at the first steps.
    pub train: [f64; 2],
}

/// The whole run's mean training rate over the rate of steps 2–3: the held-out measurements,
/// the epochs' reshuffles and codes that grow denser than at the start cost the rest. Measured
/// on the default run of 2026-11-28 (docs/BENCHMARKS.md): 349 s expected at the start's rates,
/// 489 s taken (0.71); on 2026-11-29, with the selection and element-wise work of the step
/// faster, 217 s expected at 0.71 and 199 s taken.
const TRAIN_SPEEDUP: f64 = 0.77;

/// The evaluation stage's wall time over the forward passes counted (metrics, histograms, the
/// pruning search, the browser's logit effects): 235 s counted, 304 s taken on the 2026-11-28
/// run (1.3); on 2026-11-29, its runs scored without reading logits back, 88 s expected at 1.3
/// and 61 s taken.
const EVALUATE_OVERHEAD: f64 = 0.9;

/// The patching step's work in tokens of whole-model forward passes (its pairs, sweeps and
/// integrated-gradient steps): the quick run's 40 s at 62 tokens/s, the default run's 110 s at
/// 183 tokens/s.
const PATCHING_FULL_TOKENS: [f64; 2] = [2_500.0, 20_000.0];

/// Measures the forward rates on 8 windows of the corpus and the training rate of each
/// dictionary size on their activations.
pub fn measure(
    model: &Model,
    corpus: &Corpus,
    plan: &Plan,
    hook: HookPoint,
    engine: &EngineChoice,
) -> Result<Throughput> {
    let window = WindowConfig {
        ctx: plan.ctx,
        ..Default::default()
    };
    let wins: Vec<Vec<u32>> = windows(corpus, &model.tokenizer, window)?
        .take(8)
        .collect::<Result<_>>()?;
    if wins.is_empty() {
        return Err(PrismError::InvalidInput(
            "the corpus gave no windows".into(),
        ));
    }
    let tokens = (wins.len() * plan.ctx) as f64;
    let harvester = Harvester::new(model, vec![hook], false)?;
    harvester.harvest(&wins)?; // warm-up: allocations, lazy initialisation
    let t = Instant::now();
    let acts = harvester.harvest(&wins)?.acts.remove(0);
    let to_hook = tokens / t.elapsed().as_secs_f64();
    let batch = TokenBatch::from_sequences(&wins, model.pad_id())?;
    let t = Instant::now();
    model.forward(&batch, &prism_core::Hooks::new())?.logits()?;
    let full = tokens / t.elapsed().as_secs_f64();
    let [rows, d] = acts.dims2()?;
    let n = plan.batch.min(rows);
    let x = HostTensor::new(vec![n, d], acts.data[..n * d].to_vec())?;
    let mut train = [0.0; 2];
    for (rate, (&m, &l1)) in train.iter_mut().zip(plan.sizes.iter().zip(&plan.l1)) {
        let mut trainer = Trainer::new_on(dictionary_config(plan, d, m, l1, 0, 1000), engine)?;
        trainer.step(&x)?;
        let t = Instant::now();
        for _ in 0..2 {
            trainer.step(&x)?;
        }
        *rate = 2.0 * n as f64 / t.elapsed().as_secs_f64();
    }
    Ok(Throughput {
        to_hook,
        full,
        train,
    })
}

/// What a resumed run (`--resume`) finds already done in its `--out`.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Done {
    /// Rows already in the three caches.
    pub harvested: u64,
    /// Training steps already taken, summed over the dictionaries of each size.
    pub steps: [u64; 2],
}

impl std::fmt::Display for Done {
    /// `N activation rows already cached, S and S′ dictionary steps already taken at the two
    /// sizes` — how the start and the report say what a resumed run found.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} activation rows already cached, {} and {} dictionary steps already taken at the \
             two sizes",
            self.harvested, self.steps[0], self.steps[1]
        )
    }
}

/// Reads what `out` already holds of `plan`'s caches and training groups (what `--resume`
/// continues from): each cache's stored rows and each group's [`resume_step`].
pub fn done(out: &Path, plan: &Plan) -> Result<Done> {
    let mut done = Done::default();
    for group in super::GROUPS {
        if let Ok(m) = Manifest::load(&out.join("cache").join(group.label)) {
            done.harvested += m.token_count;
        }
        let specs = group.specs(plan);
        let dirs: Vec<PathBuf> = specs
            .iter()
            .map(|s| out.join("dictionaries").join(&s.name))
            .collect();
        if let Some(step) = resume_step(&dirs)? {
            for spec in &specs {
                done.steps[usize::from(spec.features != plan.sizes[0])] += step;
            }
        }
    }
    Ok(done)
}

/// The expected seconds of each phase of `plan` at rates `r`, less what is `done`: harvest,
/// train, evaluate (with the feature scans and the browser), patching and probes.
pub fn expected_seconds(plan: &Plan, r: &Throughput, done: &Done) -> [(&'static str, f64); 4] {
    let seeds = plan.seeds as f64;
    let harvested = (plan.tokens + 2 * plan.random_tokens + 3 * plan.held_out)
        .saturating_sub(done.harvested) as f64;
    let harvest = harvested / r.to_hook;
    let per_token = |dicts: f64, size: usize| dicts / r.train[size];
    let trained = |size: usize| (done.steps[size] * plan.batch as u64) as f64 / r.train[size];
    let train_tokens = plan.epochs as f64
        * (plan.tokens as f64 * (per_token(seeds, 0) + per_token(plan.large_seeds as f64, 1))
            + 2.0 * plan.random_tokens as f64 * per_token(seeds, 0));
    let train = (train_tokens - trained(0) - trained(1)).max(0.0) / TRAIN_SPEEDUP;
    // A pass from the hook on costs a full pass less one up to the hook.
    let rest = (1.0 / r.full - 1.0 / r.to_hook).max(0.2 / r.full);
    let e = plan.eval_tokens as f64;
    // Evaluations: four clean passes (real, pruned, two randomised models), one zeroed and one
    // spliced pass per dictionary from the hook on; feature scans up to the hook for every seed
    // of the three models; the browser scan.
    let dicts = 3.0 * seeds + plan.large_seeds as f64;
    let evaluate = EVALUATE_OVERHEAD
        * (4.0 * e / r.full
            + (4.0 + dicts + seeds) * e * rest
            + 3.0 * seeds * e / r.to_hook
            + plan.browser_tokens as f64 / r.to_hook);
    let probes = 3.0 * plan.probe_statements as f64 * 16.0 / r.full
        + (3 + plan.shift_trials) as f64 * 0.6 * plan.shift_statements as f64 * 16.0 / r.to_hook
        + PATCHING_FULL_TOKENS[usize::from(plan.preset != super::Preset::Quick)] / r.full;
    [
        ("harvest", harvest),
        ("train", train),
        ("evaluate", evaluate),
        ("patching and probes", probes),
    ]
}

/// Wall time per phase, as the run goes.
#[derive(Debug, Default, serde::Serialize)]
pub struct Timings {
    /// `(phase, seconds)` in the order they ran; a phase that runs several times is summed.
    pub phases: Vec<(String, f64)>,
}

impl Timings {
    /// Runs `f`, adding its wall time to `phase`.
    pub fn time<T>(&mut self, phase: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let t = Instant::now();
        let out = f()?;
        let s = t.elapsed().as_secs_f64();
        match self.phases.iter_mut().find(|(p, _)| p == phase) {
            Some((_, total)) => *total += s,
            None => self.phases.push((phase.to_string(), s)),
        }
        Ok(out)
    }
}
