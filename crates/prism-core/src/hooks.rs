//! Hooks: what a forward pass should capture, and how it should change activations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use burn::tensor::{Bool, Tensor, TensorData};

use crate::error::{PrismError, Result};
use crate::hook_point::HookPoint;

/// An activation read at a hook point: rank 3 (`[batch, seq, d]`) for most hooks, rank 4 for
/// the per-head ones (`hook_z`: `[batch, seq, heads, d_head]`, `hook_pattern`:
/// `[batch, heads, query, key]`).
#[derive(Clone, Debug)]
pub enum Activation {
    /// `[batch, seq, width]`
    Rank3(Tensor<3>),
    /// `[batch, seq, heads, d_head]` or `[batch, heads, query, key]`
    Rank4(Tensor<4>),
}

impl Activation {
    /// The activation's dimensions.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Activation::Rank3(t) => t.dims().to_vec(),
            Activation::Rank4(t) => t.dims().to_vec(),
        }
    }

    /// The rank-3 tensor, or an error naming the hook if this activation has a head axis.
    pub fn into_rank3(self) -> Result<Tensor<3>> {
        match self {
            Activation::Rank3(t) => Ok(t),
            Activation::Rank4(t) => Err(PrismError::Shape(format!(
                "expected a rank-3 activation, got {:?}",
                t.dims()
            ))),
        }
    }

    /// The rank-4 tensor, or an error if this activation has no head axis.
    pub fn into_rank4(self) -> Result<Tensor<4>> {
        match self {
            Activation::Rank4(t) => Ok(t),
            Activation::Rank3(t) => Err(PrismError::Shape(format!(
                "expected a rank-4 activation, got {:?}",
                t.dims()
            ))),
        }
    }

    /// The same values cut from the autodiff graph: gradients stop here.
    pub fn detach(self) -> Activation {
        match self {
            Activation::Rank3(t) => Activation::Rank3(t.detach()),
            Activation::Rank4(t) => Activation::Rank4(t.detach()),
        }
    }

    /// Flattens every axis but the last: `[batch, seq, d]` → `[batch·seq, d]`.
    pub fn flatten_rows(self) -> Tensor<2> {
        match self {
            Activation::Rank3(t) => t.flatten(0, 1),
            Activation::Rank4(t) => t.flatten(0, 2),
        }
    }
}

/// A user function applied to an activation at a hook point.
pub type HookFn = Arc<dyn Fn(HookPoint, Activation) -> Result<Activation> + Send + Sync>;

/// How an intervention changes the activation at its hook point.
#[derive(Clone)]
pub enum Edit {
    /// Replace with the given activation (same shape), e.g. one cached from another prompt.
    Replace(Activation),
    /// Add a vector along the last axis at every selected position (steering).
    Add(Tensor<1>),
    /// Multiply by a constant.
    Scale(f32),
    /// Set to zero (zero-ablation).
    Zero,
    /// Replace by the mean of this very activation over the batch and its real (unpadded)
    /// positions (mean-ablation), per layout: `[d]` for `[batch, seq, d]` hooks, one mean per
    /// head for `hook_z` (`[heads, d_head]`, over batch and positions) and `hook_pattern`
    /// (`[heads, key]`, over batch and query positions).
    MeanOverBatch,
    /// Replace by a given mean vector (mean-ablation with a dataset mean), along the last axis.
    MeanOf(Tensor<1>),
    /// Any function of the activation (it must keep the shape).
    Custom(HookFn),
}

impl fmt::Debug for Edit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edit::Replace(a) => write!(f, "Replace({:?})", a.dims()),
            Edit::Add(v) => write!(f, "Add({:?})", v.dims()),
            Edit::Scale(s) => write!(f, "Scale({s})"),
            Edit::Zero => f.write_str("Zero"),
            Edit::MeanOverBatch => f.write_str("MeanOverBatch"),
            Edit::MeanOf(v) => write!(f, "MeanOf({:?})", v.dims()),
            Edit::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// One change to the forward pass: an [`Edit`] at a hook point, optionally restricted to some
/// sequence positions and (for `hook_z` / `hook_pattern`) some heads.
#[derive(Clone, Debug)]
pub struct Intervention {
    /// Where.
    pub hook: HookPoint,
    /// What.
    pub edit: Edit,
    /// Only these sequence positions (query positions for `hook_pattern`); all when `None`.
    pub positions: Option<Vec<usize>>,
    /// Only these heads (head-indexed hooks only); all when `None`.
    pub heads: Option<Vec<usize>>,
}

