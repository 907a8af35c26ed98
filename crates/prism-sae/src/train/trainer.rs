//! One dictionary's training state and its step.

use prism_core::{HostTensor, PrismError, Result};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::adam::Adam;
use super::architecture::{ArchitectureConfig, Extras};
use super::config::TrainConfig;
use super::engine::{Engine, EngineChoice, Reinit, StepStats, TrainingEngine};
use super::params::Params;

/// What one step measured (the running log's row).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    /// Steps taken, this one included.
    pub step: u64,
    /// Tokens seen, this step's included.
    pub tokens: u64,
    /// Total loss.
    pub loss: f64,
    /// Mean squared error per element (`Σ‖y − ŷ‖² / (n·d_out)`, `y` the input itself for an
    /// autoencoder), in the normalised space.
    pub mse: f64,
    /// Mean non-zero codes per token.
    pub l0: f64,
    /// The sparsity term before its coefficient.
    pub sparsity: f64,
    /// The auxiliary term (AuxK, Gated aux), 0 when absent.
    pub aux: f64,
    /// Features that have not fired for the dead criterion (AuxK's for TopK/BatchTopK,
    /// the resampling window otherwise).
    pub dead: usize,
    /// Learning rate used.
    pub lr: f32,
    /// Features resampled after this step.
    pub resampled: usize,
    /// Held-out measurements, at the steps where convergence is measured (see
    /// [`super::ConvergenceOptions`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out: Option<super::HeldOut>,
}

/// A dictionary being trained: the backend-free training state (schedules, counters,
/// resampling decisions) around an [`Engine`] that holds the parameters and optimiser state.
/// Feed it batches with [`Trainer::step`]; [`Trainer::to_sae`] gives the dictionary to save or
/// evaluate; [`Trainer::on`] moves it to another engine (the host kernels or burn on a device).
///
/// ```
/// use prism_core::{Dictionary, HostTensor};
/// use prism_sae::{ArchitectureConfig, TrainConfig, Trainer};
///
/// let mut config = TrainConfig::new(ArchitectureConfig::topk(4), 8, 32);
/// config.warmup_steps = 1;
/// let mut trainer = Trainer::new(config)?;
/// let batch = HostTensor::new(vec![16, 8], (0..128).map(|i| (i % 7) as f32 - 3.0).collect())?;
/// let first = trainer.step(&batch)?;
/// for _ in 0..20 {
///     trainer.step(&batch)?;
/// }
/// let last = trainer.step(&batch)?;
/// assert!(last.loss < first.loss);
/// assert!(last.l0 <= 4.0);
/// let sae = trainer.to_sae(&prism_core::device("cpu")?)?;
/// assert_eq!((sae.d_in(), sae.d_sae()), (8, 32));
/// # Ok::<(), prism_core::PrismError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Trainer {
    /// The run's configuration.
    pub config: TrainConfig,
    /// Holds the parameters (normalised input space) and optimiser state.
    pub(crate) engine: TrainingEngine,
    /// Steps taken.
    pub step: u64,
    /// Tokens seen.
    pub tokens: u64,
    /// Tokens since each feature last fired.
    pub(crate) tokens_since_fired: Vec<u64>,
    /// Steps since each feature last fired.
    pub(crate) steps_since_fired: Vec<u64>,
    /// Inputs are multiplied by this before training (1 without normalisation).
    pub(crate) input_scale: Option<f32>,
    /// A transcoder's targets are multiplied by this before training (1 without normalisation).
    pub(crate) output_scale: Option<f32>,
    /// BatchTopK's inference threshold (normalised space).
    pub(crate) batch_threshold: Option<f32>,
    /// The lowest loss seen so far (divergence check).
    pub(crate) best_loss: Option<f64>,
}

/// A loss this many times the best loss so far counts as divergence.
const DIVERGENCE_FACTOR: f64 = 1e4;

impl Trainer {
    /// A freshly initialised dictionary: decoder rows random unit vectors (seeded), the encoder
    /// tied to the decoder (a transcoder's, whose widths differ, drawn the same way), biases
    /// zero (TopK/BatchTopK set `b_dec` to the geometric median of the first batch's targets),
    /// JumpReLU thresholds at their initial value, a skip term at zero.
    pub fn new(config: TrainConfig) -> Result<Self> {
        Self::new_on(config, &EngineChoice::Host)
    }

