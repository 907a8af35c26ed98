//! What a patching experiment measures.

use std::sync::Arc;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use prism_core::{PrismError, Result};

use crate::pairs::PairBatch;

/// A function of per-pair last-position logits `[n, vocab]` (row `i` from pair `i % pairs`),
/// returning one value per row.
pub type MetricFn = Arc<dyn Fn(Tensor<2>, &PairBatch) -> Result<Vec<f64>> + Send + Sync>;

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
    /// `i % pairs.len()`).
    pub fn per_row(&self, last: Tensor<2>, pairs: &PairBatch) -> Result<Vec<f64>> {
        let [n, _] = last.dims();
        let device = last.device();
        let ids = |tokens: &[u32]| {
            let v: Vec<i64> = (0..n).map(|i| tokens[i % tokens.len()] as i64).collect();
            Tensor::<2, Int>::from_data(TensorData::new(v, [n, 1]), &device)
        };
        let read = |t: Tensor<2>| -> Result<Vec<f64>> {
            Ok(prism_core::to_vec(t.reshape([n]))?
                .into_iter()
                .map(f64::from)
                .collect())
        };
        match self {
            Metric::LogitDiff => {
                read(last.clone().gather(1, ids(&pairs.answer)) - last.gather(1, ids(&pairs.wrong)))
            }
            Metric::Loss => read(log_softmax(last, 1).gather(1, ids(&pairs.answer)).neg()),
            Metric::Prob => read(log_softmax(last, 1).gather(1, ids(&pairs.answer)).exp()),
            Metric::Custom(_, f) => f(last, pairs),
        }
    }
}
