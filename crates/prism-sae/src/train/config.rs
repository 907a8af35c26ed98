//! Training configuration, with dictionary_learning's defaults.

use prism_core::{PrismError, Result};
use serde::{Deserialize, Serialize};

use super::adam::AdamConfig;
use crate::kernel::KernelMode;

/// Which dictionary to train, and its sparsity hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ArchitectureConfig {
    /// ReLU codes with an L1 penalty (dictionary_learning's "standard").
    Relu {
        /// L1 coefficient λ.
        l1: f32,
    },
    /// TopK with AuxK on dead latents.
    TopK {
        /// Active latents per token.
        k: usize,
        /// AuxK weight (1/32).
        auxk_alpha: f32,
    },
    /// BatchTopK; at inference a global threshold (a running mean of the smallest selected
    /// activation) replaces the batch selection.
    BatchTopK {
        /// Mean active latents per token.
        k: usize,
        /// AuxK weight (1/32).
        auxk_alpha: f32,
        /// Decay of the threshold's running mean (0.999).
        threshold_beta: f32,
        /// Step from which the threshold is tracked (1000).
        threshold_start_step: u64,
    },
    /// JumpReLU with a learned per-feature threshold and an L0 penalty.
    JumpRelu {
        /// L0 coefficient.
        l0_coeff: f32,
        /// Rectangle-kernel width of the straight-through estimator (0.001).
        bandwidth: f32,
        /// Initial threshold (0.001).
        init_threshold: f32,
    },
    /// Gated SAE.
    Gated {
        /// L1 coefficient on the gate.
        l1: f32,
    },
}

impl ArchitectureConfig {
    /// The name used on the command line and in files.
    pub fn name(&self) -> &'static str {
        match self {
            ArchitectureConfig::Relu { .. } => "relu",
            ArchitectureConfig::TopK { .. } => "topk",
            ArchitectureConfig::BatchTopK { .. } => "batchtopk",
            ArchitectureConfig::JumpRelu { .. } => "jumprelu",
            ArchitectureConfig::Gated { .. } => "gated",
        }
    }

    /// The same architecture with its sparsity penalty (L1, L0) multiplied by `factor` — the
    /// objective of a step during the sparsity warm-up. TopK and BatchTopK are unchanged.
    ///
    /// ```
    /// use prism_sae::ArchitectureConfig;
    /// let a = ArchitectureConfig::Relu { l1: 0.5 }.warmed(0.2);
    /// assert_eq!(a, ArchitectureConfig::Relu { l1: 0.1 });
    /// assert_eq!(ArchitectureConfig::topk(8).warmed(0.0), ArchitectureConfig::topk(8));
    /// ```
    pub fn warmed(&self, factor: f32) -> Self {
        let mut out = self.clone();
        match &mut out {
            ArchitectureConfig::Relu { l1 } | ArchitectureConfig::Gated { l1 } => *l1 *= factor,
            ArchitectureConfig::JumpRelu { l0_coeff, .. } => *l0_coeff *= factor,
            ArchitectureConfig::TopK { .. } | ArchitectureConfig::BatchTopK { .. } => {}
        }
        out
    }

    /// TopK with AuxK α = 1/32.
    pub fn topk(k: usize) -> Self {
        ArchitectureConfig::TopK {
            k,
            auxk_alpha: 1.0 / 32.0,
        }
    }

    /// BatchTopK with AuxK α = 1/32 and dictionary_learning's threshold tracking.
    pub fn batch_topk(k: usize) -> Self {
        ArchitectureConfig::BatchTopK {
            k,
            auxk_alpha: 1.0 / 32.0,
            threshold_beta: 0.999,
            threshold_start_step: 1000,
        }
    }

    /// JumpReLU with bandwidth and initial threshold 0.001.
    pub fn jumprelu(l0_coeff: f32) -> Self {
        ArchitectureConfig::JumpRelu {
            l0_coeff,
            bandwidth: 0.001,
            init_threshold: 0.001,
        }
    }

    /// The same architecture with its sparsity set: `k` for TopK/BatchTopK, the penalty
    /// (L1 for ReLU/Gated, L0 for JumpReLU) otherwise. A value the architecture does not use is
    /// an error, so a CLI cannot silently ignore `--l1` on a TopK run.
    ///
    /// ```
    /// use prism_sae::ArchitectureConfig;
    /// let a: ArchitectureConfig = "topk".parse().unwrap();
    /// assert_eq!(a.with_sparsity(Some(16), None).unwrap(), ArchitectureConfig::topk(16));
    /// assert!(a.with_sparsity(None, Some(0.5)).is_err());
    /// ```
    pub fn with_sparsity(&self, k: Option<usize>, penalty: Option<f32>) -> Result<Self> {
        let mut out = self.clone();
        let unused = |what: &str| {
            Err(PrismError::InvalidInput(format!(
                "{} dictionaries take no {what}",
                self.name()
            )))
        };
        match (&mut out, k, penalty) {
            (
                ArchitectureConfig::TopK { k: kk, .. }
                | ArchitectureConfig::BatchTopK { k: kk, .. },
                k,
                None,
            ) => {
                if let Some(k) = k {
                    *kk = k;
                }
            }
            (
                ArchitectureConfig::TopK { .. } | ArchitectureConfig::BatchTopK { .. },
                _,
                Some(_),
            ) => {
                return unused("sparsity penalty (they keep k latents)");
            }
            (_, Some(_), _) => return unused("k (they use a sparsity penalty)"),
            (ArchitectureConfig::Relu { l1 } | ArchitectureConfig::Gated { l1 }, None, p) => {
                if let Some(p) = p {
                    *l1 = p;
                }
            }
            (ArchitectureConfig::JumpRelu { l0_coeff, .. }, None, p) => {
                if let Some(p) = p {
                    *l0_coeff = p;
                }
            }
        }
        Ok(out)
    }
}

