//! [`Hub`]: lists a repository, downloads the files a model or a dictionary needs into the
//! shared cache, and finds them there again offline.

use std::path::PathBuf;

use prism_core::{HubProblem, PrismError, Result};
use serde_json::Value;

use crate::cache::{RepoCache, is_commit};
use crate::http::{self, Request, encode_path, encode_segment, header};
use crate::transfer::{FileMeta, Transfer, fetch_blob, normalise_etag};
use crate::{HubConfig, HubRef};

/// A repository's files at one commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The commit the revision resolved to.
    pub commit: String,
    /// Every file's path (`/`-separated), sorted.
    pub files: Vec<String>,
}

impl Listing {
    /// The files at or below `prefix` (a file itself, or a folder).
    pub fn under(&self, prefix: &str) -> Vec<String> {
        let folder = format!("{}/", prefix.trim_end_matches('/'));
        self.files
            .iter()
            .filter(|f| f.as_str() == prefix || f.starts_with(&folder))
            .cloned()
            .collect()
    }
}

/// Files a model directory may have besides its weights (those present are downloaded).
const MODEL_FILES: [&str; 5] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// The sharded-weights index `transformers` writes.
const WEIGHTS_INDEX: &str = "model.safetensors.index.json";

/// A client of a Hugging Face–compatible hub.
pub struct Hub {
    config: HubConfig,
    agent: ureq::Agent,
}

impl Hub {
    /// A client with these settings.
    pub fn new(config: HubConfig) -> Hub {
        let agent = http::agent(config.timeout());
        Hub { config, agent }
    }
    /// A client configured as Python's `huggingface_hub` would be here ([`HubConfig::from_env`]).
    pub fn from_env() -> Hub {
        Hub::new(HubConfig::from_env())
    }
    /// Its settings.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }
    /// The cache folder of `repo`.
    pub fn cache(&self, repo: &str) -> RepoCache {
        RepoCache::new(self.config.cache_dir(), repo)
    }

