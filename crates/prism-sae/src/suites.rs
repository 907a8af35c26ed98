//! Dictionaries as their authors publish them, read into [`Sae`] — or, for the suites'
//! transcoders, into the parts of a [`crate::Transcoder`] (docs/transcoders.md):
//!
//! - **Gemma Scope** (Google DeepMind): a folder `layer_N/width_W/average_l0_K/` holding
//!   `params.npz` with `W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, `b_enc`, `b_dec`,
//!   `threshold` — a JumpReLU dictionary whose input is not centred by `b_dec`. The hook comes
//!   from the repository's name and the folder, as sae-lens derives it (`…-res` →
//!   `blocks.N.hook_resid_post`, `…-mlp` → `blocks.N.hook_mlp_out`, `…-att` →
//!   `blocks.N.attn.hook_z`, an `embedding` folder → `hook_embed`); the repository's name is
//!   found in the path (the hub cache's `models--ORG--NAME`, or a folder named `gemma-scope…`).
//! - **Gemma Scope 2**: a folder `SITE/layer_N_width_W_l0_SIZE/` holding `params.safetensors`
//!   with the same tensors in lower case (`w_enc`, `w_dec`, `b_enc`, `b_dec`, `threshold`);
//!   `SITE` gives the hook as sae-lens's Gemma 3 loader derives it (`resid_post` →
//!   `blocks.N.hook_resid_post`, `mlp_out` → `blocks.N.hook_mlp_out`, `attn_out` →
//!   `blocks.N.attn.hook_z`). Its `transcoder…` folders hold transcoders from `blocks.N.mlp.hook_in`
//!   to `blocks.N.hook_mlp_out` (with `affine_skip_connection [d_in, d_out]` in the `…affine`
//!   ones); cross-layer transcoders (`clt…`) are refused by name. Gemma Scope's `…-transcoders`
//!   repository holds transcoders from `blocks.N.ln2.hook_normalized` to `blocks.N.hook_mlp_out`.
//! - **Llama Scope** (OpenMOSS): a folder holding `hyperparams.json` (`d_model`, `d_sae`,
//!   `hook_point_in`, `jump_relu_threshold`, `dataset_average_activation_norm.in`) and
//!   `checkpoints/final.safetensors` (`encoder.weight [d_sae, d_in]`, `encoder.bias`,
//!   `decoder.weight [d_in, d_sae]`, `decoder.bias`). Trained on inputs scaled to norm `√d_in`;
//!   read as sae-lens's `SAE.from_pretrained` does: the scalar threshold times
//!   `s = √d_in / average norm` (rounded to bfloat16, as sae-lens builds it), then the registry's `norm_scaling_factor` `r` folded in
//!   (`W_enc·r`, `W_dec/r`, `b_dec/r`; `r = s` when no registry value is given), so the
//!   dictionary reads raw activations.
//! - **EleutherAI sparsify**: a folder per hook point named after the module
//!   (`layers.6`, `layers.6.mlp`) holding `cfg.json` (`k`, `num_latents`, `d_in`, …) and
//!   `sae.safetensors` (`encoder.weight [d_sae, d_in]`, `encoder.bias`, `W_dec [d_sae, d_in]`,
//!   `b_dec`) — TopK over `ReLU((x − b_dec) W_encᵀ + b_enc)`; a training run's directory holds
//!   one such folder per hook. With `transcode` a folder holds a transcoder (module input →
//!   output, the input not centred), with `skip_connection` a skip term `W_skip [d_out, d_in]`.
//! - **circuit-tracer**: single-layer transcoder files `layer_N.safetensors` (`W_enc [d_sae,
//!   d_in]`, `W_dec [d_sae, d_out]`, `b_enc`, `b_dec`, optional `W_skip`,
//!   `activation_function.threshold`), the hooks in a `config.yaml` beside them.

use std::path::{Path, PathBuf};

use prism_core::{Device, HostTensor, PrismError, Result, read_safetensors};
use serde_json::Value;

use crate::dictionary_learning::transpose;
use crate::npz::read_npz;
use crate::sae::{Architecture, Sae, row, transposed};
use crate::transcoder::{Output, Read};

