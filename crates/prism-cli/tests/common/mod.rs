//! Helpers shared by the CLI test files.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository's `fixtures/`.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

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
