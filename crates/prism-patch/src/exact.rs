//! Exact activation patching.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use burn::tensor::{Bool, Int, Tensor, TensorData};
use prism_core::{Activation, Edit, HookPoint, Hooks, Intervention, PrismError, Result};
use prism_models::{Model, TokenBatch};
use serde::Serialize;

use crate::metric::Metric;
use crate::node::Node;
use crate::pairs::PairBatch;

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

/// How [`patch`] runs.
#[derive(Clone, Debug)]
pub struct PatchOptions {
    /// Denoise or noise.
    pub direction: Direction,
    /// What to measure.
    pub metric: Metric,
    /// At most this many rows (pairs × patched copies) per forward pass.
    pub rows_per_forward: usize,
}

impl Default for PatchOptions {
    fn default() -> Self {
        Self {
            direction: Direction::Denoise,
            metric: Metric::LogitDiff,
            rows_per_forward: 32,
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
    if pairs.is_empty() {
        return Err(PrismError::InvalidInput("no prompt pairs".into()));
    }
    let shape = model.config().shape();
    let hooks: BTreeSet<HookPoint> = nodes.iter().map(|n| n.hook).collect();
    for h in &hooks {
        h.validate(&shape)?;
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
    let capture = Hooks::new().capture_all(hooks.iter().copied());
    let mut clean = model.forward(&pairs.clean, &capture)?;
    let mut corrupt = model.forward(&pairs.corrupt, &capture)?;
    let last = pairs.last_positions();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let clean_metric = mean(
        &options
            .metric
            .per_row(last_logits(clean.logits()?, &last, 1)?, pairs)?,
    );
    let corrupt_metric = mean(
        &options
            .metric
            .per_row(last_logits(corrupt.logits()?, &last, 1)?, pairs)?,
    );
    let (target, source) = match options.direction {
        Direction::Denoise => (&pairs.corrupt, &mut clean),
        Direction::Noise => (&pairs.clean, &mut corrupt),
    };
    let sources: BTreeMap<HookPoint, Activation> = hooks
        .iter()
        .map(|&h| Ok((h, source.take(h)?)))
        .collect::<Result<_>>()?;

    let b = pairs.len();
    let per_pass = (options.rows_per_forward / b).max(1);
    let mut results = Vec::with_capacity(nodes.len());
    let mut done = 0;
    for group in nodes.chunks(per_pass) {
        let copies = group.len();
        let batch = tile(target, copies, model.pad_id())?;
        let mut edits = Hooks::new();
        for (&hook, src) in &sources {
            if let Some(iv) = patch_intervention(hook, src, group, copies)? {
                edits = edits.intervene(iv);
            }
        }
        let logits = model.forward(&batch, &edits)?.logits()?;
        let values = options
            .metric
            .per_row(last_logits(logits, &last, copies)?, pairs)?;
        for (k, node) in group.iter().enumerate() {
            let value = mean(&values[k * b..(k + 1) * b]);
            results.push(PatchResult {
                node: *node,
                value,
                normalized: (value - corrupt_metric) / (clean_metric - corrupt_metric),
            });
        }
        done += copies;
        progress(done, nodes.len());
    }
    Ok(PatchSweep {
        metric: options.metric.name().to_string(),
        direction: options.direction,
        clean: clean_metric,
        corrupt: corrupt_metric,
        results,
    })
}

/// `copies` copies of a batch, one after the other (padded with `pad`).
fn tile(batch: &TokenBatch, copies: usize, pad: u32) -> Result<TokenBatch> {
    let rows: Vec<Vec<u32>> = (0..copies)
        .flat_map(|_| {
            (0..batch.batch)
                .map(|i| batch.ids[i * batch.seq..i * batch.seq + batch.lengths[i]].to_vec())
        })
        .collect();
    TokenBatch::from_sequences(&rows, pad)
}

/// Logits at each row's last real position, `[copies·pairs, vocab]`.
fn last_logits(logits: Tensor<3>, last: &[usize], copies: usize) -> Result<Tensor<2>> {
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
    let idx = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &logits.device());
    Ok(logits.reshape([n * s, v]).select(0, idx))
}

/// The edit at `hook` for a pass whose copy `k` patches `group[k]`: the source activation,
/// tiled over the copies, replaces the target's where a copy's node covers it. `None` when no
/// node of the group is at `hook`.
fn patch_intervention(
    hook: HookPoint,
    source: &Activation,
    group: &[Node],
    copies: usize,
) -> Result<Option<Intervention>> {
    if !group.iter().any(|n| n.hook == hook) {
        return Ok(None);
    }
    let dims = source.dims();
    let (b, row): (usize, usize) = (dims[0], dims[1..].iter().product());
    let mut mask = vec![false; copies * b * row];
    for (k, node) in group.iter().enumerate().filter(|(_, n)| n.hook == hook) {
        for i in 0..b {
            let start = (k * b + i) * row;
            node.mark(&dims[1..], &mut mask[start..start + row])?;
        }
    }
    let mut tiled_dims = dims.clone();
    tiled_dims[0] = copies * b;
    let edit: prism_core::HookFn = match source {
        Activation::Rank3(src) => {
            let device = src.device();
            let m = Tensor::<3, Bool>::from_data(TensorData::new(mask, tiled_dims), &device);
            let src = src.clone().repeat_dim(0, copies);
            Arc::new(move |_: HookPoint, act: Activation| {
                let t = act.into_rank3()?;
                check_dims(&t.dims(), &src.dims())?;
                Ok(Activation::Rank3(t.mask_where(m.clone(), src.clone())))
            })
        }
        Activation::Rank4(src) => {
            let device = src.device();
            let m = Tensor::<4, Bool>::from_data(TensorData::new(mask, tiled_dims), &device);
            let src = src.clone().repeat_dim(0, copies);
            Arc::new(move |_: HookPoint, act: Activation| {
                let t = act.into_rank4()?;
                check_dims(&t.dims(), &src.dims())?;
                Ok(Activation::Rank4(t.mask_where(m.clone(), src.clone())))
            })
        }
    };
    Ok(Some(Intervention::new(hook, Edit::Custom(edit))))
}

fn check_dims(a: &[usize], b: &[usize]) -> Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(PrismError::Shape(format!(
            "the patched run's activation {a:?} differs from the source's {b:?}: clean and \
             corrupted prompts must have equal lengths"
        )))
    }
}
