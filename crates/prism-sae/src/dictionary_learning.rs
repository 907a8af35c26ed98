//! Import of dictionary_learning's `ae.pt` files (PyTorch state dicts) as [`Sae`] values.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use prism_core::{PrismError, Result};
use serde_json::json;

use crate::torch_pickle::{PtTensor, read_state_dict};
use crate::{Architecture, Sae};

impl Sae {
    /// Loads a dictionary_learning `ae.pt` (read directly, no Python), recognising the class
    /// from its tensor names:
    /// - `AutoEncoder` (standard): `encoder.weight [m, d]`, `encoder.bias`, `decoder.weight [d, m]`, `bias`;
    /// - `AutoEncoderTopK` / `BatchTopKSAE`: `encoder.*`, `decoder.weight`, `b_dec`, `k`
    ///   (imported as TopK; a positive `threshold` is kept in `cfg.json` as `batch_threshold`);
    /// - `JumpReluAutoEncoder`: `W_enc [d, m]`, `b_enc`, `W_dec [m, d]`, `b_dec`, `threshold`;
    /// - `MatryoshkaBatchTopKSAE`: `W_enc`, `b_enc`, `W_dec`, `b_dec`, `k`, `threshold`,
    ///   `group_sizes` (imported as JumpReLU with its global threshold, as its `encode` does;
    ///   the prefix widths kept in `cfg.json` as `matryoshka_widths`);
    /// - `GatedAutoEncoder`: `encoder.weight`, `gate_bias`, `r_mag`, `mag_bias`, `decoder.weight`,
    ///   `decoder_bias`.
    pub fn from_dictionary_learning(path: &Path, device: &Device) -> Result<Sae> {
        Self::from_dictionary_learning_class(path, None, device)
    }

