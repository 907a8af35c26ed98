//! The SAE value, its encode/decode, and SAELens-format files.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use prism_core::{
    Dictionary, FloatDtype, HookPoint, HostTensor, ModelShape, PrismError, RawTensor, Result,
    atomic_write, read_safetensors, serialize_safetensors,
};
use serde_json::{Value, json};

use crate::transcoder::{Output, Read};

/// How codes are computed from pre-activations `pre = (x − b_dec·[apply_b_dec_to_input]) W_enc + b_enc`,
/// with the tensors only that architecture has (so a JumpReLU dictionary always has its
/// thresholds and a Gated one its magnitude path).
#[derive(Clone, Debug)]
// One value per dictionary: boxing the Gated tensors would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Architecture {
    /// `f = ReLU(pre)`.
    Standard,
    /// The `k` largest pre-activations of each token, through ReLU; the rest zero.
    TopK {
        /// Active latents per token.
        k: usize,
    },
    /// `f = ReLU(pre) · [pre > θ_i]`, a learned threshold per feature.
    JumpRelu {
        /// `[1, d_sae]` thresholds θ.
        threshold: Tensor<2>,
    },
    /// Gated: `f = [pre > 0] · ReLU(e^{r_mag} ⊙ (x_in W_enc) + b_mag)` with `pre = x_in W_enc + b_gate`
    /// (`b_enc` holds `b_gate`).
    Gated {
        /// `[1, d_sae]` magnitude log-scales.
        r_mag: Tensor<2>,
        /// `[1, d_sae]` magnitude biases.
        b_mag: Tensor<2>,
    },
}

impl Architecture {
    /// SAELens' name for it.
    pub fn name(&self) -> &'static str {
        match self {
            Architecture::Standard => "standard",
            Architecture::TopK { .. } => "topk",
            Architecture::JumpRelu { .. } => "jumprelu",
            Architecture::Gated { .. } => "gated",
        }
    }

    /// `k` of a TopK dictionary.
    pub fn k(&self) -> Option<usize> {
        match self {
            Architecture::TopK { k } => Some(*k),
            _ => None,
        }
    }

    /// The per-feature tensors this architecture owns, under their SAELens names.
    fn tensors(&self) -> Vec<(&'static str, &Tensor<2>)> {
        match self {
            Architecture::JumpRelu { threshold } => vec![("threshold", threshold)],
            Architecture::Gated { r_mag, b_mag } => vec![("r_mag", r_mag), ("b_mag", b_mag)],
            Architecture::Standard | Architecture::TopK { .. } => Vec::new(),
        }
    }

    /// The same architecture with each owned per-feature tensor passed through `f`.
    fn map_tensors(&self, f: impl Fn(Tensor<2>) -> Tensor<2>) -> Architecture {
        match self {
            Architecture::JumpRelu { threshold } => Architecture::JumpRelu {
                threshold: f(threshold.clone()),
            },
            Architecture::Gated { r_mag, b_mag } => Architecture::Gated {
                r_mag: f(r_mag.clone()),
                b_mag: f(b_mag.clone()),
            },
            other => other.clone(),
        }
    }
}

/// A sparse autoencoder with its weights on a device. Its tensors' shapes are checked once, by
/// [`Sae::new`] (and the loaders, which call it), so they are read through accessors only.
#[derive(Clone, Debug)]
pub struct Sae {
    /// Architecture.
    pub(crate) architecture: Architecture,
    /// `[d_in, d_sae]`.
    pub(crate) w_enc: Tensor<2>,
    /// `[1, d_sae]`.
    pub(crate) b_enc: Tensor<2>,
    /// `[d_sae, d_in]`.
    pub(crate) w_dec: Tensor<2>,
    /// `[1, d_in]`.
    pub(crate) b_dec: Tensor<2>,
    /// Subtract `b_dec` from the input before encoding (SAELens' `apply_b_dec_to_input`).
    pub(crate) apply_b_dec_to_input: bool,
    /// The hook point it was trained on (`hook_name` in SAELens), if known.
    pub(crate) hook_name: Option<String>,
    /// Other `cfg.json` entries, kept so that saving does not lose them.
    pub(crate) extra_cfg: serde_json::Map<String, Value>,
}

