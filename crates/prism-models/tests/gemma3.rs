//! Real weights of a second family: Gemma 3 270M from its `Q4_K_M` GGUF (Q4_K, Q5_0, Q6_K,
//! Q8_0 tensors; SentencePiece vocabulary of 262 144 tokens; local and global layers) against
//! HF `transformers` loading the same file, on texts no other test uses. Needs
//! `prism fetch gemma3`; skipped with a message where the asset is absent (CI fetches it).

use crate::common;

use common::*;
use prism_core::{Hooks, HostTensor};
use prism_models::{Architecture, AttentionSpan, Model, TokenBatch, next_token_loss};

#[test]
fn gemma3_270m_gguf_matches_transformers() {
    let Some(path) = asset("gemma-3-270m-q4_k_m.gguf", "gemma3") else {
        return;
    };
    let device = prism_core::device("cpu").unwrap();
    let model = Model::load(&path, &device).unwrap();
    let cfg = model.config();
    assert_eq!(cfg.architecture, Architecture::Gemma3);
    assert_eq!(
        (
            cfg.n_layers,
            cfg.d_model,
            cfg.n_heads,
            cfg.n_kv_heads,
            cfg.d_head,
            cfg.vocab_size
        ),
        (18, 640, 4, 1, 256, 262_144)
    );
    assert_eq!(
        (cfg.span(0), cfg.span(5)),
        (AttentionSpan::Sliding(512), AttentionSpan::Global)
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("gemma3_270m/reference.json")).unwrap(),
    )
    .unwrap();
    let ints = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let (mut agree, mut positions, mut worst_loss) = (0, 0, 0.0f64);
    for (i, t) in json["texts"].as_array().unwrap().iter().enumerate() {
        let ids = model.encode(t["text"].as_str().unwrap()).unwrap();
        assert_eq!(ids, ints(&t["tokens"]), "tokens of text {i}");
        let batch = TokenBatch::from_sequences(&[ids], model.pad_id()).unwrap();
        let logits = model
            .forward(&batch, &Hooks::new())
            .unwrap()
            .logits()
            .unwrap();
        let want_loss = t["loss"].as_f64().unwrap();
        let loss = next_token_loss(logits.clone(), &batch).unwrap();
        worst_loss = worst_loss.max(((loss - want_loss) / want_loss).abs());
        assert!(
            ((loss - want_loss) / want_loss).abs() < 1e-3,
            "text {i}: loss {loss} vs transformers {want_loss}"
        );
        let v = cfg.vocab_size;
        let got = HostTensor::from_burn(logits.reshape([batch.seq, v])).unwrap();
        let argmax: Vec<u32> = got
            .data
            .chunks(v)
            .map(|row| (0..v).fold(0, |best, j| if row[j] > row[best] { j } else { best }) as u32)
            .collect();
        let want = ints(&t["argmax"]);
        agree += argmax.iter().zip(&want).filter(|(a, b)| a == b).count();
        positions += want.len();
        // The last position's 20 most likely tokens, logit by logit.
        let last = &got.data[(batch.seq - 1) * v..];
        for (id, logit) in ints(&t["last_top_ids"])
            .iter()
            .zip(floats(&t["last_top_logits"]))
        {
            let diff = (last[*id as usize] - logit).abs();
            assert!(
                diff < 2e-2 * logit.abs().max(1.0),
                "text {i}: logit of token {id}: {} vs {logit}",
                last[*id as usize]
            );
        }
    }
    let rate = agree as f64 / positions as f64;
    eprintln!(
        "Gemma 3 270M vs transformers: argmax agreement {agree}/{positions}, worst relative loss difference {worst_loss:.2e}"
    );
    assert!(
        rate >= 0.99,
        "argmax agreement {rate:.4} over {positions} positions"
    );
}
