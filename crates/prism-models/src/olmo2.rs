//! OLMo 2: Llama's attention and MLP with no norms before them; instead each output is
//! RMS-normalised before it joins the residual stream (`post_attention_layernorm`,
//! `post_feedforward_layernorm`; `hook_attn_out` and `hook_mlp_out` are those outputs), and the
//! query and key projections are RMS-normalised whole (`q_norm` over `n_heads·d_head`, `k_norm`
//! over `n_kv_heads·d_head`) before the rotary embedding.

use prism_core::Result;

use crate::config::{Architecture, HfConfig, ModelConfig, NormPlacement, QkNorm};
use crate::llama::decoder_config;

pub(crate) fn config(hf: &HfConfig) -> Result<ModelConfig> {
    Ok(fixed(decoder_config(hf, Architecture::Olmo2)?))
}

/// What the family fixes, from an HF directory or an `olmo2` GGUF file.
pub(crate) fn fixed(mut c: ModelConfig) -> ModelConfig {
    c.design.norms = NormPlacement::Post;
    c.design.qk_norm = QkNorm::Whole;
    c
}
