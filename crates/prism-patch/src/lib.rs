//! # prism-patch
//!
//! Which activations *cause* a behaviour? Run a clean and a corrupted prompt, put one
//! activation of one run into the other, and see how far a metric moves.
//!
//! - [`PromptPair`] / [`read_pairs`] ([`PairFile`]): clean and corrupted prompts of equal
//!   token length with the answer and the wrong answer (feature-circuits' JSONL format, or [`template_pairs`] from a
//!   template and a word list; [`capital_pairs`] from GeoNames' countries);
//! - [`Metric`]: logit difference at the last real position (and its normalised form), the
//!   answer's loss or probability, or any function of the logits;
//! - [`Node`] / [`nodes`]: the cells of TransformerLens-style sweeps — block × position of the
//!   residual hooks, block × head of `hook_z` (all positions, or per position), MLP neurons;
//! - [`patch`]: exact activation patching of every node, denoising (clean into corrupted) or
//!   noising (corrupted into clean), with the source run cached once and several patched copies
//!   of the batch in each forward pass;
//! - [`attribute`]: attribution patching (gradient × difference, every node from one forward
//!   and one backward pass) and integrated gradients, for every node kind including dictionary
//!   features and error terms ([`Dictionaries`]);
//! - [`ablation`]: zero, mean ([`MeanStates`] over a reference dataset, padding excluded) and
//!   resample ablations of any set of nodes, and of every node but a set ([`complement`]);
//! - [`circuit`] / [`faithfulness`]: nodes ranked by attributed effect over a dataset, and the
//!   faithfulness `(F(C) − F(∅)) / (F(M) − F(∅))` of the top-n with the rest mean-ablated;
//! - [`edges`]: Sparse Feature Circuits' feature-to-feature edges between dictionaries at every
//!   block's attention output, MLP output and residual stream ([`EdgeCircuit`]);
//! - [`Splice`]: a dictionary at its hook with the error term kept, its features zeroed, kept
//!   alone or set ([`FeatureEdit`]) — the model's output is unchanged until a feature is edited.

#![warn(missing_docs)]

mod ablate;
mod attribute;
mod circuit;
mod circuit_svg;
mod datasets;
mod edges;
mod exact;
mod metric;
mod node;
mod pairs;
mod splice;
mod state;

pub use ablate::{Ablation, MeanStates, ablation, complement};
pub use attribute::{Method, attribute, exact_vs_estimate};
pub use circuit::{
    Circuit, Faithfulness, FaithfulnessPoint, FaithfulnessSweep, circuit, faithfulness,
};
pub use datasets::{CAPITAL_TEMPLATE, capital_pairs, geonames_capitals, most_common_length};
pub use edges::{Edge, EdgeCircuit, EdgeOptions, EdgeTarget, NodeEffect, edges};
pub use exact::{Direction, PatchOptions, PatchResult, PatchSweep, patch};
pub use metric::{Metric, MetricFn};
pub use node::{Node, NodeKind, Sweep, Unit, dictionary_nodes, nodes};
pub use pairs::{PairBatch, PairFile, PromptPair, read_pairs, template_pairs};
pub use splice::{FeatureEdit, Splice};
pub use state::Dictionaries;
