//! Transcoders: dictionaries that read one hook and write another — most often the MLP's input
//! and its output, so that the features replace the MLP (docs/transcoders.md).
//!
//! A transcoder is an encoder and decoder like an [`Sae`]'s (codes `f = σ(x W_enc + b_enc)`,
//! any [`Architecture`]) whose decoder writes the *output* hook's vectors, `W_dec [d_sae, d_out]`
//! and `b_dec [d_out]`, plus an optional linear skip term: `out = f W_dec + b_dec + x S` with
//! `S [d_in, d_out]` (a "skip transcoder", or Gemma Scope 2's affine connection). Its input is
//! never centred by `b_dec` (the widths may differ), except a sparsify skip *autoencoder*, whose
//! output hook is its input hook.

use std::path::Path;

use burn::tensor::{Device, Tensor};
use prism_core::{
    Dictionary, FloatDtype, HookPoint, HostTensor, ModelShape, PrismError, RawTensor, Result,
    atomic_write, serialize_safetensors,
};
use serde_json::{Value, json};

use crate::sae::{Architecture, Sae, flat_raw};

/// A dictionary mapping the activations at one hook to those at another.
#[derive(Clone, Debug)]
pub struct Transcoder {
    /// Encoder, and the decoder into the output hook's width.
    sae: Sae,
    /// `[d_in, d_out]`, added as `x · skip`.
    skip: Option<Tensor<2>>,
    /// The output hook point (SAELens' `hook_name_out`), if known.
    hook_out: Option<String>,
}

/// What a reader of published files found: a dictionary, and when it maps one hook to
/// another, what makes it a transcoder.
pub(crate) struct Read {
    pub(crate) sae: Sae,
    pub(crate) output: Option<Output>,
}

/// A transcoder's part beyond its encoder and decoder.
pub(crate) struct Output {
    /// What it is, for messages (`jumprelu_skip_transcoder`, `Gemma Scope transcoder`, …).
    pub(crate) kind: String,
    /// `[d_in, d_out]`.
    pub(crate) skip: Option<Tensor<2>>,
    pub(crate) hook_out: Option<String>,
}

impl Read {
    /// A plain autoencoder.
    pub(crate) fn autoencoder(sae: Sae) -> Read {
        Read { sae, output: None }
    }

    /// The autoencoder read from `path`, or an error saying it is a transcoder.
    pub(crate) fn into_sae(self, path: &Path) -> Result<Sae> {
        match self.output {
            None => Ok(self.sae),
            Some(out) => Err(PrismError::Config {
                path: path.to_path_buf(),
                message: format!(
                    "a {} (it reads {} and writes {}), not a sparse autoencoder: this takes \
                     sparse autoencoders (the library reads transcoders as \
                     prism_sae::Transcoder::open)",
                    out.kind,
                    self.sae.hook_name().unwrap_or("its input hook"),
                    out.hook_out.as_deref().unwrap_or("another hook"),
                ),
            }),
        }
    }

    /// The transcoder read from `path`, or an error saying it is an autoencoder.
    pub(crate) fn into_transcoder(self, path: &Path) -> Result<Transcoder> {
        match self.output {
            Some(out) => Ok(Transcoder {
                sae: self.sae,
                skip: out.skip,
                hook_out: out.hook_out,
            }),
            None => Err(PrismError::Config {
                path: path.to_path_buf(),
                message: "a sparse autoencoder (it reconstructs its own input), not a transcoder: \
                          open it with prism_sae::Sae::open"
                    .into(),
            }),
        }
    }
}

