//! GGUF reading: every supported tensor type against gguf-py's dequantisation, and bad files.

use crate::common;

use common::*;
use prism_core::PrismError;
use prism_models::GgufFile;

#[test]
fn every_quant_type_matches_gguf_py() {
    let g = GgufFile::open(&fixtures().join("gguf/quants.gguf")).unwrap();
    let refs = prism_core::read_safetensors(&fixtures().join("gguf/quants_reference.safetensors"))
        .unwrap();
    assert_eq!(
        refs.len(),
        11,
        "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K"
    );
    for (name, want) in &refs {
        let got = g.tensor(name).unwrap();
        assert_eq!(got.shape, want.shape, "{name}");
        let diff = max_abs_diff(&got.data, &want.data);
        assert!(diff <= 1e-6, "{name}: max |Δ| = {diff}");
    }
}

fn tiny_gguf(type_id: u32, data_len: usize) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(b"GGUF");
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(0u64.to_le_bytes()); // metadata
    b.extend((1u64).to_le_bytes());
    b.extend(b"x");
    b.extend(1u32.to_le_bytes());
    b.extend(32u64.to_le_bytes());
    b.extend(type_id.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    while b.len() % 32 != 0 {
        b.push(0);
    }
    b.extend(std::iter::repeat_n(0u8, data_len));
    b
}

#[test]
fn unknown_tensor_type_is_a_typed_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("odd.gguf");
    std::fs::write(&p, tiny_gguf(99, 128)).unwrap();
    let g = GgufFile::open(&p).unwrap();
    let e = g.tensor("x").unwrap_err();
    assert!(matches!(e, PrismError::Gguf { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("odd.gguf") && msg.contains("type 99"), "{msg}");
    // A readable type works from the same hand-written layout.
    std::fs::write(&p, tiny_gguf(0, 128)).unwrap();
    assert_eq!(
        GgufFile::open(&p).unwrap().tensor("x").unwrap().data,
        vec![0.0; 32]
    );
}

#[test]
fn truncated_gguf_is_a_typed_error_at_every_cut() {
    let path = fixtures().join("gguf/quants.gguf");
    let full = std::fs::read(&path).unwrap();
    // The last tensor's last byte (alignment padding may follow it).
    let data_end = GgufFile::open(&path)
        .unwrap()
        .tensors
        .values()
        .map(|t| t.offset + t.n_bytes)
        .max()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.gguf");
    for cut in [0, 3, 10, 30, 100, 300, full.len() / 2, data_end - 1] {
        std::fs::write(&p, &full[..cut]).unwrap();
        let e = GgufFile::open(&p)
            .err()
            .unwrap_or_else(|| panic!("cut at {cut} was accepted"));
        assert!(matches!(e, PrismError::Gguf { .. }), "cut {cut}: {e}");
        assert!(e.to_string().contains("cut.gguf"), "{e}");
    }
    std::fs::write(&p, b"NOPE and more bytes than a header").unwrap();
    assert!(
        GgufFile::open(&p)
            .unwrap_err()
            .to_string()
            .contains("magic")
    );
}

/// A `gemma3` GGUF written by gguf-py as llama.cpp lays one out (its tensor names, Gemma's norms
/// stored as `1 + w`, a SentencePiece vocabulary) from the tiny Gemma 3 fixture gives the logits
/// of `transformers` loading the same file (scripts/make_fixtures.py, `tiny_gemma3_gguf`): the
/// config read from `gemma3.*` metadata (all four layers local: a GGUF fixes the pattern at one
/// global layer in six), the norms not shifted twice, q and k rows not un-permuted.
#[test]
fn a_gemma3_gguf_written_by_gguf_py_matches_transformers_loading_it() {
    use prism_core::{Hooks, HostTensor};
    use prism_models::{Architecture, AttentionSpan, Model, TokenBatch};
    let device = prism_core::device("cpu").unwrap();
    let model = Model::load(&fixtures().join("gguf/gemma3_tiny.gguf"), &device).unwrap();
    let cfg = model.config();
    assert_eq!(cfg.architecture, Architecture::Gemma3);
    assert!((0..4).all(|l| cfg.span(l) == AttentionSpan::Sliding(4)));
    let want =
        prism_core::read_safetensors(&fixtures().join("gguf/gemma3_tiny_reference.safetensors"))
            .unwrap();
    for (i, ids) in reference("gemma3").tokens.iter().enumerate() {
        let batch = TokenBatch::from_sequences(std::slice::from_ref(ids), 0).unwrap();
        let logits = model
            .forward(&batch, &Hooks::new())
            .unwrap()
            .logits()
            .unwrap();
        let got = HostTensor::from_burn(logits.reshape([batch.seq, cfg.vocab_size])).unwrap();
        let diff = max_abs_diff(&got.data, &want[&format!("logits_{i}")].data);
        assert!(diff < 1e-4, "text {i}: max |Δlogit| = {diff}");
    }
    // The SentencePiece vocabulary built from the file spells text back.
    let text = "The quick brown fox jumps over the lazy dog";
    let ids = model.tokenizer.encode(text).unwrap();
    assert_eq!(model.tokenizer.decode(&ids).unwrap(), text);
}
