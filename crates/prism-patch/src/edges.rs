//! Feature edges (Sparse Feature Circuits): with a dictionary spliced in at every block's
//! attention output, MLP output and residual stream, how much each upstream node (a feature or
//! an error term) affects the metric *through* each downstream node — the attribution of one
//! node's effect to the nodes before it (docs/metrics.md, "Feature edges").
//!
//! The token embedding (`hook_embed`) may be a site too, feeding block 0 as a residual stream
//! would. For an upstream site `U` and a later site `D`, and a downstream node `d` of `D`:
//!
//! `w(u → d) = Σ_{pairs, positions q of d, positions p of u} (∂m/∂a_d)(q) · ∂a_d(q)/∂a_u(p) · Δa_u(p)`
//!
//! with `∂m/∂a_d` the node gradient of the attribution (integrated gradients by default, as
//! feature-circuits uses for its circuits), `Δa_u = a_u(source) − a_u(target)`, the middle
//! factor the derivative through the model between the two sites at the target run, and only
//! the positions `q` (of each pair) where `d`'s own effect exceeds the node threshold. A
//! feature's `a_d` is its code; an error node's `∂m/∂a_d · a_d` is the dot product of the
//! error vector with its gradient. Edges skip sites in between by detaching them: into the
//! residual stream from the block before, the block's attention and MLP outputs are held; from
//! the attention output into the residual stream, the MLP output is held — so each edge is a
//! direct path and the three edges into a residual node add up to what reaches it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use burn::tensor::{Tensor, TensorData};
use prism_core::{Activation, Edit, HookPoint, Hooks, Intervention, PrismError, Result};
use prism_models::Model;
use serde::Serialize;

use crate::attribute::{Attribution, Method, gradients};
use crate::exact::{Direction, PatchOptions, check_dims, tile};
use crate::node::{Node, dictionary_nodes};
use crate::pairs::PairBatch;
use crate::state::{Op, State};

/// How [`edges`] selects and reports; the defaults are feature-circuits' command's (node
/// threshold 0.2, edge threshold 0.02, integrated gradients with 10 steps).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EdgeOptions {
    /// A downstream node counts at a pair's position when its effect there (for that pair
    /// alone) exceeds this in absolute value (feature-circuits' `node_threshold`).
    pub node_threshold: f64,
    /// Edges smaller than this in absolute value are left out of the result.
    pub edge_threshold: f64,
    /// How node gradients are computed (integrated gradients with 10 steps by default).
    pub method: Method,
}

impl Default for EdgeOptions {
    fn default() -> Self {
        Self {
            node_threshold: 0.2,
            edge_threshold: 0.02,
            method: Method::IntegratedGradients { steps: 10 },
        }
    }
}

impl EdgeOptions {
    /// The same options with this node threshold.
    pub fn with_node_threshold(mut self, threshold: f64) -> Self {
        self.node_threshold = threshold;
        self
    }

    /// The same options with this edge threshold.
    pub fn with_edge_threshold(mut self, threshold: f64) -> Self {
        self.edge_threshold = threshold;
        self
    }

    /// The same options with this attribution method.
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }
}

/// Where an edge ends: a node, or the metric itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EdgeTarget {
    /// A feature or error node.
    Node(Node),
    /// The metric (edges from the last residual site: their nodes' effects).
    Metric,
}

impl Serialize for EdgeTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            EdgeTarget::Node(n) => n.serialize(s),
            EdgeTarget::Metric => s.serialize_str("metric"),
        }
    }
}

/// One edge of a feature circuit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Edge {
    /// The upstream node.
    pub from: Node,
    /// The downstream node (or the metric).
    pub to: EdgeTarget,
    /// Its weight: the change of the metric through `to` that `from`'s change carries.
    pub weight: f64,
}

/// A node of a feature circuit and its effect on the metric.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct NodeEffect {
    /// The feature or error node (all positions together).
    pub node: Node,
    /// Its estimated effect, summed over positions, averaged over the pairs.
    pub effect: f64,
    /// Whether it counts at some pair's position (its per-pair effect there exceeds the node
    /// threshold).
    pub selected: bool,
}

