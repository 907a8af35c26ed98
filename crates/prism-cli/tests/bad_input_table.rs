//! The bad-input table of docs/reliability.md, produced by running each bad input through the
//! `prism` binary: every case must fail with exit code 1 and an `error:` line (no panic, no
//! abort), files already saved must be unchanged, and the table in the doc must be exactly what
//! the runs print. `PRISM_WRITE_DOCS=1 cargo test --workspace --features wgpu --test cli
//! bad_input_table::` rewrites it.

use crate::common;

use std::path::{Path, PathBuf};

use common::{fixtures, prism};

struct Case {
    /// What is wrong, as a user would describe it.
    input: &'static str,
    /// The command, with `<dir>` for the scratch directory.
    args: Vec<String>,
    /// Files that existed before and must be byte-identical after.
    kept: Vec<PathBuf>,
    /// A phrase the error must contain.
    expect: &'static str,
}

fn copy(from: &Path, to: &Path, files: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for f in files {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

fn model_dir(root: &Path, name: &str, edit: impl FnOnce(&Path)) -> String {
    let dir = root.join(name);
    copy(
        &fixtures().join("models/llama_gqa"),
        &dir,
        &["config.json", "model.safetensors", "tokenizer.json"],
    );
    edit(&dir);
    dir.to_str().unwrap().to_string()
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

fn truncate(path: &Path, keep: usize) {
    let b = std::fs::read(path).unwrap();
    std::fs::write(path, &b[..keep.min(b.len())]).unwrap();
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn regression(target: &str, name: &str) -> PathBuf {
    fixtures()
        .join("../crates/prism-fuzz/regressions")
        .join(target)
        .join(name)
}

fn cases(root: &Path) -> Vec<Case> {
    let llama = fixtures().join("models/llama_gqa");
    let llama = llama.to_str().unwrap();
    let forward = |model: &str| s(&["forward", "--model", model, "--text", "hi"]);
    let mut out = Vec::new();

    // Models.
    out.push(Case {
        input: "model path that does not exist",
        args: forward(&root.join("no-such-model").display().to_string()),
        kept: vec![],
        expect: "no-such-model",
    });
    let m = model_dir(root, "trillion-layers", |d| {
        std::fs::copy(
            regression("hf-config", "a-trillion-layers.json"),
            d.join("config.json"),
        )
        .unwrap();
    });
    out.push(Case {
        input: "`config.json` claiming 10^12 layers (once a 3.5 PB allocation)",
        args: forward(&m),
        kept: vec![],
        expect: "n_layers",
    });
    let m = model_dir(root, "config-not-json", |d| {
        truncate(&d.join("config.json"), 100)
    });
    out.push(Case {
        input: "`config.json` cut short",
        args: forward(&m),
        kept: vec![],
        expect: "not valid JSON",
    });
    let m = model_dir(root, "heads", |d| {
        edit_json(&d.join("config.json"), |c| {
            c["num_attention_heads"] = 65537.into();
            c["num_key_value_heads"] = 65537.into();
            c.as_object_mut().unwrap().remove("head_dim");
        })
    });
    out.push(Case {
        input: "more attention heads than the width",
        args: forward(&m),
        kept: vec![],
        expect: "head size is 0",
    });
    let m = model_dir(root, "truncated-weights", |d| {
        truncate(&d.join("model.safetensors"), 5000)
    });
    out.push(Case {
        input: "`model.safetensors` truncated",
        args: forward(&m),
        kept: vec![],
        expect: "model.safetensors",
    });
    let m = model_dir(root, "bad-tokenizer", |d| {
        std::fs::copy(
            regression(
                "tokenizer-json",
                "tokenizers-panics-on-bad-decoder-json.json",
            ),
            d.join("tokenizer.json"),
        )
        .unwrap();
    });
    out.push(Case {
        input: "malformed `tokenizer.json` (the `tokenizers` crate panics on it)",
        args: forward(&m),
        kept: vec![],
        expect: "not valid JSON",
    });
    let gguf = root.join("truncated.gguf");
    std::fs::copy(
        fixtures().join("../crates/prism-fuzz/seeds/tiny-llama.gguf"),
        &gguf,
    )
    .unwrap();
    truncate(&gguf, 20000);
    out.push(Case {
        input: "GGUF file truncated",
        args: forward(gguf.to_str().unwrap()),
        kept: vec![],
        expect: "truncated",
    });
    let gguf = root.join("shape.gguf");
    std::fs::copy(
        regression("gguf", "tensor-shape-product-overflows.bin"),
        &gguf,
    )
    .unwrap();
    out.push(Case {
        input: "GGUF tensor whose shape overflows 64 bits",
        args: forward(gguf.to_str().unwrap()),
        kept: vec![],
        expect: "more elements than memory holds",
    });

    // Dictionaries.
    let sae = |name: &str, edit: &dyn Fn(&Path)| {
        let d = root.join(name);
        copy(
            &fixtures().join("sae/topk"),
            &d,
            &["cfg.json", "sae_weights.safetensors"],
        );
        edit(&d);
        d.to_str().unwrap().to_string()
    };
    let good = sae("good-sae", &|_| {});
    let a = sae("cfg-without-d-sae", &|d| {
        edit_json(&d.join("cfg.json"), |c| {
            c.as_object_mut().unwrap().remove("d_sae");
        })
    });
    out.push(Case {
        input: "SAELens `cfg.json` without `d_sae`",
        args: s(&["similarity", "--a", &a, "--b", &good]),
        kept: vec![],
        expect: "d_sae",
    });
    let a = sae("weights-wrong-width", &|d| {
        edit_json(&d.join("cfg.json"), |c| c["d_in"] = 17.into())
    });
    out.push(Case {
        input: "SAELens weights that do not match `cfg.json`",
        args: s(&["similarity", "--a", &a, "--b", &good]),
        kept: vec![],
        expect: "W_enc",
    });
    let pt = root.join("ae.pt");
    std::fs::copy(fixtures().join("ae/topk.pt"), &pt).unwrap();
    truncate(&pt, 3000);
    out.push(Case {
        input: "dictionary_learning `ae.pt` truncated",
        args: s(&["similarity", "--a", pt.to_str().unwrap(), "--b", &good]),
        kept: vec![],
        expect: "ae.pt",
    });
    let gemma = root.join("gemma-scope-2b-pt-res/layer_1/width_16k/average_l0_10");
    copy(
        &fixtures().join("suites/gemma-scope-2b-pt-res/layer_1/width_16k/average_l0_10"),
        &gemma,
        &["params.npz"],
    );
    truncate(&gemma.join("params.npz"), 2000);
    out.push(Case {
        input: "Gemma Scope `params.npz` truncated",
        args: s(&["similarity", "--a", gemma.to_str().unwrap(), "--b", &good]),
        kept: vec![],
        expect: "params.npz",
    });
    let transcoder = root.join("layers.1.mlp");
    copy(
        &fixtures().join("suites/sparsify-run/layers.1"),
        &transcoder,
        &["cfg.json", "sae.safetensors"],
    );
    edit_json(&transcoder.join("cfg.json"), |c| {
        c["transcode"] = true.into()
    });
    out.push(Case {
        input: "sparsify transcoder where a sparse autoencoder is expected",
        args: s(&[
            "similarity",
            "--a",
            transcoder.to_str().unwrap(),
            "--b",
            &good,
        ]),
        kept: vec![],
        expect: "not a sparse autoencoder",
    });
    let layer = root.join("circuit-tracer");
    copy(
        &fixtures().join("transcoders/circuit-tracer"),
        &layer,
        &["layer_0.safetensors"],
    );
    truncate(&layer.join("layer_0.safetensors"), 4000);
    out.push(Case {
        input: "circuit-tracer transcoder file truncated",
        args: s(&[
            "similarity",
            "--a",
            layer.join("layer_0.safetensors").to_str().unwrap(),
            "--b",
            &good,
        ]),
        kept: vec![],
        expect: "layer_0.safetensors",
    });

    // Corpora and datasets.
    let corpus = root.join("corpus.pdf");
    std::fs::write(&corpus, b"%PDF-1.4").unwrap();
    let cache_args = |data: &Path, out_dir: &Path| {
        s(&[
            "cache",
            "--model",
            llama,
            "--data",
            data.to_str().unwrap(),
            "--hooks",
            "blocks.1.hook_mlp_out",
            "--tokens",
            "256",
            "--ctx",
            "32",
            "--out",
            out_dir.to_str().unwrap(),
        ])
    };
    out.push(Case {
        input: "corpus in a format Prism does not read",
        args: cache_args(&corpus, &root.join("c0")),
        kept: vec![],
        expect: "unknown corpus format",
    });
    let zst = root.join("corpus.jsonl.zst");
    let seed =
        std::fs::read(fixtures().join("../crates/prism-fuzz/seeds/corpus.jsonl.zst")).unwrap();
    std::fs::write(&zst, &seed[..seed.len() / 2]).unwrap();
    out.push(Case {
        input: "`.jsonl.zst` corpus cut in the middle",
        args: cache_args(&zst, &root.join("c1")),
        kept: vec![],
        expect: "corpus.jsonl.zst",
    });
    let csv = root.join("cities.csv");
    std::fs::write(
        &csv,
        "statement,label\nThe city of Paris is in France.,1\nThe city of Paris is in Peru.,maybe\n",
    )
    .unwrap();
    out.push(Case {
        input: "probe dataset with a label that is not 0/1",
        args: s(&[
            "probe",
            "--model",
            llama,
            "--dataset",
            csv.to_str().unwrap(),
        ]),
        kept: vec![],
        expect: "not 0 or 1",
    });
    let pairs = root.join("pairs.jsonl");
    std::fs::write(
        &pairs,
        r#"{"clean_prefix": "The fox", "patch_prefix": "The fox", "clean_answer": "a b c d", "patch_answer": "b"}"#,
    )
    .unwrap();
    out.push(Case {
        input: "pairs file whose only pair has an answer of several tokens",
        args: s(&[
            "patch",
            "--model",
            llama,
            "--pairs",
            pairs.to_str().unwrap(),
        ]),
        kept: vec![],
        expect: "no usable prompt pairs",
    });

    // Saved state: a cache and a training run that must survive bad input untouched.
    let data = root.join("corpus.txt");
    std::fs::write(
        &data,
        "Attention heads move information; the MLP layers write features.\n\n".repeat(60),
    )
    .unwrap();
    let cache = root.join("cache");
    let built = prism(
        &cache_args(&data, &cache)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let shard = cache.join("shard-00000.safetensors");
    let train = |out_dir: &Path, extra: &[&str]| {
        let mut a = common::topk_train_args(&cache, out_dir, 4, 128, "128", 32);
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let run = root.join("run");
    let trained = prism(
        &train(&run, &[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    let checkpoint = run.join("checkpoint.safetensors");
    let corrupt_cache = root.join("corrupt-cache");
    std::fs::create_dir_all(&corrupt_cache).unwrap();
    for e in std::fs::read_dir(&cache).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, corrupt_cache.join(p.file_name().unwrap())).unwrap();
    }
    let mut bytes = std::fs::read(&shard).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(corrupt_cache.join("shard-00000.safetensors"), bytes).unwrap();
    out.push(Case {
        input: "cache shard altered after it was written (one bit)",
        args: {
            let mut a = train(&root.join("run2"), &[]);
            a[2] = corrupt_cache.to_str().unwrap().to_string();
            a
        },
        kept: vec![corrupt_cache.join("manifest.json")],
        expect: "does not match the manifest",
    });
    out.push(Case {
        input: "`--resume` with a checkpoint of another configuration",
        args: {
            let mut a = train(&run, &["--resume"]);
            let k = a.iter().position(|x| x == "--k").unwrap();
            a[k + 1] = "8".into();
            a
        },
        kept: vec![checkpoint.clone(), run.join("sae_weights.safetensors")],
        expect: "another configuration",
    });
    out.push(Case {
        input: "cache extended with a different hook list",
        args: {
            let mut a = cache_args(&data, &cache);
            a[6] = "blocks.0.hook_resid_post".into();
            a
        },
        kept: vec![cache.join("manifest.json"), shard.clone()],
        expect: "hook",
    });
    out.push(Case {
        input: "transcoders asked for with two `--hook-out` for one `--hook`",
        args: train(
            &root.join("run3"),
            &["--hook-out", "blocks.0.hook_mlp_out,blocks.1.hook_mlp_out"],
        ),
        kept: vec![cache.join("manifest.json")],
        expect: "one output hook per input hook",
    });
    out
}

/// A markdown code span that survives backticks and pipes inside it.
fn code(text: &str) -> String {
    format!("`` {} ``", text.replace('|', "\\|"))
}

fn table(rows: &[[String; 4]]) -> String {
    let mut t = String::from(
        "| Bad input | Command | What the user sees (exit code 1) | Saved files |\n|---|---|---|---|\n",
    );
    for [input, command, error, kept] in rows {
        t.push_str(&format!(
            "| {input} | {} | {} | {kept} |\n",
            code(command),
            code(error)
        ));
    }
    t
}

#[test]
fn every_bad_input_is_a_clear_error_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for case in cases(root) {
        let before: Vec<Vec<u8>> = case
            .kept
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let out = prism(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let error = stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or("")
            .replace(root.to_str().unwrap(), "<dir>")
            .replace(fixtures().to_str().unwrap(), "fixtures");
        if out.status.code() != Some(1)
            || stderr.contains("panicked")
            || !error.contains(case.expect)
        {
            failures.push(format!(
                "{}: exit {:?}, stderr: {stderr}",
                case.input,
                out.status.code()
            ));
        }
        let unchanged = case
            .kept
            .iter()
            .zip(&before)
            .all(|(p, b)| std::fs::read(p).map(|now| &now == b).unwrap_or(false));
        if !unchanged {
            failures.push(format!("{}: a saved file changed", case.input));
        }
        let command = format!("prism {}", case.args.join(" "))
            .replace(root.to_str().unwrap(), "<dir>")
            .replace(fixtures().to_str().unwrap(), "fixtures");
        let kept = if case.kept.is_empty() {
            "nothing written".to_string()
        } else {
            format!(
                "unchanged: {}",
                case.kept
                    .iter()
                    .map(|p| format!("`{}`", p.file_name().unwrap().to_string_lossy()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        rows.push([case.input.to_string(), command, mask_hashes(&error), kept]);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let generated = table(&rows);
    let doc_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/reliability.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_default();
    const START: &str =
        "<!-- bad-input table: generated by crates/prism-cli/tests/bad_input_table.rs -->\n";
    const END: &str = "<!-- end of the bad-input table -->";
    let (Some(a), Some(b)) = (doc.find(START), doc.find(END)) else {
        panic!("docs/reliability.md lacks the table markers");
    };
    let current = &doc[a + START.len()..b];
    if std::env::var("PRISM_WRITE_DOCS").is_ok() {
        let new = format!("{}{START}{generated}{}", &doc[..a], &doc[b..]);
        std::fs::write(&doc_path, new).unwrap();
    } else {
        assert_eq!(
            current, generated,
            "docs/reliability.md's table is out of date: rerun with PRISM_WRITE_DOCS=1"
        );
    }
}

/// `text` with every run of 64 hex digits (a sha256) written `<sha256>`: a shard's hash depends
/// on the machine's floating-point kernels (AVX2 and AVX-512 sum in different orders), the table
/// must not.
fn mask_hashes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        out.push_str(if run.len() == 64 { "<sha256>" } else { &run });
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}
