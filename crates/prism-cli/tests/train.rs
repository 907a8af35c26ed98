//! `prism train`: several dictionaries from one cache, logs and checkpoints, exact resume,
//! training from a model stream, and errors.

mod common;

use std::path::{Path, PathBuf};

use common::{fixtures, prism};

fn ok(out: std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn corpus(dir: &Path) -> PathBuf {
    let path = dir.join("corpus.txt");
    let text: String = (0..120)
        .map(|i| format!("Paragraph {i}: attention heads move information between positions, and the MLP layers write features into the residual stream.\n\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
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
    ok(prism(&[
        "cache",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--hooks",
        "blocks.1.hook_mlp_out",
        "--tokens",
        "1200",
        "--ctx",
        "32",
        "--out",
        cache.to_str().unwrap(),
        "--json",
    ]));
    let out = tmp.path().join("dicts");
    let json = ok(prism(&[
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
    ]));
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
    let train = |dir: &Path, tokens: &str, resume: bool| {
        let mut args = vec![
            "train",
            "--cache",
            cache.to_str().unwrap(),
            "--hook",
            "blocks.1.hook_mlp_out",
            "--arch",
            "topk",
            "--k",
            "8",
            "--dict-size",
            "96",
            "--tokens",
            tokens,
            "--batch",
            "64",
            "--warmup",
            "2",
            "--seed",
            "5",
            "--out",
            dir.to_str().unwrap(),
            "--json",
        ];
        if resume {
            args.push("--resume");
        }
        ok(prism(&args))
    };
    let straight = tmp.path().join("straight");
    train(&straight, "1024", false);
    let resumed = tmp.path().join("resumed");
    train(&resumed, "448", false);
    train(&resumed, "1024", true);
    let a = std::fs::read(straight.join("sae_weights.safetensors")).unwrap();
    let b = std::fs::read(resumed.join("sae_weights.safetensors")).unwrap();
    assert!(
        a == b,
        "resumed training differs from uninterrupted training"
    );
    assert_eq!(log_losses(&straight), log_losses(&resumed));

    // A checkpoint for another width is refused before training starts.
    let bad = prism(&[
        "train",
        "--cache",
        cache.to_str().unwrap(),
        "--hook",
        "blocks.1.hook_mlp_out",
        "--arch",
        "topk",
        "--k",
        "8",
        "--dict-size",
        "96",
        "--tokens",
        "1024",
        "--batch",
        "64",
        "--warmup",
        "2",
        "--seed",
        "6",
        "--out",
        resumed.to_str().unwrap(),
        "--resume",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("another configuration"));
}

#[test]
fn trains_from_a_model_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/gpt_neox_parallel");
    let data = corpus(tmp.path());
    let out = tmp.path().join("d");
    let json = ok(prism(&[
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
    ]));
    assert_eq!(json["dictionaries"][0]["steps"], 16);
    let sae = prism_sae::Sae::load(&out, &prism_core::device("cpu").unwrap()).unwrap();
    assert_eq!(sae.architecture, prism_sae::Architecture::TopK { k: 4 });
    // Every harvested row is held out from evaluation, at least the trained tokens.
    assert!(sae.extra_cfg["training_tokens"].as_u64().unwrap() >= 512);
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
