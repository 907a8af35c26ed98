//! Cross-crate tests through the `prism` facade, in one test binary (each binary links burn).
//! Run one file's tests with
//! `cargo test --workspace --features wgpu --test prism <file>::`.

mod pipeline;
mod properties;
