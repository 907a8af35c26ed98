//! # prism-sae
//!
//! Sparse autoencoders ("dictionaries"): the architectures as [`prism_core::Dictionary`] values,
//! read and written in SAELens' layout (`cfg.json` + `sae_weights.safetensors` with
//! `W_enc [d_in, d_sae]`, `b_enc`, `W_dec [d_sae, d_in]`, `b_dec`, `threshold` for JumpReLU,
//! `b_gate`/`r_mag`/`b_mag` for Gated), dictionary_learning `ae.pt` import, and training
//! (ReLU + L1 with resampling, TopK and BatchTopK with AuxK, JumpReLU, Gated, Matryoshka
//! BatchTopK; one module per architecture behind one trait) on dedicated CPU
//! kernels that exploit the codes' sparsity. Transcoders ([`Transcoder`]) read one hook and
//! write another (the MLP's input and output), with an optional skip term.

#![warn(missing_docs)]

mod dictionary_learning;
pub mod kernel;
pub mod npz;
mod open;
mod sae;
mod suites;
mod torch_pickle;
pub mod train;
mod transcoder;

pub use dictionary_learning::hook_from_trainer_config;
pub use open::{Loaded, OpenOptions};
pub use sae::{Architecture, Sae};
pub use suites::{
    Suite, circuit_tracer_hooks, circuit_tracer_layers, gemma_scope_2_hook, gemma_scope_hook,
    sparsify_hook, sparsify_run, sparsify_transcoder_hooks,
};
pub use torch_pickle::{PtTensor, read_state_dict};
pub use train::{ArchitectureConfig, StepLog, TrainConfig, Trainer};
pub use transcoder::Transcoder;
