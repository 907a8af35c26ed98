//! Mistral (7B v0.1 – v0.3, Ministral-style checkpoints saved as `mistral`): Llama with
//! sliding-window attention on every layer when `sliding_window` is set (`transformers` ignores
//! `layer_types` for this family, and so does Prism). Mixtral's experts are not this family.

use prism_core::Result;

use crate::config::{Architecture, AttentionSpan, HfConfig, ModelConfig};
use crate::llama::decoder_config;

pub(crate) fn config(hf: &HfConfig) -> Result<ModelConfig> {
    let mut c = decoder_config(hf, Architecture::Mistral)?;
    c.design.spans = AttentionSpan::uniform(c.n_layers, hf.sliding_window()?);
    Ok(c)
}
