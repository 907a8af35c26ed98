//! Phi-3 (mini, small, medium; Phi-3.5-mini and Phi-4-mini saved as `phi3`): Llama's block with
//! q, k and v in one matrix (`qkv_proj`, rows q | k | v) and the MLP's gate and up in one
//! (`gate_up_proj`, rows gate | up), optionally a partial rotary embedding
//! (`partial_rotary_factor`) and sliding-window attention on every layer. The long-context
//! variants' `longrope` scaling is not supported (a clear error names it).

use prism_core::Result;

use crate::config::{Architecture, AttentionSpan, HfConfig, ModelConfig};
use crate::llama::decoder_config;

pub(crate) fn config(hf: &HfConfig) -> Result<ModelConfig> {
    let mut c = decoder_config(hf, Architecture::Phi3)?;
    c.design.spans = AttentionSpan::uniform(c.n_layers, hf.sliding_window()?);
    Ok(c)
}
