//! Next-token losses and KL divergences of several runs over one batch, scored from their
//! final-norm states without storing any `[tokens, vocab]` logits.
//!
//! Loss recovered needs, at every position, each run's log-sum-exp over the vocabulary, its
//! logit of the next token, and `Σ p₀ (x₀ − x_k)` against the clean run. On the CPU the
//! unembedding runs here one block of the vocabulary at a time (a block's logits stay in cache,
//! are reduced to those statistics, and are overwritten by the next block's); the blocks'
//! statistics are then merged exactly as an online softmax would. Elsewhere (a GPU, the
//! burn-ops path) the logits are computed whole on the device and read back, then reduced by
//! the same code.

use burn::tensor::Tensor;
use prism_core::dense::{View, matmul_serial};
use prism_core::{PrismError, Result};
use rayon::prelude::*;

use crate::cpu::{exp, max_in_lanes};
use crate::transformer::{TokenBatch, Transformer};
use prism_core::simd_dispatch;

/// What the runs' output distributions say at one real (unpadded) position of the batch.
#[derive(Clone, Debug, PartialEq)]
pub struct PositionScores {
    /// The sequence in the batch.
    pub sequence: usize,
    /// The position in the sequence.
    pub position: usize,
    /// Each run's negative log-likelihood of the next token, in run order; `None` at a
    /// sequence's last real position (it has no next token).
    pub nll: Option<Vec<f64>>,
    /// `KL(p₀ ‖ p_k)` for each run `k ≥ 1` against the first run, summed over the vocabulary.
    pub kl: Vec<f64>,
}

impl Transformer {
    /// Scores several runs over `batch` from their final-norm outputs (`ln_final.hook_normalized`,
    /// each `[batch, seq, d_model]`): per real position, each run's next-token NLL and its KL
    /// divergence from the first run. On the fused CPU path no `[tokens, vocab]` logits are
    /// ever stored (the unembedding runs one vocabulary block at a time); the result equals
    /// scoring the runs' full logits to within float rounding.
    ///
    /// ```
    /// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/llama_gqa");
    /// # let model = prism_models::Model::load(&dir, &prism_core::device("cpu").unwrap()).unwrap();
    /// use prism_core::{HookPoint, Hooks};
    /// let batch = prism_models::TokenBatch::from_sequences(&[vec![1, 2, 3]], 0)?;
    /// let mut out = model.transformer.capture_only(&batch, &Hooks::new().capture(HookPoint::LnFinal))?;
    /// let last = out.take(HookPoint::LnFinal)?.into_rank3()?;
    /// let scores = model.transformer.score_runs(&batch, &[last.clone(), last])?;
    /// let loss = (scores[0].nll.as_ref().unwrap()[0] + scores[1].nll.as_ref().unwrap()[0]) / 2.0;
    /// assert!((loss - model.loss(&batch, &Hooks::new())?).abs() < 1e-5);
    /// assert!(scores[0].kl[0].abs() < 1e-9); // a run against itself
    /// assert_eq!(scores[2].nll, None); // the last position predicts nothing
    /// # Ok::<(), prism_core::PrismError>(())
    /// ```
    pub fn score_runs(
        &self,
        batch: &TokenBatch,
        finals: &[Tensor<3>],
    ) -> Result<Vec<PositionScores>> {
        let (d, v) = (self.config.d_model, self.config.vocab_size);
        if finals.is_empty() {
            return Err(PrismError::InvalidInput("no runs to score".into()));
        }
        for f in finals {
            if f.dims() != [batch.batch, batch.seq, d] {
                return Err(PrismError::Shape(format!(
                    "scoring needs final-norm states [{}, {}, {d}], got {:?}",
                    batch.batch,
                    batch.seq,
                    f.dims()
                )));
            }
        }
        self.check(batch, &prism_core::Hooks::new())?;
        let positions: Vec<(usize, usize)> = batch.real_positions().collect();
        let flat: Vec<usize> = positions.iter().map(|&(i, t)| i * batch.seq + t).collect();
        let targets: Vec<Option<usize>> = positions
            .iter()
            .map(|&(i, t)| {
                (t + 1 < batch.lengths[i]).then(|| batch.ids[i * batch.seq + t + 1] as usize)
            })
            .collect();
        let unembed = self
            .cpu_path
            .applies(&finals[0])
            .then(|| {
                self.unembed
                    .clone()
                    .try_into_primitive::<burn::backend::Flex>()
                    .ok()
            })
            .flatten();
        let weight = unembed
            .as_ref()
            .and_then(|w| w.as_slice::<f32>())
            .filter(|w| w.len() == d * v);
        let stats = match weight {
            Some(w) => {
                let rows = finals
                    .iter()
                    .map(|f| gather_rows(f.clone().reshape([batch.batch * batch.seq, d]), &flat))
                    .collect::<Result<Vec<_>>>()?;
                blocked_stats(&rows, w, (d, v), &targets, (ROWS, COLS))
            }
            None => {
                let logits = finals
                    .iter()
                    .map(|f| {
                        let l = f
                            .clone()
                            .reshape([batch.batch * batch.seq, d])
                            .matmul(self.unembed.clone());
                        gather_rows(l, &flat)
                    })
                    .collect::<Result<Vec<_>>>()?;
                whole_row_stats(&logits, v, &targets)
            }
        };
        Ok(positions
            .iter()
            .zip(stats)
            .map(|(&(sequence, position), s)| s.scores(sequence, position))
            .collect())
    }
}

