//! Dictionary training: configuration, the per-architecture objectives with hand-written
//! gradients on the sparse kernels, Adam, resampling, checkpoints, and several dictionaries
//! trained from one activation stream.

mod adam;
mod config;
mod export;
mod group;
mod objective;
mod params;
mod trainer;

pub use adam::{Adam, AdamConfig};
pub use config::{ArchitectureConfig, ResampleConfig, TrainConfig};
pub use group::{CHECKPOINT_FILE, FitOptions, LOG_FILE, Run, fit};
pub use objective::{Objective, Pass, StepInputs, loss_and_grads};
pub use params::{PARAM_NAMES, Params, remove_parallel_component};
pub use trainer::{StepLog, Trainer, geometric_median};
