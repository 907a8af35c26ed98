//! SAELens' registry of published dictionaries (`pretrained_saes.yaml`, shipped inside the
//! `sae-lens` package; `prism fetch sae-lens-registry` extracts the pinned version's): release
//! names → the hub repository, and each SAE id → its folder in it. `RELEASE/SAE_ID` resolves
//! exactly as `SAE.from_pretrained(RELEASE, SAE_ID)` finds its files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prism_core::{PrismError, Result};
use serde_json::Value;

use crate::HubRef;
use prism_core::parse_yaml;

/// The registry file's name (as in the sae-lens package and the assets folder).
pub const REGISTRY_FILE: &str = "pretrained_saes.yaml";

/// sae-lens's conversions whose files Prism reads (`sae_lens`: no conversion, sae-lens' own
/// layout; `gemma_2`: Gemma Scope; `gemma_3`: Gemma Scope 2, its transcoders too;
/// `dictionary_learning_1`: `ae.pt`; `llama_scope`: Llama Scope; `gemma_2_transcoder`: Gemma
/// Scope's transcoders; `mwhanna_transcoder`: circuit-tracer's layer files).
pub const READABLE_CONVERSIONS: [&str; 7] = [
    "sae_lens",
    "gemma_2",
    "gemma_3",
    "dictionary_learning_1",
    "llama_scope",
    "gemma_2_transcoder",
    "mwhanna_transcoder",
];

/// One release: a repository and its dictionaries.
#[derive(Clone, Debug, PartialEq)]
pub struct Release {
    /// The hub repository (`ORG/NAME`).
    pub repo_id: String,
    /// The model the dictionaries were trained on.
    pub model: String,
    /// sae-lens's loader for the files (`gemma_2`, `sparsify`, …; `None`: sae-lens' own).
    pub conversion: Option<String>,
    /// SAE id → folder (or file) in the repository.
    pub saes: BTreeMap<String, String>,
    /// SAE id → the factor sae-lens folds into a dictionary trained on normalised inputs.
    pub norm_scaling_factors: BTreeMap<String, f64>,
}

/// The registry: release name → [`Release`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Registry {
    releases: BTreeMap<String, Release>,
}

impl Registry {
    /// Parses `pretrained_saes.yaml`'s text, taking what `get_pretrained_saes_directory()`
    /// takes: each release's `repo_id`, `model`, `conversion_func` and its `saes` (`id`, `path`;
    /// a numeric path read as its text).
    pub fn parse(text: &str) -> std::result::Result<Registry, String> {
        let doc = parse_yaml(text)?;
        let top = doc
            .as_object()
            .ok_or("the registry is not a mapping of releases")?;
        let mut releases = BTreeMap::new();
        for (name, r) in top {
            let field = |k: &str| -> std::result::Result<String, String> {
                match r.get(k) {
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(Value::Number(n)) => Ok(n.to_string()),
                    _ => Err(format!("release `{name}`: no `{k}`")),
                }
            };
            let saes = r
                .get("saes")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("release `{name}`: no `saes` list"))?;
            let mut map = BTreeMap::new();
            let mut norms = BTreeMap::new();
            for s in saes {
                let text = |v: Option<&Value>| match v {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
                let id = text(s.get("id"))
                    .ok_or_else(|| format!("release `{name}`: an SAE without `id`"))?;
                let path = text(s.get("path"))
                    .ok_or_else(|| format!("release `{name}`, `{id}`: no `path`"))?;
                if let Some(f) = s.get("norm_scaling_factor").and_then(Value::as_f64) {
                    norms.insert(id.clone(), f);
                }
                map.insert(id, path);
            }
            releases.insert(
                name.clone(),
                Release {
                    repo_id: field("repo_id")?,
                    model: field("model")?,
                    conversion: r
                        .get("conversion_func")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    saes: map,
                    norm_scaling_factors: norms,
                },
            );
        }
        Ok(Registry { releases })
    }

    /// Reads a registry file.
    pub fn load(path: &Path) -> Result<Registry> {
        let text = std::fs::read_to_string(path).map_err(|e| PrismError::io(path, e))?;
        Registry::parse(&text).map_err(|message| PrismError::Config {
            path: path.to_path_buf(),
            message: format!("not a readable SAELens registry: {message}"),
        })
    }

    /// Where the registry is looked for: `PRISM_SAE_REGISTRY`, else
    /// `$PRISM_ASSETS/pretrained_saes.yaml`, else `assets/pretrained_saes.yaml` (where
    /// `prism fetch sae-lens-registry` puts it); the first that exists.
    pub fn find() -> Option<PathBuf> {
        let mut candidates = Vec::new();
        if let Some(p) = std::env::var_os("PRISM_SAE_REGISTRY") {
            candidates.push(PathBuf::from(p));
        }
        if let Some(a) = std::env::var_os("PRISM_ASSETS") {
            candidates.push(Path::new(&a).join(REGISTRY_FILE));
        }
        candidates.push(Path::new("assets").join(REGISTRY_FILE));
        candidates.into_iter().find(|p| p.is_file())
    }

    /// Every release, by name.
    pub fn releases(&self) -> &BTreeMap<String, Release> {
        &self.releases
    }

    /// `RELEASE/SAE_ID` as a hub reference (repository and folder), with the release; `None`
    /// when `spec`'s first segment is no release. An unknown SAE id of a known release, or a
    /// conversion Prism cannot read, is an error listing what there is.
    ///
    /// ```
    /// let reg = prism_hub::Registry::parse("gemma-scope-2b-pt-res-canonical:\n  repo_id: google/gemma-scope-2b-pt-res\n  model: gemma-2-2b\n  conversion_func: gemma_2\n  saes:\n  - id: layer_0/width_16k/canonical\n    path: layer_0/width_16k/average_l0_105\n").unwrap();
    /// let (r, _) = reg.resolve("gemma-scope-2b-pt-res-canonical/layer_0/width_16k/canonical").unwrap().unwrap();
    /// assert_eq!(r.to_string(), "google/gemma-scope-2b-pt-res/layer_0/width_16k/average_l0_105");
    /// assert!(reg.resolve("EleutherAI/pythia-70m").unwrap().is_none());
    /// ```
    pub fn resolve(&self, spec: &str) -> Result<Option<(HubRef, &Release)>> {
        self.lookup(spec)
            .map(|o| o.map(|(r, release, _)| (r, release)))
    }

    /// [`Registry::resolve`], with the SAE id.
    pub fn lookup(&self, spec: &str) -> Result<Option<(HubRef, &Release, &str)>> {
        let Some((name, id)) = spec.split_once('/') else {
            return Ok(None);
        };
        let Some(release) = self.releases.get(name) else {
            return Ok(None);
        };
        let Some((id, path)) = release.saes.get_key_value(id) else {
            let ids: Vec<&str> = release.saes.keys().map(String::as_str).take(12).collect();
            return Err(PrismError::InvalidInput(format!(
                "SAELens release `{name}` has no SAE `{id}`; it has {} (e.g. {})",
                release.saes.len(),
                ids.join(", ")
            )));
        };
        let conversion = release.conversion.as_deref().unwrap_or("sae_lens");
        if !READABLE_CONVERSIONS.contains(&conversion) {
            return Err(PrismError::InvalidInput(format!(
                "SAELens release `{name}` is stored in the `{conversion}` format, which Prism \
                 does not read yet (it reads {})",
                READABLE_CONVERSIONS.join(", ")
            )));
        }
        let r: HubRef = format!("{}/{}", release.repo_id, path).parse()?;
        Ok(Some((r, release, id)))
    }
}
