//! Every integration test of `prism-cli` in one test binary (each binary links burn, so one
//! binary per crate keeps the test build short). Run one file's tests with
//! `cargo test --workspace --features wgpu --test cli <file>::`.

mod bad_input_table;
mod cli;
mod common;
mod crash;
mod demo;
mod hub;
mod patching;
mod probes;
mod train;
