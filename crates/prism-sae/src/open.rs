//! Opening a dictionary from whatever files hold it: [`Sae::open`] and [`Transcoder::open`]
//! recognise each format Prism reads by its files (SAELens, dictionary_learning, Gemma Scope,
//! Gemma Scope 2, Llama Scope, sparsify, circuit-tracer) and call that format's reader;
//! [`OpenOptions`] carries what the files alone may not say.

use std::path::Path;

use burn::tensor::Device;
use prism_core::{PrismError, Result};

use crate::dictionary_learning::hook_from_trainer_config;
use crate::suites::{
    Suite, circuit_tracer_layers, read_circuit_tracer, read_gemma_scope, read_gemma_scope_2,
    read_llama_scope, read_sparsify, sparsify_run,
};
use crate::transcoder::Read;
use crate::{Sae, Transcoder};

impl Sae {
    /// Opens a dictionary in whichever format `path` holds: a SAELens directory
    /// (`cfg.json` + `sae_weights.safetensors`), a dictionary_learning `ae.pt` file or a
    /// directory holding `ae.pt` (and usually the trainer's `config.json`), a Gemma Scope
    /// (`params.npz`), Gemma Scope 2 (`params.safetensors`), Llama Scope (`hyperparams.json`) or
    /// sparsify (`cfg.json` + `sae.safetensors`) folder (docs/hub.md). For dictionary_learning
    /// files the hook point comes from `config.json` beside them (`trainer.submodule_name` and
    /// `trainer.layer`, e.g. `mlp_out_layer3` → `blocks.3.hook_mlp_out`) when it can be read.
    /// A transcoder is an error saying so ([`Transcoder::open`] reads it).
    pub fn open(path: &Path, device: &Device) -> Result<Sae> {
        Sae::open_with(path, &OpenOptions::default(), device)
    }

    /// [`Sae::open`] with what the files alone may not say: which hook's dictionary to take
    /// from a folder of several (a sparsify training run), and a registry's norm scaling factor.
    pub fn open_with(path: &Path, options: &OpenOptions, device: &Device) -> Result<Sae> {
        read_any(path, options, device)?.into_sae(path)
    }
}

impl Transcoder {
    /// Opens a transcoder in whichever format `path` holds: an SAELens transcoder directory, a
    /// Gemma Scope transcoder (`params.npz` in a `…-transcoders` repository), a Gemma Scope 2
    /// `transcoder…` folder, a sparsify folder with `transcode` or `skip_connection`, or a
    /// circuit-tracer `layer_N.safetensors` file (docs/transcoders.md). An autoencoder is an
    /// error saying so ([`Sae::open`] reads it).
    pub fn open(path: &Path, device: &Device) -> Result<Transcoder> {
        Transcoder::open_with(path, &OpenOptions::default(), device)
    }

    /// [`Transcoder::open`] choosing, from a folder of several (a circuit-tracer transcoder
    /// set, a sparsify run), the one that reads `options.hook`.
    pub fn open_with(path: &Path, options: &OpenOptions, device: &Device) -> Result<Transcoder> {
        read_any(path, options, device)?.into_transcoder(path)
    }
}

/// A dictionary of either kind, as [`Loaded::open_with`] found it in the files.
#[derive(Clone, Debug)]
// One value per opened dictionary: boxing the transcoder would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Loaded {
    /// A sparse autoencoder: it reconstructs the hook it reads.
    Autoencoder(Sae),
    /// A transcoder: it reads one hook and writes another.
    Transcoder(Transcoder),
}

impl Loaded {
    /// Opens whatever dictionary `path` holds, autoencoder or transcoder, in any format
    /// [`Sae::open`] and [`Transcoder::open`] read.
    pub fn open_with(path: &Path, options: &OpenOptions, device: &Device) -> Result<Loaded> {
        let read = read_any(path, options, device)?;
        Ok(match read.output {
            None => Loaded::Autoencoder(read.sae),
            Some(_) => Loaded::Transcoder(read.into_transcoder(path)?),
        })
    }
}

