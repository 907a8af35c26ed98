//! # prism-models
//!
//! Transformer language models with TransformerLens-style hook points: GPT-NeoX (Pythia),
//! GPT-2 and the Llama family, loaded from HF directories or llama.cpp GGUF files, computing the
//! same numbers as HF `transformers`.
//!
//! Every architecture maps onto one [`Transformer`] (the way TransformerLens maps every model
//! onto `HookedTransformer`); each architecture's file ([`gpt_neox`](crate), `gpt2`, `llama`)
//! only knows its config keys and weight names.

#![warn(missing_docs)]

mod config;
pub mod cpu;
mod gguf;
mod gpt2;
mod gpt_neox;
mod layers;
mod llama;
mod loss;
mod model;
mod quant;
mod randomize;
mod rows;
mod scores;
mod tokenizer;
mod transformer;
mod weights;

pub use config::{Architecture, MlpActivation, ModelConfig, NormKind, Positions};
pub use cpu::CpuPath;
pub use gguf::{GgufFile, GgufTensorInfo, GgufValue};
pub use layers::{Linear, Norm, apply_rotary, matmul_on, rotary_on_device};
pub use loss::{next_token_loss, next_token_nll};
pub use model::Model;
pub use quant::{GgmlType, dequantize};
pub use randomize::Randomization;
pub use scores::PositionScores;
pub use tokenizer::Tokenizer;
pub use transformer::{Attention, Block, ForwardOutput, Mlp, TokenBatch, Transformer};
pub use weights::{SafetensorsDir, WeightSource};
