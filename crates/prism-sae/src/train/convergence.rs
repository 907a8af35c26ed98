//! Convergence measured while training: at token counts spaced geometrically, each dictionary's
//! reconstruction of held-out rows (never trained on) and, across runs that differ only in
//! their seed, how alike their decoders have become (mean max cosine similarity).
//!
//! A run has converged when these stop moving: variance explained and L0 on held-out rows flat,
//! and the seeds' MMCS flat. Still rising at the end means the budget was too small; flat below
//! a target means the method or the model, not the length of training.

use burn::tensor::{Device, Tensor};
use prism_core::{Dictionary, HostTensor, PrismError, Result, index_tensor, to_vec};
use prism_similarity::{MatchingMethod, SimilarityOptions, compare_directions};
use serde::{Deserialize, Serialize};

use super::group::Run;

/// Where and how often [`super::fit`] measures convergence.
#[derive(Clone, Debug)]
pub struct ConvergenceOptions {
    /// Held-out rows, one `[rows, d]` tensor per input of the stream (raw scale).
    pub held_out: Vec<HostTensor>,
    /// The first measurement after this many training tokens …
    pub first_tokens: u64,
    /// … and then each time the tokens seen grow by this factor (and after the last step).
    pub ratio: f64,
    /// A feature firing on more than this share of held-out rows counts as dense.
    pub dense_share: f64,
}

impl ConvergenceOptions {
    /// Measurements at 16 384 tokens, then every ×√2, dense above 10 % of rows.
    pub fn new(held_out: Vec<HostTensor>) -> Self {
        Self {
            held_out,
            first_tokens: 16_384,
            ratio: std::f64::consts::SQRT_2,
            dense_share: 0.1,
        }
    }

    /// The token counts measured at, up to `total` (the end itself is added by `fit`).
    ///
    /// ```
    /// use prism_sae::train::ConvergenceOptions;
    /// let mut c = ConvergenceOptions::new(Vec::new());
    /// c.first_tokens = 100;
    /// c.ratio = 2.0;
    /// assert_eq!(c.schedule(1000), vec![100, 200, 400, 800]);
    /// ```
    pub fn schedule(&self, total: u64) -> Vec<u64> {
        let ratio = self.ratio.max(1.0 + 1e-6);
        let mut out: Vec<u64> = Vec::new();
        for k in 0.. {
            let t = (self.first_tokens.max(1) as f64 * ratio.powi(k)).round() as u64;
            if t > total {
                break;
            }
            if out.last() != Some(&t) {
                out.push(t);
            }
        }
        out
    }

    /// Whether a measurement falls after a step that took the tokens seen from `before` to
    /// `after`.
    pub fn due(&self, before: u64, after: u64) -> bool {
        self.schedule(after).last().is_some_and(|&t| t > before)
    }
}

/// One dictionary measured on the held-out rows at one point of training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldOut {
    /// Held-out rows measured.
    pub rows: usize,
    /// Fraction of variance explained, `1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²` (docs/metrics.md; for a
    /// transcoder, of its output hook's rows by its output).
    pub fve: f64,
    /// Mean squared error per element, raw scale.
    pub mse: f64,
    /// Mean non-zero codes per row.
    pub l0: f64,
    /// Features that fired on at least one held-out row.
    pub alive: usize,
    /// Features that fired on more than the dense share of rows.
    pub dense: usize,
    /// Mean over the other seeds' runs of MMCS from this run's decoder to theirs (every
    /// feature); absent for a run with no seed siblings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mmcs_seeds: Option<f64>,
    /// The same over features alive (on the held-out rows) in both dictionaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mmcs_seeds_alive: Option<f64>,
}