/// The published formats [`Sae::open`] recognises besides SAELens' and dictionary_learning's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// Gemma Scope's `params.npz`.
    GemmaScope,
    /// Gemma Scope 2's `params.safetensors`.
    GemmaScope2,
    /// Llama Scope's `hyperparams.json` + `checkpoints/final.safetensors`.
    LlamaScope,
    /// A sparsify hook folder (`cfg.json` + `sae.safetensors`).
    Sparsify,
}

impl Suite {
    /// Which suite's files `dir` holds, if any.
    pub fn detect(dir: &Path) -> Option<Suite> {
        if dir.join("params.npz").is_file() {
            Some(Suite::GemmaScope)
        } else if dir.join("params.safetensors").is_file() {
            Some(Suite::GemmaScope2)
        } else if dir.join("hyperparams.json").is_file()
            && dir.join("checkpoints/final.safetensors").is_file()
        {
            Some(Suite::LlamaScope)
        } else if dir.join("sae.safetensors").is_file() && dir.join("cfg.json").is_file() {
            Some(Suite::Sparsify)
        } else {
            None
        }
    }
}

/// The repository name and the folder inside it, read off `dir`'s path: below a hub cache's
/// `models--ORG--NAME/snapshots/COMMIT/`, or below a folder whose name contains `marker`.
fn repo_and_folder(dir: &Path, marker: &str) -> Option<(String, String)> {
    let parts: Vec<String> = dir
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for (i, p) in parts.iter().enumerate().rev() {
        if let Some(repo) = p.strip_prefix("models--") {
            let name = repo.split("--").last().unwrap_or(repo).to_string();
            // models--ORG--NAME / snapshots / COMMIT / folder…
            return Some((name, parts.get(i + 3..)?.join("/")));
        }
    }
    let i = parts.iter().rposition(|p| p.contains(marker))?;
    Some((parts[i].clone(), parts[i + 1..].join("/")))
}

/// The `N` of a `layer_N` path component.
fn layer_of(folder: &str) -> Option<usize> {
    folder
        .split(['/', '_'])
        .collect::<Vec<_>>()
        .windows(2)
        .find_map(|w| {
            if w[0] == "layer" {
                w[1].parse().ok()
            } else {
                None
            }
        })
}

/// The TransformerLens hook of a Gemma Scope dictionary (repository name, folder inside it),
/// as sae-lens's Gemma Scope loader derives it.
///
/// ```
/// use prism_sae::gemma_scope_hook;
/// assert_eq!(gemma_scope_hook("gemma-scope-2b-pt-res", "layer_12/width_16k/average_l0_82").as_deref(),
///            Some("blocks.12.hook_resid_post"));
/// assert_eq!(gemma_scope_hook("gemma-scope-9b-pt-mlp", "layer_3/width_131k/average_l0_9").as_deref(),
///            Some("blocks.3.hook_mlp_out"));
/// assert_eq!(gemma_scope_hook("gemma-scope-2b-pt-att", "layer_0/width_16k/average_l0_5").as_deref(),
///            Some("blocks.0.attn.hook_z"));
/// assert_eq!(gemma_scope_hook("gemma-scope-2b-pt-res", "embedding/width_4k/average_l0_6").as_deref(),
///            Some("hook_embed"));
/// // A transcoder's input hook (it writes `blocks.N.hook_mlp_out`).
/// assert_eq!(gemma_scope_hook("gemma-scope-2b-pt-transcoders", "layer_7/width_16k/average_l0_40").as_deref(),
///            Some("blocks.7.ln2.hook_normalized"));
/// ```
pub fn gemma_scope_hook(repo: &str, folder: &str) -> Option<String> {
    let embedding = folder.contains("embedding");
    let layer = layer_of(folder);
    if repo.contains("transcoder") {
        return Some(format!("blocks.{}.ln2.hook_normalized", layer?));
    }
    if repo.contains("res") {
        return Some(if embedding {
            "hook_embed".into()
        } else {
            format!("blocks.{}.hook_resid_post", layer?)
        });
    }
    if repo.contains("mlp") {
        return Some(format!("blocks.{}.hook_mlp_out", layer?));
    }
    if repo.contains("att") {
        return Some(format!("blocks.{}.attn.hook_z", layer?));
    }
    None
}

