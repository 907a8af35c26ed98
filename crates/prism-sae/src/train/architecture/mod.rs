//! The trainable dictionary architectures: one file each, behind one trait.
//!
//! An architecture is everything that differs between dictionaries: its sparsity
//! hyper-parameters and dictionary_learning's defaults for them, the per-feature parameters it
//! adds to [`Params`], how codes are selected, its loss and the gradient of that loss — once on
//! the host kernels ([`Objective::host_pass`]) and once as burn tensor products
//! ([`Objective::burn_pass`]) — and the inference dictionary it exports to. What every
//! architecture shares (the encoder product, the main reconstruction, the encoder's gradient,
//! Adam, resampling, checkpoints) lives in the engines and the trainer, written once.
//!
//! Adding an architecture is one file here implementing [`Objective`] plus one line in the
//! [`registry!`] below (its name, its default value, and the names it is parsed from).

use burn::tensor::{Device, Tensor, TensorData};
use prism_core::{PrismError, Result};
use serde::{Deserialize, Serialize};

use super::burn_engine::{BurnLoss, BurnStep, Slots};
use super::config::ResampleConfig;
use super::objective::{HostLoss, HostStep};
use super::params::Params;
use crate::Architecture;

mod auxk;
mod batch_topk;
mod gated;
mod jumprelu;
mod matryoshka;
mod relu;
mod topk;

pub use batch_topk::BatchTopK;
pub use gated::Gated;
pub use jumprelu::JumpRelu;
pub use matryoshka::Matryoshka;
pub use relu::Relu;
pub use topk::TopK;

/// The defaults an architecture brings to [`super::TrainConfig::new`] (dictionary_learning's
/// per-trainer defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Defaults {
    /// Peak learning rate.
    pub lr: f32,
    /// Dead-feature resampling.
    pub resample: Option<ResampleConfig>,
    /// Steps of linear sparsity-coefficient warm-up (0 for none).
    pub sparsity_warmup_steps: u64,
    /// Whether `b_dec` is subtracted from the input before encoding.
    pub apply_b_dec_to_input: bool,
}

/// dictionary_learning's TopK learning rate, `2·10⁻⁴ / √(m / 2¹⁴)` (its "1/√m scaling law").
pub(crate) fn topk_lr(d_sae: usize) -> f32 {
    2e-4 / ((d_sae as f32) / 16384.0).sqrt()
}

/// Which per-feature parameters of [`Params`] an architecture has besides `b_enc`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Extras {
    /// None (`log_threshold`, `r_mag`, `b_mag` empty).
    None,
    /// `log_threshold`, starting at the log of this threshold.
    Threshold(f32),
    /// The magnitude path `r_mag`, `b_mag`, starting at zero.
    Magnitude,
}

/// The knob a command line's sparsity option sets.
pub(crate) enum SparsityKnob<'a> {
    /// Active latents per token.
    K(&'a mut usize),
    /// The coefficient of the sparsity penalty.
    Penalty(&'a mut f32),
}

/// BatchTopK's inference threshold: a running mean of the smallest selected activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ThresholdTracking {
    /// Decay of the running mean.
    pub beta: f32,
    /// The 0-based step from which it is tracked.
    pub start_step: u64,
}

/// What exporting reads besides the parameters: the trainer's state and the device.
pub(crate) struct ExportState<'a> {
    /// The tracked inference threshold (normalised space), if any.
    pub batch_threshold: Option<f32>,
    /// Steps taken.
    pub step: u64,
    /// The factor inputs were multiplied by (folded back on export).
    pub input_scale: f32,
    /// Where the dictionary's tensors go.
    pub device: &'a Device,
}

impl ExportState<'_> {
    /// A `[1, m]` row on the export device.
    pub fn row(&self, values: Vec<f32>) -> Tensor<2> {
        let m = values.len();
        Tensor::from_data(TensorData::new(values, [1, m]), self.device)
    }
}

