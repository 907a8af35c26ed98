//! Attribution patching (AtP) and integrated gradients: linear estimates of every node's
//! patching effect from gradients, in a few forward and backward passes instead of one
//! forward pass per node.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prism_core::{Activation, Edit, HookPoint, Hooks, Intervention, PrismError, Result};
use prism_models::Model;
use serde::Serialize;

use crate::exact::{
    Direction, PairRuns, PatchOptions, PatchResult, PatchSweep, check_dims, last_logits, tile,
};
use crate::node::Node;
use crate::pairs::PairBatch;
use crate::state::{self, Op, State};

/// How gradients are turned into effects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum Method {
    /// Attribution patching: `(s_source − s_target) · ∂m/∂s` at the target run, every hook in
    /// one forward and one backward pass.
    Atp,
    /// Integrated gradients (feature-circuits' `ig`): the gradient averaged over `steps` runs
    /// with one hook's state set to `s_target + (k/steps)·(s_source − s_target)`, k = 0 …
    /// steps − 1 (a left Riemann sum), the rest of the model untouched; one hook at a time.
    IntegratedGradients {
        /// Interpolation steps (feature-circuits' default is 10).
        steps: usize,
    },
}

impl std::str::FromStr for Method {
    type Err = PrismError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "atp" => Ok(Method::Atp),
            "ig" => Ok(Method::IntegratedGradients { steps: 10 }),
            other => match other.strip_prefix("ig:").map(str::parse::<usize>) {
                Some(Ok(steps)) if steps > 0 => Ok(Method::IntegratedGradients { steps }),
                _ => Err(PrismError::InvalidInput(format!(
                    "unknown attribution method `{other}` (atp, ig, ig:STEPS)"
                ))),
            },
        }
    }
}

/// Estimates the effect on the metric of patching each node from the source run into the
/// target run (denoising: clean into corrupted), without running one patched pass per node.
///
/// `value` of each result is the estimated change of the metric; `normalized` divides it by
/// `clean − corrupt`. Dictionary nodes (features, error terms) need the dictionary in
/// `options.dictionaries`. `progress(done, total)` counts forward + backward passes.
///
/// ```no_run
/// # fn f(model: &prism_models::Model, pairs: &prism_patch::PairBatch) -> prism_core::Result<()> {
/// use prism_patch::{Method, NodeKind, PatchOptions, attribute, nodes};
/// let shape = model.config().shape();
/// let ns = nodes(&shape, NodeKind::ResidPre.into(), pairs.clean.seq)?;
/// let atp = attribute(model, pairs, &ns, Method::Atp, &PatchOptions::default(), |_, _| {})?;
/// # Ok(()) }
/// ```
pub fn attribute(
    model: &Model,
    pairs: &PairBatch,
    nodes: &[Node],
    method: Method,
    options: &PatchOptions,
    progress: impl FnMut(usize, usize),
) -> Result<PatchSweep> {
    let Attribution {
        runs,
        grads,
        deltas,
    } = gradients(model, pairs, nodes, method, options, progress)?;
    // Effect of each node: Σ over its elements and the pairs of delta · gradient.
    let mut products: BTreeMap<HookPoint, PartProducts> = BTreeMap::new();
    for (&h, g) in &grads {
        let dims = g.dims();
        products.insert(h, (dims, deltas[&h].batch_dot(g)?));
    }
    let mut results = Vec::with_capacity(nodes.len());
    for node in nodes {
        let (dims, values) = &products[&node.hook];
        let dictionary = options.dictionaries.contains_key(&node.hook);
        let mut value = 0.0;
        for (part, (d, v)) in dims.iter().zip(values).enumerate() {
            value += state::node_sum(node, dictionary, part, &d[1..], v)?;
        }
        results.push(PatchResult {
            node: *node,
            value,
            normalized: value / (runs.clean_metric - runs.corrupt_metric),
        });
    }
    Ok(runs.sweep(options, results))
}