impl Sae {
    /// The architecture, with its per-feature tensors.
    pub fn architecture(&self) -> &Architecture {
        &self.architecture
    }
    /// The encoder, `[d_in, d_sae]`.
    pub fn w_enc(&self) -> &Tensor<2> {
        &self.w_enc
    }
    /// The encoder bias, `[1, d_sae]`.
    pub fn b_enc(&self) -> &Tensor<2> {
        &self.b_enc
    }
    /// The decoder, `[d_sae, d_in]`.
    pub fn w_dec(&self) -> &Tensor<2> {
        &self.w_dec
    }
    /// The decoder bias, `[1, d_in]`.
    pub fn b_dec(&self) -> &Tensor<2> {
        &self.b_dec
    }
    /// Whether `b_dec` is subtracted from the input before encoding.
    pub fn applies_b_dec_to_input(&self) -> bool {
        self.apply_b_dec_to_input
    }
    /// Sets whether `b_dec` is subtracted from the input before encoding.
    pub fn set_apply_b_dec_to_input(&mut self, apply: bool) {
        self.apply_b_dec_to_input = apply;
    }
    /// The hook point it was trained on (`hook_name` in SAELens), if known.
    pub fn hook_name(&self) -> Option<&str> {
        self.hook_name.as_deref()
    }
    /// Sets the hook point it reads.
    pub fn set_hook_name(&mut self, hook: Option<String>) {
        self.hook_name = hook;
    }
    /// The other `cfg.json` entries, kept so that saving does not lose them.
    pub fn extra_cfg(&self) -> &serde_json::Map<String, Value> {
        &self.extra_cfg
    }
    /// Replaces the other `cfg.json` entries.
    pub fn set_extra_cfg(&mut self, extra: serde_json::Map<String, Value>) {
        self.extra_cfg = extra;
    }
    /// The other `cfg.json` entries, to add to (provenance, pruning notes, …).
    pub fn extra_cfg_mut(&mut self) -> &mut serde_json::Map<String, Value> {
        &mut self.extra_cfg
    }
}

/// `[rows, cols]` host data as the `[cols, rows]` tensor on `device`.
pub(crate) fn transposed(
    t: &HostTensor,
    rows: usize,
    cols: usize,
    device: &Device,
) -> Result<Tensor<2>> {
    HostTensor::new(
        vec![cols, rows],
        crate::dictionary_learning::transpose(&t.data, rows, cols),
    )?
    .to_burn(device)
}

/// A `[1, n]` row as the 1-D f32 tensor `name` of a safetensors file.
pub(crate) fn flat_raw(name: &str, t: &Tensor<2>) -> Result<RawTensor> {
    let h = HostTensor::from_burn(t.clone())?;
    Ok(RawTensor::floats(
        name,
        &HostTensor::new(vec![h.len()], h.data)?,
        FloatDtype::F32,
    ))
}

pub(crate) fn row(v: &HostTensor, device: &Device) -> Result<Tensor<2>> {
    HostTensor::new(vec![1, v.len()], v.data.clone())?.to_burn(device)
}

/// `cfg.json` keys that [`Sae`] owns (everything else is kept in `extra_cfg`).
const KNOWN_CFG: [&str; 8] = [
    "architecture",
    "d_in",
    "d_sae",
    "d_out",
    "hook_name_out",
    "k",
    "apply_b_dec_to_input",
    "hook_name",
];

