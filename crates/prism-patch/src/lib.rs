//! # prism-patch
//!
//! Which activations *cause* a behaviour? Run a clean and a corrupted prompt, put one
//! activation of one run into the other, and see how far a metric moves.
//!
//! - [`PromptPair`] / [`read_pairs`]: clean and corrupted prompts of equal token length with the
//!   answer and the wrong answer (feature-circuits' JSONL format);
//! - [`Metric`]: logit difference at the last real position (and its normalised form), the
//!   answer's loss or probability, or any function of the logits;
//! - [`Node`] / [`nodes`]: the cells of TransformerLens-style sweeps — block × position of the
//!   residual hooks, block × head of `hook_z` (all positions, or per position), MLP neurons;
//! - [`patch`]: exact activation patching of every node, denoising (clean into corrupted) or
//!   noising (corrupted into clean), with the source run cached once and several patched copies
//!   of the batch in each forward pass;
//! - [`Splice`]: a dictionary at its hook with the error term kept, its features zeroed, kept
//!   alone or set ([`FeatureEdit`]) — the model's output is unchanged until a feature is edited.

#![warn(missing_docs)]

mod exact;
mod metric;
mod node;
mod pairs;
mod splice;

pub use exact::{Direction, PatchOptions, PatchResult, PatchSweep, patch};
pub use metric::Metric;
pub use node::{Node, NodeKind, nodes};
pub use pairs::{PairBatch, PromptPair, read_pairs};
pub use splice::{FeatureEdit, Splice};
