//! Reconstruction and sparsity metrics, accumulated over batches in f64 (docs/metrics.md).

use prism_core::{HostTensor, PrismError, Result};

/// Running sums from which every reconstruction metric is computed; feed it batches with
/// [`ReconstructionStats::add`], read the metrics with [`ReconstructionStats::finish`].
#[derive(Clone, Debug, Default)]
pub struct ReconstructionStats {
    tokens: u64,
    sq_err: f64,
    err_norm: f64,
    l0: f64,
    l1: f64,
    cos: f64,
    norm_ratio: f64,
    xhat_sq: f64,
    x_dot_xhat: f64,
    x_sum: Vec<f64>,
    x_sq: Vec<f64>,
    r_sum: Vec<f64>,
    r_sq: Vec<f64>,
    fires: Vec<u64>,
}

/// The metrics, under the names docs/metrics.md gives them (SAELens' and dictionary_learning's).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ReconstructionMetrics {
    /// Tokens evaluated.
    pub tokens: u64,
    /// Mean over tokens of ‖x − x̂‖².
    pub mse: f64,
    /// Mean over tokens of ‖x − x̂‖.
    pub l2_loss: f64,
    /// Mean number of non-zero codes per token.
    pub l0: f64,
    /// Mean of Σ|f_i| per token.
    pub l1: f64,
    /// 1 − Σ_j Var(x_j − x̂_j) / Σ_j Var(x_j).
    pub frac_variance_explained: f64,
    /// Mean cos(x, x̂).
    pub cossim: f64,
    /// Mean ‖x̂‖ / ‖x‖.
    pub l2_ratio: f64,
    /// E‖x̂‖² / E[x·x̂].
    pub relative_reconstruction_bias: f64,
    /// Fraction of features that fired at least once.
    pub frac_alive: f64,
    /// Per feature, the fraction of tokens on which it fired.
    #[serde(skip)]
    pub feature_density: Vec<f64>,
}

impl ReconstructionStats {
    /// Adds a batch: activations `x` and reconstructions `x_hat` (`[n, d]`), codes `f` (`[n, m]`).
    pub fn add(&mut self, x: &HostTensor, x_hat: &HostTensor, f: &HostTensor) -> Result<()> {
        let [n, d] = x.dims2()?;
        let [nf, m] = f.dims2()?;
        if x_hat.shape != x.shape || nf != n {
            return Err(PrismError::Shape(format!(
                "x {:?}, x̂ {:?} and codes {:?} do not line up",
                x.shape, x_hat.shape, f.shape
            )));
        }
        if self.x_sum.is_empty() {
            self.x_sum = vec![0.0; d];
            self.x_sq = vec![0.0; d];
            self.r_sum = vec![0.0; d];
            self.r_sq = vec![0.0; d];
            self.fires = vec![0; m];
        } else if self.x_sum.len() != d || self.fires.len() != m {
            return Err(PrismError::Shape(
                "batches of different widths in one evaluation".into(),
            ));
        }
        for t in 0..n {
            let (xr, hr) = (&x.data[t * d..(t + 1) * d], &x_hat.data[t * d..(t + 1) * d]);
            let (mut sq, mut xx, mut hh, mut xh) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
            for j in 0..d {
                let (a, b) = (xr[j] as f64, hr[j] as f64);
                let r = a - b;
                sq += r * r;
                xx += a * a;
                hh += b * b;
                xh += a * b;
                self.x_sum[j] += a;
                self.x_sq[j] += a * a;
                self.r_sum[j] += r;
                self.r_sq[j] += r * r;
            }
            if !(sq.is_finite() && xx.is_finite() && hh.is_finite()) {
                return Err(PrismError::NonFinite(format!(
                    "token {t} of the batch has non-finite values"
                )));
            }
            self.sq_err += sq;
            self.err_norm += sq.sqrt();
            self.cos += xh / (xx.sqrt() * hh.sqrt()).max(1e-30);
            self.norm_ratio += hh.sqrt() / xx.sqrt().max(1e-30);
            self.xhat_sq += hh;
            self.x_dot_xhat += xh;
            for (i, &v) in f.data[t * m..(t + 1) * m].iter().enumerate() {
                if v != 0.0 {
                    self.l0 += 1.0;
                    self.l1 += (v as f64).abs();
                    self.fires[i] += 1;
                }
            }
        }
        self.tokens += n as u64;
        Ok(())
    }

    /// The metrics over everything added so far.
    pub fn finish(&self) -> Result<ReconstructionMetrics> {
        if self.tokens == 0 {
            return Err(PrismError::InvalidInput("no tokens were evaluated".into()));
        }
        let n = self.tokens as f64;
        let var = |sum: &[f64], sq: &[f64]| -> f64 {
            sum.iter()
                .zip(sq)
                .map(|(s, q)| q / n - (s / n).powi(2))
                .sum()
        };
        let total_var = var(&self.x_sum, &self.x_sq);
        let resid_var = var(&self.r_sum, &self.r_sq);
        Ok(ReconstructionMetrics {
            tokens: self.tokens,
            mse: self.sq_err / n,
            l2_loss: self.err_norm / n,
            l0: self.l0 / n,
            l1: self.l1 / n,
            frac_variance_explained: 1.0 - resid_var / total_var,
            cossim: self.cos / n,
            l2_ratio: self.norm_ratio / n,
            relative_reconstruction_bias: (self.xhat_sq / n) / (self.x_dot_xhat / n),
            frac_alive: self.fires.iter().filter(|&&c| c > 0).count() as f64
                / self.fires.len().max(1) as f64,
            feature_density: self.fires.iter().map(|&c| c as f64 / n).collect(),
        })
    }
}
