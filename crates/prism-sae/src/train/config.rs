//! Training configuration, with dictionary_learning's defaults.

use prism_core::{PrismError, Result};
use serde::{Deserialize, Serialize};

use super::adam::AdamConfig;
use super::architecture::ArchitectureConfig;
use crate::kernel::KernelMode;

/// Dead-feature resampling for ReLU dictionaries (Anthropic's recipe as dictionary_learning
/// implements it).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResampleConfig {
    /// Resample after every this many steps.
    pub every: u64,
    /// A feature is dead when it has not fired in this many most recent steps.
    pub window: u64,
}

/// Everything that determines a training run (with the same inputs, the same result).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Architecture and sparsity hyper-parameters.
    pub architecture: ArchitectureConfig,
    /// Input width.
    pub d_in: usize,
    /// Number of features.
    pub d_sae: usize,
    /// Peak learning rate.
    pub lr: f32,
    /// Linear learning-rate warm-up from 0 (steps).
    pub warmup_steps: u64,
    /// Linear decay to 0 from this step to `total_steps`, if set.
    pub decay_start: Option<u64>,
    /// Planned number of steps (for the decay schedule).
    pub total_steps: u64,
    /// Linear warm-up of the sparsity coefficient from 0 (steps).
    pub sparsity_warmup_steps: u64,
    /// Seed of the initialisation and of resampling.
    pub seed: u64,
    /// Scale inputs so that E‖x‖ = √d (estimated on the first batch); folded back on save.
    pub normalize_activations: bool,
    /// Dead-feature resampling (ReLU by default; any architecture may use it). It stops after
    /// 80% of `total_steps` when that is set.
    pub resample: Option<ResampleConfig>,
    /// Clip the gradient's global norm to this.
    pub grad_clip: Option<f32>,
    /// TopK/BatchTopK: a latent is dead for AuxK after this many tokens without firing.
    pub dead_after_tokens: u64,
    /// Subtract `b_dec` from inputs before encoding.
    pub apply_b_dec_to_input: bool,
    /// The hook point the activations come from.
    pub hook_name: Option<String>,
    /// Sparse or dense products.
    pub kernel: KernelMode,
    /// Adam's hyper-parameters.
    pub adam: AdamConfig,
    /// ReLU: before the first step, scale the tied encoder by the factor that minimises the
    /// first batch's reconstruction error (see [`super::Trainer::step`]).
    #[serde(default)]
    pub fit_initial_scale: bool,
    /// ReLU, with `fit_initial_scale`: also set each feature's encoder bias so that it fires on
    /// `initial_l0 / d_sae` of the first batch's tokens (the codes start this sparse instead of
    /// with half the features active on every token).
    #[serde(default)]
    pub initial_l0: Option<f32>,
    /// A transcoder's output width: the features reconstruct another hook's activations (fed
    /// to [`super::Trainer::step_with_target`]) instead of the input. `None` for an autoencoder.
    #[serde(default)]
    pub d_out: Option<usize>,
    /// A skip transcoder: the output also has a trained linear term `x · W_skipᵀ` (starting at
    /// zero). ReLU, TopK, BatchTopK and JumpReLU train one.
    #[serde(default)]
    pub skip: bool,
    /// A transcoder's output hook point.
    #[serde(default)]
    pub hook_name_out: Option<String>,
}

/// The L0 a ReLU dictionary starts from in [`TrainConfig::for_steps`]' schedule.
pub const INITIAL_L0: f32 = 64.0;

impl TrainConfig {
    /// dictionary_learning's defaults for `architecture` at `d_in → d_sae`: Adam, lr 1e-3
    /// (TopK/BatchTopK: 2e-4/√(m/2¹⁴), JumpReLU 7e-5) with 1000 warm-up steps, sparsity
    /// warm-up over 1000 steps (ReLU/JumpReLU/Gated), unit-norm decoder rows, AuxK dead after
    /// 10M tokens, resampling every 25 000 steps for ReLU; and gradient clipping at norm 1 for
    /// every architecture (dictionary_learning clips TopK only; without it the large first
    /// gradients inflate Adam's second moments and ReLU/JumpReLU/Gated dictionaries barely
    /// move for thousands of steps — measured on the synthetic recovery task).
    pub fn new(architecture: ArchitectureConfig, d_in: usize, d_sae: usize) -> Self {
        let defaults = architecture.objective().defaults(d_sae);
        Self {
            architecture,
            d_in,
            d_sae,
            lr: defaults.lr,
            warmup_steps: 1000,
            decay_start: None,
            total_steps: 0,
            sparsity_warmup_steps: defaults.sparsity_warmup_steps,
            seed: 0,
            normalize_activations: false,
            resample: defaults.resample,
            grad_clip: Some(1.0),
            dead_after_tokens: 10_000_000,
            apply_b_dec_to_input: defaults.apply_b_dec_to_input,
            hook_name: None,
            kernel: KernelMode::Auto,
            adam: AdamConfig::default(),
            fit_initial_scale: false,
            initial_l0: None,
            d_out: None,
            skip: false,
            hook_name_out: None,
        }
    }

