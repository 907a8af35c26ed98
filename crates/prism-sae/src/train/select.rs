//! Selecting codes from pre-activations on the host: ReLU-style thresholds, each row's top k,
//! and the batch's top k — the selections the architectures' host passes share.

use rayon::prelude::*;

use crate::kernel::Csr;

/// Which entries a threshold selection keeps (besides requiring `a + b > 0`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cut<'a> {
    /// `a + b ≥ floor` for every feature (ReLU and Gated: 0; BatchTopK: the batch's cut-off).
    AtLeast(f32),
    /// `a + b > threshold[j]` (JumpReLU).
    Above(&'a [f32]),
}

/// Entries with `a + b > 0` that pass `cut`, valued `a + b`, in column order per row.
pub(crate) fn threshold_rows(a: &[f32], b: &[f32], n: usize, m: usize, cut: Cut<'_>) -> Csr {
    let rows = (0..n)
        .into_par_iter()
        .map(|r| {
            let row = &a[r * m..][..m];
            match cut {
                Cut::AtLeast(floor) => positive_at_or_above(row, b, floor),
                Cut::Above(theta) => (0..m)
                    .filter_map(|j| {
                        let v = row[j] + b[j];
                        (v > 0.0 && v > theta[j]).then_some((j as u32, v))
                    })
                    .collect(),
            }
        })
        .collect();
    Csr::from_rows(m, rows)
}

/// Per row of `a` (`[n, m]`), the `k` largest positive `a + b` (only among `allowed` features
/// when given): the TopK encoder's selection. Ties break toward the lower index, so the
/// selection is deterministic.
///
/// ```
/// use prism_sae::train::top_k_rows;
/// let a = [0.5, -1.0, 2.0, 0.1, /* row 1 */ 3.0, 1.0, -2.0, 1.0];
/// let codes = top_k_rows(&a, &[0.0, 0.0, 0.0, -0.5], 2, 4, 2, None);
/// assert_eq!(codes.idx, [0, 2, 0, 1]); // row 0: 2.0 and 0.5; row 1: 3.0 and 1.0 (not 1.0 − 0.5)
/// assert_eq!(codes.val, [0.5, 2.0, 3.0, 1.0]);
/// ```
pub fn top_k_rows(
    a: &[f32],
    b: &[f32],
    n: usize,
    m: usize,
    k: usize,
    allowed: Option<&[bool]>,
) -> Csr {
    let rows = (0..n)
        .into_par_iter()
        .map_init(Vec::new, |maxima, r| {
            let row = &a[r * m..][..m];
            // Entries below a lower bound on the k-th largest cannot be selected: skipping them
            // leaves a few dozen candidates instead of every positive entry.
            let mut cand: Vec<(u32, f32)> = match allowed {
                None => {
                    let floor = kth_lower_bound(row, b, k, maxima).unwrap_or(f32::NEG_INFINITY);
                    positive_at_or_above(row, b, floor)
                }
                Some(al) => (0..m)
                    .filter(|&j| al[j])
                    .map(|j| (j as u32, row[j] + b[j]))
                    .filter(|e| e.1 > 0.0)
                    .collect(),
            };
            if cand.len() > k {
                let order =
                    |x: &(u32, f32), y: &(u32, f32)| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0));
                if k > 0 {
                    cand.select_nth_unstable_by(k - 1, order);
                }
                cand.truncate(k);
            }
            cand
        })
        .collect();
    Csr::from_rows(m, rows)
}

/// A lower bound on the `k`-th largest `row[j] + b[j]`: the `k`-th largest of the maxima of
/// disjoint groups of entries (each lane's maximum over a stretch of 256 entries, 16 lanes; the
/// tail's entries are groups of one). `k` groups with maxima at or above it hold `k` distinct
/// entries that are, so the `k`-th largest entry is too. `None` when there are fewer than `k`
/// groups (or `k` is 0).
fn kth_lower_bound(row: &[f32], b: &[f32], k: usize, maxima: &mut Vec<f32>) -> Option<f32> {
    maxima.clear();
    group_maxima(row, b, maxima);
    // NaN is never selected; as −∞ it cannot raise the bound.
    let finite_or_low = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
    let full = row.len() / STRETCH * STRETCH;
    maxima.extend(
        row[full..]
            .iter()
            .zip(&b[full..])
            .map(|(a, b)| finite_or_low(a + b)),
    );
    if k == 0 || maxima.len() < k {
        return None;
    }
    Some(
        *maxima
            .select_nth_unstable_by(k - 1, |x, y| y.total_cmp(x))
            .1,
    )
}

const LANES: usize = 16;
const STRETCH: usize = 256;

prism_core::simd_dispatch! {
    /// Appends to `maxima` each lane's maximum of `row + b` over each whole stretch of 256.
    fn group_maxima(row: &[f32], b: &[f32], maxima: &mut Vec<f32>) => group_maxima_body
}

#[inline(always)]
fn group_maxima_body(row: &[f32], b: &[f32], maxima: &mut Vec<f32>) {
    let full = row.len() / STRETCH * STRETCH;
    for (a, b) in row[..full]
        .chunks_exact(STRETCH)
        .zip(b[..full].chunks_exact(STRETCH))
    {
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let (a, _) = a.as_chunks::<LANES>();
        let (b, _) = b.as_chunks::<LANES>();
        for (a, b) in a.iter().zip(b) {
            // One vector max per stretch of 16 (`f32::max`'s NaN rule made LLVM gather
            // across stretches instead); a NaN sum compares false and leaves the lane as it was.
            for i in 0..LANES {
                let v = a[i] + b[i];
                lanes[i] = if v > lanes[i] { v } else { lanes[i] };
            }
        }
        maxima.extend_from_slice(&lanes);
    }
}