impl Sae {
    /// A dictionary from its tensors, with every shape checked against `w_enc`'s `[d_in, d_sae]`
    /// (`b_enc`, the architecture's per-feature tensors `[1, d_sae]`, `w_dec [d_sae, d_in]`,
    /// `b_dec [1, d_in]`; TopK's `k` within `1..=d_sae`). Biases are subtracted from the input
    /// before encoding (`apply_b_dec_to_input`), as SAELens does by default.
    ///
    /// ```
    /// use burn::tensor::Tensor;
    /// use prism_sae::{Architecture, Sae};
    /// let device = prism_core::device("cpu").unwrap();
    /// let w = |r, c| Tensor::<2>::zeros([r, c], &device);
    /// let sae = Sae::new(Architecture::TopK { k: 2 }, w(4, 8), w(1, 8), w(8, 4), w(1, 4)).unwrap();
    /// assert_eq!(prism_core::Dictionary::d_sae(&sae), 8);
    /// // A threshold of the wrong width cannot make a JumpReLU dictionary.
    /// let bad = Architecture::JumpRelu { threshold: w(1, 7) };
    /// assert!(Sae::new(bad, w(4, 8), w(1, 8), w(8, 4), w(1, 4)).is_err());
    /// ```
    pub fn new(
        architecture: Architecture,
        w_enc: Tensor<2>,
        b_enc: Tensor<2>,
        w_dec: Tensor<2>,
        b_dec: Tensor<2>,
    ) -> Result<Self> {
        let d_in = w_enc.dims()[0];
        Sae::with_output(architecture, w_enc, b_enc, w_dec, b_dec, d_in)
    }

    /// [`Sae::new`] for a decoder that writes vectors of width `d_out` (`W_dec [d_sae, d_out]`,
    /// `b_dec [1, d_out]`): a transcoder's encoder and decoder.
    pub(crate) fn with_output(
        architecture: Architecture,
        w_enc: Tensor<2>,
        b_enc: Tensor<2>,
        w_dec: Tensor<2>,
        b_dec: Tensor<2>,
        d_out: usize,
    ) -> Result<Self> {
        let [d, m] = w_enc.dims();
        let check = |name: &str, t: &Tensor<2>, want: [usize; 2]| {
            if t.dims() == want {
                Ok(())
            } else {
                Err(PrismError::Shape(format!(
                    "{name} has shape {:?}; a {d} → {m} → {d_out} dictionary needs {want:?}",
                    t.dims()
                )))
            }
        };
        check("b_enc", &b_enc, [1, m])?;
        check("W_dec", &w_dec, [m, d_out])?;
        check("b_dec", &b_dec, [1, d_out])?;
        for (name, t) in architecture.tensors() {
            check(name, t, [1, m])?;
        }
        if let Architecture::TopK { k } = architecture
            && (k == 0 || k > m)
        {
            return Err(PrismError::InvalidInput(format!(
                "k = {k} must be between 1 and d_sae = {m}"
            )));
        }
        Ok(Sae {
            architecture,
            w_enc,
            b_enc,
            w_dec,
            b_dec,
            apply_b_dec_to_input: d_out == d,
            hook_name: None,
            extra_cfg: serde_json::Map::new(),
        })
    }

