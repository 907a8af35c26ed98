//! Hook points: the TransformerLens names of the activations a forward pass exposes.

use std::fmt;
use std::str::FromStr;

use crate::error::{PrismError, Result};

/// A named place in a transformer's forward pass where an activation can be read or changed.
///
/// Names follow TransformerLens exactly, so a researcher's existing vocabulary works:
///
/// | name | shape |
/// |---|---|
/// | `hook_embed` | `[batch, seq, d_model]` token embedding |
/// | `hook_pos_embed` | `[batch, seq, d_model]` learned position embedding (GPT-2 only) |
/// | `blocks.{l}.hook_resid_pre` | `[batch, seq, d_model]` |
/// | `blocks.{l}.hook_attn_out` | `[batch, seq, d_model]` |
/// | `blocks.{l}.hook_resid_mid` | `[batch, seq, d_model]` (sequential-residual models only) |
/// | `blocks.{l}.ln2.hook_normalized` | `[batch, seq, d_model]` the MLP's input normalised, before the norm's learned scale and bias |
/// | `blocks.{l}.mlp.hook_in` | `[batch, seq, d_model]` the MLP's input (after its pre-norm) |
/// | `blocks.{l}.hook_mlp_out` | `[batch, seq, d_model]` |
/// | `blocks.{l}.hook_resid_post` | `[batch, seq, d_model]` |
/// | `blocks.{l}.mlp.hook_post` | `[batch, seq, d_mlp]` (after the nonlinearity / gating) |
/// | `blocks.{l}.attn.hook_z` | `[batch, seq, n_heads, d_head]` per-head attention output |
/// | `blocks.{l}.attn.hook_pattern` | `[batch, n_heads, query, key]` attention probabilities |
/// | `ln_final.hook_normalized` | `[batch, seq, d_model]` |
///
/// ```
/// use prism_core::HookPoint;
/// let h: HookPoint = "blocks.3.mlp.hook_post".parse().unwrap();
/// assert_eq!(h, HookPoint::MlpPost(3));
/// assert_eq!(h.to_string(), "blocks.3.mlp.hook_post");
/// assert!("blocks.3.hook_mlp_outt".parse::<HookPoint>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookPoint {
    /// `hook_embed`
    Embed,
    /// `hook_pos_embed`
    PosEmbed,
    /// `blocks.{l}.hook_resid_pre`
    ResidPre(usize),
    /// `blocks.{l}.attn.hook_pattern`
    AttnPattern(usize),
    /// `blocks.{l}.attn.hook_z`
    AttnZ(usize),
    /// `blocks.{l}.hook_attn_out`
    AttnOut(usize),
    /// `blocks.{l}.hook_resid_mid`
    ResidMid(usize),
    /// `blocks.{l}.ln2.hook_normalized`: the MLP's input through its pre-norm without the
    /// norm's learned scale and bias (`x/rms(x)`, or `(x − mean)/std`), as TransformerLens
    /// exposes it with its default weight folding; the MLP's input itself where the block has
    /// no pre-MLP norm. What Gemma Scope's transcoders read.
    Ln2Normalized(usize),
    /// `blocks.{l}.mlp.hook_in`: the MLP's input, after its pre-norm (with the norm's scale
    /// and bias) — circuit-tracer's name for what its transcoders read.
    MlpIn(usize),
    /// `blocks.{l}.mlp.hook_post`
    MlpPost(usize),
    /// `blocks.{l}.hook_mlp_out`
    MlpOut(usize),
    /// `blocks.{l}.hook_resid_post`
    ResidPost(usize),
    /// `ln_final.hook_normalized`
    LnFinal,
}

/// The per-layer hook names, in forward order, as they follow `blocks.{l}.`.
const BLOCK_HOOKS: [&str; 10] = [
    "hook_resid_pre",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_normalized",
    "mlp.hook_in",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
];

impl HookPoint {
    /// The layer this hook point belongs to, if any.
    pub fn layer(&self) -> Option<usize> {
        self.block_site().map(|(l, _)| l)
    }

