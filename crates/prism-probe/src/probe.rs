//! Linear probes on activations (geometry-of-truth): L2 logistic regression and the mass-mean
//! probe with its "iid" form. Activations are centred with the training rows' mean first (as
//! geometry-of-truth centres its datasets), and a probe's score of a row `x` is
//! `w · (x − μ) + b`; it predicts "true" where the score is positive.
//!
//! The logistic probe minimises `Σ log(1 + exp(−yᵢ zᵢ)) + ½ α ‖w‖²` with `α = 1/C` —
//! scikit-learn's `LogisticRegression(C)` objective; the bias, when asked for, is not
//! regularised (as in scikit-learn) — by Newton's method with a backtracking line search:
//! deterministic, full batch, and to the exact optimum (the gradient in f64; the Hessian
//! `XᵀSX + αI` by prism-core's GEMM, `dense`). We chose this over linfa-logistic (L-BFGS) after
//! measuring what linfa costs: it pulls ndarray 0.16 and rand 0.8 features that rebuild burn.
//! The iid mass-mean probe uses the pseudo-inverse of the pooled within-class covariance from
//! a Jacobi eigen-decomposition.

use prism_core::dense::{View, matmul};
use prism_core::{HostTensor, PrismError, Result};
use serde::Serialize;

use crate::metrics::{accuracy, separation};

/// How a probe is fitted.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum ProbeMethod {
    /// L2-regularised logistic regression (scikit-learn's `C`; larger is weaker).
    Logistic {
        /// Inverse regularisation strength.
        c: f64,
        /// Fit an (unregularised) bias too.
        bias: bool,
    },
    /// `θ = μ₊ − μ₋`, score `θ · (x − μ)`.
    MassMean,
    /// `Σ⁺ θ` with `Σ` the pooled within-class covariance, score `(Σ⁺θ) · (x − μ)`.
    MassMeanIid,
}

impl ProbeMethod {
    /// The name used in tables and JSON (`logistic`, `mass_mean`, `mass_mean_iid`).
    pub fn name(&self) -> &'static str {
        match self {
            ProbeMethod::Logistic { .. } => "logistic",
            ProbeMethod::MassMean => "mass_mean",
            ProbeMethod::MassMeanIid => "mass_mean_iid",
        }
    }
}

impl std::str::FromStr for ProbeMethod {
    type Err = PrismError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "logistic" | "lr" => Ok(ProbeMethod::Logistic {
                c: 1.0,
                bias: false,
            }),
            "mass-mean" | "mass_mean" | "mm" => Ok(ProbeMethod::MassMean),
            "mass-mean-iid" | "mass_mean_iid" | "mm-iid" => Ok(ProbeMethod::MassMeanIid),
            other => Err(PrismError::InvalidInput(format!(
                "unknown probe method `{other}` (logistic, mass-mean, mass-mean-iid)"
            ))),
        }
    }
}

/// A fitted linear probe.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Probe {
    /// How it was fitted.
    pub method: ProbeMethod,
    /// The training rows' mean, subtracted before scoring.
    pub center: Vec<f64>,
    /// The weight vector `w` applied to centred rows.
    pub weights: Vec<f64>,
    /// The bias `b` (zero unless a logistic probe was asked for one).
    pub bias: f64,
}

/// A probe's quality on labelled rows.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ProbeScore {
    /// Share of rows classified correctly (score > 0 ⇔ true).
    pub accuracy: f64,
    /// AUROC of the score.
    pub auroc: f64,
}

/// Rows of a `[n, d]` host tensor as `f64`, checked against `labels`.
fn rows(x: &HostTensor, n_labels: Option<usize>) -> Result<(usize, usize, Vec<f64>)> {
    let [n, d] = x.dims2()?;
    if let Some(m) = n_labels
        && m != n
    {
        return Err(PrismError::Shape(format!(
            "{n} rows of activations for {m} labels"
        )));
    }
    if n == 0 || d == 0 {
        return Err(PrismError::InvalidInput("no activations to probe".into()));
    }
    if x.data.iter().any(|v| !v.is_finite()) {
        return Err(PrismError::NonFinite("activations given to a probe".into()));
    }
    Ok((n, d, x.data.iter().map(|&v| v as f64).collect()))
}

fn mean_of(rows: &[f64], d: usize, pick: impl Fn(usize) -> bool) -> (Vec<f64>, usize) {
    let mut sum = vec![0f64; d];
    let mut count = 0;
    for (i, r) in rows.chunks_exact(d).enumerate() {
        if pick(i) {
            count += 1;
            for (s, v) in sum.iter_mut().zip(r) {
                *s += v;
            }
        }
    }
    sum.iter_mut().for_each(|s| *s /= count.max(1) as f64);
    (sum, count)
}

