//! Dense matrix products on the `gemm` crate (the same GEMM burn's flex backend builds on),
//! called directly on host slices so that transposes and column blocks are strides, not copies.
//! Dictionary training's host kernels and the forward pass's fused attention use it.

use gemm::{Parallelism, gemm};

/// A read-only strided view of an f32 matrix.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

impl<'a> View<'a> {
    /// A matrix whose row `i` starts at `data[i · row_stride]` with unit column stride: a
    /// row-major block of columns inside a wider row-major matrix (one head's slice of a fused
    /// q|k|v projection).
    ///
    /// ```
    /// use prism_core::dense::{View, matmul};
    /// let wide = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [[1, 2, 3], [4, 5, 6]]
    /// let right = View::strided_rows(&wide[1..], 2, 2, 3); // [[2, 3], [5, 6]]
    /// let mut out = [0.0; 4];
    /// matmul(right, View::new(&[1.0, 0.0, 0.0, 1.0], 2, 2), &mut out, false);
    /// assert_eq!(out, [2.0, 3.0, 5.0, 6.0]);
    /// ```
    pub fn strided_rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        assert!(
            rows == 0 || (cols <= row_stride && (rows - 1) * row_stride + cols <= data.len()),
            "strided rows run past their data"
        );
        Self {
            data,
            rows,
            cols,
            row_stride: row_stride as isize,
            col_stride: 1,
        }
    }

    /// A row-major `[rows, cols]` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "matrix data does not match its shape"
        );
        Self {
            data,
            rows,
            cols,
            row_stride: cols as isize,
            col_stride: 1,
        }
    }

    /// The transpose, as a view of the same memory.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// `out = a · b` (or `out += a · b` when `accumulate`), `out` row-major `[a.rows, b.cols]`.
///
/// ```
/// use prism_core::dense::{View, matmul};
/// let a = [1.0, 2.0, 3.0, 4.0]; // [[1, 2], [3, 4]]
/// let mut out = [0.0; 4];
/// matmul(View::new(&a, 2, 2), View::new(&a, 2, 2).t(), &mut out, false); // a · aᵀ
/// assert_eq!(out, [5.0, 11.0, 11.0, 25.0]);
/// ```
pub fn matmul(a: View<'_>, b: View<'_>, out: &mut [f32], accumulate: bool) {
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    product(a, b, out, accumulate, parallelism);
}

/// [`matmul`] on the calling thread only: for products inside work already split over the
/// cores (one attention head per task).
///
/// ```
/// use prism_core::dense::{View, matmul_serial};
/// let a = [1.0, 2.0]; // [[1, 2]]
/// let mut out = [0.0; 1];
/// matmul_serial(View::new(&a, 1, 2), View::new(&a, 1, 2).t(), &mut out, false);
/// assert_eq!(out, [5.0]);
/// ```
pub fn matmul_serial(a: View<'_>, b: View<'_>, out: &mut [f32], accumulate: bool) {
    product(a, b, out, accumulate, Parallelism::None);
}

fn product(a: View<'_>, b: View<'_>, out: &mut [f32], accumulate: bool, parallelism: Parallelism) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    assert_eq!(
        out.len(),
        a.rows * b.cols,
        "output does not match the product"
    );
    if a.cols == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    // SAFETY: `out` holds exactly `a.rows × b.cols` initialised elements and is borrowed
    // mutably (so it overlaps neither input).
    unsafe { gemm_into(a, b, out.as_mut_ptr(), accumulate, parallelism) };
}

/// `a · b` into a new row-major `[a.rows, b.cols]` buffer, on the rayon pool like [`matmul`],
/// without first zeroing it (the GEMM writes every element): for outputs as large as a batch's
/// logits, the zeroing pass is a measurable share of the product.
///
/// ```
/// use prism_core::dense::{View, matmul_new};
/// let a = [1.0, 2.0, 3.0, 4.0]; // [[1, 2], [3, 4]]
/// assert_eq!(matmul_new(View::new(&a, 2, 2), View::new(&a, 2, 2).t()), [5.0, 11.0, 11.0, 25.0]);
/// ```
pub fn matmul_new(a: View<'_>, b: View<'_>) -> Vec<f32> {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    let len = a.rows * b.cols;
    if a.cols == 0 {
        return vec![0.0; len];
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    let mut out = Vec::with_capacity(len);
    // SAFETY: `out` has capacity for `len` elements and is fresh (no overlap with the inputs);
    // with `read_dst` false and a non-empty inner dimension the GEMM writes every one of the
    // `len` elements without reading any, so all are initialised before `set_len`.
    unsafe {
        gemm_into(a, b, out.as_mut_ptr(), false, parallelism);
        out.set_len(len);
    }
    out
}

/// The `gemm` call behind every product.
///
/// # Safety
/// `dst` must be valid for writes (and reads, when `accumulate`) of `a.rows × b.cols` elements
/// laid out row-major, must not overlap `a` or `b`, and `a.cols` must be positive.
unsafe fn gemm_into(
    a: View<'_>,
    b: View<'_>,
    dst: *mut f32,
    accumulate: bool,
    parallelism: Parallelism,
) {
    if a.rows == 0 || b.cols == 0 {
        return;
    }
    // SAFETY: the views' shapes and strides were checked against their slices at construction
    // (a transpose only swaps them); the caller vouches for `dst`.
    unsafe {
        gemm(
            a.rows,
            b.cols,
            a.cols,
            dst,
            1,
            b.cols as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride,
            a.row_stride,
            b.data.as_ptr(),
            b.col_stride,
            b.row_stride,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], n: usize, k: usize, m: usize) -> Vec<f32> {
        let mut out = vec![0.0; n * m];
        for i in 0..n {
            for j in 0..m {
                out[i * m + j] = (0..k).map(|p| a[i * k + p] * b[p * m + j]).sum();
            }
        }
        out
    }

    #[test]
    fn products_and_transposes_match_a_naive_loop() {
        let (n, k, m) = (37, 19, 23);
        let a: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
            .collect();
        let b: Vec<f32> = (0..k * m)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let want = naive(&a, &b, n, k, m);
        let mut out = vec![0.0; n * m];
        matmul(View::new(&a, n, k), View::new(&b, k, m), &mut out, false);
        for (x, y) in out.iter().zip(&want) {
            assert!((x - y).abs() < 1e-4);
        }
        // (bᵀ aᵀ)ᵀ = a b, using transposed views of the same buffers.
        let mut out_t = vec![0.0; m * n];
        matmul(
            View::new(&b, k, m).t(),
            View::new(&a, n, k).t(),
            &mut out_t,
            false,
        );
        for i in 0..n {
            for j in 0..m {
                assert!((out_t[j * n + i] - want[i * m + j]).abs() < 1e-4);
            }
        }
        // A new buffer without zeroing holds the same product.
        assert_eq!(matmul_new(View::new(&a, n, k), View::new(&b, k, m)), out);
        // Accumulating adds.
        matmul(View::new(&a, n, k), View::new(&b, k, m), &mut out, true);
        for (x, y) in out.iter().zip(&want) {
            assert!((x - 2.0 * y).abs() < 1e-4);
        }
    }
}
