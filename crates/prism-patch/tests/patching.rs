//! Exact activation patching against HF `transformers` with PyTorch forward hooks
//! (`scripts/make_fixtures.py --only patching`) on every tiny fixture architecture, for every
//! sweep kind; and the identities any patching must satisfy.

use crate::common;

use prism_patch::{PatchOptions, PromptPair, nodes, patch};

use common::{ARCHITECTURES, SWEEPS, assert_close, case};

#[test]
fn every_sweep_matches_pytorch_forward_hooks_on_every_architecture() {
    for name in ARCHITECTURES {
        let c = case(name);
        let shape = c.model.config().shape();
        let seq = c.pairs.clean.seq;
        for (sweep, key, direction) in SWEEPS {
            let options = PatchOptions {
                direction,
                rows_per_forward: 24,
                ..Default::default()
            };
            let ns = nodes(&shape, sweep.parse().unwrap(), seq).unwrap();
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
        &nodes(&shape, "blocks.0.hook_resid_pre".parse().unwrap(), seq).unwrap(),
        &PatchOptions::default(),
        |_, _| {},
    )
    .unwrap();
    // Patching a position where clean and corrupted tokens agree (0 here) changes nothing.
    assert!((s.results[0].value - s.corrupt).abs() < 1e-5);
    assert!(s.results[0].normalized.abs() < 1e-5);
    // Every position of blocks.0.hook_resid_pre at once: the whole clean run.
    let all = prism_patch::Node::new(
        prism_core::HookPoint::ResidPre(0),
        None,
        prism_patch::Unit::All,
    );
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
    let ns = nodes(&shape, "resid_post".parse().unwrap(), seq).unwrap();
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
    // prompts have different token lengths: left out and counted, as feature-circuits does.
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
    let file = prism_patch::read_pairs(&path, &c.model).unwrap();
    assert_eq!((file.pairs.len(), file.lines.clone()), (1, vec![1]));
    assert_eq!(
        (
            file.skipped_unequal_lengths,
            file.skipped_multi_token_answers
        ),
        (1, 0)
    );
    // An answer of several tokens, and nothing else: no usable pair.
    std::fs::write(
        &path,
        r#"{"clean_prefix": "The fox", "patch_prefix": "The fox", "clean_answer": "a b c d", "patch_answer": "b"}"#,
    )
    .unwrap();
    let e = prism_patch::read_pairs(&path, &c.model)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no usable prompt pairs")
            && e.contains("1 with an answer that is not one token"),
        "{e}"
    );
    std::fs::write(&path, "{\"clean_prefix\": 3}\n").unwrap();
    let e = prism_patch::read_pairs(&path, &c.model)
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 1"), "{e}");
    // An unknown hook and an out-of-vocabulary answer.
    let shape = c.model.config().shape();
    assert!(nodes(&shape, "blocks.9.hook_resid_pre".parse().unwrap(), 4).is_err());
    assert!("resid_middle".parse::<prism_patch::Sweep>().is_err());
    let mut bad = c.pairs.clone();
    bad.answer[0] = 1_000_000;
    let ns = nodes(&shape, "resid_pre".parse().unwrap(), c.pairs.clean.seq).unwrap();
    assert!(patch(&c.model, &bad, &ns, &PatchOptions::default(), |_, _| {}).is_err());
}

#[test]
fn template_pairs_pair_equal_lengths_with_one_token_answers_deterministically() {
    let c = case("gpt2");
    let words: Vec<(String, String)> = [
        ("ab", " a"),
        ("cd", " b"),
        ("ef", " c"),
        ("a long subject here", " d"),
        ("gh", " e"),
        ("ij", " f"),
        ("kl", " the whole answer"),
    ]
    .iter()
    .map(|(s, a)| (s.to_string(), a.to_string()))
    .collect();
    let pairs = prism_patch::template_pairs(&c.model, "The word {} means", &words, 100, 7).unwrap();
    assert!(!pairs.is_empty());
    let one = |t: &str| c.model.tokenizer.encode_plain(t).unwrap();
    let multi_token_answer = one(" the whole answer");
    assert!(multi_token_answer.len() > 1);
    for p in &pairs {
        assert_eq!(p.clean.len(), p.corrupt.len());
        assert_ne!(p.clean, p.corrupt);
        assert_ne!(p.answer, p.wrong);
        // The entry with a several-token answer is never used as clean.
        assert_ne!(p.clean, c.model.encode("The word kl means").unwrap());
        // Each pair's answer belongs to its clean prompt's subject.
        let subject = words
            .iter()
            .find(|(s, _)| c.model.encode(&format!("The word {s} means")).unwrap() == p.clean)
            .unwrap();
        assert_eq!(one(&subject.1), vec![p.answer]);
    }
    let again = prism_patch::template_pairs(&c.model, "The word {} means", &words, 100, 7).unwrap();
    assert_eq!(pairs, again);
    let two = prism_patch::template_pairs(&c.model, "The word {} means", &words, 2, 7).unwrap();
    assert_eq!(two.len(), 2);
    assert!(prism_patch::template_pairs(&c.model, "no slot", &words, 2, 7).is_err());
}
