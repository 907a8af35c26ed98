//! Dictionary features as classifiers: each feature's activation scored as a classifier of a
//! label (AUROC, best-threshold accuracy), and the cosine of a probe's direction with every
//! decoder direction (which features a probe reads).

use prism_core::{Dictionary, HostTensor, PrismError, Result};
use serde::Serialize;

use crate::metrics::{Separation, sparse_separation};

/// One feature scored as a classifier.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FeatureClassifier {
    /// Feature index.
    pub feature: usize,
    /// Share of rows where the feature is non-zero.
    pub density: f64,
    /// AUROC, best-threshold accuracy and its threshold.
    #[serde(flatten)]
    pub separation: Separation,
}

impl FeatureClassifier {
    /// How far the feature is from chance, in either direction: `|AUROC − 0.5|`.
    pub fn strength(&self) -> f64 {
        (self.separation.auroc - 0.5).abs()
    }
}

/// The codes of `x` (`[n, d_in]`) under `dictionary`, as per-feature lists of non-zero
/// `(row, value)` entries — memory grows with the non-zeros, not with rows × features.
/// Rows are encoded `chunk` at a time on the dictionary's device.
pub fn sparse_codes(
    dictionary: &dyn Dictionary,
    x: &HostTensor,
    chunk: usize,
) -> Result<Vec<Vec<(u32, f32)>>> {
    let [n, d] = x.dims2()?;
    if d != dictionary.d_in() {
        return Err(PrismError::Shape(format!(
            "activations have width {d}, the dictionary reads {}",
            dictionary.d_in()
        )));
    }
    let m = dictionary.d_sae();
    let device = dictionary.decoder_directions().device();
    let mut per_feature: Vec<Vec<(u32, f32)>> = vec![Vec::new(); m];
    let chunk = chunk.max(1);
    for start in (0..n).step_by(chunk) {
        let rows = chunk.min(n - start);
        let part = HostTensor::new(
            vec![rows, d],
            x.data[start * d..(start + rows) * d].to_vec(),
        )?;
        let codes = prism_core::to_vec(dictionary.encode(part.to_burn::<2>(&device)?))?;
        for (r, row) in codes.chunks_exact(m).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    per_feature[j].push(((start + r) as u32, v));
                }
            }
        }
    }
    Ok(per_feature)
}

/// Every feature of `dictionary` scored as a classifier of `labels` on `x` (`[n, d_in]`), in
/// feature order.
///
/// ```
/// use burn::tensor::Tensor;
/// use prism_core::{Dictionary, HostTensor};
/// # struct Identity { device: prism_core::Device }
/// # impl Dictionary for Identity {
/// #     fn d_in(&self) -> usize { 2 }
/// #     fn d_sae(&self) -> usize { 2 }
/// #     fn encode(&self, x: Tensor<2>) -> Tensor<2> { burn::tensor::activation::relu(x) }
/// #     fn decode(&self, f: Tensor<2>) -> Tensor<2> { f }
/// #     fn decoder_directions(&self) -> Tensor<2> { Tensor::eye(2, &self.device) }
/// # }
/// let dict = Identity { device: Default::default() };
/// // Feature 0 fires exactly on the true rows; feature 1 on one of each.
/// let x = HostTensor::new(vec![4, 2], vec![1.0, 1.0, 2.0, 0.0, 0.0, 1.0, 0.0, 0.0])?;
/// let scores = prism_probe::score_features(&dict, &x, &[true, true, false, false], 64)?;
/// assert_eq!(scores[0].separation.auroc, 1.0);
/// assert_eq!(scores[1].separation.auroc, 0.5);
/// # Ok::<(), prism_core::PrismError>(())
/// ```
pub fn score_features(
    dictionary: &dyn Dictionary,
    x: &HostTensor,
    labels: &[bool],
    chunk: usize,
) -> Result<Vec<FeatureClassifier>> {
    let [n, _] = x.dims2()?;
    if labels.len() != n {
        return Err(PrismError::Shape(format!(
            "{n} rows of activations for {} labels",
            labels.len()
        )));
    }
    let codes = sparse_codes(dictionary, x, chunk)?;
    Ok(score_codes(&codes, labels))
}

/// [`score_features`] from codes already computed by [`sparse_codes`].
pub fn score_codes(codes: &[Vec<(u32, f32)>], labels: &[bool]) -> Vec<FeatureClassifier> {
    let n = labels.len();
    let total_pos = labels.iter().filter(|&&l| l).count();
    codes
        .iter()
        .enumerate()
        .map(|(feature, entries)| {
            let nonzero: Vec<(f32, bool)> = entries
                .iter()
                .map(|&(r, v)| (v, labels[r as usize]))
                .collect();
            let pos = nonzero.iter().filter(|e| e.1).count();
            let neg = nonzero.len() - pos;
            FeatureClassifier {
                feature,
                density: entries.len() as f64 / n.max(1) as f64,
                separation: sparse_separation(nonzero, total_pos - pos, n - total_pos - neg),
            }
        })
        .collect()
}

/// The `k` features furthest from chance (largest `|AUROC − 0.5|`), strongest first.
pub fn top_classifiers(scores: &[FeatureClassifier], k: usize) -> Vec<FeatureClassifier> {
    let mut v = scores.to_vec();
    v.sort_by(|a, b| {
        b.strength()
            .total_cmp(&a.strength())
            .then(a.feature.cmp(&b.feature))
    });
    v.truncate(k);
    v
}

/// The cosine of `direction` (`[d_in]`) with every decoder direction of `dictionary`, in
/// feature order.
pub fn decoder_cosines(dictionary: &dyn Dictionary, direction: &[f64]) -> Result<Vec<f64>> {
    let d = dictionary.d_in();
    if direction.len() != d {
        return Err(PrismError::Shape(format!(
            "a direction of {} dimensions for a dictionary reading {d}",
            direction.len()
        )));
    }
    let norm = direction.iter().map(|v| v * v).sum::<f64>().sqrt();
    let dec = prism_core::to_vec(dictionary.decoder_directions())?;
    Ok(dec
        .chunks_exact(d)
        .map(|row| {
            let (dot, rn) = row
                .iter()
                .zip(direction)
                .fold((0f64, 0f64), |(dot, rn), (&r, &v)| {
                    (dot + r as f64 * v, rn + (r as f64).powi(2))
                });
            dot / (rn.sqrt() * norm).max(f64::MIN_POSITIVE)
        })
        .collect())
}