impl Intervention {
    /// An edit at every position and head.
    pub fn new(hook: HookPoint, edit: Edit) -> Self {
        Self {
            hook,
            edit,
            positions: None,
            heads: None,
        }
    }

    /// Restricts the edit to these sequence positions.
    pub fn at_positions(mut self, positions: impl Into<Vec<usize>>) -> Self {
        self.positions = Some(positions.into());
        self
    }

    /// Restricts the edit to these heads (only for `attn.hook_z` and `attn.hook_pattern`).
    pub fn at_heads(mut self, heads: impl Into<Vec<usize>>) -> Self {
        self.heads = Some(heads.into());
        self
    }

    /// Applies the intervention to `act`, the activation at its hook point, treating every
    /// position as real (no padding).
    pub fn apply(&self, act: Activation) -> Result<Activation> {
        self.apply_padded(act, None)
    }

    /// Applies the intervention to `act` from a right-padded batch whose sequences have these
    /// real `lengths` (`None`: no padding). Only edits that summarise the batch
    /// ([`Edit::MeanOverBatch`]) look at the lengths.
    pub fn apply_padded(&self, act: Activation, lengths: Option<&[usize]>) -> Result<Activation> {
        let err = |message: String| PrismError::Hook {
            hook: self.hook.to_string(),
            message,
        };
        if self.heads.is_some() && !self.hook.has_heads() {
            return Err(err(
                "a head selection needs attn.hook_z or attn.hook_pattern".into(),
            ));
        }
        let dims = act.dims();
        let edited = self
            .edit_all(act.clone(), lengths)
            .map_err(|e| err(e.to_string()))?;
        if edited.dims() != dims {
            return Err(err(format!(
                "the edit changed the shape {dims:?} to {:?}",
                edited.dims()
            )));
        }
        if self.positions.is_none() && self.heads.is_none() {
            return Ok(edited);
        }
        // Axis of positions and heads in this hook's layout.
        let (pos_axis, head_axis) = match self.hook {
            HookPoint::AttnPattern(_) => (2, Some(1)),
            HookPoint::AttnZ(_) => (1, Some(2)),
            _ => (1, None),
        };
        let mut mask_shape = vec![1; dims.len()];
        let mut axes = Vec::new();
        if let Some(p) = &self.positions {
            mask_shape[pos_axis] = dims[pos_axis];
            axes.push((pos_axis, p));
        }
        if let (Some(h), Some(ax)) = (&self.heads, head_axis) {
            mask_shape[ax] = dims[ax];
            axes.push((ax, h));
        }
        for (ax, idx) in &axes {
            if let Some(bad) = idx.iter().find(|&&i| i >= dims[*ax]) {
                return Err(err(format!(
                    "index {bad} is out of range for axis of size {}",
                    dims[*ax]
                )));
            }
        }
        let mask = selection_mask(&mask_shape, &axes);
        Ok(match (act, edited) {
            (Activation::Rank3(old), Activation::Rank3(new)) => {
                let m =
                    Tensor::<3, Bool>::from_data(TensorData::new(mask, mask_shape), &old.device());
                Activation::Rank3(old.mask_where(m.expand(new.dims()), new))
            }
            (Activation::Rank4(old), Activation::Rank4(new)) => {
                let m =
                    Tensor::<4, Bool>::from_data(TensorData::new(mask, mask_shape), &old.device());
                Activation::Rank4(old.mask_where(m.expand(new.dims()), new))
            }
            _ => return Err(err("the edit changed the activation's rank".into())),
        })
    }