/// The TransformerLens hook of a Gemma Scope 2 dictionary from its folder inside the
/// repository (`resid_post/layer_12_width_16k_l0_medium`), as sae-lens's Gemma 3 loader derives
/// it (for a transcoder, the hook it reads: the MLP's input; it writes `blocks.N.hook_mlp_out`);
/// `None` for a cross-layer transcoder or an unknown site.
///
/// ```
/// use prism_sae::gemma_scope_2_hook;
/// assert_eq!(gemma_scope_2_hook("resid_post/layer_12_width_16k_l0_medium").as_deref(),
///            Some("blocks.12.hook_resid_post"));
/// assert_eq!(gemma_scope_2_hook("mlp_out_all/layer_3_width_262k_l0_big").as_deref(),
///            Some("blocks.3.hook_mlp_out"));
/// assert_eq!(gemma_scope_2_hook("attn_out/layer_5_width_16k_l0_small").as_deref(),
///            Some("blocks.5.attn.hook_z"));
/// assert_eq!(gemma_scope_2_hook("transcoder/layer_5_width_16k_l0_small").as_deref(),
///            Some("blocks.5.mlp.hook_in"));
/// assert_eq!(gemma_scope_2_hook("clt/width_262k_l0_medium_affine/params_layer_5"), None);
/// ```
pub fn gemma_scope_2_hook(folder: &str) -> Option<String> {
    if folder.contains("clt") {
        return None;
    }
    let layer = layer_of(folder)?;
    if folder.contains("transcoder") {
        // sae-lens names it `hook_mlp_in` but reads `pre_feedforward_layernorm`'s output:
        // the MLP's input after its pre-norm, Prism's `mlp.hook_in`.
        return Some(format!("blocks.{layer}.mlp.hook_in"));
    }
    let site = if folder.contains("resid_post") {
        "hook_resid_post"
    } else if folder.contains("attn_out") {
        "attn.hook_z"
    } else if folder.contains("mlp_out") {
        "hook_mlp_out"
    } else {
        return None;
    };
    Some(format!("blocks.{layer}.{site}"))
}

