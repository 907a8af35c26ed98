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