    fn request(&self) -> Request<'_> {
        Request {
            agent: &self.agent,
            endpoint: self.config.endpoint(),
            token: self.config.token(),
        }
    }

    fn error(r: &HubRef, file: Option<&str>, problem: HubProblem) -> PrismError {
        PrismError::Hub {
            repo: r.repo_at(),
            file: file.map(str::to_string),
            problem,
        }
    }

    /// Whether to fall back on the cache: offline, or the hub could not be reached.
    fn unreachable(e: &PrismError) -> bool {
        matches!(
            e,
            PrismError::Hub {
                problem: HubProblem::Connection(_),
                ..
            }
        )
    }

    /// The repository's files at `r`'s revision (from the cache when offline or unreachable).
    pub fn list(&self, r: &HubRef) -> Result<Listing> {
        let cache = self.cache(r.repo());
        let cached = || {
            cache
                .cached_files(r.revision())
                .map(|(commit, files)| Listing { commit, files })
        };
        if self.config.offline() {
            return cached().ok_or_else(|| {
                Self::error(
                    r,
                    None,
                    HubProblem::NotCached(cache.dir().display().to_string()),
                )
            });
        }
        let listing = match self.list_online(r) {
            Err(e) if Self::unreachable(&e) => return cached().ok_or(e),
            other => other?,
        };
        cache.set_ref(r.revision(), &listing.commit)?;
        Ok(listing)
    }

    fn list_online(&self, r: &HubRef) -> Result<Listing> {
        let url = format!(
            "{}/api/models/{}/revision/{}",
            self.config.endpoint(),
            r.repo(),
            encode_segment(r.revision())
        );
        let err = |p| Self::error(r, None, p);
        let answer = self.request().send(false, &url, None, false).map_err(err)?;
        let mut response = answer.response;
        if !response.status().is_success() {
            return Err(err(http::problem(&response, false)));
        }
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| err(http::connection(e)))?;
        parse_listing(&text).map_err(err)
    }

    fn meta(&self, r: &HubRef, path: &str) -> Result<FileMeta> {
        let url = format!(
            "{}/{}/resolve/{}/{}",
            self.config.endpoint(),
            r.repo(),
            encode_segment(r.revision()),
            encode_path(path)
        );
        let err = |p| Self::error(r, Some(path), p);
        let answer = self.request().send(true, &url, None, false).map_err(err)?;
        let response = &answer.response;
        let status = response.status();
        if !(status.is_success() || status.is_redirection()) {
            return Err(err(http::problem(response, true)));
        }
        let h = response.headers();
        let commit = header(h, "x-repo-commit")
            .filter(|c| is_commit(c))
            .ok_or_else(|| err(HubProblem::BadAnswer("no X-Repo-Commit commit hash".into())))?;
        let etag = header(h, "x-linked-etag")
            .or_else(|| header(h, "etag"))
            .ok_or_else(|| err(HubProblem::BadAnswer("no ETag".into())))?;
        let size = header(h, "x-linked-size")
            .or_else(|| header(h, "content-length"))
            .and_then(|s| s.parse().ok());
        let url = if status.is_redirection() {
            header(h, "location").unwrap_or(&answer.url).to_string()
        } else {
            answer.url.clone()
        };
        Ok(FileMeta {
            commit: commit.to_string(),
            etag: normalise_etag(etag).map_err(err)?,
            size,
            url,
        })
    }

    /// The file `r.path()` in the cache, downloading it first unless the cache already holds
    /// that commit's copy (the hub is asked which commit the revision is at, unless offline or
    /// `r`'s revision is a commit already cached). The returned path is inside
    /// `snapshots/COMMIT/`.
    pub fn file(&self, r: &HubRef, progress: &mut dyn FnMut(Transfer<'_>)) -> Result<PathBuf> {
        let path = r.path().ok_or_else(|| {
            PrismError::InvalidInput(format!("`{r}` names a repository, not a file in one"))
        })?;
        let cache = self.cache(r.repo());
        let not_cached = || {
            Self::error(
                r,
                Some(path),
                HubProblem::NotCached(cache.dir().display().to_string()),
            )
        };
        if self.config.offline() {
            return cache.cached(r).ok_or_else(not_cached);
        }
        if is_commit(r.revision())
            && let Some(p) = cache.cached(r)
        {
            return Ok(p);
        }
        let meta = match self.meta(r, path) {
            Err(e) if Self::unreachable(&e) => return cache.cached(r).ok_or(e),
            other => other?,
        };
        cache.set_ref(r.revision(), &meta.commit)?;
        let pointer = cache.snapshot(&meta.commit).join(path);
        if pointer.exists() {
            return Ok(pointer);
        }
        let (retries, pause) = self.config.retries();
        fetch_blob(
            &self.request(),
            &cache,
            &meta,
            path,
            (retries, pause),
            &|p| Self::error(r, Some(path), p),
            progress,
        )?;
        cache.link(&meta.commit, path, &meta.etag)
    }

    /// Downloads `paths` of the repository at one commit (the revision's, resolved once) and
    /// returns that commit's snapshot folder.
    pub fn files(
        &self,
        r: &HubRef,
        commit: &str,
        paths: &[String],
        progress: &mut dyn FnMut(Transfer<'_>),
    ) -> Result<PathBuf> {
        let at = HubRef::new(r.repo(), commit)?;
        for p in paths {
            self.file(&at.with_path(Some(p)), progress)?;
        }
        Ok(self.cache(r.repo()).snapshot(commit))
    }

    /// A folder (or one file) of the repository with everything below it, e.g. a dictionary's
    /// `layer_12/width_16k/average_l0_82`; the whole repository when `r` names no path.
    pub fn folder(&self, r: &HubRef, progress: &mut dyn FnMut(Transfer<'_>)) -> Result<PathBuf> {
        let listing = self.list(r)?;
        let prefix = r.path().unwrap_or("");
        let wanted = if prefix.is_empty() {
            listing.files.clone()
        } else {
            listing.under(prefix)
        };
        if wanted.is_empty() {
            return Err(Self::error(r, r.path(), HubProblem::EntryNotFound));
        }
        let root = self.files(r, &listing.commit, &wanted, progress)?;
        Ok(if prefix.is_empty() {
            root
        } else {
            root.join(prefix)
        })
    }

    /// What `prism fetch hf:…` downloads: the named folder or file; else a model's files when
    /// the repository holds a model (`config.json`); else the whole repository.
    pub fn fetch(&self, r: &HubRef, progress: &mut dyn FnMut(Transfer<'_>)) -> Result<PathBuf> {
        if r.path().is_none() && self.list(r)?.files.iter().any(|f| f == "config.json") {
            return self.model(r, progress);
        }
        self.folder(r, progress)
    }

    /// What a model needs, as an HF model directory: `config.json`, the tokenizer and
    /// generation files present, and the weights (`model.safetensors`, or the shards its
    /// index names). When `r` names a path (a `.gguf` file, a subfolder), that instead.
    pub fn model(&self, r: &HubRef, progress: &mut dyn FnMut(Transfer<'_>)) -> Result<PathBuf> {
        if r.path().is_some() {
            return self.folder(r, progress);
        }
        let listing = self.list(r)?;
        let has = |f: &str| listing.files.iter().any(|x| x == f);
        if !has("config.json") {
            return Err(Self::error(
                r,
                Some("config.json"),
                HubProblem::BadAnswer(format!(
                    "not a transformers model repository (no config.json); its files: {}",
                    preview(&listing.files)
                )),
            ));
        }
        let mut wanted: Vec<String> = MODEL_FILES
            .iter()
            .filter(|f| has(f))
            .map(|f| f.to_string())
            .collect();
        if has(WEIGHTS_INDEX) {
            let root = self.files(r, &listing.commit, &[WEIGHTS_INDEX.into()], progress)?;
            let index_path = root.join(WEIGHTS_INDEX);
            let text =
                std::fs::read_to_string(&index_path).map_err(|e| PrismError::io(&index_path, e))?;
            let shards = prism_models::shards_of_index(&text).map_err(|m| PrismError::Config {
                path: index_path.clone(),
                message: m,
            })?;
            wanted.extend(shards);
        } else {
            // `model.safetensors` when there is one (other top-level files may be adapters or
            // consolidated copies), else every top-level `*.safetensors`.
            let top: Vec<String> = if has("model.safetensors") {
                vec!["model.safetensors".into()]
            } else {
                listing
                    .files
                    .iter()
                    .filter(|f| !f.contains('/') && f.ends_with(".safetensors"))
                    .cloned()
                    .collect()
            };
            if top.is_empty() {
                let ggufs: Vec<&String> = listing
                    .files
                    .iter()
                    .filter(|f| f.ends_with(".gguf"))
                    .collect();
                let hint = match ggufs.first() {
                    Some(g) => format!("; name a GGUF file instead, e.g. {}/{g}", r.repo_at()),
                    None => String::new(),
                };
                return Err(Self::error(
                    r,
                    None,
                    HubProblem::BadAnswer(format!("no *.safetensors weights{hint}")),
                ));
            }
            wanted.extend(top);
        }
        self.files(r, &listing.commit, &wanted, progress)
    }
}

fn preview(files: &[String]) -> String {
    let mut s = files.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
    if files.len() > 8 {
        s.push_str(&format!(", … ({} in all)", files.len()));
    }
    s
}

/// A repository path is relative, `/`-separated, without empty, `.` or `..` segments.
fn safe_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

/// The model-info answer (`/api/models/ORG/NAME/revision/REV`): `sha` and `siblings`.
///
/// ```
/// let l = prism_hub::parse_listing(r#"{"sha": "0123456789abcdef0123456789abcdef01234567",
///     "siblings": [{"rfilename": "config.json"}, {"rfilename": "a/b.npz"}]}"#).unwrap();
/// assert_eq!(l.files, ["a/b.npz", "config.json"]);
/// assert!(prism_hub::parse_listing(r#"{"sha": "x", "siblings": []}"#).is_err());
/// ```
pub fn parse_listing(text: &str) -> std::result::Result<Listing, HubProblem> {
    let bad = |m: String| HubProblem::BadAnswer(m);
    let v: Value =
        serde_json::from_str(text).map_err(|e| bad(format!("model info is not JSON: {e}")))?;
    let commit = v
        .get("sha")
        .and_then(Value::as_str)
        .filter(|c| is_commit(c))
        .ok_or_else(|| bad("model info has no commit hash `sha`".into()))?
        .to_string();
    let siblings = v
        .get("siblings")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("model info has no `siblings` list".into()))?;
    let mut files = Vec::with_capacity(siblings.len());
    for s in siblings {
        let name = s
            .get("rfilename")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a sibling without `rfilename`".into()))?;
        if !safe_path(name) {
            return Err(bad(format!("unsafe file name `{name}`")));
        }
        files.push(name.to_string());
    }
    files.sort();
    files.dedup();
    Ok(Listing { commit, files })
}