impl std::fmt::Display for ArchitectureConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses an architecture name (`relu` or `standard`, `topk`, `batchtopk`, `jumprelu`,
/// `gated`) with default sparsity: k = 32, L1 (and JumpReLU's L0 coefficient) 0.1.
impl std::str::FromStr for ArchitectureConfig {
    type Err = PrismError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "relu" | "standard" => ArchitectureConfig::Relu { l1: 0.1 },
            "topk" => ArchitectureConfig::topk(32),
            "batchtopk" => ArchitectureConfig::batch_topk(32),
            "jumprelu" => ArchitectureConfig::jumprelu(0.1),
            "gated" => ArchitectureConfig::Gated { l1: 0.1 },
            other => {
                return Err(PrismError::InvalidInput(format!(
                    "unknown architecture `{other}` (relu, topk, batchtopk, jumprelu, gated)"
                )));
            }
        })
    }
}

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
        let topk_lr = 2e-4 / ((d_sae as f32) / 16384.0).sqrt();
        let (lr, resample, sparsity_warmup, b_dec_in) = match architecture {
            ArchitectureConfig::Relu { .. } => (
                1e-3,
                Some(ResampleConfig {
                    every: 25_000,
                    window: 12_500,
                }),
                1000,
                true,
            ),
            ArchitectureConfig::TopK { .. } | ArchitectureConfig::BatchTopK { .. } => {
                (topk_lr, None, 0, true)
            }
            ArchitectureConfig::JumpRelu { .. } => (7e-5, None, 1000, false),
            ArchitectureConfig::Gated { .. } => (1e-3, None, 1000, true),
        };
        Self {
            architecture,
            d_in,
            d_sae,
            lr,
            warmup_steps: 1000,
            decay_start: None,
            total_steps: 0,
            sparsity_warmup_steps: sparsity_warmup,
            seed: 0,
            normalize_activations: false,
            resample,
            grad_clip: Some(1.0),
            dead_after_tokens: 10_000_000,
            apply_b_dec_to_input: b_dec_in,
            hook_name: None,
            kernel: KernelMode::Auto,
            adam: AdamConfig::default(),
            fit_initial_scale: false,
            initial_l0: None,
        }
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
    /// let c = TrainConfig::for_steps(ArchitectureConfig::Relu { l1: 1.0 }, 64, 512, 5000);
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
        if let ArchitectureConfig::BatchTopK {
            threshold_start_step,
            ..
        } = &mut c.architecture
        {
            *threshold_start_step = (*threshold_start_step).min(steps / 2);
        }
        c.fit_initial_scale = matches!(c.architecture, ArchitectureConfig::Relu { .. });
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
        if self.d_in == 0 || self.d_sae == 0 {
            return bad(format!(
                "d_in ({}) and d_sae ({}) must be positive",
                self.d_in, self.d_sae
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate {} must be positive", self.lr));
        }
        match self.architecture {
            ArchitectureConfig::TopK { k, .. } | ArchitectureConfig::BatchTopK { k, .. }
                if k == 0 || k > self.d_sae =>
            {
                bad(format!(
                    "k = {k} must be between 1 and d_sae = {}",
                    self.d_sae
                ))
            }
            ArchitectureConfig::Relu { l1 } | ArchitectureConfig::Gated { l1 }
                if l1.is_nan() || l1 < 0.0 =>
            {
                bad(format!("the L1 coefficient {l1} must be ≥ 0"))
            }
            ArchitectureConfig::JumpRelu {
                bandwidth,
                init_threshold,
                ..
            } if !(bandwidth > 0.0 && init_threshold > 0.0) => bad(format!(
                "JumpReLU bandwidth ({bandwidth}) and initial threshold ({init_threshold}) must be positive"
            )),
            _ => Ok(()),
        }
    }
}