    /// [`Trainer::new`] on the chosen engine (the same initial values on every engine).
    pub fn new_on(config: TrainConfig, engine: &EngineChoice) -> Result<Self> {
        config.validate()?;
        let (d, d_out, m) = (config.d_in, config.output_width(), config.d_sae);
        let mut rng = StdRng::seed_from_u64(config.seed);
        let w_dec: Vec<f32> = (0..m * d_out)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let per_feature = |on: bool, v: f32| if on { vec![v; m] } else { Vec::new() };
        let extras = config.architecture.objective().extras();
        let log_threshold = match extras {
            Extras::Threshold(init) => per_feature(true, init.ln()),
            _ => Vec::new(),
        };
        let gated = extras == Extras::Magnitude;
        let mut params = Params {
            d,
            d_out,
            m,
            w_enc: Vec::new(),
            b_enc: vec![0.0; m],
            w_dec,
            b_dec: vec![0.0; d_out],
            log_threshold,
            r_mag: per_feature(gated, 0.0),
            b_mag: per_feature(gated, 0.0),
            w_skip: if config.skip {
                vec![0.0; d_out * d]
            } else {
                Vec::new()
            },
        };
        params.normalize_decoder();
        params.w_enc = if d_out == d {
            params.w_dec.clone()
        } else {
            let mut rows: Vec<f32> = (0..m * d)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect();
            super::params::unit_rows(&mut rows, d);
            rows
        };
        let adam = Adam::new(&params, config.adam);
        Ok(Self {
            engine: engine.build(params, adam, config.kernel)?,
            step: 0,
            tokens: 0,
            tokens_since_fired: vec![0; m],
            steps_since_fired: vec![0; m],
            input_scale: None,
            output_scale: None,
            batch_threshold: None,
            best_loss: None,
            config,
        })
    }

    /// The objective for the current step: the architecture with its sparsity coefficient
    /// after warm-up.
    pub fn objective(&self) -> ArchitectureConfig {
        let warm = if self.config.sparsity_warmup_steps == 0 {
            1.0
        } else {
            ((self.step + 1) as f32 / self.config.sparsity_warmup_steps as f32).min(1.0)
        };
        self.config.architecture.warmed(warm)
    }

    /// A host copy of the parameters (normalised input space).
    pub fn params(&self) -> Result<Params> {
        self.engine.params()
    }

    /// Replaces the parameters (same shapes), keeping the optimiser state and the engine.
    pub fn set_params(&mut self, params: Params) -> Result<()> {
        let current = self.engine.params()?;
        let shapes = |p: &Params| p.tensors().map(|t| t.len());
        if (params.d, params.m, shapes(&params)) != (current.d, current.m, shapes(&current)) {
            return Err(PrismError::Shape(
                "the new parameters' shapes differ from the dictionary's".into(),
            ));
        }
        let adam = self.engine.optimiser()?;
        self.engine = self
            .engine
            .choice()
            .build(params, adam, self.config.kernel)?;
        Ok(())
    }

    /// The same trainer on another engine: parameters, optimiser state and counters move
    /// unchanged (train on a GPU, continue on the CPU, or the reverse).
    pub fn on(mut self, engine: &EngineChoice) -> Result<Self> {
        let (params, adam) = (self.engine.params()?, self.engine.optimiser()?);
        self.engine = engine.build(params, adam, self.config.kernel)?;
        Ok(self)
    }

    /// Which engine holds the parameters.
    pub fn engine(&self) -> EngineChoice {
        self.engine.choice()
    }

    /// The learning rate for the current step: linear warm-up, then constant, then (if set)
    /// linear decay to zero at `total_steps`.
    pub fn learning_rate(&self) -> f32 {
        let c = &self.config;
        let s = self.step + 1;
        let mut lr = c.lr;
        if c.warmup_steps > 0 && s < c.warmup_steps {
            lr *= s as f32 / c.warmup_steps as f32;
        }
        if let Some(start) = c.decay_start
            && s > start
            && c.total_steps > start
        {
            lr *= (c.total_steps.saturating_sub(s)) as f32 / (c.total_steps - start) as f32;
        }
        lr
    }

