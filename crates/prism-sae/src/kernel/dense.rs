//! Dense matrix products on the `gemm` crate (the same GEMM burn's flex backend builds on),
//! called directly so that transposes are strides, not copies.

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
/// use prism_sae::kernel::{View, matmul};
/// let a = [1.0, 2.0, 3.0, 4.0]; // [[1, 2], [3, 4]]
/// let mut out = [0.0; 4];
/// matmul(View::new(&a, 2, 2), View::new(&a, 2, 2).t(), &mut out, false); // a · aᵀ
/// assert_eq!(out, [5.0, 11.0, 11.0, 25.0]);
/// ```
pub fn matmul(a: View<'_>, b: View<'_>, out: &mut [f32], accumulate: bool) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    assert_eq!(
        out.len(),
        a.rows * b.cols,
        "output does not match the product"
    );
    if a.rows == 0 || b.cols == 0 {
        return;
    }
    if a.cols == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    let threads = rayon::current_num_threads();
    // SAFETY: the views' shapes and strides were checked against their slices at construction
    // (a transpose only swaps them), `out` holds exactly `a.rows × b.cols` elements laid out
    // row-major, and the three buffers do not overlap (`out` is borrowed mutably).
    unsafe {
        gemm(
            a.rows,
            b.cols,
            a.cols,
            out.as_mut_ptr(),
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
            if threads > 1 {
                Parallelism::Rayon(threads)
            } else {
                Parallelism::None
            },
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
        // Accumulating adds.
        matmul(View::new(&a, n, k), View::new(&b, k, m), &mut out, true);
        for (x, y) in out.iter().zip(&want) {
            assert!((x - 2.0 * y).abs() < 1e-4);
        }
    }
}