impl Probe {
    /// Fits a probe of `method` to `x` (`[n, d]`) and `labels`.
    ///
    /// ```
    /// use prism_core::HostTensor;
    /// use prism_probe::{Probe, ProbeMethod};
    /// // Two clusters along the first axis.
    /// let x = HostTensor::new(vec![4, 2], vec![2.0, 0.5, 3.0, -0.5, -2.0, 0.25, -3.0, 0.25])?;
    /// let labels = [true, true, false, false];
    /// let p = Probe::fit(ProbeMethod::MassMean, &x, &labels)?;
    /// assert_eq!(p.weights, vec![5.0, -0.25]);
    /// assert_eq!(p.evaluate(&x, &labels)?.accuracy, 1.0);
    /// # Ok::<(), prism_core::PrismError>(())
    /// ```
    pub fn fit(method: ProbeMethod, x: &HostTensor, labels: &[bool]) -> Result<Self> {
        let (n, d, data) = rows(x, Some(labels.len()))?;
        let (pos_mean, n_pos) = mean_of(&data, d, |i| labels[i]);
        let (neg_mean, n_neg) = mean_of(&data, d, |i| !labels[i]);
        if n_pos == 0 || n_neg == 0 {
            return Err(PrismError::InvalidInput(format!(
                "a probe needs both classes; got {n_pos} true and {n_neg} false rows"
            )));
        }
        let (center, _) = mean_of(&data, d, |_| true);
        let theta: Vec<f64> = pos_mean.iter().zip(&neg_mean).map(|(p, q)| p - q).collect();
        let (weights, bias) = match method {
            ProbeMethod::MassMean => (theta, 0.0),
            ProbeMethod::MassMeanIid => {
                let pinv_theta =
                    pooled_covariance_solve(&data, d, labels, &pos_mean, &neg_mean, &theta);
                (pinv_theta, 0.0)
            }
            ProbeMethod::Logistic { c, bias } => {
                if !(c > 0.0 && c.is_finite()) {
                    return Err(PrismError::InvalidInput(format!(
                        "regularisation C = {c} must be positive"
                    )));
                }
                let centred: Vec<f64> = data
                    .chunks_exact(d)
                    .flat_map(|r| r.iter().zip(&center).map(|(v, m)| v - m))
                    .collect();
                logistic(centred, n, d, labels, c, bias)?
            }
        };
        Ok(Self {
            method,
            center,
            weights,
            bias,
        })
    }

    /// The score `w · (x − μ) + b` of each row of `x` (`[n, d]`).
    pub fn scores(&self, x: &HostTensor) -> Result<Vec<f64>> {
        let (_, d, data) = rows(x, None)?;
        if d != self.weights.len() {
            return Err(PrismError::Shape(format!(
                "the probe reads {} dimensions, the activations have {d}",
                self.weights.len()
            )));
        }
        Ok(data
            .chunks_exact(d)
            .map(|r| {
                r.iter()
                    .zip(&self.center)
                    .zip(&self.weights)
                    .map(|((v, m), w)| (v - m) * w)
                    .sum::<f64>()
                    + self.bias
            })
            .collect())
    }

    /// Accuracy and AUROC on labelled rows.
    pub fn evaluate(&self, x: &HostTensor, labels: &[bool]) -> Result<ProbeScore> {
        let s = self.scores(x)?;
        if s.len() != labels.len() {
            return Err(PrismError::Shape(format!(
                "{} rows of activations for {} labels",
                s.len(),
                labels.len()
            )));
        }
        let predicted: Vec<bool> = s.iter().map(|&v| v > 0.0).collect();
        let as_f32: Vec<f32> = s.iter().map(|&v| v as f32).collect();
        Ok(ProbeScore {
            accuracy: accuracy(&predicted, labels),
            auroc: separation(&as_f32, labels).auroc,
        })
    }

    /// The probe's direction, unit length.
    pub fn direction(&self) -> Vec<f64> {
        let norm = self.weights.iter().map(|w| w * w).sum::<f64>().sqrt();
        self.weights
            .iter()
            .map(|w| w / norm.max(f64::MIN_POSITIVE))
            .collect()
    }
}

