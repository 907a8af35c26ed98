//! The Llama family (Llama 1–3, SmolLM2, …): RMSNorm, SwiGLU, grouped-query attention,
//! rotate-half RoPE over the whole head (with Llama 3's, linear, dynamic or YaRN scaling),
//! optional `attention_bias` / `mlp_bias`, a `head_dim` of its own; from an HF directory or a
//! llama.cpp GGUF file.
//!
//! Its HF layout (`model.layers.N.self_attn.q_proj`, …) is the one every later family here
//! keeps, and llama.cpp's GGUF layout (`blk.N.attn_q`, …) is one for all of them too, so this
//! file also holds what they share: the config keys of either format ([`decoder_config`],
//! [`gguf_decoder_config`]), each family adding what differs in its own file
//! ([`ModelConfig::design`]), and one loader that reads whichever tensors that description
//! calls for, under either format's names.

use burn::tensor::Device;
use prism_core::{HostTensor, PrismError, Result};

use crate::config::{
    Architecture, BlockDesign, DIMENSION_LIMIT, HfConfig, MlpActivation, ModelConfig, NormKind,
    NormPlacement, Positions, QkNorm, RopeFrequencies, RopeScaling, yarn_mscale,
};
use crate::cpu::CpuPath;
use crate::gguf::GgufFile;
use crate::layers::{Linear, Norm, row};
use crate::rows::{concat_rows, swap_row_groups};
use crate::transformer::{Attention, Block, Mlp, Transformer};
use crate::weights::WeightSource;

pub(crate) fn config(hf: &HfConfig) -> Result<ModelConfig> {
    decoder_config(hf, Architecture::Llama)
}

/// The keys every HF decoder of the Llama lineage (Llama, Mistral, Qwen, Gemma, Phi-3, OLMo 2)
/// names alike: sizes, RMSNorm, a gated MLP, rotary positions with their scaling (shared by
/// every layer), tied embeddings. Families change what differs ([`ModelConfig::design`], …).
pub(crate) fn decoder_config(hf: &HfConfig, architecture: Architecture) -> Result<ModelConfig> {
    let d_model = hf.usize("hidden_size")?;
    let n_heads = hf.usize("num_attention_heads")?;
    let d_head = hf.opt_usize("head_dim").unwrap_or(d_model / n_heads.max(1));
    let frequencies = hf.rope(None, 10000.0)?;
    let rotary_fraction = hf.f64_any(&["partial_rotary_factor"]).unwrap_or(1.0);
    if !(rotary_fraction > 0.0 && rotary_fraction <= 1.0) {
        return Err(hf.error(format!(
            "partial_rotary_factor {rotary_fraction} must be in (0, 1]"
        )));
    }
    let max_position_embeddings = hf.opt_usize("max_position_embeddings").unwrap_or(2048);
    // Dynamic NTK scaling exists to run past the configured context, as far as one likes.
    let max_positions = match frequencies.scaling {
        RopeScaling::Dynamic { .. } => DIMENSION_LIMIT,
        _ => max_position_embeddings,
    };
    Ok(ModelConfig {
        architecture,
        vocab_size: hf.usize("vocab_size")?,
        d_model,
        n_layers: hf.usize("num_hidden_layers")?,
        n_heads,
        n_kv_heads: hf.opt_usize("num_key_value_heads").unwrap_or(n_heads),
        d_head,
        d_mlp: hf.usize("intermediate_size")?,
        max_positions,
        norm: NormKind::RmsNorm,
        norm_eps: hf.f64_any(&["rms_norm_eps"]).unwrap_or(1e-6),
        activation: crate::gpt_neox::activation(hf)?,
        gated_mlp: true,
        positions: Positions::Rotary {
            dims: ((d_head as f64 * rotary_fraction) as usize).min(d_head),
            frequencies,
        },
        parallel_residual: false,
        tied_embeddings: hf.bool_or("tie_word_embeddings", false),
        initializer_range: hf.f64_any(&["initializer_range"]).unwrap_or(0.02),
        bos_token_id: hf.token_id("bos_token_id"),
        eos_token_id: hf.token_id("eos_token_id"),
        pad_token_id: hf.token_id("pad_token_id"),
        design: BlockDesign::default(),
    })
}