/// A feature circuit: every node's effect, and the edges between the sites. Serialised (and
/// written by [`EdgeCircuit::to_json`]) with nodes listed once and edges as `[source, target,
/// weight]` triples of node indices — the last node is the metric — so that a graph of
/// millions of edges stays a file of tens of megabytes.
#[derive(Clone, Debug)]
pub struct EdgeCircuit {
    /// The sites, in the order a forward pass reaches them.
    pub sites: Vec<HookPoint>,
    /// Every feature and error node of every site.
    pub nodes: Vec<NodeEffect>,
    /// The edges at least [`EdgeOptions::edge_threshold`] in size, largest first.
    pub edges: Vec<Edge>,
    /// The metric's name.
    pub metric: String,
    /// Denoise or noise.
    pub direction: Direction,
    /// The metric on the clean and on the corrupted prompts.
    pub clean: f64,
    /// The metric on the corrupted prompts.
    pub corrupt: f64,
    /// What selected and cut.
    pub options: EdgeOptions,
}

impl Serialize for EdgeCircuit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl EdgeCircuit {
    /// The circuit as JSON: `metric`, `direction`, `clean`, `corrupt`, `options`, `sites` (hook
    /// names), `nodes` (each node's fields, its `effect` and whether it counts — `selected` —,
    /// then `{"metric": true}`), and `edges` as `[source, target, weight]` with indices into
    /// `nodes`.
    pub fn to_json(&self) -> serde_json::Value {
        let index: BTreeMap<Node, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.node, i))
            .collect();
        let metric = self.nodes.len();
        let mut nodes: Vec<serde_json::Value> = self
            .nodes
            .iter()
            .map(|n| {
                let mut v = serde_json::to_value(n.node).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("effect".into(), serde_json::json!(n.effect));
                    o.insert("selected".into(), serde_json::json!(n.selected));
                }
                v
            })
            .collect();
        nodes.push(serde_json::json!({ "metric": true }));
        let edges: Vec<serde_json::Value> = self
            .edges
            .iter()
            .filter_map(|e| {
                let from = *index.get(&e.from)?;
                let to = match e.to {
                    EdgeTarget::Node(n) => *index.get(&n)?,
                    EdgeTarget::Metric => metric,
                };
                Some(serde_json::json!([from, to, e.weight]))
            })
            .collect();
        serde_json::json!({
            "metric": self.metric,
            "direction": self.direction,
            "clean": self.clean,
            "corrupt": self.corrupt,
            "options": self.options,
            "sites": self.sites.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "nodes": nodes,
            "edges": edges,
        })
    }

    /// The nodes of the pruned circuit: those that count somewhere and carry a kept edge (in
    /// the order of [`EdgeCircuit::nodes`]).
    pub fn circuit_nodes(&self) -> Vec<Node> {
        self.nodes
            .iter()
            .filter(|n| {
                n.selected
                    && self
                        .edges
                        .iter()
                        .any(|e| e.from == n.node || e.to == EdgeTarget::Node(n.node))
            })
            .map(|n| n.node)
            .collect()
    }

    /// The weight of the edge `from → to` (0 when it was left out or is zero).
    pub fn weight(&self, from: Node, to: EdgeTarget) -> f64 {
        self.edges
            .iter()
            .find(|e| e.from == from && e.to == to)
            .map_or(0.0, |e| e.weight)
    }
}

/// One pair of sites an edge joins, and the sites held in between.
struct Link {
    up: HookPoint,
    down: HookPoint,
    held: Vec<HookPoint>,
}

