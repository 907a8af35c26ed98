//! Where the hub is, who the user is, and where files are cached: the environment variables
//! Python's `huggingface_hub` reads, with the same defaults, so both share one cache.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How to reach the hub and where to cache what it serves.
///
/// [`HubConfig::from_env`] reads `HF_ENDPOINT`, `HF_TOKEN` (else the token file
/// `HF_TOKEN_PATH`, else `$HF_HOME/token`), `HF_HUB_OFFLINE`, and the cache directory
/// `HF_HUB_CACHE` (else `$HF_HOME/hub`, `HF_HOME` defaulting to `$XDG_CACHE_HOME/huggingface`
/// or `~/.cache/huggingface`).
///
/// ```
/// use prism_hub::HubConfig;
/// let c = HubConfig::new("/tmp/hub-cache").with_endpoint("http://127.0.0.1:8080/").with_offline(true);
/// assert_eq!(c.endpoint(), "http://127.0.0.1:8080");
/// assert!(c.offline());
/// ```
#[derive(Clone, Debug)]
pub struct HubConfig {
    endpoint: String,
    token: Option<String>,
    offline: bool,
    cache_dir: PathBuf,
    retries: u32,
    retry_pause: Duration,
    timeout: Duration,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

/// `HF_HOME`, or its default.
pub fn hf_home() -> PathBuf {
    if let Some(h) = env("HF_HOME") {
        return PathBuf::from(h);
    }
    let cache = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("huggingface")
}

impl HubConfig {
    /// The public hub, no token, online, caching in `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> HubConfig {
        HubConfig {
            endpoint: DEFAULT_ENDPOINT.into(),
            token: None,
            offline: false,
            cache_dir: cache_dir.into(),
            retries: 5,
            retry_pause: Duration::from_millis(500),
            timeout: Duration::from_secs(30),
        }
    }

    /// The settings Python's `huggingface_hub` would use in this environment.
    pub fn from_env() -> HubConfig {
        let home = hf_home();
        let cache = env("HF_HUB_CACHE")
            .or_else(|| env("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("hub"));
        let token = env("HF_TOKEN")
            .or_else(|| env("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| {
                let file = env("HF_TOKEN_PATH")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| home.join("token"));
                std::fs::read_to_string(file)
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
            });
        let mut c = HubConfig::new(cache);
        if let Some(e) = env("HF_ENDPOINT") {
            c = c.with_endpoint(&e);
        }
        c.token = token;
        c.offline = env("HF_HUB_OFFLINE").is_some_and(|v| truthy(&v));
        c
    }

    /// The hub's base URL (a trailing `/` is dropped).
    pub fn with_endpoint(mut self, endpoint: &str) -> Self {
        self.endpoint = endpoint.trim_end_matches('/').to_string();
        self
    }
    /// The access token sent as `Authorization: Bearer`.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }
    /// Never contact the hub: only cached files are used.
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }
    /// How many times a lost connection is retried within one download (resuming where it
    /// stopped), and the pause before the first retry (doubling each time).
    pub fn with_retries(mut self, retries: u32, pause: Duration) -> Self {
        self.retries = retries;
        self.retry_pause = pause;
        self
    }
    /// The connect timeout, and the longest wait for a response or for the next bytes of one.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The hub's base URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
    /// The token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
    /// Whether the hub is never contacted.
    pub fn offline(&self) -> bool {
        self.offline
    }
    /// The cache directory (`…/huggingface/hub`).
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }
    pub(crate) fn retries(&self) -> (u32, Duration) {
        (self.retries, self.retry_pause)
    }
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}
