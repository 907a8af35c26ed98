//! # prism-similarity
//!
//! How alike are two dictionaries? For dictionaries `A` (m_a features) and `B` (m_b features)
//! over the same activation space, with decoder directions normalised to unit length:
//!
//! - `mmcs_a_to_b`: for each direction of A, the largest cosine with any direction of B,
//!   averaged over A (the research notes' "mean max cosine similarity", A as ground truth);
//! - `mmcs_b_to_a`: the same the other way (the measure is asymmetric);
//! - a one-to-one matching (each feature used at most once) and its mean cosine.
//!
//! The cosine matrix is never held whole: rows of A are compared in chunks, so two
//! 32768-feature dictionaries need `chunk × m_b` floats at a time. Works on any burn device.
//!
//! ```
//! use burn::tensor::Tensor;
//! let device = prism_core::device("cpu").unwrap();
//! let a = Tensor::<2>::from_floats([[1.0, 0.0], [0.0, 2.0]], &device);
//! let b = Tensor::<2>::from_floats([[0.0, 1.0], [1.0, 1.0]], &device);
//! let s = prism_similarity::compare_directions(a, b, &Default::default()).unwrap();
//! assert!((s.mmcs_a_to_b - (0.5f64.sqrt() + 1.0) / 2.0).abs() < 1e-6);
//! assert_eq!(s.matching.unwrap().pairs, vec![(0, 1), (1, 0)]);
//! ```

#![warn(missing_docs)]

mod matching;
mod scan;

use burn::tensor::Tensor;
use prism_core::{Dictionary, PrismError, Result, to_vec};

pub use matching::{Matching, MatchingMethod, greedy_matching, hungarian_matching};

/// Settings for [`compare`].
#[derive(Clone, Debug)]
pub struct SimilarityOptions {
    /// Rows of A compared per block.
    pub chunk: usize,
    /// How to build the one-to-one matching.
    pub matching: MatchingMethod,
    /// Candidates kept per feature of A for the greedy matching.
    pub greedy_candidates: usize,
}

impl Default for SimilarityOptions {
    fn default() -> Self {
        Self {
            chunk: 1024,
            matching: MatchingMethod::Auto,
            greedy_candidates: 8,
        }
    }
}

/// The result of comparing two dictionaries.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Similarity {
    /// Mean over A of the best cosine in B.
    pub mmcs_a_to_b: f64,
    /// Mean over B of the best cosine in A.
    pub mmcs_b_to_a: f64,
    /// For each feature of A, its best cosine in B.
    pub max_cos_a: Vec<f32>,
    /// For each feature of A, the index of that best feature of B.
    pub best_b_for_a: Vec<u32>,
    /// For each feature of B, its best cosine in A.
    pub max_cos_b: Vec<f32>,
    /// For each feature of B, the index of that best feature of A.
    pub best_a_for_b: Vec<u32>,
    /// The one-to-one matching, unless disabled.
    pub matching: Option<Matching>,
}

impl Similarity {
    /// Mean cosine of the one-to-one matching (`None` when no matching was made).
    pub fn matched_mean_cos(&self) -> Option<f64> {
        self.matching.as_ref().map(|m| m.mean_cos)
    }
}

/// Compares two dictionaries by their decoder directions.
pub fn compare(
    a: &dyn Dictionary,
    b: &dyn Dictionary,
    options: &SimilarityOptions,
) -> Result<Similarity> {
    compare_directions(a.decoder_directions(), b.decoder_directions(), options)
}

fn normalise(t: Tensor<2>) -> Tensor<2> {
    let norm = t.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    t / norm
}

