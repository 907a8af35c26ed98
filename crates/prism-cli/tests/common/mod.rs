//! Helpers shared by the CLI test files.

use std::path::Path;
use std::process::{Command, Output};

/// The repository's `fixtures/`.
pub use prism_testkit::fixtures;

/// Runs the `prism` binary with `args`.
pub fn prism(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(args)
        .output()
        .unwrap()
}

/// Requires that a `prism` run succeeded and parses its `--json` output.
#[allow(dead_code)]
pub fn ok(out: Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `prism` with `args`, requires success, and parses its `--json` output.
#[allow(dead_code)]
pub fn prism_json<S: AsRef<str>>(args: &[S]) -> serde_json::Value {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    ok(prism(&args))
}

/// `prism train` arguments for a TopK dictionary (`k`, `dict_size` features) on `cache`'s
/// `blocks.1.hook_mlp_out`, `tokens` tokens in batches of `batch`, written to `out`; the shape
/// every CLI training test starts from.
#[allow(dead_code)]
pub fn topk_train_args(
    cache: &Path,
    out: &Path,
    k: usize,
    dict_size: usize,
    tokens: &str,
    batch: usize,
) -> Vec<String> {
    let mut args: Vec<String> = ["train", "--cache"].map(String::from).to_vec();
    args.push(cache.to_str().unwrap().into());
    for (flag, value) in [
        ("--hook", "blocks.1.hook_mlp_out".to_string()),
        ("--arch", "topk".into()),
        ("--k", k.to_string()),
        ("--dict-size", dict_size.to_string()),
        ("--tokens", tokens.into()),
        ("--batch", batch.to_string()),
        ("--out", out.to_str().unwrap().into()),
    ] {
        args.push(flag.into());
        args.push(value);
    }
    args
}
