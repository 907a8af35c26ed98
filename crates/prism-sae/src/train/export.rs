//! From a trainer to a dictionary on disk, and checkpoints that resume bit for bit.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use prism_core::{
    FloatDtype, HostTensor, PrismError, RawTensor, Result, atomic_write, read_safetensors,
    serialize_safetensors,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::adam::Adam;
use super::architecture::ExportState;
use super::config::TrainConfig;
use super::engine::Engine;
use super::params::{PARAM_NAMES, Params};
use super::trainer::Trainer;
use crate::Sae;

/// Metadata key holding the trainer's counters in a checkpoint.
const STATE_KEY: &str = "prism_trainer_state";

/// The scalar and per-feature state saved beside the tensors.
#[derive(Serialize, Deserialize)]
struct SavedState {
    config: TrainConfig,
    step: u64,
    tokens: u64,
    adam_t: u64,
    tokens_since_fired: Vec<u64>,
    steps_since_fired: Vec<u64>,
    input_scale: Option<f32>,
    #[serde(default)]
    output_scale: Option<f32>,
    batch_threshold: Option<f32>,
    best_loss: Option<f64>,
}

/// A trained dictionary's inference tensors, in raw units.
struct Inference {
    architecture: crate::Architecture,
    w_enc: Tensor<2>,
    b_enc: Tensor<2>,
    w_dec: Tensor<2>,
    b_dec: Tensor<2>,
    /// `[d_in, d_out]`, a skip transcoder's.
    skip: Option<Tensor<2>>,
    cfg: serde_json::Map<String, serde_json::Value>,
}

impl Trainer {
    /// The trained dictionary in raw input units: input normalisation is folded into the biases
    /// and thresholds (codes scale by 1/c, decoder rows stay unit-norm), BatchTopK becomes a
    /// JumpReLU dictionary with its learned global threshold on every feature (as SAELens
    /// loads it), and `cfg.json` records the training configuration and token count. A
    /// transcoder is exported by [`Trainer::to_transcoder`].
    pub fn to_sae(&self, device: &Device) -> Result<Sae> {
        if self.config.is_transcoder() {
            return Err(PrismError::InvalidInput(
                "this trainer holds a transcoder: export it with to_transcoder".into(),
            ));
        }
        let t = self.inference(device)?;
        let mut sae = Sae::new(t.architecture, t.w_enc, t.b_enc, t.w_dec, t.b_dec)?;
        sae.apply_b_dec_to_input = self.config.apply_b_dec_to_input;
        sae.hook_name = self.config.hook_name.clone();
        sae.extra_cfg = t.cfg;
        Ok(sae)
    }

    /// The trained transcoder in raw units: with input scale `c_x` and target scale `c_y`,
    /// codes scale by `1/c_y` (the encoder by `c_x/c_y`, its bias and thresholds by `1/c_y`),
    /// `b_dec` by `1/c_y` and the skip term by `c_x/c_y`; the decoder rows stay unit-norm. Its
    /// hooks are the configuration's `hook_name` and `hook_name_out`.
    pub fn to_transcoder(&self, device: &Device) -> Result<crate::Transcoder> {
        if !self.config.is_transcoder() {
            return Err(PrismError::InvalidInput(
                "this trainer holds a sparse autoencoder: export it with to_sae".into(),
            ));
        }
        let t = self.inference(device)?;
        let mut out =
            crate::Transcoder::new(t.architecture, t.w_enc, t.b_enc, t.w_dec, t.b_dec, t.skip)?;
        out.set_hooks(
            self.config.hook_name.clone(),
            self.config.hook_name_out.clone(),
        );
        *out.extra_cfg_mut() = t.cfg;
        Ok(out)
    }

