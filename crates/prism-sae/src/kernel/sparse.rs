//! Sparse codes (compressed rows) and the three products training needs from them, each with a
//! sparse implementation (work ∝ active latents) and a dense one on GEMM; [`KernelMode`] picks.

use rayon::prelude::*;

use prism_core::dense::{View, matmul};

/// Which implementation the code products use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelMode {
    /// Sparse below [`DENSE_ABOVE`] density, dense GEMM above it.
    #[default]
    Auto,
    /// Always the sparse loops.
    Sparse,
    /// Always dense GEMM (the reference the sparse path is tested against).
    Dense,
}

/// Density of the codes above which dense GEMM beats the sparse loops (measured with
/// `examples/bench_train.rs` on d = 512, m = 8192).
pub const DENSE_ABOVE: f64 = 0.06;

impl KernelMode {
    fn dense_for(self, codes: &Csr) -> bool {
        match self {
            KernelMode::Auto => codes.density() > DENSE_ABOVE,
            KernelMode::Sparse => false,
            KernelMode::Dense => true,
        }
    }
}

/// A sparse `[rows, cols]` matrix in compressed-row form; column indices ascend within a row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Csr {
    /// Number of rows (tokens).
    pub rows: usize,
    /// Number of columns (latents).
    pub cols: usize,
    /// Row `r` holds entries `indptr[r]..indptr[r + 1]`.
    pub indptr: Vec<usize>,
    /// Column of each entry.
    pub idx: Vec<u32>,
    /// Value of each entry.
    pub val: Vec<f32>,
}

impl Csr {
    /// Builds from per-row `(column, value)` lists (sorted here).
    pub fn from_rows(cols: usize, rows: Vec<Vec<(u32, f32)>>) -> Self {
        let mut out = Csr {
            rows: rows.len(),
            cols,
            indptr: Vec::with_capacity(rows.len() + 1),
            idx: Vec::new(),
            val: Vec::new(),
        };
        out.indptr.push(0);
        for mut r in rows {
            r.sort_unstable_by_key(|e| e.0);
            for (j, v) in r {
                out.idx.push(j);
                out.val.push(v);
            }
            out.indptr.push(out.idx.len());
        }
        out
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.idx.len()
    }

    /// Stored entries per cell.
    pub fn density(&self) -> f64 {
        self.nnz() as f64 / (self.rows * self.cols).max(1) as f64
    }

    /// Row `r`'s columns and values.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let s = self.indptr[r]..self.indptr[r + 1];
        (&self.idx[s.clone()], &self.val[s])
    }

    /// The same pattern with other values.
    pub fn with_values(&self, val: Vec<f32>) -> Csr {
        assert_eq!(val.len(), self.nnz());
        Csr {
            val,
            ..self.clone()
        }
    }

    /// Row-major dense copy (repeated entries add up, as in the sparse products).
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        for r in 0..self.rows {
            let (idx, val) = self.row(r);
            for (&j, &v) in idx.iter().zip(val) {
                out[r * self.cols + j as usize] += v;
            }
        }
        out
    }

    /// The transpose (compressed columns of `self`), row indices ascending within each column.
    pub fn transpose(&self) -> Csr {
        let mut counts = vec![0usize; self.cols + 1];
        for &j in &self.idx {
            counts[j as usize + 1] += 1;
        }
        for j in 0..self.cols {
            counts[j + 1] += counts[j];
        }
        let indptr = counts.clone();
        let mut next = counts;
        let mut idx = vec![0u32; self.nnz()];
        let mut val = vec![0f32; self.nnz()];
        for r in 0..self.rows {
            let (cols, vals) = self.row(r);
            for (&j, &v) in cols.iter().zip(vals) {
                let at = &mut next[j as usize];
                idx[*at] = r as u32;
                val[*at] = v;
                *at += 1;
            }
        }
        Csr {
            rows: self.cols,
            cols: self.rows,
            indptr,
            idx,
            val,
        }
    }
}