/// Measures every run (see [`HeldOut`]; a transcoder's output against its target's held-out
/// rows); `None` for a run whose dictionary cannot be exported yet (BatchTopK before its
/// threshold is tracked).
pub fn measure(
    runs: &[Run],
    options: &ConvergenceOptions,
    device: &Device,
) -> Result<Vec<Option<HeldOut>>> {
    let mut points = Vec::with_capacity(runs.len());
    let mut decoders = Vec::with_capacity(runs.len());
    for r in runs {
        let x = options.held_out.get(r.input).ok_or_else(|| {
            PrismError::InvalidInput(format!(
                "{}: no held-out rows for input {}",
                r.name, r.input
            ))
        })?;
        let target = match r.output {
            Some(o) => Some(options.held_out.get(o).ok_or_else(|| {
                PrismError::InvalidInput(format!("{}: no held-out rows for input {o}", r.name))
            })?),
            None => None,
        };
        let exported: Result<Box<dyn Dictionary>> = if r.trainer.config.is_transcoder() {
            r.trainer
                .to_transcoder(device)
                .map(|t| Box::new(t) as Box<dyn Dictionary>)
        } else {
            r.trainer
                .to_sae(device)
                .map(|s| Box::new(s) as Box<dyn Dictionary>)
        };
        let Ok(dict) = exported else {
            points.push(None);
            decoders.push(None);
            continue;
        };
        let (point, fired) = reconstruct(dict.as_ref(), x, target, options.dense_share, device)?;
        decoders.push(Some((dict.decoder_directions(), fired)));
        points.push(Some(point));
    }
    for group in seed_groups(runs) {
        let mut all = vec![Vec::new(); runs.len()];
        let mut alive = vec![Vec::new(); runs.len()];
        for (gi, &a) in group.iter().enumerate() {
            for &b in &group[gi + 1..] {
                let (Some((da, fa)), Some((db, fb))) = (&decoders[a], &decoders[b]) else {
                    continue;
                };
                let (ab, ba) = mmcs(da.clone(), db.clone())?;
                all[a].push(ab);
                all[b].push(ba);
                let (ka, kb) = (alive_rows(fa), alive_rows(fb));
                if !ka.is_empty() && !kb.is_empty() {
                    let sel =
                        |t: &Tensor<2>, k: &[usize]| t.clone().select(0, index_tensor(k, device));
                    let (ab, ba) = mmcs(sel(da, &ka), sel(db, &kb))?;
                    alive[a].push(ab);
                    alive[b].push(ba);
                }
            }
        }
        for &a in &group {
            if let Some(p) = points[a].as_mut() {
                p.mmcs_seeds = mean(&all[a]);
                p.mmcs_seeds_alive = mean(&alive[a]);
            }
        }
    }
    Ok(points)
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn alive_rows(fired: &[u32]) -> Vec<usize> {
    (0..fired.len()).filter(|&j| fired[j] > 0).collect()
}

/// Both directions of MMCS between two decoders.
fn mmcs(a: Tensor<2>, b: Tensor<2>) -> Result<(f64, f64)> {
    let options = SimilarityOptions {
        matching: MatchingMethod::None,
        ..SimilarityOptions::default()
    };
    let s = compare_directions(a, b, &options)?;
    Ok((s.mmcs_a_to_b, s.mmcs_b_to_a))
}

/// Indices of runs grouped by everything but the seed (same input, same configuration); only
/// groups of two or more.
fn seed_groups(runs: &[Run]) -> Vec<Vec<usize>> {
    let key = |r: &Run| {
        let mut c = r.trainer.config.clone();
        c.seed = 0;
        (r.input, c)
    };
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        match groups.iter_mut().find(|g| key(&runs[g[0]]) == key(r)) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups.retain(|g| g.len() > 1);
    groups
}

/// Reconstruction metrics of `dict` on `x` — of `target` (a transcoder's output hook's rows)
/// when given, else of `x` itself — and how many rows each feature fired on.
fn reconstruct(
    dict: &dyn Dictionary,
    x: &HostTensor,
    target: Option<&HostTensor>,
    dense_share: f64,
    device: &Device,
) -> Result<(HeldOut, Vec<u32>)> {
    let rows = x.dims2()?[0];
    if rows == 0 {
        return Err(PrismError::InvalidInput("no held-out rows".into()));
    }
    let xt = x.to_burn::<2>(device)?;
    let y = target.unwrap_or(x);
    let [y_rows, d] = y.dims2()?;
    if y_rows != rows {
        return Err(PrismError::Shape(format!(
            "{rows} held-out input rows but {y_rows} target rows"
        )));
    }
    let codes = dict.encode(xt.clone());
    let y_hat = dict.output(xt, codes.clone());
    let fired: Vec<u32> = to_vec(codes.not_equal_elem(0.0).float().sum_dim(0))?
        .into_iter()
        .map(|v| v.round() as u32)
        .collect();
    let sq_err = to_vec((y.to_burn::<2>(device)? - y_hat).square().sum())?[0] as f64;
    let mut mean = vec![0f64; d];
    for r in y.data.chunks(d) {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += *v as f64 / rows as f64;
        }
    }
    let total: f64 = y
        .data
        .chunks(d)
        .map(|r| {
            r.iter()
                .zip(&mean)
                .map(|(v, m)| (*v as f64 - m).powi(2))
                .sum::<f64>()
        })
        .sum();
    let point = HeldOut {
        rows,
        fve: 1.0 - sq_err / total.max(f64::MIN_POSITIVE),
        mse: sq_err / (rows * d) as f64,
        l0: fired.iter().map(|&f| f as f64).sum::<f64>() / rows as f64,
        alive: fired.iter().filter(|&&f| f > 0).count(),
        dense: fired
            .iter()
            .filter(|&&f| f as f64 > dense_share * rows as f64)
            .count(),
        mmcs_seeds: None,
        mmcs_seeds_alive: None,
    };
    Ok((point, fired))
}
