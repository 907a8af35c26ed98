//! Fuzzing of every reader of files other people make: GGUF, safetensors, `ae.pt`
//! (zip + pickle), SAELens `cfg.json` and weights, HF `config.json` and `tokenizer.json`, the
//! activation cache's manifest and shards, CSV/JSONL datasets, GeoNames JSON and corpus files.
//!
//! A [`Campaign`] starts from valid seed files, runs each through the public loader the way a
//! user's file goes, then runs mutated inputs ([`mutate`]: flipped bits, truncation, counts
//! inflated to 2^60, spliced and duplicated chunks, invalid UTF-8, extreme numbers in text).
//! Every input must end as a value or a typed [`prism_core::PrismError`]; a panic, or an
//! allocation beyond the bounds of [`guard`] (a header claiming 2^60 elements must not
//! allocate them), is a finding, saved to a file and then committed under `regressions/`.
//!
//! The short runs are a test (`cargo test --workspace --features wgpu --test fuzz`);
//! the long run is `PRISM_FUZZ_INPUTS=1000000 cargo test --workspace --features wgpu
//! --test fuzz long_run -- --ignored --nocapture`
//! (docs/reliability.md).
//!
//! ```no_run
//! use prism_fuzz::{Campaign, Target};
//! let mut c = Campaign::new(Target::Gguf, 1, std::path::Path::new("/tmp/findings")).unwrap();
//! let summary = c.run(1000, None);
//! assert!(summary.findings.is_empty(), "{:?}", summary.findings);
//! ```

pub mod campaign;
pub mod guard;
pub mod mutate;
pub mod targets;

pub use campaign::{Campaign, Finding, MAX_INPUT_BYTES, Outcome, Summary, regression_inputs};
pub use guard::{AllocationReport, BoundedAllocator, LIVE_BYTES_BOUND, SINGLE_ALLOCATION_BOUND};
pub use targets::{Target, Workbench};