/// Rows per parallel task in the row loops.
const ROWS_PER_TASK: usize = 16;

/// `out[r, :] += Σ_j codes[r, j] · w[j, :]` — decoding, `out` `[rows, d]`, `w` `[cols, d]`.
pub fn decode_into(codes: &Csr, w: &[f32], d: usize, out: &mut [f32], mode: KernelMode) {
    assert_eq!(w.len(), codes.cols * d);
    assert_eq!(out.len(), codes.rows * d);
    if mode.dense_for(codes) {
        let dense = codes.to_dense();
        matmul(
            View::new(&dense, codes.rows, codes.cols),
            View::new(w, codes.cols, d),
            out,
            true,
        );
        return;
    }
    sparse_times_into(codes, w, d, out);
}

/// For every stored entry `(r, j)`: `g[r, :] · w[j, :]` — the gradient reaching a code from
/// the gradient `g` `[rows, d]` of its reconstruction.
pub fn entry_dots(codes: &Csr, g: &[f32], w: &[f32], d: usize, mode: KernelMode) -> Vec<f32> {
    assert_eq!(g.len(), codes.rows * d);
    assert_eq!(w.len(), codes.cols * d);
    let mut out = vec![0f32; codes.nnz()];
    if mode.dense_for(codes) {
        let mut full = vec![0f32; codes.rows * codes.cols];
        matmul(
            View::new(g, codes.rows, d),
            View::new(w, codes.cols, d).t(),
            &mut full,
            false,
        );
        for r in 0..codes.rows {
            for e in codes.indptr[r]..codes.indptr[r + 1] {
                out[e] = full[r * codes.cols + codes.idx[e] as usize];
            }
        }
        return out;
    }
    // Split the output at row boundaries so that each task owns whole rows.
    let mut pieces: Vec<(usize, &mut [f32])> = Vec::new();
    let mut rest = out.as_mut_slice();
    let mut r = 0;
    while r < codes.rows {
        let end = (r + ROWS_PER_TASK).min(codes.rows);
        let len = codes.indptr[end] - codes.indptr[r];
        let (head, tail) = rest.split_at_mut(len);
        pieces.push((r, head));
        rest = tail;
        r = end;
    }
    pieces
        .into_par_iter()
        .for_each(|(first, piece)| entry_dots_rows(codes, g, w, d, first, piece));
    out
}

prism_core::simd_dispatch! {
    /// [`entry_dots`] for the rows `first..` whose entries `piece` holds.
    fn entry_dots_rows(codes: &Csr, g: &[f32], w: &[f32], d: usize, first: usize, piece: &mut [f32]) => entry_dots_rows_body
}

#[inline(always)]
fn entry_dots_rows_body(
    codes: &Csr,
    g: &[f32],
    w: &[f32],
    d: usize,
    first: usize,
    piece: &mut [f32],
) {
    let mut at = 0;
    for r in first..(first + ROWS_PER_TASK).min(codes.rows) {
        let gr = &g[r * d..][..d];
        let (idx, _) = codes.row(r);
        for &j in idx {
            piece[at] = dot(gr, &w[j as usize * d..][..d]);
            at += 1;
        }
    }
}

/// `out[j, :] += Σ_r codes[r, j] · rows[r, :]` — `codesᵀ · rows`, `out` `[cols, d]`: the
/// gradient of decoder rows (rows = reconstruction gradient) or encoder rows (rows = inputs).
pub fn transpose_times_into(
    codes: &Csr,
    rows: &[f32],
    d: usize,
    out: &mut [f32],
    mode: KernelMode,
) {
    assert_eq!(rows.len(), codes.rows * d);
    assert_eq!(out.len(), codes.cols * d);
    if mode.dense_for(codes) {
        let dense = codes.to_dense();
        matmul(
            View::new(&dense, codes.rows, codes.cols).t(),
            View::new(rows, codes.rows, d),
            out,
            true,
        );
        return;
    }
    sparse_times_into(&codes.transpose(), rows, d, out);
}

