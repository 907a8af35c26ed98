//! TopK (Gao et al.; dictionary_learning's `TopKTrainer`): each token keeps its `k` largest
//! positive pre-activations; loss `Σ‖x − x̂‖²/n + α·AuxK`.

use prism_core::Result;
use serde::{Deserialize, Serialize};

use super::auxk::{burn_auxk, host_auxk};
use super::{Defaults, ExportState, Exported, Objective, SparsityKnob, topk_lr};
use crate::Architecture;
use crate::train::burn_engine::{BurnLoss, BurnStep, Slots, cut_for_top};
use crate::train::objective::{HostLoss, HostStep, column_sums_of_rows, for_each_entry};
use crate::train::params::Params;
use crate::train::select::top_k_rows;

/// TopK hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopK {
    /// Active latents per token.
    pub k: usize,
    /// AuxK weight (1/32).
    pub auxk_alpha: f32,
}

impl TopK {
    /// TopK with AuxK α = 1/32.
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            auxk_alpha: 1.0 / 32.0,
        }
    }
}

/// The TopK family's defaults: dictionary_learning's learning rate for `d_sae`, no sparsity
/// warm-up, no resampling (AuxK instead).
pub(crate) fn topk_defaults(d_sae: usize) -> Defaults {
    Defaults {
        lr: topk_lr(d_sae),
        resample: None,
        sparsity_warmup_steps: 0,
        apply_b_dec_to_input: true,
    }
}

/// The TopK family's host pass once the codes are chosen: reconstruction, AuxK, `b_enc`.
pub(crate) fn host_pass_with_codes(
    s: &HostStep<'_>,
    codes: crate::kernel::Csr,
    auxk_alpha: f32,
    min_selected: Option<f32>,
    grads: &mut Params,
) -> HostLoss {
    let r = s.reconstruct(&codes, grads);
    let mut ga: Vec<Vec<(u32, f32)>> = vec![Vec::new(); s.n];
    for_each_entry(&codes, |row, e, j| ga[row].push((j, r.gf[e])));
    let aux = host_auxk(s, &codes.idx, &r.x_hat, auxk_alpha, grads, &mut ga);
    column_sums_of_rows(&ga, &mut grads.b_enc);
    HostLoss {
        codes,
        ga,
        loss: r.recon + auxk_alpha as f64 * aux,
        recon: r.recon,
        sparsity: 0.0,
        aux,
        token_sq_err: r.token_sq_err,
        min_selected,
    }
}

/// The TopK family's burn pass once the selection is chosen.
pub(crate) fn burn_pass_with_mask(
    s: &BurnStep<'_>,
    selected: burn::tensor::Tensor<2, burn::tensor::Bool>,
    auxk_alpha: f32,
) -> Result<BurnLoss> {
    let mask = selected.float();
    let f = s.pre.clone() * mask.clone();
    let mut r = s.reconstruct(&f)?;
    let ga = r.gf.clone() * mask;
    let (ga, aux) = burn_auxk(s, &mut r, ga, auxk_alpha)?;
    let loss = r.recon + auxk_alpha as f64 * aux;
    Ok(r.finish(ga, loss, 0.0, aux))
}

impl Objective for TopK {
    fn defaults(&self, d_sae: usize) -> Defaults {
        topk_defaults(d_sae)
    }

    fn sparsity(&mut self) -> SparsityKnob<'_> {
        SparsityKnob::K(&mut self.k)
    }

    fn auxk(&self) -> bool {
        true
    }

    fn host_pass(&self, s: &HostStep<'_>, grads: &mut Params) -> HostLoss {
        let codes = top_k_rows(s.a, &s.p.b_enc, s.n, s.m(), self.k, None);
        host_pass_with_codes(s, codes, self.auxk_alpha, None, grads)
    }

    fn burn_pass(&self, s: &BurnStep<'_>, _grads: &mut Slots) -> Result<BurnLoss> {
        let cut = cut_for_top(s.pre.clone(), self.k);
        let selected = (s.pre.clone() - cut)
            .greater_equal_elem(0.0)
            .bool_and(s.positive.clone());
        burn_pass_with_mask(s, selected, self.auxk_alpha)
    }

    fn export(&self, _p: &Params, _state: &ExportState<'_>) -> Result<Exported> {
        Ok(Exported {
            architecture: Architecture::TopK { k: self.k },
            cfg: Vec::new(),
        })
    }
}