/// What the gradient passes of an attribution found at each hook the nodes name.
pub(crate) struct Attribution {
    /// Both runs, their metrics and states.
    pub runs: PairRuns,
    /// The gradient of the pair-averaged metric at the target run's state (for integrated
    /// gradients, averaged over the interpolation steps): `[pairs, …]` per part.
    pub grads: BTreeMap<HookPoint, State>,
    /// `s_source − s_target`.
    pub deltas: BTreeMap<HookPoint, State>,
}

/// The gradients and differences [`attribute`] multiplies, per hook.
pub(crate) fn gradients(
    model: &Model,
    pairs: &PairBatch,
    nodes: &[Node],
    method: Method,
    options: &PatchOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<Attribution> {
    let b = pairs.len();
    // Mean gradient of the metric (averaged over pairs) at each hook's target state.
    let mut grads: BTreeMap<HookPoint, State> = BTreeMap::new();
    let (runs, deltas) = match method {
        Method::Atp => {
            // The target run is the gradient pass itself: its states are read there, so the
            // whole sweep costs the source run, one forward and one backward pass.
            let hooks = PairRuns::check(model, pairs, nodes, options)?;
            let (source_batch, target_batch) = match options.direction {
                Direction::Denoise => (&pairs.clean, &pairs.corrupt),
                Direction::Noise => (&pairs.corrupt, &pairs.clean),
            };
            let (source_metric, source) =
                PairRuns::run(model, pairs, &hooks, options, source_batch)?;
            let seen: Arc<Mutex<BTreeMap<HookPoint, State>>> = Arc::default();
            let leaves: BTreeMap<HookPoint, State> =
                source.iter().map(|(&h, s)| (h, s.leaves())).collect();
            let mut edits = Hooks::new();
            for (&hook, leaf) in &leaves {
                let dict = options.dictionaries.get(&hook).cloned();
                let (leaf, seen) = (leaf.clone(), seen.clone());
                let edit: prism_core::HookFn = Arc::new(move |hook: HookPoint, act: Activation| {
                    let state = State::read(hook, act, dict.as_ref())?;
                    check_dims(&state.dims(), &leaf.dims())?;
                    if let Ok(mut seen) = seen.lock() {
                        seen.insert(hook, state.untracked());
                    }
                    state.zip(&leaf, Op::Add)?.compose(dict.as_ref())
                });
                edits = edits.intervene(Intervention::new(hook, Edit::Custom(edit)));
            }
            let last = pairs.last_positions();
            let (g, values) = backward(model, target_batch, &edits, &last, 1, options, pairs)?;
            for (h, leaf) in &leaves {
                grads.insert(*h, leaf.grads(&g));
            }
            let target = std::mem::take(
                &mut *seen
                    .lock()
                    .map_err(|_| PrismError::InvalidInput("a hook panicked".into()))?,
            );
            let target_metric = values.iter().sum::<f64>() / b as f64;
            let (clean, corrupt, clean_metric, corrupt_metric) = match options.direction {
                Direction::Denoise => (source, target, source_metric, target_metric),
                Direction::Noise => (target, source, target_metric, source_metric),
            };
            let runs = PairRuns {
                clean_metric,
                corrupt_metric,
                clean,
                corrupt,
                last,
            };
            progress(1, 1);
            let deltas = differences(&runs, options.direction)?;
            (runs, deltas)
        }
        Method::IntegratedGradients { steps } => {
            if steps == 0 {
                return Err(PrismError::InvalidInput(
                    "integrated gradients need at least one step".into(),
                ));
            }
            let runs = PairRuns::new(model, pairs, nodes, options)?;
            let deltas = differences(&runs, options.direction)?;
            let (target_batch, target) = match options.direction {
                Direction::Denoise => (&pairs.corrupt, &runs.corrupt),
                Direction::Noise => (&pairs.clean, &runs.clean),
            };
            let per_pass = (options.rows_per_forward / b).clamp(1, steps);
            let passes = steps.div_ceil(per_pass) * target.len();
            let mut done = 0;
            for (&hook, base) in target {
                let dict = options.dictionaries.get(&hook).cloned();
                let delta = &deltas[&hook];
                let mut sum: Option<State> = None;
                for first in (0..steps).step_by(per_pass) {
                    let copies = per_pass.min(steps - first);
                    let alphas: Vec<f32> = (0..copies * b)
                        .map(|r| (first + r / b) as f32 / steps as f32)
                        .collect();
                    let state = base
                        .tile(copies)
                        .zip(&delta.tile(copies).scale_rows(&alphas), Op::Add)?;
                    let leaf = state.leaves();
                    let fixed = state.zip(&leaf, Op::Add)?;
                    let d = dict.clone();
                    let edit: prism_core::HookFn =
                        Arc::new(move |hook: HookPoint, act: Activation| {
                            let now = State::read(hook, act, d.as_ref())?;
                            check_dims(&now.dims(), &fixed.dims())?;
                            fixed.clone().compose(d.as_ref())
                        });
                    let hooks = Hooks::new().intervene(Intervention::new(hook, Edit::Custom(edit)));
                    let batch = tile(target_batch, copies, model.pad_id())?;
                    let (g, _) =
                        backward(model, &batch, &hooks, &runs.last, copies, options, pairs)?;
                    let g = leaf.grads(&g).sum_copies(copies);
                    sum = Some(match sum {
                        None => g,
                        Some(s) => s.zip(&g, Op::Add)?,
                    });
                    done += 1;
                    progress(done, passes);
                }
                let total = sum.ok_or_else(|| PrismError::InvalidInput("no steps".into()))?;
                grads.insert(hook, total.scale(1.0 / steps as f32));
            }
            (runs, deltas)
        }
    };
    Ok(Attribution {
        runs,
        grads,
        deltas,
    })
}

/// `(exact effect, estimate)` per node, both as changes of the metric from the target run:
/// an exact sweep's `value − corrupt` against an attribution sweep's `value` over the same
/// nodes (what an AtP-vs-exact scatter plot shows).
///
/// ```no_run
/// # fn f(exact: &prism_patch::PatchSweep, atp: &prism_patch::PatchSweep) {
/// let points = prism_patch::exact_vs_estimate(exact, atp);
/// # }
/// ```
pub fn exact_vs_estimate(exact: &PatchSweep, estimate: &PatchSweep) -> Vec<(f64, f64)> {
    let target = match exact.direction {
        Direction::Denoise => exact.corrupt,
        Direction::Noise => exact.clean,
    };
    exact
        .results
        .iter()
        .zip(&estimate.results)
        .map(|(e, a)| (e.value - target, a.value))
        .collect()
}

/// A hook's state part dimensions, and per part the batch-summed `delta · gradient` (row-major
/// over the part without its batch axis).
type PartProducts = (Vec<Vec<usize>>, Vec<Vec<f32>>);

/// `s_source − s_target` at every hook.
fn differences(runs: &PairRuns, direction: Direction) -> Result<BTreeMap<HookPoint, State>> {
    let (target, source) = match direction {
        Direction::Denoise => (&runs.corrupt, &runs.clean),
        Direction::Noise => (&runs.clean, &runs.corrupt),
    };
    target
        .iter()
        .map(|(&h, t)| Ok((h, source[&h].zip(t, Op::Sub)?)))
        .collect()
}

/// Runs `batch` (`copies` copies of the pairs) with `hooks`, and back-propagates the metric
/// summed over the rows divided by the number of pairs (so each copy's gradient is that of the
/// pair-averaged metric). Also returns the metric of each row.
fn backward(
    model: &Model,
    batch: &prism_models::TokenBatch,
    hooks: &Hooks,
    last: &[usize],
    copies: usize,
    options: &PatchOptions,
    pairs: &PairBatch,
) -> Result<(burn::tensor::Gradients, Vec<f64>)> {
    let logits = model.forward(batch, hooks)?.logits()?;
    if !logits.is_tracked() {
        return Err(PrismError::InvalidInput(
            "the metric does not depend on any attributed node".into(),
        ));
    }
    let values = options
        .metric
        .values(last_logits(logits, last, copies)?, pairs)?;
    let rows: Vec<f64> = prism_core::to_vec(values.clone().without_autodiff())?
        .into_iter()
        .map(f64::from)
        .collect();
    Ok((values.sum().div_scalar(pairs.len() as f64).backward(), rows))
}