/// The TransformerLens hook of a sparsify hook folder named after the model's module
/// (`layers.6` → `blocks.6.hook_resid_post`; `.mlp` → `hook_mlp_out`; `.self_attn`,
/// `.attention`, `.attn` → `hook_attn_out`; any prefix such as `model.` or `gpt_neox.` ignored).
///
/// ```
/// use prism_sae::sparsify_hook;
/// assert_eq!(sparsify_hook("layers.6").as_deref(), Some("blocks.6.hook_resid_post"));
/// assert_eq!(sparsify_hook("gpt_neox.layers.2.mlp").as_deref(), Some("blocks.2.hook_mlp_out"));
/// assert_eq!(sparsify_hook("model.layers.0.self_attn").as_deref(), Some("blocks.0.hook_attn_out"));
/// assert_eq!(sparsify_hook("lm_head"), None);
/// ```
pub fn sparsify_hook(module: &str) -> Option<String> {
    let at = module.find("layers.")?;
    let mut parts = module[at + "layers.".len()..].split('.');
    let layer: usize = parts.next()?.parse().ok()?;
    let site = match parts.next() {
        None => "hook_resid_post",
        Some("mlp") => "hook_mlp_out",
        Some("self_attn" | "attention" | "attn") => "hook_attn_out",
        Some(_) => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(format!("blocks.{layer}.{site}"))
}

/// The hooks a sparsify *transcoder* of a module reads and writes: the module's input and
/// output (`layers.6.mlp` → `blocks.6.mlp.hook_in` → `blocks.6.hook_mlp_out`; `layers.6` →
/// `blocks.6.hook_resid_pre` → `blocks.6.hook_resid_post`).
///
/// ```
/// use prism_sae::sparsify_transcoder_hooks;
/// assert_eq!(sparsify_transcoder_hooks("layers.6.mlp"),
///            Some(("blocks.6.mlp.hook_in".into(), "blocks.6.hook_mlp_out".into())));
/// assert_eq!(sparsify_transcoder_hooks("model.layers.2"),
///            Some(("blocks.2.hook_resid_pre".into(), "blocks.2.hook_resid_post".into())));
/// assert_eq!(sparsify_transcoder_hooks("layers.2.self_attn"), None);
/// ```
pub fn sparsify_transcoder_hooks(module: &str) -> Option<(String, String)> {
    let out = sparsify_hook(module)?;
    let (block, site) = out.rsplit_once('.')?;
    let input = match site {
        "hook_mlp_out" => "mlp.hook_in",
        "hook_resid_post" => "hook_resid_pre",
        _ => return None,
    };
    Some((format!("{block}.{input}"), out))
}

/// The hooks a circuit-tracer transcoder of block `layer` reads and writes, from its
/// `config.yaml`'s `feature_input_hook` / `feature_output_hook` (TransformerLens names within a
/// block: `mlp.hook_in`, `ln2.hook_normalized`, `hook_resid_mid`; `mlp.hook_out` and
/// `hook_mlp_out` both the MLP's output), defaulting to `mlp.hook_in` → `hook_mlp_out` as
/// sae-lens's loader of such files assumes.
///
/// ```
/// use prism_sae::circuit_tracer_hooks;
/// assert_eq!(circuit_tracer_hooks(3, Some("ln2.hook_normalized"), Some("hook_mlp_out")),
///            ("blocks.3.ln2.hook_normalized".into(), "blocks.3.hook_mlp_out".into()));
/// assert_eq!(circuit_tracer_hooks(0, None, Some("mlp.hook_out")),
///            ("blocks.0.mlp.hook_in".into(), "blocks.0.hook_mlp_out".into()));
/// ```
pub fn circuit_tracer_hooks(
    layer: usize,
    input: Option<&str>,
    output: Option<&str>,
) -> (String, String) {
    let output = match output.unwrap_or("hook_mlp_out") {
        "mlp.hook_out" => "hook_mlp_out",
        other => other,
    };
    (
        format!("blocks.{layer}.{}", input.unwrap_or("mlp.hook_in")),
        format!("blocks.{layer}.{output}"),
    )
}

/// Takes `name` from `w` with shape `shape`, or a [`PrismError::Weight`] naming the file.
fn take<'w>(
    w: &'w std::collections::HashMap<String, HostTensor>,
    path: &Path,
    name: &str,
    shape: &[usize],
) -> Result<&'w HostTensor> {
    let t = w.get(name).ok_or_else(|| PrismError::Weight {
        path: path.to_path_buf(),
        name: name.into(),
        message: "missing".into(),
    })?;
    if t.shape != shape {
        return Err(PrismError::Weight {
            path: path.to_path_buf(),
            name: name.into(),
            message: format!("expected shape {shape:?}, found {:?}", t.shape),
        });
    }
    Ok(t)
}

/// A JSON configuration file.
fn read_config(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| PrismError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| config_error(path, format!("not valid JSON: {e}")))
}

fn config_error(path: &Path, message: String) -> PrismError {
    PrismError::Config {
        path: path.to_path_buf(),
        message,
    }
}

/// A required non-negative integer of a configuration.
fn usize_key(cfg: &Value, path: &Path, key: &str) -> Result<usize> {
    cfg.get(key)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| config_error(path, format!("key `{key}` is missing")))
}

/// `name` from `w`, whatever its shape (checked by the caller).
fn take_any<'w>(
    w: &'w std::collections::HashMap<String, HostTensor>,
    path: &Path,
    name: &str,
) -> Result<&'w HostTensor> {
    w.get(name).ok_or_else(|| PrismError::Weight {
        path: path.to_path_buf(),
        name: name.into(),
        message: "missing".into(),
    })
}

/// The first two dimensions of `name`, which must have exactly two.
fn matrix_dims(
    w: &std::collections::HashMap<String, HostTensor>,
    path: &Path,
    name: &str,
) -> Result<[usize; 2]> {
    let t = take_any(w, path, name)?;
    match t.shape[..] {
        [a, b] => Ok([a, b]),
        _ => Err(PrismError::Weight {
            path: path.to_path_buf(),
            name: name.into(),
            message: format!("expected 2 dimensions, found {:?}", t.shape),
        }),
    }
}