    /// Loads an SAELens-layout directory (`cfg.json`, `sae_weights.safetensors`). The hook
    /// comes from `hook_name` (SAELens ≤ 5) or `metadata.hook_name` (SAELens 6); a tensor the
    /// architecture needs and the file lacks is an error naming it.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Sae::read_saelens(dir, device)?.into_sae(&dir.join("cfg.json"))
    }

    /// An SAELens-layout directory, autoencoder or transcoder (`transcoder`,
    /// `skip_transcoder`, `jumprelu_transcoder`, `jumprelu_skip_transcoder`: `W_dec [d_sae,
    /// d_out]`, `W_skip [d_out, d_in]` for the skip ones, `hook_name_out`).
    pub(crate) fn read_saelens(dir: &Path, device: &Device) -> Result<Read> {
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
        let full_name = cfg
            .get("architecture")
            .and_then(Value::as_str)
            .unwrap_or("standard");
        // `ARCH_skip_transcoder` / `ARCH_transcoder` (`transcoder` alone: standard).
        let (arch_name, transcoder, skip) = match full_name {
            "transcoder" => ("standard", true, false),
            "skip_transcoder" => ("standard", true, true),
            other => match other.strip_suffix("_skip_transcoder") {
                Some(a) => (a, true, true),
                None => match other.strip_suffix("_transcoder") {
                    Some(a) => (a, true, false),
                    None => (other, false, false),
                },
            },
        };
        let d_out = if transcoder {
            get_usize("d_out").unwrap_or(d_in)
        } else {
            d_in
        };
        // Settings under which sae-lens computes other codes than these weights alone give.
        match cfg.get("normalize_activations") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::String(s)) if s == "none" => {}
            Some(other) => {
                return Err(bad(format!(
                    "normalize_activations = {other} is not supported: Prism expects the \
                     normalisation folded into the weights (\"none\")"
                )));
            }
        }
        if cfg.get("rescale_acts_by_decoder_norm") == Some(&Value::Bool(true)) {
            return Err(bad(
                "rescale_acts_by_decoder_norm = true is not supported (fold the decoder norms \
                 into the encoder first)"
                    .into(),
            ));
        }
        let weights_path = dir.join("sae_weights.safetensors");
        let w = read_safetensors(&weights_path)?;
        let take = |name: &str, shape: &[usize]| -> Result<&HostTensor> {
            let t = w.get(name).ok_or_else(|| PrismError::Weight {
                path: weights_path.clone(),
                name: name.into(),
                message: format!("missing (a `{arch_name}` dictionary needs it)"),
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
        let per_feature = |name: &str| row(take(name, &[d_sae])?, device);
        let architecture = match arch_name {
            "standard" | "relu" => Architecture::Standard,
            "topk" => Architecture::TopK {
                k: get_usize("k")
                    .or_else(|| {
                        cfg.pointer("/activation_fn_kwargs/k")
                            .and_then(Value::as_u64)
                            .map(|v| v as usize)
                    })
                    .ok_or_else(|| bad("a topk SAE needs `k`".into()))?,
            },
            "jumprelu" => Architecture::JumpRelu {
                threshold: per_feature("threshold")?,
            },
            "gated" if !transcoder => Architecture::Gated {
                r_mag: per_feature("r_mag")?,
                b_mag: per_feature("b_mag")?,
            },
            _ => {
                return Err(bad(format!(
                    "architecture `{full_name}` is not supported (standard, topk, jumprelu, \
                     gated; transcoder, skip_transcoder, jumprelu_transcoder, \
                     jumprelu_skip_transcoder, topk_transcoder, topk_skip_transcoder)"
                )));
            }
        };
        let b_enc_name = if arch_name == "gated" {
            "b_gate"
        } else {
            "b_enc"
        };
        let mut sae = Sae::with_output(
            architecture,
            take("W_enc", &[d_in, d_sae])?.to_burn(device)?,
            row(take(b_enc_name, &[d_sae])?, device)?,
            take("W_dec", &[d_sae, d_out])?.to_burn(device)?,
            row(take("b_dec", &[d_out])?, device)?,
            d_out,
        )
        .map_err(|e| bad(e.to_string()))?;
        sae.apply_b_dec_to_input = cfg
            .get("apply_b_dec_to_input")
            .and_then(Value::as_bool)
            .unwrap_or(!transcoder);
        if sae.apply_b_dec_to_input && d_out != d_in {
            return Err(bad(format!(
                "apply_b_dec_to_input = true needs b_dec as wide as the input ({d_in}), \
                 not {d_out}"
            )));
        }
        let skip = if skip {
            Some(transposed(
                take("W_skip", &[d_out, d_in])?,
                d_out,
                d_in,
                device,
            )?)
        } else {
            None
        };
        sae.hook_name = cfg
            .get("hook_name")
            .or_else(|| cfg.pointer("/metadata/hook_name"))
            .and_then(Value::as_str)
            .map(str::to_string);
        sae.extra_cfg = cfg
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| !KNOWN_CFG.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let hook_out = cfg
            .get("hook_name_out")
            .or_else(|| cfg.pointer("/metadata/hook_name_out"))
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(Read {
            sae,
            output: transcoder.then(|| Output {
                kind: full_name.to_string(),
                skip,
                hook_out,
            }),
        })
    }

    /// The hook point this dictionary reads on a model of `shape`: `explicit` where given, else
    /// the one it was trained at (`hook_name`), checked to exist there with activations of the
    /// dictionary's width ([`HookPoint::check_dictionary`]).
    pub fn hook_in(&self, shape: &ModelShape, explicit: Option<HookPoint>) -> Result<HookPoint> {
        let hook = match (explicit, &self.hook_name) {
            (Some(hook), _) => hook,
            (None, Some(name)) => name.parse()?,
            (None, None) => {
                return Err(PrismError::InvalidInput(
                    "the dictionary names no hook point (no `hook_name` in its cfg.json): \
                     give one (`--hook HOOK`, or `HOOK=DIR`)"
                        .into(),
                ));
            }
        };
        hook.check_dictionary(shape, self.d_in())?;
        Ok(hook)
    }

    /// Writes the SAE in SAELens' layout into `dir` (created if needed; files written atomically).
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.save_layout(
            dir,
            self.architecture.name(),
            Vec::new(),
            serde_json::Map::new(),
        )
    }

    /// [`Sae::save`] under SAELens' name `architecture`, with more tensors and `cfg.json`
    /// entries (a transcoder's `W_skip`, `d_out`, `hook_name_out`).
    pub(crate) fn save_layout(
        &self,
        dir: &Path,
        architecture: &str,
        more_tensors: Vec<RawTensor>,
        more_cfg: serde_json::Map<String, Value>,
    ) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| PrismError::io(dir, e))?;
        let gated = matches!(self.architecture, Architecture::Gated { .. });
        let mut tensors = vec![
            RawTensor::floats(
                "W_enc",
                &HostTensor::from_burn(self.w_enc.clone())?,
                FloatDtype::F32,
            ),
            flat_raw(if gated { "b_gate" } else { "b_enc" }, &self.b_enc)?,
            RawTensor::floats(
                "W_dec",
                &HostTensor::from_burn(self.w_dec.clone())?,
                FloatDtype::F32,
            ),
            flat_raw("b_dec", &self.b_dec)?,
        ];
        for (name, t) in self.architecture.tensors() {
            tensors.push(flat_raw(name, t)?);
        }
        tensors.extend(more_tensors);
        let weights = dir.join("sae_weights.safetensors");
        atomic_write(
            &weights,
            &serialize_safetensors(&weights, &tensors, Some(HashMap::new()))?,
        )?;
        let mut cfg = self.extra_cfg.clone();
        cfg.extend(more_cfg);
        cfg.insert("architecture".into(), json!(architecture));
        cfg.insert("d_in".into(), json!(self.d_in()));
        cfg.insert("d_sae".into(), json!(self.d_sae()));
        cfg.insert(
            "apply_b_dec_to_input".into(),
            json!(self.apply_b_dec_to_input),
        );
        cfg.insert("dtype".into(), json!("float32"));
        if let Some(k) = self.architecture.k() {
            cfg.insert("k".into(), json!(k));
        }
        if let Some(h) = &self.hook_name {
            cfg.insert("hook_name".into(), json!(h));
            // SAELens 6 reads the hook from `metadata`.
            let meta = cfg.entry("metadata").or_insert_with(|| json!({}));
            if let Some(m) = meta.as_object_mut() {
                m.insert("hook_name".into(), json!(h));
            }
        }
        let text = serde_json::to_string_pretty(&Value::Object(cfg))
            .map_err(|e| PrismError::InvalidInput(e.to_string()))?;
        atomic_write(&dir.join("cfg.json"), text.as_bytes())
    }

    /// Sets `key` in a saved dictionary's `cfg.json` (rewritten atomically; the weights are not
    /// touched): how a trainer's caller records where the training data came from.
    pub fn record_in_cfg(dir: &Path, key: &str, value: Value) -> Result<()> {
        let path = dir.join("cfg.json");
        let text = std::fs::read_to_string(&path).map_err(|e| PrismError::io(&path, e))?;
        let mut cfg: Value = serde_json::from_str(&text).map_err(|e| PrismError::Config {
            path: path.clone(),
            message: format!("not valid JSON: {e}"),
        })?;
        let obj = cfg.as_object_mut().ok_or_else(|| PrismError::Config {
            path: path.clone(),
            message: "not a JSON object".into(),
        })?;
        obj.insert(key.into(), value);
        let text = serde_json::to_string_pretty(&cfg)
            .map_err(|e| PrismError::InvalidInput(e.to_string()))?;
        atomic_write(&path, text.as_bytes())
    }

    /// A dictionary of only the features in `keep` (in that order): their encoder columns,
    /// encoder biases, decoder rows and per-feature tensors (thresholds, magnitude path). The
    /// research notes' pruning of high-frequency features is `keep_features` of the rest.
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
        if let Some(k) = self.architecture.k()
            && keep.len() < k
        {
            return Err(PrismError::InvalidInput(format!(
                "a TopK dictionary with k = {k} needs at least {k} features"
            )));
        }
        let device = self.w_enc.device();
        let idx = prism_core::index_tensor(keep, &device);
        Ok(Sae {
            architecture: self.architecture.map_tensors(|t| t.select(1, idx.clone())),
            w_enc: self.w_enc.clone().select(1, idx.clone()),
            b_enc: self.b_enc.clone().select(1, idx.clone()),
            w_dec: self.w_dec.clone().select(0, idx),
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
        if let Architecture::Gated { r_mag, b_mag } = &self.architecture {
            let a = self.encoder_product(x);
            let open = (a.clone() + self.b_enc.clone()).greater_elem(0.0);
            let mag = relu(a * r_mag.clone().exp() + b_mag.clone());
            return mag.mask_fill(open.bool_not(), 0.0);
        }
        let pre = self.pre_activations(x);
        match &self.architecture {
            Architecture::Standard => relu(pre),
            Architecture::TopK { k } => top_k_activation(pre, *k),
            Architecture::JumpRelu { threshold } => {
                let open = pre.clone().greater(threshold.clone().expand(pre.dims()));
                relu(pre).mask_fill(open.bool_not(), 0.0)
            }
            Architecture::Gated { .. } => unreachable!("handled above"),
        }
    }
    fn decode(&self, f: Tensor<2>) -> Tensor<2> {
        f.matmul(self.w_dec.clone()) + self.b_dec.clone()
    }
    fn decoder_directions(&self) -> Tensor<2> {
        self.w_dec.clone()
    }
    fn differentiable_codes(&self, x: Tensor<2>) -> Option<Tensor<2>> {
        if matches!(self.architecture, Architecture::Gated { .. }) {
            return None;
        }
        let active = self
            .encode(x.clone().without_autodiff())
            .not_equal_elem(0.0)
            .float();
        Some(self.pre_activations(x) * active)
    }
}

