//! Convergence curves: the held-out measurements of training logs against tokens seen, one
//! plot per measurement, one line per run (the series [`prism_sae::train::fit`] writes into
//! each run's `log.jsonl`).

use std::path::{Path, PathBuf};

use prism_core::{PrismError, Result};
use prism_sae::StepLog;

use crate::plot::{Mark, Series, XyPlot, plot_xy};

/// One run's log, under the name its lines take in the legends.
#[derive(Clone, Debug)]
pub struct RunLog {
    /// Legend entry.
    pub name: String,
    /// The log, in step order.
    pub entries: Vec<StepLog>,
}

/// What each plot shows: file stem, title, y label, and the value of a measured step (with the
/// mean training loss since the previous measurement).
type Curve = (
    &'static str,
    &'static str,
    &'static str,
    fn(&StepLog, f64) -> Option<f64>,
);

const CURVES: [Curve; 7] = [
    (
        "train_loss",
        "Training loss (mean since the previous point)",
        "loss",
        |_, mean| Some(mean),
    ),
    (
        "fve",
        "Variance explained on held-out rows",
        "fraction of variance explained",
        |e, _| Some(e.held_out.as_ref()?.fve),
    ),
    (
        "l0",
        "L0 on held-out rows",
        "mean active features per token",
        |e, _| Some(e.held_out.as_ref()?.l0),
    ),
    (
        "dead",
        "Dead features (the training criterion)",
        "features",
        |e, _| Some(e.dead as f64),
    ),
    (
        "dense",
        "Dense features (firing on > 10 % of held-out rows)",
        "features",
        |e, _| Some(e.held_out.as_ref()?.dense as f64),
    ),
    (
        "mmcs_seeds",
        "MMCS across seeds, every feature",
        "mean max cosine similarity",
        |e, _| e.held_out.as_ref()?.mmcs_seeds,
    ),
    (
        "mmcs_seeds_alive",
        "MMCS across seeds, features alive in both",
        "mean max cosine similarity",
        |e, _| e.held_out.as_ref()?.mmcs_seeds_alive,
    ),
];

/// Plots every measurement of `runs` against training tokens (log scale) as
/// `dir/{prefix}{name}.png` and `.svg`, for `name` in `train_loss`, `fve`, `l0`, `dead`,
/// `dense`, `mmcs_seeds`, `mmcs_seeds_alive`; a measurement no run has is skipped. Returns the
/// PNGs written.
pub fn plot_convergence(runs: &[RunLog], dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| PrismError::io(dir, e))?;
    if runs
        .iter()
        .all(|r| r.entries.iter().all(|e| e.held_out.is_none()))
    {
        return Err(PrismError::InvalidInput(
            "no held-out measurements in these logs (train with --held-out-tokens)".into(),
        ));
    }
    let mut written = Vec::new();
    for (stem, title, y, value) in CURVES {
        let series: Vec<Series> = runs
            .iter()
            .map(|r| Series {
                name: r.name.clone(),
                points: measured_points(&r.entries, value),
                mark: Mark::Line,
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let png = dir.join(format!("{prefix}{stem}.png"));
        let axes = XyPlot {
            title,
            x: "training tokens",
            y,
            log_x: true,
        };
        plot_xy(
            &series,
            &axes,
            Some(&png),
            Some(&png.with_extension("svg")),
            (900, 520),
        )?;
        written.push(png);
    }
    Ok(written)
}

/// `(tokens, value)` at each measured step, the training loss averaged over the steps since
/// the previous measured one.
fn measured_points(
    entries: &[StepLog],
    value: fn(&StepLog, f64) -> Option<f64>,
) -> Vec<(f64, f64)> {
    let (mut sum, mut n) = (0.0, 0usize);
    let mut out = Vec::new();
    for e in entries {
        sum += e.loss;
        n += 1;
        if e.held_out.is_some() {
            if let Some(v) = value(e, sum / n as f64).filter(|v| v.is_finite()) {
                out.push((e.tokens as f64, v));
            }
            (sum, n) = (0.0, 0);
        }
    }
    out
}

/// How much a held-out measurement moved over the last doubling of training: its value at the
/// last measured step minus its value at the last measured step with at most half as many
/// tokens. Near zero: the curve has flattened; `None` when the log has no such pair of points.
///
/// ```
/// use prism_sae::StepLog;
/// use prism_sae::train::HeldOut;
/// let point = |tokens: u64, fve: f64| StepLog {
///     step: tokens / 10, tokens, loss: 0.0, mse: 0.0, l0: 0.0, sparsity: 0.0, aux: 0.0,
///     dead: 0, lr: 0.0, resampled: 0,
///     held_out: Some(HeldOut { rows: 1, fve, mse: 0.0, l0: 0.0, alive: 0, dense: 0,
///                              mmcs_seeds: None, mmcs_seeds_alive: None }),
/// };
/// let log = [point(100, 0.5), point(200, 0.7), point(300, 0.75), point(400, 0.8)];
/// let change = prism_stats::last_doubling_change(&log, |h| Some(h.fve)).unwrap();
/// assert!((change - 0.1).abs() < 1e-12); // 0.8 at 400 tokens against 0.7 at 200
/// ```
pub fn last_doubling_change(
    entries: &[StepLog],
    value: impl Fn(&prism_sae::train::HeldOut) -> Option<f64>,
) -> Option<f64> {
    let points: Vec<(u64, f64)> = entries
        .iter()
        .filter_map(|e| Some((e.tokens, value(e.held_out.as_ref()?)?)))
        .collect();
    let &(last_tokens, last) = points.last()?;
    let &(_, before) = points.iter().rev().find(|(t, _)| 2 * t <= last_tokens)?;
    Some(last - before)
}
