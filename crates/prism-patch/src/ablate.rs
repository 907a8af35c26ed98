//! Ablations of nodes — hook points, positions, heads, neurons, dictionary features and error
//! terms — by zero, by their mean over a reference dataset, or by resampling them from other
//! prompts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use burn::tensor::{Tensor, TensorData};
use prism_core::{Activation, Edit, HookPoint, Hooks, Intervention, PrismError, Result};
use prism_models::{Model, TokenBatch};
use rand::{Rng, SeedableRng};

use crate::exact::tile;
use crate::node::Node;
use crate::state::{self, Dictionaries, State};

/// What an ablated node's state becomes.
#[derive(Clone, Debug)]
pub enum Ablation {
    /// Zero.
    Zero,
    /// Its mean over a reference dataset ([`MeanStates`]).
    Mean(Arc<MeanStates>),
    /// Its value in another prompt of `source`: each row of the ablated batch takes a row of
    /// `source` drawn with `seed` among those at least as long (so that no padding is used),
    /// a different row where the sources are the very same prompts.
    Resample {
        /// Prompts to draw from.
        source: TokenBatch,
        /// Seed of the draw.
        seed: u64,
    },
}

/// Mean state of each hook over a reference dataset: over every row and every real position
/// (padding excluded), per layout — one vector for `[batch, seq, d]` hooks, one per head for
/// `attn.hook_z`, the dictionary's mean codes and mean error term where one is spliced in.
#[derive(Clone, Debug)]
pub struct MeanStates {
    by_hook: BTreeMap<HookPoint, State>,
    /// Real positions averaged over.
    pub positions: usize,
}

impl MeanStates {
    /// Means of the states at `hooks` over `batches` (dictionary states at the hooks of
    /// `dictionaries`).
    ///
    /// ```no_run
    /// # fn f(model: &prism_models::Model, windows: &[Vec<u32>]) -> prism_core::Result<()> {
    /// use prism_models::TokenBatch;
    /// use prism_patch::{Dictionaries, MeanStates};
    /// let hooks = ["blocks.3.attn.hook_z".parse()?];
    /// let batches = TokenBatch::batches(windows, 8, model.pad_id());
    /// let means = MeanStates::compute(model, batches, &hooks, &Dictionaries::new())?;
    /// # Ok(()) }
    /// ```
    pub fn compute(
        model: &Model,
        batches: impl IntoIterator<Item = Result<TokenBatch>>,
        hooks: &[HookPoint],
        dictionaries: &Dictionaries,
    ) -> Result<Self> {
        let shape = model.config().shape();
        for h in hooks {
            h.validate(&shape)?;
            if matches!(h, HookPoint::AttnPattern(_)) {
                return Err(PrismError::UnknownHook {
                    name: h.to_string(),
                    reason: "attention patterns are not ablated as nodes; ablate hook_z".into(),
                });
            }
        }
        let capture = Hooks::new().capture_all(hooks.iter().copied());
        let mut sums: BTreeMap<HookPoint, State> = BTreeMap::new();
        let mut positions = 0;
        for batch in batches {
            let batch = batch?;
            let mut out = model.forward(&batch, &capture)?;
            let weights: Vec<f32> = batch
                .lengths
                .iter()
                .flat_map(|&n| (0..batch.seq).map(move |t| if t < n { 1.0 } else { 0.0 }))
                .collect();
            positions += batch.lengths.iter().sum::<usize>();
            for &h in hooks {
                let s = State::read(h, out.take(h)?, dictionaries.get(&h))?;
                let summed = State {
                    parts: s
                        .parts
                        .into_iter()
                        .map(|p| masked_sum(p, &weights, batch.batch, batch.seq))
                        .collect(),
                };
                let next = match sums.remove(&h) {
                    None => summed,
                    Some(acc) => acc.zip(&summed, state::Op::Add)?,
                };
                sums.insert(h, next);
            }
        }
        if positions == 0 {
            return Err(PrismError::InvalidInput(
                "a mean over a reference dataset with no tokens".into(),
            ));
        }
        let scale = 1.0 / positions as f32;
        let by_hook = sums
            .into_iter()
            .map(|(h, s)| {
                let parts = s
                    .parts
                    .into_iter()
                    .map(|p| match p {
                        Activation::Rank3(t) => Activation::Rank3(t * scale),
                        Activation::Rank4(t) => Activation::Rank4(t * scale),
                    })
                    .collect();
                (h, State { parts })
            })
            .collect();
        Ok(Self { by_hook, positions })
    }

