//! Exact activation patching against HF `transformers` with PyTorch forward hooks
//! (`scripts/make_fixtures.py --only patching`) on every tiny fixture architecture, for every
//! sweep kind; and the identities any patching must satisfy.

use std::path::PathBuf;

use prism_core::HostTensor;
use prism_models::Model;
use prism_patch::{Direction, PairBatch, PatchOptions, PromptPair, nodes, patch};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

struct Case {
    model: Model,
    pairs: PairBatch,
    reference: std::collections::HashMap<String, HostTensor>,
}

fn case(name: &str) -> Case {
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

/// Within 1e-4 of the largest magnitude in the reference.
fn assert_close(got: &[f64], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs() as f64));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - *w as f64).abs() <= 1e-4 * scale,
            "{what}[{i}]: prism {g} vs transformers {w}"
        );
    }
}

#[test]
fn every_sweep_matches_pytorch_forward_hooks_on_every_architecture() {
    for name in [
        "gpt_neox_parallel",
        "gpt_neox_sequential",
        "gpt2",
        "llama_gqa",
        "llama_tied",
    ] {
        let c = case(name);
        let shape = c.model.config().shape();
        let seq = c.pairs.clean.seq;
        for (sweep, key, direction) in [
            ("resid_pre", "denoise_resid_pre", Direction::Denoise),
            ("attn_out", "denoise_attn_out", Direction::Denoise),
            ("mlp_out", "denoise_mlp_out", Direction::Denoise),
            ("resid_post", "denoise_resid_post", Direction::Denoise),
            ("z", "denoise_z", Direction::Denoise),
            ("neurons", "denoise_neurons", Direction::Denoise),
            ("resid_pre", "noise_resid_pre", Direction::Noise),
        ] {
            let options = PatchOptions {
                direction,
                rows_per_forward: 24,
                ..Default::default()
            };
            let ns = nodes(&shape, sweep, seq).unwrap();
            let s = patch(&c.model, &c.pairs, &ns, &options, |_, _| {}).unwrap();
            let what = format!("{name} {key}");
            assert_close(
                &[s.clean],
                &c.reference["clean"].data,
                &format!("{what} clean"),
            );
            assert_close(
                &[s.corrupt],
                &c.reference["corrupt"].data,
                &format!("{what} corrupt"),
            );
            let got: Vec<f64> = s.results.iter().map(|r| r.value).collect();
            // The reference is [layer][position | head | neuron], the order `nodes` gives.
            assert_close(&got, &c.reference[key].data, &what);
        }
    }
}

#[test]
fn patching_everything_or_nothing_gives_the_clean_or_the_corrupted_metric() {
    let c = case("llama_gqa");
    let shape = c.model.config().shape();
    let seq = c.pairs.clean.seq;
    let s = patch(
        &c.model,
        &c.pairs,
        &nodes(&shape, "blocks.0.hook_resid_pre", seq).unwrap(),
        &PatchOptions::default(),
        |_, _| {},
    )
    .unwrap();
    // Patching a position where clean and corrupted tokens agree (0 here) changes nothing.
    assert!((s.results[0].value - s.corrupt).abs() < 1e-5);
    assert!(s.results[0].normalized.abs() < 1e-5);
    // Every position of blocks.0.hook_resid_pre at once: the whole clean run.
    let all = prism_patch::Node {
        hook: prism_core::HookPoint::ResidPre(0),
        position: None,
        head: None,
        neuron: None,
    };
    let s = patch(
        &c.model,
        &c.pairs,
        &[all],
        &PatchOptions::default(),
        |_, _| {},
    )
    .unwrap();
    assert!((s.results[0].value - s.clean).abs() < 1e-4 * s.clean.abs().max(1.0));
    assert!((s.results[0].normalized - 1.0).abs() < 1e-4);
    // Batching does not change results: one node per pass equals many.
    let ns = nodes(&shape, "resid_post", seq).unwrap();
    let one = PatchOptions {
        rows_per_forward: 1,
        ..Default::default()
    };
    let a = patch(&c.model, &c.pairs, &ns, &one, |_, _| {}).unwrap();
    let b = patch(&c.model, &c.pairs, &ns, &PatchOptions::default(), |_, _| {}).unwrap();
    for (x, y) in a.results.iter().zip(&b.results) {
        assert!(
            (x.value - y.value).abs() < 1e-5,
            "{:?}: {} vs {}",
            x.node,
            x.value,
            y.value
        );
    }
}

#[test]
fn bad_pairs_are_typed_errors() {
    assert!(PromptPair::new(vec![1, 2, 3], vec![1, 2], 4, 5).is_err());
    let c = case("gpt2");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("pairs.jsonl");
    // Line 1 is fine (single-byte answers are single tokens in a byte-level BPE); line 2's
    // prompts have different token lengths.
    std::fs::write(
        &path,
        concat!(
            r#"{"clean_prefix": "The fox", "patch_prefix": "The fox", "clean_answer": "a", "patch_answer": "b", "case": "x"}"#,
            "\n",
            r#"{"clean_prefix": "The quick brown fox jumps", "patch_prefix": "A", "clean_answer": "a", "patch_answer": "b"}"#,
            "\n"
        ),
    )
    .unwrap();
    let e = prism_patch::read_pairs(&path, &c.model)
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2") && e.contains("tokens"), "{e}");
    // An answer of several tokens.
    std::fs::write(
        &path,
        r#"{"clean_prefix": "The fox", "patch_prefix": "The fox", "clean_answer": "a b c d", "patch_answer": "b"}"#,
    )
    .unwrap();
    let e = prism_patch::read_pairs(&path, &c.model)
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 1") && e.contains("exactly one"), "{e}");
    std::fs::write(&path, "{\"clean_prefix\": 3}\n").unwrap();
    let e = prism_patch::read_pairs(&path, &c.model)
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 1"), "{e}");
    // An unknown hook and an out-of-vocabulary answer.
    let shape = c.model.config().shape();
    assert!(nodes(&shape, "blocks.9.hook_resid_pre", 4).is_err());
    assert!(nodes(&shape, "resid_middle", 4).is_err());
    let mut bad = c.pairs.clone();
    bad.answer[0] = 1_000_000;
    let ns = nodes(&shape, "resid_pre", c.pairs.clean.seq).unwrap();
    assert!(patch(&c.model, &bad, &ns, &PatchOptions::default(), |_, _| {}).is_err());
}