impl Transcoder {
    /// A transcoder from its tensors: `w_enc [d_in, d_sae]`, `b_enc [1, d_sae]`, `w_dec [d_sae,
    /// d_out]`, `b_dec [1, d_out]`, the architecture's per-feature tensors `[1, d_sae]`, and an
    /// optional `skip [d_in, d_out]`; every shape checked.
    ///
    /// ```
    /// use burn::tensor::Tensor;
    /// use prism_sae::{Architecture, Transcoder};
    /// let device = prism_core::device("cpu").unwrap();
    /// let w = |r, c| Tensor::<2>::zeros([r, c], &device);
    /// let t = Transcoder::new(Architecture::Standard, w(4, 8), w(1, 8), w(8, 6), w(1, 6), Some(w(4, 6))).unwrap();
    /// assert_eq!(prism_core::Dictionary::d_out(&t), 6);
    /// // A skip matrix of the wrong shape cannot make one.
    /// assert!(Transcoder::new(Architecture::Standard, w(4, 8), w(1, 8), w(8, 6), w(1, 6), Some(w(6, 4))).is_err());
    /// ```
    pub fn new(
        architecture: Architecture,
        w_enc: Tensor<2>,
        b_enc: Tensor<2>,
        w_dec: Tensor<2>,
        b_dec: Tensor<2>,
        skip: Option<Tensor<2>>,
    ) -> Result<Transcoder> {
        let d_out = w_dec.dims()[1];
        let mut sae = Sae::with_output(architecture, w_enc, b_enc, w_dec, b_dec, d_out)?;
        sae.set_apply_b_dec_to_input(false);
        if let Some(s) = &skip
            && s.dims() != [sae.d_in(), d_out]
        {
            return Err(PrismError::Shape(format!(
                "the skip matrix has shape {:?}; a {} → {d_out} transcoder needs {:?}",
                s.dims(),
                sae.d_in(),
                [sae.d_in(), d_out]
            )));
        }
        Ok(Transcoder {
            sae,
            skip,
            hook_out: None,
        })
    }

    /// The architecture, with its per-feature tensors.
    pub fn architecture(&self) -> &Architecture {
        self.sae.architecture()
    }
    /// `[d_in, d_sae]`.
    pub fn w_enc(&self) -> &Tensor<2> {
        self.sae.w_enc()
    }
    /// `[1, d_sae]`.
    pub fn b_enc(&self) -> &Tensor<2> {
        self.sae.b_enc()
    }
    /// `[d_sae, d_out]`.
    pub fn w_dec(&self) -> &Tensor<2> {
        self.sae.w_dec()
    }
    /// `[1, d_out]`.
    pub fn b_dec(&self) -> &Tensor<2> {
        self.sae.b_dec()
    }
    /// The skip matrix `[d_in, d_out]` (the output gains `x · skip`), if it has one.
    pub fn skip(&self) -> Option<&Tensor<2>> {
        self.skip.as_ref()
    }
    /// The hook it reads (SAELens' `hook_name`), if known.
    pub fn hook_name(&self) -> Option<&str> {
        self.sae.hook_name()
    }
    /// The hook it writes (SAELens' `hook_name_out`), if known.
    pub fn hook_name_out(&self) -> Option<&str> {
        self.hook_out.as_deref()
    }
    /// Sets the hooks it reads and writes.
    pub fn set_hooks(&mut self, input: Option<String>, output: Option<String>) {
        self.sae.set_hook_name(input);
        self.hook_out = output;
    }
    /// The other `cfg.json` entries (provenance, training data, …).
    pub fn extra_cfg(&self) -> &serde_json::Map<String, Value> {
        self.sae.extra_cfg()
    }
    /// The other `cfg.json` entries, to add to (provenance, …).
    pub fn extra_cfg_mut(&mut self) -> &mut serde_json::Map<String, Value> {
        self.sae.extra_cfg_mut()
    }

    /// The hooks it reads and writes on a model of `shape` (`explicit` ones where given, else
    /// its own), each checked to exist there with the transcoder's width.
    pub fn hooks(
        &self,
        shape: &ModelShape,
        explicit_in: Option<HookPoint>,
        explicit_out: Option<HookPoint>,
    ) -> Result<(HookPoint, HookPoint)> {
        let input = self.sae.hook_in(shape, explicit_in)?;
        let output = match (explicit_out, &self.hook_out) {
            (Some(h), _) => h,
            (None, Some(name)) => name.parse()?,
            (None, None) => {
                return Err(PrismError::InvalidInput(
                    "the transcoder names no output hook (no `hook_name_out`): give one".into(),
                ));
            }
        };
        output.check_dictionary(shape, self.d_out())?;
        Ok((input, output))
    }