/// What an architecture exports to: the inference form and `cfg.json` entries of its own.
pub(crate) struct Exported {
    /// How the saved dictionary encodes.
    pub architecture: Architecture,
    /// Extra `cfg.json` entries (e.g. BatchTopK's `batch_k`).
    pub cfg: Vec<(&'static str, serde_json::Value)>,
}

/// One dictionary architecture's training objective and policy.
pub(crate) trait Objective {
    /// dictionary_learning's defaults for a dictionary of `d_sae` features.
    fn defaults(&self, d_sae: usize) -> Defaults;
    /// Adapts step-dependent settings to a run of `steps` steps ([`super::TrainConfig::for_steps`]).
    fn fit_to_steps(&mut self, _steps: u64) {}
    /// The knob `--k` / `--l1` set (and the sparsity warm-up scales, when it is a penalty).
    fn sparsity(&mut self) -> SparsityKnob<'_>;
    /// Checks the hyper-parameters besides the sparsity knob (which
    /// [`ArchitectureConfig::validate`] checks for all) against `d_sae`.
    fn validate(&self, _d_sae: usize) -> Result<()> {
        Ok(())
    }
    /// The per-feature parameters besides `b_enc`.
    fn extras(&self) -> Extras {
        Extras::None
    }
    /// Whether AuxK applies: dead latents are counted in tokens (not resampling steps), and
    /// `b_dec` starts at the geometric median of the first batch.
    fn auxk(&self) -> bool {
        false
    }
    /// Whether the tied initial encoder is scaled to the first batch
    /// ([`super::TrainConfig::fit_initial_scale`]).
    fn fits_initial_scale(&self) -> bool {
        false
    }
    /// Whether a skip transcoder's linear term can be trained with it: only where the main
    /// reconstruction is the one term that reads the target (Gated's aux reconstruction and
    /// Matryoshka's prefixes would each need the skip term too).
    fn trains_skip(&self) -> bool {
        true
    }
    /// The inference threshold's tracking, for batch-level selections.
    fn threshold_tracking(&self) -> Option<ThresholdTracking> {
        None
    }
    /// Codes, loss and gradients on the host kernels; see [`HostStep`].
    fn host_pass(&self, s: &HostStep<'_>, grads: &mut Params) -> HostLoss;
    /// Codes, loss and gradients as burn tensors; see [`BurnStep`].
    fn burn_pass(&self, s: &BurnStep<'_>, grads: &mut Slots) -> Result<BurnLoss>;
    /// The inference dictionary (normalised space undone by the caller for the shared tensors;
    /// the architecture's own per-feature tensors are unscaled here).
    fn export(&self, p: &Params, state: &ExportState<'_>) -> Result<Exported>;
}

/// Declares [`ArchitectureConfig`] from one line per architecture:
/// `Variant(Type) = "serde and CLI name", default value, ["other names"]`.
macro_rules! registry {
    ($($(#[$doc:meta])* $variant:ident($ty:ty) = $name:literal, $default:expr, [$($alias:literal),*];)*) => {
        /// Which dictionary to train, and its sparsity hyper-parameters: one variant per
        /// architecture module. Serialised as `{"kind": NAME, ...its fields}`.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind")]
        pub enum ArchitectureConfig {
            $($(#[$doc])* #[serde(rename = $name)] $variant($ty),)*
        }

        impl ArchitectureConfig {
            /// The name used on the command line and in files.
            pub fn name(&self) -> &'static str {
                match self { $(ArchitectureConfig::$variant(_) => $name,)* }
            }

            pub(crate) fn objective(&self) -> &dyn Objective {
                match self { $(ArchitectureConfig::$variant(a) => a,)* }
            }

            pub(crate) fn objective_mut(&mut self) -> &mut dyn Objective {
                match self { $(ArchitectureConfig::$variant(a) => a,)* }
            }

            /// Every architecture's name, as [`str::parse`] accepts it.
            pub const NAMES: &[&str] = &[$($name),*];

            /// The architecture called `name` (or one of its other names) with its default
            /// hyper-parameters.
            fn by_name(name: &str) -> Option<Self> {
                $(if name == $name $(|| name == $alias)* {
                    return Some(ArchitectureConfig::$variant($default));
                })*
                None
            }
        }
    };
}

registry! {
    /// ReLU codes with an L1 penalty (dictionary_learning's "standard").
    Relu(Relu) = "relu", Relu { l1: 0.1 }, ["standard"];
    /// TopK with AuxK on dead latents.
    TopK(TopK) = "topk", TopK::new(32), [];
    /// BatchTopK; at inference a global threshold replaces the batch selection.
    BatchTopK(BatchTopK) = "batchtopk", BatchTopK::new(32), [];
    /// JumpReLU with a learned per-feature threshold and an L0 penalty.
    JumpRelu(JumpRelu) = "jumprelu", JumpRelu::new(0.1), [];
    /// Gated SAE.
    Gated(Gated) = "gated", Gated { l1: 0.1 }, [];
    /// Matryoshka BatchTopK: nested prefixes of the dictionary each reconstruct the input.
    Matryoshka(Matryoshka) = "matryoshka_batchtopk", Matryoshka::new(32), ["matryoshka"];
}

impl ArchitectureConfig {
    /// ReLU with L1 coefficient `l1`.
    pub fn relu(l1: f32) -> Self {
        ArchitectureConfig::Relu(Relu { l1 })
    }

    /// Gated with L1 coefficient `l1` on the gate.
    pub fn gated(l1: f32) -> Self {
        ArchitectureConfig::Gated(Gated { l1 })
    }

    /// TopK with AuxK α = 1/32.
    pub fn topk(k: usize) -> Self {
        ArchitectureConfig::TopK(TopK::new(k))
    }

    /// BatchTopK with AuxK α = 1/32 and dictionary_learning's threshold tracking.
    pub fn batch_topk(k: usize) -> Self {
        ArchitectureConfig::BatchTopK(BatchTopK::new(k))
    }

    /// JumpReLU with bandwidth and initial threshold 0.001.
    pub fn jumprelu(l0_coeff: f32) -> Self {
        ArchitectureConfig::JumpRelu(JumpRelu::new(l0_coeff))
    }

    /// Matryoshka BatchTopK with dictionary_learning's group fractions and equal weights.
    pub fn matryoshka(k: usize) -> Self {
        ArchitectureConfig::Matryoshka(Matryoshka::new(k))
    }

    /// The same architecture with its sparsity penalty (L1, L0) multiplied by `factor` — the
    /// objective of a step during the sparsity warm-up. TopK and BatchTopK are unchanged.
    ///
    /// ```
    /// use prism_sae::ArchitectureConfig;
    /// let a = ArchitectureConfig::relu(0.5).warmed(0.2);
    /// assert_eq!(a, ArchitectureConfig::relu(0.1));
    /// assert_eq!(ArchitectureConfig::topk(8).warmed(0.0), ArchitectureConfig::topk(8));
    /// ```
    pub fn warmed(&self, factor: f32) -> Self {
        let mut out = self.clone();
        if let SparsityKnob::Penalty(p) = out.objective_mut().sparsity() {
            *p *= factor;
        }
        out
    }

    /// The same architecture with its sparsity set: `k` for the TopK family, the penalty
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
        match (out.objective_mut().sparsity(), k, penalty) {
            (SparsityKnob::K(_), _, Some(_)) => {
                return unused("sparsity penalty (they keep k latents)");
            }
            (SparsityKnob::Penalty(_), Some(_), _) => {
                return unused("k (they use a sparsity penalty)");
            }
            (SparsityKnob::K(kk), Some(k), None) => *kk = k,
            (SparsityKnob::Penalty(p), None, Some(v)) => *p = v,
            _ => {}
        }
        Ok(out)
    }
}

impl ArchitectureConfig {
    /// Checks the hyper-parameters against a dictionary of `d_sae` features: `k` within
    /// `1..=d_sae`, a sparsity penalty ≥ 0, and what the architecture itself requires.
    pub(crate) fn validate(&self, d_sae: usize) -> Result<()> {
        match self.clone().objective_mut().sparsity() {
            SparsityKnob::K(&mut k) if k == 0 || k > d_sae => {
                return Err(PrismError::InvalidInput(format!(
                    "k = {k} must be between 1 and d_sae = {d_sae}"
                )));
            }
            SparsityKnob::Penalty(&mut p) if p.is_nan() || p < 0.0 => {
                return Err(PrismError::InvalidInput(format!(
                    "the {} sparsity coefficient {p} must be ≥ 0",
                    self.name()
                )));
            }
            _ => {}
        }
        self.objective().validate(d_sae)
    }
}

impl std::fmt::Display for ArchitectureConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses an architecture name (`relu` or `standard`, `topk`, `batchtopk`, `jumprelu`,
/// `gated`, `matryoshka_batchtopk` or `matryoshka`) with default sparsity: k = 32, L1 (and
/// JumpReLU's L0 coefficient) 0.1.
impl std::str::FromStr for ArchitectureConfig {
    type Err = PrismError;
    fn from_str(s: &str) -> Result<Self> {
        let name = s.trim().to_ascii_lowercase();
        ArchitectureConfig::by_name(&name).ok_or_else(|| {
            PrismError::InvalidInput(format!(
                "unknown architecture `{name}` ({})",
                ArchitectureConfig::NAMES.join(", ")
            ))
        })
    }
}