    /// The mean activation at `hook` (`[1, 1, d]`, or `[1, 1, heads, d_head]` for `hook_z`;
    /// for a dictionary hook, part 0 is the mean codes and part 1 the mean error).
    pub fn get(&self, hook: HookPoint) -> Option<Vec<Activation>> {
        self.by_hook.get(&hook).map(|s| s.parts.clone())
    }
}

/// `Σ_rows Σ_positions weight · p`, keeping the summed axes (size 1).
fn masked_sum(p: Activation, weights: &[f32], b: usize, s: usize) -> Activation {
    match p {
        Activation::Rank3(t) => {
            let w =
                Tensor::<3>::from_data(TensorData::new(weights.to_vec(), [b, s, 1]), &t.device());
            Activation::Rank3((t * w).sum_dim(0).sum_dim(1))
        }
        Activation::Rank4(t) => {
            let w = Tensor::<4>::from_data(
                TensorData::new(weights.to_vec(), [b, s, 1, 1]),
                &t.device(),
            );
            Activation::Rank4((t * w).sum_dim(0).sum_dim(1))
        }
    }
}

/// The nodes of `universe` not in `keep` ("ablate every node except these").
///
/// ```
/// use prism_core::HookPoint;
/// use prism_patch::{Node, Unit, complement};
/// let n = |p| Node::new(HookPoint::ResidPre(0), Some(p), Unit::All);
/// assert_eq!(complement(&[n(0), n(1), n(2)], &[n(1)]), vec![n(0), n(2)]);
/// ```
pub fn complement(universe: &[Node], keep: &[Node]) -> Vec<Node> {
    let keep: BTreeSet<&Node> = keep.iter().collect();
    universe
        .iter()
        .filter(|n| !keep.contains(n))
        .copied()
        .collect()
}

