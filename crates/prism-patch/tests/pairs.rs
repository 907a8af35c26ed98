//! feature-circuits' own pair files work unchanged: its `simple_train.json` with SmolLM2's
//! tokenizer, against the lines its `load_examples` keeps with the same tokenizer in
//! transformers (fixtures/pairs/feature-circuits, `scripts/make_fixtures.py --only pairs`).
//! Needs `prism fetch smollm2`; skipped with a message where it is absent (CI fetches it).

use prism_models::Model;
use prism_patch::{PairBatch, PatchOptions, nodes, patch, read_pairs};
use prism_testkit::{asset, fixtures};

/// Catches: the reader stopping at the first line with prompts of unequal token length (as it
/// did at line 2), lines left out that feature-circuits keeps (or kept that it leaves out), the
/// answers tokenised with special tokens, the counts of what was left out.
#[test]
fn feature_circuits_pair_files_read_as_its_loader_reads_them() {
    let Some(path) = asset("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2") else {
        return;
    };
    let model = Model::load(&path, &prism_core::device("cpu").unwrap()).unwrap();
    let dir = fixtures().join("pairs/feature-circuits");
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("simple_train.smollm2.json")).unwrap(),
    )
    .unwrap();
    let file = read_pairs(&dir.join("simple_train.json"), &model).unwrap();
    let kept = want["kept"].as_array().unwrap();
    let lines: Vec<usize> = kept
        .iter()
        .map(|k| k["line"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(file.lines, lines);
    let ids = |v: &serde_json::Value| -> Vec<u32> { serde_json::from_value(v.clone()).unwrap() };
    for (pair, k) in file.pairs.iter().zip(kept) {
        assert_eq!(pair.clean, ids(&k["clean"]), "line {}", k["line"]);
        assert_eq!(pair.corrupt, ids(&k["corrupt"]), "line {}", k["line"]);
        assert_eq!(
            (pair.answer as u64, pair.wrong as u64),
            (k["answer"].as_u64().unwrap(), k["wrong"].as_u64().unwrap())
        );
    }
    assert_eq!(
        file.skipped_unequal_lengths as u64,
        want["skipped_unequal_lengths"].as_u64().unwrap()
    );
    assert_eq!(
        file.skipped_multi_token_answers as u64,
        want["skipped_multi_token_answers"].as_u64().unwrap()
    );
    // Pairs of different lengths batch together (right-padded): the batch's clean and
    // corrupted metrics are the means of each pair's alone. (Every kept pair of this file is two
    // tokens long; two of feature-circuits' longer `nounpp` pairs join them.)
    let mut some: Vec<_> = file.pairs.iter().step_by(100).cloned().collect();
    for (clean, corrupt, answer, wrong) in [
        (
            "The teachers near the desk",
            "The teacher near the desk",
            " are",
            " is",
        ),
        (
            "The girl behind the tables",
            "The girls behind the tables",
            " has",
            " have",
        ),
    ] {
        some.push(
            prism_patch::PromptPair::from_texts(&model, clean, corrupt, answer, wrong).unwrap(),
        );
    }
    let lengths: std::collections::BTreeSet<usize> = some.iter().map(|p| p.clean.len()).collect();
    assert!(
        lengths.len() > 1,
        "the sample should mix lengths: {lengths:?}"
    );
    let shape = model.config().shape();
    let run = |pairs: &[prism_patch::PromptPair]| {
        let batch = PairBatch::new(pairs, model.pad_id()).unwrap();
        let ns = nodes(&shape, "blocks.0.hook_resid_pre".parse().unwrap(), 1).unwrap();
        let s = patch(&model, &batch, &ns, &PatchOptions::default(), |_, _| {}).unwrap();
        (s.clean, s.corrupt)
    };
    let together = run(&some);
    let alone: Vec<(f64, f64)> = some.iter().map(|p| run(std::slice::from_ref(p))).collect();
    let mean = |f: fn(&(f64, f64)) -> f64| alone.iter().map(f).sum::<f64>() / alone.len() as f64;
    assert!(
        (together.0 - mean(|a| a.0)).abs() < 1e-3,
        "clean: {together:?}"
    );
    assert!(
        (together.1 - mean(|a| a.1)).abs() < 1e-3,
        "corrupted: {together:?}"
    );
}
