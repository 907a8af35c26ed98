//! The Llama family (Llama, SmolLM2, …): RMSNorm, SwiGLU, grouped-query attention, rotate-half
//! RoPE over the whole head; from an HF directory or a llama.cpp GGUF file.

use burn::tensor::Device;
use prism_core::{HostTensor, Result};

use crate::config::{Architecture, HfConfig, MlpActivation, ModelConfig, NormKind, Positions};
use crate::cpu::CpuPath;
use crate::gguf::GgufFile;
use crate::layers::{Linear, Norm, row};
use crate::rows::{concat_rows, swap_row_groups};
use crate::transformer::{Attention, Block, Mlp, Transformer};
use crate::weights::WeightSource;

pub(crate) fn config(hf: &HfConfig) -> Result<ModelConfig> {
    let d_model = hf.usize("hidden_size")?;
    let n_heads = hf.usize("num_attention_heads")?;
    let d_head = hf.opt_usize("head_dim").unwrap_or(d_model / n_heads.max(1));
    hf.plain_rope()?;
    let bias = hf.bool_or("attention_bias", false) || hf.bool_or("mlp_bias", false);
    if bias {
        return Err(prism_core::PrismError::Config {
            path: hf.path.to_path_buf(),
            message: "Llama models with attention_bias or mlp_bias are not supported".into(),
        });
    }
    Ok(ModelConfig {
        architecture: Architecture::Llama,
        vocab_size: hf.usize("vocab_size")?,
        d_model,
        n_layers: hf.usize("num_hidden_layers")?,
        n_heads,
        n_kv_heads: hf.opt_usize("num_key_value_heads").unwrap_or(n_heads),
        d_head,
        d_mlp: hf.usize("intermediate_size")?,
        max_positions: hf.opt_usize("max_position_embeddings").unwrap_or(2048),
        norm: NormKind::RmsNorm,
        norm_eps: hf.f64_any(&["rms_norm_eps"]).unwrap_or(1e-6),
        activation: crate::gpt_neox::activation(hf)?,
        gated_mlp: true,
        positions: Positions::Rotary {
            dims: d_head,
            theta: hf.f64_any(&["rope_theta"]).unwrap_or(10000.0),
        },
        parallel_residual: false,
        tied_embeddings: hf.bool_or("tie_word_embeddings", false),
        initializer_range: hf.f64_any(&["initializer_range"]).unwrap_or(0.02),
        bos_token_id: hf.token_id("bos_token_id"),
        eos_token_id: hf.token_id("eos_token_id"),
        pad_token_id: hf.token_id("pad_token_id"),
    })
}

/// The configuration a llama.cpp GGUF file's `llama.*` metadata describes.
pub(crate) fn config_from_gguf(g: &GgufFile) -> Result<ModelConfig> {
    let arch = g
        .get("general.architecture")?
        .as_str()
        .unwrap_or("")
        .to_string();
    if arch != "llama" {
        return Err(prism_core::PrismError::Config {
            path: g.path().to_path_buf(),
            message: format!("general.architecture = `{arch}`; Prism reads `llama` GGUF files"),
        });
    }
    let d_model = g.get_usize("llama.embedding_length")?;
    let n_heads = g.get_usize("llama.attention.head_count")?;
    let vocab = match g.tensors.get("token_embd.weight") {
        Some(info) => info.shape.first().copied().unwrap_or(0),
        None => g.get_usize("llama.vocab_size")?,
    };
    let d_head = g
        .get_usize("llama.attention.key_length")
        .unwrap_or(d_model / n_heads.max(1));
    let id = |k: &str| g.metadata.get(k).and_then(|v| v.as_u64()).map(|v| v as u32);
    Ok(ModelConfig {
        architecture: Architecture::Llama,
        vocab_size: vocab,
        d_model,
        n_layers: g.get_usize("llama.block_count")?,
        n_heads,
        n_kv_heads: g
            .get_usize("llama.attention.head_count_kv")
            .unwrap_or(n_heads),
        d_head,
        d_mlp: g.get_usize("llama.feed_forward_length")?,
        max_positions: g.get_usize("llama.context_length").unwrap_or(2048),
        norm: NormKind::RmsNorm,
        norm_eps: g.get_f64("llama.attention.layer_norm_rms_epsilon")?,
        activation: MlpActivation::Silu,
        gated_mlp: true,
        positions: Positions::Rotary {
            dims: d_head,
            theta: g.get_f64("llama.rope.freq_base").unwrap_or(10000.0),
        },
        parallel_residual: false,
        tied_embeddings: !g.tensors.contains_key("output.weight"),
        initializer_range: 0.02,
        bos_token_id: id("tokenizer.ggml.bos_token_id"),
        eos_token_id: id("tokenizer.ggml.eos_token_id"),
        pad_token_id: id("tokenizer.ggml.padding_token_id"),
    })
}