/// ReLU of each row's `k` largest pre-activations (values tied with the k-th kept), zeros
/// elsewhere. On a plain CPU tensor, one partial selection per row on the host; elsewhere (a
/// GPU, autodiff) burn's `topk` finds the cut-off.
fn top_k_activation(pre: Tensor<2>, k: usize) -> Tensor<2> {
    use rayon::prelude::*;
    let device = pre.device();
    let [n, m] = pre.dims();
    if device == Device::flex()
        && !device.is_autodiff()
        && (1..=m).contains(&k)
        && let Ok(mut values) = pre.clone().into_data().try_into_vec::<f32>()
    {
        values
            .par_chunks_mut(m)
            .for_each_init(Vec::new, |scratch, row| {
                scratch.clear();
                scratch.extend_from_slice(row);
                let (_, &mut kth, _) = scratch.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
                for v in row.iter_mut() {
                    if !(*v >= kth && *v > 0.0) {
                        *v = 0.0;
                    }
                }
            });
        return Tensor::from_data(burn::tensor::TensorData::new(values, [n, m]), &device);
    }
    let kth = pre.clone().topk(k, 1).narrow(1, k - 1, 1);
    let keep = pre.clone().greater_equal(kth.expand(pre.dims()));
    relu(pre).mask_fill(keep.bool_not(), 0.0)
}