/// A Gemma Scope dictionary from its folder (`params.npz`); the hook as [`gemma_scope_hook`]
/// derives it from the path, when it can. In a `…-transcoders` repository it is a transcoder
/// from `blocks.N.ln2.hook_normalized` to `blocks.N.hook_mlp_out` (`W_dec [d_sae, d_out]`).
pub(crate) fn read_gemma_scope(dir: &Path, device: &Device) -> Result<Read> {
    let path = dir.join("params.npz");
    let w = read_npz(&path)?;
    let [d_in, d_sae] = matrix_dims(&w, &path, "W_enc")?;
    let (repo, folder) = repo_and_folder(dir, "gemma-scope").unwrap_or_default();
    let transcoder = repo.contains("transcoder");
    let d_out = if transcoder {
        matrix_dims(&w, &path, "W_dec")?[1]
    } else {
        d_in
    };
    let embedding = folder.contains("embedding");
    let mut w_enc = take(&w, &path, "W_enc", &[d_in, d_sae])?.clone();
    let mut w_dec = take(&w, &path, "W_dec", &[d_sae, d_out])?.clone();
    if embedding {
        // Trained on embeddings scaled by √d_model (as Gemma scales them); sae-lens moves
        // that scale into the weights so the dictionary reads `hook_embed` as is.
        let s = (d_in as f32).sqrt();
        w_enc.data.iter_mut().for_each(|v| *v /= s);
        w_dec.data.iter_mut().for_each(|v| *v *= s);
    }
    if let Some(scale) = w.get("scaling_factor")
        && scale.data.iter().any(|&v| v != 1.0)
    {
        return Err(PrismError::Weight {
            path,
            name: "scaling_factor".into(),
            message: "a fine-tuning scaling factor other than 1 is not supported".into(),
        });
    }
    let mut sae = Sae::with_output(
        Architecture::JumpRelu {
            threshold: row(take(&w, &path, "threshold", &[d_sae])?, device)?,
        },
        w_enc.to_burn(device)?,
        row(take(&w, &path, "b_enc", &[d_sae])?, device)?,
        w_dec.to_burn(device)?,
        row(take(&w, &path, "b_dec", &[d_out])?, device)?,
        d_out,
    )?;
    sae.set_apply_b_dec_to_input(false);
    sae.set_hook_name(gemma_scope_hook(&repo, &folder));
    let extra = sae.extra_cfg_mut();
    extra.insert("converted_from".into(), "gemma_scope".into());
    if !repo.is_empty() {
        extra.insert("source".into(), format!("{repo}/{folder}").into());
    }
    let output = transcoder.then(|| Output {
        kind: "Gemma Scope transcoder".into(),
        skip: None,
        hook_out: layer_of(&folder).map(|l| format!("blocks.{l}.hook_mlp_out")),
    });
    Ok(Read { sae, output })
}

/// A Gemma Scope 2 dictionary from its folder (`params.safetensors`); the hook as
/// [`gemma_scope_2_hook`] derives it from the path, when it can. A `transcoder…` folder holds a
/// transcoder from the MLP's input to `blocks.N.hook_mlp_out`, with its affine skip connection
/// (`affine_skip_connection [d_in, d_out]`) where the folder's name says `affine`; cross-layer
/// transcoders (`clt…`) are refused by name.
pub(crate) fn read_gemma_scope_2(dir: &Path, device: &Device) -> Result<Read> {
    let path = dir.join("params.safetensors");
    // The folder in the repository; else the last two path components (`SITE/layer_…`).
    let folder = repo_and_folder(dir, "gemma-scope-2")
        .map(|(_, f)| f)
        .unwrap_or_else(|| {
            let parts: Vec<String> = dir
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            parts[parts.len().saturating_sub(2)..].join("/")
        });
    if folder.contains("clt") {
        return Err(PrismError::Config {
            path,
            message: "a Gemma Scope 2 cross-layer transcoder (each layer's features write to \
                      every later layer), which Prism does not read yet"
                .into(),
        });
    }
    let w = read_safetensors(&path)?;
    let transcoder = folder.contains("transcoder") || w.contains_key("affine_skip_connection");
    let [d_in, d_sae] = matrix_dims(&w, &path, "w_enc")?;
    let d_out = if transcoder {
        matrix_dims(&w, &path, "w_dec")?[1]
    } else {
        d_in
    };
    let mut sae = Sae::with_output(
        Architecture::JumpRelu {
            threshold: row(take(&w, &path, "threshold", &[d_sae])?, device)?,
        },
        take(&w, &path, "w_enc", &[d_in, d_sae])?.to_burn(device)?,
        row(take(&w, &path, "b_enc", &[d_sae])?, device)?,
        take(&w, &path, "w_dec", &[d_sae, d_out])?.to_burn(device)?,
        row(take(&w, &path, "b_dec", &[d_out])?, device)?,
        d_out,
    )?;
    sae.set_apply_b_dec_to_input(false);
    sae.set_hook_name(gemma_scope_2_hook(&folder));
    let extra = sae.extra_cfg_mut();
    extra.insert("converted_from".into(), "gemma_scope_2".into());
    if !folder.is_empty() {
        extra.insert("source".into(), folder.clone().into());
    }
    let output = if transcoder {
        let skip = match w.get("affine_skip_connection") {
            Some(_) => {
                Some(take(&w, &path, "affine_skip_connection", &[d_in, d_out])?.to_burn(device)?)
            }
            None => None,
        };
        Some(Output {
            kind: "Gemma Scope 2 transcoder".into(),
            skip,
            hook_out: layer_of(&folder).map(|l| format!("blocks.{l}.hook_mlp_out")),
        })
    } else {
        None
    };
    Ok(Read { sae, output })
}

