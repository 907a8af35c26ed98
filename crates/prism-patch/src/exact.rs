//! Exact activation patching.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use burn::tensor::{Int, Tensor, TensorData};
use prism_core::{Activation, Edit, HookPoint, Hooks, Intervention, PrismError, Result};
use prism_models::{Model, TokenBatch};
use serde::Serialize;

use crate::metric::Metric;
use crate::node::Node;
use crate::pairs::PairBatch;
use crate::state::{self, Dictionaries, State};

/// Which run receives the other run's activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The clean activation into the corrupted run (how much of the clean behaviour does this
    /// node restore?).
    #[default]
    Denoise,
    /// The corrupted activation into the clean run (how much does this node break?).
    Noise,
}

impl std::str::FromStr for Direction {
    type Err = PrismError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "denoise" => Ok(Direction::Denoise),
            "noise" => Ok(Direction::Noise),
            other => Err(PrismError::InvalidInput(format!(
                "unknown direction `{other}` (denoise, noise)"
            ))),
        }
    }
}

/// How [`patch`] (and [`attribute`](crate::attribute)) run.
#[derive(Clone)]
pub struct PatchOptions {
    /// Denoise or noise.
    pub direction: Direction,
    /// What to measure.
    pub metric: Metric,
    /// At most this many rows (pairs × patched copies) per forward pass.
    pub rows_per_forward: usize,
    /// Dictionaries spliced in (error term kept) at their hooks: nodes there are features and
    /// error terms ([`Unit::Feature`](crate::Unit::Feature), [`Unit::Error`](crate::Unit::Error)).
    pub dictionaries: Dictionaries,
}

impl std::fmt::Debug for PatchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatchOptions")
            .field("direction", &self.direction)
            .field("metric", &self.metric)
            .field("rows_per_forward", &self.rows_per_forward)
            .field(
                "dictionaries",
                &self.dictionaries.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for PatchOptions {
    fn default() -> Self {
        Self {
            direction: Direction::Denoise,
            metric: Metric::LogitDiff,
            rows_per_forward: 32,
            dictionaries: Dictionaries::new(),
        }
    }
}

/// One node's outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PatchResult {
    /// The node.
    #[serde(flatten)]
    pub node: Node,
    /// The metric of the patched run (mean over the pairs).
    pub value: f64,
    /// `(value − corrupt) / (clean − corrupt)`: 1 where the patch gives the clean metric, 0
    /// where it gives the corrupted one.
    pub normalized: f64,
}

/// A whole sweep: the unpatched metrics and every node's result, in the order asked for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PatchSweep {
    /// The metric's name.
    pub metric: String,
    /// Denoise or noise.
    pub direction: Direction,
    /// The clean run's metric.
    pub clean: f64,
    /// The corrupted run's metric.
    pub corrupt: f64,
    /// One per node.
    pub results: Vec<PatchResult>,
}