    /// Features currently counted dead (see [`StepLog::dead`]).
    pub fn dead_mask(&self) -> Vec<bool> {
        match (
            self.config.architecture.objective().auxk(),
            self.config.resample,
        ) {
            (true, _) => self
                .tokens_since_fired
                .iter()
                .map(|&t| t >= self.config.dead_after_tokens)
                .collect(),
            (false, Some(r)) => self
                .steps_since_fired
                .iter()
                .map(|&s| s >= r.window)
                .collect(),
            _ => self
                .tokens_since_fired
                .iter()
                .map(|&t| t >= self.config.dead_after_tokens)
                .collect(),
        }
    }

    /// One optimisation step on `batch` (`[n, d_in]` activations, raw scale). Non-finite
    /// inputs ([`PrismError::NonFinite`]), a non-finite loss or gradient, or a loss 10⁴ times the
    /// best (`DIVERGENCE_FACTOR`) so far ([`PrismError::Diverged`]) are errors, and leave the
    /// trainer exactly as it was. A transcoder is stepped by [`Trainer::step_with_target`].
    pub fn step(&mut self, batch: &HostTensor) -> Result<StepLog> {
        if self.config.d_out.is_some() {
            return Err(PrismError::InvalidInput(
                "a transcoder learns from pairs of activations: step it with step_with_target"
                    .into(),
            ));
        }
        self.step_on(batch, None)
    }

    /// One optimisation step of a transcoder: `batch` (`[n, d_in]`, the input hook's
    /// activations) and `target` (`[n, d_out]`, the output hook's at the same tokens), raw
    /// scale; errors as [`Trainer::step`]'s.
    pub fn step_with_target(&mut self, batch: &HostTensor, target: &HostTensor) -> Result<StepLog> {
        let [n, d_out] = target.dims2()?;
        let rows = batch.dims2()?[0];
        if n != rows || d_out != self.config.output_width() {
            return Err(PrismError::Shape(format!(
                "a target of {n} rows of {d_out} for {rows} input rows; the dictionary writes \
                 d_out = {}",
                self.config.output_width()
            )));
        }
        self.step_on(batch, Some(target))
    }

    fn step_on(&mut self, batch: &HostTensor, target: Option<&HostTensor>) -> Result<StepLog> {
        let [n, d] = batch.dims2()?;
        if d != self.config.d_in {
            return Err(PrismError::Shape(format!(
                "batch rows have {d} values, the dictionary expects d_in = {}",
                self.config.d_in
            )));
        }
        if n == 0 {
            return Err(PrismError::InvalidInput("empty training batch".into()));
        }
        for (what, t) in [("training input", Some(batch)), ("training target", target)] {
            let Some(t) = t else { continue };
            let width = t.shape[1];
            if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
                return Err(PrismError::NonFinite(format!(
                    "{what} holds {} at token {} of the batch (step {})",
                    t.data[i],
                    i / width,
                    self.step + 1
                )));
            }
        }
        let first = self.step == 0 && self.input_scale.is_none();
        let normalise = self.config.normalize_activations;
        let scale = self
            .input_scale
            .unwrap_or_else(|| normalising_scale(batch, normalise));
        let out_scale = match target {
            None => scale,
            Some(t) => self
                .output_scale
                .unwrap_or_else(|| normalising_scale(t, normalise)),
        };
        let scaled = |t: &HostTensor, c: f32| -> Vec<f32> {
            if c == 1.0 {
                t.data.clone()
            } else {
                t.data.iter().map(|v| v * c).collect()
            }
        };
        let x = scaled(batch, scale);
        let y = target.map(|t| scaled(t, out_scale));
        let d_out = self.config.output_width();
        let mut b_dec_before_init = None;
        if first && self.config.architecture.objective().auxk() {
            b_dec_before_init = Some(self.engine.b_dec()?);
            let median = geometric_median(y.as_deref().unwrap_or(&x), n, d_out, 100);
            self.engine.set_b_dec(&median)?;
        }
        if first
            && self.config.fit_initial_scale
            && self.config.architecture.objective().fits_initial_scale()
        {
            self.fit_initial_scale(&x, y.as_deref(), n)?;
        }
        let dead = self.dead_mask();
        let objective = self.objective();
        let pass = self.engine.forward_backward(
            &objective,
            &x,
            y.as_deref(),
            n,
            &dead,
            self.config.apply_b_dec_to_input,
        )?;
        let diverged = self
            .best_loss
            .is_some_and(|b| pass.loss > DIVERGENCE_FACTOR * b.max(1e-12));
        if !pass.loss.is_finite() || !self.engine.gradients_finite()? || diverged {
            if let Some(b) = b_dec_before_init {
                self.engine.set_b_dec(&b)?;
            }
            return Err(PrismError::Diverged {
                step: self.step + 1,
                loss: pass.loss,
                best: self.best_loss,
                run: None,
                checkpoint: None,
            });
        }
        self.input_scale = Some(scale);
        if target.is_some() {
            self.output_scale = Some(out_scale);
        }
        self.best_loss = Some(self.best_loss.map_or(pass.loss, |b| b.min(pass.loss)));

