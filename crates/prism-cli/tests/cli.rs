//! The `prism` binary's contract (README's command table): `forward --json` / `--dump-logits`, `hooks`, errors.

use crate::common;

use std::path::{Path, PathBuf};

use common::{fixtures, prism, prism_json};

#[test]
fn forward_json_and_dumped_logits_match_transformers() {
    let dir = fixtures().join("models/llama_gqa");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let text = &reference["texts"][1];
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("logits.safetensors");
    let out = prism(&[
        "forward",
        "--model",
        dir.to_str().unwrap(),
        "--text",
        text["text"].as_str().unwrap(),
        "--json",
        "--dump-logits",
        dump.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["tokens"], text["tokens"]);
    let loss = json["loss"].as_f64().unwrap();
    assert!(
        (loss - text["loss"].as_f64().unwrap()).abs() < 1e-4,
        "loss {loss}"
    );
    let got = prism_core::read_safetensors(&dump).unwrap();
    let want = prism_core::read_safetensors(&dir.join("reference.safetensors")).unwrap();
    let (g, w) = (&got["logits"], &want["logits_1"]);
    assert_eq!(g.shape, w.shape);
    let diff = g
        .data
        .iter()
        .zip(&w.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-4, "dumped logits differ by {diff}");
}

#[test]
fn hooks_lists_every_hook_point_with_shapes() {
    let dir = fixtures().join("models/gpt_neox_parallel");
    let out = prism(&[
        "hooks",
        "--model",
        dir.to_str().unwrap(),
        "--seq",
        "5",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hooks = json["hooks"].as_array().unwrap();
    let shape_of = |name: &str| {
        hooks
            .iter()
            .find(|h| h["name"] == name)
            .map(|h| h["shape"].clone())
    };
    assert_eq!(
        shape_of("blocks.1.attn.hook_z"),
        Some(serde_json::json!([1, 5, 4, 16]))
    );
    assert_eq!(
        shape_of("blocks.0.attn.hook_pattern"),
        Some(serde_json::json!([1, 4, 5, 5]))
    );
    assert_eq!(
        shape_of("blocks.1.mlp.hook_post"),
        Some(serde_json::json!([1, 5, 256]))
    );
    assert_eq!(
        shape_of("blocks.0.hook_resid_mid"),
        None,
        "parallel residual has no resid_mid"
    );
    // embed + 2 layers × 9 hooks (no resid_mid) + ln_final
    assert_eq!(hooks.len(), 1 + 2 * 9 + 1);
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let out = prism(&["forward", "--model", "./no/such/model", "--text", "hi"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error:") && err.contains("no/such/model"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let dir = fixtures().join("models/gpt2");
    let out = prism(&[
        "forward",
        "--model",
        dir.to_str().unwrap(),
        "--text",
        "hi",
        "--device",
        "tpu",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tpu"));
}

#[test]
fn cache_harvests_a_corpus_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus.jsonl");
    let lines: Vec<String> = (0..40)
        .map(|i| serde_json::json!({"text": format!("Document {i}: the residual stream carries features forward.")}).to_string())
        .collect();
    std::fs::write(&corpus, lines.join("\n")).unwrap();
    let model = fixtures().join("models/llama_gqa");
    let out = tmp.path().join("cache");
    let run = |tokens: &str| {
        prism(&[
            "cache",
            "--model",
            model.to_str().unwrap(),
            "--data",
            corpus.to_str().unwrap(),
            "--hooks",
            "blocks.0.hook_resid_post,blocks.1.mlp.hook_post",
            "--tokens",
            tokens,
            "--ctx",
            "16",
            "--shard-windows",
            "4",
            "--dtype",
            "bf16",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ])
    };
    let first = run("100");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(json["tokens"], 100);
    assert_eq!(json["hooks"][1]["d"], 160);
    // Asking for more extends the same cache.
    let second = run("200");
    let json: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(
        (json["tokens"].as_u64(), json["new_tokens"].as_u64()),
        (Some(200), Some(100))
    );
    let store = prism_cache::ActivationStore::open(&out).unwrap();
    assert_eq!(store.len(), 200);
    assert_eq!(store.manifest.dtype, "bf16");
    // Unknown hook names are rejected before any work.
    let bad = prism(&[
        "cache",
        "--model",
        model.to_str().unwrap(),
        "--data",
        corpus.to_str().unwrap(),
        "--hooks",
        "blocks.0.hook_resid_postt",
        "--tokens",
        "10",
        "--out",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("blocks.0.hook_resid_postt"));
}

#[test]
fn similarity_and_eval_on_saelens_dictionaries() {
    let sae = fixtures().join("sae");
    let out = prism(&[
        "similarity",
        "--a",
        sae.join("standard").to_str().unwrap(),
        "--b",
        sae.join("standard").to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in ["mmcs_a_to_b", "mmcs_b_to_a", "matched_mean_cos"] {
        assert!((j[k].as_f64().unwrap() - 1.0).abs() < 1e-5, "{k}: {}", j[k]);
    }
    let out = prism(&[
        "similarity",
        "--a",
        sae.join("standard").to_str().unwrap(),
        "--b",
        sae.join("topk").to_str().unwrap(),
        "--json",
    ]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        j["mmcs_a_to_b"].as_f64().unwrap() < 0.9,
        "independent random dictionaries: {j}"
    );

    // A random 64→256 dictionary at blocks.0.hook_resid_post of the tiny Llama.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dict");
    write_dict(
        &dir,
        prism_sae::Architecture::TopK { k: 8 },
        256,
        "blocks.0.hook_resid_post",
        None,
    );
    let corpus = tmp.path().join("c.txt");
    std::fs::write(
        &corpus,
        "The residual stream carries features from layer to layer. ".repeat(30),
    )
    .unwrap();
    let model = fixtures().join("models/llama_gqa");
    let out = prism(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        corpus.to_str().unwrap(),
        "--sae",
        dir.to_str().unwrap(),
        "--tokens",
        "256",
        "--ctx",
        "32",
        "--allow-overlap",
        "--json",
        "--plot",
        tmp.path().join("density.png").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["tokens"], 256);
    assert_eq!(j["hook"], "blocks.0.hook_resid_post");
    assert!(tmp.path().join("density.png").exists() && tmp.path().join("density.svg").exists());
    assert!(
        j["l0"].as_f64().unwrap() <= 8.0 && j["l0"].as_f64().unwrap() > 0.0,
        "TopK k = 8: {}",
        j["l0"]
    );
    for k in [
        "mse",
        "l2_loss",
        "l1",
        "frac_variance_explained",
        "cossim",
        "l2_ratio",
        "relative_reconstruction_bias",
        "frac_alive",
        "loss_original",
        "loss_reconstructed",
        "loss_zero",
        "frac_recovered",
        "kl_div_with_sae",
        "kl_div_with_ablation",
        "kl_div_score",
    ] {
        assert!(
            j[k].as_f64().is_some_and(f64::is_finite),
            "{k} missing or not finite: {j}"
        );
    }
    assert!(
        j["frac_alive"].as_f64().unwrap() <= 1.0
            && j["kl_div_with_ablation"].as_f64().unwrap() > 0.0
    );
}

/// A browser data file (`prismData(name, JSON);`) as JSON.
fn browser_data(path: &std::path::Path) -> (String, serde_json::Value) {
    let text = std::fs::read_to_string(path).unwrap();
    let inner = text
        .trim()
        .strip_prefix("prismData(")
        .and_then(|t| t.strip_suffix(");"))
        .unwrap_or_else(|| panic!("{} is not a prismData call", path.display()));
    let comma = inner.find(", ").unwrap();
    let name: String = serde_json::from_str(&inner[..comma]).unwrap();
    (name, serde_json::from_str(&inner[comma + 2..]).unwrap())
}

#[test]
fn features_writes_a_browser_of_every_feature_and_a_json_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("c.txt");
    std::fs::write(
        &corpus,
        "Features <fire> on \"tokens\" & contexts; the residual stream carries them.\n".repeat(20),
    )
    .unwrap();
    let model = fixtures().join("models/llama_gqa");
    let dict_dir = tmp.path().join("dict");
    write_dict(
        &dict_dir,
        prism_sae::Architecture::Standard,
        32,
        "blocks.1.hook_resid_post",
        None,
    );
    let html = tmp.path().join("report.html");
    let run_features = |extra: &[&str]| {
        let mut args = vec![
            "features",
            "--model",
            model.to_str().unwrap(),
            "--data",
            corpus.to_str().unwrap(),
            "--sae",
            dict_dir.to_str().unwrap(),
            "--tokens",
            "320",
            "--ctx",
            "32",
            "--allow-overlap",
            "--out",
            html.to_str().unwrap(),
        ];
        args.extend(extra);
        prism(&args)
    };
    let out = run_features(&["--top", "3", "--radius", "4"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("const DATA = \"report.data\";"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["tokens"], 320);
    let features = json["features"].as_array().unwrap();
    assert_eq!(features.len(), 32, "every feature by default");
    let data = tmp.path().join("report.data");
    let (name, summary) = browser_data(&data.join("summary.js"));
    assert_eq!(name, "summary");
    assert_eq!(summary["features"].as_array().unwrap().len(), 32);
    assert_eq!(summary["radius"], 4);
    let (name, chunk) = browser_data(&data.join("f-0.js"));
    assert_eq!(name, "chunk:0");
    let (_, tokens) = browser_data(&data.join("tokens.js"));
    let (_, windows) = browser_data(&data.join("windows.js"));
    assert_eq!(
        windows.as_array().unwrap().len(),
        10,
        "320 tokens in windows of 32"
    );
    let chunk = chunk.as_array().unwrap();
    assert_eq!(chunk.len(), 32);
    let mut contexts = 0;
    for (f, summary_row) in chunk.iter().zip(features) {
        assert_eq!(f["id"], summary_row["feature"]);
        assert_eq!(f["fires"], summary_row["fires"]);
        let top = f["top"].as_array().unwrap();
        assert!(top.len() <= 3);
        for ex in top {
            // [window, position, activation, span start, span length, nonzero values]
            let [w, p, s, n] = [0, 1, 3, 4].map(|i| ex[i].as_u64().unwrap());
            assert_eq!(p - s, p.min(4), "centred on the peak");
            assert_eq!(s + n, (p + 5).min(32));
            let ids = windows[w as usize].as_array().unwrap();
            assert_eq!(ids.len(), 32);
            for id in ids {
                assert!(
                    tokens.get(id.to_string()).is_some(),
                    "token {id} has no text"
                );
            }
            contexts += 1;
        }
    }
    assert!(contexts > 0);
    // The corpus's markup characters come back as text, not markup.
    let texts: String = tokens
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        texts.contains('<') && texts.contains('&') && texts.contains('"'),
        "{texts}"
    );
    // `--features` picks features; `--compare` lists each one's nearest in another dictionary.
    let out = run_features(&[
        "--features",
        "3,30",
        "--compare",
        dict_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, chunk) = browser_data(&data.join("f-0.js"));
    let ids: Vec<u64> = chunk
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [3, 30]);
    // Against itself, a feature's nearest in the other dictionary is itself, cosine 1.
    for f in chunk.as_array().unwrap() {
        assert_eq!(f["other"][0][0], f["id"]);
        assert!((f["other"][0][1].as_f64().unwrap() - 1.0).abs() < 1e-3);
        assert_ne!(
            f["near"][0][0], f["id"],
            "itself left out of its own dictionary's list"
        );
    }
}

/// A deterministic SAELens-layout dictionary `64 → m` at `hook` of the tiny Llama.
fn window(ctx: usize) -> prism_cache::WindowConfig {
    prism_cache::WindowConfig {
        ctx,
        ..Default::default()
    }
}

fn write_dict(
    dir: &std::path::Path,
    arch: prism_sae::Architecture,
    m: usize,
    hook: &str,
    training_data: Option<serde_json::Value>,
) {
    let device = prism_core::device("cpu").unwrap();
    let v = |n: usize, s: u64| -> Vec<f32> {
        (0..n)
            .map(|i| ((((i as u64 + 1) * 2654435761 + s) % 1009) as f32 / 1009.0 - 0.5) * 0.5)
            .collect()
    };
    let t = |n: usize, shape: [usize; 2], s: u64| {
        burn::tensor::Tensor::<2>::from_data(burn::tensor::TensorData::new(v(n, s), shape), &device)
    };
    let mut extra = serde_json::Map::new();
    if let Some(t) = training_data {
        extra.insert(prism_cache::TRAINING_DATA_KEY.into(), t);
    }
    let mut sae = prism_sae::Sae::new(
        arch,
        t(64 * m, [64, m], 1),
        t(m, [1, m], 2),
        t(m * 64, [m, 64], 3),
        burn::tensor::Tensor::zeros([1, 64], &device),
    )
    .unwrap();
    sae.set_hook_name(Some(hook.into()));
    sae.set_extra_cfg(extra);
    sae.save(dir).unwrap();
}

#[test]
fn prune_removes_features_and_eval_holds_out_training_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/llama_gqa");
    let corpus = tmp.path().join("c.txt");
    std::fs::write(
        &corpus,
        "The residual stream carries features from layer to layer. ".repeat(30),
    )
    .unwrap();
    let dict = tmp.path().join("dict");
    // Trained on the first 2 windows of 32 tokens of this corpus, in corpus order.
    let trained_on = prism_cache::TrainingData::stream(&corpus, &window(32), 2);
    write_dict(
        &dict,
        prism_sae::Architecture::Standard,
        128,
        "blocks.0.hook_resid_post",
        Some(trained_on.to_json()),
    );
    let base = |cmd: &'static str| -> Vec<String> {
        [
            cmd,
            "--model",
            model.to_str().unwrap(),
            "--data",
            corpus.to_str().unwrap(),
            "--sae",
            dict.to_str().unwrap(),
            "--tokens",
            "128",
            "--ctx",
            "32",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |mut a: Vec<String>, extra: &[&str]| -> serde_json::Value {
        a.extend(extra.iter().map(|s| s.to_string()));
        prism_json(&a)
    };
    // The 2 training windows are skipped by default; starting inside them is refused unless
    // asked for.
    let default = run(base("eval"), &[]);
    assert_eq!(default["skipped_windows"], 2);
    assert_eq!(
        default["loss_original"],
        run(base("eval"), &["--skip-windows", "2"])["loss_original"]
    );
    let mut inside = base("eval");
    inside.extend(["--skip-windows", "1"].map(String::from));
    let refs: Vec<&str> = inside.iter().map(String::as_str).collect();
    let refused = prism(&refs);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("reuse training text"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_ne!(
        default["loss_original"],
        run(base("eval"), &["--skip-windows", "0", "--allow-overlap"])["loss_original"]
    );

    let pruned = tmp.path().join("pruned");
    let j = run(
        base("prune"),
        &["--top-n", "16", "--out", pruned.to_str().unwrap()],
    );
    assert_eq!(
        (j["removed"].as_u64(), j["kept"].as_u64()),
        (Some(16), Some(112))
    );
    assert!(j["after"]["l0"].as_f64().unwrap() < j["before"]["l0"].as_f64().unwrap());
    let back = prism_sae::Sae::load(&pruned, &prism_core::device("cpu").unwrap()).unwrap();
    assert_eq!(prism_core::Dictionary::d_sae(&back), 112);
    let j = run(
        base("prune"),
        &["--max-density", "0.5", "--out", pruned.to_str().unwrap()],
    );
    // Every removed feature fired on more than half of the tokens, so L0 falls by more than
    // half a feature per removed feature (by exactly their densities summed).
    let removed = j["removed"].as_u64().unwrap();
    assert!(
        removed > 0,
        "the rule should remove the densest features: {j}"
    );
    assert_eq!(removed + j["kept"].as_u64().unwrap(), 128);
    let (before, after) = (
        j["before"]["l0"].as_f64().unwrap(),
        j["after"]["l0"].as_f64().unwrap(),
    );
    assert!(
        after < before - 0.5 * removed as f64,
        "L0 {before} → {after} after removing {removed} features denser than 0.5"
    );
    // Two rules at once are refused.
    let mut both = base("prune");
    both.extend(["--top-n", "1", "--max-density", "0.1", "--out", "x"].map(String::from));
    let refs: Vec<&str> = both.iter().map(String::as_str).collect();
    assert!(!prism(&refs).status.success());
}

/// Every command that takes a dictionary reads dictionary_learning's files too: an `ae.pt` in
/// a trainer directory (the hook from its config.json) or a bare `ae.pt` (the hook from
/// `--hook`), made by the dictionary-learning package itself.
#[test]
fn dictionary_learning_files_work_wherever_a_dictionary_is_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/llama_tied");
    let corpus = tmp.path().join("c.txt");
    std::fs::write(
        &corpus,
        "Dictionaries from other tools load as they are. ".repeat(40),
    )
    .unwrap();
    let trainer_dir = fixtures().join("ae/pipeline_resid0");
    let common = |cmd: &'static str, sae: &Path| -> Vec<String> {
        [
            cmd,
            "--model",
            model.to_str().unwrap(),
            "--data",
            corpus.to_str().unwrap(),
            "--sae",
            sae.to_str().unwrap(),
            "--tokens",
            "96",
            "--ctx",
            "32",
            "--allow-overlap",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let from_dir = prism_json(&common("eval", &trainer_dir));
    assert_eq!(from_dir["hook"], "blocks.0.hook_resid_post");
    // The file alone (no config.json beside it) needs --hook; it gives the same numbers.
    let lone = tmp.path().join("lone.pt");
    std::fs::copy(trainer_dir.join("ae.pt"), &lone).unwrap();
    let mut bare = common("eval", &lone);
    assert!(
        !prism(&bare.iter().map(String::as_str).collect::<Vec<_>>())
            .status
            .success()
    );
    bare.extend(["--hook".to_string(), "blocks.0.hook_resid_post".to_string()]);
    let from_file = prism_json(&bare);
    assert_eq!(from_dir["mse"], from_file["mse"]);
    assert_eq!(from_dir["frac_recovered"], from_file["frac_recovered"]);
    let mut prune = common("prune", &trainer_dir);
    let pruned = tmp.path().join("pruned");
    prune.extend(["--top-n", "4", "--out", pruned.to_str().unwrap()].map(String::from));
    assert_eq!(prism_json(&prune)["kept"], 60);
    let html = tmp.path().join("f.html");
    let mut features = common("features", &trainer_dir);
    features.extend(
        [
            "--features",
            "0,5,9",
            "--top",
            "2",
            "--out",
            html.to_str().unwrap(),
        ]
        .map(String::from),
    );
    prism_json(&features);
    assert!(html.exists());
    // A dictionary_learning file against its own pruned SAELens copy: every pruned feature is
    // one of the original's.
    let s = prism_json(&[
        "similarity",
        "--a",
        pruned.to_str().unwrap(),
        "--b",
        trainer_dir.join("ae.pt").to_str().unwrap(),
        "--json",
    ]);
    assert!(
        (s["mmcs_a_to_b"].as_f64().unwrap() - 1.0).abs() < 1e-5,
        "{s}"
    );
}

/// `prism fetch` takes several assets and fetches them in order, skipping what is present (so
/// this needs no network once CI's fetch has run): one path per asset on stdout, in order.
#[test]
fn fetch_takes_several_assets_in_order() {
    let (Some(model), Some(docs)) = (
        prism_testkit::asset("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2"),
        prism_testkit::asset("python-docs", "python-docs"),
    ) else {
        return;
    };
    let assets = prism_testkit::assets_dir();
    let dir = assets.to_str().unwrap();
    let out = prism(&["fetch", "python-docs", "smollm2", "--dir", dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<PathBuf> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(PathBuf::from)
        .collect();
    assert_eq!(printed, [docs, model]);
    // No asset at all is a usage error, not a silent success.
    assert_eq!(prism(&["fetch"]).status.code(), Some(2));
}
