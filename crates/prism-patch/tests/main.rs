//! Every integration test of `prism-patch` in one test binary (each binary links burn, so one
//! binary per crate keeps the test build short). Run one file's tests with
//! `cargo test --workspace --features wgpu --test patch <file>::`.

mod ablation;
mod attribution;
mod common;
mod edges;
mod pairs;
mod patching;
mod splice;
