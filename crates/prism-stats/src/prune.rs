//! Choosing which features to keep when pruning high-frequency ones.

use prism_core::{PrismError, Result};

/// Which features to remove, by their measured density (fraction of tokens they fire on).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PruneRule {
    /// Remove every feature whose density is above this ("frequency > 0.038" in the notes).
    MaxDensity(f64),
    /// Remove the `n` densest features.
    TopN(usize),
    /// Remove densest features until the expected L0 (Σ of the remaining densities) is at most
    /// this. For ReLU/JumpReLU dictionaries removing a feature lowers L0 by exactly its density.
    TargetL0(f64),
}

/// The features to keep (ascending) under `rule`, given each feature's density.
///
/// ```
/// use prism_stats::{PruneRule, features_to_keep};
/// let density = [0.5, 0.01, 0.2, 0.0];
/// assert_eq!(features_to_keep(&density, PruneRule::MaxDensity(0.1)).unwrap(), vec![1, 3]);
/// assert_eq!(features_to_keep(&density, PruneRule::TopN(1)).unwrap(), vec![1, 2, 3]);
/// // L0 is 0.71; dropping 0.5 leaves 0.21 (> 0.2), dropping 0.2 too leaves 0.01.
/// assert_eq!(features_to_keep(&density, PruneRule::TargetL0(0.2)).unwrap(), vec![1, 3]);
/// ```
pub fn features_to_keep(density: &[f64], rule: PruneRule) -> Result<Vec<usize>> {
    if density
        .iter()
        .any(|d| !d.is_finite() || *d < 0.0 || *d > 1.0)
    {
        return Err(PrismError::InvalidInput(
            "densities must lie in [0, 1]".into(),
        ));
    }
    let mut by_density: Vec<usize> = (0..density.len()).collect();
    by_density.sort_by(|&a, &b| density[b].total_cmp(&density[a]).then(a.cmp(&b)));
    let removed: Vec<usize> = match rule {
        PruneRule::MaxDensity(p) => by_density.into_iter().filter(|&i| density[i] > p).collect(),
        PruneRule::TopN(n) => by_density.into_iter().take(n).collect(),
        PruneRule::TargetL0(target) => {
            let mut l0: f64 = density.iter().sum();
            let mut out = Vec::new();
            for i in by_density {
                if l0 <= target {
                    break;
                }
                l0 -= density[i];
                out.push(i);
            }
            out
        }
    };
    let mut keep = vec![true; density.len()];
    for i in removed {
        keep[i] = false;
    }
    Ok((0..density.len()).filter(|&i| keep[i]).collect())
}
