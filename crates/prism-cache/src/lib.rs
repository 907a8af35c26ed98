//! # prism-cache
//!
//! Getting activations out of a model and onto disk (or straight into training):
//! - [`Corpus`]: plain text, `.jsonl`, `.jsonl.zst` and directories of them, read lazily;
//! - [`windows`]: tokenisation packed into fixed windows, deterministic for a seed;
//! - [`Harvester`]: one forward pass per batch captures every requested hook point;
//! - [`ActivationBuffer`]: dictionary_learning's refilling, shuffling in-memory buffer;
//! - [`build_cache`] / [`ActivationStore`]: the sharded safetensors store with a manifest,
//!   checksums, globally shuffled reading and resumable harvests;
//! - [`TrainingData`] / [`held_out_windows`]: where a dictionary's training data came from, and
//!   evaluation text guaranteed to lie outside it;
//! - [`train_on_store`]: dictionaries trained on a cache, their training data recorded.

#![warn(missing_docs)]

mod buffer;
mod harvest;
mod held_out;
mod permutation;
mod shard;
mod source;
mod store;
mod training;
mod windows;

pub use buffer::{ActivationBuffer, BufferConfig};
pub use harvest::{Harvest, Harvester};
pub use held_out::{
    EvalStart, HeldOut, HeldOutRequest, TRAINING_DATA_KEY, TrainingData, held_out_windows,
};
pub use permutation::Permutation;
pub use source::{Corpus, Piece, Pieces, SkipCounts};
pub use store::{
    ActivationStore, CacheOptions, CacheProgress, FORMAT, HookInfo, Manifest, ShardInfo,
    ShuffledBatches, build_cache,
};
pub use training::{StoreTrainingConfig, train_on_store};
pub use windows::{WindowConfig, Windows, windows};
