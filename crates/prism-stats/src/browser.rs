//! The whole feature browser in one call: scan the tokens, compute logit effects and nearest
//! features, write the site. The CLI's `prism features`, `prism probe --features-html` and the
//! demo all call this.

use std::path::Path;

use prism_core::{Dictionary, HookPoint, Result};
use prism_models::Model;

use crate::contexts::{FeatureScan, ScanOptions, logit_effects, scan_features};
use crate::site::{FeatureSite, SiteFiles, write_feature_site};

/// How a browser is built.
pub struct BrowserOptions<'a> {
    /// The page's title.
    pub title: &'a str,
    /// Which features get panels, what each keeps (top contexts, quantile samples, span
    /// radius), windows per forward pass.
    pub scan: ScanOptions,
    /// Nearest features listed per feature (0: none).
    pub nearest: usize,
    /// Another dictionary over the same space, whose nearest features are listed too.
    pub other: Option<(&'a str, &'a dyn Dictionary)>,
}

impl Default for BrowserOptions<'_> {
    fn default() -> Self {
        Self {
            title: "features",
            scan: ScanOptions::default(),
            nearest: 8,
            other: None,
        }
    }
}

/// A written browser and the scan behind it.
pub struct Browser {
    /// Every selected feature's activity.
    pub scan: FeatureScan,
    /// The files written.
    pub files: SiteFiles,
}

/// Scans `windows` with `dict` at `hook` and writes the browser to `page` (data beside it, see
/// [`write_feature_site`]); `on_batch` gets the number of windows scanned so far.
pub fn build_feature_browser(
    model: &Model,
    dict: &dyn Dictionary,
    hook: HookPoint,
    windows: &[Vec<u32>],
    page: &Path,
    options: &BrowserOptions<'_>,
    on_batch: impl FnMut(usize),
) -> Result<Browser> {
    let scan = scan_features(model, dict, hook, windows, &options.scan, on_batch)?;
    let title = options.title;
    let ids: Vec<usize> = scan.features.iter().map(|f| f.feature).collect();
    let logits = logit_effects(model, dict, &ids, 10, 40)?;
    let device = model.device();
    let chosen = dict
        .decoder_directions()
        .select(0, prism_core::index_tensor(&ids, device));
    let nearest = if options.nearest > 0 && dict.d_sae() > 1 {
        prism_similarity::nearest_directions(
            chosen.clone(),
            dict.decoder_directions(),
            options.nearest,
            Some(&ids),
            1024,
        )?
    } else {
        Vec::new()
    };
    let other = match options.other {
        Some((_, o)) if options.nearest > 0 => Some(prism_similarity::nearest_directions(
            chosen,
            o.decoder_directions(),
            options.nearest,
            None,
            1024,
        )?),
        _ => None,
    };
    let site = FeatureSite {
        title,
        hook: &hook.to_string(),
        windows,
        scan: &scan,
        logits: &logits,
        nearest: &nearest,
        other: options
            .other
            .zip(other.as_deref())
            .map(|((n, _), l)| (n, l)),
        radius: options.scan.collect.radius,
    };
    let files = write_feature_site(page, &site, |t| model.tokenizer.token_str(t))?;
    Ok(Browser { scan, files })
}
