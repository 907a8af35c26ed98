//! Nodes: the cells of a patching sweep.

use prism_core::{HookPoint, ModelShape, PrismError, Result};
use serde::Serialize;

/// One place to patch or attribute: a hook point, a sequence position (`None`: all positions
/// together) and a unit of the hook's state.
///
/// ```
/// use prism_core::HookPoint;
/// use prism_patch::{Node, Unit};
/// let n = Node::new(HookPoint::AttnZ(2), None, Unit::Head(3));
/// assert_eq!(n.to_string(), "blocks.2.attn.hook_z head 3");
/// let f = Node::new("blocks.1.hook_resid_post".parse().unwrap(), Some(4), Unit::Feature(17));
/// assert_eq!(serde_json::to_value(f).unwrap()["feature"], 17);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    /// Where.
    pub hook: HookPoint,
    /// Sequence position; all positions together when `None`.
    pub position: Option<usize>,
    /// Which part of the hook's state.
    pub unit: Unit,
}

/// The part of a hook's state a node covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// The whole activation (with a dictionary at the hook: its features and error together).
    All,
    /// One attention head of `attn.hook_z`.
    Head(usize),
    /// One neuron of `mlp.hook_post` (or any single coordinate of a `[batch, seq, d]` hook).
    Neuron(usize),
    /// One feature of the dictionary spliced in at the hook.
    Feature(usize),
    /// The error term `x − x̂` of the dictionary spliced in at the hook.
    Error,
}

impl Node {
    /// A node.
    pub fn new(hook: HookPoint, position: Option<usize>, unit: Unit) -> Self {
        Self {
            hook,
            position,
            unit,
        }
    }

    /// The head, if this is a head node.
    pub fn head(&self) -> Option<usize> {
        match self.unit {
            Unit::Head(h) => Some(h),
            _ => None,
        }
    }

    /// The neuron, if this is a neuron node.
    pub fn neuron(&self) -> Option<usize> {
        match self.unit {
            Unit::Neuron(n) => Some(n),
            _ => None,
        }
    }

    /// The dictionary feature, if this is a feature node.
    pub fn feature(&self) -> Option<usize> {
        match self.unit {
            Unit::Feature(f) => Some(f),
            _ => None,
        }
    }

    /// Whether this node needs a dictionary at its hook (features and error terms).
    pub fn needs_dictionary(&self) -> bool {
        matches!(self.unit, Unit::Feature(_) | Unit::Error)
    }
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.hook)?;
        if let Some(p) = self.position {
            write!(f, " pos {p}")?;
        }
        match self.unit {
            Unit::All => Ok(()),
            Unit::Head(h) => write!(f, " head {h}"),
            Unit::Neuron(n) => write!(f, " neuron {n}"),
            Unit::Feature(j) => write!(f, " feature {j}"),
            Unit::Error => write!(f, " error"),
        }
    }
}

/// JSON: `{"hook", "position", "head", "neuron", "feature", "error"}` with `null` for the axes a
/// node does not have (`error` is true for a dictionary's error node; docs/metrics.md).
impl Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Node", 6)?;
        st.serialize_field("hook", &self.hook.to_string())?;
        st.serialize_field("position", &self.position)?;
        st.serialize_field("head", &self.head())?;
        st.serialize_field("neuron", &self.neuron())?;
        st.serialize_field("feature", &self.feature())?;
        st.serialize_field("error", &(self.unit == Unit::Error))?;
        st.end()
    }
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

/// One item of a patching sweep: a short name expanded over every block, or one hook.
/// Parsed from either spelling (`resid_pre`, `blocks.3.hook_resid_pre`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// A TransformerLens sweep over every block.
    Kind(NodeKind),
    /// One hook: per position for `[batch, seq, d]` hooks, per head for `attn.hook_z`, per
    /// neuron for `mlp.hook_post`.
    Hook(HookPoint),
}

impl From<NodeKind> for Sweep {
    fn from(kind: NodeKind) -> Self {
        Sweep::Kind(kind)
    }
}

impl From<HookPoint> for Sweep {
    fn from(hook: HookPoint) -> Self {
        Sweep::Hook(hook)
    }
}

impl std::str::FromStr for Sweep {
    type Err = PrismError;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        match s.contains('.') {
            true => Ok(Sweep::Hook(s.parse()?)),
            false => Ok(Sweep::Kind(s.parse()?)),
        }
    }
}