/// The configuration a llama.cpp GGUF file's metadata describes: the keys every decoder
/// architecture shares ([`gguf_decoder_config`]), then what its family fixes.
pub(crate) fn config_from_gguf(g: &GgufFile) -> Result<ModelConfig> {
    let arch = g.get("general.architecture")?.as_str().unwrap_or("");
    let architecture = Architecture::ALL
        .into_iter()
        .find(|a| a.gguf_architecture() == Some(arch))
        .ok_or_else(|| {
            let known: Vec<_> = Architecture::ALL
                .iter()
                .filter_map(|a| a.gguf_architecture())
                .collect();
            PrismError::Config {
                path: g.path().to_path_buf(),
                message: format!(
                    "general.architecture = `{arch}`; Prism reads these GGUF architectures: {}",
                    known.join(", ")
                ),
            }
        })?;
    let c = gguf_decoder_config(g, arch, architecture)?;
    match architecture {
        Architecture::Qwen2 | Architecture::Qwen3 => Ok(crate::qwen::fixed(c)),
        Architecture::Gemma | Architecture::Gemma2 | Architecture::Gemma3 => {
            crate::gemma::config_from_gguf(g, c)
        }
        Architecture::Phi3 => crate::phi3::config_from_gguf(g, c),
        Architecture::Olmo2 => Ok(crate::olmo2::fixed(c)),
        _ => Ok(c),
    }
}

/// The keys every llama.cpp decoder architecture `arch` names alike (`{arch}.embedding_length`,
/// `{arch}.rope.*`, …), read into a Llama-style block: RMSNorm, SwiGLU, rotary positions with
/// llama.cpp's scaling (`rope.scaling.type` linear or yarn, or per-frequency divisors in
/// `rope_freqs.weight`, which is how Llama 3's scaling is stored).
pub(crate) fn gguf_decoder_config(
    g: &GgufFile,
    arch: &str,
    architecture: Architecture,
) -> Result<ModelConfig> {
    let key = |k: &str| format!("{arch}.{k}");
    let d_model = g.get_usize(&key("embedding_length"))?;
    let n_heads = g.get_usize(&key("attention.head_count"))?;
    let d_head = g
        .opt_usize(&key("attention.key_length"))?
        .unwrap_or(d_model / n_heads.max(1));
    let dims = g.opt_usize(&key("rope.dimension_count"))?.unwrap_or(d_head);
    let default_theta = match architecture {
        Architecture::Gemma3 => 1_000_000.0,
        _ => 10_000.0,
    };
    Ok(ModelConfig {
        architecture,
        vocab_size: g.vocab_size(arch)?,
        d_model,
        n_layers: g.get_usize(&key("block_count"))?,
        n_heads,
        n_kv_heads: g
            .opt_usize(&key("attention.head_count_kv"))?
            .unwrap_or(n_heads),
        d_head,
        d_mlp: g.get_usize(&key("feed_forward_length"))?,
        max_positions: g.opt_usize(&key("context_length"))?.unwrap_or(2048),
        norm: NormKind::RmsNorm,
        norm_eps: g.get_f64(&key("attention.layer_norm_rms_epsilon"))?,
        activation: MlpActivation::Silu,
        gated_mlp: true,
        positions: Positions::Rotary {
            dims,
            frequencies: gguf_rope(g, arch, default_theta)?,
        },
        parallel_residual: false,
        tied_embeddings: !g.tensors.contains_key("output.weight"),
        initializer_range: 0.02,
        bos_token_id: g.token_id("tokenizer.ggml.bos_token_id"),
        eos_token_id: g.token_id("tokenizer.ggml.eos_token_id"),
        pad_token_id: g.token_id("tokenizer.ggml.padding_token_id"),
        design: BlockDesign::default(),
    })
}