        for j in 0..self.config.d_sae {
            if pass.fired[j] {
                self.tokens_since_fired[j] = 0;
                self.steps_since_fired[j] = 0;
            } else {
                self.tokens_since_fired[j] += n as u64;
                self.steps_since_fired[j] += 1;
            }
        }
        let lr = self.learning_rate();
        self.engine.update(lr, self.config.grad_clip)?;
        if let Some(tracking) = self.config.architecture.objective().threshold_tracking()
            && self.step >= tracking.start_step
            && let Some(min) = pass.min_selected
        {
            let beta = tracking.beta;
            self.batch_threshold = Some(match self.batch_threshold {
                None => min,
                Some(t) => beta * t + (1.0 - beta) * min,
            });
        }
        self.step += 1;
        self.tokens += n as u64;
        let resampled = match self.config.resample {
            // Resampling stops after 80% of the planned steps so the last features can settle.
            Some(r)
                if self.step.is_multiple_of(r.every)
                    && (self.config.total_steps == 0
                        || self.step * 5 <= self.config.total_steps * 4) =>
            {
                self.resample(&x, y.as_deref(), n, &pass)?
            }
            _ => 0,
        };
        Ok(StepLog {
            step: self.step,
            tokens: self.tokens,
            loss: pass.loss,
            mse: pass.recon / d_out as f64,
            l0: pass.l0,
            sparsity: pass.sparsity,
            aux: pass.aux,
            dead: self.dead_mask().iter().filter(|&&v| v).count(),
            lr,
            resampled,
            held_out: None,
        })
    }

    /// Fits the tied initialisation to the batch `x` (normalised space). With
    /// [`TrainConfig::initial_l0`], each feature's encoder bias first becomes minus its
    /// pre-activation quantile that lets it fire on `initial_l0 / d_sae` of the batch (midway between two rows). Then the
    /// encoder (weights and bias) is scaled by `c* = Σ⟨x − b_dec, x̂⟩ / Σ‖x̂‖²`, `x̂ = codes ·
    /// W_dec` before scaling: ReLU codes are homogeneous in that scale, so `c*` minimises the
    /// batch's squared error. Untouched, a tied initialisation fires about half the features on every
    /// input and reconstructs tens of times the input's norm; its first gradients fill Adam's
    /// second moment and stall training for about a thousand steps (β₂ = 0.999), and its dense
    /// codes make every step slow — both measured (the synthetic convergence test, and
    /// docs/experiments.md).
    /// A transcoder's target `y` takes `x`'s place as what is reconstructed.
    fn fit_initial_scale(&mut self, x: &[f32], y: Option<&[f32]>, n: usize) -> Result<()> {
        use crate::kernel::{View, matmul};
        let mut p = self.engine.params()?;
        let (d, d_out, m) = (p.d, p.d_out, p.m);
        if p.b_enc.iter().any(|&b| b != 0.0) {
            return Ok(());
        }
        let x_in = super::objective::encoder_input(x, &p.b_dec, self.config.apply_b_dec_to_input);
        let mut codes = vec![0f32; n * m];
        matmul(
            View::new(&x_in, n, d),
            View::new(&p.w_enc, m, d).t(),
            &mut codes,
            false,
        );
        let mut bias = vec![0f32; m];
        if let (Some(l0), true) = (self.config.initial_l0, n >= 2) {
            // Minus the midpoint of each feature's k-th and (k+1)-th largest pre-activations,
            // k = n · l0 / m (at least 1): exactly its k largest stay positive, with a margin
            // against rounding (barring ties). Never positive.
            let k = ((n as f64 * l0 as f64 / m as f64).round() as usize).clamp(1, n - 1);
            let mut column = vec![0f32; n];
            for (j, b) in bias.iter_mut().enumerate() {
                for (i, c) in column.iter_mut().enumerate() {
                    *c = codes[i * m + j];
                }
                let (top, next, _) = column.select_nth_unstable_by(k, |a, b| b.total_cmp(a));
                let kth = top.iter().copied().fold(f32::INFINITY, f32::min);
                *b = -(0.5 * (kth + *next)).max(0.0);
            }
            for row in codes.chunks_mut(m) {
                row.iter_mut().zip(&bias).for_each(|(c, b)| *c += b);
            }
        }
        codes.iter_mut().for_each(|c| *c = c.max(0.0));
        let mut x_hat = vec![0f32; n * d_out];
        matmul(
            View::new(&codes, n, m),
            View::new(&p.w_dec, m, d_out),
            &mut x_hat,
            false,
        );
        let target = y
            .unwrap_or(x)
            .chunks(d_out)
            .flat_map(|r| r.iter().zip(&p.b_dec).map(|(a, b)| a - b));
        let (mut dot, mut sq) = (0f64, 0f64);
        for (t, h) in target.zip(&x_hat) {
            dot += t as f64 * *h as f64;
            sq += *h as f64 * *h as f64;
        }
        if dot > 0.0 && sq > 0.0 {
            let c = (dot / sq) as f32;
            p.w_enc.iter_mut().for_each(|w| *w *= c);
            p.b_enc = bias.iter().map(|b| b * c).collect();
            self.set_params(p)?;
        }
        Ok(())
    }

    /// Re-initialises features that have not fired within the resampling window toward inputs
    /// of `x` (normalised space) drawn with probability ∝ squared reconstruction error:
    /// decoder row = the input's direction, encoder row = that direction × 0.2 × the mean
    /// norm of live encoder rows, encoder bias 0, optimiser moments reset. A transcoder's
    /// decoder row is the direction of that token's target `y` less `b_dec`, its encoder row
    /// the input's direction. Returns how many.
    pub(crate) fn resample(
        &mut self,
        x: &[f32],
        y: Option<&[f32]>,
        n: usize,
        pass: &StepStats,
    ) -> Result<usize> {
        let Some(r) = self.config.resample else {
            return Ok(0);
        };
        let (d, d_out, m) = (
            self.config.d_in,
            self.config.output_width(),
            self.config.d_sae,
        );
        let dead: Vec<usize> = (0..m)
            .filter(|&j| self.steps_since_fired[j] >= r.window)
            .collect();
        if dead.is_empty() {
            return Ok(0);
        }
        let alive: Vec<usize> = (0..m)
            .filter(|&j| self.steps_since_fired[j] < r.window)
            .collect();
        let alive_norm = if alive.is_empty() {
            1.0
        } else {
            let norms = self.engine.encoder_row_norms()?;
            alive.iter().map(|&j| norms[j]).sum::<f32>() / alive.len() as f32
        };
        // Weighted sampling without replacement (Efraimidis–Spirakis keys u^(1/w)), seeded
        // by the run's seed and the step so a resumed run draws the same inputs.
        let mut rng =
            StdRng::seed_from_u64(self.config.seed ^ self.step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut keyed: Vec<(f64, usize)> = (0..n)
            .filter(|&i| pass.token_sq_err[i] > 0.0)
            .map(|i| {
                let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                (u.ln() / pass.token_sq_err[i] as f64, i)
            })
            .collect();
        keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let b_dec = self.engine.b_dec()?;
        let mut chosen = Vec::new();
        let unit = |v: Vec<f32>| {
            let norm = v.iter().map(|v| v * v).sum::<f32>().sqrt();
            (norm > 0.0).then(|| v.iter().map(|c| c / norm).collect::<Vec<f32>>())
        };
        for (&j, &(_, i)) in dead.iter().zip(&keyed) {
            let src = &x[i * d..][..d];
            let (decoder, encoder) = match y {
                None => {
                    let centred: Vec<f32> = if self.config.apply_b_dec_to_input {
                        src.iter().zip(&b_dec).map(|(a, b)| a - b).collect()
                    } else {
                        src.to_vec()
                    };
                    let Some(u) = unit(centred) else { continue };
                    (u.clone(), u)
                }
                Some(y) => {
                    let out = &y[i * d_out..][..d_out];
                    let centred = out.iter().zip(&b_dec).map(|(a, b)| a - b).collect();
                    let (Some(dec), Some(enc)) = (unit(centred), unit(src.to_vec())) else {
                        continue;
                    };
                    (dec, enc)
                }
            };
            let encoder = encoder.iter().map(|u| u * alive_norm * 0.2).collect();
            chosen.push(Reinit {
                feature: j,
                decoder,
                encoder,
            });
            self.steps_since_fired[j] = 0;
            self.tokens_since_fired[j] = 0;
        }
        self.engine.reinitialise(&chosen)?;
        Ok(chosen.len())
    }

    /// The BatchTopK inference threshold (normalised space), once tracked.
    pub fn batch_threshold(&self) -> Option<f32> {
        self.batch_threshold
    }

    /// The factor inputs are multiplied by (1 until the first step, or without normalisation).
    pub fn input_scale(&self) -> f32 {
        self.input_scale.unwrap_or(1.0)
    }

    /// The factor a transcoder's targets are multiplied by (an autoencoder's are its inputs).
    pub fn output_scale(&self) -> f32 {
        self.output_scale.unwrap_or_else(|| self.input_scale())
    }
}