    /// SAELens' name for it: `transcoder`, `skip_transcoder`, `jumprelu_transcoder`,
    /// `jumprelu_skip_transcoder` (and, which sae-lens has no class for, `topk_…`/`gated_…`).
    pub fn saelens_architecture(&self) -> String {
        let skip = if self.skip.is_some() { "skip_" } else { "" };
        match self.architecture() {
            Architecture::Standard => format!("{skip}transcoder"),
            other => format!("{}_{skip}transcoder", other.name()),
        }
    }

    /// Loads an SAELens-layout transcoder directory (`cfg.json` with a transcoder
    /// `architecture`, `d_out`, `hook_name_out`; `sae_weights.safetensors` with `W_dec [d_sae,
    /// d_out]`, `b_dec [d_out]`, and `W_skip [d_out, d_in]` for the skip ones).
    pub fn load(dir: &Path, device: &Device) -> Result<Transcoder> {
        Sae::read_saelens(dir, device)?.into_transcoder(&dir.join("cfg.json"))
    }

    /// Writes it in SAELens' layout (files written atomically), as sae-lens's own
    /// `save_model` does for its transcoder classes: `W_skip` stored `[d_out, d_in]`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut tensors = Vec::new();
        if let Some(skip) = &self.skip {
            tensors.push(Self::transposed_raw("W_skip", skip)?);
        }
        let mut cfg = serde_json::Map::new();
        cfg.insert("d_out".into(), json!(self.d_out()));
        if let Some(h) = &self.hook_out {
            cfg.insert("hook_name_out".into(), json!(h));
            // SAELens 6 reads the hooks from `metadata` (the input hook is added beside it).
            let mut meta = self
                .sae
                .extra_cfg()
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            meta.insert("hook_name_out".into(), json!(h));
            cfg.insert("metadata".into(), Value::Object(meta));
        }
        self.sae
            .save_layout(dir, &self.saelens_architecture(), tensors, cfg)
    }
}

impl Transcoder {
    /// `[rows, cols]` on the host, as a `[cols, rows]` raw f32 tensor named `name`.
    fn transposed_raw(name: &str, t: &Tensor<2>) -> Result<RawTensor> {
        let h = HostTensor::from_burn(t.clone())?;
        let [rows, cols] = t.dims();
        let data = crate::dictionary_learning::transpose(&h.data, rows, cols);
        Ok(RawTensor::floats(
            name,
            &HostTensor::new(vec![cols, rows], data)?,
            FloatDtype::F32,
        ))
    }

