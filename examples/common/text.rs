//! The benchmark text the forward-pass benchmarks tokenise (scripts/bench_forward_hf.py uses the
//! same).

/// A paragraph about dictionaries, repeated to fill batches.
pub const TEXT: &str = "Sparse autoencoders decompose the activations of a language model into a dictionary of \
features, each a direction in activation space that fires on a small fraction of tokens. Researchers \
train them on hundreds of millions of activation vectors harvested from a corpus, measure how much of \
the model's loss the reconstruction recovers, and study the contexts on which each feature fires. ";
