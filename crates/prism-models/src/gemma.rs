//! The Gemma family. Gemma (1): Llama's block with the token embedding multiplied by
//! `√d_model` (`hook_embed` is the product, as TransformerLens folds it into `W_E`), RMSNorm
//! weights used as `1 + w` (shifted once at load), a GELU-tanh gated MLP and tied embeddings.
//! Gemma 2 adds a norm after attention and after the MLP (so `hook_attn_out` / `hook_mlp_out`
//! are those norms' outputs, what enters the residual stream, as in TransformerLens), scores
//! scaled by `query_pre_attn_scalar^−½` and soft-capped (`attn_logit_softcapping`), logits
//! soft-capped (`final_logit_softcapping`), and local (sliding-window) layers alternating with
//! global ones. Gemma 3 (text, `gemma3_text`) keeps that block, drops the soft-caps, normalises
//! each head's q and k, rotates its local layers with their own base (`rope_local_base_freq`,
//! unscaled) and its global ones with `rope_theta` and its scaling, five local layers to a
//! global one; from an HF directory or a llama.cpp `gemma3` GGUF file.

use prism_core::Result;

use crate::config::{
    Architecture, AttentionSpan, HfConfig, LAYER_LIMIT, MlpActivation, ModelConfig, NormPlacement,
    QkNorm, RopeFrequencies,
};
use crate::gguf::GgufFile;
use crate::llama::decoder_config;

pub(crate) fn config(hf: &HfConfig, architecture: Architecture) -> Result<ModelConfig> {
    if hf.bool_or("use_bidirectional_attention", false) {
        return Err(hf.error(
            "use_bidirectional_attention (EmbeddingGemma) is not supported: Prism runs causal models"
                .into(),
        ));
    }
    let mut c = decoder_config(hf, architecture)?;
    c.activation = match hf.str_or(
        "hidden_activation",
        hf.str_or("hidden_act", "gelu_pytorch_tanh"),
    ) {
        // `transformers` reads Gemma's legacy `gelu` as the tanh approximation it always meant.
        "gelu" | "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => MlpActivation::GeluTanh,
        "silu" | "swish" => MlpActivation::Silu,
        other => {
            return Err(hf.error(format!(
                "activation `{other}` is not supported (gelu_pytorch_tanh, silu)"
            )));
        }
    };
    c.tied_embeddings = hf.bool_or("tie_word_embeddings", true);
    fixed(&mut c);
    if architecture == Architecture::Gemma {
        return Ok(c);
    }
    c.design.attn_scale = Some(
        hf.opt_f64("query_pre_attn_scalar")?
            .unwrap_or(c.d_head as f64)
            .powf(-0.5),
    );
    c.design.attn_softcap = hf.opt_f64("attn_logit_softcapping")?;
    c.design.final_softcap = hf.opt_f64("final_logit_softcapping")?;
    let window = hf.sliding_window()?;
    if architecture == Architecture::Gemma2 {
        c.design.spans = hf.spans(c.n_layers, window, |l| l % 2 == 0)?;
        return Ok(c);
    }
    let pattern = hf
        .opt_usize("sliding_window_pattern")
        .or(hf.opt_usize("_sliding_window_pattern"))
        .unwrap_or(6)
        .max(1);
    c.design.spans = hf.spans(c.n_layers, window, |l| (l + 1) % pattern != 0)?;
    if let crate::config::Positions::Rotary { frequencies, .. } = &mut c.positions {
        *frequencies = hf.rope(Some("full_attention"), 1_000_000.0)?;
    }
    c.design.local_rope = Some(hf.rope(Some("sliding_attention"), 10_000.0)?);
    Ok(c)
}

/// What every Gemma of `c.architecture` fixes, whatever file it comes from: embeddings × √d,
/// norms before and after attention and MLP (Gemma 2, 3), per-head q/k norms (Gemma 3).
fn fixed(c: &mut ModelConfig) {
    c.design.embed_scale = Some((c.d_model as f64).sqrt());
    if c.architecture != Architecture::Gemma {
        c.design.norms = NormPlacement::Sandwich;
    }
    if c.architecture == Architecture::Gemma3 {
        c.design.qk_norm = QkNorm::PerHead;
    }
}

/// A llama.cpp `gemma`, `gemma2` or `gemma3` GGUF file, read as llama.cpp reads it: GELU-tanh
/// gating; Gemma 2's soft-caps from `attn_logit_softcapping` / `final_logit_softcapping` and its
/// local layers every other one from the first; Gemma 3's five local layers to a global one,
/// rotated with base `rope.freq_base_swa` (10 000 where absent) and unscaled, the global ones
/// with `rope.freq_base` and its scaling. A GGUF file states no `query_pre_attn_scalar`: the
/// scores' scale is llama.cpp's, `d_head^−½`, but `(d_model / n_heads)^−½` for the 27B models
/// (46 layers of Gemma 2, 62 of Gemma 3; the other sizes' `query_pre_attn_scalar` is `d_head`).
pub(crate) fn config_from_gguf(g: &GgufFile, mut c: ModelConfig) -> Result<ModelConfig> {
    c.activation = MlpActivation::GeluTanh;
    fixed(&mut c);
    let arch = c.architecture.gguf_architecture().unwrap_or_default();
    let key = |k: &str| format!("{arch}.{k}");
    let (local, pattern, big) = match c.architecture {
        Architecture::Gemma => return Ok(c),
        Architecture::Gemma2 => (0, 2, 46),
        _ => (5, 6, 62),
    };
    let scale_base = match c.n_layers == big {
        true => c.d_model / c.n_heads.max(1),
        false => c.d_head,
    };
    c.design.attn_scale = Some((scale_base.max(1) as f64).powf(-0.5));
    c.design.attn_softcap = g.opt_f64(&key("attn_logit_softcapping"))?;
    c.design.final_softcap = g.opt_f64(&key("final_logit_softcapping"))?;
    let window = g
        .opt_usize(&key("attention.sliding_window"))?
        .filter(|&w| w > 0);
    c.design.spans = match window {
        Some(w) => (0..c.n_layers.min(LAYER_LIMIT))
            .map(|l| match l % pattern < pattern - 1 {
                true => AttentionSpan::Sliding(w),
                false => AttentionSpan::Global,
            })
            .collect(),
        None => Vec::new(),
    };
    if local > 0 {
        let theta = g.opt_f64(&key("rope.freq_base_swa"))?.unwrap_or(10_000.0);
        c.design.local_rope = Some(RopeFrequencies::plain(theta));
    }
    Ok(c)
}