/// A Llama Scope dictionary from its folder, with the registry's `norm_scaling_factor` when
/// known (else the one its `hyperparams.json` implies).
pub(crate) fn read_llama_scope(
    dir: &Path,
    norm_scaling_factor: Option<f64>,
    device: &Device,
) -> Result<Read> {
    let cfg_path = dir.join("hyperparams.json");
    let cfg = read_config(&cfg_path)?;
    let bad = |message: String| config_error(&cfg_path, message);
    let d_in = usize_key(&cfg, &cfg_path, "d_model")?;
    let d_sae = usize_key(&cfg, &cfg_path, "d_sae")?;
    let theta = cfg
        .get("jump_relu_threshold")
        .and_then(Value::as_f64)
        .ok_or_else(|| bad("key `jump_relu_threshold` is missing".into()))?;
    let norm = cfg
        .pointer("/dataset_average_activation_norm/in")
        .and_then(Value::as_f64)
        .filter(|n| n.is_finite() && *n > 0.0)
        .ok_or_else(|| {
            bad("`dataset_average_activation_norm.in` is missing or not positive".into())
        })?;
    let s = (d_in as f64).sqrt() / norm;
    let r = norm_scaling_factor.unwrap_or(s);
    if !(r.is_finite() && r > 0.0) {
        return Err(bad(format!("norm scaling factor {r} is not positive")));
    }
    let path = dir.join("checkpoints/final.safetensors");
    let w = read_safetensors(&path)?;
    let enc = take(&w, &path, "encoder.weight", &[d_sae, d_in])?;
    let scaled = |v: &[f32], by: f64| v.iter().map(|&x| x * by as f32).collect::<Vec<_>>();
    // sae-lens: W_enc = encoder.weightᵀ, then ×r; W_dec = decoder.weightᵀ, then ÷r.
    let w_enc = HostTensor::new(vec![d_in, d_sae], transpose(&enc.data, d_sae, d_in))?;
    let w_enc = HostTensor::new(w_enc.shape, scaled(&w_enc.data, r))?;
    let dec = take(&w, &path, "decoder.weight", &[d_in, d_sae])?;
    let w_dec = HostTensor::new(vec![d_sae, d_in], transpose(&dec.data, d_in, d_sae))?;
    let w_dec = HostTensor::new(
        w_dec.shape,
        w_dec.data.iter().map(|&x| x / r as f32).collect(),
    )?;
    let b_dec = take(&w, &path, "decoder.bias", &[d_in])?;
    let b_dec = HostTensor::new(
        vec![d_in],
        b_dec.data.iter().map(|&x| x / r as f32).collect(),
    )?;
    // sae-lens builds the threshold in the files' bfloat16 (`ones(bf16) × θ·s`).
    let t = half::bf16::from_f32((theta * s) as f32).to_f32();
    let threshold = HostTensor::new(vec![d_sae], vec![t; d_sae])?;
    let mut sae = Sae::new(
        Architecture::JumpRelu {
            threshold: row(&threshold, device)?,
        },
        w_enc.to_burn(device)?,
        row(take(&w, &path, "encoder.bias", &[d_sae])?, device)?,
        w_dec.to_burn(device)?,
        row(&b_dec, device)?,
    )
    .map_err(|e| bad(e.to_string()))?;
    sae.set_apply_b_dec_to_input(false);
    sae.set_hook_name(
        cfg.get("hook_point_in")
            .and_then(Value::as_str)
            .map(str::to_string),
    );
    let extra = sae.extra_cfg_mut();
    extra.insert("converted_from".into(), "llama_scope".into());
    extra.insert("norm_scaling_factor".into(), r.into());
    Ok(Read::autoencoder(sae))
}

