//! Helpers shared by the integration tests: fixture paths and reference data.
#![allow(dead_code)]

use prism_core::HostTensor;

pub use prism_testkit::{asset, fixtures, wgpu_device};

/// Every tiny fixture model (scripts/make_fixtures.py): the first three families, then one per
/// family added after them (`families` in VERSIONS.json).
pub const MODELS: [&str; 15] = [
    "gpt_neox_parallel",
    "gpt_neox_sequential",
    "gpt2",
    "llama_gqa",
    "llama_tied",
    "llama3",
    "llama_dynamic",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3",
    "phi3",
    "olmo2",
];

/// Models whose positions depend on the pass's length (dynamic NTK rope scaling): a sequence in
/// a longer padded batch is rotated with the batch's frequencies, as in `transformers`.
pub const LENGTH_DEPENDENT: [&str; 1] = ["llama_dynamic"];

pub struct Reference {
    pub texts: Vec<String>,
    pub tokens: Vec<Vec<u32>>,
    pub losses: Vec<f64>,
    pub logits: Vec<HostTensor>,
}

pub fn reference(name: &str) -> Reference {
    let dir = fixtures().join("models").join(name);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let tensors = prism_core::read_safetensors(&dir.join("reference.safetensors")).unwrap();
    let texts = json["texts"].as_array().unwrap();
    Reference {
        texts: texts
            .iter()
            .map(|t| t["text"].as_str().unwrap().to_string())
            .collect(),
        tokens: texts
            .iter()
            .map(|t| {
                t["tokens"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect()
            })
            .collect(),
        losses: texts.iter().map(|t| t["loss"].as_f64().unwrap()).collect(),
        logits: (0..texts.len())
            .map(|i| tensors[&format!("logits_{i}")].clone())
            .collect(),
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