/// The dictionary `path` holds, in whichever format Prism reads.
fn read_any(path: &Path, options: &OpenOptions, device: &Device) -> Result<Read> {
    let hook = options.hook.as_deref();
    if path.is_file() && path.file_name().is_some_and(|n| n == "params.npz") {
        return read_gemma_scope(path.parent().unwrap_or(Path::new(".")), device);
    }
    if path.is_file() && path.extension().is_some_and(|e| e == "safetensors") {
        return read_circuit_tracer(path, device);
    }
    let (pt, dir) = if path.is_dir() {
        match Suite::detect(path) {
            Some(Suite::GemmaScope) => return read_gemma_scope(path, device),
            Some(Suite::GemmaScope2) => return read_gemma_scope_2(path, device),
            Some(Suite::LlamaScope) => {
                return read_llama_scope(path, options.norm_scaling_factor, device);
            }
            Some(Suite::Sparsify) => return read_sparsify(path, device),
            None => {}
        }
        if path.join("cfg.json").exists() {
            return Sae::read_saelens(path, device);
        }
        let run = sparsify_run(path);
        if !run.is_empty() {
            if let Some(want) = hook
                && let Some((folder, _)) = run.iter().find(|(_, h)| h.as_deref() == Some(want))
            {
                return read_sparsify(folder, device);
            }
            let listed: Vec<String> = run
                .iter()
                .map(|(p, h)| {
                    format!(
                        "{} ({})",
                        p.file_name().unwrap_or_default().to_string_lossy(),
                        h.as_deref().unwrap_or("no hook")
                    )
                })
                .collect();
            return Err(choose_one(path, "a sparsify run", hook, &listed));
        }
        let layers = circuit_tracer_layers(path);
        if !layers.is_empty() {
            let want = hook.and_then(|h| h.parse::<prism_core::HookPoint>().ok());
            if let Some(l) = want.and_then(|h| h.layer())
                && let Some((_, file)) = layers.iter().find(|(n, _)| *n == l)
            {
                return read_circuit_tracer(file, device);
            }
            let listed: Vec<String> = layers
                .iter()
                .map(|(l, p)| format!("{} (block {l})", p.display()))
                .collect();
            return Err(choose_one(
                path,
                "a circuit-tracer transcoder set",
                hook,
                &listed,
            ));
        }
        let pt = path.join("ae.pt");
        if !pt.exists() {
            return Err(PrismError::Config {
                path: path.to_path_buf(),
                message: "not a dictionary Prism reads: no SAELens cfg.json, \
                          dictionary_learning ae.pt, Gemma Scope params.npz, Gemma Scope 2 \
                          params.safetensors, Llama Scope hyperparams.json, sparsify \
                          sae.safetensors or circuit-tracer layer_N.safetensors"
                    .into(),
            });
        }
        (pt, path.to_path_buf())
    } else if path.exists() {
        (
            path.to_path_buf(),
            path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        )
    } else {
        return Err(PrismError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        ));
    };
    let config = dir.join("config.json");
    let cfg: Option<serde_json::Value> = match std::fs::read_to_string(&config) {
        Ok(text) => Some(serde_json::from_str(&text).map_err(|e| PrismError::Config {
            path: config.clone(),
            message: format!("not valid JSON: {e}"),
        })?),
        Err(_) => None,
    };
    let class = cfg
        .as_ref()
        .and_then(|c| c.pointer("/trainer/dict_class"))
        .and_then(|v| v.as_str());
    let mut sae = Sae::from_dictionary_learning_class(&pt, class, device)?;
    if let Some(cfg) = cfg {
        sae.hook_name = hook_from_trainer_config(&cfg);
        sae.extra_cfg
            .insert("dictionary_learning_config".into(), cfg);
    }
    Ok(Read::autoencoder(sae))
}

/// The error for a folder of several dictionaries and no (matching) hook to choose one by.
fn choose_one(path: &Path, what: &str, hook: Option<&str>, listed: &[String]) -> PrismError {
    PrismError::Config {
        path: path.to_path_buf(),
        message: format!(
            "{what} with {} dictionaries{}: name one, or give HOOK=DIR; it has {}",
            listed.len(),
            hook.map(|h| format!(", none at {h}")).unwrap_or_default(),
            listed.join(", ")
        ),
    }
}

/// What [`Sae::open_with`] and [`Transcoder::open_with`] may need besides the files.
///
/// ```
/// let o = prism_sae::OpenOptions::default().with_hook(Some("blocks.6.hook_mlp_out".into()));
/// assert_eq!(o.hook.as_deref(), Some("blocks.6.hook_mlp_out"));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpenOptions {
    /// The hook whose dictionary to take from a folder of several.
    pub hook: Option<String>,
    /// sae-lens's `norm_scaling_factor` for the dictionary (its registry entry), folded into
    /// the weights of a dictionary trained on normalised inputs (Llama Scope).
    pub norm_scaling_factor: Option<f64>,
}

impl OpenOptions {
    /// With the hook to choose.
    pub fn with_hook(mut self, hook: Option<String>) -> Self {
        self.hook = hook;
        self
    }
    /// With a registry's norm scaling factor.
    pub fn with_norm_scaling_factor(mut self, factor: Option<f64>) -> Self {
        self.norm_scaling_factor = factor;
        self
    }
}