/// The factor that brings `batch`'s rows to a mean norm of √width (1 when not normalising, or
/// for an all-zero batch).
fn normalising_scale(batch: &HostTensor, normalise: bool) -> f32 {
    let width = batch.shape.get(1).copied().unwrap_or(1).max(1);
    let rows = batch.data.len() / width;
    if !normalise || rows == 0 {
        return 1.0;
    }
    let mean_norm = batch
        .data
        .chunks(width)
        .map(|r| r.iter().map(|v| (v * v) as f64).sum::<f64>().sqrt())
        .sum::<f64>()
        / rows as f64;
    if mean_norm > 0.0 {
        ((width as f64).sqrt() / mean_norm) as f32
    } else {
        1.0
    }
}

/// The geometric median of the rows of `x` `[n, d]` (Weiszfeld's iterations from the mean).
pub fn geometric_median(x: &[f32], n: usize, d: usize, iterations: usize) -> Vec<f32> {
    let mut y: Vec<f64> = vec![0.0; d];
    for r in x.chunks(d) {
        for (a, v) in y.iter_mut().zip(r) {
            *a += *v as f64 / n as f64;
        }
    }
    for _ in 0..iterations {
        let mut num = vec![0f64; d];
        let mut den = 0f64;
        for r in x.chunks(d) {
            let dist = r
                .iter()
                .zip(&y)
                .map(|(a, b)| (*a as f64 - b).powi(2))
                .sum::<f64>()
                .sqrt()
                .max(1e-8);
            for (s, v) in num.iter_mut().zip(r) {
                *s += *v as f64 / dist;
            }
            den += 1.0 / dist;
        }
        let next: Vec<f64> = num.iter().map(|s| s / den).collect();
        let moved = next
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        y = next;
        if moved < 1e-7 {
            break;
        }
    }
    let _ = n;
    y.into_iter().map(|v| v as f32).collect()
}
