//! One-to-one matching of features: exact (Hungarian) for small dictionaries, greedy for large.

/// How to build the one-to-one matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchingMethod {
    /// Hungarian when the smaller dictionary has at most `HUNGARIAN_LIMIT` (1 024) features, else greedy.
    Auto,
    /// The exact maximum-total-cosine assignment (O(n²·m) time, the full cosine matrix in memory).
    Hungarian,
    /// Greedy: all (a, b) candidate pairs among each feature of A's top candidates, taken in
    /// decreasing cosine, each feature used at most once. Features whose candidates were all
    /// taken stay unmatched.
    Greedy,
    /// No matching.
    None,
}

/// Largest dictionary size for which `Auto` uses the exact matching.
pub const HUNGARIAN_LIMIT: usize = 1024;

impl MatchingMethod {
    pub(crate) fn resolve(self, m_a: usize, m_b: usize) -> Self {
        match self {
            MatchingMethod::Auto if m_a.max(m_b) <= HUNGARIAN_LIMIT => MatchingMethod::Hungarian,
            MatchingMethod::Auto => MatchingMethod::Greedy,
            other => other,
        }
    }
}

/// A one-to-one matching between features of A and B.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Matching {
    /// `(feature of A, feature of B)` pairs, sorted by A.
    pub pairs: Vec<(u32, u32)>,
    /// The cosine of each pair.
    pub cosines: Vec<f32>,
    /// Mean cosine over the pairs.
    pub mean_cos: f64,
    /// `"hungarian"` or `"greedy"`.
    pub method: &'static str,
}

fn finish(mut pairs: Vec<(u32, u32, f32)>, method: &'static str) -> Matching {
    pairs.sort_by_key(|p| p.0);
    let mean_cos = pairs.iter().map(|p| p.2 as f64).sum::<f64>() / pairs.len().max(1) as f64;
    Matching {
        pairs: pairs.iter().map(|p| (p.0, p.1)).collect(),
        cosines: pairs.iter().map(|p| p.2).collect(),
        mean_cos,
        method,
    }
}

/// Greedy matching from `(cosine, a, b)` candidates.
pub fn greedy_matching(mut candidates: Vec<(f32, u32, u32)>, m_a: usize, m_b: usize) -> Matching {
    candidates.sort_by(|x, y| y.0.total_cmp(&x.0));
    let (mut used_a, mut used_b) = (vec![false; m_a], vec![false; m_b]);
    let mut pairs = Vec::new();
    for (c, a, b) in candidates {
        if !used_a[a as usize] && !used_b[b as usize] {
            used_a[a as usize] = true;
            used_b[b as usize] = true;
            pairs.push((a, b, c));
        }
    }
    finish(pairs, "greedy")
}

/// Exact maximum-total-cosine one-to-one matching of a row-major `[m_a, m_b]` cosine matrix
/// (Hungarian algorithm with potentials; `min(m_a, m_b)` pairs).
pub fn hungarian_matching(cos: &[f32], m_a: usize, m_b: usize) -> Matching {
    // Rows must not outnumber columns: transpose if needed.
    let transposed = m_a > m_b;
    let (n, m) = if transposed { (m_b, m_a) } else { (m_a, m_b) };
    let cost = |i: usize, j: usize| -> f64 {
        let c = if transposed {
            cos[j * m_b + i]
        } else {
            cos[i * m_b + j]
        };
        -(c as f64)
    };
    // 1-based arrays as in the classic O(n²m) formulation.
    let inf = f64::INFINITY;
    let (mut u, mut v) = (vec![0.0; n + 1], vec![0.0; m + 1]);
    let (mut p, mut way) = (vec![0usize; m + 1], vec![0usize; m + 1]);
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![inf; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let (i0, mut delta, mut j1) = (p[j0], inf, 0);
            for j in 1..=m {
                if !used[j] {
                    let cur = cost(i0 - 1, j - 1) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut pairs = Vec::with_capacity(n);
    for (j, &row) in p.iter().enumerate().skip(1) {
        if row != 0 {
            let (r, c) = (row - 1, j - 1);
            let (a, b) = if transposed { (c, r) } else { (r, c) };
            pairs.push((a as u32, b as u32, cos[a * m_b + b]));
        }
    }
    finish(pairs, "hungarian")
}