/// The rotary frequencies of a GGUF file, as llama.cpp computes them (docs/models.md).
fn gguf_rope(g: &GgufFile, arch: &str, default_theta: f64) -> Result<RopeFrequencies> {
    let key = |k: &str| format!("{arch}.{k}");
    let error = |message: String| PrismError::Config {
        path: g.path().to_path_buf(),
        message,
    };
    let theta = g.opt_f64(&key("rope.freq_base"))?.unwrap_or(default_theta);
    if !(theta.is_finite() && theta > 1.0) {
        return Err(error(format!(
            "rope.freq_base {theta} must be a number above 1"
        )));
    }
    let factor = || g.get_f64(&key("rope.scaling.factor"));
    let mut scaling = match g.opt_str(&key("rope.scaling.type"))? {
        None | Some("none") => RopeScaling::None,
        Some("linear") => RopeScaling::Linear { factor: factor()? },
        Some("yarn") => {
            let factor = factor()?;
            RopeScaling::Yarn {
                factor,
                original_max_positions: g
                    .get_usize(&key("rope.scaling.original_context_length"))?,
                beta_fast: g
                    .opt_f64(&key("rope.scaling.yarn_beta_fast"))?
                    .unwrap_or(32.0),
                beta_slow: g
                    .opt_f64(&key("rope.scaling.yarn_beta_slow"))?
                    .unwrap_or(1.0),
                attention_factor: g.opt_f64(&key("rope.scaling.attn_factor"))?.unwrap_or(1.0)
                    * yarn_mscale(factor, 1.0),
                truncate: true,
            }
        }
        Some(other) => {
            return Err(error(format!(
                "rope.scaling.type `{other}` is not supported in a GGUF file (none, linear, yarn)"
            )));
        }
    };
    if let Some(factor) = scaling.factor()
        && !(factor.is_finite() && factor > 0.0)
    {
        return Err(error(format!(
            "rope.scaling.factor {factor} must be a positive number"
        )));
    }
    if g.tensors.contains_key("rope_freqs.weight") {
        if scaling != RopeScaling::None {
            return Err(error(
                "the file has both rope.scaling.type and rope_freqs.weight".into(),
            ));
        }
        scaling = RopeScaling::Divisors(g.tensor("rope_freqs.weight")?.data);
    }
    Ok(RopeFrequencies { theta, scaling })
}

/// A tensor of a block, whatever a layout calls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Q,
    K,
    V,
    /// q | k | v in one matrix (Phi-3).
    Qkv,
    O,
    Gate,
    Up,
    /// gate | up in one matrix (Phi-3).
    GateUp,
    Down,
    PreAttnNorm,
    PreMlpNorm,
    PostAttnNorm,
    PostMlpNorm,
    QNorm,
    KNorm,
}

/// Tensor names of one layout (HF or llama.cpp), and whether Q/K rows need un-permuting.
struct Names {
    embed: &'static str,
    final_norm: &'static str,
    head: &'static str,
    /// The name of block `l`'s part, without `.weight` / `.bias`.
    layer: fn(usize, Part, NormPlacement) -> String,
    unpermute_qk: bool,
    /// Whether the layout stores Gemma's norm weights as `w` (HF) rather than `1 + w` (llama.cpp
    /// adds the one when it converts).
    gemma_norms_unshifted: bool,
}

const HF: Names = Names {
    embed: "model.embed_tokens.weight",
    final_norm: "model.norm.weight",
    head: "lm_head.weight",
    layer: |l, part, placement| {
        let name = match part {
            Part::Q => "self_attn.q_proj",
            Part::K => "self_attn.k_proj",
            Part::V => "self_attn.v_proj",
            Part::Qkv => "self_attn.qkv_proj",
            Part::O => "self_attn.o_proj",
            Part::Gate => "mlp.gate_proj",
            Part::Up => "mlp.up_proj",
            Part::GateUp => "mlp.gate_up_proj",
            Part::Down => "mlp.down_proj",
            Part::PreAttnNorm => "input_layernorm",
            // A pre-norm model calls the MLP's norm after the attention it follows.
            Part::PreMlpNorm if placement == NormPlacement::Pre => "post_attention_layernorm",
            Part::PreMlpNorm => "pre_feedforward_layernorm",
            Part::PostAttnNorm => "post_attention_layernorm",
            Part::PostMlpNorm => "post_feedforward_layernorm",
            Part::QNorm => "self_attn.q_norm",
            Part::KNorm => "self_attn.k_norm",
        };
        format!("model.layers.{l}.{name}")
    },
    unpermute_qk: false,
    gemma_norms_unshifted: true,
};

