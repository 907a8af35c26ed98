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
    Architecture, AttentionSpan, BlockDesign, DIMENSION_LIMIT, HfConfig, MlpActivation,
    ModelConfig, NormKind, NormPlacement, Positions, QkNorm, RopeFrequencies, RopeScaling,
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
    c.design.embed_scale = Some((c.d_model as f64).sqrt());
    if architecture == Architecture::Gemma {
        return Ok(c);
    }
    c.design.norms = NormPlacement::Sandwich;
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
    c.design.qk_norm = QkNorm::PerHead;
    if let crate::config::Positions::Rotary { frequencies, .. } = &mut c.positions {
        *frequencies = hf.rope(Some("full_attention"), 1_000_000.0)?;
    }
    c.design.local_rope = Some(hf.rope(Some("sliding_attention"), 10_000.0)?);
    Ok(c)
}

/// The configuration of a llama.cpp `gemma3` GGUF file, as `transformers` reads one: the sizes
/// from `gemma3.*`, Gemma 3's defaults for what the file leaves out (local rope base 10 000, one
/// global layer in six), `rope.scaling.*` on the global layers where given. The scores' scale is
/// llama.cpp's: `d_head^−½`, except for the 62-layer 27B model, `(d_model / n_heads)^−½` (its
/// `query_pre_attn_scalar`; the other sizes' equals `d_head`).
pub(crate) fn config_from_gguf(g: &GgufFile) -> Result<ModelConfig> {
    let key = |k: &str| format!("gemma3.{k}");
    let d_model = g.get_usize(&key("embedding_length"))?;
    let n_layers = g.get_usize(&key("block_count"))?;
    let n_heads = g.get_usize(&key("attention.head_count"))?;
    let d_head = g
        .get_usize(&key("attention.key_length"))
        .unwrap_or(d_model / n_heads.max(1));
    let vocab = g.vocab_size("gemma3")?;
    let scaling = match g
        .metadata
        .get(&key("rope.scaling.type"))
        .and_then(|v| v.as_str())
    {
        None | Some("none") => RopeScaling::None,
        Some("linear") => RopeScaling::Linear {
            factor: g.get_f64(&key("rope.scaling.factor"))?,
        },
        Some(other) => {
            return Err(prism_core::PrismError::Config {
                path: g.path().to_path_buf(),
                message: format!(
                    "rope scaling `{other}` is not supported in a gemma3 GGUF (linear)"
                ),
            });
        }
    };
    let window = g
        .get_usize(&key("attention.sliding_window"))
        .ok()
        .filter(|&w| w > 0);
    let scale_base = if n_layers == 62 {
        d_model / n_heads.max(1)
    } else {
        d_head
    };
    Ok(ModelConfig {
        architecture: Architecture::Gemma3,
        vocab_size: vocab,
        d_model,
        n_layers,
        n_heads,
        n_kv_heads: g
            .get_usize(&key("attention.head_count_kv"))
            .unwrap_or(n_heads),
        d_head,
        d_mlp: g.get_usize(&key("feed_forward_length"))?,
        max_positions: g.get_usize(&key("context_length")).unwrap_or(32_768),
        norm: NormKind::RmsNorm,
        norm_eps: g.get_f64(&key("attention.layer_norm_rms_epsilon"))?,
        activation: MlpActivation::GeluTanh,
        gated_mlp: true,
        positions: Positions::Rotary {
            dims: d_head,
            frequencies: RopeFrequencies {
                theta: g.get_f64(&key("rope.freq_base")).unwrap_or(1_000_000.0),
                scaling,
            },
        },
        parallel_residual: false,
        tied_embeddings: !g.tensors.contains_key("output.weight"),
        initializer_range: 0.02,
        bos_token_id: g.token_id("tokenizer.ggml.bos_token_id"),
        eos_token_id: g.token_id("tokenizer.ggml.eos_token_id"),
        pad_token_id: g.token_id("tokenizer.ggml.padding_token_id"),
        design: BlockDesign {
            norms: NormPlacement::Sandwich,
            qk_norm: QkNorm::PerHead,
            spans: match window {
                Some(w) => (0..n_layers.min(DIMENSION_LIMIT))
                    .map(|l| {
                        if (l + 1) % 6 == 0 {
                            AttentionSpan::Global
                        } else {
                            AttentionSpan::Sliding(w)
                        }
                    })
                    .collect(),
                None => Vec::new(),
            },
            local_rope: Some(RopeFrequencies::plain(10_000.0)),
            attn_scale: Some((scale_base.max(1) as f64).powf(-0.5)),
            attn_softcap: None,
            final_softcap: None,
            embed_scale: Some((d_model as f64).sqrt()),
        },
    })
}
