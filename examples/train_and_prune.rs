//! # Two dictionaries from one stream, evaluated, and the first pruned to the second's L0
//!
//! **Activations.** SmolLM2-135M-Instruct reads the Python documentation in windows of 128
//! tokens; we capture the MLP output of the middle block (`blocks.15.hook_mlp_out`) into an
//! in-memory buffer that serves shuffled batches of 1024 vectors.
//!
//! **Dictionaries.** From that one stream we train two ReLU + L1 dictionaries (inputs normalised
//! to E‖x‖ = √d, Adam, warm-up, resampling of dead features): 8× expansion with a low penalty,
//! and 32× expansion with a higher one.
//!
//! **Evaluation.** On the next, held-out windows: L0, fraction of variance explained, and the
//! fraction of the model's loss recovered when the reconstruction replaces the activation.
//!
//! **Pruning.** The first dictionary's densest features are removed until its L0 matches the
//! second's, and it is evaluated again.
//!
//! ```text
//! cargo run --release --example train_and_prune -- [--tokens 65536]
//! ```

use prism::cache::{ActivationBuffer, BufferConfig, Corpus, Harvester, WindowConfig, windows};
use prism::sae::train::{ArchitectureConfig, TrainConfig, Trainer};
use prism::stats::{PruneRule, evaluate, features_to_keep};
use prism::{HookPoint, Model, Result, TokenBatch};

fn main() -> Result<()> {
    let tokens: u64 = std::env::args()
        .skip_while(|a| a != "--tokens")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(65_536);
    let device = prism::core::device("cpu")?;
    let model = Model::load("assets/SmolLM2-135M-Instruct.Q4_1.gguf".as_ref(), &device)?;
    let corpus = Corpus::open("assets/python-docs".as_ref(), "text")?;
    let hook = HookPoint::MlpOut(15);
    let window = WindowConfig {
        ctx: 128,
        ..Default::default()
    };

    // Activations: one stream, shuffled within a buffer of 64 windows.
    let harvester = Harvester::new(&model, vec![hook], false)?;
    let mut buffer = ActivationBuffer::new(
        harvester,
        windows(&corpus, &model.tokenizer, window.clone())?,
        &BufferConfig::new().with_n_ctxs(64).with_batch(1024),
    );

    // Dictionaries: 8× with a low L1 penalty and 32× with a higher one.
    let d = model.config().d_model;
    let steps = tokens / 1024;
    let make = |m: usize, l1: f32, seed: u64| {
        // The library's schedule for this many steps: warm-ups, resampling of dead features.
        let mut c = TrainConfig::for_steps(ArchitectureConfig::relu(l1), d, m, steps);
        c.normalize_activations = true;
        c.seed = seed;
        c.hook_name = Some(hook.to_string());
        Trainer::new(c)
    };
    let mut trainers = [make(8 * d, 1.0, 0)?, make(32 * d, 4.0, 1)?];
    for step in 0..steps {
        let Some(batch) = buffer.next_batch()? else {
            break;
        };
        for t in &mut trainers {
            let log = t.step(&batch[0])?;
            if step % 16 == 0 {
                eprintln!(
                    "step {step}: {} features, loss {:.2}, L0 {:.1}",
                    t.config.d_sae, log.loss, log.l0
                );
            }
        }
    }

    // Evaluation on the windows after those harvested.
    let held_out: Vec<Vec<u32>> = windows(&corpus, &model.tokenizer, window)?
        .skip((buffer.rows_harvested / 128) as usize)
        .take(16)
        .collect::<Result<_>>()?;
    let batches = held_out
        .chunks(8)
        .map(|w| TokenBatch::from_sequences(w, model.pad_id()))
        .collect::<Result<Vec<_>>>()?;
    let saes = [trainers[0].to_sae(&device)?, trainers[1].to_sae(&device)?];
    let evals = [
        evaluate(
            &model,
            &saes[0],
            hook,
            batches.iter().cloned().map(Ok),
            |_| {},
        )?,
        evaluate(
            &model,
            &saes[1],
            hook,
            batches.iter().cloned().map(Ok),
            |_| {},
        )?,
    ];
    for (s, e) in saes.iter().zip(&evals) {
        println!(
            "{:>6} features: L0 {:>7.2}  variance explained {:.3}  loss recovered {:.3}",
            s.w_dec().dims()[0],
            e.reconstruction.l0,
            e.reconstruction.frac_variance_explained,
            e.downstream.frac_recovered
        );
    }

    // Pruning the first to the second's L0.
    let keep = features_to_keep(
        &evals[0].reconstruction.feature_density,
        PruneRule::TargetL0(evals[1].reconstruction.l0),
    )?;
    let pruned = saes[0].keep_features(&keep)?;
    let e = evaluate(
        &model,
        &pruned,
        hook,
        batches.iter().cloned().map(Ok),
        |_| {},
    )?;
    println!(
        "pruned to {} features: L0 {:.2}  variance explained {:.3}  loss recovered {:.3}",
        keep.len(),
        e.reconstruction.l0,
        e.reconstruction.frac_variance_explained,
        e.downstream.frac_recovered
    );
    Ok(())
}
