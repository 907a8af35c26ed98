//! Trainable parameters held on the host, in the layout the kernels want.

/// A dictionary's parameters during training. Encoder and decoder are stored `[m, d]` and
/// `[m, d_out]` (row `j` is feature `j`'s encoder / decoder direction), so per-feature updates
/// touch contiguous memory; saving transposes the encoder to SAELens' `W_enc [d, m]`. An
/// autoencoder has `d_out = d`; a transcoder writes another hook, of width `d_out`, and a skip
/// transcoder adds `x · w_skipᵀ` to its output.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Input width.
    pub d: usize,
    /// Output width (`d` for an autoencoder).
    pub d_out: usize,
    /// Number of features.
    pub m: usize,
    /// Encoder directions `[m, d]`.
    pub w_enc: Vec<f32>,
    /// Encoder bias `[m]` (the gate bias for Gated).
    pub b_enc: Vec<f32>,
    /// Decoder directions `[m, d_out]`.
    pub w_dec: Vec<f32>,
    /// Decoder bias `[d_out]`.
    pub b_dec: Vec<f32>,
    /// JumpReLU: log of the per-feature threshold `[m]`; empty otherwise.
    pub log_threshold: Vec<f32>,
    /// Gated: log-scale of the magnitude path `[m]`; empty otherwise.
    pub r_mag: Vec<f32>,
    /// Gated: magnitude-path bias `[m]`; empty otherwise.
    pub b_mag: Vec<f32>,
    /// A skip transcoder's linear term `[d_out, d]` (SAELens' `W_skip` layout); empty otherwise.
    pub w_skip: Vec<f32>,
}

/// Tensor names, in the order [`Params::tensors`] yields them.
pub const PARAM_NAMES: [&str; 8] = [
    "w_enc",
    "b_enc",
    "w_dec",
    "b_dec",
    "log_threshold",
    "r_mag",
    "b_mag",
    "w_skip",
];

impl Params {
    /// All parameters, in [`PARAM_NAMES`] order.
    pub fn tensors(&self) -> [&Vec<f32>; 8] {
        [
            &self.w_enc,
            &self.b_enc,
            &self.w_dec,
            &self.b_dec,
            &self.log_threshold,
            &self.r_mag,
            &self.b_mag,
            &self.w_skip,
        ]
    }

    /// All parameters, mutably, in [`PARAM_NAMES`] order.
    pub fn tensors_mut(&mut self) -> [&mut Vec<f32>; 8] {
        [
            &mut self.w_enc,
            &mut self.b_enc,
            &mut self.w_dec,
            &mut self.b_dec,
            &mut self.log_threshold,
            &mut self.r_mag,
            &mut self.b_mag,
            &mut self.w_skip,
        ]
    }

    /// Zeros of the same shapes (gradients, optimiser moments).
    pub fn zeros_like(&self) -> Params {
        let z = |v: &Vec<f32>| vec![0.0; v.len()];
        Params {
            d: self.d,
            d_out: self.d_out,
            m: self.m,
            w_enc: z(&self.w_enc),
            b_enc: z(&self.b_enc),
            w_dec: z(&self.w_dec),
            b_dec: z(&self.b_dec),
            log_threshold: z(&self.log_threshold),
            r_mag: z(&self.r_mag),
            b_mag: z(&self.b_mag),
            w_skip: z(&self.w_skip),
        }
    }

    /// Sets every value to zero, keeping shapes.
    pub fn fill_zero(&mut self) {
        for t in self.tensors_mut() {
            t.fill(0.0);
        }
    }

    /// Whether every value is finite.
    pub fn all_finite(&self) -> bool {
        use rayon::prelude::*;
        self.tensors()
            .iter()
            .all(|t| t.par_chunks(1 << 14).all(stretch_is_finite))
    }

    /// Euclidean norm over all values (for gradient clipping).
    pub fn norm(&self) -> f64 {
        use rayon::prelude::*;
        const CHUNK: usize = 1 << 14;
        self.tensors()
            .iter()
            .map(|t| t.par_chunks(CHUNK).map(sum_of_squares).sum::<f64>())
            .sum::<f64>()
            .sqrt()
    }

    /// Scales every value.
    pub fn scale(&mut self, s: f32) {
        for t in self.tensors_mut() {
            t.iter_mut().for_each(|v| *v *= s);
        }
    }

    /// Rescales every decoder row to unit norm (rows of norm 0 are left alone).
    pub fn normalize_decoder(&mut self) {
        unit_rows(&mut self.w_dec, self.d_out);
    }
}

/// Rescales every row of `width` values to unit norm (rows of norm 0 are left alone).
pub(crate) fn unit_rows(values: &mut [f32], width: usize) {
    use rayon::prelude::*;
    values.par_chunks_mut(width).for_each(|row| {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n > 0.0 {
            row.iter_mut().for_each(|v| *v /= n);
        }
    });
}

prism_core::simd_dispatch! {
    /// Whether every value of `x` is finite (one vectorised pass, no early exit).
    fn stretch_is_finite(x: &[f32]) -> bool => stretch_is_finite_body
}

#[inline(always)]
fn stretch_is_finite_body(x: &[f32]) -> bool {
    let mut bad = false;
    for v in x {
        bad |= !v.is_finite();
    }
    !bad
}

prism_core::simd_dispatch! {
    /// `Σ x²`, in f32 lanes over stretches of 1024 values, the stretches added in f64.
    fn sum_of_squares(x: &[f32]) -> f64 => sum_of_squares_body
}

#[inline(always)]
fn sum_of_squares_body(x: &[f32]) -> f64 {
    x.chunks(1024)
        .map(|stretch| {
            let mut lanes = [0.0f32; 16];
            let mut chunks = stretch.chunks_exact(16);
            for c in &mut chunks {
                for (l, &v) in lanes.iter_mut().zip(c) {
                    *l += v * v;
                }
            }
            let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
            lanes.iter().map(|&l| l as f64).sum::<f64>() + tail as f64
        })
        .sum()
}

/// Removes from each decoder-row gradient its component along that (unit) row, so a step
/// moves along the sphere — dictionary_learning's `remove_gradient_parallel_to_decoder_directions`.
pub fn remove_parallel_component(w_dec: &[f32], grad: &mut [f32], d: usize) {
    remove_parallel_rows(w_dec, grad, d);
}

prism_core::simd_dispatch! {
    /// [`remove_parallel_component`]'s loop.
    fn remove_parallel_rows(w_dec: &[f32], grad: &mut [f32], d: usize) => remove_parallel_rows_body
}

#[inline(always)]
fn remove_parallel_rows_body(w_dec: &[f32], grad: &mut [f32], d: usize) {
    for (w, g) in w_dec.chunks(d).zip(grad.chunks_mut(d)) {
        let along = crate::kernel::dot(w, g);
        crate::kernel::axpy(-along, w, g);
    }
}