/// The sites and links of feature-circuits' `get_circuit`: per block, attention → residual
/// (the MLP held), MLP → residual, attention → MLP (sequential blocks only), and from the
/// previous block's residual — or, before block 0, the token embedding (`hook_embed`) when it
/// has a dictionary — to this block's attention, MLP (attention held) and residual (both held).
fn plan(model: &Model, dictionaries: &crate::Dictionaries) -> Result<(Vec<HookPoint>, Vec<Link>)> {
    let shape = model.config().shape();
    let layers: Vec<usize> = dictionaries.keys().filter_map(HookPoint::layer).collect();
    let (Some(&first), Some(&last)) = (layers.iter().min(), layers.iter().max()) else {
        return Err(PrismError::InvalidInput(
            "feature edges need dictionaries at the blocks' hook_attn_out, hook_mlp_out and \
             hook_resid_post (none given)"
                .into(),
        ));
    };
    let embed = dictionaries.contains_key(&HookPoint::Embed);
    if embed && first != 0 {
        return Err(PrismError::InvalidInput(format!(
            "a dictionary at hook_embed feeds block 0, but the blocks' dictionaries start at \
             block {first}"
        )));
    }
    let mut sites = Vec::new();
    if embed {
        sites.push(HookPoint::Embed);
    }
    for l in first..=last {
        for hook in [
            HookPoint::AttnOut(l),
            HookPoint::MlpOut(l),
            HookPoint::ResidPost(l),
        ] {
            if !dictionaries.contains_key(&hook) {
                return Err(PrismError::InvalidInput(format!(
                    "{hook} has no dictionary: feature edges need one at every block's \
                     hook_attn_out, hook_mlp_out and hook_resid_post from block {first} to \
                     {last}"
                )));
            }
            sites.push(hook);
        }
    }
    if let Some(hook) = sites.iter().find(|h| {
        let d = &dictionaries[*h];
        d.d_out() != d.d_in()
    }) {
        return Err(PrismError::InvalidInput(format!(
            "the dictionary at {hook} is a transcoder: feature edges splice sparse autoencoders"
        )));
    }
    if let Some(other) = dictionaries.keys().find(|h| !sites.contains(h)) {
        return Err(PrismError::InvalidInput(format!(
            "a dictionary at {other}: feature edges take dictionaries at hook_embed, \
             hook_attn_out, hook_mlp_out and hook_resid_post only"
        )));
    }
    let mut links = Vec::new();
    for l in first..=last {
        let (attn, mlp, resid) = (
            HookPoint::AttnOut(l),
            HookPoint::MlpOut(l),
            HookPoint::ResidPost(l),
        );
        let link = |up, down, held: &[HookPoint]| Link {
            up,
            down,
            held: held.to_vec(),
        };
        links.push(link(mlp, resid, &[]));
        links.push(link(attn, resid, &[mlp]));
        if !shape.parallel_residual {
            links.push(link(attn, mlp, &[]));
        }
        let prev = if l > first {
            Some(HookPoint::ResidPost(l - 1))
        } else {
            embed.then_some(HookPoint::Embed)
        };
        if let Some(prev) = prev {
            links.push(link(prev, mlp, &[attn]));
            links.push(link(prev, attn, &[]));
            links.push(link(prev, resid, &[mlp, attn]));
        }
    }
    Ok((sites, links))
}

/// One site's gradient and difference on the host: codes `[pairs, seq, m]`, error `[pairs, seq,
/// d]`, row-major.
struct HostSite {
    dims: [usize; 4],
    grad_f: Vec<f32>,
    grad_e: Vec<f32>,
    delta_f: Vec<f32>,
    delta_e: Vec<f32>,
}

impl HostSite {
    fn read(grads: &State, deltas: &State) -> Result<HostSite> {
        let part = |s: &State, i: usize| -> Result<(Vec<usize>, Vec<f32>)> {
            let p = s.parts.get(i).cloned().ok_or_else(|| {
                PrismError::Shape("a dictionary state without its error term".into())
            })?;
            let dims = p.dims();
            Ok((
                dims,
                prism_core::to_vec(p.into_rank3()?.without_autodiff())?,
            ))
        };
        let (fd, grad_f) = part(grads, 0)?;
        let (ed, grad_e) = part(grads, 1)?;
        let (_, delta_f) = part(deltas, 0)?;
        let (_, delta_e) = part(deltas, 1)?;
        Ok(HostSite {
            dims: [fd[0], fd[1], fd[2], ed[2]],
            grad_f,
            grad_e,
            delta_f,
            delta_e,
        })
    }