/// The rows `flat` of a `[rows, width]` tensor, on the host.
fn gather_rows(t: Tensor<2>, flat: &[usize]) -> Result<Vec<f32>> {
    let width = t.dims()[1];
    crate::cpu::on_host(t, |values| {
        let mut out = Vec::with_capacity(flat.len() * width);
        for &r in flat {
            out.extend_from_slice(&values[r * width..(r + 1) * width]);
        }
        out
    })
}

/// Rows per GEMM of the blocked unembedding, and vocabulary columns per block: one run's
/// block of logits (`ROWS × COLS` floats) stays in the core's cache between the GEMM that
/// writes it and the pass that reduces it.
const ROWS: usize = 256;
const COLS: usize = 1024;

/// Every row's statistics from the host unembedding `w: [d, v]`, one `block_rows × block_cols`
/// block of logits per run at a time, blocks spread over the cores and merged in column order
/// (the same result whatever the threads).
fn blocked_stats(
    rows: &[Vec<f32>],
    w: &[f32],
    (d, v): (usize, usize),
    targets: &[Option<usize>],
    (block_rows, block_cols): (usize, usize),
) -> Vec<RowStats> {
    let n = targets.len();
    let tasks: Vec<(usize, usize)> = (0..n)
        .step_by(block_rows)
        .flat_map(|r0| (0..v).step_by(block_cols).map(move |c0| (r0, c0)))
        .collect();
    let partials: Vec<Vec<RowStats>> = tasks
        .par_iter()
        .map_init(Scratch::default, |scratch, &(r0, c0)| {
            let (r, c) = (block_rows.min(n - r0), block_cols.min(v - c0));
            scratch.logits.resize(rows.len(), Vec::new());
            for (run, out) in rows.iter().zip(&mut scratch.logits) {
                out.resize(r * c, 0.0);
                matmul_serial(
                    View::new(&run[r0 * d..(r0 + r) * d], r, d),
                    View::strided_rows(&w[c0..], d, c, v),
                    out,
                    false,
                );
            }
            let blocks: Vec<&[f32]> = scratch.logits.iter().map(|l| &l[..r * c]).collect();
            block_stats(&blocks, c, c0, &targets[r0..r0 + r], &mut scratch.e)
        })
        .collect();
    // Tasks run row block by row block, columns in order within each.
    let per_row_block = v.div_ceil(block_cols);
    partials
        .chunks(per_row_block)
        .flat_map(|row_block| {
            let mut merged = row_block[0].clone();
            for later in &row_block[1..] {
                for (m, l) in merged.iter_mut().zip(later) {
                    m.merge(l);
                }
            }
            merged
        })
        .collect()
}

