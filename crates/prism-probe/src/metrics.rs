//! How well a score separates two classes: AUROC (ties counted half, as scikit-learn's
//! `roc_auc_score`) and the accuracy of the best threshold, from a score's sorted runs of equal
//! values — so a sparse score (a dictionary feature, zero on most rows) is handled from its
//! non-zero entries and the two class counts of its zeros.

use serde::Serialize;

/// A score's separation of the classes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Separation {
    /// Area under the ROC curve of "higher score ⇒ positive" (0.5: no separation; below 0.5:
    /// the score is higher on negatives).
    pub auroc: f64,
    /// Accuracy of the best rule "score > t ⇒ positive" or, when `auroc < 0.5`,
    /// "score ≤ t ⇒ positive", over every threshold `t`.
    pub best_accuracy: f64,
    /// The threshold of that rule.
    pub threshold: f64,
}

/// AUROC and best-threshold accuracy of `scores` for `labels`.
///
/// ```
/// use prism_probe::separation;
/// let s = separation(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
/// assert!((s.auroc - 0.75).abs() < 1e-12); // scikit-learn's roc_auc_score example
/// assert_eq!(s.best_accuracy, 0.75);
/// // Ties count half.
/// assert_eq!(separation(&[1.0, 1.0], &[true, false]).auroc, 0.5);
/// ```
pub fn separation(scores: &[f32], labels: &[bool]) -> Separation {
    let pairs: Vec<(f32, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    sparse_separation(pairs, 0, 0)
}

/// [`separation`] of a score given by its non-zero entries (`(value, label)`) and the number of
/// positive and negative rows where it is zero.
///
/// ```
/// use prism_probe::{separation, sparse_separation};
/// let dense = separation(&[0.0, 0.0, 2.0, 0.0, 1.0], &[false, true, true, false, true]);
/// let sparse = sparse_separation(vec![(2.0, true), (1.0, true)], 1, 2);
/// assert_eq!(dense, sparse);
/// ```
pub fn sparse_separation(
    mut nonzero: Vec<(f32, bool)>,
    zero_pos: usize,
    zero_neg: usize,
) -> Separation {
    nonzero.retain(|(v, _)| !v.is_nan());
    nonzero.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Runs of equal values, ascending, with the zeros merged in at 0.
    let mut runs: Vec<(f32, usize, usize)> = Vec::new();
    let push = |v: f32, pos: usize, neg: usize, runs: &mut Vec<(f32, usize, usize)>| match runs
        .last_mut()
    {
        Some(last) if last.0 == v => {
            last.1 += pos;
            last.2 += neg;
        }
        _ => runs.push((v, pos, neg)),
    };
    let mut zeros_done = zero_pos + zero_neg == 0;
    for &(v, label) in &nonzero {
        if !zeros_done && v >= 0.0 {
            push(0.0, zero_pos, zero_neg, &mut runs);
            zeros_done = true;
        }
        push(v, usize::from(label), usize::from(!label), &mut runs);
    }
    if !zeros_done {
        push(0.0, zero_pos, zero_neg, &mut runs);
    }
    let p: usize = runs.iter().map(|r| r.1).sum();
    let n: usize = runs.iter().map(|r| r.2).sum();
    if p == 0 || n == 0 {
        return Separation {
            auroc: 0.5,
            best_accuracy: p.max(n) as f64 / (p + n).max(1) as f64,
            threshold: f64::NEG_INFINITY,
        };
    }
    // AUROC: each positive beats the negatives below it and ties half of those equal to it.
    let mut neg_below = 0usize;
    let mut wins = 0f64;
    for &(_, pos, neg) in &runs {
        wins += pos as f64 * (neg_below as f64 + 0.5 * neg as f64);
        neg_below += neg;
    }
    let auroc = wins / (p as f64 * n as f64);
    // Best cut: rows above the cut predicted positive (or negative, when auroc < 0.5).
    let upward = auroc >= 0.5;
    let total = (p + n) as f64;
    let (mut pos_below, mut neg_below) = (0usize, 0usize);
    let correct = |pos_below: usize, neg_below: usize| {
        if upward {
            neg_below + (p - pos_below)
        } else {
            pos_below + (n - neg_below)
        }
    };
    let mut best = (correct(0, 0), f64::NEG_INFINITY);
    for &(v, pos, neg) in &runs {
        pos_below += pos;
        neg_below += neg;
        let c = correct(pos_below, neg_below);
        if c > best.0 {
            best = (c, v as f64);
        }
    }
    Separation {
        auroc,
        best_accuracy: best.0 as f64 / total,
        threshold: best.1,
    }
}

/// Share of `predictions` equal to `labels`.
///
/// ```
/// assert_eq!(prism_probe::accuracy(&[true, false, true], &[true, true, true]), 2.0 / 3.0);
/// ```
pub fn accuracy(predictions: &[bool], labels: &[bool]) -> f64 {
    let right = predictions
        .iter()
        .zip(labels)
        .filter(|(a, b)| a == b)
        .count();
    right as f64 / labels.len().max(1) as f64
}
