//! Models and dictionaries by name from a Hugging Face–compatible hub.
//!
//! A researcher writes `EleutherAI/pythia-70m-deduped` or
//! `google/gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82` ([`HubRef`]); [`Hub`]
//! downloads only what is needed into the cache Python's `huggingface_hub` uses
//! ([`RepoCache`]: `$HF_HOME/hub/models--ORG--NAME/…`), so a model `transformers` already
//! downloaded is used as is and one Prism downloads opens in `transformers`. It honours
//! `HF_ENDPOINT`, `HF_TOKEN` (and the token file), `HF_HUB_OFFLINE` and `HF_HUB_CACHE`
//! ([`HubConfig`]). Downloads resume after a lost connection (`Range`), are checked against the
//! size and sha256 the hub announces, and one process at a time writes a file (a lock per
//! blob). Failures are [`prism_core::PrismError::Hub`] with a [`prism_core::HubProblem`].
//!
//! SAELens' registry ([`Registry`], its `pretrained_saes.yaml`) turns `RELEASE/SAE_ID` into the
//! repository and folder `SAE.from_pretrained` would load.
//!
//! [`resolve_model`] and [`resolve_dictionary`] are what commands call with a user's argument:
//! a local path always wins over a registry name, which wins over a hub name.

mod cache;
mod client;
mod http;
mod reference;
mod registry;
mod settings;
mod transfer;

use std::path::{Path, PathBuf};

use prism_core::{PrismError, Result};

pub use cache::{RepoCache, is_commit};
pub use client::{Hub, Listing, parse_listing};
pub use prism_core::parse_yaml;
pub use reference::{DEFAULT_REVISION, HubRef};
pub use registry::{READABLE_CONVERSIONS, REGISTRY_FILE, Registry, Release};
pub use settings::{DEFAULT_ENDPOINT, HubConfig, hf_home};
pub use transfer::{FileMeta, Transfer, normalise_etag};

/// What a user's argument names: a local path (it exists, or looks like one), or a hub
/// reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A file or directory on this machine.
    Local(PathBuf),
    /// A repository (and maybe a path in it) on the hub.
    Hub(HubRef),
}

impl Location {
    /// A local path when `spec` exists, starts with `/`, `.` or `~`, or is not a hub reference;
    /// otherwise the hub reference (`hf:` forces one).
    ///
    /// ```
    /// use prism_hub::Location;
    /// assert!(matches!(Location::of("EleutherAI/pythia-70m"), Location::Hub(_)));
    /// assert!(matches!(Location::of("./EleutherAI/pythia-70m"), Location::Local(_)));
    /// assert!(matches!(Location::of("model.gguf"), Location::Local(_)));
    /// ```
    pub fn of(spec: &str) -> Location {
        let local = || Location::Local(PathBuf::from(spec));
        let forced = spec.starts_with("hf:");
        if !forced && (Path::new(spec).exists() || spec.starts_with(['/', '.', '~'])) {
            return local();
        }
        match spec.parse::<HubRef>() {
            Ok(r) => Location::Hub(r),
            Err(_) => local(),
        }
    }
}

/// The local path of a model named by `spec`: the path itself, or a hub model downloaded into
/// the cache (its snapshot directory; or the named `.gguf` file / folder).
pub fn resolve_model(spec: &str, progress: &mut dyn FnMut(Transfer<'_>)) -> Result<PathBuf> {
    match Location::of(spec) {
        Location::Local(p) => Ok(p),
        Location::Hub(r) => Hub::from_env().model(&r, progress),
    }
}

/// Where a dictionary named by a user was found.
#[derive(Clone, Debug, PartialEq)]
pub struct FoundDictionary {
    /// Its local file or folder.
    pub path: PathBuf,
    /// The registry's norm scaling factor for it, if the name came from the registry and it
    /// has one.
    pub norm_scaling_factor: Option<f64>,
}

/// A dictionary named by `spec` ([`Hub::dictionary`] with the registry [`Registry::find`]
/// finds, if any, and the environment's hub settings).
pub fn resolve_dictionary(
    spec: &str,
    progress: &mut dyn FnMut(Transfer<'_>),
) -> Result<FoundDictionary> {
    let registry = Registry::find().map(|p| Registry::load(&p)).transpose()?;
    Hub::from_env().dictionary(spec, registry.as_ref(), progress)
}

impl Hub {
    /// A dictionary named by `spec`: the local path itself; else a SAELens registry name
    /// `RELEASE/SAE_ID` (with `registry`); else a hub folder `ORG/NAME/PATH`. Hub folders are
    /// downloaded into the cache with everything below them.
    pub fn dictionary(
        &self,
        spec: &str,
        registry: Option<&Registry>,
        progress: &mut dyn FnMut(Transfer<'_>),
    ) -> Result<FoundDictionary> {
        let found = |path| FoundDictionary {
            path,
            norm_scaling_factor: None,
        };
        let r = match Location::of(spec) {
            Location::Local(p) => return Ok(found(p)),
            Location::Hub(r) => r,
        };
        let name = spec.strip_prefix("hf:").unwrap_or(spec);
        if let Some(registry) = registry
            && let Some((r, release, id)) = registry.lookup(name)?
        {
            return Ok(FoundDictionary {
                path: self.folder(&r, progress)?,
                norm_scaling_factor: release.norm_scaling_factors.get(id).copied(),
            });
        }
        if r.path().is_none() {
            return Err(PrismError::InvalidInput(format!(
                "`{spec}`: name the folder or file inside the repository (ORG/NAME/PATH)"
            )));
        }
        self.folder(&r, progress).map(found)
    }
}