    fn edit_all(&self, act: Activation, lengths: Option<&[usize]>) -> Result<Activation> {
        fn map(
            act: Activation,
            f3: impl FnOnce(Tensor<3>) -> Tensor<3>,
            f4: impl FnOnce(Tensor<4>) -> Tensor<4>,
        ) -> Activation {
            match act {
                Activation::Rank3(t) => Activation::Rank3(f3(t)),
                Activation::Rank4(t) => Activation::Rank4(f4(t)),
            }
        }
        let last = *act.dims().last().unwrap_or(&0);
        let check_vec = |v: &Tensor<1>| {
            if v.dims()[0] == last {
                Ok(())
            } else {
                Err(PrismError::Shape(format!(
                    "vector of length {} for an activation of width {last}",
                    v.dims()[0]
                )))
            }
        };
        Ok(match &self.edit {
            Edit::Replace(new) => {
                if new.dims() != act.dims() {
                    return Err(PrismError::Shape(format!(
                        "replacement has shape {:?}, the activation {:?}",
                        new.dims(),
                        act.dims()
                    )));
                }
                new.clone()
            }
            Edit::Add(v) => {
                check_vec(v)?;
                map(
                    act,
                    |t| t + v.clone().reshape([1, 1, last]),
                    |t| t + v.clone().reshape([1, 1, 1, last]),
                )
            }
            Edit::Scale(s) => map(act, |t| t * *s, |t| t * *s),
            Edit::Zero => map(act, |t| t.zeros_like(), |t| t.zeros_like()),
            Edit::MeanOverBatch => masked_mean(self.hook, act, lengths)?,
            Edit::MeanOf(v) => {
                check_vec(v)?;
                map(
                    act,
                    |t| v.clone().reshape([1, 1, last]).expand(t.dims()),
                    |t| v.clone().reshape([1, 1, 1, last]).expand(t.dims()),
                )
            }
            Edit::Custom(f) => f(self.hook, act)?,
        })
    }
}

/// The mean of `act` over its batch axis and its real positions (the sequence axis, or the
/// query axis of `hook_pattern`), broadcast back to `act`'s shape. Padded positions (at or
/// beyond a sequence's length) are left out.
fn masked_mean(hook: HookPoint, act: Activation, lengths: Option<&[usize]>) -> Result<Activation> {
    let dims = act.dims();
    let (batch, pos_axis) = (
        dims[0],
        if matches!(hook, HookPoint::AttnPattern(_)) {
            2
        } else {
            1
        },
    );
    let seq = dims[pos_axis];
    let lengths: Vec<usize> = match lengths {
        Some(l) if l.len() != batch => {
            return Err(PrismError::Shape(format!(
                "{} sequence lengths for a batch of {batch}",
                l.len()
            )));
        }
        Some(l) => l.iter().map(|&n| n.min(seq)).collect(),
        None => vec![seq; batch],
    };
    let count: usize = lengths.iter().sum();
    if count == 0 {
        return Err(PrismError::InvalidInput(
            "a mean over a batch with no real positions".into(),
        ));
    }
    let weights: Vec<f32> = lengths
        .iter()
        .flat_map(|&n| (0..seq).map(move |t| if t < n { 1.0 } else { 0.0 }))
        .collect();
    let mut mask_shape = vec![1; dims.len()];
    mask_shape[0] = batch;
    mask_shape[pos_axis] = seq;
    let scale = 1.0 / count as f64;
    Ok(match act {
        Activation::Rank3(t) => {
            let m = Tensor::<3>::from_data(TensorData::new(weights, mask_shape), &t.device());
            let sum = (t * m).sum_dim(0).sum_dim(pos_axis);
            Activation::Rank3(sum.mul_scalar(scale).expand(dims_array::<3>(&dims)))
        }
        Activation::Rank4(t) => {
            let m = Tensor::<4>::from_data(TensorData::new(weights, mask_shape), &t.device());
            let sum = (t * m).sum_dim(0).sum_dim(pos_axis);
            Activation::Rank4(sum.mul_scalar(scale).expand(dims_array::<4>(&dims)))
        }
    })
}

fn dims_array<const D: usize>(dims: &[usize]) -> [usize; D] {
    let mut out = [0; D];
    out.copy_from_slice(dims);
    out
}

/// A boolean mask of `shape` (ones on all axes but those in `axes`) that is true where every
/// listed axis's index is selected.
fn selection_mask(shape: &[usize], axes: &[(usize, &Vec<usize>)]) -> Vec<bool> {
    let n: usize = shape.iter().product();
    let mut out = vec![true; n];
    for (flat, m) in out.iter_mut().enumerate() {
        let mut rem = flat;
        for ax in (0..shape.len()).rev() {
            let i = rem % shape[ax];
            rem /= shape[ax];
            if let Some((_, idx)) = axes.iter().find(|(a, _)| *a == ax)
                && !idx.contains(&i)
            {
                *m = false;
            }
        }
    }
    out
}