    /// Per pair, position and unit (features, then the error term), `gradient · difference`.
    fn effects(&self) -> Vec<f64> {
        let [b, s, m, d] = self.dims;
        let mut out = vec![0.0; b * s * (m + 1)];
        for r in 0..b * s {
            for j in 0..m {
                out[r * (m + 1) + j] =
                    f64::from(self.grad_f[r * m + j]) * f64::from(self.delta_f[r * m + j]);
            }
            out[r * (m + 1) + m] = (0..d)
                .map(|i| f64::from(self.grad_e[r * d + i]) * f64::from(self.delta_e[r * d + i]))
                .sum();
        }
        out
    }
}

/// Feature edges between dictionaries spliced in at every block's `hook_attn_out`,
/// `hook_mlp_out` and `hook_resid_post` (`options.dictionaries`), for the prompt pairs: every
/// node's effect and the edges of feature-circuits' `get_circuit` (see the module's
/// documentation), summed over positions and pairs. `progress(done, total)` counts the
/// attribution's passes and then one per pair of sites.
///
/// A block without its three dictionaries, a dictionary elsewhere or a transcoder, and a
/// dictionary whose codes are not pre-activations on their active set (Gated) are errors.
pub fn edges(
    model: &Model,
    pairs: &PairBatch,
    options: &PatchOptions,
    edge_options: &EdgeOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<EdgeCircuit> {
    let (sites, links) = plan(model, &options.dictionaries)?;
    // Each site's nodes, features then the error term: index j is unit j of its state.
    let site_nodes: BTreeMap<HookPoint, Vec<Node>> = sites
        .iter()
        .map(|&h| {
            (
                h,
                dictionary_nodes(h, options.dictionaries[&h].d_sae(), None),
            )
        })
        .collect();
    let nodes: Vec<Node> = sites
        .iter()
        .flat_map(|h| site_nodes[h].iter().copied())
        .collect();
    let mut passes = (0, 0);
    let Attribution {
        runs,
        grads,
        deltas,
    } = gradients(
        model,
        pairs,
        &nodes,
        edge_options.method,
        options,
        |d, t| {
            passes = (d, t);
            progress(d, t + links.len());
        },
    )?;
    let done = passes.1;
    let b = pairs.len();
    let mut host = BTreeMap::new();
    for &h in &sites {
        host.insert(h, HostSite::read(&grads[&h], &deltas[&h])?);
    }
    let effects: BTreeMap<HookPoint, Vec<f64>> =
        host.iter().map(|(&h, s)| (h, s.effects())).collect();
    // A pair's own effect is `pairs` times its share of the pair-averaged metric's.
    let scale = b as f64;
    let selected = |h: HookPoint| -> Vec<bool> {
        effects[&h]
            .iter()
            .map(|e| (e * scale).abs() > edge_options.node_threshold)
            .collect()
    };
    let mut node_effects = Vec::with_capacity(nodes.len());
    for &h in &sites {
        let [_, _, m, _] = host[&h].dims;
        let sel = selected(h);
        for (j, &node) in site_nodes[&h].iter().enumerate() {
            let per = effects[&h].iter().skip(j).step_by(m + 1);
            node_effects.push(NodeEffect {
                node,
                effect: per.sum(),
                selected: sel.iter().skip(j).step_by(m + 1).any(|&v| v),
            });
        }
    }
    let (target_batch, target) = match options.direction {
        Direction::Denoise => (&pairs.corrupt, &runs.corrupt),
        Direction::Noise => (&pairs.clean, &runs.clean),
    };
    // The residual stream entering each block in the target run: a link's passes start at its
    // upstream site's block instead of the embedding.
    let blocks: std::collections::BTreeSet<usize> =
        sites.iter().filter_map(HookPoint::layer).collect();
    let mut hooks = Hooks::new();
    for &l in &blocks {
        hooks = hooks.capture(HookPoint::ResidPre(l));
    }
    let mut captured = model.transformer.capture_only(target_batch, &hooks)?;
    let mut resid_pre = BTreeMap::new();
    for &l in &blocks {
        let x = captured.take(HookPoint::ResidPre(l))?.into_rank3()?;
        resid_pre.insert(l, x.without_autodiff());
    }
    let mut edges = Vec::new();
    for (i, link) in links.iter().enumerate() {
        let matrix = link_weights(
            model,
            target_batch,
            link,
            &target[&link.up],
            &resid_pre,
            &host,
            &selected(link.down),
            options,
        )?;
        let (ups, downs) = (&site_nodes[&link.up], &site_nodes[&link.down]);
        for (&to, row) in downs.iter().zip(matrix.chunks(ups.len())) {
            for (&from, &w) in ups.iter().zip(row) {
                edges.push(Edge {
                    from,
                    to: EdgeTarget::Node(to),
                    weight: f64::from(w),
                });
            }
        }
        progress(done + i + 1, done + links.len());
    }
    if let Some(&last) = sites.last() {
        for n in node_effects.iter().filter(|n| n.node.hook == last) {
            edges.push(Edge {
                from: n.node,
                to: EdgeTarget::Metric,
                weight: n.effect,
            });
        }
    }
    edges.retain(|e| e.weight != 0.0 && e.weight.abs() >= edge_options.edge_threshold);
    edges.sort_by(|a, b| b.weight.abs().total_cmp(&a.weight.abs()));
    Ok(EdgeCircuit {
        sites,
        nodes: node_effects,
        edges,
        metric: options.metric.name().to_string(),
        direction: options.direction,
        clean: runs.clean_metric,
        corrupt: runs.corrupt_metric,
        options: edge_options.clone(),
    })
}

/// The weights of one link, `[m_down + 1, m_up + 1]` row-major (rows: downstream features then
/// error; columns likewise upstream): one forward and backward pass per chunk of downstream
/// nodes, each node in its own copy of the pairs, from the upstream site's block on (its
/// residual input from `resid_pre`; after a residual site, the site's own composed state).
#[allow(clippy::too_many_arguments)]
fn link_weights(
    model: &Model,
    target_batch: &prism_models::TokenBatch,
    link: &Link,
    up_state: &State,
    resid_pre: &BTreeMap<usize, Tensor<3>>,
    host: &BTreeMap<HookPoint, HostSite>,
    selected: &[bool],
    options: &PatchOptions,
) -> Result<Vec<f32>> {
    let (up, down) = (&host[&link.up], &host[&link.down]);
    let [b, s, m_down, d_down] = down.dims;
    let (m_up, d_up) = (up.dims[2], up.dims[3]);
    let mut matrix = vec![0f32; (m_down + 1) * (m_up + 1)];
    // The downstream nodes that count somewhere.
    let units: Vec<usize> = (0..=m_down)
        .filter(|&j| (0..b * s).any(|r| selected[r * (m_down + 1) + j]))
        .collect();
    let dict_up = options.dictionaries[&link.up].clone();
    let dict_down = options.dictionaries[&link.down].clone();
    let per_pass = (options.rows_per_forward / b.max(1)).max(1);
    for chunk in units.chunks(per_pass) {
        let copies = chunk.len();
        let tiled = up_state.tile(copies);
        let leaf = tiled.leaves();
        let mut hooks = Hooks::new();
        // Where the pass starts: the block after a residual site, with the site's state plus
        // the leaves as its input; the site's own block for an attention or MLP output (edited
        // there); the embedding for hook_embed.
        let start = match link.up {
            HookPoint::ResidPost(l) => {
                let x = tiled
                    .zip(&leaf, Op::Add)?
                    .compose(Some(&dict_up))?
                    .into_rank3()?;
                Some((l + 1, x))
            }
            up => {
                let (l, d) = (leaf.clone(), dict_up.clone());
                let at_up: prism_core::HookFn =
                    Arc::new(move |hook: HookPoint, act: Activation| {
                        let state = State::read(hook, act, Some(&d))?;
                        check_dims(&state.dims(), &l.dims())?;
                        state.zip(&l, Op::Add)?.compose(Some(&d))
                    });
                hooks = hooks.intervene(Intervention::new(up, Edit::Custom(at_up)));
                match up.layer() {
                    Some(l) => {
                        let x = resid_pre.get(&l).ok_or_else(|| {
                            PrismError::InvalidInput(format!("no residual input of block {l}"))
                        })?;
                        Some((l, x.clone().repeat_dim(0, copies)))
                    }
                    None => None,
                }
            }
        };
        for &held in &link.held {
            let detach: prism_core::HookFn = Arc::new(|_, act: Activation| Ok(act.detach()));
            hooks = hooks.intervene(Intervention::new(held, Edit::Custom(detach)));
        }
        let seen: Arc<Mutex<Option<Activation>>> = Arc::default();
        let keep = seen.clone();
        let at_down: prism_core::HookFn = Arc::new(move |_, act: Activation| {
            if let Ok(mut k) = keep.lock() {
                *k = Some(act.clone());
            }
            Ok(act)
        });
        hooks = hooks.intervene(Intervention::new(link.down, Edit::Custom(at_down)));
        let batch = tile(target_batch, copies, model.pad_id())?;
        match start {
            Some((layer, x)) => model
                .transformer
                .capture_only_from(&batch, layer, x, &hooks)?,
            None => model.transformer.capture_only(&batch, &hooks)?,
        };
        let y = seen
            .lock()
            .map_err(|_| PrismError::InvalidInput("a hook panicked".into()))?
            .take()
            .ok_or_else(|| PrismError::Hook {
                hook: link.down.to_string(),
                message: "the forward pass did not reach this site".into(),
            })?
            .into_rank3()?;
        let rows = copies * b * s;
        let flat = y.reshape([rows, d_down]);
        let codes = dict_down
            .differentiable_codes(flat.clone())
            .ok_or_else(|| {
                PrismError::InvalidInput(format!(
                    "the dictionary at {}: feature edges need codes that are pre-activations on \
                 their active set (ReLU, TopK, JumpReLU), not Gated's",
                    link.down
                ))
            })?;
        let error = flat - dict_down.decode(codes.clone());
        // What each copy back-propagates: its node's gradient where the node counts.
        let mut w_codes = vec![0f32; rows * m_down];
        let mut w_error = vec![0f32; rows * d_down];
        for (k, &j) in chunk.iter().enumerate() {
            for r in 0..b * s {
                if !selected[r * (m_down + 1) + j] {
                    continue;
                }
                let row = k * b * s + r;
                if j < m_down {
                    w_codes[row * m_down + j] = down.grad_f[r * m_down + j];
                } else {
                    w_error[row * d_down..][..d_down]
                        .copy_from_slice(&down.grad_e[r * d_down..][..d_down]);
                }
            }
        }
        let device = codes.device();
        let upload =
            |v: Vec<f32>, c: usize| Tensor::<2>::from_data(TensorData::new(v, [rows, c]), &device);
        let objective =
            (codes * upload(w_codes, m_down)).sum() + (error * upload(w_error, d_down)).sum();
        let g = objective.backward();
        let grad = leaf.grads(&g);
        let gf = prism_core::to_vec(grad.parts[0].clone().into_rank3()?.without_autodiff())?;
        let ge = prism_core::to_vec(grad.parts[1].clone().into_rank3()?.without_autodiff())?;
        for (k, &j) in chunk.iter().enumerate() {
            let row = &mut matrix[j * (m_up + 1)..][..m_up + 1];
            for r in 0..b * s {
                let at = (k * b * s + r) * m_up;
                for (u, w) in row.iter_mut().take(m_up).enumerate() {
                    *w += gf[at + u] * up.delta_f[r * m_up + u];
                }
                let at = (k * b * s + r) * d_up;
                row[m_up] += (0..d_up)
                    .map(|i| ge[at + i] * up.delta_e[r * d_up + i])
                    .sum::<f32>();
            }
        }
    }
    Ok(matrix)
}
