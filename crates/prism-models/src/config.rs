//! One description of a model's shape and components, whatever file it came from.

use std::path::Path;

use prism_core::{ModelShape, PrismError, Result};
use serde_json::Value;

/// The model families Prism implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// GPT-NeoX / Pythia.
    GptNeoX,
    /// GPT-2.
    Gpt2,
    /// Llama family (Llama 1–3, SmolLM2, …).
    Llama,
    /// Mistral (Llama with sliding-window attention).
    Mistral,
    /// Qwen 2 / 2.5 (biases on q, k and v).
    Qwen2,
    /// Qwen 3 (per-head RMSNorm of q and k).
    Qwen3,
    /// Gemma (1): embeddings × √d, RMSNorm with `1 + w`, GELU-tanh gating.
    Gemma,
    /// Gemma 2: Gemma with norms before and after attention and MLP, soft-capped attention and
    /// logits, alternating local and global layers.
    Gemma2,
    /// Gemma 3 (text): Gemma 2 without soft-caps, with q/k norms and a rope base per layer type.
    Gemma3,
    /// Phi-3 (fused `qkv_proj` and `gate_up_proj`).
    Phi3,
    /// OLMo 2: norms after attention and MLP only, RMSNorm of the whole q and k projections.
    Olmo2,
}

impl Architecture {
    /// The HF `model_type` of this family.
    ///
    /// ```
    /// assert_eq!(prism_models::Architecture::Gemma3.model_type(), "gemma3_text");
    /// ```
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::GptNeoX => "gpt_neox",
            Architecture::Gpt2 => "gpt2",
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
            Architecture::Gemma => "gemma",
            Architecture::Gemma2 => "gemma2",
            Architecture::Gemma3 => "gemma3_text",
            Architecture::Phi3 => "phi3",
            Architecture::Olmo2 => "olmo2",
        }
    }

    /// The `general.architecture` of this family's llama.cpp GGUF files, for the families
    /// Prism reads from GGUF (llama.cpp writes Mistral as `llama`).
    ///
    /// ```
    /// use prism_models::Architecture;
    /// assert_eq!(Architecture::Gemma2.gguf_architecture(), Some("gemma2"));
    /// assert_eq!(Architecture::Mistral.gguf_architecture(), None);
    /// ```
    pub fn gguf_architecture(self) -> Option<&'static str> {
        match self {
            Architecture::GptNeoX | Architecture::Gpt2 | Architecture::Mistral => None,
            Architecture::Gemma3 => Some("gemma3"),
            other => Some(other.model_type()),
        }
    }

    /// Every family Prism reads, in the order error messages list them.
    pub const ALL: [Architecture; 11] = [
        Architecture::GptNeoX,
        Architecture::Gpt2,
        Architecture::Llama,
        Architecture::Mistral,
        Architecture::Qwen2,
        Architecture::Qwen3,
        Architecture::Gemma,
        Architecture::Gemma2,
        Architecture::Gemma3,
        Architecture::Phi3,
        Architecture::Olmo2,
    ];
}

/// Layer normalisation flavour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    /// LayerNorm with weight and bias.
    LayerNorm,
    /// RMSNorm with weight only.
    RmsNorm,
}

/// The MLP's nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MlpActivation {
    /// Exact (erf) GELU.
    Gelu,
    /// GELU with the tanh approximation (GPT-2's `gelu_new`).
    GeluTanh,
    /// SiLU (used gated, as SwiGLU, in Llama).
    Silu,
}

/// How positions enter the model.
#[derive(Clone, Debug, PartialEq)]
pub enum Positions {
    /// A learned position embedding added to the token embedding.
    Learned,
    /// Rotary embedding (rotate-half) on the first `dims` dimensions of each q/k head.
    Rotary {
        /// Rotated dimensions per head (even).
        dims: usize,
        /// Its frequencies (on every layer, or on the global layers of a model whose local
        /// layers have their own, [`BlockDesign::local_rope`]).
        frequencies: RopeFrequencies,
    },
}

