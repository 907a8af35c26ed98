//! Dictionary training: configuration, the architectures (one module each, behind one trait,
//! with hand-written gradients on both engines), Adam, resampling, checkpoints, and several
//! dictionaries trained from one activation stream — on either engine (the host's sparse
//! kernels, or burn on any device).

mod adam;
mod architecture;
mod burn_engine;
mod config;
mod convergence;
mod engine;
mod export;
mod group;
mod host_engine;
mod objective;
mod params;
mod select;
mod trainer;

pub use adam::{Adam, AdamConfig};
pub use architecture::{ArchitectureConfig, BatchTopK, Gated, JumpRelu, Matryoshka, Relu, TopK};
pub use config::{INITIAL_L0, ResampleConfig, TrainConfig};
pub use convergence::{ConvergenceOptions, HeldOut, measure};
pub use engine::{Engine, EngineChoice, Reinit, StepStats, TrainingEngine};
pub use group::{
    CHECKPOINT_FILE, FitOptions, LOG_FILE, PREVIOUS_CHECKPOINT_FILE, Run, RunSpec, fit, read_log,
    resume_step,
};
pub use objective::{Pass, StepInputs, loss_and_grads};
pub use params::{PARAM_NAMES, Params};
pub use select::top_k_rows;
pub use trainer::{StepLog, Trainer};
