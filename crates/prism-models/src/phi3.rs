//! Phi-3 (mini, small, medium; Phi-3.5-mini and Phi-4-mini saved as `phi3`): Llama's block with
//! q, k and v in one matrix (`qkv_proj`, rows q | k | v) and the MLP's gate and up in one
//! (`gate_up_proj`, rows gate | up), optionally a partial rotary embedding
//! (`partial_rotary_factor`) and sliding-window attention on every layer. The long-context
//! variants' `longrope` scaling is not supported (a clear error names it).

use prism_core::Result;

use crate::config::{Architecture, AttentionSpan, HfConfig, ModelConfig};
use crate::gguf::GgufFile;
use crate::llama::decoder_config;

pub(crate) fn config(hf: &HfConfig) -> Result<ModelConfig> {
    let mut c = decoder_config(hf, Architecture::Phi3)?;
    c.design.spans = AttentionSpan::uniform(c.n_layers, hf.sliding_window()?);
    Ok(c)
}

/// A llama.cpp `phi3` file: q | k | v in `attn_qkv`, gate | up in `ffn_up`, the rotary width in
/// `rope.dimension_count`, and the sliding window of every layer in
/// `phi3.attention.sliding_window`. (llama.cpp itself currently ignores that window, as its
/// converter does not always fill it correctly; Prism honours it, as `transformers` does the
/// HF config's.) The long-context variants' per-frequency factors are not supported.
pub(crate) fn config_from_gguf(g: &GgufFile, mut c: ModelConfig) -> Result<ModelConfig> {
    if g.tensors.contains_key("rope_factors_long.weight") {
        return Err(prism_core::PrismError::Config {
            path: g.path().to_path_buf(),
            message: "Phi-3's long-context rope (`rope_factors_long`, `longrope`) is not supported"
                .into(),
        });
    }
    let window = g
        .opt_usize("phi3.attention.sliding_window")?
        .filter(|&w| w > 0);
    c.design.spans = AttentionSpan::uniform(c.n_layers, window);
    Ok(c)
}
