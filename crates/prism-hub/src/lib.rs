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
//! [`resolve_model`] and [`resolve_folder`] are what commands call with a user's argument: a
//! local path always wins over a hub name.

mod cache;
mod client;
mod http;
mod reference;
mod settings;
mod transfer;

use std::path::{Path, PathBuf};

use prism_core::{PrismError, Result};

pub use cache::{RepoCache, is_commit};
pub use client::{Hub, Listing, parse_listing, shards_of_index};
pub use reference::{DEFAULT_REVISION, HubRef};
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

/// The local path of a file or folder named by `spec` (a dictionary's folder, say): the path
/// itself, or the hub folder downloaded into the cache with everything below it.
pub fn resolve_folder(spec: &str, progress: &mut dyn FnMut(Transfer<'_>)) -> Result<PathBuf> {
    match Location::of(spec) {
        Location::Local(p) => Ok(p),
        Location::Hub(r) => {
            if r.path().is_none() {
                return Err(PrismError::InvalidInput(format!(
                    "`{spec}`: name the folder or file inside the repository (ORG/NAME/PATH)"
                )));
            }
            Hub::from_env().folder(&r, progress)
        }
    }
}
