//! Every integration test of `prism-stats` in one test binary (each binary links burn, so one
//! binary per crate keeps the test build short). Run one file's tests with
//! `cargo test --workspace --features wgpu --test stats <file>::`.

mod browser;
mod common;
mod contexts;
mod plot;
mod prune;
mod stats;