/// Every row's statistics from whole rows of logits (`[n, v]` per run), rows spread over the
/// cores.
fn whole_row_stats(logits: &[Vec<f32>], v: usize, targets: &[Option<usize>]) -> Vec<RowStats> {
    const CHUNK: usize = 16;
    let n = targets.len();
    (0..n)
        .into_par_iter()
        .step_by(CHUNK)
        .map_init(Vec::new, |e, r0| {
            let r = CHUNK.min(n - r0);
            let blocks: Vec<&[f32]> = logits.iter().map(|l| &l[r0 * v..(r0 + r) * v]).collect();
            block_stats(&blocks, v, 0, &targets[r0..r0 + r], e)
        })
        .flatten()
        .collect()
}

#[derive(Default)]
struct Scratch {
    logits: Vec<Vec<f32>>,
    e: Vec<f32>,
}

/// Softmax statistics of one row of each run's logits over the columns seen so far.
#[derive(Clone, Debug)]
struct RowStats {
    /// Per run: the largest logit seen.
    max: Vec<f64>,
    /// Per run: `Σ exp(x − max)`.
    sum: Vec<f64>,
    /// Per run: the next token's logit, once its column has been seen.
    target: Vec<Option<f64>>,
    /// Per run `k ≥ 1`: `Σ exp(x₀ − max₀) · (x₀ − x_k)`.
    cross: Vec<f64>,
    /// Whether the row has a next token at all.
    predicts: bool,
}

impl RowStats {
    /// Folds in the statistics of the same row over other columns.
    fn merge(&mut self, other: &RowStats) {
        for k in 0..self.max.len() {
            let max = self.max[k].max(other.max[k]);
            let (mine, theirs) = ((self.max[k] - max).exp(), (other.max[k] - max).exp());
            self.sum[k] = self.sum[k] * mine + other.sum[k] * theirs;
            if k == 0 {
                for (c, o) in self.cross.iter_mut().zip(&other.cross) {
                    *c = *c * mine + o * theirs;
                }
            }
            self.max[k] = max;
            self.target[k] = self.target[k].or(other.target[k]);
        }
    }

    fn scores(&self, sequence: usize, position: usize) -> PositionScores {
        let lse: Vec<f64> = self
            .max
            .iter()
            .zip(&self.sum)
            .map(|(m, s)| m + s.ln())
            .collect();
        let nll = self.predicts.then(|| {
            lse.iter()
                .zip(&self.target)
                .map(|(l, t)| l - t.unwrap_or(f64::NAN))
                .collect()
        });
        // KL(p₀ ‖ p_k) = Σ p₀ (x₀ − x_k) − lse₀ + lse_k.
        let kl = self
            .cross
            .iter()
            .zip(&lse[1..])
            .map(|(c, l)| c / self.sum[0] - lse[0] + l)
            .collect();
        PositionScores {
            sequence,
            position,
            nll,
            kl,
        }
    }
}

