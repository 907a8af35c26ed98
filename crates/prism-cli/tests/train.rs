//! `prism train`: several dictionaries from one cache, logs and checkpoints, exact resume,
//! training from a model stream, and errors.

use crate::common;

use std::path::{Path, PathBuf};

use common::{fixtures, ok, prism, prism_json, topk_train_args};

fn corpus(dir: &Path) -> PathBuf {
    let path = dir.join("corpus.txt");
    let text: String = (0..120)
        .map(|i| format!("Paragraph {i}: attention heads move information between positions, and the MLP layers write features into the residual stream.\n\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// `prism cache` of `tokens` rows of `blocks.1.hook_mlp_out` in windows of 32, plus `extra`.
fn cache(model: &Path, data: &Path, out: &Path, tokens: &str, extra: &[&str]) {
    cache_hooks(model, data, out, "blocks.1.hook_mlp_out", tokens, extra)
}

/// [`cache`] of the comma-separated `hooks`.
fn cache_hooks(model: &Path, data: &Path, out: &Path, hooks: &str, tokens: &str, extra: &[&str]) {
    let mut args = vec![
        "cache",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--hooks",
        hooks,
        "--tokens",
        tokens,
        "--ctx",
        "32",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    prism_json(&args);
}

/// `prism eval --json` of `dict` on `tokens` tokens of `data` in windows of 32, plus `extra`.
fn eval(
    model: &Path,
    data: &Path,
    dict: &Path,
    tokens: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--sae",
        dict.to_str().unwrap(),
        "--tokens",
        tokens,
        "--ctx",
        "32",
        "--json",
    ];
    args.extend_from_slice(extra);
    prism(&args)
}

fn log_losses(dir: &Path) -> Vec<f64> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

#[test]
fn trains_several_dictionaries_from_one_cache_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/llama_gqa");
    let data = corpus(tmp.path());
    let cache = tmp.path().join("cache");
    self::cache(&model, &data, &cache, "1200", &[]);
    let out = tmp.path().join("dicts");
    let json = prism_json(&[
        "train",
        "--cache",
        cache.to_str().unwrap(),
        "--hook",
        "blocks.1.hook_mlp_out",
        "--arch",
        "relu",
        "--dict-size",
        "128,256",
        "--l1",
        "0.01",
        "--tokens",
        "1024",
        "--batch",
        "64",
        "--warmup",
        "2",
        "--checkpoint-every",
        "4",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    let dicts = json["dictionaries"].as_array().unwrap();
    assert_eq!(dicts.len(), 2);
    for (d, m) in dicts.iter().zip([128, 256]) {
        assert_eq!(d["d_sae"], m);
        assert_eq!(d["steps"], 16);
        let dir = PathBuf::from(d["dir"].as_str().unwrap());
        for f in [
            "cfg.json",
            "sae_weights.safetensors",
            "checkpoint.safetensors",
            "log.jsonl",
        ] {
            assert!(dir.join(f).exists(), "{} misses {f}", dir.display());
        }
        let losses = log_losses(&dir);
        assert_eq!(losses.len(), 16);
        let (head, tail) = (
            losses[..3].iter().sum::<f64>(),
            losses[13..].iter().sum::<f64>(),
        );
        assert!(tail < head, "loss should fall: {losses:?}");
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("cfg.json")).unwrap()).unwrap();
        assert_eq!(cfg["hook_name"], "blocks.1.hook_mlp_out");
        assert_eq!(cfg["training_tokens"], 1024);
    }

    // Interrupted and resumed (TopK: no resampling schedule tied to the plan) equals straight.
    let train = |dir: &Path, tokens: &str, resume: bool, extra: &[&str]| {
        let mut args = vec!["--seed", "5"];
        args.extend_from_slice(extra);
        train_topk(&cache, dir, tokens, resume, &args)
    };
    let straight = tmp.path().join("straight");
    train(&straight, "1024", false, &[]);
    let resumed = tmp.path().join("resumed");
    train(&resumed, "448", false, &[]);
    train(&resumed, "1024", true, &[]);
    let a = std::fs::read(straight.join("sae_weights.safetensors")).unwrap();
    let b = std::fs::read(resumed.join("sae_weights.safetensors")).unwrap();
    assert!(
        a == b,
        "resumed training differs from uninterrupted training"
    );
    assert_eq!(log_losses(&straight), log_losses(&resumed));

    // Started on the burn engine, resumed on the host kernels from its checkpoint: the same
    // training to within the engines' rounding.
    let moved = tmp.path().join("moved");
    let first = train(&moved, "448", false, &["--engine", "burn"]);
    assert_eq!(first["engine"], "burn");
    let then = train(&moved, "1024", true, &["--engine", "host"]);
    assert_eq!(then["engine"], "host");
    let (want, got) = (log_losses(&straight), log_losses(&moved));
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-3 * b.abs(), "losses {got:?} vs {want:?}");
    }
    // CUDA in a build without the `cuda` feature: a clear error naming the feature.
    if !cfg!(feature = "cuda") {
        let out = prism(&[
            "train",
            "--cache",
            cache.to_str().unwrap(),
            "--hook",
            "blocks.1.hook_mlp_out",
            "--dict-size",
            "96",
            "--device",
            "cuda",
            "--out",
            tmp.path().join("cuda").to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--features cuda"), "{err}");
    }

    // A checkpoint for another width is refused before training starts.
    let mut args = topk_train_args(&cache, &resumed, 8, 96, "1024", 64);
    args.extend(["--warmup", "2", "--seed", "6", "--resume"].map(String::from));
    let bad = prism(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("another configuration"));
}

#[test]
fn trains_from_a_model_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/gpt_neox_parallel");
    let data = corpus(tmp.path());
    let out = tmp.path().join("d");
    let json = prism_json(&[
        "train",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--hook",
        "blocks.0.hook_resid_post",
        "--arch",
        "topk",
        "--k",
        "4",
        "--dict-size",
        "64",
        "--tokens",
        "512",
        "--batch",
        "32",
        "--ctx",
        "16",
        "--n-ctxs",
        "8",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(json["dictionaries"][0]["steps"], 16);
    let sae = prism_sae::Sae::load(&out, &prism_core::device("cpu").unwrap()).unwrap();
    assert_eq!(sae.architecture().k(), Some(4));
    // The record of the training data: every window the buffer took from the stream (at
    // least the 512 trained tokens' worth, 16 tokens each, in corpus order).
    let t = prism_cache::TrainingData::from_cfg(sae.extra_cfg())
        .unwrap()
        .unwrap();
    assert!(t.windows * 16 >= 512, "{t:?}");
    assert_eq!(t.corpus_tokens_end, t.windows * 16);
    assert!(t.same_corpus(&data) && t.cache_manifest_sha256.is_none());
    let bad = prism(&[
        "train",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--hook",
        "blocks.9.hook_resid_post",
        "--dict-size",
        "64",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("blocks.9.hook_resid_post"));
}

#[test]
fn evaluation_never_reuses_the_text_a_dictionary_was_trained_on() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/llama_gqa");
    let data = corpus(tmp.path());
    let cache = tmp.path().join("cache");
    // 20 windows of 32 tokens through a seeded shuffle buffer of 4 windows: any of the first
    // 23 windows in corpus order may be in the cache.
    self::cache(
        &model,
        &data,
        &cache,
        "640",
        &["--seed", "7", "--shuffle-windows", "4"],
    );
    let store = prism_cache::ActivationStore::open(&cache).unwrap();
    let corpus_order: Vec<Vec<u32>> = {
        let m = prism_models::Model::load(&model, &prism_core::device("cpu").unwrap()).unwrap();
        let c = prism_cache::Corpus::open(&data, "text").unwrap();
        let w = prism_cache::WindowConfig {
            ctx: 32,
            ..Default::default()
        };
        prism_cache::windows(&c, &m.tokenizer, w)
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let furthest = (0..store.len())
        .map(|row| {
            let (window, _) = store.context(row).unwrap();
            corpus_order
                .iter()
                .position(|w| *w == window)
                .expect("a corpus window")
        })
        .max()
        .unwrap();
    // 20 distinct windows among the first 23: the furthest is window 19 to 22.
    assert!(
        (19..23).contains(&furthest),
        "the shuffle reaches window {furthest}"
    );

    // Trained on fewer rows than the cache holds: the rows still come from all of it.
    let dict = tmp.path().join("dict");
    prism_json(&[
        "train",
        "--cache",
        cache.to_str().unwrap(),
        "--hook",
        "blocks.1.hook_mlp_out",
        "--arch",
        "relu",
        "--dict-size",
        "64",
        "--tokens",
        "256",
        "--batch",
        "64",
        "--out",
        dict.to_str().unwrap(),
        "--json",
    ]);
    let sae = prism_sae::Sae::load(&dict, &prism_core::device("cpu").unwrap()).unwrap();
    assert_eq!(sae.extra_cfg()["training_tokens"], 256);
    let t = prism_cache::TrainingData::from_cfg(sae.extra_cfg())
        .unwrap()
        .unwrap();
    assert_eq!((t.windows, t.corpus_tokens_end), (20, 23 * 32));
    assert_eq!(t.cache_manifest_sha256.as_ref().map(String::len), Some(64));

    let eval = |extra: &[&str]| eval(&model, &data, &dict, "64", extra);
    // By default evaluation starts after every window the cache may hold.
    let j = ok(eval(&[]));
    assert_eq!(j["skipped_windows"], 23);
    assert!(j["skipped_windows"].as_u64().unwrap() as usize > furthest);
    // Skipping only the trained tokens' windows (the old rule) is refused, unless asked for.
    let refused = eval(&["--skip-windows", "8"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("reuse training text"));
    assert_eq!(
        ok(eval(&["--skip-windows", "8", "--allow-overlap"]))["skipped_windows"],
        8
    );
    // A dictionary that does not say what it was trained on is refused too.
    prism_sae::Sae::record_in_cfg(
        &dict,
        prism_cache::TRAINING_DATA_KEY,
        serde_json::Value::Null,
    )
    .unwrap();
    let unknown = eval(&[]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("--allow-overlap"));
}

#[test]
fn trains_epochs_measures_convergence_on_held_out_rows_and_plots_curves() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/llama_gqa");
    let data = corpus(tmp.path());
    let cache = tmp.path().join("cache");
    self::cache(&model, &data, &cache, "1200", &[]);
    // 944 rows to train on (256 held out): 14 full batches of 64 an epoch, so 48 steps run
    // into a fourth epoch. TopK: its schedule does not depend on the planned length, so a run
    // stopped at step 20 (inside the second epoch) can resume to 48.
    let train = |dir: &Path, tokens: &str, resume: bool| {
        let args = ["--seed", "1,2", "--held-out-tokens", "256"];
        train_topk(&cache, dir, tokens, resume, &args)
    };
    let straight = tmp.path().join("straight");
    let json = train(&straight, "3072", false);
    let dirs: Vec<PathBuf> = json["dictionaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| PathBuf::from(d["dir"].as_str().unwrap()))
        .collect();
    assert_eq!(dirs.len(), 2);
    let log = |dir: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("log.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let entries = log(&dirs[0]);
    assert_eq!(entries.len(), 48, "48 steps over four epochs");
    // Measured from the 4th step at 256 · √2^k tokens (a step is 64), and after the last step.
    let measured: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| !e["held_out"].is_null())
        .collect();
    let steps: Vec<u64> = measured
        .iter()
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [4, 6, 8, 12, 16, 23, 32, 46, 48]);
    let last = measured.last().unwrap();
    let h = &last["held_out"];
    assert_eq!(last["step"], 48);
    assert_eq!(h["rows"], 256);
    let mmcs = h["mmcs_seeds"].as_f64().unwrap();
    assert!(mmcs > 0.0 && mmcs <= 1.0 + 1e-6, "{h}");
    assert!(h["l0"].as_f64().unwrap() <= 8.0 + 1e-9, "TopK keeps 8: {h}");

    // Stopped inside the second epoch and resumed: the same batches, the same dictionaries.
    let resumed = tmp.path().join("resumed");
    train(&resumed, "1280", false);
    train(&resumed, "3072", true);
    for dir in &dirs {
        let name = dir.file_name().unwrap();
        let a = std::fs::read(dir.join("sae_weights.safetensors")).unwrap();
        let b = std::fs::read(resumed.join(name).join("sae_weights.safetensors")).unwrap();
        assert!(a == b, "{name:?}: resumed across epochs differs");
    }
    // The same steps; the resumed log also holds the measurement taken where the first run
    // stopped.
    let again = resumed.join(dirs[0].file_name().unwrap());
    assert_eq!(log_losses(&again), log_losses(&dirs[0]));
    let at = |e: &Vec<serde_json::Value>, step: u64| e[step as usize - 1]["held_out"].clone();
    assert_eq!(at(&log(&again), 46), at(&entries, 46));
    assert!(!at(&log(&again), 20).is_null());

    // `prism curves` plots every measurement the logs hold, PNG and SVG.
    let curves = tmp.path().join("curves");
    let out = prism_json(&[
        "curves",
        straight.to_str().unwrap(),
        "--out",
        curves.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out["runs"].as_array().unwrap().len(), 2);
    assert_eq!(out["runs"][0]["held_out"], *h);
    for stem in [
        "fve",
        "l0",
        "dead",
        "dense",
        "mmcs_seeds",
        "mmcs_seeds_alive",
        "train_loss",
    ] {
        let png = curves.join(format!("{stem}.png"));
        assert!(std::fs::metadata(&png).unwrap().len() > 1000, "{stem}");
        assert!(png.with_extension("svg").exists(), "{stem}");
    }
    // Held-out rows are the cache's: a model stream has none.
    let bad = prism(&[
        "train",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--hook",
        "blocks.1.hook_mlp_out",
        "--dict-size",
        "96",
        "--held-out-tokens",
        "64",
        "--out",
        tmp.path().join("stream").to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--held-out-tokens needs --cache"));
}

/// `prism train` of a small TopK dictionary (k 8, 96 features, batches of 64) on `cache`'s
/// `blocks.1.hook_mlp_out` into `dir`, with `extra` arguments; its JSON summary.
fn train_topk(
    cache: &Path,
    dir: &Path,
    tokens: &str,
    resume: bool,
    extra: &[&str],
) -> serde_json::Value {
    let mut args = topk_train_args(cache, dir, 8, 96, tokens, 64);
    args.extend(["--warmup", "2", "--json"].map(String::from));
    if resume {
        args.push("--resume".into());
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    prism_json(&args)
}

/// Transcoders from one cache of two hooks: `--hook` the MLP's normalised input, `--hook-out`
/// its output (and `--skip`), saved in SAELens' transcoder layout with both hooks, evaluated by
/// `prism eval` with the MLP replaced. A transcoder that learned from the wrong pairing (its own
/// input as target, the hooks swapped) explains little of the MLP's output, which the FVE
/// bound catches; the skip transcoder's linear term explains more still.
#[test]
fn trains_transcoders_from_a_cache_of_two_hooks() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/llama_gqa");
    let data = corpus(tmp.path());
    let cache = tmp.path().join("cache");
    let (input, output) = ("blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out");
    let hooks = format!("{input},{output}");
    cache_hooks(&model, &data, &cache, &hooks, "1600", &[]);
    let device = prism_core::device("cpu").unwrap();
    let mut fves = Vec::new();
    for skip in [false, true] {
        let dict = tmp.path().join(format!("tc{skip}"));
        let mut args = vec![
            "train",
            "--cache",
            cache.to_str().unwrap(),
            "--hook",
            input,
            "--hook-out",
            output,
            "--arch",
            "topk",
            "--k",
            "8",
            "--dict-size",
            "128",
            "--tokens",
            "40000",
            "--batch",
            "200",
            "--lr",
            "0.003",
            "--normalize",
            "--out",
            dict.to_str().unwrap(),
            "--json",
        ];
        if skip {
            args.push("--skip");
        } else {
            // Held-out convergence of a transcoder: its output against the MLP output's rows.
            args.extend(["--held-out-tokens", "200"]);
        }
        let json = prism_json(&args);
        if !skip {
            let log = prism_sae::train::read_log(&dict).unwrap();
            let last = log.iter().rev().find_map(|e| e.held_out.clone()).unwrap();
            assert_eq!(last.rows, 200);
            // Measured 0.80 (on held-out rows of the cache; `prism eval` below is on new text).
            assert!(last.fve > 0.7, "{last:?}");
        }
        let d = &json["dictionaries"][0];
        assert_eq!(
            (d["hook"].as_str(), d["hook_out"].as_str()),
            (Some(input), Some(output))
        );
        assert_eq!(d["skip"], skip);
        let t = prism_sae::Transcoder::load(&dict, &device).unwrap();
        assert_eq!(
            (t.hook_name(), t.hook_name_out()),
            (Some(input), Some(output))
        );
        assert_eq!(t.skip().is_some(), skip);
        let eval = ok(eval(&model, &data, &dict, "256", &[]));
        assert_eq!(eval["hook_out"], output, "{eval}");
        eprintln!("skip {skip}: {eval}");
        fves.push(eval["frac_variance_explained"].as_f64().unwrap());
    }
    // Measured: 0.80 without skip, 0.85 with (the MLP replaced, the loss recovered 0.93 / 0.87).
    assert!(fves[0] > 0.7, "{fves:?}");
    assert!(fves[1] > fves[0], "{fves:?}");
}
