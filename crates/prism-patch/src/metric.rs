//! What a patching experiment measures.

use std::sync::Arc;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use prism_core::{PrismError, Result};

use crate::pairs::PairBatch;

/// A function of per-pair last-position logits `[n, vocab]` (row `i` from pair `i % pairs`),
/// returning one value per row `[n]`. Built from tensor operations, it is differentiable, so
/// attribution works with it too.
pub type MetricFn = Arc<dyn Fn(Tensor<2>, &PairBatch) -> Result<Tensor<1>> + Send + Sync>;

/// A scalar measured at each pair's last real position and averaged over the pairs.
#[derive(Clone)]
pub enum Metric {
    /// `logit[answer] − logit[wrong]`.
    LogitDiff,
    /// `−log p(answer)`.
    Loss,
    /// `p(answer)`.
    Prob,
    /// Any function of the last-position logits.
    Custom(String, MetricFn),
}

impl std::fmt::Debug for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Metric {
    type Err = PrismError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "logit-diff" | "logit_diff" => Ok(Metric::LogitDiff),
            "loss" => Ok(Metric::Loss),
            "prob" => Ok(Metric::Prob),
            other => Err(PrismError::InvalidInput(format!(
                "unknown metric `{other}` (logit-diff, loss, prob)"
            ))),
        }
    }
}

impl Metric {
    /// The name used in JSON output.
    pub fn name(&self) -> &str {
        match self {
            Metric::LogitDiff => "logit_diff",
            Metric::Loss => "loss",
            Metric::Prob => "prob",
            Metric::Custom(name, _) => name,
        }
    }

    /// The metric of each row of `last` (`[n, vocab]`, row `i` belonging to pair
    /// `i % pairs.len()`), as a tensor `[n]` (differentiable when `last` is tracked).
    pub fn values(&self, last: Tensor<2>, pairs: &PairBatch) -> Result<Tensor<1>> {
        let [n, _] = last.dims();
        let device = last.device().inner();
        let ids = |tokens: &[u32]| {
            let v: Vec<i64> = (0..n).map(|i| tokens[i % tokens.len()] as i64).collect();
            Tensor::<2, Int>::from_data(TensorData::new(v, [n, 1]), &device)
        };
        let out = match self {
            Metric::LogitDiff => {
                last.clone().gather(1, ids(&pairs.answer)) - last.gather(1, ids(&pairs.wrong))
            }
            Metric::Loss => log_softmax(last, 1).gather(1, ids(&pairs.answer)).neg(),
            Metric::Prob => log_softmax(last, 1).gather(1, ids(&pairs.answer)).exp(),
            Metric::Custom(name, f) => {
                let v = f(last, pairs)?;
                if v.dims() != [n] {
                    return Err(PrismError::Shape(format!(
                        "metric `{name}` returned {:?} values for {n} rows",
                        v.dims()
                    )));
                }
                return Ok(v);
            }
        };
        Ok(out.reshape([n]))
    }

    /// [`Metric::values`] read to the host.
    pub fn per_row(&self, last: Tensor<2>, pairs: &PairBatch) -> Result<Vec<f64>> {
        Ok(
            prism_core::to_vec(self.values(last, pairs)?.without_autodiff())?
                .into_iter()
                .map(f64::from)
                .collect(),
        )
    }
}