/// The statistics of each row of a block: `blocks[k]` is run `k`'s logits `[rows, cols]` for
/// vocabulary columns `col0..col0 + cols`; `e` is scratch.
fn block_stats(
    blocks: &[&[f32]],
    cols: usize,
    col0: usize,
    targets: &[Option<usize>],
    e: &mut Vec<f32>,
) -> Vec<RowStats> {
    e.resize(cols, 0.0);
    let runs = blocks.len();
    targets
        .iter()
        .enumerate()
        .map(|(r, &target)| {
            let row = |k: usize| &blocks[k][r * cols..(r + 1) * cols];
            let max: Vec<f64> = (0..runs).map(|k| row_max(row(k)) as f64).collect();
            let reference = row(0);
            let mut sum = vec![exp_into(reference, max[0] as f32, e)];
            sum.extend((1..runs).map(|k| exp_sum(row(k), max[k] as f32)));
            let cross = (1..runs)
                .map(|k| weighted_gap(e, reference, row(k)))
                .collect();
            let here = target.filter(|t| (col0..col0 + cols).contains(t));
            RowStats {
                max,
                sum,
                target: (0..runs)
                    .map(|k| here.map(|t| row(k)[t - col0] as f64))
                    .collect(),
                cross,
                predicts: target.is_some(),
            }
        })
        .collect()
}

const LANES: usize = 16;

simd_dispatch! {
    /// The largest value of a row (−∞ for an empty one).
    fn row_max(x: &[f32]) -> f32 => max_in_lanes
}

/// Elements per stretch summed in f32 lanes before the stretch's total joins an f64 sum, so that
/// no f32 sum runs over more than `STRETCH / LANES` terms.
const STRETCH: usize = 1024;

/// `Σ term(chunk)` over `LANES`-wide chunks of `0..len` (the tail's terms one at a time): the
/// terms are added in f32 lanes within each stretch and the stretches' totals in f64.
#[inline(always)]
fn lanes_sum(
    len: usize,
    mut chunk: impl FnMut(usize, &mut [f32; LANES]),
    tail: impl Fn(usize) -> f32,
) -> f64 {
    let full = len / LANES * LANES;
    let mut total = 0.0f64;
    for start in (0..full).step_by(STRETCH) {
        let mut lanes = [0.0f32; LANES];
        for base in (start..full.min(start + STRETCH)).step_by(LANES) {
            chunk(base, &mut lanes);
        }
        total += lanes.iter().map(|&l| l as f64).sum::<f64>();
    }
    total + (full..len).map(|i| tail(i) as f64).sum::<f64>()
}

simd_dispatch! {
    /// `Σ exp(x − max)`.
    fn exp_sum(x: &[f32], max: f32) -> f64 => exp_sum_body
}

#[inline(always)]
fn exp_sum_body(x: &[f32], max: f32) -> f64 {
    lanes_sum(
        x.len(),
        |base, lanes| {
            for (l, &v) in lanes.iter_mut().zip(&x[base..base + LANES]) {
                *l += exp(v - max);
            }
        },
        |i| exp(x[i] - max),
    )
}

simd_dispatch! {
    /// `e = exp(x − max)`, returning `Σ e`.
    fn exp_into(x: &[f32], max: f32, e: &mut [f32]) -> f64 => exp_into_body
}

#[inline(always)]
fn exp_into_body(x: &[f32], max: f32, e: &mut [f32]) -> f64 {
    let e = &mut e[..x.len()];
    for (o, &v) in e.iter_mut().zip(x) {
        *o = exp(v - max);
    }
    let e = &*e;
    lanes_sum(
        e.len(),
        |base, lanes| {
            for (l, &v) in lanes.iter_mut().zip(&e[base..base + LANES]) {
                *l += v;
            }
        },
        |i| e[i],
    )
}

simd_dispatch! {
    /// `Σ e · (x − y)`.
    fn weighted_gap(e: &[f32], x: &[f32], y: &[f32]) -> f64 => weighted_gap_body
}

