//! One activation vector per statement at any set of hooks: the last token's (what
//! geometry-of-truth probes: the final "."), or the mean over the statement's tokens.

use std::collections::BTreeMap;

use prism_core::{Activation, HookPoint, Hooks, HostTensor, PrismError, Result};
use prism_models::Model;
use serde::Serialize;

/// Which token's activation represents a statement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The last real token.
    #[default]
    LastToken,
    /// The mean over the statement's real tokens.
    Mean,
}

impl std::str::FromStr for Pooling {
    type Err = PrismError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "last" | "last-token" | "last_token" => Ok(Pooling::LastToken),
            "mean" => Ok(Pooling::Mean),
            other => Err(PrismError::InvalidInput(format!(
                "unknown pooling `{other}` (last, mean)"
            ))),
        }
    }
}

/// Activations of `texts` at `hooks`, one row per text: `[texts, width]` per hook (`hook_z`
/// rows are the heads' outputs side by side, `[heads · d_head]`). `base` carries interventions
/// applied in every pass (an ablation); the model runs only as far as the deepest hook.
/// Texts are run `batch_size` at a time; `progress(done, total)` counts texts.
///
/// ```no_run
/// # fn f(model: &prism_models::Model) -> prism_core::Result<()> {
/// use prism_probe::{Pooling, statement_activations};
/// let hooks = ["blocks.10.hook_resid_post".parse()?];
/// let texts = ["The city of Paris is in France.", "The city of Paris is in Peru."];
/// let acts = statement_activations(model, &texts, &hooks, Pooling::LastToken, &Default::default(), 32, |_, _| {})?;
/// assert_eq!(acts[&hooks[0]].shape, vec![2, 576]);
/// # Ok(()) }
/// ```
pub fn statement_activations(
    model: &Model,
    texts: &[&str],
    hooks: &[HookPoint],
    pooling: Pooling,
    base: &Hooks,
    batch_size: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<BTreeMap<HookPoint, HostTensor>> {
    if texts.is_empty() || hooks.is_empty() {
        return Err(PrismError::InvalidInput(
            "statement activations need texts and hooks".into(),
        ));
    }
    if let Some(h) = hooks
        .iter()
        .find(|h| matches!(h, HookPoint::AttnPattern(_)))
    {
        return Err(PrismError::Hook {
            hook: h.to_string(),
            message: "attention patterns are not one vector per token".into(),
        });
    }
    let plan = base.clone().capture_all(hooks.iter().copied());
    let mut out: BTreeMap<HookPoint, (usize, Vec<f32>)> = BTreeMap::new();
    let mut done = 0;
    for chunk in texts.chunks(batch_size.max(1)) {
        let batch = model.batch(chunk)?;
        let mut run = model.transformer.capture_only(&batch, &plan)?;
        for &hook in hooks {
            let act = match run.take(hook)? {
                Activation::Rank3(t) => t,
                Activation::Rank4(t) => {
                    let [b, s, h, e] = t.dims();
                    t.reshape([b, s, h * e])
                }
            };
            let [b, s, w] = act.dims();
            let host = prism_core::to_vec(act)?;
            let entry = out.entry(hook).or_insert((w, Vec::new()));
            for (i, &len) in batch.lengths.iter().enumerate().take(b) {
                let row = |p: usize| &host[(i * s + p) * w..(i * s + p + 1) * w];
                match pooling {
                    Pooling::LastToken => entry.1.extend_from_slice(row(len - 1)),
                    Pooling::Mean => {
                        let mut mean = vec![0f32; w];
                        for p in 0..len {
                            for (m, v) in mean.iter_mut().zip(row(p)) {
                                *m += v / len as f32;
                            }
                        }
                        entry.1.extend_from_slice(&mean);
                    }
                }
            }
        }
        done += chunk.len();
        progress(done, texts.len());
    }
    out.into_iter()
        .map(|(h, (w, data))| Ok((h, HostTensor::new(vec![texts.len(), w], data)?)))
        .collect()
}

/// The rows `idx` of a `[n, d]` host tensor.
///
/// ```
/// let x = prism_core::HostTensor::new(vec![3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
/// assert_eq!(prism_probe::select_rows(&x, &[2, 0])?.data, vec![5.0, 6.0, 1.0, 2.0]);
/// # Ok::<(), prism_core::PrismError>(())
/// ```
pub fn select_rows(x: &HostTensor, idx: &[usize]) -> Result<HostTensor> {
    let [n, d] = x.dims2()?;
    let mut data = Vec::with_capacity(idx.len() * d);
    for &i in idx {
        if i >= n {
            return Err(PrismError::InvalidInput(format!(
                "row {i} out of range for {n} rows"
            )));
        }
        data.extend_from_slice(&x.data[i * d..(i + 1) * d]);
    }
    HostTensor::new(vec![idx.len(), d], data)
}