/// Tensor names of one layout (HF or llama.cpp), and whether Q/K rows need un-permuting.
struct Names {
    embed: &'static str,
    final_norm: &'static str,
    head: &'static str,
    layer: fn(usize, &str) -> String,
    unpermute_qk: bool,
}

const HF: Names = Names {
    embed: "model.embed_tokens.weight",
    final_norm: "model.norm.weight",
    head: "lm_head.weight",
    layer: |l, part| {
        let name = match part {
            "q" => "self_attn.q_proj",
            "k" => "self_attn.k_proj",
            "v" => "self_attn.v_proj",
            "o" => "self_attn.o_proj",
            "gate" => "mlp.gate_proj",
            "up" => "mlp.up_proj",
            "down" => "mlp.down_proj",
            "ln1" => "input_layernorm",
            _ => "post_attention_layernorm",
        };
        format!("model.layers.{l}.{name}.weight")
    },
    unpermute_qk: false,
};

const GGUF: Names = Names {
    embed: "token_embd.weight",
    final_norm: "output_norm.weight",
    head: "output.weight",
    layer: |l, part| {
        let name = match part {
            "q" => "attn_q",
            "k" => "attn_k",
            "v" => "attn_v",
            "o" => "attn_output",
            "gate" => "ffn_gate",
            "up" => "ffn_up",
            "down" => "ffn_down",
            "ln1" => "attn_norm",
            _ => "ffn_norm",
        };
        format!("blk.{l}.{name}.weight")
    },
    unpermute_qk: true,
};

pub(crate) fn load_hf(
    src: &dyn WeightSource,
    cfg: &ModelConfig,
    device: &Device,
) -> Result<Transformer> {
    load(src, cfg, device, &HF)
}

pub(crate) fn load_gguf(src: &GgufFile, cfg: &ModelConfig, device: &Device) -> Result<Transformer> {
    load(src, cfg, device, &GGUF)
}

fn load(
    src: &dyn WeightSource,
    cfg: &ModelConfig,
    device: &Device,
    names: &Names,
) -> Result<Transformer> {
    let (d, h, kv, dh, m, v) = (
        cfg.d_model,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.d_head,
        cfg.d_mlp,
        cfg.vocab_size,
    );
    let norm = |name: &str| -> Result<Norm> {
        Ok(Norm {
            kind: NormKind::RmsNorm,
            weight: row(&src.shaped(name, &[d])?, device)?,
            bias: None,
            eps: cfg.norm_eps,
        })
    };
    // llama.cpp interleaves each head's rotary halves: rows [head][dh/2][2] → HF's [head][2][dh/2].
    let qk = |name: &str, heads: usize| -> Result<HostTensor> {
        let w = src.shaped(name, &[heads * dh, d])?;
        if names.unpermute_qk {
            swap_row_groups(&w, heads, dh / 2, 2, 1)
        } else {
            Ok(w)
        }
    };
    // Grown layer by layer: `n_layers` comes from a file, and a missing layer is an error below.
    let mut blocks = Vec::new();
    for l in 0..cfg.n_layers {
        let n = |part: &str| (names.layer)(l, part);
        let q = qk(&n("q"), h)?;
        let k = qk(&n("k"), kv)?;
        let vv = src.shaped(&n("v"), &[kv * dh, d])?;
        let gate = src.shaped(&n("gate"), &[m, d])?;
        let up = src.shaped(&n("up"), &[m, d])?;
        blocks.push(Block {
            ln1: norm(&n("ln1"))?,
            ln2: norm(&n("ln2"))?,
            attn: Attention {
                qkv: Linear::from_hf(&concat_rows(&[&q, &k, &vv])?, None, device)?,
                out: Linear::from_hf(&src.shaped(&n("o"), &[d, h * dh])?, None, device)?,
            },
            mlp: Mlp {
                up: Linear::from_hf(&concat_rows(&[&gate, &up])?, None, device)?,
                down: Linear::from_hf(&src.shaped(&n("down"), &[d, m])?, None, device)?,
            },
        });
    }
    let embed = src.shaped(names.embed, &[v, d])?;
    let unembed = if cfg.tied_embeddings || !src.contains(names.head) {
        embed.transpose2()?
    } else {
        src.shaped(names.head, &[v, d])?.transpose2()?
    };
    Ok(Transformer {
        config: cfg.clone(),
        device: device.clone(),
        embed: embed.to_burn(device)?,
        pos_embed: None,
        blocks,
        ln_final: norm(names.final_norm)?,
        unembed: unembed.to_burn(device)?,
        cpu_path: CpuPath::default(),
    })
}