/// A rotary embedding's frequencies: the base `theta` and how they are rescaled for contexts
/// longer than pre-training's (`rope_type` in an HF config; docs/models.md gives each formula).
#[derive(Clone, Debug, PartialEq)]
pub struct RopeFrequencies {
    /// Base of the frequencies, `θᵢ = theta^(−2i/dims)`.
    pub theta: f64,
    /// The rescaling.
    pub scaling: RopeScaling,
}

impl RopeFrequencies {
    /// Unscaled frequencies of base `theta`.
    pub fn plain(theta: f64) -> Self {
        Self {
            theta,
            scaling: RopeScaling::None,
        }
    }
}

/// How rotary frequencies are rescaled (`rope_type`).
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// `default`: none.
    None,
    /// `linear`: every frequency divided by `factor` (positions interpolated).
    Linear {
        /// Divisor.
        factor: f64,
    },
    /// `llama3`: low frequencies divided by `factor`, high ones kept, a smooth blend between.
    Llama3 {
        /// Divisor of the low frequencies.
        factor: f64,
        /// Wavelengths above `original_max_positions / low_freq_factor` are scaled.
        low_freq_factor: f64,
        /// Wavelengths below `original_max_positions / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// Pre-training context.
        original_max_positions: usize,
    },
    /// `dynamic` (NTK-aware): for a pass longer than `max_positions`, the base grows with its
    /// length; shorter passes are unscaled.
    Dynamic {
        /// Scaling factor.
        factor: f64,
        /// The config's `max_position_embeddings`.
        max_positions: usize,
    },
    /// `yarn`: interpolated low frequencies, extrapolated high ones, a linear ramp between
    /// (over the dimensions whose rotations in the original context lie between `beta_slow` and
    /// `beta_fast`), and cos/sin multiplied by `attention_factor`.
    Yarn {
        /// Scaling factor.
        factor: f64,
        /// Pre-training context.
        original_max_positions: usize,
        /// Rotations below which a dimension is interpolated.
        beta_slow: f64,
        /// Rotations above which a dimension is extrapolated.
        beta_fast: f64,
        /// Multiplier of cos and sin.
        attention_factor: f64,
        /// Round the ramp's ends outwards to whole dimensions.
        truncate: bool,
    },
    /// Each frequency divided by its own number, as a llama.cpp GGUF file stores Llama 3's
    /// scaling (`rope_freqs.weight`, one divisor per rotated pair of dimensions).
    Divisors(Vec<f32>),
}

impl RopeScaling {
    /// The scaling factor of the schemes that have one.
    pub(crate) fn factor(&self) -> Option<f64> {
        match *self {
            RopeScaling::None | RopeScaling::Divisors(_) => None,
            RopeScaling::Linear { factor }
            | RopeScaling::Llama3 { factor, .. }
            | RopeScaling::Dynamic { factor, .. }
            | RopeScaling::Yarn { factor, .. } => Some(factor),
        }
    }
}

/// YaRN's default multiplier of cos and sin for a context `scale` times the original:
/// `0.1·m·ln(scale) + 1` (1 when not stretched).
pub(crate) fn yarn_mscale(scale: f64, m: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * m * scale.ln() + 1.0
    }
}

/// Which keys a layer's queries see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionSpan {
    /// Every earlier position and its own.
    Global,
    /// The last `n` positions, its own included (`j > i − n`): local attention.
    Sliding(usize),
}

impl AttentionSpan {
    /// `n_layers` layers all local with `window`, or all global (empty) without one.
    pub(crate) fn uniform(n_layers: usize, window: Option<usize>) -> Vec<AttentionSpan> {
        match window {
            Some(w) => vec![AttentionSpan::Sliding(w); n_layers.min(LAYER_LIMIT)],
            None => Vec::new(),
        }
    }
}

/// Where a block's norms sit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormPlacement {
    /// Before attention and before the MLP (GPT-2, Llama, …).
    Pre,
    /// Before and after each of them (Gemma 2 and 3); `hook_attn_out` and `hook_mlp_out` are the
    /// normalised outputs, what is added to the residual stream.
    Sandwich,
    /// After each of them only (OLMo 2); the hooks as for [`NormPlacement::Sandwich`].
    Post,
}

/// How queries and keys are normalised (RMSNorm) before the rotary embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkNorm {
    /// Not at all.
    None,
    /// Each head's `d_head` features (Qwen 3, Gemma 3).
    PerHead,
    /// The whole projection, every head at once (OLMo 2).
    Whole,
}

