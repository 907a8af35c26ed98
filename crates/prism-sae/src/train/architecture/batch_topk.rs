//! BatchTopK (Bussmann et al.; dictionary_learning's `BatchTopKTrainer`): the batch keeps its
//! `k·n` largest positive pre-activations, so tokens share a budget of `k` on average; at
//! inference a global threshold — a running mean of the smallest selected activation — replaces
//! the batch selection, so the saved dictionary is a JumpReLU one with that threshold on every
//! feature (as SAELens saves it).

use burn::tensor::{Bool, Tensor};
use prism_core::{PrismError, Result};
use serde::{Deserialize, Serialize};

use super::topk::{burn_pass_with_mask, host_pass_with_codes, topk_defaults};
use super::{Defaults, ExportState, Exported, Objective, SparsityKnob, ThresholdTracking};
use crate::Architecture;
use crate::train::burn_engine::{BurnLoss, BurnStep, Slots, cut_for_top};
use crate::train::objective::{HostLoss, HostStep};
use crate::train::params::Params;
use crate::train::select::batch_top_k;

/// BatchTopK hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchTopK {
    /// Mean active latents per token.
    pub k: usize,
    /// AuxK weight (1/32).
    pub auxk_alpha: f32,
    /// Decay of the threshold's running mean (0.999).
    pub threshold_beta: f32,
    /// Step from which the threshold is tracked (1000).
    pub threshold_start_step: u64,
}

impl BatchTopK {
    /// BatchTopK with AuxK α = 1/32 and dictionary_learning's threshold tracking.
    pub fn new(k: usize) -> Self {
        BatchTopK {
            k,
            auxk_alpha: 1.0 / 32.0,
            threshold_beta: 0.999,
            threshold_start_step: 1000,
        }
    }
}

/// The batch's `k·n` largest positive pre-activations on burn, and the smallest of them.
pub(crate) fn burn_batch_selection(
    s: &BurnStep<'_>,
    k: usize,
) -> Result<(Tensor<2, Bool>, Option<f32>)> {
    let (n, m) = (s.n, s.m);
    let cut = cut_for_top(s.pre.clone().reshape([1, n * m]), k * n);
    let selected = (s.pre.clone() - cut)
        .greater_equal_elem(0.0)
        .bool_and(s.positive.clone());
    // The smallest selected activation (+∞ when nothing is positive).
    let smallest = s
        .pre
        .clone()
        .mask_fill(selected.clone().bool_not(), f32::INFINITY)
        .min();
    let smallest = s.scalar(smallest)? as f32;
    Ok((selected, smallest.is_finite().then_some(smallest)))
}

/// A batch-level selection's export: JumpReLU with the tracked threshold on every feature.
pub(crate) fn export_thresholded(
    m: usize,
    start_step: u64,
    state: &ExportState<'_>,
) -> Result<Architecture> {
    let t = state.batch_threshold.ok_or_else(|| {
        PrismError::InvalidInput(format!(
            "the BatchTopK threshold is tracked from step {start_step}; this run has taken {} \
             steps",
            state.step
        ))
    })?;
    Ok(Architecture::JumpRelu {
        threshold: state.row(vec![t / state.input_scale; m]),
    })
}

impl Objective for BatchTopK {
    fn defaults(&self, d_sae: usize) -> Defaults {
        topk_defaults(d_sae)
    }

    fn fit_to_steps(&mut self, steps: u64) {
        self.threshold_start_step = self.threshold_start_step.min(steps / 2);
    }

    fn sparsity(&mut self) -> SparsityKnob<'_> {
        SparsityKnob::K(&mut self.k)
    }

    fn auxk(&self) -> bool {
        true
    }

    fn threshold_tracking(&self) -> Option<ThresholdTracking> {
        Some(ThresholdTracking {
            beta: self.threshold_beta,
            start_step: self.threshold_start_step,
        })
    }

    fn host_pass(&self, s: &HostStep<'_>, grads: &mut Params) -> HostLoss {
        let (codes, cut) = batch_top_k(s.a, &s.p.b_enc, s.n, s.m(), self.k * s.n);
        host_pass_with_codes(s, codes, self.auxk_alpha, cut, grads)
    }

    fn burn_pass(&self, s: &BurnStep<'_>, _grads: &mut Slots) -> Result<BurnLoss> {
        let (selected, smallest) = burn_batch_selection(s, self.k)?;
        let mut out = burn_pass_with_mask(s, selected, self.auxk_alpha)?;
        out.min_selected = smallest;
        Ok(out)
    }

    fn export(&self, p: &Params, state: &ExportState<'_>) -> Result<Exported> {
        Ok(Exported {
            architecture: export_thresholded(p.m, self.threshold_start_step, state)?,
            cfg: vec![("batch_k", serde_json::json!(self.k))],
        })
    }
}
