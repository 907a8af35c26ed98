//! Next-token cross-entropy, with padding masked out.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use prism_core::{PrismError, Result};

use crate::transformer::TokenBatch;

/// Negative log-likelihood of each next token, `[batch, seq − 1]`, and the mask `[batch, seq − 1]`
/// (1 where the target is a real token, 0 where it is padding).
pub fn next_token_nll(logits: Tensor<3>, batch: &TokenBatch) -> Result<(Tensor<2>, Tensor<2>)> {
    let [b, s, v] = logits.dims();
    if b != batch.batch || s != batch.seq {
        return Err(PrismError::Shape(format!(
            "logits {:?} do not match a batch of {}×{}",
            [b, s, v],
            batch.batch,
            batch.seq
        )));
    }
    if s < 2 {
        return Err(PrismError::InvalidInput(
            "next-token loss needs sequences of at least 2 tokens".into(),
        ));
    }
    let device = logits.device();
    let logp = log_softmax(logits.narrow(1, 0, s - 1), 2);
    let targets: Vec<i64> = (0..b)
        .flat_map(|i| batch.ids[i * s + 1..(i + 1) * s].iter().map(|&t| t as i64))
        .collect();
    let targets = Tensor::<3, Int>::from_data(TensorData::new(targets, [b, s - 1, 1]), &device);
    let nll = logp.gather(2, targets).reshape([b, s - 1]).neg();
    let mask: Vec<f32> = (0..b)
        .flat_map(|i| (0..s - 1).map(move |t| if t + 1 < batch.lengths[i] { 1.0 } else { 0.0 }))
        .collect();
    let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, s - 1]), &device);
    Ok((nll, mask))
}

/// Mean next-token cross-entropy over the real (unpadded) targets of the batch.
///
/// Logits at positions `0..T−2` are scored against tokens `1..T−1`, as HF `transformers` does
/// with `labels = input_ids`.
pub fn next_token_loss(logits: Tensor<3>, batch: &TokenBatch) -> Result<f64> {
    let (nll, mask) = next_token_nll(logits, batch)?;
    let count: usize = batch.lengths.iter().map(|&l| l.saturating_sub(1)).sum();
    if count == 0 {
        return Err(PrismError::InvalidInput(
            "no sequence has a next token to predict".into(),
        ));
    }
    let total = (nll * mask).sum().into_scalar::<f32>() as f64;
    let loss = total / count as f64;
    if !loss.is_finite() {
        return Err(PrismError::NonFinite(format!("next-token loss is {loss}")));
    }
    Ok(loss)
}