/// What later families change in the plain block: the defaults ([`BlockDesign::default`]) are
/// GPT-2's and Llama 2's.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockDesign {
    /// Norm placement.
    pub norms: NormPlacement,
    /// Query/key norms.
    pub qk_norm: QkNorm,
    /// Each layer's attention span; empty means every layer is global.
    pub spans: Vec<AttentionSpan>,
    /// The rotary frequencies of the sliding layers when they differ from the global layers'
    /// (Gemma 3).
    pub local_rope: Option<RopeFrequencies>,
    /// Multiplier of `q·k` (`None`: `d_head^−½`).
    pub attn_scale: Option<f64>,
    /// `c·tanh(s/c)` of the attention scores before the softmax (Gemma 2).
    pub attn_softcap: Option<f64>,
    /// `c·tanh(l/c)` of the logits (Gemma 2).
    pub final_softcap: Option<f64>,
    /// Multiplier of the token embedding (Gemma: `√d_model`); `hook_embed` is the product.
    pub embed_scale: Option<f64>,
}

impl Default for BlockDesign {
    fn default() -> Self {
        Self {
            norms: NormPlacement::Pre,
            qk_norm: QkNorm::None,
            spans: Vec::new(),
            local_rope: None,
            attn_scale: None,
            attn_softcap: None,
            final_softcap: None,
            embed_scale: None,
        }
    }
}

/// Everything that determines a model's computation.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Model family.
    pub architecture: Architecture,
    /// Rows of the embedding / columns of the unembedding.
    pub vocab_size: usize,
    /// Residual width.
    pub d_model: usize,
    /// Number of blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Width of a head.
    pub d_head: usize,
    /// MLP hidden width.
    pub d_mlp: usize,
    /// Longest sequence the positions support.
    pub max_positions: usize,
    /// Norm flavour.
    pub norm: NormKind,
    /// Norm epsilon.
    pub norm_eps: f64,
    /// MLP nonlinearity.
    pub activation: MlpActivation,
    /// Gated MLP (`down(act(gate(x)) · up(x))`).
    pub gated_mlp: bool,
    /// Position scheme.
    pub positions: Positions,
    /// Attention and MLP read the same input (GPT-NeoX `use_parallel_residual`).
    pub parallel_residual: bool,
    /// The unembedding is the transposed embedding.
    pub tied_embeddings: bool,
    /// Std of the normal initialisation (for weight randomisation).
    pub initializer_range: f64,
    /// BOS id from the config, if any.
    pub bos_token_id: Option<u32>,
    /// EOS id from the config, if any.
    pub eos_token_id: Option<u32>,
    /// Padding id from the config, if any.
    pub pad_token_id: Option<u32>,
    /// The refinements of later families (norm placement, q/k norms, local attention, …).
    pub design: BlockDesign,
}

/// The largest value a model dimension (layers, width, heads, head size, MLP width, vocabulary)
/// may take: 2^21.
pub const DIMENSION_LIMIT: usize = 1 << 21;

/// The most layers a model may have: 2^14 (per-layer lists are sized from a file's layer count
/// before the config is validated, so this bounds what a hostile file can make Prism allocate).
pub const LAYER_LIMIT: usize = 1 << 14;

impl ModelConfig {
    /// The dimensions that decide hook points and activation shapes.
    pub fn shape(&self) -> ModelShape {
        ModelShape {
            n_layers: self.n_layers,
            d_model: self.d_model,
            n_heads: self.n_heads,
            d_head: self.d_head,
            d_mlp: self.d_mlp,
            parallel_residual: self.parallel_residual,
            learned_positions: self.positions == Positions::Learned,
        }
    }

    /// Layer `l`'s attention span.
    pub fn span(&self, l: usize) -> AttentionSpan {
        self.design
            .spans
            .get(l)
            .copied()
            .unwrap_or(AttentionSpan::Global)
    }

    /// The multiplier of `q·k` in the attention scores.
    pub fn attn_scale(&self) -> f64 {
        self.design
            .attn_scale
            .unwrap_or((self.d_head as f64).powf(-0.5))
    }