/// Compares two sets of directions, `[m_a, d]` and `[m_b, d]` (rows need not be normalised).
pub fn compare_directions(
    a: Tensor<2>,
    b: Tensor<2>,
    options: &SimilarityOptions,
) -> Result<Similarity> {
    let ([m_a, d_a], [m_b, d_b]) = (a.dims(), b.dims());
    if d_a != d_b {
        return Err(PrismError::Shape(format!(
            "dictionaries over different spaces: d = {d_a} vs {d_b}"
        )));
    }
    if m_a == 0 || m_b == 0 {
        return Err(PrismError::InvalidInput(
            "a dictionary with no features".into(),
        ));
    }
    let (a, bt) = (normalise(a), normalise(b).transpose());
    let chunk = options.chunk.max(1);
    let method = options.matching.resolve(m_a, m_b);
    let keep = options.greedy_candidates.clamp(1, m_b);
    let mut max_cos_a = Vec::with_capacity(m_a);
    let mut best_b_for_a = Vec::with_capacity(m_a);
    let mut max_cos_b = vec![f32::NEG_INFINITY; m_b];
    let mut best_a_for_b = vec![0u32; m_b];
    let mut full: Vec<f32> = Vec::new(); // whole cosine matrix, only for the exact matching
    let mut candidates: Vec<(f32, u32, u32)> = Vec::new();
    for start in (0..m_a).step_by(chunk) {
        let rows = chunk.min(m_a - start);
        let sims = to_vec(a.clone().narrow(0, start, rows).matmul(bt.clone()))?; // [rows, m_b]
        let take = if method == MatchingMethod::Greedy {
            keep
        } else {
            0
        };
        let scan = scan::scan_chunk(&sims, m_b, take);
        max_cos_a.extend(scan.row_max);
        best_b_for_a.extend(scan.row_arg);
        for (j, (v, i)) in scan.col_max.into_iter().zip(scan.col_arg).enumerate() {
            if v > max_cos_b[j] {
                max_cos_b[j] = v;
                best_a_for_b[j] = (start + i) as u32;
            }
        }
        candidates.extend(
            scan.top
                .into_iter()
                .map(|(v, r, j)| (v, (start + r) as u32, j)),
        );
        if method == MatchingMethod::Hungarian {
            full.extend(sims);
        }
    }
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    let matching = match method {
        MatchingMethod::Hungarian => Some(hungarian_matching(&full, m_a, m_b)),
        MatchingMethod::Greedy => Some(greedy_matching(candidates, m_a, m_b)),
        _ => None,
    };
    Ok(Similarity {
        mmcs_a_to_b: mean(&max_cos_a),
        mmcs_b_to_a: mean(&max_cos_b),
        max_cos_a,
        best_b_for_a,
        max_cos_b,
        best_a_for_b,
        matching,
    })
}

/// A feature's nearest features: `(index, cosine)`, largest cosine first.
pub type Neighbours = Vec<(u32, f32)>;

/// For each row of `a` (`[m_a, d]`), its `k` nearest rows of `b` (`[m_b, d]`) by cosine,
/// largest first, as `(index in b, cosine)`. When `a`'s rows are features of `b` itself,
/// `own` gives their indices in `b`, and each is left out of its own list. Chunked like
/// [`compare_directions`].
///
/// ```
/// use burn::tensor::Tensor;
/// let device = prism_core::device("cpu").unwrap();
/// let w = Tensor::<2>::from_floats([[1.0, 0.0], [1.0, 1.0], [0.0, 3.0]], &device);
/// let own = [0, 1, 2];
/// let near = prism_similarity::nearest_directions(w.clone(), w, 1, Some(&own), 1024).unwrap();
/// assert_eq!(near[0][0].0, 1); // 45° from feature 0; feature 0 itself is left out
/// assert_eq!(near[2][0].0, 1);
/// ```
pub fn nearest_directions(
    a: Tensor<2>,
    b: Tensor<2>,
    k: usize,
    own: Option<&[usize]>,
    chunk: usize,
) -> Result<Vec<Neighbours>> {
    let ([m_a, d_a], [m_b, d_b]) = (a.dims(), b.dims());
    if d_a != d_b {
        return Err(PrismError::Shape(format!(
            "dictionaries over different spaces: d = {d_a} vs {d_b}"
        )));
    }
    if let Some(own) = own
        && (own.len() != m_a || own.iter().any(|&i| i >= m_b))
    {
        return Err(PrismError::Shape(format!(
            "{} own indices for {m_a} rows of a dictionary of {m_b}",
            own.len()
        )));
    }
    let take = (k + usize::from(own.is_some())).min(m_b);
    let (a, bt) = (normalise(a), normalise(b).transpose());
    let chunk = chunk.max(1);
    let mut out: Vec<Neighbours> = Vec::with_capacity(m_a);
    for start in (0..m_a).step_by(chunk) {
        let rows = chunk.min(m_a - start);
        let sims = to_vec(a.clone().narrow(0, start, rows).matmul(bt.clone()))?;
        let scan = scan::scan_chunk(&sims, m_b, take);
        out.extend(std::iter::repeat_with(Vec::new).take(rows));
        for (v, r, j) in scan.top {
            let row = start + r;
            if own.is_some_and(|o| o[row] == j as usize) || out[row].len() >= k {
                continue;
            }
            out[row].push((j, v));
        }
    }
    Ok(out)
}

/// A histogram of values in `[lo, hi]` with `bins` equal bins: `(bin start, count)` pairs.
///
/// ```
/// let h = prism_similarity::histogram(&[0.1, 0.15, 0.9], 0.0, 1.0, 2);
/// assert_eq!(h, vec![(0.0, 2), (0.5, 1)]);
/// ```
pub fn histogram(values: &[f32], lo: f32, hi: f32, bins: usize) -> Vec<(f32, usize)> {
    let bins = bins.max(1);
    let width = (hi - lo) / bins as f32;
    let mut counts = vec![0usize; bins];
    for &v in values {
        let i = (((v - lo) / width).floor().max(0.0) as usize).min(bins - 1);
        counts[i] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| (lo + i as f32 * width, c))
        .collect()
}
