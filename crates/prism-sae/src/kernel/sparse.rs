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

/// Density of the codes above which dense GEMM beats the sparse loops: with the blocked loops
/// they break even at 17–18 % (measured with `examples/bench_train.rs --kernel sparse|dense` at
/// d = 512, m = 8192, batch 4096 and at d = 576, m = 4608, batch 1024; docs/BENCHMARKS.md).
pub const DENSE_ABOVE: f64 = 0.15;

impl KernelMode {
    /// Whether the products take the dense GEMM for codes of this density.
    ///
    /// ```
    /// use prism_sae::kernel::{DENSE_ABOVE, KernelMode};
    /// assert!(!KernelMode::Auto.dense_at(DENSE_ABOVE / 2.0));
    /// assert!(KernelMode::Auto.dense_at(2.0 * DENSE_ABOVE) && KernelMode::Dense.dense_at(0.0));
    /// ```
    pub fn dense_at(self, density: f64) -> bool {
        match self {
            KernelMode::Auto => density > DENSE_ABOVE,
            KernelMode::Sparse => false,
            KernelMode::Dense => true,
        }
    }

    fn dense_for(self, codes: &Csr) -> bool {
        self.dense_at(codes.density())
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

/// Output rows per parallel task in the sparse products. A task walks its rows' entries one
/// block of columns at a time ([`block_columns`]), so the right-hand rows of a block are read
/// from memory once per task and then from the core's L2 cache by every row of the task.
const ROWS_PER_TASK: usize = 128;

/// Right-hand rows per column block: about 512 KiB of them, so that a block and a task's
/// output rows fit in L2 together.
fn block_columns(d: usize) -> usize {
    ((512 << 10) / (4 * d.max(1))).max(16)
}

/// Walks the entries of rows `first..first + len` of a [`Csr`] one block of columns at a time.
/// Each row's cursor only moves forward, so its entries come in their stored order whatever the
/// blocking (a sum over them is the same as without it); the last block ends at `cols`, past
/// every column, so it takes whatever an earlier block left (entries out of column order).
struct ColumnBlocks<'a> {
    a: &'a Csr,
    first: usize,
    width: usize,
    /// Each row's next entry.
    cursor: Vec<usize>,
    /// The current block's end column.
    end: usize,
}

impl<'a> ColumnBlocks<'a> {
    #[inline(always)]
    fn new(a: &'a Csr, first: usize, len: usize, width: usize) -> Self {
        Self {
            a,
            first,
            width,
            cursor: a.indptr[first..first + len].to_vec(),
            end: 0,
        }
    }

    /// Moves to the next block; false after the last.
    #[inline(always)]
    fn advance(&mut self) -> bool {
        if self.end >= self.a.cols {
            return false;
        }
        self.end = (self.end + self.width).min(self.a.cols);
        true
    }