/// The nodes of one sweep item ([`Sweep`]), for sequences of `seq` tokens.
///
/// ```
/// use prism_core::ModelShape;
/// use prism_patch::{NodeKind, nodes};
/// let shape = ModelShape { n_layers: 2, d_model: 8, n_heads: 2, d_head: 4, d_mlp: 16,
///     parallel_residual: false, learned_positions: false };
/// assert_eq!(nodes(&shape, NodeKind::ResidPre.into(), 5).unwrap().len(), 2 * 5);
/// assert_eq!(nodes(&shape, NodeKind::Z.into(), 5).unwrap().len(), 2 * 2);
/// assert_eq!(nodes(&shape, "blocks.1.mlp.hook_post".parse().unwrap(), 5).unwrap().len(), 16);
/// assert!(nodes(&shape, "blocks.7.hook_resid_pre".parse().unwrap(), 5).is_err());
/// ```
pub fn nodes(shape: &ModelShape, sweep: Sweep, seq: usize) -> Result<Vec<Node>> {
    let (hooks, per_position_z): (Vec<HookPoint>, bool) = match sweep {
        Sweep::Hook(h) => {
            h.validate(shape)?;
            (vec![h], false)
        }
        Sweep::Kind(kind) => {
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
        }
    };
    let mut out = Vec::new();
    for hook in hooks {
        let node = Node::new(hook, None, Unit::All);
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
                        out.extend((0..seq).map(|p| Node::new(hook, Some(p), Unit::Head(head))));
                    } else {
                        out.push(Node::new(hook, None, Unit::Head(head)));
                    }
                }
            }
            HookPoint::MlpPost(_) => {
                out.extend((0..shape.d_mlp).map(|n| Node::new(hook, None, Unit::Neuron(n))))
            }
            _ => out.extend((0..seq).map(|p| Node {
                position: Some(p),
                ..node
            })),
        }
    }
    Ok(out)
}

/// The nodes of a dictionary spliced in at `hook`: every feature and the error term, at each
/// of `seq` positions (or, with `seq = None`, over all positions together), feature-circuits'
/// node set for one submodule.
///
/// ```
/// use prism_patch::{Unit, dictionary_nodes};
/// let hook = "blocks.0.hook_resid_post".parse().unwrap();
/// let ns = dictionary_nodes(hook, 64, Some(5));
/// assert_eq!(ns.len(), 5 * (64 + 1));
/// assert_eq!(ns[64].unit, Unit::Error);
/// assert_eq!(dictionary_nodes(hook, 64, None).len(), 65);
/// ```
pub fn dictionary_nodes(hook: HookPoint, d_sae: usize, seq: Option<usize>) -> Vec<Node> {
    let positions: Vec<Option<usize>> = match seq {
        Some(n) => (0..n).map(Some).collect(),
        None => vec![None],
    };
    positions
        .into_iter()
        .flat_map(|p| {
            (0..d_sae)
                .map(move |j| Node::new(hook, p, Unit::Feature(j)))
                .chain(std::iter::once(Node::new(hook, p, Unit::Error)))
        })
        .collect()
}

impl Node {
    /// The element ranges this node covers in one batch row of a state part, row-major over
    /// `dims` (the part's dimensions without the batch axis: `[seq, d]`, or `[seq, heads,
    /// d_head]` for `hook_z`). `part` 0 is the activation (or, with a dictionary, its codes
    /// `[seq, d_sae]`); part 1 is a dictionary's error term `[seq, d]`.
    pub(crate) fn ranges(
        &self,
        dictionary: bool,
        part: usize,
        dims: &[usize],
    ) -> Result<Vec<std::ops::Range<usize>>> {
        let err = |message: String| PrismError::Hook {
            hook: self.hook.to_string(),
            message,
        };
        let check = |what: &str, i: usize, n: usize| {
            if i < n {
                Ok(())
            } else {
                Err(err(format!("{what} {i} is out of range (size {n})")))
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
        // Within one position's row of `inner` elements.
        let within: Option<std::ops::Range<usize>> = match (dictionary, part, self.unit) {
            (_, _, Unit::All) => Some(0..inner),
            (false, _, Unit::Head(h)) if dims.len() == 3 => {
                check("head", h, dims[1])?;
                Some(h * dims[2]..(h + 1) * dims[2])
            }
            (false, _, Unit::Neuron(n)) => {
                check("neuron", n, inner)?;
                Some(n..n + 1)
            }
            (true, 0, Unit::Feature(j)) => {
                check("feature", j, inner)?;
                Some(j..j + 1)
            }
            (true, 1, Unit::Error) => Some(0..inner),
            (true, _, Unit::Feature(_) | Unit::Error) => None,
            (false, _, Unit::Feature(_) | Unit::Error) => {
                return Err(err(format!(
                    "{self} needs a dictionary spliced in at its hook"
                )));
            }
            (_, _, Unit::Head(_)) => return Err(err("a head needs attn.hook_z".into())),
            (true, _, Unit::Neuron(_)) => {
                return Err(err(
                    "with a dictionary at the hook, nodes are features and the error term".into(),
                ));
            }
        };
        Ok(match within {
            Some(r) => positions
                .into_iter()
                .map(|p| p * inner + r.start..p * inner + r.end)
                .collect(),
            None => Vec::new(),
        })
    }
}