    /// Checks the numbers fit together (heads divide the width, etc.).
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |m: String| {
            Err(PrismError::Config {
                path: path.to_path_buf(),
                message: m,
            })
        };
        if self.n_layers == 0 || self.d_model == 0 || self.n_heads == 0 || self.vocab_size == 0 {
            return bad("n_layers, d_model, n_heads and vocab_size must all be positive".into());
        }
        // Far above any released model (Llama 3 405B: 126 layers, width 16 384, MLP 53 248,
        // vocabulary 128 256), and low enough that products of three of them fit in `usize`:
        // a corrupt or hostile config is refused here, before anything is sized from it.
        for (name, value, limit) in [
            ("n_layers", self.n_layers, LAYER_LIMIT),
            ("d_model", self.d_model, DIMENSION_LIMIT),
            ("n_heads", self.n_heads, DIMENSION_LIMIT),
            ("d_head", self.d_head, DIMENSION_LIMIT),
            ("d_mlp", self.d_mlp, DIMENSION_LIMIT),
            ("vocab_size", self.vocab_size, DIMENSION_LIMIT),
        ] {
            if value > limit {
                return bad(format!(
                    "{name} = {value} is larger than any model Prism can load (limit {limit})"
                ));
            }
        }
        if self.d_head == 0 {
            return bad(format!(
                "{} heads leave no room in width {}: the head size is 0",
                self.n_heads, self.d_model
            ));
        }
        let free_head_size = !matches!(
            self.architecture,
            Architecture::GptNeoX | Architecture::Gpt2
        );
        if !free_head_size && !self.d_model.is_multiple_of(self.n_heads) {
            return bad(format!(
                "width {} is not a multiple of the {} heads",
                self.d_model, self.n_heads
            ));
        }
        if self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!(
                "{} query heads cannot be grouped over {} key/value heads",
                self.n_heads, self.n_kv_heads
            ));
        }
        if let Positions::Rotary { dims, frequencies } = &self.positions {
            if dims % 2 != 0 || *dims > self.d_head {
                return bad(format!(
                    "rotary dims {dims} must be even and at most d_head {}",
                    self.d_head
                ));
            }
            if let RopeScaling::Divisors(d) = &frequencies.scaling
                && (d.len() != dims / 2 || d.iter().any(|v| !(v.is_finite() && *v > 0.0)))
            {
                return bad(format!(
                    "rope frequency divisors: {} for {dims} rotary dims (needs {} positive numbers)",
                    d.len(),
                    dims / 2
                ));
            }
        }
        let spans = &self.design.spans;
        if !spans.is_empty() && spans.len() != self.n_layers {
            return bad(format!(
                "{} layer types for {} layers",
                spans.len(),
                self.n_layers
            ));
        }
        if spans.contains(&AttentionSpan::Sliding(0)) {
            return bad("a sliding window of 0 positions".into());
        }
        for (name, value) in [
            ("attention scale", self.design.attn_scale),
            ("attention soft-cap", self.design.attn_softcap),
            ("final logit soft-cap", self.design.final_softcap),
            ("embedding scale", self.design.embed_scale),
        ] {
            if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return bad(format!("{name} {value:?} must be a positive number"));
            }
        }
        Ok(())
    }
}

/// Reads typed keys out of an HF `config.json`, with errors that name the file and key.
pub(crate) struct HfConfig<'a> {
    pub json: &'a Value,
    pub path: &'a Path,
}

