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
    /// - `GatedAutoEncoder`: `encoder.weight`, `gate_bias`, `r_mag`, `mag_bias`, `decoder.weight`,
    ///   `decoder_bias`.
    pub fn from_dictionary_learning(path: &Path, device: &Device) -> Result<Sae> {
        let mut t = StateDict::new(path, read_state_dict(path)?);
        let mut extra = serde_json::Map::new();
        extra.insert("imported_from".into(), json!("dictionary_learning ae.pt"));
        let sae = if t.has("W_enc") {
            let w_enc = t.take("W_enc")?;
            let [d, m] = dims2(path, "W_enc", &w_enc)?;
            Parts {
                architecture: Architecture::JumpRelu,
                w_enc_dm: w_enc.data,
                b_enc: vector(path, "b_enc", t.take("b_enc")?, m)?,
                w_dec_md: expect(path, "W_dec", t.take("W_dec")?, &[m, d])?,
                b_dec: vector(path, "b_dec", t.take("b_dec")?, d)?,
                threshold: Some(vector(path, "threshold", t.take("threshold")?, m)?),
                gated: None,
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
                    architecture: Architecture::Gated,
                    w_enc_dm,
                    b_enc: vector(path, "gate_bias", t.take("gate_bias")?, m)?,
                    w_dec_md,
                    b_dec: vector(path, "decoder_bias", t.take("decoder_bias")?, d)?,
                    threshold: None,
                    gated: Some((
                        vector(path, "r_mag", t.take("r_mag")?, m)?,
                        vector(path, "mag_bias", t.take("mag_bias")?, m)?,
                    )),
                    apply_b_dec_to_input: true,
                    d,
                    m,
                }
            } else if t.has("k") {
                let k = t.take("k")?.data.first().copied().unwrap_or(0.0) as usize;
                if k == 0 || k > m {
                    return Err(PrismError::Weight {
                        path: path.to_path_buf(),
                        name: "k".into(),
                        message: format!("k = {k} must be between 1 and {m}"),
                    });
                }
                if let Some(th) = t
                    .tensors
                    .remove("threshold")
                    .and_then(|v| v.data.first().copied())
                    && th > 0.0
                {
                    extra.insert("batch_threshold".into(), json!(th));
                }
                Parts {
                    architecture: Architecture::TopK { k },
                    w_enc_dm,
                    b_enc: vector(path, "encoder.bias", t.take("encoder.bias")?, m)?,
                    w_dec_md,
                    b_dec: vector(path, "b_dec", t.take("b_dec")?, d)?,
                    threshold: None,
                    gated: None,
                    apply_b_dec_to_input: true,
                    d,
                    m,
                }
            } else {
                Parts {
                    architecture: Architecture::Standard,
                    w_enc_dm,
                    b_enc: vector(path, "encoder.bias", t.take("encoder.bias")?, m)?,
                    w_dec_md,
                    b_dec: vector(path, "bias", t.take("bias")?, d)?,
                    threshold: None,
                    gated: None,
                    apply_b_dec_to_input: true,
                    d,
                    m,
                }
            }
        };
        Ok(sae.into_sae(device, extra))
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

/// Host-side pieces in SAELens orientation.
struct Parts {
    architecture: Architecture,
    w_enc_dm: Vec<f32>,
    b_enc: Vec<f32>,
    w_dec_md: Vec<f32>,
    b_dec: Vec<f32>,
    threshold: Option<Vec<f32>>,
    gated: Option<(Vec<f32>, Vec<f32>)>,
    apply_b_dec_to_input: bool,
    d: usize,
    m: usize,
}

impl Parts {
    fn into_sae(self, device: &Device, extra: serde_json::Map<String, serde_json::Value>) -> Sae {
        let (d, m) = (self.d, self.m);
        let t = |v: Vec<f32>, shape: [usize; 2]| {
            Tensor::<2>::from_data(TensorData::new(v, shape), device)
        };
        let (r_mag, b_mag) = match self.gated {
            Some((r, b)) => (Some(t(r, [1, m])), Some(t(b, [1, m]))),
            None => (None, None),
        };
        Sae {
            architecture: self.architecture,
            w_enc: t(self.w_enc_dm, [d, m]),
            b_enc: t(self.b_enc, [1, m]),
            w_dec: t(self.w_dec_md, [m, d]),
            b_dec: t(self.b_dec, [1, d]),
            threshold: self.threshold.map(|v| t(v, [1, m])),
            r_mag,
            b_mag,
            apply_b_dec_to_input: self.apply_b_dec_to_input,
            hook_name: None,
            extra_cfg: extra,
        }
    }
}

fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
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

fn vector(path: &Path, name: &str, t: PtTensor, len: usize) -> Result<Vec<f32>> {
    expect(path, name, t, &[len])
}