    /// Where the forward pass reaches this hook: hooks compare by it in the order a pass visits
    /// them (the derived `Ord` does not: it orders by kind first).
    ///
    /// ```
    /// use prism_core::HookPoint;
    /// assert!(HookPoint::MlpOut(1).forward_position() < HookPoint::MlpIn(3).forward_position());
    /// assert!(HookPoint::MlpIn(3).forward_position() < HookPoint::MlpOut(3).forward_position());
    /// assert!(HookPoint::ResidPost(9).forward_position() < HookPoint::LnFinal.forward_position());
    /// ```
    pub fn forward_position(&self) -> (usize, usize) {
        match (self, self.block_site()) {
            (_, Some((l, i))) => (l + 1, i),
            (HookPoint::Embed, None) => (0, 0),
            (HookPoint::PosEmbed, None) => (0, 1),
            (_, None) => (usize::MAX, 0),
        }
    }

    /// A per-layer hook's layer and its index in [`BLOCK_HOOKS`] (forward order in a block).
    fn block_site(&self) -> Option<(usize, usize)> {
        use HookPoint::*;
        Some(match *self {
            Embed | PosEmbed | LnFinal => return None,
            ResidPre(l) => (l, 0),
            AttnPattern(l) => (l, 1),
            AttnZ(l) => (l, 2),
            AttnOut(l) => (l, 3),
            ResidMid(l) => (l, 4),
            Ln2Normalized(l) => (l, 5),
            MlpIn(l) => (l, 6),
            MlpPost(l) => (l, 7),
            MlpOut(l) => (l, 8),
            ResidPost(l) => (l, 9),
        })
    }

    /// True for hooks whose activation has a head axis (`hook_z`, `hook_pattern`).
    pub fn has_heads(&self) -> bool {
        matches!(self, HookPoint::AttnZ(_) | HookPoint::AttnPattern(_))
    }

    /// Checks that this hook point exists on a model of the given shape.
    ///
    /// ```
    /// use prism_core::{HookPoint, ModelShape};
    /// let shape = ModelShape { n_layers: 2, d_model: 8, n_heads: 2, d_head: 4, d_mlp: 32,
    ///     parallel_residual: true, learned_positions: false };
    /// assert!(HookPoint::ResidPost(1).validate(&shape).is_ok());
    /// assert!(HookPoint::ResidPost(2).validate(&shape).is_err());
    /// assert!(HookPoint::ResidMid(0).validate(&shape).is_err()); // parallel residual
    /// ```
    pub fn validate(&self, shape: &ModelShape) -> Result<()> {
        let reject = |reason: String| {
            Err(PrismError::UnknownHook {
                name: self.to_string(),
                reason,
            })
        };
        if let Some(l) = self.layer()
            && l >= shape.n_layers
        {
            return reject(format!(
                "layer {l} does not exist (the model has layers 0..{})",
                shape.n_layers
            ));
        }
        match self {
            HookPoint::ResidMid(_) if shape.parallel_residual => reject(
                "this model uses a parallel residual (attention and MLP read the same input), \
                 so there is no resid_mid"
                    .into(),
            ),
            HookPoint::PosEmbed if !shape.learned_positions => {
                reject("this model has no learned position embedding (it uses rotary)".into())
            }
            _ => Ok(()),
        }
    }

    /// Checks that a dictionary reading vectors of width `d_in` fits this hook on a model of
    /// `shape`: the hook exists there, and its activation is one vector of that width per
    /// position (no head axis). The one check every caller that splices a dictionary in makes.
    ///
    /// ```
    /// use prism_core::{HookPoint, ModelShape};
    /// let shape = ModelShape { n_layers: 2, d_model: 8, n_heads: 2, d_head: 4, d_mlp: 32,
    ///     parallel_residual: false, learned_positions: false };
    /// assert!(HookPoint::MlpOut(1).check_dictionary(&shape, 8).is_ok());
    /// assert!(HookPoint::MlpPost(1).check_dictionary(&shape, 8).is_err()); // 32 wide
    /// assert!(HookPoint::AttnZ(0).check_dictionary(&shape, 4).is_err()); // per head
    /// ```
    pub fn check_dictionary(&self, shape: &ModelShape, d_in: usize) -> Result<()> {
        self.validate(shape)?;
        let dims = self.activation_shape(shape, 1, 1);
        if self.has_heads() || dims.last() != Some(&d_in) {
            return Err(PrismError::Shape(format!(
                "the dictionary reads vectors of width {d_in}; {self} has activations {dims:?}"
            )));
        }
        Ok(())
    }

