//! What Prism's tests, examples and fuzz targets share, written once: where the repository's
//! fixtures and downloaded assets are, one gate for what a machine may lack
//! ([`require_or_skip`], with one meaning for every `PRISM_REQUIRE_*` variable), the devices of
//! the backends a build may leave out, and headless Chromium ([`mod@chromium`]).
//!
//! A test that needs something a machine may lack asks for it through [`require_or_skip`]: where
//! it is missing the test prints why and returns early, unless the run requires it (CI sets
//! `PRISM_REQUIRE_ASSETS`, `PRISM_REQUIRE_WGPU` and `PRISM_REQUIRE_BROWSER`), where it fails.

use std::fmt::Display;
use std::path::PathBuf;

pub mod chromium;
pub mod hub_server;

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The committed reference fixtures (`fixtures/`, made by scripts/make_fixtures.py).
pub fn fixtures() -> PathBuf {
    root().join("fixtures")
}

/// Where `prism fetch` puts downloaded assets: `PRISM_ASSETS`, or `assets/`.
pub fn assets_dir() -> PathBuf {
    std::env::var_os("PRISM_ASSETS")
        .map(Into::into)
        .unwrap_or_else(|| root().join("assets"))
}

/// Something a test needs that a machine or a build may lack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Downloaded models and corpora (`prism fetch`).
    Assets,
    /// The wgpu backend (a cargo feature) and an adapter (lavapipe in CI).
    Wgpu,
    /// Headless Chromium (Debian's `chromium`).
    Browser,
}

impl Need {
    /// The environment variable that makes it required.
    pub fn variable(self) -> &'static str {
        match self {
            Need::Assets => "PRISM_REQUIRE_ASSETS",
            Need::Wgpu => "PRISM_REQUIRE_WGPU",
            Need::Browser => "PRISM_REQUIRE_BROWSER",
        }
    }

    /// Whether this run must have it: its variable is set to anything but empty or `0`.
    pub fn required(self) -> bool {
        std::env::var_os(self.variable()).is_some_and(|v| !v.is_empty() && v != "0")
    }
}

/// The one gate: `Some(value)` when `found` has it; when it is missing, a panic naming `why` if
/// the run requires `need`, else `None` after printing that the check is skipped and why.
pub fn require_or_skip<T>(need: Need, found: Result<T, impl Display>) -> Option<T> {
    match found {
        Ok(value) => Some(value),
        Err(why) if need.required() => panic!("{} is set, but: {why}", need.variable()),
        Err(why) => {
            eprintln!("skipped ({} is not set): {why}", need.variable());
            None
        }
    }
}

/// A downloaded asset ([`assets_dir`]`/file`), gated on [`Need::Assets`]; the message names
/// the `prism fetch` that brings it.
pub fn asset(file: &str, fetch: &str) -> Option<PathBuf> {
    let path = assets_dir().join(file);
    let found = match path.exists() {
        true => Ok(path),
        false => Err(format!(
            "{} is absent (run `prism fetch {fetch}`)",
            path.display()
        )),
    };
    require_or_skip(Need::Assets, found)
}

/// The wgpu device, gated on [`Need::Wgpu`]. (burn's ndarray backend is a cargo feature only,
/// so its tests are compiled in or `#[ignore]`d rather than gated.)
pub fn wgpu_device() -> Option<prism_core::Device> {
    require_or_skip(Need::Wgpu, prism_core::device("wgpu"))
}

/// Headless Chromium ([`chromium::find`]), gated on [`Need::Browser`].
pub fn chromium() -> Option<PathBuf> {
    require_or_skip(
        Need::Browser,
        chromium::find().ok_or("no chromium (apt-get install chromium)"),
    )
}