/// Everything a forward pass should do beyond computing logits: hook points to capture and
/// interventions to apply. An empty `Hooks` costs nothing.
///
/// At a hook point, interventions run in the order they were added; a capture records the
/// activation *after* them (what the rest of the model sees).
///
/// ```
/// use prism_core::{Edit, HookPoint, Hooks, Intervention};
/// let hooks = Hooks::new()
///     .capture(HookPoint::ResidPost(0))
///     .intervene(Intervention::new(HookPoint::MlpOut(1), Edit::Zero));
/// assert!(hooks.touches(HookPoint::ResidPost(0)));
/// assert!(!hooks.touches(HookPoint::ResidPost(1)));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Hooks {
    captures: BTreeSet<HookPoint>,
    interventions: BTreeMap<HookPoint, Vec<Intervention>>,
}

impl Hooks {
    /// No hooks at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also capture the activation at `hook`.
    pub fn capture(mut self, hook: HookPoint) -> Self {
        self.captures.insert(hook);
        self
    }

    /// Capture every one of these hook points.
    pub fn capture_all(mut self, hooks: impl IntoIterator<Item = HookPoint>) -> Self {
        self.captures.extend(hooks);
        self
    }

    /// Also apply an intervention.
    pub fn intervene(mut self, intervention: Intervention) -> Self {
        self.interventions
            .entry(intervention.hook)
            .or_default()
            .push(intervention);
        self
    }

    /// True when the forward pass must stop at `hook` (to capture or to intervene).
    pub fn touches(&self, hook: HookPoint) -> bool {
        self.captures.contains(&hook) || self.interventions.contains_key(&hook)
    }

    /// Every hook point this set names.
    pub fn hook_points(&self) -> BTreeSet<HookPoint> {
        self.captures
            .iter()
            .chain(self.interventions.keys())
            .copied()
            .collect()
    }

    /// The deepest layer any hook names (`None` when only embedding/final hooks, or none).
    pub fn last_layer(&self) -> Option<usize> {
        self.hook_points().iter().filter_map(|h| h.layer()).max()
    }

    /// Starts the bookkeeping for one forward pass over unpadded sequences.
    pub fn start(&self) -> HookRun<'_> {
        HookRun {
            hooks: self,
            captured: BTreeMap::new(),
            lengths: None,
        }
    }

    /// Starts the bookkeeping for one forward pass over a right-padded batch whose sequences
    /// have these real lengths (so that batch means leave the padding out).
    pub fn start_padded(&self, lengths: &[usize]) -> HookRun<'_> {
        HookRun {
            hooks: self,
            captured: BTreeMap::new(),
            lengths: Some(lengths.to_vec()),
        }
    }
}

/// The state of [`Hooks`] during one forward pass: applies interventions and keeps captures.
pub struct HookRun<'a> {
    hooks: &'a Hooks,
    captured: BTreeMap<HookPoint, Activation>,
    lengths: Option<Vec<usize>>,
}

impl HookRun<'_> {
    /// True when the model must materialise the activation at `hook`.
    #[inline]
    pub fn touches(&self, hook: HookPoint) -> bool {
        self.hooks.touches(hook)
    }

    /// Passes an activation through the hook point: applies interventions, records a capture.
    pub fn visit(&mut self, hook: HookPoint, act: Activation) -> Result<Activation> {
        let mut act = act;
        if let Some(list) = self.hooks.interventions.get(&hook) {
            for iv in list {
                act = iv.apply_padded(act, self.lengths.as_deref())?;
            }
        }
        if self.hooks.captures.contains(&hook) {
            self.captured.insert(hook, act.clone());
        }
        Ok(act)
    }

    /// [`visit`](Self::visit) for a rank-3 activation; a no-op when the hook is untouched.
    #[inline]
    pub fn visit3(&mut self, hook: HookPoint, t: Tensor<3>) -> Result<Tensor<3>> {
        if !self.touches(hook) {
            return Ok(t);
        }
        self.visit(hook, Activation::Rank3(t))?.into_rank3()
    }

    /// [`visit`](Self::visit) for a rank-4 activation; a no-op when the hook is untouched.
    #[inline]
    pub fn visit4(&mut self, hook: HookPoint, t: Tensor<4>) -> Result<Tensor<4>> {
        if !self.touches(hook) {
            return Ok(t);
        }
        self.visit(hook, Activation::Rank4(t))?.into_rank4()
    }

    /// The captured activations, by hook point.
    pub fn into_captures(self) -> BTreeMap<HookPoint, Activation> {
        self.captured
    }
}