    /// The activation's shape for a batch of `batch` sequences of `seq` tokens.
    pub fn activation_shape(&self, shape: &ModelShape, batch: usize, seq: usize) -> Vec<usize> {
        match self {
            HookPoint::AttnPattern(_) => vec![batch, shape.n_heads, seq, seq],
            HookPoint::AttnZ(_) => vec![batch, seq, shape.n_heads, shape.d_head],
            HookPoint::MlpPost(_) => vec![batch, seq, shape.d_mlp],
            _ => vec![batch, seq, shape.d_model],
        }
    }

    /// Every hook point that exists on a model of this shape, in forward order.
    ///
    /// ```
    /// use prism_core::{HookPoint, ModelShape};
    /// let shape = ModelShape { n_layers: 1, d_model: 8, n_heads: 2, d_head: 4, d_mlp: 32,
    ///     parallel_residual: false, learned_positions: true };
    /// let all = HookPoint::all(&shape);
    /// assert_eq!(all.first(), Some(&HookPoint::Embed));
    /// assert_eq!(all.last(), Some(&HookPoint::LnFinal));
    /// assert_eq!(all.len(), 2 + 10 + 1);
    /// ```
    pub fn all(shape: &ModelShape) -> Vec<HookPoint> {
        let mut out = vec![HookPoint::Embed, HookPoint::PosEmbed];
        for l in 0..shape.n_layers {
            out.extend(BLOCK_HOOKS.iter().filter_map(|name| block_hook(name, l)));
        }
        out.push(HookPoint::LnFinal);
        out.retain(|h| h.validate(shape).is_ok());
        out
    }
}

fn block_hook(name: &str, l: usize) -> Option<HookPoint> {
    Some(match name {
        "hook_resid_pre" => HookPoint::ResidPre(l),
        "attn.hook_pattern" => HookPoint::AttnPattern(l),
        "attn.hook_z" => HookPoint::AttnZ(l),
        "hook_attn_out" => HookPoint::AttnOut(l),
        "hook_resid_mid" => HookPoint::ResidMid(l),
        "ln2.hook_normalized" => HookPoint::Ln2Normalized(l),
        "mlp.hook_in" => HookPoint::MlpIn(l),
        "mlp.hook_post" => HookPoint::MlpPost(l),
        "hook_mlp_out" => HookPoint::MlpOut(l),
        "hook_resid_post" => HookPoint::ResidPost(l),
        _ => return None,
    })
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.block_site()) {
            (_, Some((l, i))) => write!(f, "blocks.{l}.{}", BLOCK_HOOKS[i]),
            (HookPoint::Embed, None) => f.write_str("hook_embed"),
            (HookPoint::PosEmbed, None) => f.write_str("hook_pos_embed"),
            (_, None) => f.write_str("ln_final.hook_normalized"),
        }
    }
}

impl FromStr for HookPoint {
    type Err = PrismError;
    fn from_str(s: &str) -> Result<Self> {
        let unknown = |reason: &str| PrismError::UnknownHook {
            name: s.to_string(),
            reason: reason.to_string(),
        };
        match s {
            "hook_embed" => return Ok(HookPoint::Embed),
            "hook_pos_embed" => return Ok(HookPoint::PosEmbed),
            "ln_final.hook_normalized" => return Ok(HookPoint::LnFinal),
            _ => {}
        }
        let rest = s.strip_prefix("blocks.").ok_or_else(|| {
            unknown("expected hook_embed, hook_pos_embed, ln_final.hook_normalized or blocks.{layer}.{hook}")
        })?;
        let (layer, name) = rest
            .split_once('.')
            .ok_or_else(|| unknown("expected blocks.{layer}.{hook}"))?;
        let layer: usize = layer
            .parse()
            .map_err(|_| unknown("the layer after `blocks.` must be a number"))?;
        block_hook(name, layer)
            .ok_or_else(|| unknown(&format!("per-layer hooks are {}", BLOCK_HOOKS.join(", "))))
    }
}

/// The dimensions of a model that decide which hook points exist and what shapes they have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelShape {
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Residual-stream width.
    pub d_model: usize,
    /// Number of attention (query) heads.
    pub n_heads: usize,
    /// Width of one head.
    pub d_head: usize,
    /// Width of the MLP's hidden layer.
    pub d_mlp: usize,
    /// Attention and MLP read the same block input (GPT-NeoX/Pythia) rather than in sequence.
    pub parallel_residual: bool,
    /// The model adds a learned position embedding (GPT-2) rather than rotating q/k.
    pub learned_positions: bool,
}