#[inline(always)]
fn weighted_gap_body(e: &[f32], x: &[f32], y: &[f32]) -> f64 {
    let (x, y) = (&x[..e.len()], &y[..e.len()]);
    lanes_sum(
        e.len(),
        |base, lanes| {
            let (e, x, y) = (
                &e[base..base + LANES],
                &x[base..base + LANES],
                &y[base..base + LANES],
            );
            for (l, ((&e, &x), &y)) in lanes.iter_mut().zip(e.iter().zip(x).zip(y)) {
                *l += e * (x - y);
            }
        },
        |i| e[i] * (x[i] - y[i]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per row: each run's NLL of `target` and KL(run 0 ‖ run k), in f64 from the definitions.
    fn by_definition(logits: &[Vec<f64>], target: Option<usize>) -> (Option<Vec<f64>>, Vec<f64>) {
        let log_softmax = |x: &[f64]| -> Vec<f64> {
            let m = x.iter().fold(f64::MIN, |a, &b| a.max(b));
            let lse = m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            x.iter().map(|v| v - lse).collect()
        };
        let lp: Vec<Vec<f64>> = logits.iter().map(|x| log_softmax(x)).collect();
        let nll = target.map(|t| lp.iter().map(|l| -l[t]).collect());
        let kl = lp[1..]
            .iter()
            .map(|q| lp[0].iter().zip(q).map(|(p, q)| p.exp() * (p - q)).sum())
            .collect();
        (nll, kl)
    }

    /// The blocked unembedding (blocks that split rows and the vocabulary unevenly, targets in
    /// different blocks, a row without one) and the whole-row path both equal the f64
    /// definitions; a wrong rescaling when a later block holds a larger logit, a target taken
    /// from the wrong block or a cross term merged with the wrong run's maximum would not.
    #[test]
    fn blocked_and_whole_row_scoring_equal_the_definitions() {
        let (n, d, v, runs) = (11, 5, 37, 3);
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 6.0
        };
        let w: Vec<f32> = (0..d * v).map(|_| next()).collect();
        let rows: Vec<Vec<f32>> = (0..runs)
            .map(|_| (0..n * d).map(|_| next()).collect())
            .collect();
        let targets: Vec<Option<usize>> = (0..n).map(|r| (r != 4).then_some((r * 7) % v)).collect();
        let logits: Vec<Vec<f32>> = rows
            .iter()
            .map(|x| prism_core::dense::matmul_new(View::new(x, n, d), View::new(&w, d, v)))
            .collect();
        let blocked = blocked_stats(&rows, &w, (d, v), &targets, (3, 7));
        let whole = whole_row_stats(&logits, v, &targets);
        for r in 0..n {
            let row: Vec<Vec<f64>> = logits
                .iter()
                .map(|l| l[r * v..(r + 1) * v].iter().map(|&x| x as f64).collect())
                .collect();
            let (nll, kl) = by_definition(&row, targets[r]);
            for got in [blocked[r].scores(0, r), whole[r].scores(0, r)] {
                assert_eq!(got.nll.is_some(), nll.is_some());
                for (a, b) in got.nll.iter().flatten().zip(nll.iter().flatten()) {
                    assert!(
                        (a - b).abs() < 1e-5 * b.abs().max(1.0),
                        "row {r} nll {a} vs {b}"
                    );
                }
                for (a, b) in got.kl.iter().zip(&kl) {
                    assert!(
                        (a - b).abs() < 1e-5 * b.abs().max(1.0),
                        "row {r} kl {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_vector_kernels_equal_their_scalar_definitions() {
        let x: Vec<f32> = (0..1500)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let y: Vec<f32> = x.iter().map(|v| v * 0.9 + 0.1).collect();
        let max = row_max(&x);
        assert_eq!(max, x.iter().copied().fold(f32::MIN, f32::max));
        let sum: f64 = x.iter().map(|&v| ((v - max) as f64).exp()).sum();
        assert!((exp_sum(&x, max) - sum).abs() < 1e-5 * sum);
        let mut e = vec![0.0; x.len()];
        assert!((exp_into(&x, max, &mut e) - sum).abs() < 1e-5 * sum);
        let gap: f64 = x
            .iter()
            .zip(&y)
            .map(|(&a, &b)| ((a - max) as f64).exp() * (a - b) as f64)
            .sum();
        assert!((weighted_gap(&e, &x, &y) - gap).abs() < 1e-5 * gap.abs());
    }
}