/// `out += a · right` for sparse `a` `[r, c]` and dense row-major `right` `[c, d]`; each task
/// owns whole output rows, so the sums never depend on thread scheduling.
fn sparse_times_into(a: &Csr, right: &[f32], d: usize, out: &mut [f32]) {
    out.par_chunks_mut(d * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(task, chunk)| sparse_rows(a, right, d, chunk, task * ROWS_PER_TASK));
}

prism_core::simd_dispatch! {
    /// [`sparse_times_into`] for the output rows `first..` that `chunk` holds.
    fn sparse_rows(a: &Csr, right: &[f32], d: usize, chunk: &mut [f32], first: usize) => sparse_rows_body
}

#[inline(always)]
fn sparse_rows_body(a: &Csr, right: &[f32], d: usize, chunk: &mut [f32], first: usize) {
    for (i, o) in chunk.chunks_mut(d).enumerate() {
        let (idx, val) = a.row(first + i);
        for (&j, &v) in idx.iter().zip(val) {
            axpy(v, &right[j as usize * d..][..d], o);
        }
    }
}

/// `y += a · x`.
#[inline(always)]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `x · y`, summed in 8 lanes so the compiler vectorises it.
#[inline(always)]
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (xc, xr) = x.split_at(x.len() / 8 * 8);
    let (yc, yr) = y.split_at(xc.len());
    for (a, b) in xc.chunks_exact(8).zip(yc.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += a[l] * b[l];
        }
    }
    let tail: f32 = xr.iter().zip(yr).map(|(a, b)| a * b).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rows: usize, cols: usize, every: usize) -> Csr {
        Csr::from_rows(
            cols,
            (0..rows)
                .map(|r| {
                    (0..cols)
                        .filter(|j| (r * 31 + j * 17) % every == 0)
                        .map(|j| (j as u32, ((r + 2 * j) % 7) as f32 - 3.0))
                        .collect()
                })
                .collect(),
        )
    }

    #[test]
    fn sparse_and_dense_products_agree() {
        let (rows, cols, d) = (70, 45, 33);
        let codes = sample(rows, cols, 5);
        assert!(codes.nnz() > 0 && codes.density() < 0.5);
        let w: Vec<f32> = (0..cols * d)
            .map(|i| ((i % 19) as f32 - 9.0) / 7.0)
            .collect();
        let g: Vec<f32> = (0..rows * d)
            .map(|i| ((i % 23) as f32 - 11.0) / 5.0)
            .collect();
        let close = |a: &[f32], b: &[f32]| {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
            }
        };
        let mut dec = [vec![0f32; rows * d], vec![0f32; rows * d]];
        decode_into(&codes, &w, d, &mut dec[0], KernelMode::Sparse);
        decode_into(&codes, &w, d, &mut dec[1], KernelMode::Dense);
        close(&dec[0], &dec[1]);
        close(
            &entry_dots(&codes, &g, &w, d, KernelMode::Sparse),
            &entry_dots(&codes, &g, &w, d, KernelMode::Dense),
        );
        let mut tt = [vec![1f32; cols * d], vec![1f32; cols * d]];
        transpose_times_into(&codes, &g, d, &mut tt[0], KernelMode::Sparse);
        transpose_times_into(&codes, &g, d, &mut tt[1], KernelMode::Dense);
        close(&tt[0], &tt[1]);
        // And against the definition, entry by entry.
        let dense = codes.to_dense();
        let want: f32 = (0..rows).map(|r| dense[r * cols + 4] * g[r * d + 2]).sum();
        assert!((tt[0][4 * d + 2] - 1.0 - want).abs() < 1e-4);
        assert_eq!(codes.transpose().transpose(), codes);
    }
}
