//! Writes the interoperability fixtures `fixtures/prism_saved/<architecture>/`: one small
//! dictionary of each architecture, trained by Prism for a few hundred steps on sparse synthetic
//! data (with input normalisation folded into the saved weights, as real runs do) and saved in
//! SAELens' layout. `scripts/make_fixtures.py --only prism_saved` then loads each with sae-lens
//! and records sae-lens's codes and reconstructions, which the Rust tests compare Prism's
//! against.
//!
//! ```sh
//! cargo run --release --example write_prism_saved -- fixtures/prism_saved
//! ```

use std::path::PathBuf;

use prism::core::HostTensor;
use prism::sae::train::{ArchitectureConfig, TrainConfig, Trainer};
use rand::{Rng, SeedableRng, rngs::StdRng};

const D: usize = 16;
const M: usize = 48;

fn main() -> prism::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fixtures/prism_saved".into()),
    );
    let device = prism::core::device("cpu")?;
    for arch in ["relu", "topk", "batchtopk", "jumprelu", "gated"] {
        let base: ArchitectureConfig = arch.parse()?;
        let arch_cfg = match base {
            ArchitectureConfig::TopK(_) | ArchitectureConfig::BatchTopK(_) => {
                base.with_sparsity(Some(4), None)?
            }
            _ => base.with_sparsity(None, Some(0.05))?,
        };
        let steps = 300;
        let mut config = TrainConfig::for_steps(arch_cfg, D, M, steps);
        config.normalize_activations = true;
        config.lr = 3e-3;
        config.seed = 1;
        config.hook_name = Some("blocks.2.hook_resid_post".into());
        let mut trainer = Trainer::new(config)?;
        let mut rng = StdRng::seed_from_u64(9);
        let directions: Vec<f32> = (0..M * D).map(|_| rng.random_range(-1.0..1.0)).collect();
        for _ in 0..steps {
            // Each row: 3 random directions with positive weights, plus an offset and noise.
            let mut x = vec![0f32; 64 * D];
            for row in x.chunks_mut(D) {
                for _ in 0..3 {
                    let j = rng.random_range(0..M);
                    let c: f32 = rng.random_range(0.5..2.0);
                    for (v, w) in row.iter_mut().zip(&directions[j * D..][..D]) {
                        *v += c * w;
                    }
                }
                for v in row.iter_mut() {
                    *v += 0.5 + 0.01 * rng.random_range(-1.0..1.0);
                }
            }
            trainer.step(&HostTensor::new(vec![64, D], x)?)?;
        }
        let sae = trainer.to_sae(&device)?;
        let dir = out.join(arch);
        sae.save(&dir)?;
        println!("{arch}: {} at {}", sae.architecture().name(), dir.display());
    }
    Ok(())
}
