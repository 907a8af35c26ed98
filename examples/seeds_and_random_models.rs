//! # Do dictionaries find the same features across seeds, and not on a random model?
//!
//! **Setup.** Activations of `blocks.15.hook_mlp_out` of SmolLM2-135M-Instruct on the Python
//! documentation, cached once to disk (`prism::cache`), and the same hook point of the model
//! with every weight re-drawn from its initialisation distribution.
//!
//! **Procedure.** Three ReLU + L1 dictionaries of 8× expansion with the same hyper-parameters:
//! two on the real model's activations (seeds 0 and 1), one on the randomised model's (seed 2).
//!
//! **Measure.** Mean max cosine similarity (MMCS) of decoder directions: each feature of A
//! matched to its closest in B, averaged. The research notes found > 0.95 across seeds and
//! < 0.3 against a randomised model for fully trained dictionaries.
//!
//! ```text
//! cargo run --release --example seeds_and_random_models -- [--tokens 65536]
//! ```

use prism::cache::{ActivationStore, CacheOptions, Corpus, WindowConfig, build_cache};
use prism::core::FloatDtype;
use prism::sae::train::{ArchitectureConfig, TrainConfig, Trainer};
use prism::similarity::{SimilarityOptions, compare};
use prism::{HookPoint, Model, Randomization, Result};

fn cache(
    model: &Model,
    corpus: &Corpus,
    tokens: u64,
    dir: &std::path::Path,
) -> Result<ActivationStore> {
    let options = CacheOptions {
        hooks: vec![HookPoint::MlpOut(15)],
        window: WindowConfig::default(),
        drop_bos: false,
        dtype: FloatDtype::F32,
        target_tokens: tokens,
        windows_per_shard: 128,
        windows_per_forward: 8,
        stop_after_shards: None,
    };
    build_cache(model, corpus, &options, dir, &mut |_| {})?;
    ActivationStore::open(dir)
}

fn train(store: &ActivationStore, seed: u64) -> Result<Trainer> {
    let d = store.manifest.hooks[0].d;
    let steps = store.len() / 1024 * 3;
    let mut c = TrainConfig::for_steps(ArchitectureConfig::relu(1.0), d, 8 * d, steps);
    c.normalize_activations = true;
    c.resample = None;
    c.seed = seed;
    let mut t = Trainer::new(c)?;
    for epoch in 0..3 {
        for batch in store.shuffled_batches(&[0], 1024, epoch) {
            t.step(&batch?[0])?;
        }
    }
    Ok(t)
}

fn main() -> Result<()> {
    let tokens: u64 = std::env::args()
        .skip_while(|a| a != "--tokens")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(65_536);
    let device = prism::core::device("cpu")?;
    let model = Model::load("assets/SmolLM2-135M-Instruct.Q4_1.gguf".as_ref(), &device)?;
    let corpus = Corpus::open("assets/python-docs".as_ref(), "text")?;
    let tmp = std::env::temp_dir().join("prism-seeds-example");
    let real = cache(&model, &corpus, tokens, &tmp.join("real"))?;
    let random_model = model.randomized(Randomization::All, 7)?;
    let random = cache(&random_model, &corpus, tokens, &tmp.join("random"))?;

    let a = train(&real, 0)?.to_sae(&device)?;
    let b = train(&real, 1)?.to_sae(&device)?;
    let r = train(&random, 2)?.to_sae(&device)?;
    let options = SimilarityOptions::default();
    let seeds = compare(&a, &b, &options)?;
    let vs_random = compare(&a, &r, &options)?;
    println!(
        "MMCS across seeds:         {:.3} / {:.3}",
        seeds.mmcs_a_to_b, seeds.mmcs_b_to_a
    );
    println!(
        "MMCS vs randomised model:  {:.3} / {:.3}",
        vs_random.mmcs_a_to_b, vs_random.mmcs_b_to_a
    );
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