/// Patches every node of `nodes`, one at a time, from the source run (clean when denoising)
/// into the target run (corrupted when denoising), and measures the metric of each patched run.
///
/// The source run is computed once with every needed hook captured; each forward pass then
/// carries several copies of the target batch, copy `k` patched at node `k` only (nodes at
/// different hooks share a pass: an edit at one hook touches only its own copies).
/// `progress(done, total)` is called after each pass.
pub fn patch(
    model: &Model,
    pairs: &PairBatch,
    nodes: &[Node],
    options: &PatchOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<PatchSweep> {
    let runs = PairRuns::new(model, pairs, nodes, options)?;
    let (target, sources) = match options.direction {
        Direction::Denoise => (&pairs.corrupt, &runs.clean),
        Direction::Noise => (&pairs.clean, &runs.corrupt),
    };
    let b = pairs.len();
    let per_pass = (options.rows_per_forward / b).max(1);
    let groups: Vec<&[Node]> = nodes.chunks(per_pass).collect();
    let resume = ResumePoints::new(model, target, &groups)?;
    let mut results = Vec::with_capacity(nodes.len());
    let mut done = 0;
    for group in groups {
        let copies = group.len();
        let batch = tile(target, copies, model.pad_id())?;
        let mut edits = Hooks::new();
        for (&hook, src) in sources {
            let covered: Vec<(usize, Node)> = group
                .iter()
                .copied()
                .enumerate()
                .filter(|(_, n)| n.hook == hook)
                .collect();
            if covered.is_empty() {
                continue;
            }
            let dict = options.dictionaries.get(&hook).cloned();
            let masks = state::masks(&src.dims(), dict.is_some(), copies, &covered)?;
            let src = src.tile(copies);
            let edit: prism_core::HookFn = Arc::new(move |hook: HookPoint, act: Activation| {
                let state = State::read(hook, act, dict.as_ref())?;
                check_dims(&state.dims(), &src.dims())?;
                state.select(&masks, &src)?.compose(dict.as_ref())
            });
            edits = edits.intervene(Intervention::new(hook, Edit::Custom(edit)));
        }
        let logits = resume.run(model, &batch, group, copies, &edits)?.logits()?;
        let values = options
            .metric
            .per_row(last_logits(logits, &runs.last, copies)?, pairs)?;
        for (k, node) in group.iter().enumerate() {
            let value = mean(&values[k * b..(k + 1) * b]);
            results.push(PatchResult {
                node: *node,
                value,
                normalized: runs.normalize(value),
            });
        }
        done += copies;
        progress(done, nodes.len());
    }
    Ok(runs.sweep(options, results))
}

/// The target run's residual stream entering the first block each pass touches: a pass whose
/// nodes all sit in blocks ≥ l runs only blocks l.. ([`Transformer::forward_from`]), the target
/// being the same in every copy until its first patched hook.
///
/// [`Transformer::forward_from`]: prism_models::Transformer::forward_from
struct ResumePoints(BTreeMap<usize, Tensor<3>>);

impl ResumePoints {
    /// The block each group can resume at (none for a group with a node before block 0's
    /// input, or at the final norm: those run whole).
    fn first_block(group: &[Node]) -> Option<usize> {
        group.iter().map(|n| n.hook.layer()).min().flatten()
    }

    /// Captures the target run once at every block some group resumes at.
    fn new(model: &Model, target: &TokenBatch, groups: &[&[Node]]) -> Result<Self> {
        let blocks: BTreeSet<usize> = groups
            .iter()
            .filter_map(|g| Self::first_block(g))
            .filter(|&l| l > 0)
            .collect();
        if blocks.is_empty() {
            return Ok(Self(BTreeMap::new()));
        }
        let capture = Hooks::new().capture_all(blocks.iter().map(|&l| HookPoint::ResidPre(l)));
        let mut out = model.transformer.capture_only(target, &capture)?;
        let states = blocks
            .into_iter()
            .map(|l| Ok((l, out.take(HookPoint::ResidPre(l))?.into_rank3()?)))
            .collect::<Result<_>>()?;
        Ok(Self(states))
    }

    /// The patched pass over `copies` copies of the target (`batch`), resumed where it can be.
    fn run(
        &self,
        model: &Model,
        batch: &TokenBatch,
        group: &[Node],
        copies: usize,
        edits: &Hooks,
    ) -> Result<prism_models::ForwardOutput> {
        match Self::first_block(group).and_then(|l| self.0.get(&l).map(|x| (l, x))) {
            Some((l, resid)) => {
                let tiled = Tensor::cat(vec![resid.clone(); copies], 0);
                model.transformer.forward_from(batch, l, tiled, edits)
            }
            None => model.forward(batch, edits),
        }
    }
}

pub(crate) fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The clean and the corrupted run of a batch of pairs: their metrics and their states at
/// every hook the nodes need.
pub(crate) struct PairRuns {
    pub clean_metric: f64,
    pub corrupt_metric: f64,
    pub clean: BTreeMap<HookPoint, State>,
    pub corrupt: BTreeMap<HookPoint, State>,
    /// Each pair's last real position.
    pub last: Vec<usize>,
}

impl PairRuns {
    /// Checks the inputs and runs both prompts of every pair once, capturing the hooks of
    /// `nodes`.
    pub fn new(
        model: &Model,
        pairs: &PairBatch,
        nodes: &[Node],
        options: &PatchOptions,
    ) -> Result<Self> {
        let hooks = Self::check(model, pairs, nodes, options)?;
        let (clean_metric, clean) = Self::run(model, pairs, &hooks, options, &pairs.clean)?;
        let (corrupt_metric, corrupt) = Self::run(model, pairs, &hooks, options, &pairs.corrupt)?;
        Ok(Self {
            clean_metric,
            corrupt_metric,
            clean,
            corrupt,
            last: pairs.last_positions(),
        })
    }

    /// Checks pairs, nodes, dictionaries and answers; returns the hooks the nodes need.
    pub fn check(
        model: &Model,
        pairs: &PairBatch,
        nodes: &[Node],
        options: &PatchOptions,
    ) -> Result<BTreeSet<HookPoint>> {
        if pairs.is_empty() {
            return Err(PrismError::InvalidInput("no prompt pairs".into()));
        }
        let shape = model.config().shape();
        let hooks: BTreeSet<HookPoint> = nodes.iter().map(|n| n.hook).collect();
        for h in hooks.iter().chain(options.dictionaries.keys()) {
            h.validate(&shape)?;
        }
        if let Some(n) = nodes
            .iter()
            .find(|n| n.needs_dictionary() && !options.dictionaries.contains_key(&n.hook))
        {
            return Err(PrismError::Hook {
                hook: n.hook.to_string(),
                message: format!("{n} needs a dictionary spliced in at its hook"),
            });
        }
        let vocab = model.config().vocab_size;
        if let Some(bad) = pairs
            .answer
            .iter()
            .chain(&pairs.wrong)
            .find(|&&t| t as usize >= vocab)
        {
            return Err(PrismError::InvalidInput(format!(
                "answer token {bad} is outside the vocabulary of {vocab}"
            )));
        }
        Ok(hooks)
    }

    /// One prompt of every pair (`batch`): its metric and its states at `hooks`.
    pub fn run(
        model: &Model,
        pairs: &PairBatch,
        hooks: &BTreeSet<HookPoint>,
        options: &PatchOptions,
        batch: &TokenBatch,
    ) -> Result<(f64, BTreeMap<HookPoint, State>)> {
        let capture = Hooks::new().capture_all(hooks.iter().copied());
        let mut out = model.forward(batch, &capture)?;
        let metric = mean(&options.metric.per_row(
            last_logits(out.logits()?, &pairs.last_positions(), 1)?,
            pairs,
        )?);
        let states = hooks
            .iter()
            .map(|&h| {
                let act = out.take(h)?;
                Ok((h, State::read(h, act, options.dictionaries.get(&h))?))
            })
            .collect::<Result<_>>()?;
        Ok((metric, states))
    }

    /// `(value − corrupt) / (clean − corrupt)`.
    pub fn normalize(&self, value: f64) -> f64 {
        (value - self.corrupt_metric) / (self.clean_metric - self.corrupt_metric)
    }

    /// The sweep's result.
    pub fn sweep(&self, options: &PatchOptions, results: Vec<PatchResult>) -> PatchSweep {
        PatchSweep {
            metric: options.metric.name().to_string(),
            direction: options.direction,
            clean: self.clean_metric,
            corrupt: self.corrupt_metric,
            results,
        }
    }
}

/// `copies` copies of a batch, one after the other (padded with `pad`).
pub(crate) fn tile(batch: &TokenBatch, copies: usize, pad: u32) -> Result<TokenBatch> {
    let rows: Vec<Vec<u32>> = (0..copies)
        .flat_map(|_| {
            (0..batch.batch)
                .map(|i| batch.ids[i * batch.seq..i * batch.seq + batch.lengths[i]].to_vec())
        })
        .collect();
    TokenBatch::from_sequences(&rows, pad)
}

/// Logits at each row's last real position, `[copies·pairs, vocab]`.
pub(crate) fn last_logits(logits: Tensor<3>, last: &[usize], copies: usize) -> Result<Tensor<2>> {
    let [n, s, v] = logits.dims();
    if n != copies * last.len() {
        return Err(PrismError::Shape(format!(
            "{n} rows of logits for {copies} copies of {} pairs",
            last.len()
        )));
    }
    let rows: Vec<i64> = (0..n)
        .map(|r| (r * s + last[r % last.len()]) as i64)
        .collect();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &logits.device().inner());
    Ok(logits.reshape([n * s, v]).select(0, idx))
}

pub(crate) fn check_dims<T: PartialEq + std::fmt::Debug>(a: &T, b: &T) -> Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(PrismError::Shape(format!(
            "the patched run's state {a:?} differs from the source's {b:?}: clean and \
             corrupted prompts must have equal lengths"
        )))
    }
}