    /// [`Sae::from_dictionary_learning`] for a known class (`trainer.dict_class` in the
    /// trainer's `config.json`). The class matters where the tensor names do not tell:
    /// `AutoEncoderTopK` and `BatchTopKSAE` store the same tensors, but a `BatchTopKSAE` encodes
    /// with its learned global threshold (`relu(pre) · [relu(pre) > θ]`), so it is imported as
    /// a JumpReLU dictionary with θ on every feature.
    pub fn from_dictionary_learning_class(
        path: &Path,
        dict_class: Option<&str>,
        device: &Device,
    ) -> Result<Sae> {
        let mut t = StateDict::new(path, read_state_dict(path)?);
        let mut extra = serde_json::Map::new();
        extra.insert("imported_from".into(), json!("dictionary_learning ae.pt"));
        let sae = if t.has("W_enc") && t.has("group_sizes") {
            // MatryoshkaBatchTopKSAE: encodes with its learned global threshold, like a
            // BatchTopKSAE (a negative, untracked one lets every positive code through).
            let w_enc = t.take("W_enc")?;
            let [d, m] = dims2(path, "W_enc", &w_enc)?;
            let threshold = scalar(path, "threshold", t.take("threshold")?)?;
            let k = scalar(path, "k", t.take("k")?)?;
            let sizes = t.take("group_sizes")?.data;
            let widths: Vec<usize> = sizes
                .iter()
                .scan(0usize, |end, &s| {
                    *end = end.saturating_add(s as usize);
                    Some(*end)
                })
                .collect();
            if widths.last() != Some(&m) || sizes.iter().any(|&s| s.is_nan() || s < 1.0) {
                return Err(PrismError::Weight {
                    path: path.to_path_buf(),
                    name: "group_sizes".into(),
                    message: format!("groups {sizes:?} do not add up to the {m} features"),
                });
            }
            extra.insert("batch_k".into(), json!(k as u64));
            extra.insert("matryoshka_widths".into(), json!(widths));
            Parts {
                architecture: Kind::JumpRelu(vec![threshold; m]),
                w_enc_dm: w_enc.data,
                b_enc: vector(path, "b_enc", t.take("b_enc")?, m)?,
                w_dec_md: expect(path, "W_dec", t.take("W_dec")?, &[m, d])?,
                b_dec: vector(path, "b_dec", t.take("b_dec")?, d)?,
                apply_b_dec_to_input: true,
                d,
                m,
            }
        } else if t.has("W_enc") {
            let w_enc = t.take("W_enc")?;
            let [d, m] = dims2(path, "W_enc", &w_enc)?;
            Parts {
                architecture: Kind::JumpRelu(vector(path, "threshold", t.take("threshold")?, m)?),
                w_enc_dm: w_enc.data,
                b_enc: vector(path, "b_enc", t.take("b_enc")?, m)?,
                w_dec_md: expect(path, "W_dec", t.take("W_dec")?, &[m, d])?,
                b_dec: vector(path, "b_dec", t.take("b_dec")?, d)?,
                apply_b_dec_to_input: false,
                d,
                m,
            }
        } else {
            let enc = t.take("encoder.weight")?;
            let [m, d] = dims2(path, "encoder.weight", &enc)?;
            let w_enc_dm = transpose(&enc.data, m, d);
            let dec = expect(path, "decoder.weight", t.take("decoder.weight")?, &[d, m])?;
            let w_dec_md = transpose(&dec, d, m);
            if t.has("r_mag") {
                Parts {
                    architecture: Kind::Gated(
                        vector(path, "r_mag", t.take("r_mag")?, m)?,
                        vector(path, "mag_bias", t.take("mag_bias")?, m)?,
                    ),
                    w_enc_dm,
                    b_enc: vector(path, "gate_bias", t.take("gate_bias")?, m)?,
                    w_dec_md,
                    b_dec: vector(path, "decoder_bias", t.take("decoder_bias")?, d)?,
                    apply_b_dec_to_input: true,
                    d,
                    m,
                }
            } else if t.has("k") {
                let k = scalar(path, "k", t.take("k")?)? as usize;
                if k == 0 || k > m {
                    return Err(PrismError::Weight {
                        path: path.to_path_buf(),
                        name: "k".into(),
                        message: format!("k = {k} must be between 1 and {m}"),
                    });
                }
                let threshold = t
                    .tensors
                    .remove("threshold")
                    .and_then(|v| v.data.first().copied());
                if let Some(th) = threshold
                    && th > 0.0
                {
                    extra.insert("batch_threshold".into(), json!(th));
                }
                let architecture = if dict_class == Some("BatchTopKSAE") {
                    extra.insert("batch_k".into(), json!(k));
                    let th = threshold.ok_or_else(|| PrismError::Weight {
                        path: path.to_path_buf(),
                        name: "threshold".into(),
                        message: "a BatchTopKSAE needs its threshold buffer".into(),
                    })?;
                    Kind::JumpRelu(vec![th; m])
                } else {
                    Kind::TopK(k)
                };
                Parts {
                    architecture,
                    w_enc_dm,
                    b_enc: vector(path, "encoder.bias", t.take("encoder.bias")?, m)?,
                    w_dec_md,
                    b_dec: vector(path, "b_dec", t.take("b_dec")?, d)?,
                    apply_b_dec_to_input: true,
                    d,
                    m,
                }
            } else {
                Parts {
                    architecture: Kind::Standard,
                    w_enc_dm,
                    b_enc: vector(path, "encoder.bias", t.take("encoder.bias")?, m)?,
                    w_dec_md,
                    b_dec: vector(path, "bias", t.take("bias")?, d)?,
                    apply_b_dec_to_input: true,
                    d,
                    m,
                }
            }
        };
        sae.into_sae(device, extra)
    }
}

/// A state dict whose tensors are taken one by one, with errors that list what it holds.
struct StateDict<'p> {
    path: &'p Path,
    names: Vec<String>,
    tensors: HashMap<String, PtTensor>,
}

impl<'p> StateDict<'p> {
    fn new(path: &'p Path, tensors: HashMap<String, PtTensor>) -> Self {
        let mut names: Vec<String> = tensors.keys().cloned().collect();
        names.sort();
        Self {
            path,
            names,
            tensors,
        }
    }

    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn take(&mut self, name: &str) -> Result<PtTensor> {
        self.tensors.remove(name).ok_or_else(|| PrismError::Weight {
            path: self.path.to_path_buf(),
            name: name.into(),
            message: format!("missing from the state dict (it holds {:?})", self.names),
        })
    }
}

/// The architecture with its per-feature vectors, host-side.
enum Kind {
    Standard,
    TopK(usize),
    JumpRelu(Vec<f32>),
    /// `r_mag`, `mag_bias`.
    Gated(Vec<f32>, Vec<f32>),
}