/// A sparsify dictionary from its hook folder (`cfg.json` + `sae.safetensors`); the hook as
/// [`sparsify_hook`] derives it from the folder's name, when it can. With `transcode` it is a
/// transcoder from the module's input to its output ([`sparsify_transcoder_hooks`]; the input
/// not centred by `b_dec`); with `skip_connection`, a skip term `W_skip [d_out, d_in]` (applied
/// as `x W_skipᵀ`) makes it one too (an autoencoder with a skip writes its own hook). The
/// `groupmax` activation is refused with an error saying so.
pub(crate) fn read_sparsify(dir: &Path, device: &Device) -> Result<Read> {
    let cfg_path = dir.join("cfg.json");
    let cfg = read_config(&cfg_path)?;
    let bad = |message: String| config_error(&cfg_path, message);
    let get = |k: &str| cfg.get(k).and_then(Value::as_u64).map(|v| v as usize);
    let flag = |k: &str| cfg.get(k) == Some(&Value::Bool(true));
    let d_in = usize_key(&cfg, &cfg_path, "d_in")?;
    let k = usize_key(&cfg, &cfg_path, "k")?;
    let d_sae = match get("num_latents") {
        Some(n) if n > 0 => n,
        _ => d_in
            .checked_mul(get("expansion_factor").unwrap_or(32))
            .ok_or_else(|| bad("`expansion_factor` overflows".into()))?,
    };
    let activation = cfg
        .get("activation")
        .and_then(Value::as_str)
        .unwrap_or("topk");
    if activation != "topk" {
        return Err(bad(format!(
            "activation `{activation}` is not supported (topk is)"
        )));
    }
    let (transcode, skip) = (flag("transcode"), flag("skip_connection"));
    let path = dir.join("sae.safetensors");
    let w = read_safetensors(&path)?;
    let enc = take(&w, &path, "encoder.weight", &[d_sae, d_in])?;
    let mut sae = Sae::new(
        Architecture::TopK { k },
        transposed(enc, d_sae, d_in, device)?,
        row(take(&w, &path, "encoder.bias", &[d_sae])?, device)?,
        take(&w, &path, "W_dec", &[d_sae, d_in])?.to_burn(device)?,
        row(take(&w, &path, "b_dec", &[d_in])?, device)?,
    )
    .map_err(|e| bad(e.to_string()))?;
    sae.set_apply_b_dec_to_input(!transcode);
    let module = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (hook_in, hook_out) = if transcode {
        sparsify_transcoder_hooks(&module).unzip()
    } else {
        let hook = sparsify_hook(&module);
        (hook.clone(), hook)
    };
    sae.set_hook_name(hook_in);
    let extra = sae.extra_cfg_mut();
    extra.insert("converted_from".into(), "sparsify".into());
    extra.insert("sparsify_hookpoint".into(), module.into());
    let output = if transcode || skip {
        let skip = if skip {
            let s = take(&w, &path, "W_skip", &[d_in, d_in])?;
            Some(transposed(s, d_in, d_in, device)?)
        } else {
            None
        };
        Some(Output {
            kind: format!(
                "sparsify {}",
                if transcode {
                    "transcoder"
                } else {
                    "autoencoder with a skip connection"
                }
            ),
            skip,
            hook_out,
        })
    } else {
        None
    };
    Ok(Read { sae, output })
}