impl HfConfig<'_> {
    fn missing(&self, key: &str, what: &str) -> PrismError {
        PrismError::Config {
            path: self.path.to_path_buf(),
            message: format!("key `{key}` is missing or not {what}"),
        }
    }
    /// A required positive integer.
    pub fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)
            .ok_or_else(|| self.missing(key, "an unsigned integer"))
    }
    /// An optional integer.
    pub fn opt_usize(&self, key: &str) -> Option<usize> {
        self.json
            .get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
    }
    /// A number, looked up under several names and in `rope_parameters` / `rope_scaling`.
    pub fn f64_any(&self, keys: &[&str]) -> Option<f64> {
        for k in keys {
            for scope in [
                Some(self.json),
                self.json.get("rope_parameters"),
                self.json.get("rope_scaling"),
            ] {
                if let Some(v) = scope.and_then(|s| s.get(*k)).and_then(Value::as_f64) {
                    return Some(v);
                }
            }
        }
        None
    }
    /// A bool with a default.
    pub fn bool_or(&self, key: &str, default: bool) -> bool {
        self.json
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }
    /// A string with a default.
    pub fn str_or<'b>(&'b self, key: &str, default: &'b str) -> &'b str {
        self.json
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or(default)
    }
    /// A token id (absent, null, or a list use the first).
    pub fn token_id(&self, key: &str) -> Option<u32> {
        match self.json.get(key)? {
            Value::Number(n) => n.as_u64().map(|v| v as u32),
            Value::Array(a) => a.first().and_then(Value::as_u64).map(|v| v as u32),
            _ => None,
        }
    }
    /// An optional number (absent or `null`: `None`); a value of another type is an error.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.missing(key, "a number")),
        }
    }

    /// A config error about this file.
    pub fn error(&self, message: String) -> PrismError {
        PrismError::Config {
            path: self.path.to_path_buf(),
            message,
        }
    }

    /// Rejects rope scaling schemes other than the plain one.
    pub fn plain_rope(&self) -> Result<()> {
        for scope in ["rope_parameters", "rope_scaling"] {
            if let Some(t) = self
                .json
                .get(scope)
                .and_then(|s| s.get("rope_type"))
                .and_then(Value::as_str)
                && t != "default"
            {
                return Err(PrismError::Config {
                    path: self.path.to_path_buf(),
                    message: format!("rope_type `{t}` is not supported (only `default`)"),
                });
            }
        }
        Ok(())
    }

    /// The rotary frequencies of one layer type, from either form HF configs take: the older
    /// `rope_theta` + `rope_scaling` (+ Gemma 3's `rope_local_base_freq` for its local layers)
    /// or `transformers` 5's `rope_parameters`, flat or keyed by layer type. `layer_type` is
    /// `None` for a model whose layers share one set, else `full_attention` or
    /// `sliding_attention`.
    pub fn rope(&self, layer_type: Option<&str>, default_theta: f64) -> Result<RopeFrequencies> {
        fn object(v: Option<&Value>) -> Option<&Value> {
            v.filter(|v| v.is_object())
        }
        let params = object(self.json.get("rope_parameters"));
        let nested = params.is_some_and(|p| {
            ["full_attention", "sliding_attention"]
                .iter()
                .any(|k| p.get(*k).is_some())
        });
        let local_in_old_form = layer_type == Some("sliding_attention") && !nested;
        let dict = if nested {
            object(params.and_then(|p| p.get(layer_type.unwrap_or("full_attention"))))
        } else if local_in_old_form {
            None
        } else {
            params.or(object(self.json.get("rope_scaling")))
        };
        let num = |key: &str| -> Result<Option<f64>> {
            match dict.and_then(|d| d.get(key)) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| self.error(format!("rope parameter `{key}` is not a number"))),
            }
        };
        let theta = match num("rope_theta")? {
            Some(t) => t,
            None if local_in_old_form => self
                .opt_f64("rope_local_base_freq")?
                .unwrap_or(default_theta),
            None => self.opt_f64("rope_theta")?.unwrap_or(default_theta),
        };
        if !(theta.is_finite() && theta > 1.0) {
            return Err(self.error(format!("rope_theta {theta} must be a number above 1")));
        }
        let kind = dict
            .and_then(|d| d.get("rope_type").or_else(|| d.get("type")))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let required = |key: &str| -> Result<f64> {
            num(key)?.ok_or_else(|| {
                self.error(format!(
                    "rope_type `{kind}` needs the rope parameter `{key}`"
                ))
            })
        };
        let max_positions = self.opt_usize("max_position_embeddings");
        // As `transformers` does, a top-level `original_max_position_embeddings` (Phi-3) wins
        // over the rope parameters' own, and `max_position_embeddings` stands in for both.
        let original = || -> Result<usize> {
            let from_dict = num("original_max_position_embeddings")?.map(|v| v as usize);
            self.opt_usize("original_max_position_embeddings")
                .or(from_dict)
                .or(max_positions)
                .ok_or_else(|| {
                    self.error(format!(
                        "rope_type `{kind}` needs `original_max_position_embeddings`"
                    ))
                })
        };
        let scaling = match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear {
                factor: required("factor")?,
            },
            "llama3" => RopeScaling::Llama3 {
                factor: required("factor")?,
                low_freq_factor: required("low_freq_factor")?,
                high_freq_factor: required("high_freq_factor")?,
                original_max_positions: original()?,
            },
            "dynamic" => RopeScaling::Dynamic {
                factor: required("factor")?,
                max_positions: max_positions
                    .ok_or_else(|| self.missing("max_position_embeddings", "an integer"))?,
            },
            "yarn" => {
                let original_max_positions = original()?;
                let factor = match num("factor")? {
                    Some(f) => f,
                    None => {
                        max_positions.unwrap_or(original_max_positions) as f64
                            / original_max_positions.max(1) as f64
                    }
                };
                let attention_factor = match (
                    num("attention_factor")?,
                    num("mscale")?.filter(|&m| m != 0.0),
                    num("mscale_all_dim")?.filter(|&m| m != 0.0),
                ) {
                    (Some(a), _, _) => a,
                    (None, Some(m), Some(all)) => yarn_mscale(factor, m) / yarn_mscale(factor, all),
                    _ => yarn_mscale(factor, 1.0),
                };
                RopeScaling::Yarn {
                    factor,
                    original_max_positions,
                    beta_fast: num("beta_fast")?.filter(|&b| b != 0.0).unwrap_or(32.0),
                    beta_slow: num("beta_slow")?.filter(|&b| b != 0.0).unwrap_or(1.0),
                    attention_factor,
                    truncate: dict
                        .and_then(|d| d.get("truncate"))
                        .and_then(Value::as_bool)
                        .unwrap_or(true),
                }
            }
            other => {
                return Err(self.error(format!(
                    "rope_type `{other}` is not supported (default, linear, llama3, dynamic, yarn)"
                )));
            }
        };
        if let Some(factor) = scaling.factor()
            && !(factor.is_finite() && factor > 0.0)
        {
            return Err(self.error(format!("rope factor {factor} must be a positive number")));
        }
        if let RopeScaling::Llama3 {
            low_freq_factor,
            high_freq_factor,
            ..
        } = scaling
            && !(low_freq_factor > 0.0 && high_freq_factor > low_freq_factor)
        {
            return Err(self.error(format!(
                "llama3 rope: high_freq_factor {high_freq_factor} must exceed low_freq_factor {low_freq_factor} > 0"
            )));
        }
        Ok(RopeFrequencies { theta, scaling })
    }

    /// Each layer's attention span: from `layer_types` (`full_attention` / `sliding_attention`)
    /// where the config lists them, else `sliding(l)` says which layers are local. Local layers
    /// see the last `window` positions; with no window every layer is global (empty).
    pub fn spans(
        &self,
        n_layers: usize,
        window: Option<usize>,
        sliding: impl Fn(usize) -> bool,
    ) -> Result<Vec<AttentionSpan>> {
        // As in `transformers`, a layer typed `sliding_attention` with no window is global.
        let Some(window) = window else {
            return Ok(Vec::new());
        };
        match self.json.get("layer_types").and_then(Value::as_array) {
            Some(types) => types
                .iter()
                .map(|t| match t.as_str() {
                    Some("full_attention") => Ok(AttentionSpan::Global),
                    Some("sliding_attention") => Ok(AttentionSpan::Sliding(window)),
                    other => Err(self.error(format!(
                        "layer type {other:?} is not supported (full_attention, sliding_attention)"
                    ))),
                })
                .collect(),
            None => Ok((0..n_layers.min(LAYER_LIMIT))
                .map(|l| {
                    if sliding(l) {
                        AttentionSpan::Sliding(window)
                    } else {
                        AttentionSpan::Global
                    }
                })
                .collect()),
        }
    }

    /// `sliding_window` when it is a positive integer (absent or `null`: none).
    pub fn sliding_window(&self) -> Result<Option<usize>> {
        match self.json.get("sliding_window") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(0) | None => Err(self.missing("sliding_window", "a positive integer")),
                Some(w) => Ok(Some(w as usize)),
            },
        }
    }
}
