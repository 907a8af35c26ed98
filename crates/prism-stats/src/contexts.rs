//! Top-activating contexts of features, and what each feature's decoder direction does to the
//! logits.

use burn::tensor::{Int, Tensor, TensorData};
use prism_core::{Dictionary, HookPoint, Hooks, HostTensor, PrismError, Result};
use prism_models::{Model, TokenBatch};

/// One window in which a feature fired strongly.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Context {
    /// Index of the window in the list given.
    pub window: usize,
    /// Position of the activating token in the window.
    pub position: usize,
    /// The feature's activation there.
    pub activation: f32,
    /// The window's tokens, as text.
    pub tokens: Vec<String>,
    /// The feature's activation at every token of the window.
    pub activations: Vec<f32>,
}

/// What one feature responds to and what it does.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FeatureReport {
    /// Feature index.
    pub feature: usize,
    /// Fraction of the scanned tokens on which it fired.
    pub density: f64,
    /// Its strongest contexts, strongest first.
    pub top: Vec<Context>,
    /// Tokens whose logits its decoder direction raises most (direction · W_U), with the amount.
    pub promoted: Vec<(String, f32)>,
    /// Tokens whose logits it lowers most.
    pub suppressed: Vec<(String, f32)>,
}

/// A kept activation: (activation, window, position, per-token activations of that window).
type Candidate = (f32, usize, usize, Vec<f32>);

/// Scans `windows` (equal lengths), keeping for each of `features` its `n` strongest
/// activations (ties: earlier window, then earlier position), and computes the logit effect of
/// each feature's decoder direction through the unembedding (without the final norm, as
/// SAELens' logit weight distributions do).
pub fn top_activating(
    model: &Model,
    dict: &dyn Dictionary,
    hook: HookPoint,
    windows: &[Vec<u32>],
    features: &[usize],
    n: usize,
    windows_per_forward: usize,
) -> Result<Vec<FeatureReport>> {
    if let Some(&bad) = features.iter().find(|&&f| f >= dict.d_sae()) {
        return Err(PrismError::InvalidInput(format!(
            "feature {bad} does not exist (d_sae = {})",
            dict.d_sae()
        )));
    }
    let device = model.device().clone();
    let idx = Tensor::<1, Int>::from_data(
        TensorData::new(
            features.iter().map(|&f| f as i64).collect::<Vec<_>>(),
            [features.len()],
        ),
        &device,
    );
    let nf = features.len();
    let mut best: Vec<Vec<Candidate>> = vec![Vec::new(); nf];
    let mut fires = vec![0u64; nf];
    let mut tokens = 0u64;
    for (g, group) in windows.chunks(windows_per_forward.max(1)).enumerate() {
        let batch = TokenBatch::from_sequences(group, model.pad_id())?;
        let mut out = model
            .transformer
            .capture_only(&batch, &Hooks::new().capture(hook))?;
        let x = out.take(hook)?.into_rank3()?;
        let [b, s, d] = x.dims();
        let codes = dict.encode(x.reshape([b * s, d])).select(1, idx.clone());
        let codes = HostTensor::from_burn(codes)?;
        tokens += (b * s) as u64;
        for (k, list) in best.iter_mut().enumerate() {
            for w in 0..b {
                let column: Vec<f32> = (0..s).map(|p| codes.data[(w * s + p) * nf + k]).collect();
                fires[k] += column.iter().filter(|&&v| v != 0.0).count() as u64;
                for (p, &a) in column.iter().enumerate() {
                    if n == 0 {
                        break;
                    }
                    let full = list.len() >= n;
                    if a <= 0.0 || (full && a <= list[n - 1].0) {
                        continue;
                    }
                    let window = g * windows_per_forward.max(1) + w;
                    let at = list.partition_point(|e| e.0 >= a);
                    list.insert(at, (a, window, p, column.clone()));
                    list.truncate(n);
                }
            }
        }
    }
    // Logit effect of each decoder direction.
    let directions = dict.decoder_directions().select(0, idx);
    let effect = HostTensor::from_burn(directions.matmul(model.transformer.unembed.clone()))?;
    let vocab = effect.shape[1];
    let tok = |i: u32| model.tokenizer.token_str(i);
    Ok(best
        .into_iter()
        .enumerate()
        .map(|(k, list)| {
            let row = &effect.data[k * vocab..(k + 1) * vocab];
            let mut order: Vec<usize> = (0..vocab).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let show = |ids: &[usize]| {
                ids.iter()
                    .map(|&i| (tok(i as u32), row[i]))
                    .collect::<Vec<_>>()
            };
            FeatureReport {
                feature: features[k],
                density: fires[k] as f64 / tokens.max(1) as f64,
                top: list
                    .into_iter()
                    .map(|(activation, window, position, activations)| Context {
                        window,
                        position,
                        activation,
                        tokens: windows[window].iter().map(|&t| tok(t)).collect(),
                        activations,
                    })
                    .collect(),
                promoted: show(&order[..10.min(vocab)]),
                suppressed: show(
                    &order[vocab.saturating_sub(10)..]
                        .iter()
                        .rev()
                        .copied()
                        .collect::<Vec<_>>(),
                ),
            }
        })
        .collect())
}
