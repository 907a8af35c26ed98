//! Shared by the patching tests: the tiny fixture models with their prompt pairs and the
//! PyTorch reference numbers.
#![allow(dead_code)]

use prism_core::HostTensor;
use prism_models::Model;
use prism_patch::{Direction, PairBatch, PromptPair};

pub use prism_testkit::fixtures;

pub struct Case {
    pub model: Model,
    pub pairs: PairBatch,
    pub reference: std::collections::HashMap<String, HostTensor>,
}

pub fn case(name: &str) -> Case {
    let dir = fixtures().join("models").join(name);
    let model = Model::load(&dir, &prism_core::device("cpu").unwrap()).unwrap();
    let reference = prism_core::read_safetensors(&dir.join("patching.safetensors")).unwrap();
    let ids = |key: &str| -> Vec<Vec<u32>> {
        let t = &reference[key];
        t.data
            .chunks(t.shape[1])
            .map(|r| r.iter().map(|&v| v as u32).collect())
            .collect()
    };
    let (clean, corrupt) = (ids("clean_ids"), ids("corrupt_ids"));
    let tok = |key: &str| -> Vec<u32> { reference[key].data.iter().map(|&v| v as u32).collect() };
    let (answer, wrong) = (tok("answer"), tok("wrong"));
    let pairs: Vec<PromptPair> = (0..clean.len())
        .map(|i| {
            PromptPair::new(clean[i].clone(), corrupt[i].clone(), answer[i], wrong[i]).unwrap()
        })
        .collect();
    Case {
        pairs: PairBatch::new(&pairs, 0).unwrap(),
        model,
        reference,
    }
}

/// Every tiny fixture architecture with patching references: the first three families, Gemma 2
/// (norms after attention and MLP, soft-capped scores and logits, local layers) and Qwen 3
/// (per-head q/k norms).
pub const ARCHITECTURES: [&str; 7] = [
    "gpt_neox_parallel",
    "gpt_neox_sequential",
    "gpt2",
    "llama_gqa",
    "llama_tied",
    "gemma2",
    "qwen3",
];

/// The sweeps the fixtures cover: (sweep, reference key, direction); the attribution keys carry
/// an `atp_` prefix.
pub const SWEEPS: [(&str, &str, Direction); 7] = [
    ("resid_pre", "denoise_resid_pre", Direction::Denoise),
    ("attn_out", "denoise_attn_out", Direction::Denoise),
    ("mlp_out", "denoise_mlp_out", Direction::Denoise),
    ("resid_post", "denoise_resid_post", Direction::Denoise),
    ("z", "denoise_z", Direction::Denoise),
    ("neurons", "denoise_neurons", Direction::Denoise),
    ("resid_pre", "noise_resid_pre", Direction::Noise),
];

/// A reference file of a fixture model.
pub fn reference(model: &str, file: &str) -> std::collections::HashMap<String, HostTensor> {
    prism_core::read_safetensors(&fixtures().join("models").join(model).join(file)).unwrap()
}

/// Within 1e-4 of the largest magnitude in the reference.
pub fn assert_close(got: &[f64], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs() as f64));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - *w as f64).abs() <= 1e-4 * scale,
            "{what}[{i}]: prism {g} vs transformers {w}"
        );
    }
}
