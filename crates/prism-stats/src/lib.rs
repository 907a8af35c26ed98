//! # prism-stats
//!
//! How good is a dictionary at its hook point? Every metric of `METRICS.md` under its name:
//! reconstruction and sparsity ([`ReconstructionStats`]: `mse`, `l2_loss`, `l0`, `l1`,
//! `frac_variance_explained`, `cossim`, `l2_ratio`, `relative_reconstruction_bias`,
//! `frac_alive`, per-feature density) and downstream ([`DownstreamStats`]: `loss_original`,
//! `loss_reconstructed`, `loss_zero`, `frac_recovered`, `kl_div_with_sae`,
//! `kl_div_with_ablation`, `kl_div_score`). Sums are accumulated in f64 across batches.

#![warn(missing_docs)]

mod browser;
mod contexts;
mod downstream;
mod plot;
mod prune;
mod reconstruction;

pub use browser::{feature_browser_html, sample_across_density_bands};
pub use contexts::{Context, FeatureReport, top_activating};
pub use downstream::{DownstreamMetrics, DownstreamStats, evaluate_batch};
pub use plot::{DensityHistogram, density_histogram, plot_density_histogram};
pub use prune::{PruneRule, features_to_keep};
pub use reconstruction::{ReconstructionMetrics, ReconstructionStats};

use prism_core::{Dictionary, HookPoint, Result};
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

/// Evaluates `dict` at `hook` over `batches` of token windows.
pub fn evaluate(
    model: &Model,
    dict: &dyn Dictionary,
    hook: HookPoint,
    batches: &[TokenBatch],
) -> Result<Evaluation> {
    let (mut recon, mut down) = (ReconstructionStats::default(), DownstreamStats::default());
    for batch in batches {
        evaluate_batch(model, dict, hook, batch, &mut recon, &mut down)?;
    }
    Ok(Evaluation {
        reconstruction: recon.finish()?,
        downstream: down.finish()?,
    })
}
