//! Every integration test of `prism-probe` in one test binary (each binary links burn, so one
//! binary per crate keeps the test build short). Run one file's tests with
//! `cargo test --workspace --features wgpu --test probe <file>::`.

mod planted;
mod reference;
mod smollm2;
