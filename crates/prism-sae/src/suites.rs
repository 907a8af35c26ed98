//! Dictionaries as their authors publish them, read into [`Sae`]:
//!
//! - **Gemma Scope** (Google DeepMind): a folder `layer_N/width_W/average_l0_K/` holding
//!   `params.npz` with `W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, `b_enc`, `b_dec`,
//!   `threshold` — a JumpReLU dictionary whose input is not centred by `b_dec`. The hook comes
//!   from the repository's name and the folder, as sae-lens derives it (`…-res` →
//!   `blocks.N.hook_resid_post`, `…-mlp` → `blocks.N.hook_mlp_out`, `…-att` →
//!   `blocks.N.attn.hook_z`, an `embedding` folder → `hook_embed`); the repository's name is
//!   found in the path (the hub cache's `models--ORG--NAME`, or a folder named `gemma-scope…`).
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
    /// A sparsify hook folder (`cfg.json` + `sae.safetensors`).
    Sparsify,
}

impl Suite {
    /// Which suite's files `dir` holds, if any.
    pub fn detect(dir: &Path) -> Option<Suite> {
        if dir.join("params.npz").is_file() {
            Some(Suite::GemmaScope)
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

impl Sae {
    /// A Gemma Scope dictionary from its folder (`params.npz`); the hook as
    /// [`gemma_scope_hook`] derives it from the path, when it can.
    pub fn from_gemma_scope(dir: &Path, device: &Device) -> Result<Sae> {
        let path = dir.join("params.npz");
        let w = read_npz(&path)?;
        let enc = w.get("W_enc").ok_or_else(|| PrismError::Weight {
            path: path.clone(),
            name: "W_enc".into(),
            message: "missing".into(),
        })?;
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

    /// A sparsify dictionary from its hook folder (`cfg.json` + `sae.safetensors`); the hook
    /// as [`sparsify_hook`] derives it from the folder's name, when it can. Transcoders,
    /// skip connections and the `groupmax` activation are refused with an error saying so.
    pub fn from_sparsify(dir: &Path, device: &Device) -> Result<Sae> {
        let cfg_path = dir.join("cfg.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| PrismError::io(&cfg_path, e))?;
        let bad = |message: String| PrismError::Config {
            path: cfg_path.clone(),
            message,
        };
        let cfg: Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let get = |k: &str| cfg.get(k).and_then(Value::as_u64).map(|v| v as usize);
        let d_in = get("d_in").ok_or_else(|| bad("key `d_in` is missing".into()))?;
        let k = get("k").ok_or_else(|| bad("key `k` is missing".into()))?;
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
