//! # prism-models
//!
//! Transformer language models with TransformerLens-style hook points: GPT-NeoX (Pythia),
//! GPT-2, Llama 1–3, Mistral, Qwen 2/3, Gemma 1/2/3, Phi-3 and OLMo 2, loaded from HF
//! directories (or llama.cpp GGUF files for Llama), computing the same numbers as HF
//! `transformers` (docs/models.md: where each family's hooks sit).
//!
//! Every architecture maps onto one [`Transformer`] (the way TransformerLens maps every model
//! onto `HookedTransformer`); each architecture's file (`gpt_neox`, `gpt2`, `llama`, `mistral`,
//! `qwen`, `gemma`, `phi3`, `olmo2`) only knows its config keys and weight names.

#![warn(missing_docs)]

mod config;
pub mod cpu;
mod gemma;
mod gguf;
mod gpt2;
mod gpt_neox;
mod layers;
mod llama;
mod loss;
mod mistral;
mod model;
mod olmo2;
mod phi3;
mod quant;
mod qwen;
mod randomize;
mod rows;
mod scores;
mod sentencepiece;
mod tokenizer;
mod transformer;
mod weights;

pub use config::{
    Architecture, AttentionSpan, BlockDesign, MlpActivation, ModelConfig, NormKind, NormPlacement,
    Positions, QkNorm, RopeFrequencies, RopeScaling,
};
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
pub use weights::{SafetensorsDir, WeightSource, shards_of_index};