/// Host-side pieces in SAELens orientation.
struct Parts {
    architecture: Kind,
    w_enc_dm: Vec<f32>,
    b_enc: Vec<f32>,
    w_dec_md: Vec<f32>,
    b_dec: Vec<f32>,
    apply_b_dec_to_input: bool,
    d: usize,
    m: usize,
}

impl Parts {
    fn into_sae(
        self,
        device: &Device,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Sae> {
        let (d, m) = (self.d, self.m);
        let t = |v: Vec<f32>, shape: [usize; 2]| {
            Tensor::<2>::from_data(TensorData::new(v, shape), device)
        };
        let architecture = match self.architecture {
            Kind::Standard => Architecture::Standard,
            Kind::TopK(k) => Architecture::TopK { k },
            Kind::JumpRelu(th) => Architecture::JumpRelu {
                threshold: t(th, [1, m]),
            },
            Kind::Gated(r, b) => Architecture::Gated {
                r_mag: t(r, [1, m]),
                b_mag: t(b, [1, m]),
            },
        };
        let mut sae = Sae::new(
            architecture,
            t(self.w_enc_dm, [d, m]),
            t(self.b_enc, [1, m]),
            t(self.w_dec_md, [m, d]),
            t(self.b_dec, [1, d]),
        )?;
        sae.apply_b_dec_to_input = self.apply_b_dec_to_input;
        sae.extra_cfg = extra;
        Ok(sae)
    }
}

pub(crate) fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

fn shape_error(path: &Path, name: &str, want: String, got: &[usize]) -> PrismError {
    PrismError::Weight {
        path: path.to_path_buf(),
        name: name.into(),
        message: format!("expected shape {want}, found {got:?}"),
    }
}

fn dims2(path: &Path, name: &str, t: &PtTensor) -> Result<[usize; 2]> {
    match t.shape[..] {
        [a, b] => Ok([a, b]),
        _ => Err(shape_error(path, name, "[_, _]".into(), &t.shape)),
    }
}

fn expect(path: &Path, name: &str, t: PtTensor, shape: &[usize]) -> Result<Vec<f32>> {
    if t.shape != shape {
        return Err(shape_error(path, name, format!("{shape:?}"), &t.shape));
    }
    Ok(t.data)
}

/// A one-value tensor's value (a buffer such as `k` or a global `threshold`).
fn scalar(path: &Path, name: &str, t: PtTensor) -> Result<f32> {
    match t.data[..] {
        [v] => Ok(v),
        _ => Err(shape_error(path, name, "one value".into(), &t.shape)),
    }
}

fn vector(path: &Path, name: &str, t: PtTensor, len: usize) -> Result<Vec<f32>> {
    expect(path, name, t, &[len])
}

/// The TransformerLens hook name of a dictionary_learning trainer's submodule: `trainer.layer`
/// and `trainer.submodule_name` (`resid_post_layer_3`, `mlp_out_layer3`, `attn_out_layer_3`,
/// `embed`; feature-circuits also writes `resid_3`).
///
/// ```
/// # use prism_sae::hook_from_trainer_config;
/// let cfg = serde_json::json!({"trainer": {"layer": 3, "submodule_name": "mlp_out_layer3"}});
/// assert_eq!(hook_from_trainer_config(&cfg).as_deref(), Some("blocks.3.hook_mlp_out"));
/// let cfg = serde_json::json!({"trainer": {"submodule_name": "resid_2"}});
/// assert_eq!(hook_from_trainer_config(&cfg).as_deref(), Some("blocks.2.hook_resid_post"));
/// ```
pub fn hook_from_trainer_config(cfg: &serde_json::Value) -> Option<String> {
    let trainer = cfg.get("trainer").unwrap_or(cfg);
    let name = trainer.get("submodule_name").and_then(|v| v.as_str())?;
    if name.contains("embed") {
        return Some("hook_embed".into());
    }
    let digits: String = name
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let layer = trainer
        .get("layer")
        .and_then(|v| v.as_u64())
        .or_else(|| digits.parse().ok())?;
    let kind = if name.contains("mlp") {
        "hook_mlp_out"
    } else if name.contains("attn") {
        "hook_attn_out"
    } else if name.contains("resid") {
        "hook_resid_post"
    } else {
        return None;
    };
    Some(format!("blocks.{layer}.{kind}"))
}
