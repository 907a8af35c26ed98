//! The SAE value, its encode/decode, and SAELens-format files.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use prism_core::{
    Dictionary, FloatDtype, HostTensor, PrismError, RawTensor, Result, atomic_write,
    read_safetensors, serialize_safetensors,
};
use serde_json::{Value, json};

/// How codes are computed from pre-activations `pre = (x − b_dec·[apply_b_dec_to_input]) W_enc + b_enc`.
#[derive(Clone, Debug, PartialEq)]
pub enum Architecture {
    /// `f = ReLU(pre)`.
    Standard,
    /// The `k` largest pre-activations of each token, through ReLU; the rest zero.
    TopK {
        /// Active latents per token.
        k: usize,
    },
    /// `f = ReLU(pre) · [pre > θ_i]`, a learned threshold per feature.
    JumpRelu,
    /// Gated: `f = [pre > 0] · ReLU(e^{r_mag} ⊙ (x_in W_enc) + b_mag)` with `pre = x_in W_enc + b_gate`
    /// (`b_enc` holds `b_gate`).
    Gated,
}

impl Architecture {
    /// SAELens' name for it.
    pub fn name(&self) -> &'static str {
        match self {
            Architecture::Standard => "standard",
            Architecture::TopK { .. } => "topk",
            Architecture::JumpRelu => "jumprelu",
            Architecture::Gated => "gated",
        }
    }
}

/// A sparse autoencoder with its weights on a device.
#[derive(Clone, Debug)]
pub struct Sae {
    /// Architecture.
    pub architecture: Architecture,
    /// `[d_in, d_sae]`.
    pub w_enc: Tensor<2>,
    /// `[1, d_sae]`.
    pub b_enc: Tensor<2>,
    /// `[d_sae, d_in]`.
    pub w_dec: Tensor<2>,
    /// `[1, d_in]`.
    pub b_dec: Tensor<2>,
    /// `[1, d_sae]`, JumpReLU only.
    pub threshold: Option<Tensor<2>>,
    /// `[1, d_sae]` magnitude log-scales, Gated only.
    pub r_mag: Option<Tensor<2>>,
    /// `[1, d_sae]` magnitude biases, Gated only.
    pub b_mag: Option<Tensor<2>>,
    /// Subtract `b_dec` from the input before encoding (SAELens' `apply_b_dec_to_input`).
    pub apply_b_dec_to_input: bool,
    /// The hook point it was trained on (`hook_name` in SAELens), if known.
    pub hook_name: Option<String>,
    /// Other `cfg.json` entries, kept so that saving does not lose them.
    pub extra_cfg: serde_json::Map<String, Value>,
}

fn row(v: &HostTensor, device: &Device) -> Result<Tensor<2>> {
    HostTensor::new(vec![1, v.len()], v.data.clone())?.to_burn(device)
}

