//! # prism-sae
//!
//! Sparse autoencoders ("dictionaries") as [`prism_core::Dictionary`] values, read and written in
//! SAELens' layout (`cfg.json` + `sae_weights.safetensors` with `W_enc [d_in, d_sae]`, `b_enc`,
//! `W_dec [d_sae, d_in]`, `b_dec`, and `threshold` for JumpReLU), so dictionaries move freely
//! between Prism and Python.
//!
//! Architectures at inference: standard (ReLU), TopK, and JumpReLU. Training comes with the
//! trainers (issue 4).

#![warn(missing_docs)]

mod sae;

pub use sae::{Architecture, Sae};
