//! Synthetic activations: 512 ground-truth unit vectors in d = 64, every sample a sparse
//! non-negative combination of them (5 active on average).

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

impl Synthetic {
    pub fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut truth: Vec<f32> = (0..TRUTH * D)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        for r in truth.chunks_mut(D) {
            let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
            r.iter_mut().for_each(|v| *v /= n);
        }
        Self { truth, rng }
    }

    /// `n` samples and the number of active ground-truth features in each.
    pub fn batch(&mut self, n: usize) -> (HostTensor, Vec<usize>) {
        let p = MEAN_ACTIVE / TRUTH as f64;
        let mut data = vec![0f32; n * D];
        let mut active = Vec::with_capacity(n);
        for row in data.chunks_mut(D) {
            let mut count = 0;
            for t in 0..TRUTH {
                if self.rng.random::<f64>() < p {
                    let c: f32 = self.rng.random_range(0.5..1.5);
                    for (o, v) in row.iter_mut().zip(&self.truth[t * D..][..D]) {
                        *o += c * v;
                    }
                    count += 1;
                }
            }
            active.push(count);
        }
        (HostTensor::new(vec![n, D], data).unwrap(), active)
    }
}