/// One of circuit-tracer's single-layer transcoder files (`layer_N.safetensors`, as its
/// `SingleLayerTranscoder.to_safetensors` writes them and its `load_relu_transcoder` reads
/// them): `W_enc [d_sae, d_in]`, `W_dec [d_sae, d_out]`, `b_enc`, `b_dec`, optional `W_skip
/// [d_out, d_in]` (applied as `x W_skipᵀ`) and `activation_function.threshold` (JumpReLU; else
/// ReLU). The hooks come from `config.yaml` beside the file when it has them
/// ([`circuit_tracer_hooks`]), the layer from the file's name.
pub(crate) fn read_circuit_tracer(file: &Path, device: &Device) -> Result<Read> {
    let w = read_safetensors(file)?;
    let [d_sae, d_in] = matrix_dims(&w, file, "W_enc")?;
    let [_, d_out] = matrix_dims(&w, file, "W_dec")?;
    let architecture = match w.get("activation_function.threshold") {
        Some(_) => {
            let t = take(&w, file, "activation_function.threshold", &[d_sae])?;
            // circuit-tracer's JumpReLU passes `pre` where `pre > θ`, negative values too
            // when θ < 0; Prism's (as SAELens') passes ReLU(pre) there. Equal for θ ≥ 0.
            if t.data.iter().any(|v| v.is_nan() || *v < 0.0) {
                return Err(PrismError::Weight {
                    path: file.to_path_buf(),
                    name: "activation_function.threshold".into(),
                    message: "a negative (or NaN) threshold: circuit-tracer's JumpReLU would \
                              pass negative pre-activations, which Prism's does not"
                        .into(),
                });
            }
            Architecture::JumpRelu {
                threshold: row(t, device)?,
            }
        }
        None => Architecture::Standard,
    };
    let mut sae = Sae::with_output(
        architecture,
        transposed(
            take(&w, file, "W_enc", &[d_sae, d_in])?,
            d_sae,
            d_in,
            device,
        )?,
        row(take(&w, file, "b_enc", &[d_sae])?, device)?,
        take(&w, file, "W_dec", &[d_sae, d_out])?.to_burn(device)?,
        row(take(&w, file, "b_dec", &[d_out])?, device)?,
        d_out,
    )?;
    sae.set_apply_b_dec_to_input(false);
    let skip = match w.get("W_skip") {
        Some(_) => Some(transposed(
            take(&w, file, "W_skip", &[d_out, d_in])?,
            d_out,
            d_in,
            device,
        )?),
        None => None,
    };
    let name = file
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let layer = layer_of(&name);
    let config = file.with_file_name("config.yaml");
    let cfg = match std::fs::read_to_string(&config) {
        Ok(text) => prism_core::parse_yaml(&text).map_err(|m| config_error(&config, m))?,
        Err(_) => Value::Null,
    };
    let hook = |k: &str| cfg.get(k).and_then(Value::as_str);
    let (hook_in, hook_out) = layer
        .map(|l| circuit_tracer_hooks(l, hook("feature_input_hook"), hook("feature_output_hook")))
        .unzip();
    sae.set_hook_name(hook_in);
    let extra = sae.extra_cfg_mut();
    extra.insert("converted_from".into(), "circuit_tracer".into());
    Ok(Read {
        sae,
        output: Some(Output {
            kind: "circuit-tracer transcoder".into(),
            skip,
            hook_out,
        }),
    })
}

/// The `layer_N.safetensors` files of a circuit-tracer transcoder set in `dir`, by layer.
pub fn circuit_tracer_layers(dir: &Path) -> Vec<(usize, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(usize, PathBuf)> = entries
        .flatten()
        .map(|e| e.path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let layer = name.strip_prefix("layer_")?.strip_suffix(".safetensors")?;
            Some((layer.parse().ok()?, p))
        })
        .collect();
    out.sort();
    out
}

/// The hook folders of a sparsify training run (`RUN/layers.6/cfg.json`, …): each folder and
/// the hook it is at (`None` where the name maps to none), sorted by folder name.
pub fn sparsify_run(dir: &Path) -> Vec<(PathBuf, Option<String>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Option<String>)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| Suite::detect(p) == Some(Suite::Sparsify))
        .map(|p| {
            let hook = sparsify_hook(&p.file_name().unwrap_or_default().to_string_lossy());
            (p, hook)
        })
        .collect();
    out.sort();
    out
}
