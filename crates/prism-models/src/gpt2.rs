//! GPT-2 in HF layout: learned positions, Conv1D weights stored `[in, out]`, tied unembedding.

use burn::tensor::Device;
use prism_core::{PrismError, Result};

use crate::config::{Architecture, BlockDesign, HfConfig, ModelConfig, NormKind, Positions};
use crate::cpu::CpuPath;
use crate::layers::{Linear, load_layer_norm};
use crate::transformer::{Attention, Block, Mlp, Transformer};
use crate::weights::WeightSource;

pub(crate) fn config(hf: &HfConfig) -> Result<ModelConfig> {
    for key in ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"] {
        if hf.bool_or(key, false) {
            return Err(PrismError::Config {
                path: hf.path.to_path_buf(),
                message: format!("`{key}: true` is not supported"),
            });
        }
    }
    let d_model = hf.usize("n_embd")?;
    let n_heads = hf.usize("n_head")?;
    Ok(ModelConfig {
        architecture: Architecture::Gpt2,
        vocab_size: hf.usize("vocab_size")?,
        d_model,
        n_layers: hf.usize("n_layer")?,
        n_heads,
        n_kv_heads: n_heads,
        d_head: d_model / n_heads.max(1),
        d_mlp: hf.opt_usize("n_inner").unwrap_or(d_model.saturating_mul(4)),
        max_positions: hf.usize("n_positions")?,
        norm: NormKind::LayerNorm,
        norm_eps: hf.f64_any(&["layer_norm_epsilon"]).unwrap_or(1e-5),
        activation: crate::gpt_neox::activation(hf)?,
        gated_mlp: false,
        positions: Positions::Learned,
        parallel_residual: false,
        tied_embeddings: true,
        initializer_range: hf.f64_any(&["initializer_range"]).unwrap_or(0.02),
        bos_token_id: hf.token_id("bos_token_id"),
        eos_token_id: hf.token_id("eos_token_id"),
        pad_token_id: hf.token_id("pad_token_id"),
        design: BlockDesign::default(),
    })
}

pub(crate) fn load(
    src: &dyn WeightSource,
    cfg: &ModelConfig,
    device: &Device,
) -> Result<Transformer> {
    let (d, m, v) = (cfg.d_model, cfg.d_mlp, cfg.vocab_size);
    // GPT2LMHeadModel saves under `transformer.`, GPT2Model without a prefix.
    let p = if src.contains("transformer.wte.weight") {
        "transformer."
    } else {
        ""
    };
    let norm = |name: &str| load_layer_norm(src, &format!("{p}{name}"), d, cfg.norm_eps, device);
    let conv = |name: &str, inp: usize, out: usize| -> Result<Linear> {
        let w = src.shaped(&format!("{p}{name}.weight"), &[inp, out])?;
        let b = src.shaped(&format!("{p}{name}.bias"), &[out])?;
        Linear::from_in_out(&w, Some(&b), device)
    };
    // Grown layer by layer: `n_layers` comes from a file, and a missing layer is an error below.
    let mut blocks = Vec::new();
    for l in 0..cfg.n_layers {
        blocks.push(Block {
            ln1: Some(norm(&format!("h.{l}.ln_1"))?),
            ln2: Some(norm(&format!("h.{l}.ln_2"))?),
            post_attn: None,
            post_mlp: None,
            attn: Attention {
                qkv: conv(&format!("h.{l}.attn.c_attn"), d, 3 * d)?,
                out: conv(&format!("h.{l}.attn.c_proj"), d, d)?,
                q_norm: None,
                k_norm: None,
            },
            mlp: Mlp {
                up: conv(&format!("h.{l}.mlp.c_fc"), d, m)?,
                down: conv(&format!("h.{l}.mlp.c_proj"), m, d)?,
            },
        });
    }
    let embed = src.shaped(&format!("{p}wte.weight"), &[v, d])?;
    let pos = src.shaped(&format!("{p}wpe.weight"), &[cfg.max_positions, d])?;
    Ok(Transformer {
        config: cfg.clone(),
        device: device.clone(),
        unembed: embed.transpose2()?.to_burn(device)?,
        cpu_path: CpuPath::default(),
        embed: embed.to_burn(device)?,
        pos_embed: Some(pos.to_burn(device)?),
        blocks,
        ln_final: norm("ln_f")?,
    })
}
