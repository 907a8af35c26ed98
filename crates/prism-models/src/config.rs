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
    /// Llama family (Llama, SmolLM2, …).
    Llama,
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
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Positions {
    /// A learned position embedding added to the token embedding.
    Learned,
    /// Rotary embedding (rotate-half) on the first `dims` dimensions of each q/k head.
    Rotary {
        /// Rotated dimensions per head (even).
        dims: usize,
        /// Base of the frequencies.
        theta: f64,
    },
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
}

/// The largest value a model dimension (layers, width, heads, head size, MLP width, vocabulary)
/// may take: 2^21.
pub const DIMENSION_LIMIT: usize = 1 << 21;

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
            ("n_layers", self.n_layers, DIMENSION_LIMIT),
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
        if self.architecture != Architecture::Llama && !self.d_model.is_multiple_of(self.n_heads) {
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
        if let Positions::Rotary { dims, .. } = self.positions
            && (dims % 2 != 0 || dims > self.d_head)
        {
            return bad(format!(
                "rotary dims {dims} must be even and at most d_head {}",
                self.d_head
            ));
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
}
