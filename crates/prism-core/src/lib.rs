//! # prism-core
//!
//! What every Prism crate shares: the device choice ([`Backend`]), host/device tensor
//! conversions ([`HostTensor`], [`to_ndarray`], [`write_safetensors`]), TransformerLens hook
//! names ([`HookPoint`]), hooks and interventions ([`Hooks`], [`Intervention`]), the
//! [`Dictionary`] trait, and the error type ([`PrismError`]).

#![warn(missing_docs)]

pub mod alloc;
mod convert;
pub mod dense;
mod device;
mod dictionary;
mod error;
mod hook_point;
mod hooks;
mod lock;
pub mod simd;
mod yaml;

pub use convert::{
    FloatDtype, HostTensor, RawTensor, atomic_link, atomic_write, decode_floats, encode_floats,
    from_ndarray, index_tensor, parse_safetensors, read_safetensors, remove_interrupted_writes,
    serialize_safetensors, to_ndarray, to_vec, view_to_host, write_safetensors,
};
pub use device::{Backend, device};
pub use dictionary::Dictionary;
pub use error::{HubProblem, PrismError, Result};
pub use hook_point::{HookPoint, ModelShape};
pub use hooks::{Activation, Edit, HookFn, HookRun, Hooks, Intervention};
pub use lock::{DirLock, LOCK_FILE};
pub use yaml::parse_yaml;

pub use burn;
pub use burn::tensor::{Device, Tensor};