    /// Writes it as an EleutherAI sparsify hook folder (`cfg.json` + `sae.safetensors`:
    /// `encoder.weight [d_sae, d_in]`, `encoder.bias`, `W_dec`, `b_dec`, `W_skip [d_out, d_in]`),
    /// as `SparseCoder.save_to_disk` writes one; `SparseCoder.load_from_disk` reads it. Only a
    /// TopK transcoder whose widths are equal fits sparsify's layout; `transcode` is set unless
    /// it is a skip autoencoder (its input centred by `b_dec`). Name the folder after the module
    /// (`layers.6.mlp`) for the hooks to be found again.
    pub fn save_sparsify(&self, dir: &Path) -> Result<()> {
        let Architecture::TopK { k } = self.architecture() else {
            return Err(PrismError::InvalidInput(format!(
                "sparsify's layout holds TopK dictionaries; this one is {}",
                self.architecture().name()
            )));
        };
        if self.d_out() != self.d_in() {
            return Err(PrismError::InvalidInput(format!(
                "sparsify's layout needs equal widths; this transcoder maps {} to {}",
                self.d_in(),
                self.d_out()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| PrismError::io(dir, e))?;
        let mut tensors = vec![
            Self::transposed_raw("encoder.weight", self.w_enc())?,
            flat_raw("encoder.bias", self.b_enc())?,
            RawTensor::floats(
                "W_dec",
                &HostTensor::from_burn(self.w_dec().clone())?,
                FloatDtype::F32,
            ),
            flat_raw("b_dec", self.b_dec())?,
        ];
        if let Some(s) = &self.skip {
            tensors.push(Self::transposed_raw("W_skip", s)?);
        }
        let weights = dir.join("sae.safetensors");
        atomic_write(
            &weights,
            &serialize_safetensors(&weights, &tensors, Some(std::collections::HashMap::new()))?,
        )?;
        let cfg = json!({
            "activation": "topk",
            "expansion_factor": self.d_sae() / self.d_in().max(1),
            "normalize_decoder": true,
            "num_latents": self.d_sae(),
            "k": k,
            "multi_topk": false,
            "skip_connection": self.skip.is_some(),
            "transcode": !self.sae.applies_b_dec_to_input(),
            "d_in": self.d_in(),
        });
        let text =
            serde_json::to_string(&cfg).map_err(|e| PrismError::InvalidInput(e.to_string()))?;
        atomic_write(&dir.join("cfg.json"), text.as_bytes())
    }

    /// Writes it as one of circuit-tracer's single-layer transcoder files (`W_enc [d_sae,
    /// d_in]`, `W_dec`, `b_enc`, `b_dec`, `W_skip [d_out, d_in]`, and
    /// `activation_function.threshold` for JumpReLU), as `SingleLayerTranscoder.to_safetensors`
    /// writes one; its `load_relu_transcoder` reads it. circuit-tracer's loader knows ReLU and
    /// JumpReLU only, and its JumpReLU has no ReLU, so other architectures and negative
    /// thresholds are refused. Name the file `layer_N.safetensors`.
    pub fn save_circuit_tracer(&self, file: &Path) -> Result<()> {
        let mut tensors = vec![
            Self::transposed_raw("W_enc", self.w_enc())?,
            RawTensor::floats(
                "W_dec",
                &HostTensor::from_burn(self.w_dec().clone())?,
                FloatDtype::F32,
            ),
            flat_raw("b_enc", self.b_enc())?,
            flat_raw("b_dec", self.b_dec())?,
        ];
        match self.architecture() {
            Architecture::Standard => {}
            Architecture::JumpRelu { threshold } => {
                let t = HostTensor::from_burn(threshold.clone())?;
                if t.data.iter().any(|v| v.is_nan() || *v < 0.0) {
                    return Err(PrismError::InvalidInput(
                        "a negative threshold: circuit-tracer's JumpReLU would pass negative \
                         pre-activations"
                            .into(),
                    ));
                }
                tensors.push(flat_raw("activation_function.threshold", threshold)?);
            }
            other => {
                return Err(PrismError::InvalidInput(format!(
                    "circuit-tracer's loader reads ReLU and JumpReLU transcoders; this one is {}",
                    other.name()
                )));
            }
        }
        if let Some(s) = &self.skip {
            tensors.push(Self::transposed_raw("W_skip", s)?);
        }
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| PrismError::io(parent, e))?;
        }
        atomic_write(file, &serialize_safetensors(file, &tensors, None)?)
    }
}

impl Dictionary for Transcoder {
    fn d_in(&self) -> usize {
        self.sae.d_in()
    }
    fn d_sae(&self) -> usize {
        self.sae.d_sae()
    }
    fn d_out(&self) -> usize {
        self.sae.w_dec().dims()[1]
    }
    fn encode(&self, x: Tensor<2>) -> Tensor<2> {
        self.sae.encode(x)
    }
    /// `f W_dec + b_dec`: the features' part of the output (without the skip term, which
    /// needs the input).
    fn decode(&self, f: Tensor<2>) -> Tensor<2> {
        self.sae.decode(f)
    }
    /// `decode(f) + x · skip`.
    fn output(&self, x: Tensor<2>, f: Tensor<2>) -> Tensor<2> {
        let out = self.decode(f);
        match &self.skip {
            Some(s) => out + x.matmul(s.clone()),
            None => out,
        }
    }
    fn decoder_directions(&self) -> Tensor<2> {
        self.sae.w_dec().clone()
    }
    fn differentiable_codes(&self, x: Tensor<2>) -> Option<Tensor<2>> {
        self.sae.differentiable_codes(x)
    }
}
