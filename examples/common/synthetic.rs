//! Synthetic activations for the training benchmarks: fixed random batches whose codes become
//! sparse the way real activations' do.

use prism::HostTensor;
use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};

/// A training step's sizes.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Input width.
    pub d: usize,
    /// Features.
    pub m: usize,
    /// Rows per batch.
    pub batch: usize,
}

/// A few fixed batches: each row a sparse non-negative mixture of random unit directions.
pub fn inputs(s: Sizes, batches: usize) -> Vec<HostTensor> {
    let Sizes { d, batch, .. } = s;
    let mut rng = StdRng::seed_from_u64(1);
    let atoms = 4096;
    let dirs: Vec<f32> = (0..atoms * d)
        .map(|_| StandardNormal.sample(&mut rng))
        .map(|v: f32| v / (d as f32).sqrt())
        .collect();
    (0..batches)
        .map(|_| {
            let mut data = vec![0f32; batch * d];
            for row in data.chunks_mut(d) {
                for _ in 0..20 {
                    let a = rng.random_range(0..atoms);
                    let c: f32 = rng.random_range(0.2..2.0);
                    for (o, v) in row.iter_mut().zip(&dirs[a * d..][..d]) {
                        *o += c * v;
                    }
                }
                for o in row.iter_mut() {
                    let noise: f32 = StandardNormal.sample(&mut rng);
                    *o += 0.01 * noise;
                }
            }
            HostTensor::new(vec![batch, d], data).unwrap()
        })
        .collect()
}