/// `(w, b)` of scikit-learn-equivalent L2 logistic regression on centred rows, by Newton's
/// method (it converges in a handful of steps; stopping when the Newton decrement is tiny).
fn logistic(
    centred: Vec<f64>,
    n: usize,
    d: usize,
    labels: &[bool],
    c: f64,
    bias: bool,
) -> Result<(Vec<f64>, f64)> {
    let alpha = 1.0 / c;
    let p = d + usize::from(bias);
    let t: Vec<f64> = labels.iter().map(|&l| f64::from(u8::from(l))).collect();
    let margins = |beta: &[f64]| -> Vec<f64> {
        centred
            .chunks_exact(d)
            .map(|r| {
                r.iter().zip(beta).map(|(x, w)| x * w).sum::<f64>()
                    + if bias { beta[d] } else { 0.0 }
            })
            .collect()
    };
    // softplus(z) − t·z, summed, plus the penalty (not on the bias).
    let objective = |beta: &[f64], z: &[f64]| -> f64 {
        let data: f64 = z
            .iter()
            .zip(&t)
            .map(|(&z, &t)| {
                let softplus = if z > 0.0 {
                    z + (-z).exp().ln_1p()
                } else {
                    z.exp().ln_1p()
                };
                softplus - t * z
            })
            .sum();
        data + 0.5 * alpha * beta[..d].iter().map(|w| w * w).sum::<f64>()
    };
    let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
    let mut beta = vec![0f64; p];
    let mut z = margins(&beta);
    let mut f = objective(&beta, &z);
    for _ in 0..200 {
        let s: Vec<f64> = z.iter().map(|&z| sigmoid(z)).collect();
        let mut grad = vec![0f64; p];
        for ((r, &si), &ti) in centred.chunks_exact(d).zip(&s).zip(&t) {
            let e = si - ti;
            grad[..d].iter_mut().zip(r).for_each(|(g, x)| *g += e * x);
            if bias {
                grad[d] += e;
            }
        }
        grad[..d]
            .iter_mut()
            .zip(&beta)
            .for_each(|(g, w)| *g += alpha * w);
        // Hessian XᵀSX (+ αI on the weights) from rows scaled by √(σ(1 − σ)).
        let mut scaled = vec![0f32; n * p];
        for (i, (r, &si)) in centred.chunks_exact(d).zip(&s).enumerate() {
            let w = (si * (1.0 - si)).sqrt();
            for (o, x) in scaled[i * p..i * p + d].iter_mut().zip(r) {
                *o = (w * x) as f32;
            }
            if bias {
                scaled[i * p + d] = w as f32;
            }
        }
        let mut h32 = vec![0f32; p * p];
        let y = View::new(&scaled, n, p);
        matmul(y.t(), y, &mut h32, false);
        let mut h: Vec<f64> = h32.iter().map(|&v| v as f64).collect();
        for j in 0..d {
            h[j * p + j] += alpha;
        }
        if bias {
            h[d * p + d] += 1e-12 * n as f64;
        }
        let step = crate::linalg::cholesky_solve(&h, &grad).ok_or_else(|| {
            PrismError::NonFinite("the logistic probe's Hessian is not positive definite".into())
        })?;
        let decrement: f64 = grad.iter().zip(&step).map(|(g, s)| g * s).sum();
        if decrement <= 1e-14 * (1.0 + f.abs()) {
            break;
        }
        // Backtracking (Armijo) on the full Newton step.
        let mut size = 1.0;
        loop {
            let trial: Vec<f64> = beta.iter().zip(&step).map(|(b, s)| b - size * s).collect();
            let zt = margins(&trial);
            let ft = objective(&trial, &zt);
            if ft <= f - 1e-4 * size * decrement || size < 1e-10 {
                beta = trial;
                z = zt;
                f = ft;
                break;
            }
            size *= 0.5;
        }
    }
    if beta.iter().any(|v| !v.is_finite()) {
        return Err(PrismError::NonFinite("logistic probe weights".into()));
    }
    let b = if bias { beta[d] } else { 0.0 };
    beta.truncate(d);
    Ok((beta, b))
}

/// `Σ⁺ θ` for the pooled within-class covariance `Σ = Σᵢ (xᵢ − μ_{yᵢ})(xᵢ − μ_{yᵢ})ᵀ / n`,
/// dropping eigenvalues below `λ_max · d · ε_f32` (torch's default cut-off for a Hermitian
/// pseudo-inverse in single precision).
fn pooled_covariance_solve(
    data: &[f64],
    d: usize,
    labels: &[bool],
    pos_mean: &[f64],
    neg_mean: &[f64],
    theta: &[f64],
) -> Vec<f64> {
    let n = labels.len();
    let mut cov = vec![0f64; d * d];
    let mut centred = vec![0f64; d];
    for (r, &label) in data.chunks_exact(d).zip(labels) {
        let mean = if label { pos_mean } else { neg_mean };
        for ((c, v), m) in centred.iter_mut().zip(r).zip(mean) {
            *c = v - m;
        }
        for i in 0..d {
            let ci = centred[i] / n as f64;
            for j in i..d {
                cov[i * d + j] += ci * centred[j];
            }
        }
    }
    for i in 0..d {
        for j in 0..i {
            cov[i * d + j] = cov[j * d + i];
        }
    }
    let (values, vectors) = crate::linalg::symmetric_eigen(&cov, d);
    let max = values.iter().fold(0f64, |a, &b| a.max(b.abs()));
    let cutoff = max * d as f64 * f32::EPSILON as f64;
    // Σ⁺θ = V diag(1/λ) Vᵀ θ over the kept eigenvalues.
    let mut out = vec![0f64; d];
    for k in 0..d {
        if values[k].abs() <= cutoff {
            continue;
        }
        let coord: f64 = (0..d).map(|i| vectors[i * d + k] * theta[i]).sum::<f64>() / values[k];
        for i in 0..d {
            out[i] += vectors[i * d + k] * coord;
        }
    }
    out
}