prism_core::simd_dispatch! {
    /// The entries `(j, row[j] + b[j])` that are positive and at least `floor`, in column order.
    /// A stretch of 16 is first tested as a whole (a comparison that vectorises), so a floor near
    /// the top of the row costs one pass of vector compares.
    fn positive_at_or_above(row: &[f32], b: &[f32], floor: f32) -> Vec<(u32, f32)> => positive_at_or_above_body
}

#[inline(always)]
fn positive_at_or_above_body(row: &[f32], b: &[f32], floor: f32) -> Vec<(u32, f32)> {
    let mut out = Vec::new();
    let mut keep = |j: usize, v: f32| {
        if v > 0.0 && v >= floor {
            out.push((j as u32, v));
        }
    };
    let full = row.len() / LANES * LANES;
    for (c, (a, b)) in row[..full]
        .chunks_exact(LANES)
        .zip(b[..full].chunks_exact(LANES))
        .enumerate()
    {
        let mut hit = false;
        for (&a, &b) in a.iter().zip(b) {
            hit |= a + b >= floor;
        }
        if hit {
            for (i, (&a, &b)) in a.iter().zip(b).enumerate() {
                keep(c * LANES + i, a + b);
            }
        }
    }
    for j in full..row.len() {
        keep(j, row[j] + b[j]);
    }
    out
}

/// The `total` largest positive `a + b` over the whole batch; returns them and the smallest.
pub(crate) fn batch_top_k(
    a: &[f32],
    b: &[f32],
    n: usize,
    m: usize,
    total: usize,
) -> (Csr, Option<f32>) {
    let mut positive: Vec<f32> = a
        .par_chunks(m)
        .flat_map_iter(|row| row.iter().zip(b).map(|(a, b)| a + b).filter(|&v| v > 0.0))
        .collect();
    if positive.is_empty() || total == 0 {
        return (Csr::from_rows(m, vec![Vec::new(); n]), None);
    }
    let cut = if positive.len() > total {
        *positive
            .select_nth_unstable_by(total - 1, |x, y| y.total_cmp(x))
            .1
    } else {
        positive.iter().copied().fold(f32::INFINITY, f32::min)
    };
    (threshold_rows(a, b, n, m, Cut::AtLeast(cut)), Some(cut))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pre-filtered selections equal their definitions — TopK a full sort (value descending,
    /// lower index first among ties, positive values only), thresholds a plain filter — on rows
    /// with a tail past the last whole stretch, many tied values, fewer positive entries than
    /// `k`, and NaNs; a bound above the true k-th value, or a stretch test that skips a stretch
    /// holding an entry, would drop entries and fail this.
    #[test]
    fn top_k_and_threshold_rows_equal_their_definitions() {
        let (n, m) = (24, 2 * 256 + 37);
        let mut seed = 3u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 24) as f32
        };
        let mut a: Vec<f32> = (0..n * m).map(|_| next() * 4.0 - 2.0).collect();
        let b: Vec<f32> = (0..m).map(|_| next() - 0.5).collect();
        for r in 0..n {
            let row = &mut a[r * m..(r + 1) * m];
            match r % 4 {
                // Ties: values on a coarse grid.
                1 => row.iter_mut().for_each(|v| *v = (*v * 2.0).round()),
                // Few positive entries.
                2 => row.iter_mut().for_each(|v| *v -= 2.4),
                3 => row.iter_mut().step_by(7).for_each(|v| *v = f32::NAN),
                _ => {}
            }
        }
        // Thresholds (ReLU's 0, BatchTopK's cut-off, JumpReLU's per-feature cut-offs) against
        // the definition.
        let cuts: Vec<f32> = (0..m).map(|j| (j % 5) as f32 * 0.3 - 0.4).collect();
        let kept = |cut: Cut<'_>, j: usize, v: f32| {
            v > 0.0
                && match cut {
                    Cut::AtLeast(floor) => v >= floor,
                    Cut::Above(theta) => v > theta[j],
                }
        };
        for cut in [Cut::AtLeast(0.0), Cut::AtLeast(0.7), Cut::Above(&cuts)] {
            let got = threshold_rows(&a, &b, n, m, cut);
            for r in 0..n {
                let want: Vec<(u32, f32)> = (0..m)
                    .map(|j| (j as u32, a[r * m + j] + b[j]))
                    .filter(|&(j, v)| kept(cut, j as usize, v))
                    .collect();
                let (idx, val) = got.row(r);
                let have: Vec<(u32, f32)> = idx.iter().copied().zip(val.iter().copied()).collect();
                assert_eq!(have, want, "row {r} {cut:?}");
            }
        }
        for k in [1, 5, 32, 200] {
            let got = top_k_rows(&a, &b, n, m, k, None);
            for r in 0..n {
                let mut all: Vec<(u32, f32)> = (0..m)
                    .map(|j| (j as u32, a[r * m + j] + b[j]))
                    .filter(|e| e.1 > 0.0)
                    .collect();
                all.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
                all.truncate(k);
                let mut want: Vec<u32> = all.iter().map(|e| e.0).collect();
                want.sort_unstable();
                let mut have = got.row(r).0.to_vec();
                have.sort_unstable();
                assert_eq!(have, want, "row {r}, k {k}");
            }
        }
    }
}
