//! Synthetic activations: 512 ground-truth unit vectors in d = 64, every sample a sparse
//! non-negative combination of them (5 active on average); and a planted MLP, whose output
//! writes each active input direction's own output direction with the same coefficient (plus,
//! optionally, a linear map of the input).

use prism_core::HostTensor;
use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};

pub const D: usize = 64;
pub const TRUTH: usize = 512;
const MEAN_ACTIVE: f64 = 5.0;

pub struct Synthetic {
    /// The planted unit directions, `[TRUTH, D]`.
    pub truth: Vec<f32>,
    rng: StdRng,
}

/// `TRUTH` random unit vectors of width `d`.
fn unit_rows(rng: &mut StdRng, d: usize) -> Vec<f32> {
    let mut truth: Vec<f32> = (0..TRUTH * d).map(|_| StandardNormal.sample(rng)).collect();
    for r in truth.chunks_mut(d) {
        let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        r.iter_mut().for_each(|v| *v /= n);
    }
    truth
}

/// Per sample, the active ground-truth features and their coefficients.
fn draw_codes(rng: &mut StdRng) -> Vec<(usize, f32)> {
    let p = MEAN_ACTIVE / TRUTH as f64;
    let mut codes = Vec::new();
    for t in 0..TRUTH {
        if rng.random::<f64>() < p {
            codes.push((t, rng.random_range(0.5..1.5)));
        }
    }
    codes
}

/// `row += Σ c · directions[t]`.
fn write(row: &mut [f32], codes: &[(usize, f32)], directions: &[f32]) {
    let d = row.len();
    for &(t, c) in codes {
        for (o, v) in row.iter_mut().zip(&directions[t * d..][..d]) {
            *o += c * v;
        }
    }
}

impl Synthetic {
    pub fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let truth = unit_rows(&mut rng, D);
        Self { truth, rng }
    }

    /// `n` samples and the number of active ground-truth features in each.
    pub fn batch(&mut self, n: usize) -> (HostTensor, Vec<usize>) {
        let mut data = vec![0f32; n * D];
        let mut active = Vec::with_capacity(n);
        for row in data.chunks_mut(D) {
            let codes = draw_codes(&mut self.rng);
            write(row, &codes, &self.truth);
            active.push(codes.len());
        }
        (HostTensor::new(vec![n, D], data).unwrap(), active)
    }
}

/// A planted MLP from width `D` to `d_out`: input feature `t` (direction `inputs[t]`) writes
/// output direction `outputs[t]` with its own coefficient; with a skip matrix `S [D, d_out]`
/// the output also gets `x · S`.
pub struct PlantedMlp {
    pub d_out: usize,
    /// `[TRUTH, D]`.
    pub inputs: Vec<f32>,
    /// `[TRUTH, d_out]`.
    pub outputs: Vec<f32>,
    /// `[D, d_out]`.
    pub skip: Option<Vec<f32>>,
    rng: StdRng,
}

impl PlantedMlp {
    pub fn new(seed: u64, d_out: usize, skip_scale: Option<f32>) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let inputs = unit_rows(&mut rng, D);
        let outputs = unit_rows(&mut rng, d_out);
        let skip = skip_scale.map(|s| {
            (0..D * d_out)
                .map(|_| {
                    let z: f32 = StandardNormal.sample(&mut rng);
                    s * z / (D as f32).sqrt()
                })
                .collect()
        });
        Self {
            d_out,
            inputs,
            outputs,
            skip,
            rng,
        }
    }

    /// `n` input rows `[n, D]` and the MLP's outputs `[n, d_out]`.
    pub fn batch(&mut self, n: usize) -> (HostTensor, HostTensor) {
        let (mut x, mut y) = (vec![0f32; n * D], vec![0f32; n * self.d_out]);
        for (xr, yr) in x.chunks_mut(D).zip(y.chunks_mut(self.d_out)) {
            let codes = draw_codes(&mut self.rng);
            write(xr, &codes, &self.inputs);
            write(yr, &codes, &self.outputs);
            if let Some(s) = &self.skip {
                for (i, &xi) in xr.iter().enumerate() {
                    for (o, v) in yr.iter_mut().enumerate() {
                        *v += xi * s[i * self.d_out + o];
                    }
                }
            }
        }
        (
            HostTensor::new(vec![n, D], x).unwrap(),
            HostTensor::new(vec![n, self.d_out], y).unwrap(),
        )
    }
}