    /// The same run as a transcoder writing `d_out` values (with a trained skip term when
    /// `skip`): the input is no longer centred by `b_dec`, which is the output's bias.
    ///
    /// ```
    /// use prism_sae::{ArchitectureConfig, TrainConfig};
    /// let c = TrainConfig::new(ArchitectureConfig::topk(8), 64, 512).with_output(96, true);
    /// assert_eq!((c.output_width(), c.skip, c.apply_b_dec_to_input), (96, true, false));
    /// assert!(c.validate().is_ok());
    /// // Gated's aux reconstruction would need the skip term too: refused.
    /// let g = TrainConfig::new(ArchitectureConfig::gated(0.1), 64, 512).with_output(96, true);
    /// assert!(g.validate().is_err());
    /// ```
    pub fn with_output(mut self, d_out: usize, skip: bool) -> Self {
        self.d_out = Some(d_out);
        self.skip = skip;
        self.apply_b_dec_to_input = false;
        self
    }

    /// What the decoder writes: `d_out` for a transcoder, `d_in` for an autoencoder.
    pub fn output_width(&self) -> usize {
        self.d_out.unwrap_or(self.d_in)
    }

    /// Whether this trains a transcoder (another hook's target, or a skip term).
    pub fn is_transcoder(&self) -> bool {
        self.d_out.is_some() || self.skip
    }

    /// The schedule for a run of `steps` steps, the one the CLI, the demo and the examples use:
    /// [`TrainConfig::new`]'s defaults with the learning-rate and sparsity warm-ups at
    /// min(1000, steps/10), no learning-rate decay (so a run extended with more steps resumes
    /// exactly; set `decay_start` for dictionary_learning's optional linear decay), BatchTopK's
    /// threshold tracked from min(1000, steps/2), and —
    /// for the architectures that resample (ReLU) — resampling every steps/5 steps of features
    /// dead for steps/10 and the initial encoder scaled to the first batch
    /// ([`TrainConfig::fit_initial_scale`]).
    ///
    /// ```
    /// use prism_sae::{ArchitectureConfig, TrainConfig};
    /// let c = TrainConfig::for_steps(ArchitectureConfig::relu(1.0), 64, 512, 5000);
    /// assert_eq!((c.warmup_steps, c.decay_start, c.total_steps), (500, None, 5000));
    /// let r = c.resample.unwrap();
    /// assert_eq!((r.every, r.window), (1000, 500));
    /// ```
    pub fn for_steps(
        architecture: ArchitectureConfig,
        d_in: usize,
        d_sae: usize,
        steps: u64,
    ) -> Self {
        let mut c = TrainConfig::new(architecture, d_in, d_sae);
        let steps = steps.max(1);
        let warm = (steps / 10).clamp(1, 1000);
        c.warmup_steps = warm;
        if c.sparsity_warmup_steps > 0 {
            c.sparsity_warmup_steps = warm;
        }
        c.total_steps = steps;
        c.architecture.objective_mut().fit_to_steps(steps);
        c.fit_initial_scale = c.architecture.objective().fits_initial_scale();
        c.initial_l0 = c.fit_initial_scale.then_some(INITIAL_L0);
        c.resample = c.resample.map(|_| ResampleConfig {
            every: (steps / 5).max(1),
            window: (steps / 10).max(1),
        });
        c
    }

    /// Checks that the numbers make sense together.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(PrismError::InvalidInput(m));
        if self.d_in == 0 || self.d_sae == 0 || self.d_out == Some(0) {
            return bad(format!(
                "d_in ({}), d_out ({}) and d_sae ({}) must be positive",
                self.d_in,
                self.output_width(),
                self.d_sae
            ));
        }
        super::objective::check_output(
            &self.architecture,
            self.d_in,
            self.output_width(),
            self.skip,
            self.apply_b_dec_to_input,
        )?;
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate {} must be positive", self.lr));
        }
        self.architecture.validate(self.d_sae)
    }
}