impl Sae {
    /// Loads an SAELens-layout directory (`cfg.json`, `sae_weights.safetensors`).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let cfg_path = dir.join("cfg.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| PrismError::io(&cfg_path, e))?;
        let cfg: Value = serde_json::from_str(&text).map_err(|e| PrismError::Config {
            path: cfg_path.clone(),
            message: format!("not valid JSON: {e}"),
        })?;
        let bad = |message: String| PrismError::Config {
            path: cfg_path.clone(),
            message,
        };
        let get_usize = |k: &str| cfg.get(k).and_then(Value::as_u64).map(|v| v as usize);
        let d_in = get_usize("d_in").ok_or_else(|| bad("key `d_in` is missing".into()))?;
        let d_sae = get_usize("d_sae").ok_or_else(|| bad("key `d_sae` is missing".into()))?;
        let arch_name = cfg
            .get("architecture")
            .and_then(Value::as_str)
            .unwrap_or("standard");
        let k = get_usize("k").or_else(|| {
            cfg.pointer("/activation_fn_kwargs/k")
                .and_then(Value::as_u64)
                .map(|v| v as usize)
        });
        let architecture = match arch_name {
            "standard" | "relu" => Architecture::Standard,
            "topk" => Architecture::TopK {
                k: k.ok_or_else(|| bad("a topk SAE needs `k`".into()))?,
            },
            "jumprelu" => Architecture::JumpRelu,
            "gated" => Architecture::Gated,
            other => {
                return Err(bad(format!(
                    "architecture `{other}` is not supported (standard, topk, jumprelu, gated)"
                )));
            }
        };
        if let Architecture::TopK { k } = architecture
            && (k == 0 || k > d_sae)
        {
            return Err(bad(format!(
                "k = {k} must be between 1 and d_sae = {d_sae}"
            )));
        }
        let weights_path = dir.join("sae_weights.safetensors");
        let w = read_safetensors(&weights_path)?;
        let take = |name: &str, shape: &[usize]| -> Result<&HostTensor> {
            let t = w.get(name).ok_or_else(|| PrismError::Weight {
                path: weights_path.clone(),
                name: name.into(),
                message: "missing".into(),
            })?;
            if t.shape != shape {
                return Err(PrismError::Weight {
                    path: weights_path.clone(),
                    name: name.into(),
                    message: format!(
                        "expected shape {shape:?} (from cfg.json), found {:?}",
                        t.shape
                    ),
                });
            }
            Ok(t)
        };
        let threshold = match architecture {
            Architecture::JumpRelu => Some(row(take("threshold", &[d_sae])?, device)?),
            _ => None,
        };
        let gated = architecture == Architecture::Gated;
        let per_feature = |name: &str| -> Result<Option<Tensor<2>>> {
            if gated {
                Ok(Some(row(take(name, &[d_sae])?, device)?))
            } else {
                Ok(None)
            }
        };
        let (r_mag, b_mag) = (per_feature("r_mag")?, per_feature("b_mag")?);
        let b_enc_name = if gated { "b_gate" } else { "b_enc" };
        let known = [
            "architecture",
            "d_in",
            "d_sae",
            "k",
            "apply_b_dec_to_input",
            "hook_name",
        ];
        let extra_cfg = cfg
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| !known.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            w_enc: take("W_enc", &[d_in, d_sae])?.to_burn(device)?,
            b_enc: row(take(b_enc_name, &[d_sae])?, device)?,
            w_dec: take("W_dec", &[d_sae, d_in])?.to_burn(device)?,
            b_dec: row(take("b_dec", &[d_in])?, device)?,
            threshold,
            r_mag,
            b_mag,
            architecture,
            apply_b_dec_to_input: cfg
                .get("apply_b_dec_to_input")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            hook_name: cfg
                .get("hook_name")
                .and_then(Value::as_str)
                .map(str::to_string),
            extra_cfg,
        })
    }

    /// Writes the SAE in SAELens' layout into `dir` (created if needed; files written atomically).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| PrismError::io(dir, e))?;
        let flat = |t: &Tensor<2>| -> Result<HostTensor> {
            let h = HostTensor::from_burn(t.clone())?;
            HostTensor::new(vec![h.len()], h.data)
        };
        let mut tensors = vec![
            RawTensor::floats(
                "W_enc",
                &HostTensor::from_burn(self.w_enc.clone())?,
                FloatDtype::F32,
            ),
            RawTensor::floats(
                if self.architecture == Architecture::Gated {
                    "b_gate"
                } else {
                    "b_enc"
                },
                &flat(&self.b_enc)?,
                FloatDtype::F32,
            ),
            RawTensor::floats(
                "W_dec",
                &HostTensor::from_burn(self.w_dec.clone())?,
                FloatDtype::F32,
            ),
            RawTensor::floats("b_dec", &flat(&self.b_dec)?, FloatDtype::F32),
        ];
        for (name, t) in [
            ("threshold", &self.threshold),
            ("r_mag", &self.r_mag),
            ("b_mag", &self.b_mag),
        ] {
            if let Some(t) = t {
                tensors.push(RawTensor::floats(name, &flat(t)?, FloatDtype::F32));
            }
        }
        let weights = dir.join("sae_weights.safetensors");
        atomic_write(
            &weights,
            &serialize_safetensors(&weights, &tensors, Some(HashMap::new()))?,
        )?;
        let mut cfg = self.extra_cfg.clone();
        cfg.insert("architecture".into(), json!(self.architecture.name()));
        cfg.insert("d_in".into(), json!(self.d_in()));
        cfg.insert("d_sae".into(), json!(self.d_sae()));
        cfg.insert(
            "apply_b_dec_to_input".into(),
            json!(self.apply_b_dec_to_input),
        );
        cfg.insert("dtype".into(), json!("float32"));
        if let Architecture::TopK { k } = self.architecture {
            cfg.insert("k".into(), json!(k));
        }
        if let Some(h) = &self.hook_name {
            cfg.insert("hook_name".into(), json!(h));
        }
        let text = serde_json::to_string_pretty(&Value::Object(cfg))
            .map_err(|e| PrismError::InvalidInput(e.to_string()))?;
        atomic_write(&dir.join("cfg.json"), text.as_bytes())
    }

    /// A dictionary of only the features in `keep` (in that order): their encoder columns,
    /// encoder biases, decoder rows and thresholds. The research notes' pruning of
    /// high-frequency features is `keep_features` of the rest.
    pub fn keep_features(&self, keep: &[usize]) -> Result<Sae> {
        let m = self.d_sae();
        if let Some(&bad) = keep.iter().find(|&&i| i >= m) {
            return Err(PrismError::InvalidInput(format!(
                "feature {bad} does not exist (d_sae = {m})"
            )));
        }
        if keep.is_empty() {
            return Err(PrismError::InvalidInput(
                "pruning would remove every feature".into(),
            ));
        }
        if let Architecture::TopK { k } = self.architecture
            && keep.len() < k
        {
            return Err(PrismError::InvalidInput(format!(
                "a TopK dictionary with k = {k} needs at least {k} features"
            )));
        }
        let device = self.w_enc.device();
        let idx = Tensor::<1, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(
                keep.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                [keep.len()],
            ),
            &device,
        );
        Ok(Sae {
            w_enc: self.w_enc.clone().select(1, idx.clone()),
            b_enc: self.b_enc.clone().select(1, idx.clone()),
            w_dec: self.w_dec.clone().select(0, idx.clone()),
            threshold: self.threshold.clone().map(|t| t.select(1, idx.clone())),
            r_mag: self.r_mag.clone().map(|t| t.select(1, idx.clone())),
            b_mag: self.b_mag.clone().map(|t| t.select(1, idx)),
            ..self.clone()
        })
    }

    /// Pre-activations `[n, d_sae]` (for Gated, the gate's).
    pub fn pre_activations(&self, x: Tensor<2>) -> Tensor<2> {
        self.encoder_product(x) + self.b_enc.clone()
    }

    /// `x_in · W_enc` with `x_in = x − b_dec` when the bias applies to the input.
    fn encoder_product(&self, x: Tensor<2>) -> Tensor<2> {
        let x = if self.apply_b_dec_to_input {
            x - self.b_dec.clone()
        } else {
            x
        };
        x.matmul(self.w_enc.clone())
    }
}