const GGUF: Names = Names {
    embed: "token_embd.weight",
    final_norm: "output_norm.weight",
    head: "output.weight",
    layer: |l, part, _| {
        let name = match part {
            Part::Q => "attn_q",
            Part::K => "attn_k",
            Part::V => "attn_v",
            Part::Qkv => "attn_qkv",
            Part::O => "attn_output",
            Part::Gate => "ffn_gate",
            Part::Up => "ffn_up",
            // llama.cpp keeps Phi-3's fused gate | up under the MLP's up name.
            Part::GateUp => "ffn_up",
            Part::Down => "ffn_down",
            Part::PreAttnNorm => "attn_norm",
            Part::PreMlpNorm => "ffn_norm",
            Part::PostAttnNorm => "post_attention_norm",
            Part::PostMlpNorm => "post_ffw_norm",
            Part::QNorm => "attn_q_norm",
            Part::KNorm => "attn_k_norm",
        };
        format!("blk.{l}.{name}")
    },
    unpermute_qk: true,
    gemma_norms_unshifted: false,
};

pub(crate) fn load_hf(
    src: &dyn WeightSource,
    cfg: &ModelConfig,
    device: &Device,
) -> Result<Transformer> {
    load(src, cfg, device, &HF)
}

pub(crate) fn load_gguf(src: &GgufFile, cfg: &ModelConfig, device: &Device) -> Result<Transformer> {
    // llama.cpp interleaves the rotary halves of Llama's q and k rows (its rope works on
    // adjacent pairs); families it rotates NeoX-style (Gemma) keep HF's rows.
    let names = Names {
        unpermute_qk: cfg.architecture == Architecture::Llama,
        ..GGUF
    };
    load(src, cfg, device, &names)
}

/// The biases of projections stacked into one, as their weights are: `None` when none has one,
/// zeros for those without when another has one.
fn stacked_biases<const N: usize>(
    parts: [(Option<HostTensor>, usize); N],
) -> Result<Option<HostTensor>> {
    if parts.iter().all(|(b, _)| b.is_none()) {
        return Ok(None);
    }
    let full = parts
        .into_iter()
        .map(|(b, len)| b.map_or_else(|| HostTensor::new(vec![len], vec![0.0; len]), Ok))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(concat_rows(&full.iter().collect::<Vec<_>>())?))
}

