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

/// A tiny GGUF per family, written by gguf-py as llama.cpp's converter lays each architecture out
/// (its keys and tensor names; Llama's q/k rows interleaved, Gemma's norms stored as `1 + w`,
/// Phi-3's fused `attn_qkv` and gate | up `ffn_up`, Llama 3's scaling as `rope_freqs.weight`),
/// gives the logits of `transformers` running the HF fixture it was written from
/// (scripts/make_fixtures.py, `family_ggufs`; the reference's config changed only where a GGUF
/// cannot state the HF config's: Mistral's and Qwen 2's windows, Gemma 2/3's score scale,
/// Gemma 3's layer pattern). Catches a family's GGUF keys read wrongly, rows left permuted, norms
/// shifted twice or not at all, a fused matrix split wrongly, rope divisors not applied.
#[test]
fn a_gguf_of_every_family_written_by_gguf_py_gives_the_hf_fixture_logits() {
    use prism_core::{Hooks, HostTensor};
    use prism_models::{Architecture, AttentionSpan, Model, TokenBatch};
    let device = prism_core::device("cpu").unwrap();
    let families = [
        ("llama3", Architecture::Llama),
        ("mistral", Architecture::Llama),
        ("qwen2", Architecture::Qwen2),
        ("qwen3", Architecture::Qwen3),
        ("gemma", Architecture::Gemma),
        ("gemma2", Architecture::Gemma2),
        ("gemma3", Architecture::Gemma3),
        ("phi3", Architecture::Phi3),
        ("olmo2", Architecture::Olmo2),
    ];
    for (name, architecture) in families {
        let dir = fixtures().join("gguf");
        let model = Model::load(&dir.join(format!("{name}_tiny.gguf")), &device)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let cfg = model.config();
        assert_eq!(cfg.architecture, architecture, "{name}");
        let want =
            prism_core::read_safetensors(&dir.join(format!("{name}_tiny_reference.safetensors")))
                .unwrap();
        let reference = reference(name);
        for (i, ids) in reference.tokens.iter().enumerate() {
            let batch = TokenBatch::from_sequences(std::slice::from_ref(ids), 0).unwrap();
            let logits = model
                .forward(&batch, &Hooks::new())
                .unwrap()
                .logits()
                .unwrap();
            let got = HostTensor::from_burn(logits.reshape([batch.seq, cfg.vocab_size])).unwrap();
            let diff = max_abs_diff(&got.data, &want[&format!("logits_{i}")].data);
            assert!(diff < 1e-4, "{name} text {i}: max |Δlogit| = {diff}");
            // A byte-level BPE vocabulary (`gpt2`) tokenizes as the HF tokenizer it came from.
            if !name.starts_with("gemma") {
                let got = model.tokenizer.encode(&reference.texts[i]).unwrap();
                assert_eq!(&got, ids, "{name} text {i}: token ids");
            }
        }
        // The SentencePiece vocabulary built from a Gemma file spells text back.
        let text = "The quick brown fox jumps over the lazy dog";
        let ids = model.tokenizer.encode(text).unwrap();
        assert_eq!(model.tokenizer.decode(&ids).unwrap(), text, "{name}");
    }
    // Spans as llama.cpp fixes them: Gemma 2 local from the first layer, every other one;
    // Gemma 3 five local to one global (all four local here); Phi-3 every layer.
    let spans = |name: &str| {
        let model =
            Model::load(&fixtures().join(format!("gguf/{name}_tiny.gguf")), &device).unwrap();
        let cfg = model.config();
        (0..cfg.n_layers).map(|l| cfg.span(l)).collect::<Vec<_>>()
    };
    let (local, global) = (AttentionSpan::Sliding(4), AttentionSpan::Global);
    assert_eq!(spans("gemma2"), [local, global, local]);
    assert_eq!(spans("gemma3"), [local; 4]);
    assert_eq!(spans("phi3"), [AttentionSpan::Sliding(6); 2]);
    assert_eq!(spans("qwen2"), [global; 2]);
}

/// GGUF files Prism cannot read say why: another architecture lists the ones it reads, an
/// unknown rope scaling lists the known ones, rope divisors of the wrong length are refused.
#[test]
fn unsupported_gguf_architectures_and_rope_are_clear_errors() {
    let src = GgufFile::open(&fixtures().join("gguf/qwen3_tiny.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let device = prism_core::device("cpu").unwrap();
    let load_from = |path: &std::path::Path, edit: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = std::fs::read(path).unwrap();
        edit(&mut bytes);
        let p = dir.path().join("edited.gguf");
        std::fs::write(&p, bytes).unwrap();
        match prism_models::Model::load(&p, &device) {
            Ok(_) => panic!("an edited file was accepted"),
            Err(e) => e.to_string(),
        }
    };
    let load = |edit: &dyn Fn(&mut Vec<u8>)| load_from(src.path(), edit);
    // Same-length renames keep every offset valid.
    let replace = |from: &str, to: &str| {
        let (from, to) = (from.as_bytes().to_vec(), to.as_bytes().to_vec());
        move |b: &mut Vec<u8>| {
            let mut i = 0;
            while let Some(at) = b[i..].windows(from.len()).position(|w| w == from) {
                b[i + at..i + at + to.len()].copy_from_slice(&to);
                i += at + from.len();
            }
        }
    };
    let e = load(&replace("qwen3", "mpt99"));
    assert!(
        e.contains("`mpt99`")
            && e.contains("llama, qwen2, qwen3, gemma, gemma2, gemma3, phi3, olmo2"),
        "{e}"
    );
    let mistral = fixtures().join("gguf/mistral_tiny.gguf");
    let e = load_from(&mistral, &replace("linear", "longro"));
    assert!(
        e.contains("rope.scaling.type `longro` is not supported")
            && e.contains("(none, linear, yarn)"),
        "{e}"
    );
    // Llama 3's 12 divisors (24 rotated dims) against a claim of 8 rotated dims.
    let llama3 = fixtures().join("gguf/llama3_tiny.gguf");
    let e = load_from(&llama3, &|b: &mut Vec<u8>| {
        let key = b"llama.rope.dimension_count";
        let at = b.windows(key.len()).position(|w| w == key).unwrap() + key.len();
        assert_eq!(b[at..at + 4], 4u32.to_le_bytes(), "a u32 value");
        b[at + 4..at + 8].copy_from_slice(&8u32.to_le_bytes());
    });
    assert!(
        e.contains("rope frequency divisors: 12 for 8 rotary dims"),
        "{e}"
    );
}
