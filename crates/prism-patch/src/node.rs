//! Nodes: the cells of a patching sweep.

use prism_core::{HookPoint, ModelShape, PrismError, Result};
use serde::Serialize;

/// One place to patch: a hook point, restricted to a position, a head (of `hook_z`) or a
/// neuron (of `mlp.hook_post`) where the sweep asks for it. `None` means all of that axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Node {
    /// Where.
    #[serde(serialize_with = "hook_name")]
    pub hook: HookPoint,
    /// Sequence position.
    pub position: Option<usize>,
    /// Attention head (`hook_z`).
    pub head: Option<usize>,
    /// MLP neuron (`mlp.hook_post`).
    pub neuron: Option<usize>,
}

fn hook_name<S: serde::Serializer>(h: &HookPoint, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&h.to_string())
}

/// The sweeps TransformerLens' `patching.py` offers, by their short names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// `resid_pre`: every block × position of `hook_resid_pre`.
    ResidPre,
    /// `attn_out`: every block × position of `hook_attn_out`.
    AttnOut,
    /// `mlp_out`: every block × position of `hook_mlp_out`.
    MlpOut,
    /// `resid_post`: every block × position of `hook_resid_post`.
    ResidPost,
    /// `z`: every block × head of `attn.hook_z`, all positions together.
    Z,
    /// `z_pos`: every block × head × position of `attn.hook_z`.
    ZPerPosition,
    /// `neurons`: every block × neuron of `mlp.hook_post`, all positions together.
    Neurons,
}

impl std::str::FromStr for NodeKind {
    type Err = PrismError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "resid_pre" => NodeKind::ResidPre,
            "attn_out" => NodeKind::AttnOut,
            "mlp_out" => NodeKind::MlpOut,
            "resid_post" => NodeKind::ResidPost,
            "z" => NodeKind::Z,
            "z_pos" => NodeKind::ZPerPosition,
            "neurons" => NodeKind::Neurons,
            other => {
                return Err(PrismError::InvalidInput(format!(
                    "unknown sweep `{other}` (resid_pre, attn_out, mlp_out, resid_post, z, \
                     z_pos, neurons, or a full hook name)"
                )));
            }
        })
    }
}

/// The nodes of one sweep item: a short name (expanded over every block) or a full hook name
/// (that hook only: per position for `[batch, seq, d]` hooks, per head for `attn.hook_z`, per
/// neuron for `mlp.hook_post`), for sequences of `seq` tokens.
///
/// ```
/// use prism_core::ModelShape;
/// let shape = ModelShape { n_layers: 2, d_model: 8, n_heads: 2, d_head: 4, d_mlp: 16,
///     parallel_residual: false, learned_positions: false };
/// assert_eq!(prism_patch::nodes(&shape, "resid_pre", 5).unwrap().len(), 2 * 5);
/// assert_eq!(prism_patch::nodes(&shape, "z", 5).unwrap().len(), 2 * 2);
/// assert_eq!(prism_patch::nodes(&shape, "blocks.1.mlp.hook_post", 5).unwrap().len(), 16);
/// assert!(prism_patch::nodes(&shape, "blocks.7.hook_resid_pre", 5).is_err());
/// ```
pub fn nodes(shape: &ModelShape, item: &str, seq: usize) -> Result<Vec<Node>> {
    let item = item.trim();
    let (hooks, per_position_z): (Vec<HookPoint>, bool) = if item.contains('.') {
        let h: HookPoint = item.parse()?;
        h.validate(shape)?;
        (vec![h], false)
    } else {
        let kind: NodeKind = item.parse()?;
        let hook = |l| match kind {
            NodeKind::ResidPre => HookPoint::ResidPre(l),
            NodeKind::AttnOut => HookPoint::AttnOut(l),
            NodeKind::MlpOut => HookPoint::MlpOut(l),
            NodeKind::ResidPost => HookPoint::ResidPost(l),
            NodeKind::Z | NodeKind::ZPerPosition => HookPoint::AttnZ(l),
            NodeKind::Neurons => HookPoint::MlpPost(l),
        };
        (
            (0..shape.n_layers).map(hook).collect(),
            kind == NodeKind::ZPerPosition,
        )
    };
    let mut out = Vec::new();
    for hook in hooks {
        let node = Node {
            hook,
            position: None,
            head: None,
            neuron: None,
        };
        match hook {
            HookPoint::AttnPattern(_) => {
                return Err(PrismError::UnknownHook {
                    name: hook.to_string(),
                    reason: "attention patterns are not patched as nodes; patch hook_z".into(),
                });
            }
            HookPoint::AttnZ(_) => {
                for head in 0..shape.n_heads {
                    if per_position_z {
                        out.extend((0..seq).map(|p| Node {
                            position: Some(p),
                            head: Some(head),
                            ..node
                        }));
                    } else {
                        out.push(Node {
                            head: Some(head),
                            ..node
                        });
                    }
                }
            }
            HookPoint::MlpPost(_) => out.extend((0..shape.d_mlp).map(|n| Node {
                neuron: Some(n),
                ..node
            })),
            _ => out.extend((0..seq).map(|p| Node {
                position: Some(p),
                ..node
            })),
        }
    }
    Ok(out)
}

impl Node {
    /// Marks, in a row-major mask of one batch row's activation (`dims` without the batch
    /// axis), the elements this node covers.
    pub(crate) fn mark(&self, dims: &[usize], mask: &mut [bool]) -> Result<()> {
        // Layouts: [seq, d] for most hooks, [seq, heads, d_head] for hook_z.
        let check = |what: &str, i: usize, n: usize| {
            if i < n {
                Ok(())
            } else {
                Err(PrismError::Hook {
                    hook: self.hook.to_string(),
                    message: format!("{what} {i} is out of range (size {n})"),
                })
            }
        };
        let seq = dims[0];
        let inner: usize = dims[1..].iter().product();
        let positions: Vec<usize> = match self.position {
            Some(p) => {
                check("position", p, seq)?;
                vec![p]
            }
            None => (0..seq).collect(),
        };
        for p in positions {
            let row = &mut mask[p * inner..(p + 1) * inner];
            match (self.head, self.neuron) {
                (Some(h), _) if dims.len() == 3 => {
                    check("head", h, dims[1])?;
                    row[h * dims[2]..(h + 1) * dims[2]].fill(true);
                }
                (None, Some(n)) => {
                    check("neuron", n, inner)?;
                    row[n] = true;
                }
                (None, None) => row.fill(true),
                _ => {
                    return Err(PrismError::Hook {
                        hook: self.hook.to_string(),
                        message: "a head needs attn.hook_z".into(),
                    });
                }
            }
        }
        Ok(())
    }
}
