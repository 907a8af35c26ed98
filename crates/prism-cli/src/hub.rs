//! Hub names wherever the CLI takes a model or a dictionary path (`--model ORG/NAME[@REV]`,
//! `--sae ORG/NAME/PATH`): prism-hub resolves them (a local path always wins), this draws the
//! progress bars.

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use prism_core::{Device, Result};
use prism_hub::Transfer;

use crate::progress::bar;

/// One bar per file being downloaded.
#[derive(Default)]
struct Bars {
    current: Option<(String, ProgressBar)>,
}

impl Bars {
    fn update(&mut self, t: Transfer<'_>) {
        if self.current.as_ref().is_none_or(|(f, _)| f != t.file) {
            self.finish();
            let b = bar(
                t.total.unwrap_or(0),
                &format!("downloading {}", t.file),
                "bytes",
            );
            self.current = Some((t.file.to_string(), b));
        }
        if let Some((_, b)) = &self.current {
            b.set_position(t.done);
        }
    }
    fn finish(&mut self) {
        if let Some((_, b)) = self.current.take() {
            b.finish_and_clear();
        }
    }
}

fn with_bars<T>(f: impl FnOnce(&mut dyn FnMut(Transfer<'_>)) -> Result<T>) -> Result<T> {
    let mut bars = Bars::default();
    let out = f(&mut |t| bars.update(t));
    bars.finish();
    out
}

/// A model path: the local file or directory, or the hub model downloaded into the cache.
pub fn model(spec: &Path) -> Result<PathBuf> {
    with_bars(|p| prism_hub::resolve_model(&spec.to_string_lossy(), p))
}

/// A dictionary from a local path or a hub folder, in any format `Sae::open` reads (the one at
/// `hook` in a folder of several).
pub fn open_sae(spec: &Path, hook: Option<&str>, device: &Device) -> Result<prism_sae::Sae> {
    let (path, options) = find_dictionary(spec, hook)?;
    prism_sae::Sae::open_with(&path, &options, device)
}

/// [`open_sae`] for a dictionary of either kind (`prism eval` takes transcoders too).
pub fn open_dictionary(
    spec: &Path,
    hook: Option<&str>,
    device: &Device,
) -> Result<prism_sae::Loaded> {
    let (path, options) = find_dictionary(spec, hook)?;
    prism_sae::Loaded::open_with(&path, &options, device)
}

/// Where `spec` is (downloaded first when it names one on the hub), and how to open it.
fn find_dictionary(spec: &Path, hook: Option<&str>) -> Result<(PathBuf, prism_sae::OpenOptions)> {
    let found = with_bars(|p| prism_hub::resolve_dictionary(&spec.to_string_lossy(), p))?;
    let options = prism_sae::OpenOptions::default()
        .with_hook(hook.map(str::to_string))
        .with_norm_scaling_factor(found.norm_scaling_factor);
    Ok((found.path, options))
}

/// `prism fetch hf:ORG/NAME[@REV][/PATH]`: a model's files (or the named folder, or the whole
/// repository when it holds no model) into the cache; the local path.
pub fn fetch(r: &prism_hub::HubRef) -> Result<PathBuf> {
    with_bars(|p| prism_hub::Hub::from_env().fetch(r, p))
}
