//! Every integration test of `prism-sae` in one test binary (each binary links burn, so one
//! binary per crate keeps the test build short). Run one file's tests with
//! `cargo test --workspace --features wgpu --test sae <file>::`.

mod common;
mod convergence;
mod gradients;
mod matryoshka;
mod recovery;
mod saelens;
mod suites;
mod training;
mod transcoders;
