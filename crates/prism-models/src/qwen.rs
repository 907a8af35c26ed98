//! Qwen 2 / 2.5 and Qwen 3. Qwen 2 is Llama with biases on the q, k and v projections (none on
//! the output); Qwen 3 drops them (unless `attention_bias`) and RMS-normalises each head's query
//! and key (`q_norm`, `k_norm`, over `head_dim`) before the rotary embedding. Both can make the
//! layers from `max_window_layers` on local (`use_sliding_window`), or follow `layer_types`.

use prism_core::Result;

use crate::config::{Architecture, HfConfig, ModelConfig, QkNorm};
use crate::llama::decoder_config;

pub(crate) fn config(hf: &HfConfig, architecture: Architecture) -> Result<ModelConfig> {
    let mut c = decoder_config(hf, architecture)?;
    let window = if hf.bool_or("use_sliding_window", false) {
        hf.sliding_window()?
    } else {
        None
    };
    let first_local = hf.opt_usize("max_window_layers").unwrap_or(28);
    c.design.spans = hf.spans(c.n_layers, window, |l| l >= first_local)?;
    Ok(fixed(c))
}

/// What the family fixes, whatever file it comes from (a `qwen2` / `qwen3` GGUF file states no
/// sliding window): Qwen 3's per-head q/k norms.
pub(crate) fn fixed(mut c: ModelConfig) -> ModelConfig {
    if c.architecture == Architecture::Qwen3 {
        c.design.qk_norm = QkNorm::PerHead;
    }
    c
}
