//! # Prism
//!
//! Mechanistic interpretability for language models, in Rust: load models (GPT-NeoX/Pythia,
//! GPT-2, Llama incl. GGUF) and run them with TransformerLens-named hook points that capture or
//! change activations.
//!
//! This crate re-exports the Prism libraries so that one dependency brings them all:
//! [`core`] (devices, tensors, hook points, the `Dictionary` trait, errors), [`models`],
//! [`cache`] (corpora, harvesting, the activation buffer and disk store), [`sae`] (dictionaries
//! in SAELens' format), [`stats`]
//! (evaluating dictionaries), [`similarity`] (comparing dictionaries), [`patch`] (causal
//! patching) and [`probe`] (truth probes, features as classifiers, SHIFT).
//!
//! ```
//! use prism::core::{HookPoint, Hooks};
//! let hooks = Hooks::new().capture("blocks.0.hook_resid_post".parse::<HookPoint>()?);
//! assert!(hooks.touches(HookPoint::ResidPost(0)));
//! # Ok::<(), prism::core::PrismError>(())
//! ```

pub use prism_cache as cache;
pub use prism_core as core;
pub use prism_models as models;
pub use prism_patch as patch;
pub use prism_probe as probe;
pub use prism_sae as sae;
pub use prism_similarity as similarity;
pub use prism_stats as stats;

pub use prism_core::{
    Activation, Backend, Device, Dictionary, Edit, HookPoint, Hooks, HostTensor, Intervention,
    PrismError, Result, Tensor,
};
pub use prism_models::{Model, Randomization, TokenBatch};

/// The README's code blocks, compiled as doctests so the front page cannot rot.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
