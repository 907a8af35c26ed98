//! Dictionaries as their authors publish them, read into [`Sae`]:
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
//!   `blocks.N.attn.hook_z`). Its transcoders (`transcoder…`, `clt…`) are refused by name.
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
//!   one such folder per hook.

use std::path::{Path, PathBuf};

use prism_core::{Device, HostTensor, PrismError, Result, read_safetensors};
use serde_json::Value;

use crate::dictionary_learning::transpose;
use crate::npz::read_npz;
use crate::sae::{Architecture, Sae, row};

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
/// ```
pub fn gemma_scope_hook(repo: &str, folder: &str) -> Option<String> {
    let embedding = folder.contains("embedding");
    let layer = layer_of(folder);
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
/// it; `None` for a transcoder or an unknown site.
///
/// ```
/// use prism_sae::gemma_scope_2_hook;
/// assert_eq!(gemma_scope_2_hook("resid_post/layer_12_width_16k_l0_medium").as_deref(),
///            Some("blocks.12.hook_resid_post"));
/// assert_eq!(gemma_scope_2_hook("mlp_out_all/layer_3_width_262k_l0_big").as_deref(),
///            Some("blocks.3.hook_mlp_out"));
/// assert_eq!(gemma_scope_2_hook("attn_out/layer_5_width_16k_l0_small").as_deref(),
///            Some("blocks.5.attn.hook_z"));
/// assert_eq!(gemma_scope_2_hook("transcoder/layer_5_width_16k_l0_small"), None);
/// ```
pub fn gemma_scope_2_hook(folder: &str) -> Option<String> {
    if folder.contains("transcoder") || folder.contains("clt") {
        return None;
    }
    let layer = layer_of(folder)?;
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

impl Sae {
    /// A Gemma Scope dictionary from its folder (`params.npz`); the hook as
    /// [`gemma_scope_hook`] derives it from the path, when it can.
    pub fn from_gemma_scope(dir: &Path, device: &Device) -> Result<Sae> {
        let path = dir.join("params.npz");
        let w = read_npz(&path)?;
        let enc = take_any(&w, &path, "W_enc")?;
        let [d_in, d_sae] = enc.shape[..] else {
            return Err(PrismError::Weight {
                path,
                name: "W_enc".into(),
                message: format!("expected 2 dimensions, found {:?}", enc.shape),
            });
        };
        let (repo, folder) = repo_and_folder(dir, "gemma-scope").unwrap_or_default();
        let embedding = folder.contains("embedding");
        let mut w_enc = take(&w, &path, "W_enc", &[d_in, d_sae])?.clone();
        let mut w_dec = take(&w, &path, "W_dec", &[d_sae, d_in])?.clone();
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
        let mut sae = Sae::new(
            Architecture::JumpRelu {
                threshold: row(take(&w, &path, "threshold", &[d_sae])?, device)?,
            },
            w_enc.to_burn(device)?,
            row(take(&w, &path, "b_enc", &[d_sae])?, device)?,
            w_dec.to_burn(device)?,
            row(take(&w, &path, "b_dec", &[d_in])?, device)?,
        )?;
        sae.set_apply_b_dec_to_input(false);
        sae.set_hook_name(gemma_scope_hook(&repo, &folder));
        let extra = sae.extra_cfg_mut();
        extra.insert("converted_from".into(), "gemma_scope".into());
        if !repo.is_empty() {
            extra.insert("source".into(), format!("{repo}/{folder}").into());
        }
        Ok(sae)
    }

    /// A Gemma Scope 2 dictionary from its folder (`params.safetensors`); the hook as
    /// [`gemma_scope_2_hook`] derives it from the path, when it can. Transcoders (a folder
    /// named so, or an `affine_skip_connection` tensor) are refused with an error saying so.
    pub fn from_gemma_scope_2(dir: &Path, device: &Device) -> Result<Sae> {
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
        let w = read_safetensors(&path)?;
        if folder.contains("transcoder")
            || folder.contains("clt")
            || w.contains_key("affine_skip_connection")
        {
            return Err(PrismError::Config {
                path,
                message: "a Gemma Scope 2 transcoder maps the MLP's input to its output, which \
                          Prism's dictionaries do not read yet"
                    .into(),
            });
        }
        let enc = take_any(&w, &path, "w_enc")?;
        let [d_in, d_sae] = enc.shape[..] else {
            return Err(PrismError::Weight {
                path,
                name: "w_enc".into(),
                message: format!("expected 2 dimensions, found {:?}", enc.shape),
            });
        };
        let mut sae = Sae::new(
            Architecture::JumpRelu {
                threshold: row(take(&w, &path, "threshold", &[d_sae])?, device)?,
            },
            enc.to_burn(device)?,
            row(take(&w, &path, "b_enc", &[d_sae])?, device)?,
            take(&w, &path, "w_dec", &[d_sae, d_in])?.to_burn(device)?,
            row(take(&w, &path, "b_dec", &[d_in])?, device)?,
        )?;
        sae.set_apply_b_dec_to_input(false);
        sae.set_hook_name(gemma_scope_2_hook(&folder));
        let extra = sae.extra_cfg_mut();
        extra.insert("converted_from".into(), "gemma_scope_2".into());
        if !folder.is_empty() {
            extra.insert("source".into(), folder.into());
        }
        Ok(sae)
    }

    /// A Llama Scope dictionary from its folder, with the registry's `norm_scaling_factor`
    /// when known (else the one its `hyperparams.json` implies).
    pub fn from_llama_scope(
        dir: &Path,
        norm_scaling_factor: Option<f64>,
        device: &Device,
    ) -> Result<Sae> {
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
        Ok(sae)
    }

    /// A sparsify dictionary from its hook folder (`cfg.json` + `sae.safetensors`); the hook
    /// as [`sparsify_hook`] derives it from the folder's name, when it can. Transcoders,
    /// skip connections and the `groupmax` activation are refused with an error saying so.
    pub fn from_sparsify(dir: &Path, device: &Device) -> Result<Sae> {
        let cfg_path = dir.join("cfg.json");
        let cfg = read_config(&cfg_path)?;
        let bad = |message: String| config_error(&cfg_path, message);
        let get = |k: &str| cfg.get(k).and_then(Value::as_u64).map(|v| v as usize);
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
        for flag in ["transcode", "skip_connection"] {
            if cfg.get(flag) == Some(&Value::Bool(true)) {
                return Err(bad(format!(
                    "`{flag}` = true: a transcoder (or skip connection) maps one hook to \
                     another, which Prism's dictionaries do not read yet"
                )));
            }
        }
        let path = dir.join("sae.safetensors");
        let w = read_safetensors(&path)?;
        let enc = take(&w, &path, "encoder.weight", &[d_sae, d_in])?;
        let w_enc = HostTensor::new(vec![d_in, d_sae], transpose(&enc.data, d_sae, d_in))?;
        let mut sae = Sae::new(
            Architecture::TopK { k },
            w_enc.to_burn(device)?,
            row(take(&w, &path, "encoder.bias", &[d_sae])?, device)?,
            take(&w, &path, "W_dec", &[d_sae, d_in])?.to_burn(device)?,
            row(take(&w, &path, "b_dec", &[d_in])?, device)?,
        )
        .map_err(|e| bad(e.to_string()))?;
        let module = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        sae.set_hook_name(sparsify_hook(&module));
        let extra = sae.extra_cfg_mut();
        extra.insert("converted_from".into(), "sparsify".into());
        extra.insert("sparsify_hookpoint".into(), module.into());
        Ok(sae)
    }
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
