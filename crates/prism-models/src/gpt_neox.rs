//! GPT-NeoX (Pythia) in HF layout: parallel or sequential residual, partial rotary, fused
//! per-head QKV, untied unembedding.

use burn::tensor::Device;
use prism_core::Result;

use crate::config::{
    Architecture, BlockDesign, HfConfig, MlpActivation, ModelConfig, NormKind, Positions,
    RopeFrequencies,
};
use crate::cpu::CpuPath;
use crate::layers::{Linear, load_layer_norm};
use crate::rows::swap_row_groups;
use crate::transformer::{Attention, Block, Mlp, Transformer};
use crate::weights::WeightSource;

pub(crate) fn config(hf: &HfConfig) -> Result<ModelConfig> {
    let d_model = hf.usize("hidden_size")?;
    let n_heads = hf.usize("num_attention_heads")?;
    let d_head = d_model / n_heads.max(1);
    let pct = hf
        .f64_any(&["rotary_pct", "partial_rotary_factor"])
        .unwrap_or(1.0);
    hf.plain_rope()?;
    Ok(ModelConfig {
        architecture: Architecture::GptNeoX,
        vocab_size: hf.usize("vocab_size")?,
        d_model,
        n_layers: hf.usize("num_hidden_layers")?,
        n_heads,
        n_kv_heads: n_heads,
        d_head,
        d_mlp: hf.usize("intermediate_size")?,
        max_positions: hf.opt_usize("max_position_embeddings").unwrap_or(2048),
        norm: NormKind::LayerNorm,
        norm_eps: hf.f64_any(&["layer_norm_eps"]).unwrap_or(1e-5),
        activation: activation(hf)?,
        gated_mlp: false,
        positions: Positions::Rotary {
            dims: (d_head as f64 * pct) as usize,
            frequencies: RopeFrequencies::plain(
                hf.f64_any(&["rotary_emb_base", "rope_theta"])
                    .unwrap_or(10000.0),
            ),
        },
        parallel_residual: hf.bool_or("use_parallel_residual", true),
        tied_embeddings: hf.bool_or("tie_word_embeddings", false),
        initializer_range: hf.f64_any(&["initializer_range"]).unwrap_or(0.02),
        bos_token_id: hf.token_id("bos_token_id"),
        eos_token_id: hf.token_id("eos_token_id"),
        pad_token_id: hf.token_id("pad_token_id"),
        design: BlockDesign::default(),
    })
}

pub(crate) fn activation(hf: &HfConfig) -> Result<MlpActivation> {
    match hf.str_or("hidden_act", hf.str_or("activation_function", "gelu")) {
        "gelu" => Ok(MlpActivation::Gelu),
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(MlpActivation::GeluTanh),
        "silu" | "swish" => Ok(MlpActivation::Silu),
        other => Err(prism_core::PrismError::Config {
            path: hf.path.to_path_buf(),
            message: format!("activation `{other}` is not supported (gelu, gelu_new, silu)"),
        }),
    }
}

pub(crate) fn load(
    src: &dyn WeightSource,
    cfg: &ModelConfig,
    device: &Device,
) -> Result<Transformer> {
    let (d, h, dh, m, v) = (
        cfg.d_model,
        cfg.n_heads,
        cfg.d_head,
        cfg.d_mlp,
        cfg.vocab_size,
    );
    let p = "gpt_neox";
    let norm = |name: &str| load_layer_norm(src, name, d, cfg.norm_eps, device);
    let linear = |name: &str, out: usize, inp: usize| -> Result<Linear> {
        let w = src.shaped(&format!("{name}.weight"), &[out, inp])?;
        let b = src.shaped(&format!("{name}.bias"), &[out])?;
        Linear::from_hf(&w, Some(&b), device)
    };
    // Grown layer by layer: `n_layers` comes from a file, and a missing layer is an error below.
    let mut blocks = Vec::new();
    for l in 0..cfg.n_layers {
        let lp = format!("{p}.layers.{l}");
        // Fused QKV rows are [head][q|k|v][d_head]; regroup to [q|k|v][head][d_head].
        let qkv_w = src.shaped(
            &format!("{lp}.attention.query_key_value.weight"),
            &[3 * d, d],
        )?;
        let qkv_b = src.shaped(&format!("{lp}.attention.query_key_value.bias"), &[3 * d])?;
        let qkv_w = swap_row_groups(&qkv_w, 1, h, 3, dh)?;
        let qkv_b = swap_row_groups(&qkv_b, 1, h, 3, dh)?;
        blocks.push(Block {
            ln1: Some(norm(&format!("{lp}.input_layernorm"))?),
            ln2: Some(norm(&format!("{lp}.post_attention_layernorm"))?),
            post_attn: None,
            post_mlp: None,
            attn: Attention {
                qkv: Linear::from_hf(&qkv_w, Some(&qkv_b), device)?,
                out: linear(&format!("{lp}.attention.dense"), d, d)?,
                q_norm: None,
                k_norm: None,
            },
            mlp: Mlp {
                up: linear(&format!("{lp}.mlp.dense_h_to_4h"), m, d)?,
                down: linear(&format!("{lp}.mlp.dense_4h_to_h"), d, m)?,
            },
        });
    }
    let embed = src.shaped(&format!("{p}.embed_in.weight"), &[v, d])?;
    let unembed = if cfg.tied_embeddings || !src.contains("embed_out.weight") {
        embed.transpose2()?
    } else {
        src.shaped("embed_out.weight", &[v, d])?.transpose2()?
    };
    Ok(Transformer {
        config: cfg.clone(),
        device: device.clone(),
        embed: embed.to_burn(device)?,
        pos_embed: None,
        blocks,
        ln_final: norm(&format!("{p}.final_layer_norm"))?,
        unembed: unembed.to_burn(device)?,
        cpu_path: CpuPath::default(),
    })
}
