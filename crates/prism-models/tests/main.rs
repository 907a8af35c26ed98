//! Every integration test of `prism-models` in one test binary (each binary links burn, so one
//! binary per crate keeps the test build short). Run one file's tests with
//! `cargo test --workspace --features wgpu --test models <file>::`.

mod bad_input;
mod common;
mod families;
mod gemma3;
mod gguf;
mod hooks;
mod parity;
mod randomize;
mod smollm2;
