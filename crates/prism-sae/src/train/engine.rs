//! The seam between the backend-free training state ([`super::Trainer`]: schedules, warm-ups,
//! dead-feature counters, the divergence check, BatchTopK's running threshold, which features
//! to resample and toward which inputs) and where the parameters live and the arithmetic runs.
//!
//! An [`Engine`] owns the parameters, their gradients and Adam's moments, and does a step's
//! forward/backward pass, the update, the re-initialisation of chosen features, and the
//! export to host memory that checkpoints and dictionaries are written from — so a checkpoint
//! written by one engine resumes on the other. Two engines exist: [`HostEngine`] (the dedicated
//! CPU kernels, sparse where codes are sparse) and [`BurnEngine`] (burn tensors on any device:
//! `flex`, `wgpu`, `cuda`).

use burn::tensor::Device;
use prism_core::Result;

use super::adam::Adam;
use super::architecture::ArchitectureConfig;
use super::burn_engine::BurnEngine;
use super::host_engine::HostEngine;
use super::params::Params;
use crate::kernel::KernelMode;

/// What one forward/backward pass measured, in host memory (the trainer's counters, logs and
/// resampling decisions are made from it).
#[derive(Clone, Debug, PartialEq)]
pub struct StepStats {
    /// Total loss.
    pub loss: f64,
    /// `Σ‖y − ŷ‖² / n` (`y` the target: the input itself for an autoencoder).
    pub recon: f64,
    /// The sparsity term (before its coefficient).
    pub sparsity: f64,
    /// The auxiliary term (AuxK before α, Gated's aux reconstruction), 0 when absent.
    pub aux: f64,
    /// Mean non-zero codes per token.
    pub l0: f64,
    /// Whether each feature was non-zero on some token of the batch.
    pub fired: Vec<bool>,
    /// Squared reconstruction error per token (resampling draws from it).
    pub token_sq_err: Vec<f32>,
    /// BatchTopK: the smallest selected activation (feeds the inference threshold).
    pub min_selected: Option<f32>,
}

/// A feature to re-initialise (resampling): its new decoder and encoder rows. Its encoder bias
/// and its optimiser moments become zero.
#[derive(Clone, Debug, PartialEq)]
pub struct Reinit {
    /// The feature.
    pub feature: usize,
    /// New decoder row `[d_out]`.
    pub decoder: Vec<f32>,
    /// New encoder row `[d]`.
    pub encoder: Vec<f32>,
}

/// Where a dictionary's parameters live and how a training step is computed.
pub trait Engine {
    /// Computes the loss of `objective` on `x` (`[n, d]`, row-major, normalised space) and
    /// keeps its gradient. The reconstruction's target is `target` (`[n, d_out]`, a
    /// transcoder's output hook), or `x` itself when `None`. `dead` marks the features counted
    /// dead before this batch (AuxK).
    fn forward_backward(
        &mut self,
        objective: &ArchitectureConfig,
        x: &[f32],
        target: Option<&[f32]>,
        n: usize,
        dead: &[bool],
        apply_b_dec_to_input: bool,
    ) -> Result<StepStats>;
    /// Whether every value of the kept gradient is finite.
    fn gradients_finite(&self) -> Result<bool>;
    /// Applies the kept gradient: decoder-parallel component removed, global norm clipped to
    /// `clip`, one Adam step at `lr`, decoder rows renormalised.
    fn update(&mut self, lr: f32, clip: Option<f32>) -> Result<()>;
    /// The decoder bias.
    fn b_dec(&self) -> Result<Vec<f32>>;
    /// Replaces the decoder bias.
    fn set_b_dec(&mut self, b_dec: &[f32]) -> Result<()>;
    /// Each feature's encoder-row norm.
    fn encoder_row_norms(&self) -> Result<Vec<f32>>;
    /// Re-initialises features (resampling).
    fn reinitialise(&mut self, features: &[Reinit]) -> Result<()>;
    /// A host copy of the parameters.
    fn params(&self) -> Result<Params>;
    /// A host copy of the last gradient.
    fn gradients(&self) -> Result<Params>;
    /// A host copy of the optimiser state.
    fn optimiser(&self) -> Result<Adam>;
    /// Which engine this is (to rebuild one of the same kind).
    fn choice(&self) -> EngineChoice;
}