impl Dictionary for Sae {
    fn d_in(&self) -> usize {
        self.w_enc.dims()[0]
    }
    fn d_sae(&self) -> usize {
        self.w_enc.dims()[1]
    }
    fn encode(&self, x: Tensor<2>) -> Tensor<2> {
        if self.architecture == Architecture::Gated {
            let a = self.encoder_product(x);
            let open = (a.clone() + self.b_enc.clone()).greater_elem(0.0);
            let zeros = || self.b_enc.zeros_like();
            let scale = self.r_mag.clone().unwrap_or_else(zeros).exp();
            let mag = relu(a * scale + self.b_mag.clone().unwrap_or_else(zeros));
            return mag.mask_fill(open.bool_not(), 0.0);
        }
        let pre = self.pre_activations(x);
        match &self.architecture {
            Architecture::Standard => relu(pre),
            Architecture::TopK { k } => {
                // The k-th largest pre-activation of each row is the cut-off.
                let kth = pre.clone().topk(*k, 1).narrow(1, k - 1, 1);
                let keep = pre.clone().greater_equal(kth.expand(pre.dims()));
                relu(pre.clone()).mask_fill(keep.bool_not(), 0.0)
            }
            Architecture::JumpRelu => {
                let theta = self
                    .threshold
                    .clone()
                    .unwrap_or_else(|| self.b_enc.zeros_like());
                let open = pre.clone().greater(theta.expand(pre.dims()));
                relu(pre).mask_fill(open.bool_not(), 0.0)
            }
            Architecture::Gated => unreachable!("handled above"),
        }
    }
    fn decode(&self, f: Tensor<2>) -> Tensor<2> {
        f.matmul(self.w_dec.clone()) + self.b_dec.clone()
    }
    fn decoder_directions(&self) -> Tensor<2> {
        self.w_dec.clone()
    }
}
