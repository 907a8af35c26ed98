//! Hub names on the command line, against the loopback stand-in hub: `prism fetch hf:…` from
//! two processes at once, `--model ORG/NAME` offline from the cache, errors.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use prism_testkit::hub_server::{HubServer, ServedRepo, sha256};

use crate::common::fixtures;

const REPO: &str = "tiny-org/tiny-llama";

fn prism_with(home: &Path, endpoint: &str, extra: &[(&str, &str)], args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_prism"));
    c.args(args)
        .env("HF_HOME", home)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_HUB_OFFLINE");
    for (k, v) in extra {
        c.env(k, v);
    }
    c
}

fn success(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Catches: two writers interleaving one blob (a lost lock), a partial file left behind, a
/// cache laid out so that `--model ORG/NAME` cannot find it offline.
#[test]
fn two_fetches_at_once_leave_a_whole_cache_that_serves_offline() {
    let served = ServedRepo::from_dir(&fixtures().join("models/llama3"));
    let server = HubServer::start(BTreeMap::from([(REPO.into(), served.clone())]), None);
    server.slow_down(Duration::from_millis(40));
    let home = tempfile::tempdir().unwrap();
    let target = format!("hf:{REPO}");
    let children: Vec<_> = (0..2)
        .map(|_| {
            prism_with(home.path(), &server.url(), &[], &["fetch", &target])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let paths: Vec<String> = children
        .into_iter()
        .map(|c| success(&c.wait_with_output().unwrap()))
        .collect();
    let repo = home.path().join("hub/models--tiny-org--tiny-llama");
    let snapshot = repo.join("snapshots").join(&served.commit);
    let want = snapshot.display().to_string();
    assert_eq!(paths, [want.clone(), want]);
    for entry in std::fs::read_dir(repo.join("blobs")).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.ends_with(".incomplete"), "left behind: {name}");
        if name.len() == 64 {
            assert_eq!(sha256(&std::fs::read(&p).unwrap()), name);
        }
    }
    assert_eq!(
        std::fs::read(snapshot.join("model.safetensors")).unwrap(),
        served.files["model.safetensors"]
    );
    // Both asked; the weights crossed the wire once (the second waited for the first's lock,
    // or came after it).
    let log = server.log();
    let heads = log
        .iter()
        .filter(|s| s.method == "HEAD" && s.path.ends_with("/model.safetensors"))
        .count();
    let gets = log.iter().filter(|s| s.path.starts_with("/cdn/")).count();
    assert_eq!((heads, gets), (2, 1), "{log:?}");

    // `--model ORG/NAME` with the hub stopped and HF_HUB_OFFLINE=1 equals the local directory.
    let url = server.url();
    drop(server);
    let text = "Caches are shared with Python.";
    let forward = |model: &str, offline: &[(&str, &str)]| {
        success(
            &prism_with(
                home.path(),
                &url,
                offline,
                &["forward", "--model", model, "--text", text, "--json"],
            )
            .output()
            .unwrap(),
        )
    };
    let hub: serde_json::Value =
        serde_json::from_str(&forward(REPO, &[("HF_HUB_OFFLINE", "1")])).unwrap();
    let local: serde_json::Value = serde_json::from_str(&forward(
        fixtures().join("models/llama3").to_str().unwrap(),
        &[],
    ))
    .unwrap();
    assert_eq!(hub["tokens"], local["tokens"]);
    assert_eq!(hub["loss"], local["loss"]);
}

/// Catches: a missing repository or file reported as a panic or as "no such file".
#[test]
fn missing_repositories_and_files_are_clear_errors() {
    let server = HubServer::start(BTreeMap::new(), None);
    let home = tempfile::tempdir().unwrap();
    for (args, want) in [
        (
            vec!["forward", "--model", "tiny-org/absent", "--text", "hi"],
            "repository not found",
        ),
        (vec!["fetch", "hf:tiny-org/absent"], "repository not found"),
        (vec!["fetch", "hf:../x"], "not a hub reference"),
    ] {
        let out = prism_with(home.path(), &server.url(), &[], &args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.contains(want) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
}

/// Catches: a published layout evaluated with other settings than sae-lens's own copy of the
/// same weights in its layout (the hook, `b_dec` subtracted or not, the Llama Scope scaling):
/// `prism eval` must give the same metrics for both.
#[test]
fn eval_of_published_layouts_equals_eval_of_sae_lens_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus.txt");
    std::fs::write(
        &corpus,
        "Published dictionaries read as their authors' code reads them. ".repeat(40),
    )
    .unwrap();
    let suites = fixtures().join("suites");
    let model = fixtures().join("models/gemma2");
    // `prism eval --json` on a dictionary, its metrics (the dictionary's path left out).
    let args = |sae: &str| -> Vec<String> {
        let (model, corpus) = (model.to_str().unwrap(), corpus.to_str().unwrap());
        [
            "eval",
            "--model",
            model,
            "--data",
            corpus,
            "--sae",
            sae,
            "--tokens",
            "128",
            "--ctx",
            "32",
            "--allow-overlap",
            "--json",
        ]
        .map(String::from)
        .to_vec()
    };
    let metrics = |out: Output| {
        let mut j: serde_json::Value = serde_json::from_str(&success(&out)).unwrap();
        j.as_object_mut().unwrap().remove("sae");
        j
    };
    let eval = |sae: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_prism"))
            .args(args(sae.to_str().unwrap()))
            .output()
            .unwrap();
        metrics(out)
    };
    for (published, copy) in [
        (
            "gemma-scope-2b-pt-res/layer_1/width_16k/average_l0_10",
            "gemma_scope",
        ),
        (
            "gemma-scope-2-270m-pt/resid_post_all/layer_1_width_16k_l0_small",
            "gemma_scope_2",
        ),
    ] {
        let a = eval(&suites.join(published));
        let b = eval(&suites.join("saelens").join(copy));
        assert_eq!(a["hook"], "blocks.1.hook_resid_post");
        assert_eq!(a, b, "{published}");
    }
    // A transcoder replacing block 1's MLP: Gemma Scope's layout and sae-lens's own copy of it
    // give the same metrics, read at the MLP's normalised input and written at its output.
    let transcoders = fixtures().join("transcoders");
    let a =
        eval(&transcoders.join("gemma-scope-2b-pt-transcoders/layer_1/width_16k/average_l0_65"));
    let b = eval(&transcoders.join("saelens/gemma_scope"));
    assert_eq!(a["hook"], "blocks.1.ln2.hook_normalized");
    assert_eq!(a["hook_out"], "blocks.1.hook_mlp_out");
    assert_eq!(a, b, "the Gemma Scope transcoder");

    // Llama Scope by its registry name, as `SAE.from_pretrained("llama_scope_lxr_8x",
    // "l1r_8x")` loads it: the registry file (the pinned sae-lens's), the stand-in hub serving
    // the repository; the registry's norm scaling factor must reach the reader.
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(
        std::fs::File::open(fixtures().join("registry/registry.zip")).unwrap(),
    )
    .unwrap();
    let mut yaml = Vec::new();
    zip.by_name("pretrained_saes.yaml")
        .unwrap()
        .read_to_end(&mut yaml)
        .unwrap();
    let registry = tmp.path().join("pretrained_saes.yaml");
    std::fs::write(&registry, yaml).unwrap();
    let server = HubServer::start(
        BTreeMap::from([(
            "fnlp/Llama3_1-8B-Base-LXR-8x".to_string(),
            ServedRepo::from_dir(&suites.join("Llama3_1-8B-Base-LXR-8x")),
        )]),
        None,
    );
    let home = tmp.path().join("hf");
    let by_name = |name: &str| {
        let args = args(name);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let registry = [("PRISM_SAE_REGISTRY", registry.to_str().unwrap())];
        metrics(
            prism_with(&home, &server.url(), &registry, &args)
                .output()
                .unwrap(),
        )
    };
    let a = by_name("llama_scope_lxr_8x/l1r_8x");
    let b = eval(&suites.join("saelens/llama_scope"));
    assert_eq!(a, b, "llama_scope_lxr_8x/l1r_8x");
}
