//! Feature activity over a token set (a streaming pass through the model and the dictionary),
//! and what each feature's decoder direction does to the logits.

use prism_core::{Dictionary, HookPoint, Hooks, HostTensor, PrismError, Result, index_tensor};
use prism_models::{Model, TokenBatch};

use crate::collect::{Bin, CollectOptions, FeatureActivity, FeatureCollector};

/// Which features a scan keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeatureSelection {
    /// Every feature of the dictionary.
    All,
    /// These features, in this order.
    Only(Vec<usize>),
}

/// What a [`scan_features`] pass keeps and how it batches.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanOptions {
    /// Which features are collected.
    pub selection: FeatureSelection,
    /// What is kept per feature (top contexts, quantile samples, span radius).
    pub collect: CollectOptions,
    /// Windows per forward pass.
    pub windows_per_forward: usize,
}

impl Default for ScanOptions {
    /// Every feature, [`CollectOptions::default`], 8 windows per forward.
    fn default() -> Self {
        Self {
            selection: FeatureSelection::All,
            collect: CollectOptions::default(),
            windows_per_forward: 8,
        }
    }
}

/// The result of [`scan_features`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FeatureScan {
    /// Tokens scanned (real positions only, padding excluded).
    pub tokens: u64,
    /// One entry per selected feature.
    pub features: Vec<FeatureActivity>,
}

/// Runs `windows` through the model up to `hook` (`options.windows_per_forward` at a time),
/// encodes the activations with `dict` and streams the codes of the selected features through a
/// [`FeatureCollector`]; memory is bounded per feature, not per token. `on_batch` is called with
/// the number of windows done after each forward (for progress bars).
///
/// ```no_run
/// # fn run(model: &prism_models::Model, sae: &prism_sae::Sae, windows: &[Vec<u32>]) -> prism_core::Result<()> {
/// use prism_stats::{ScanOptions, scan_features};
/// let hook = "blocks.15.hook_mlp_out".parse()?;
/// let scan = scan_features(model, sae, hook, windows, &ScanOptions::default(), |_| {})?;
/// println!("{} tokens, feature 0 fired on {}", scan.tokens, scan.features[0].fires);
/// # Ok(()) }
/// ```
pub fn scan_features(
    model: &Model,
    dict: &dyn Dictionary,
    hook: HookPoint,
    windows: &[Vec<u32>],
    options: &ScanOptions,
    mut on_batch: impl FnMut(usize),
) -> Result<FeatureScan> {
    let windows_per_forward = options.windows_per_forward;
    let (features, select) = match &options.selection {
        FeatureSelection::All => ((0..dict.d_sae()).collect(), None),
        FeatureSelection::Only(list) => {
            check_features(list, dict)?;
            (list.clone(), Some(index_tensor(list, model.device())))
        }
    };
    let nf = features.len();
    let mut collector = FeatureCollector::new(features, options.collect.clone());
    let per = windows_per_forward.max(1);
    let mut done = 0;
    for (g, group) in windows.chunks(per).enumerate() {
        let batch = TokenBatch::from_sequences(group, model.pad_id())?;
        let mut out = model
            .transformer
            .capture_only(&batch, &Hooks::new().capture(hook))?;
        let x = out.take(hook)?.into_rank3()?;
        let [b, s, d] = x.dims();
        let mut codes = dict.encode(x.reshape([b * s, d]));
        if let Some(idx) = &select {
            codes = codes.select(1, idx.clone());
        }
        let codes = HostTensor::from_burn(codes)?;
        for (w, window) in group.iter().enumerate() {
            let rows = &codes.data[w * s * nf..(w * s + window.len()) * nf];
            collector.observe(g * per + w, rows, window.len())?;
        }
        done += group.len();
        on_batch(done);
    }
    Ok(FeatureScan {
        tokens: collector.tokens(),
        features: collector.finish(),
    })
}

/// A typed error for a feature index the dictionary does not have.
fn check_features(features: &[usize], dict: &dyn Dictionary) -> Result<()> {
    match features.iter().find(|&&f| f >= dict.d_sae()) {
        Some(&bad) => Err(PrismError::InvalidInput(format!(
            "feature {bad} does not exist (d_sae = {})",
            dict.d_sae()
        ))),
        None => Ok(()),
    }
}

/// What one feature's decoder direction does to the logits (direction · W_U, without the final
/// norm, as SAELens' logit weight distributions do).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LogitEffect {
    /// Token ids whose logits it raises most, with the amount, largest first.
    pub promoted: Vec<(u32, f32)>,
    /// Token ids whose logits it lowers most, most negative first.
    pub suppressed: Vec<(u32, f32)>,
    /// The effect on every token of the vocabulary, in equal bins from its minimum to its
    /// maximum.
    pub histogram: Vec<Bin>,
}