/// Gemma's RMSNorm multiplies by `1 + w`; a stored `w` is shifted by one here, once.
fn norm_offset(cfg: &ModelConfig, names: &Names) -> f32 {
    match cfg.architecture {
        Architecture::Gemma | Architecture::Gemma2 | Architecture::Gemma3
            if names.gemma_norms_unshifted =>
        {
            1.0
        }
        _ => 0.0,
    }
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
    let placement = cfg.design.norms;
    let offset = norm_offset(cfg, names);
    let norm_of = |name: &str, width: usize| -> Result<Norm> {
        let mut w = src.shaped(name, &[width])?;
        w.data.iter_mut().for_each(|x| *x += offset);
        Ok(Norm {
            kind: NormKind::RmsNorm,
            weight: row(&w, device)?,
            bias: None,
            eps: cfg.norm_eps,
        })
    };
    // llama.cpp interleaves each head's rotary halves: rows [head][dh/2][2] → HF's [head][2][dh/2].
    let unpermute = |w: HostTensor, heads: usize| -> Result<HostTensor> {
        if names.unpermute_qk {
            swap_row_groups(&w, heads, dh / 2, 2, 1)
        } else {
            Ok(w)
        }
    };
    // Grown layer by layer: `n_layers` comes from a file, and a missing layer is an error below.
    let mut blocks = Vec::new();
    for l in 0..cfg.n_layers {
        let n = |part: Part| (names.layer)(l, part, placement);
        let weight =
            |part: Part, shape: &[usize]| src.shaped(&format!("{}.weight", n(part)), shape);
        // A bias where the file has one (`attention_bias`, `mlp_bias`, Qwen 2's q/k/v).
        let bias = |part: Part, len: usize| -> Result<Option<HostTensor>> {
            let name = format!("{}.bias", n(part));
            src.contains(&name)
                .then(|| src.shaped(&name, &[len]))
                .transpose()
        };
        let norm = |part: Part, width: usize| norm_of(&format!("{}.weight", n(part)), width);
        let (qn, kn) = (h * dh, kv * dh);
        let fused_qkv = src.contains(&format!("{}.weight", n(Part::Qkv)));
        let (qkv_w, qkv_b) = if fused_qkv {
            (
                weight(Part::Qkv, &[qn + 2 * kn, d])?,
                bias(Part::Qkv, qn + 2 * kn)?,
            )
        } else {
            let q = unpermute(weight(Part::Q, &[qn, d])?, h)?;
            let k = unpermute(weight(Part::K, &[kn, d])?, kv)?;
            let vv = weight(Part::V, &[kn, d])?;
            let qkv_b = stacked_biases([
                (bias(Part::Q, qn)?.map(|b| unpermute(b, h)).transpose()?, qn),
                (
                    bias(Part::K, kn)?.map(|b| unpermute(b, kv)).transpose()?,
                    kn,
                ),
                (bias(Part::V, kn)?, kn),
            ])?;
            (concat_rows(&[&q, &k, &vv])?, qkv_b)
        };
        let fused_gate_up = !src.contains(&format!("{}.weight", n(Part::Gate)))
            && src.contains(&format!("{}.weight", n(Part::GateUp)));
        let (gate_up_w, gate_up_b) = if fused_gate_up {
            (
                weight(Part::GateUp, &[2 * m, d])?,
                bias(Part::GateUp, 2 * m)?,
            )
        } else {
            let gate_up =
                concat_rows(&[&weight(Part::Gate, &[m, d])?, &weight(Part::Up, &[m, d])?])?;
            let b = stacked_biases([(bias(Part::Gate, m)?, m), (bias(Part::Up, m)?, m)])?;
            (gate_up, b)
        };
        let (q_norm, k_norm) = match cfg.design.qk_norm {
            QkNorm::None => (None, None),
            QkNorm::PerHead => (Some(norm(Part::QNorm, dh)?), Some(norm(Part::KNorm, dh)?)),
            QkNorm::Whole => (Some(norm(Part::QNorm, qn)?), Some(norm(Part::KNorm, kn)?)),
        };
        let (pre, post) = match placement {
            NormPlacement::Pre => (true, false),
            NormPlacement::Sandwich => (true, true),
            NormPlacement::Post => (false, true),
        };
        let optional = |yes: bool, part: Part| yes.then(|| norm(part, d)).transpose();
        blocks.push(Block {
            ln1: optional(pre, Part::PreAttnNorm)?,
            ln2: optional(pre, Part::PreMlpNorm)?,
            post_attn: optional(post, Part::PostAttnNorm)?,
            post_mlp: optional(post, Part::PostMlpNorm)?,
            attn: Attention {
                qkv: Linear::from_hf(&qkv_w, qkv_b.as_ref(), device)?,
                out: Linear::from_hf(
                    &weight(Part::O, &[d, qn])?,
                    bias(Part::O, d)?.as_ref(),
                    device,
                )?,
                q_norm,
                k_norm,
            },
            mlp: Mlp {
                up: Linear::from_hf(&gate_up_w, gate_up_b.as_ref(), device)?,
                down: Linear::from_hf(
                    &weight(Part::Down, &[d, m])?,
                    bias(Part::Down, d)?.as_ref(),
                    device,
                )?,
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
        ln_final: norm_of(names.final_norm, d)?,
        unembed: unembed.to_burn(device)?,
        cpu_path: CpuPath::default(),
    })
}
