//! The whole workflow through the facade, on a real (tiny, HF-made) model: harvest a cache,
//! train from it, evaluate on held-out text, prune, compare — and the same evaluation, pruning
//! and comparison over dictionaries in SAELens' and dictionary_learning's formats.

use std::path::Path;

use approx::assert_relative_eq;
use prism::cache::{
    ActivationStore, CacheOptions, Corpus, EvalStart, HeldOutRequest, StoreTrainingConfig,
    TrainingData, WindowConfig, build_cache, held_out_windows, train_on_store,
};
use prism::core::{Dictionary, FloatDtype, HookPoint};
use prism::sae::Sae;
use prism::sae::train::{ArchitectureConfig, Run, RunSpec, TrainConfig};
use prism::similarity::{SimilarityOptions, compare};
use prism::stats::{Evaluation, PruneRule, evaluate, features_to_keep};
use prism::{Model, TokenBatch};

use prism_testkit::root;

fn corpus(dir: &Path) -> Corpus {
    let path = dir.join("corpus.txt");
    let text: String = (0..200)
        .map(|i| {
            format!(
                "Note {i}: the residual stream of layer {} carries features; heads move them.\n\n",
                i % 7
            )
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    Corpus::open(&path, "text").unwrap()
}

fn eval_on(model: &Model, sae: &Sae, hook: HookPoint, windows: &[Vec<u32>]) -> Evaluation {
    evaluate(
        model,
        sae,
        hook,
        TokenBatch::batches(windows, 4, model.pad_id()),
        |_| {},
    )
    .unwrap()
}

fn held_out(model: &Model, corpus: &Corpus, training: &[TrainingData]) -> Vec<Vec<u32>> {
    held_out_windows(
        corpus,
        &model.tokenizer,
        &HeldOutRequest {
            ctx: 32,
            tokens: 256,
            start: EvalStart::AfterTraining,
            training,
            allow_overlap: training.is_empty(),
        },
    )
    .unwrap()
    .windows
}

/// Prunes the densest features to half the L0 and checks what pruning promises: the pruned
/// dictionary's L0 drops by exactly the removed features' densities, on the same text.
fn prune_half(model: &Model, sae: &Sae, hook: HookPoint, windows: &[Vec<u32>]) -> Sae {
    let before = eval_on(model, sae, hook, windows);
    let density = &before.reconstruction.feature_density;
    let keep =
        features_to_keep(density, PruneRule::TargetL0(before.reconstruction.l0 / 2.0)).unwrap();
    assert!(keep.len() < sae.d_sae());
    let pruned = sae.keep_features(&keep).unwrap();
    let after = eval_on(model, &pruned, hook, windows);
    let kept: f64 = keep.iter().map(|&j| density[j]).sum();
    assert_relative_eq!(after.reconstruction.l0, kept, epsilon = 1e-9);
    assert!(after.reconstruction.l0 <= before.reconstruction.l0 / 2.0 + 1e-9);
    pruned
}

/// On a Llama, and on the families whose blocks differ most from it: Gemma 2 (norms around each
/// sublayer, soft-caps, local layers, GELU-tanh gating) and OLMo 2 (norms after each sublayer
/// only, whole-projection q/k norms).
#[test]
fn cache_train_evaluate_prune_compare() {
    for name in ["llama_gqa", "gemma2", "olmo2"] {
        cache_train_evaluate_prune_compare_on(name);
    }
}

fn cache_train_evaluate_prune_compare_on(name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let device = prism::core::device("cpu").unwrap();
    let model = Model::load(&root().join("fixtures/models").join(name), &device).unwrap();
    let corpus = corpus(tmp.path());
    let hook = HookPoint::ResidPost(0);

    // Harvest 2048 activation vectors into a cache.
    let cache_dir = tmp.path().join("cache");
    let options = CacheOptions {
        hooks: vec![hook],
        window: WindowConfig {
            ctx: 32,
            ..Default::default()
        },
        drop_bos: false,
        dtype: FloatDtype::F32,
        target_tokens: 2048,
        windows_per_shard: 16,
        windows_per_forward: 8,
        stop_after_shards: None,
    };
    build_cache(&model, &corpus, &options, &cache_dir, &mut |_| {}).unwrap();
    let store = ActivationStore::open(&cache_dir).unwrap();
    assert_eq!(store.len(), 2048);

    // Two seeds of one ReLU + L1 configuration from the cache, three epochs.
    let d = model.config().d_model;
    let steps = 3 * 2048 / 128;
    let specs = (0..2)
        .map(|seed| {
            let arch = ArchitectureConfig::relu(0.01);
            let mut c = TrainConfig::for_steps(arch, d, 128, steps);
            c.seed = seed;
            c.lr = 3e-3;
            c.hook_name = Some(hook.to_string());
            RunSpec {
                name: format!("s{seed}"),
                dir: tmp.path().join(format!("s{seed}")),
                input: 0,
                output: None,
                config: c,
            }
        })
        .collect();
    let mut runs = Run::open_group(specs, false, &Default::default()).unwrap();
    // Epoch e shuffled with seed e; the library records the cache in each dictionary's cfg.
    let config = StoreTrainingConfig::new(vec![hook.to_string()], 128, steps);
    let mut losses = Vec::new();
    let provenance = train_on_store(&store, &mut runs, &config, &device, |_, logs| {
        losses.push(logs[0].loss)
    })
    .unwrap();
    assert!(
        losses.last().unwrap() < &(0.5 * losses[0]),
        "{name}: {losses:?}"
    );

    // Evaluate on text after the cache's windows.
    let sae = Sae::load(&runs[0].dir, &device).unwrap();
    let training: Vec<TrainingData> = TrainingData::from_cfg(sae.extra_cfg())
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(training, vec![provenance]);
    let windows = held_out(&model, &corpus, &training);
    let e = eval_on(&model, &sae, hook, &windows);
    assert!(
        e.reconstruction.frac_variance_explained > 0.5,
        "{name}: a trained dictionary explains most of the variance: {e:?}"
    );
    // A random tiny model's loss barely moves under ablation (so loss recovered is
    // ill-conditioned here), but the reconstruction keeps the next-token distributions far
    // closer to the clean ones than zeros do.
    assert!(
        e.downstream.kl_div_with_sae < 0.5 * e.downstream.kl_div_with_ablation,
        "{name}: {:?}",
        e.downstream
    );
    // The clean loss is the model's own loss on those windows.
    let batch = TokenBatch::from_sequences(&windows, model.pad_id()).unwrap();
    assert_relative_eq!(
        e.downstream.loss_original,
        model.loss(&batch, &prism::Hooks::new()).unwrap(),
        max_relative = 1e-5
    );

    // Prune; compare the seeds and the pruned dictionary with its parent.
    let pruned = prune_half(&model, &sae, hook, &windows);
    let other = Sae::load(&runs[1].dir, &device).unwrap();
    let seeds = compare(&sae, &other, &SimilarityOptions::default()).unwrap();
    let parent = compare(&pruned, &sae, &SimilarityOptions::default()).unwrap();
    // Every pruned feature is one of its parent's: MMCS 1 from the pruned side.
    assert_relative_eq!(parent.mmcs_a_to_b, 1.0, epsilon = 1e-5);
    assert!(
        seeds.mmcs_a_to_b < 1.0 - 1e-3,
        "two seeds are not the same dictionary"
    );
}

#[test]
fn saelens_and_dictionary_learning_dictionaries_go_through_the_same_pipeline() {
    let tmp = tempfile::tempdir().unwrap();
    let device = prism::core::device("cpu").unwrap();
    let model = Model::load(&root().join("fixtures/models/llama_tied"), &device).unwrap();
    let corpus = corpus(tmp.path());
    // Made by sae-lens and by dictionary-learning (scripts/make_fixtures.py), both over
    // blocks.0.hook_resid_post of this model; neither records Prism training data.
    for (label, path) in [
        ("sae-lens", root().join("fixtures/sae/pipeline_resid0")),
        (
            "dictionary_learning",
            root().join("fixtures/ae/pipeline_resid0"),
        ),
    ] {
        let sae = Sae::open(&path, &device).unwrap();
        let hook: HookPoint = sae.hook_name().unwrap().parse().unwrap();
        assert_eq!(hook, HookPoint::ResidPost(0), "{label}");
        let windows = held_out(&model, &corpus, &[]);
        let e = eval_on(&model, &sae, hook, &windows);
        // Saved by Prism in SAELens' layout and read back: the same metrics to the last bit.
        let dir = tmp.path().join(label);
        sae.save(&dir).unwrap();
        let again = eval_on(&model, &Sae::load(&dir, &device).unwrap(), hook, &windows);
        assert_eq!(e, again, "{label}: saving changed the dictionary");
        let pruned = prune_half(&model, &sae, hook, &windows);
        let s = compare(&pruned, &sae, &SimilarityOptions::default()).unwrap();
        assert_relative_eq!(s.mmcs_a_to_b, 1.0, epsilon = 1e-5);
    }
}