/// Hooks that ablate nodes: the returned batch holds `ablated.len()` copies of `batch`, copy
/// `k` with the nodes `ablated[k]` ablated (several ablations in one forward pass).
///
/// ```no_run
/// # fn f(model: &prism_models::Model, means: std::sync::Arc<prism_patch::MeanStates>) -> prism_core::Result<()> {
/// use prism_core::HookPoint;
/// use prism_patch::{Ablation, Dictionaries, Node, Unit, ablation};
/// let batch = model.batch(&["When Mary and John went to the store, John gave a drink to"])?;
/// let head = Node::new(HookPoint::AttnZ(9), None, Unit::Head(6));
/// let (copies, hooks) = ablation(model, &batch, &[vec![head]], &Ablation::Mean(means), &Dictionaries::new())?;
/// let logits = model.forward(&copies, &hooks)?.logits()?;
/// # Ok(()) }
/// ```
pub fn ablation(
    model: &Model,
    batch: &TokenBatch,
    ablated: &[Vec<Node>],
    how: &Ablation,
    dictionaries: &Dictionaries,
) -> Result<(TokenBatch, Hooks)> {
    let copies = ablated.len();
    if copies == 0 {
        return Err(PrismError::InvalidInput("no ablations asked for".into()));
    }
    let shape = model.config().shape();
    let mut by_hook: BTreeMap<HookPoint, Vec<(usize, Node)>> = BTreeMap::new();
    for (k, set) in ablated.iter().enumerate() {
        for n in set {
            if n.needs_dictionary() && !dictionaries.contains_key(&n.hook) {
                return Err(PrismError::Hook {
                    hook: n.hook.to_string(),
                    message: format!("{n} needs a dictionary spliced in at its hook"),
                });
            }
            by_hook.entry(n.hook).or_default().push((k, *n));
        }
    }
    for h in by_hook.keys() {
        h.validate(&shape)?;
    }
    let resampled = match how {
        Ablation::Resample { source, seed } => Some(resample_states(
            model,
            batch,
            source,
            *seed,
            &by_hook.keys().copied().collect::<Vec<_>>(),
            dictionaries,
        )?),
        _ => None,
    };
    let mut hooks = Hooks::new();
    for (hook, covered) in by_hook {
        let dict = dictionaries.get(&hook).cloned();
        let replacement: Option<State> =
            match how {
                Ablation::Zero => None,
                Ablation::Mean(means) => Some(means.by_hook.get(&hook).cloned().ok_or_else(
                    || PrismError::Hook {
                        hook: hook.to_string(),
                        message: "the mean states were not computed at this hook".into(),
                    },
                )?),
                Ablation::Resample { .. } => resampled
                    .as_ref()
                    .and_then(|r| r.get(&hook))
                    .map(|s| s.tile(copies)),
            };
        let edit: prism_core::HookFn = Arc::new(move |hook: HookPoint, act: Activation| {
            let now = State::read(hook, act, dict.as_ref())?;
            let dims = now.dims();
            let one_copy: Vec<Vec<usize>> = dims
                .iter()
                .map(|d| {
                    let mut d = d.clone();
                    d[0] /= copies;
                    d
                })
                .collect();
            let masks = state::masks(&one_copy, dict.is_some(), copies, &covered)?;
            let with = match &replacement {
                Some(r) => {
                    if r.parts.len() != now.parts.len() {
                        return Err(PrismError::Shape(format!(
                            "{hook}: a replacement state of {} parts for {}",
                            r.parts.len(),
                            now.parts.len()
                        )));
                    }
                    r.clone()
                }
                None => now.zeros(),
            };
            now.select(&masks, &with)?.compose(dict.as_ref())
        });
        hooks = hooks.intervene(Intervention::new(hook, Edit::Custom(edit)));
    }
    Ok((tile(batch, copies, model.pad_id())?, hooks))
}

/// For each hook, the states of `source` rows assigned to the rows of `batch`, cut to its
/// length: `[batch.batch, batch.seq, …]`.
fn resample_states(
    model: &Model,
    batch: &TokenBatch,
    source: &TokenBatch,
    seed: u64,
    hooks: &[HookPoint],
    dictionaries: &Dictionaries,
) -> Result<BTreeMap<HookPoint, State>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let same_prompts = source == batch;
    let mut rows = Vec::with_capacity(batch.batch);
    for (i, &len) in batch.lengths.iter().enumerate() {
        let eligible: Vec<usize> = (0..source.batch)
            .filter(|&j| source.lengths[j] >= len && !(same_prompts && j == i))
            .collect();
        if eligible.is_empty() {
            return Err(PrismError::InvalidInput(format!(
                "no resampling source for row {i}: it has {len} tokens and no other source \
                 prompt is as long"
            )));
        }
        rows.push(eligible[rng.random_range(0..eligible.len())]);
    }
    let capture = Hooks::new().capture_all(hooks.iter().copied());
    let mut out = model.forward(source, &capture)?;
    let device = model.device().clone();
    let idx = prism_core::index_tensor(&rows, &device);
    hooks
        .iter()
        .map(|&h| {
            let s = State::read(h, out.take(h)?, dictionaries.get(&h))?;
            let parts = s
                .parts
                .into_iter()
                .map(|p| match p {
                    Activation::Rank3(t) => {
                        Activation::Rank3(t.select(0, idx.clone()).narrow(1, 0, batch.seq))
                    }
                    Activation::Rank4(t) => {
                        Activation::Rank4(t.select(0, idx.clone()).narrow(1, 0, batch.seq))
                    }
                })
                .collect();
            Ok((h, State { parts }))
        })
        .collect()
}