    /// Row `first + i`'s entries in the current block.
    #[inline(always)]
    fn entries(&mut self, i: usize) -> std::ops::Range<usize> {
        let stop = self.a.indptr[self.first + i + 1];
        let start = self.cursor[i];
        let mut e = start;
        while e < stop && (self.a.idx[e] as usize) < self.end {
            e += 1;
        }
        self.cursor[i] = e;
        start..e
    }
}

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
    let len = (first + ROWS_PER_TASK).min(codes.rows) - first;
    let base = codes.indptr[first];
    let mut blocks = ColumnBlocks::new(codes, first, len, block_columns(d));
    while blocks.advance() {
        for i in 0..len {
            let gr = &g[(first + i) * d..][..d];
            for e in blocks.entries(i) {
                piece[e - base] = dot(gr, &w[codes.idx[e] as usize * d..][..d]);
            }
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
/// owns whole output rows and adds each row's entries in stored order, so the sums never depend
/// on thread scheduling or on the blocking.
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
    let len = chunk.len() / d;
    let mut blocks = ColumnBlocks::new(a, first, len, block_columns(d));
    while blocks.advance() {
        for (i, o) in chunk.chunks_mut(d).enumerate() {
            let e = blocks.entries(i);
            add_scaled_rows(o, &a.idx[e.clone()], &a.val[e], right, d);
        }
    }
}

/// `out += Σ_e vals[e] · right[idx[e], :]`, each element's terms added in entry order (the same
/// sums as one [`axpy`] per entry), a stretch of `out` at a time held in registers.
#[inline(always)]
fn add_scaled_rows(out: &mut [f32], idx: &[u32], vals: &[f32], right: &[f32], d: usize) {
    const STRETCH: usize = 128;
    if idx.is_empty() {
        return;
    }
    let whole = d / STRETCH * STRETCH;
    for c in (0..whole).step_by(STRETCH) {
        let mut acc = [0f32; STRETCH];
        acc.copy_from_slice(&out[c..c + STRETCH]);
        for (&j, &v) in idx.iter().zip(vals) {
            let r = &right[j as usize * d + c..][..STRETCH];
            for l in 0..STRETCH {
                acc[l] += v * r[l];
            }
        }
        out[c..c + STRETCH].copy_from_slice(&acc);
    }
    if whole < d {
        for (&j, &v) in idx.iter().zip(vals) {
            axpy(
                v,
                &right[j as usize * d + whole..][..d - whole],
                &mut out[whole..],
            );
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

    /// With several tasks, several column blocks, a width that is no multiple of the register
    /// stretch and a row whose entries are out of column order, the blocked sparse products
    /// equal plain loops over the entries in stored order bit for bit: a block that skipped
    /// entries, or visited them out of order, would change the sums.
    #[test]
    fn blocked_products_equal_plain_loops_bit_for_bit() {
        let (rows, cols, d) = (300, 2000, 203);
        assert!(block_columns(d) * 2 < cols && ROWS_PER_TASK * 2 < rows);
        let mut codes = sample(rows, cols, 23);
        // Row 7 out of order: its entries must still all be used, in stored order.
        let (s, e) = (codes.indptr[7], codes.indptr[8]);
        codes.idx[s..e].reverse();
        codes.val[s..e].reverse();
        let w: Vec<f32> = (0..cols * d)
            .map(|i| ((i * 7 % 41) as f32 - 20.0) / 13.0)
            .collect();
        let g: Vec<f32> = (0..rows * d)
            .map(|i| ((i * 5 % 37) as f32 - 18.0) / 11.0)
            .collect();

        let mut want = vec![0.5f32; rows * d];
        for r in 0..rows {
            let (idx, val) = codes.row(r);
            for (&j, &v) in idx.iter().zip(val) {
                for i in 0..d {
                    want[r * d + i] += v * w[j as usize * d + i];
                }
            }
        }
        let mut got = vec![0.5f32; rows * d];
        decode_into(&codes, &w, d, &mut got, KernelMode::Sparse);
        assert!(got == want, "decode differs");

        let want: Vec<f32> = (0..rows)
            .flat_map(|r| {
                let (idx, _) = codes.row(r);
                idx.iter()
                    .map(|&j| dot(&g[r * d..][..d], &w[j as usize * d..][..d]))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            entry_dots(&codes, &g, &w, d, KernelMode::Sparse) == want,
            "entry dots differ"
        );

        // codesᵀ · g: each output row sums its entries in ascending token order (the transpose's).
        let mut want = vec![0.25f32; cols * d];
        for r in 0..rows {
            let (idx, val) = codes.row(r);
            for (&j, &v) in idx.iter().zip(val) {
                for i in 0..d {
                    want[j as usize * d + i] += v * g[r * d + i];
                }
            }
        }
        let mut got = vec![0.25f32; cols * d];
        transpose_times_into(&codes, &g, d, &mut got, KernelMode::Sparse);
        assert!(got == want, "transposed product differs");
    }
}