    fn inference(&self, device: &Device) -> Result<Inference> {
        let p = &self.engine.params()?;
        let (d, d_out, m) = (p.d, p.d_out, p.m);
        // Codes are divided by the target's scale (the input's, for an autoencoder).
        let (c_in, c) = (self.input_scale(), self.output_scale());
        let row = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [1, m]), device);
        let unscale = |v: &[f32]| v.iter().map(|x| x / c).collect::<Vec<_>>();
        let ratio = c_in / c;
        let mut w_enc = vec![0f32; d * m];
        for j in 0..m {
            for i in 0..d {
                w_enc[i * m + j] = p.w_enc[j * d + i] * ratio;
            }
        }
        let exported = self.config.architecture.objective().export(
            p,
            &ExportState {
                batch_threshold: self.batch_threshold(),
                step: self.step,
                input_scale: c,
                device,
            },
        )?;
        let mut extra = serde_json::Map::new();
        extra.insert("training_tokens".into(), json!(self.tokens));
        extra.insert(
            "trained_architecture".into(),
            json!(self.config.architecture.name()),
        );
        for (key, value) in exported.cfg {
            extra.insert(key.into(), value);
        }
        extra.insert("normalize_activations".into(), json!("none"));
        extra.insert("folded_input_scale".into(), json!(c_in));
        if self.config.is_transcoder() {
            extra.insert("folded_output_scale".into(), json!(c));
        }
        extra.insert(
            "prism_training".into(),
            serde_json::to_value(&self.config)
                .map_err(|e| PrismError::InvalidInput(e.to_string()))?,
        );
        let skip = (!p.w_skip.is_empty()).then(|| {
            // [d_out, d] → [d_in, d_out], scaled.
            let mut s = vec![0f32; d * d_out];
            for o in 0..d_out {
                for i in 0..d {
                    s[i * d_out + o] = p.w_skip[o * d + i] * ratio;
                }
            }
            Tensor::from_data(TensorData::new(s, [d, d_out]), device)
        });
        Ok(Inference {
            architecture: exported.architecture,
            w_enc: Tensor::from_data(TensorData::new(w_enc, [d, m]), device),
            b_enc: row(unscale(&p.b_enc)),
            w_dec: Tensor::from_data(TensorData::new(p.w_dec.clone(), [m, d_out]), device),
            b_dec: Tensor::from_data(TensorData::new(unscale(&p.b_dec), [1, d_out]), device),
            skip,
            cfg: extra,
        })
    }

    /// Writes a checkpoint (parameters, Adam moments, counters; one safetensors file written
    /// atomically). [`Trainer::load_checkpoint`] continues exactly where this left off.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let mut tensors = Vec::new();
        let (params, adam) = (self.engine.params()?, self.engine.optimiser()?);
        for (prefix, set) in [("param", &params), ("adam_m", &adam.m), ("adam_v", &adam.v)] {
            for (name, t) in PARAM_NAMES.iter().zip(set.tensors()) {
                if !t.is_empty() {
                    tensors.push(RawTensor::floats(
                        format!("{prefix}.{name}"),
                        &HostTensor::new(vec![t.len()], t.clone())?,
                        FloatDtype::F32,
                    ));
                }
            }
        }
        let state = SavedState {
            config: self.config.clone(),
            step: self.step,
            tokens: self.tokens,
            adam_t: adam.t,
            tokens_since_fired: self.tokens_since_fired.clone(),
            steps_since_fired: self.steps_since_fired.clone(),
            input_scale: self.input_scale,
            output_scale: self.output_scale,
            batch_threshold: self.batch_threshold,
            best_loss: self.best_loss,
        };
        let text =
            serde_json::to_string(&state).map_err(|e| PrismError::InvalidInput(e.to_string()))?;
        let bytes = serialize_safetensors(
            path,
            &tensors,
            Some(HashMap::from([(STATE_KEY.to_string(), text)])),
        )?;
        atomic_write(path, &bytes)
    }

    /// Restores a trainer saved by [`Trainer::save_checkpoint`] (by either engine) onto the
    /// host engine; [`Trainer::on`] moves it to another.
    pub fn load_checkpoint(path: &Path) -> Result<Trainer> {
        let bad = |message: String| PrismError::Safetensors {
            path: path.to_path_buf(),
            message,
        };
        let state = saved_state(path)?;
        let mut tensors = read_safetensors(path)?;
        let mut trainer = Trainer::new(state.config.clone())?;
        let shapes = trainer.engine.params()?;
        let mut fill = |prefix: &str| -> Result<Params> {
            let mut out = shapes.clone();
            for (name, t) in PARAM_NAMES.iter().zip(out.tensors_mut()) {
                if t.is_empty() {
                    continue;
                }
                let key = format!("{prefix}.{name}");
                let h = tensors
                    .remove(&key)
                    .ok_or_else(|| bad(format!("tensor `{key}` is missing")))?;
                if h.data.len() != t.len() {
                    return Err(bad(format!(
                        "tensor `{key}` has {} values, the configuration implies {}",
                        h.data.len(),
                        t.len()
                    )));
                }
                *t = h.data;
            }
            Ok(out)
        };
        let params = fill("param")?;
        let adam = Adam {
            config: state.config.adam,
            m: fill("adam_m")?,
            v: fill("adam_v")?,
            t: state.adam_t,
        };
        trainer.engine = trainer
            .engine
            .choice()
            .build(params, adam, state.config.kernel)?;
        if state.tokens_since_fired.len() != state.config.d_sae
            || state.steps_since_fired.len() != state.config.d_sae
        {
            return Err(bad("per-feature counters do not match d_sae".into()));
        }
        trainer.step = state.step;
        trainer.tokens = state.tokens;
        trainer.tokens_since_fired = state.tokens_since_fired;
        trainer.steps_since_fired = state.steps_since_fired;
        trainer.input_scale = state.input_scale;
        trainer.output_scale = state.output_scale;
        trainer.batch_threshold = state.batch_threshold;
        trainer.best_loss = state.best_loss;
        Ok(trainer)
    }
}

/// The step a checkpoint written by [`Trainer::save_checkpoint`] was taken at, read from its
/// header alone (the tensors are not read).
pub fn checkpoint_step(path: &Path) -> Result<u64> {
    Ok(saved_state(path)?.step)
}

/// The trainer state in a checkpoint's safetensors header.
fn saved_state(path: &Path) -> Result<SavedState> {
    use std::io::Read;
    let bad = |message: String| PrismError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    let mut file = std::fs::File::open(path).map_err(|e| PrismError::io(path, e))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| bad(format!("not a checkpoint: {e}")))?;
    let len = u64::from_le_bytes(len);
    let size = file.metadata().map_err(|e| PrismError::io(path, e))?.len();
    if len > size.saturating_sub(8) {
        return Err(bad(format!(
            "not a checkpoint: a header of {len} bytes in a file of {size}"
        )));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|e| bad(format!("not a checkpoint: {e}")))?;
    let header: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("not a checkpoint: its header is not JSON: {e}")))?;
    let text = header
        .get("__metadata__")
        .and_then(|m| m.get(STATE_KEY))
        .and_then(|t| t.as_str())
        .ok_or_else(|| bad(format!("no `{STATE_KEY}` metadata: not a Prism checkpoint")))?;
    serde_json::from_str(text).map_err(|e| bad(format!("bad trainer state: {e}")))
}
