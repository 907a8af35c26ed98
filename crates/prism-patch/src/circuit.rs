//! Node-level circuits: rank nodes by their attributed effect over a dataset of pairs, and
//! measure how faithfully the top `n` reproduce the model's behaviour with everything else
//! mean-ablated.

use std::sync::Arc;

use prism_models::Model;
use serde::Serialize;

use crate::ablate::{Ablation, MeanStates, ablation, complement};
use crate::attribute::{Method, attribute};
use crate::exact::{PatchOptions, PatchResult, last_logits, mean};
use crate::node::Node;
use crate::pairs::PairBatch;
use prism_core::{Hooks, PrismError, Result};

/// The metric with all but the top `nodes` nodes mean-ablated.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaithfulnessPoint {
    /// Circuit size (top nodes kept).
    pub nodes: usize,
    /// The metric on the clean prompts with every other node mean-ablated.
    pub metric: f64,
    /// `(F(C) − F(∅)) / (F(M) − F(∅))`.
    pub faithfulness: f64,
}

/// Faithfulness of growing circuits.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Faithfulness {
    /// F(M): the metric of the whole model (nothing ablated).
    pub full: f64,
    /// F(∅): the metric with every node of the universe ablated.
    pub empty: f64,
    /// One point per size asked for.
    pub curve: Vec<FaithfulnessPoint>,
}

/// A circuit: the universe's nodes ranked by attributed effect, and its faithfulness curve.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Circuit {
    /// How the effects were estimated.
    pub method: Method,
    /// The metric's name.
    pub metric: String,
    /// Every node of the universe with its estimated effect, largest |effect| first.
    pub ranked: Vec<PatchResult>,
    /// Faithfulness of the top-n nodes.
    pub faithfulness: Faithfulness,
}

/// Faithfulness, on the clean prompts, of the circuits `ranked[..n]` for each `n` in `sizes`:
/// every node of `universe` outside the circuit is replaced by its mean (`means`), as in Sparse
/// Feature Circuits. Several circuit sizes share each forward pass.
pub fn faithfulness(
    model: &Model,
    pairs: &PairBatch,
    universe: &[Node],
    ranked: &[Node],
    sizes: &[usize],
    means: Arc<MeanStates>,
    options: &PatchOptions,
) -> Result<Faithfulness> {
    if pairs.is_empty() {
        return Err(PrismError::InvalidInput("no prompt pairs".into()));
    }
    let last = pairs.last_positions();
    let metric_of = |batch: &prism_models::TokenBatch, hooks: &Hooks, copies: usize| {
        let logits = model.forward(batch, hooks)?.logits()?;
        let values = options
            .metric
            .per_row(last_logits(logits, &last, copies)?, pairs)?;
        let b = pairs.len();
        Ok::<_, PrismError>(
            (0..copies)
                .map(|k| mean(&values[k * b..(k + 1) * b]))
                .collect::<Vec<_>>(),
        )
    };
    let full = metric_of(&pairs.clean, &Hooks::new(), 1)?[0];
    // Copy 0: everything ablated; then one copy per size.
    let mut sets: Vec<Vec<Node>> = vec![universe.to_vec()];
    for &n in sizes {
        sets.push(complement(universe, &ranked[..n.min(ranked.len())]));
    }
    let how = Ablation::Mean(means);
    let per_pass = (options.rows_per_forward / pairs.len()).max(1);
    let mut values = Vec::with_capacity(sets.len());
    for group in sets.chunks(per_pass) {
        let (batch, hooks) = ablation(model, &pairs.clean, group, &how, &options.dictionaries)?;
        values.extend(metric_of(&batch, &hooks, group.len())?);
    }
    let empty = values[0];
    let curve = sizes
        .iter()
        .zip(&values[1..])
        .map(|(&n, &metric)| FaithfulnessPoint {
            nodes: n.min(ranked.len()),
            metric,
            faithfulness: (metric - empty) / (full - empty),
        })
        .collect();
    Ok(Faithfulness { full, empty, curve })
}

/// The circuits [`circuit`] measures: the top `n` nodes for each `n` in `sizes`, every node
/// outside a circuit set to its mean over the prompts of `means`.
#[derive(Clone, Debug)]
pub struct FaithfulnessSweep {
    /// Mean activations that nodes outside a circuit take.
    pub means: Arc<MeanStates>,
    /// Circuit sizes, in nodes.
    pub sizes: Vec<usize>,
}

impl FaithfulnessSweep {
    /// Sizes `1, ratio, ratio², …` below `universe`, then `universe` itself (the whole model):
    /// [`FaithfulnessSweep::geometric_sizes`].
    pub fn geometric(means: Arc<MeanStates>, ratio: usize, universe: usize) -> Self {
        let sizes = Self::geometric_sizes(ratio, universe);
        Self { means, sizes }
    }

    /// `1, ratio, ratio², …` below `universe`, then `universe` (a ratio below 2 counts as 2).
    ///
    /// ```
    /// use prism_patch::FaithfulnessSweep;
    /// assert_eq!(FaithfulnessSweep::geometric_sizes(4, 40), [1, 4, 16, 40]);
    /// assert_eq!(FaithfulnessSweep::geometric_sizes(2, 8), [1, 2, 4, 8]);
    /// assert_eq!(FaithfulnessSweep::geometric_sizes(1, 3), [1, 2, 3]);
    /// ```
    pub fn geometric_sizes(ratio: usize, universe: usize) -> Vec<usize> {
        std::iter::successors(Some(1usize), |n| n.checked_mul(ratio.max(2)))
            .take_while(|&n| n < universe)
            .chain(std::iter::once(universe))
            .collect()
    }
}

/// Ranks every node of `universe` by the magnitude of its attributed effect (`method`, over all
/// `pairs`) and measures the faithfulness of the top-`n` circuits `sweep` asks for.
///
/// ```no_run
/// # fn f(model: &prism_models::Model, pairs: &prism_patch::PairBatch, means: std::sync::Arc<prism_patch::MeanStates>) -> prism_core::Result<()> {
/// use prism_patch::{FaithfulnessSweep, Method, NodeKind, PatchOptions, circuit, nodes};
/// let shape = model.config().shape();
/// let universe = nodes(&shape, NodeKind::Z.into(), pairs.clean.seq)?;
/// let sweep = FaithfulnessSweep { means, sizes: vec![1, 2, 4, 8, 16] };
/// let c = circuit(model, pairs, &universe, Method::IntegratedGradients { steps: 10 },
///                 &sweep, &PatchOptions::default(), |_, _| {})?;
/// println!("top 8 heads: faithfulness {:.2}", c.faithfulness.curve[3].faithfulness);
/// # Ok(()) }
/// ```
pub fn circuit(
    model: &Model,
    pairs: &PairBatch,
    universe: &[Node],
    method: Method,
    sweep: &FaithfulnessSweep,
    options: &PatchOptions,
    progress: impl FnMut(usize, usize),
) -> Result<Circuit> {
    let attributed = attribute(model, pairs, universe, method, options, progress)?;
    let mut ranked = attributed.results;
    ranked.sort_by(|a, b| b.value.abs().total_cmp(&a.value.abs()));
    let order: Vec<Node> = ranked.iter().map(|r| r.node).collect();
    let (sizes, means) = (&sweep.sizes, sweep.means.clone());
    let faithfulness = faithfulness(model, pairs, universe, &order, sizes, means, options)?;
    Ok(Circuit {
        method,
        metric: attributed.metric,
        ranked,
        faithfulness,
    })
}
