//! # prism-stats
//!
//! How good is a dictionary at its hook point? Every metric of docs/metrics.md under its name:
//! reconstruction and sparsity ([`ReconstructionStats`]: `mse`, `l2_loss`, `l0`, `l1`,
//! `frac_variance_explained`, `cossim`, `l2_ratio`, `relative_reconstruction_bias`,
//! `frac_alive`, per-feature density) and downstream ([`DownstreamStats`]: `loss_original`,
//! `loss_reconstructed`, `loss_zero`, `frac_recovered`, `kl_div_with_sae`,
//! `kl_div_with_ablation`, `kl_div_score`). Sums are accumulated in f64 across batches.

#![warn(missing_docs)]

mod browser;
mod collect;
mod contexts;
mod correlation;
#[cfg(feature = "plot")]
mod curves;
mod density;
mod downstream;
#[cfg(feature = "plot")]
mod plot;
mod prune;
mod reconstruction;
mod site;

pub use browser::{Browser, BrowserOptions, build_feature_browser};
pub use collect::{Band, Bin, CollectOptions, Example, FeatureActivity, FeatureCollector};
pub use contexts::{
    Context, FeatureReport, FeatureScan, FeatureSelection, LogitEffect, ScanOptions, logit_effects,
    scan_features, top_activating,
};
pub use correlation::pearson;
#[cfg(feature = "plot")]
pub use curves::{RunLog, last_doubling_change, plot_convergence};
pub use density::{DensityHistogram, density_histogram, sample_across_density_bands};
pub use downstream::{DownstreamMetrics, DownstreamStats, Placement, evaluate_batch};
#[cfg(feature = "plot")]
pub use plot::{
    Mark, Series, XyPlot, density_overlay_series, plot_density_histogram, plot_heatmap, plot_xy,
};
pub use prune::{PruneRule, features_to_keep};
pub use reconstruction::{ReconstructionMetrics, ReconstructionStats};
pub use site::{CHUNK, FeatureSite, SiteFiles, write_feature_site};

use prism_core::{Dictionary, Result};
use prism_models::{Model, TokenBatch};

/// Both kinds of metrics for one evaluation.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Evaluation {
    /// Reconstruction and sparsity.
    #[serde(flatten)]
    pub reconstruction: ReconstructionMetrics,
    /// Loss recovered and KL.
    #[serde(flatten)]
    pub downstream: DownstreamMetrics,
}

/// Evaluates `dict` at `at` — a hook for a sparse autoencoder, or a [`Placement`] for a
/// transcoder — over `batches` of token windows (any iterator: a `Vec`, or
/// [`TokenBatch::batches`] over held-out windows), calling `on_batch` after each batch (for
/// progress bars). Every metric is accumulated in f64 over the real (unpadded) positions.
///
/// ```no_run
/// # fn run(model: &prism_models::Model, sae: &prism_sae::Sae, windows: &[Vec<u32>]) -> prism_core::Result<()> {
/// use prism_models::TokenBatch;
/// let hook: prism_core::HookPoint = "blocks.15.hook_mlp_out".parse()?;
/// let batches = TokenBatch::batches(windows, 8, model.pad_id());
/// let e = prism_stats::evaluate(model, sae, hook, batches, |b| eprintln!("{} windows", b.batch))?;
/// println!("L0 {:.1}, loss recovered {:.3}", e.reconstruction.l0, e.downstream.frac_recovered);
/// # Ok(()) }
/// ```
pub fn evaluate(
    model: &Model,
    dict: &dyn Dictionary,
    at: impl Into<Placement>,
    batches: impl IntoIterator<Item = Result<TokenBatch>>,
    on_batch: impl FnMut(&TokenBatch),
) -> Result<Evaluation> {
    let mut all = evaluate_many(model, &[dict], at, batches, on_batch)?;
    Ok(all.remove(0))
}

/// [`evaluate`] for several dictionaries at the same place on the same batches, in one pass
/// over the text: the clean and zero-ablated runs are shared, so `k` dictionaries cost one
/// clean run, one zeroed and `k` spliced runs from the hook's block on (instead of `k` of each).
pub fn evaluate_many(
    model: &Model,
    dicts: &[&dyn Dictionary],
    at: impl Into<Placement>,
    batches: impl IntoIterator<Item = Result<TokenBatch>>,
    mut on_batch: impl FnMut(&TokenBatch),
) -> Result<Vec<Evaluation>> {
    let at = at.into();
    let mut stats = vec![(ReconstructionStats::default(), DownstreamStats::default()); dicts.len()];
    for batch in batches {
        let batch = batch?;
        evaluate_batch(model, dicts, at, &batch, &mut stats)?;
        on_batch(&batch);
    }
    stats
        .iter()
        .map(|(recon, down)| {
            Ok(Evaluation {
                reconstruction: recon.finish()?,
                downstream: down.finish()?,
            })
        })
        .collect()
}