/// The logit effect of each of `features` (chunks of 256 directions through the unembedding at
/// a time, so the `[features, vocab]` matrix is never whole): `top` tokens each way and a
/// `bins`-bar histogram.
pub fn logit_effects(
    model: &Model,
    dict: &dyn Dictionary,
    features: &[usize],
    top: usize,
    bins: usize,
) -> Result<Vec<LogitEffect>> {
    check_features(features, dict)?;
    let directions = dict.decoder_directions();
    let mut out = Vec::with_capacity(features.len());
    for chunk in features.chunks(256) {
        let idx = index_tensor(chunk, model.device());
        let effect = HostTensor::from_burn(
            directions
                .clone()
                .select(0, idx)
                .matmul(model.transformer.unembed.clone()),
        )?;
        let vocab = effect.shape[1];
        for row in effect.data.chunks_exact(vocab) {
            out.push(effect_of(row, top, bins));
        }
    }
    Ok(out)
}

fn effect_of(row: &[f32], top: usize, bins: usize) -> LogitEffect {
    let top = top.min(row.len());
    let mut order: Vec<u32> = (0..row.len() as u32).collect();
    let by_value = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]);
    let take = |order: &[u32]| order.iter().map(|&i| (i, row[i as usize])).collect();
    let promoted = if top > 0 {
        order.select_nth_unstable_by(top - 1, by_value);
        let mut head = order[..top].to_vec();
        head.sort_by(by_value);
        take(&head)
    } else {
        Vec::new()
    };
    let suppressed = if top > 0 {
        let n = order.len();
        order.select_nth_unstable_by(n - top, by_value);
        let mut tail = order[n - top..].to_vec();
        tail.sort_by(|a, b| by_value(b, a));
        take(&tail)
    } else {
        Vec::new()
    };
    let (lo, hi) = row
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    let bins = bins.max(1);
    let width = ((hi - lo) / bins as f32).max(f32::MIN_POSITIVE);
    let mut counts = vec![0u64; bins];
    for &v in row {
        counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
    }
    LogitEffect {
        promoted,
        suppressed,
        histogram: counts
            .into_iter()
            .enumerate()
            .map(|(i, count)| Bin {
                lo: lo + i as f32 * width,
                hi: lo + (i + 1) as f32 * width,
                count,
            })
            .collect(),
    }
}

/// One window in which a feature fired strongly, cut to a span centred on the peak.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Context {
    /// Index of the window in the list given.
    pub window: usize,
    /// Position of the activating token in the window.
    pub position: usize,
    /// Index of the activating token in `tokens`.
    pub offset: usize,
    /// The feature's activation there.
    pub activation: f32,
    /// The span's tokens, as text.
    pub tokens: Vec<String>,
    /// The feature's activation at every token of the span.
    pub activations: Vec<f32>,
}

impl Context {
    /// The activating token's text.
    pub fn peak_token(&self) -> &str {
        &self.tokens[self.offset]
    }
}

/// What one feature responds to and what it does, with tokens as text.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FeatureReport {
    /// Feature index.
    pub feature: usize,
    /// Fraction of the scanned tokens on which it fired.
    pub density: f64,
    /// Its strongest contexts, one per window, strongest first.
    pub top: Vec<Context>,
    /// Tokens whose logits its decoder direction raises most (direction · W_U), with the amount.
    pub promoted: Vec<(String, f32)>,
    /// Tokens whose logits it lowers most.
    pub suppressed: Vec<(String, f32)>,
}

/// Scans `windows` for `features` and keeps each one's `n` strongest activations from distinct
/// windows (ties: earlier window), each as a span of `radius` tokens either side of the peak,
/// with the ten tokens its decoder direction promotes and suppresses most.
pub fn top_activating(
    model: &Model,
    dict: &dyn Dictionary,
    hook: HookPoint,
    windows: &[Vec<u32>],
    features: &[usize],
    n: usize,
    windows_per_forward: usize,
) -> Result<Vec<FeatureReport>> {
    let options = ScanOptions {
        selection: FeatureSelection::Only(features.to_vec()),
        collect: CollectOptions {
            top: n,
            per_band: 0,
            ..CollectOptions::default()
        },
        windows_per_forward,
    };
    let scan = scan_features(model, dict, hook, windows, &options, |_| {})?;
    let effects = logit_effects(model, dict, features, 10, 1)?;
    let tok = |i: u32| model.tokenizer.token_str(i);
    let named = |list: &[(u32, f32)]| list.iter().map(|&(t, v)| (tok(t), v)).collect();
    Ok(scan
        .features
        .into_iter()
        .zip(effects)
        .map(|(f, e)| FeatureReport {
            feature: f.feature,
            density: f.density,
            top: f
                .top
                .iter()
                .map(|x| Context {
                    window: x.window,
                    position: x.position,
                    offset: x.position - x.span_start,
                    activation: x.activation,
                    tokens: windows[x.window][x.span_start..x.span_start + x.span_len]
                        .iter()
                        .map(|&t| tok(t))
                        .collect(),
                    activations: x.span_values(),
                })
                .collect(),
            promoted: named(&e.promoted),
            suppressed: named(&e.suppressed),
        })
        .collect())
}
