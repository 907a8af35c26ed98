//! Real weights: SmolLM2-135M-Instruct from its GGUF (Q4_1/Q8_0), against HF `transformers`
//! loading the same file (which dequantises to f32). Needs `prism fetch smollm2` first; skipped
//! with a message where the asset is absent (CI fetches it).

use crate::common;

use common::*;
use prism_core::{Hooks, HostTensor};
use prism_models::{Model, TokenBatch, next_token_loss};

#[test]
fn smollm2_gguf_matches_transformers() {
    let Some(path) = asset("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2") else {
        return;
    };
    let device = prism_core::device("cpu").unwrap();
    let model = Model::load(&path, &device).unwrap();
    let cfg = model.config();
    assert_eq!(
        (
            cfg.n_layers,
            cfg.d_model,
            cfg.n_heads,
            cfg.n_kv_heads,
            cfg.d_mlp,
            cfg.vocab_size
        ),
        (30, 576, 9, 3, 1536, 49152)
    );
    let fixture = fixtures().join("smollm2");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("reference.json")).unwrap())
            .unwrap();
    let logits_ref = prism_core::read_safetensors(&fixture.join("reference.safetensors")).unwrap();
    for (i, t) in json["texts"].as_array().unwrap().iter().enumerate() {
        let want: Vec<u32> = t["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let ids = model.encode(t["text"].as_str().unwrap()).unwrap();
        assert_eq!(ids, want, "tokens of text {i}");
        let batch = TokenBatch::from_sequences(&[ids], model.pad_id()).unwrap();
        let logits = model
            .forward(&batch, &Hooks::new())
            .unwrap()
            .logits()
            .unwrap();
        let last = logits
            .clone()
            .narrow(1, batch.seq - 1, 1)
            .reshape([cfg.vocab_size]);
        let diff = max_abs_diff(
            &HostTensor::from_burn(last).unwrap().data,
            &logits_ref[&format!("last_logits_{i}")].data,
        );
        let loss = next_token_loss(logits, &batch).unwrap();
        let want_loss = t["loss"].as_f64().unwrap();
        eprintln!(
            "text {i}: loss {loss:.6} (transformers {want_loss:.6}), max |Δ last logits| {diff:.2e}"
        );
        assert!(
            ((loss - want_loss) / want_loss).abs() < 1e-3,
            "text {i}: loss {loss} vs {want_loss}"
        );
        assert!(
            diff < 1e-2,
            "text {i}: last-position logits differ by {diff}"
        );
    }
}