/// Which engine trains a dictionary.
///
/// ```
/// use prism_sae::train::EngineChoice;
/// let host: EngineChoice = "host".parse().unwrap();
/// assert_eq!(host.to_string(), "host");
/// assert_eq!(EngineChoice::for_device("cpu").unwrap().to_string(), "host");
/// assert_eq!(EngineChoice::burn_on("cpu").unwrap().to_string(), "burn");
/// ```
#[derive(Clone, Debug, Default)]
pub enum EngineChoice {
    /// The dedicated CPU kernels.
    #[default]
    Host,
    /// burn tensors on this device.
    Burn(Device),
}

impl EngineChoice {
    /// The engine for a device name: the host kernels for `cpu` (they are the fast path on a
    /// CPU), burn on the device otherwise (`wgpu`, `cuda`, `ndarray`).
    pub fn for_device(device: &str) -> Result<EngineChoice> {
        let backend: prism_core::Backend = device.parse()?;
        Ok(match backend {
            prism_core::Backend::Cpu => EngineChoice::Host,
            other => EngineChoice::Burn(other.device()?),
        })
    }

    /// The burn engine on the named device (`cpu` is burn's `flex` backend).
    pub fn burn_on(device: &str) -> Result<EngineChoice> {
        Ok(EngineChoice::Burn(prism_core::device(device)?))
    }

    /// Builds this engine around host parameters and optimiser state.
    pub fn build(&self, params: Params, adam: Adam, kernel: KernelMode) -> Result<TrainingEngine> {
        Ok(match self {
            EngineChoice::Host => {
                TrainingEngine::Host(Box::new(HostEngine::new(params, adam, kernel)))
            }
            EngineChoice::Burn(device) => {
                TrainingEngine::Burn(Box::new(BurnEngine::new(&params, &adam, device.clone())?))
            }
        })
    }
}

impl std::fmt::Display for EngineChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineChoice::Host => "host",
            EngineChoice::Burn(_) => "burn",
        })
    }
}

/// `host` (or `cpu`) for the host kernels; `burn` for burn's CPU backend (`flex`).
impl std::str::FromStr for EngineChoice {
    type Err = prism_core::PrismError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "host" => Ok(EngineChoice::Host),
            "burn" => EngineChoice::burn_on("cpu"),
            other => Err(prism_core::PrismError::InvalidInput(format!(
                "unknown engine `{other}` (host, burn)"
            ))),
        }
    }
}

/// One of the engines, owning its state.
#[derive(Clone, Debug)]
pub enum TrainingEngine {
    /// The host kernels.
    Host(Box<HostEngine>),
    /// burn tensors on a device.
    Burn(Box<BurnEngine>),
}

impl TrainingEngine {
    fn inner(&self) -> &dyn Engine {
        match self {
            TrainingEngine::Host(e) => e.as_ref(),
            TrainingEngine::Burn(e) => e.as_ref(),
        }
    }

    fn inner_mut(&mut self) -> &mut dyn Engine {
        match self {
            TrainingEngine::Host(e) => e.as_mut(),
            TrainingEngine::Burn(e) => e.as_mut(),
        }
    }
}

impl Engine for TrainingEngine {
    fn forward_backward(
        &mut self,
        objective: &ArchitectureConfig,
        x: &[f32],
        target: Option<&[f32]>,
        n: usize,
        dead: &[bool],
        apply_b_dec_to_input: bool,
    ) -> Result<StepStats> {
        self.inner_mut()
            .forward_backward(objective, x, target, n, dead, apply_b_dec_to_input)
    }
    fn gradients_finite(&self) -> Result<bool> {
        self.inner().gradients_finite()
    }
    fn update(&mut self, lr: f32, clip: Option<f32>) -> Result<()> {
        self.inner_mut().update(lr, clip)
    }
    fn b_dec(&self) -> Result<Vec<f32>> {
        self.inner().b_dec()
    }
    fn set_b_dec(&mut self, b_dec: &[f32]) -> Result<()> {
        self.inner_mut().set_b_dec(b_dec)
    }
    fn encoder_row_norms(&self) -> Result<Vec<f32>> {
        self.inner().encoder_row_norms()
    }
    fn reinitialise(&mut self, features: &[Reinit]) -> Result<()> {
        self.inner_mut().reinitialise(features)
    }
    fn params(&self) -> Result<Params> {
        self.inner().params()
    }
    fn gradients(&self) -> Result<Params> {
        self.inner().gradients()
    }
    fn optimiser(&self) -> Result<Adam> {
        self.inner().optimiser()
    }
    fn choice(&self) -> EngineChoice {
        self.inner().choice()
    }
}
