//! Helpers shared by the integration tests: fixture paths and reference data.
#![allow(dead_code)]

use std::path::PathBuf;

use prism_core::HostTensor;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixtures() -> PathBuf {
    root().join("fixtures")
}

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

/// The wgpu device, or `None` (with the reason printed) where no adapter exists. When
/// `PRISM_REQUIRE_WGPU` is set (CI installs lavapipe and sets it) a missing adapter fails the test.
pub fn wgpu_device() -> Option<prism_core::Device> {
    optional_device("wgpu")
}

/// The device of a backend that a build or a machine may lack (`wgpu`, `ndarray`: cargo features;
/// `wgpu` also needs an adapter), or `None` with the reason printed. When `PRISM_REQUIRE_<NAME>`
/// is set its absence fails the test: CI sets `PRISM_REQUIRE_WGPU`; the ndarray backend is not in
/// CI's build (`--features wgpu,ndarray-backend` with `PRISM_REQUIRE_NDARRAY=1` tests it).
pub fn optional_device(name: &str) -> Option<prism_core::Device> {
    let required = format!("PRISM_REQUIRE_{}", name.to_ascii_uppercase());
    match prism_core::device(name) {
        Ok(d) => Some(d),
        Err(e) if std::env::var_os(&required).is_some() => panic!("{name} required: {e}"),
        Err(e) => {
            eprintln!("skipping the {name} part: {e}");
            None
        }
    }
}

/// A downloaded asset (`PRISM_ASSETS`, default `assets/`), or `None` with a message naming the
/// `prism fetch` that brings it; with `PRISM_REQUIRE_ASSETS` set (CI) a missing asset fails.
pub fn asset(file: &str, fetch: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("PRISM_ASSETS")
        .map(Into::into)
        .unwrap_or_else(|| root().join("assets"));
    let path = dir.join(file);
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("PRISM_REQUIRE_ASSETS").is_some() {
        panic!("{} is missing (run `prism fetch {fetch}`)", path.display());
    }
    eprintln!(
        "skipping: {} is absent; run `prism fetch {fetch}`",
        path.display()
    );
    None
}
