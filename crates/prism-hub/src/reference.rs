//! A hub reference: `ORG/NAME[@REVISION][/PATH]`, as researchers write it in Python
//! (`EleutherAI/pythia-70m-deduped`, `google/gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82`).

use std::fmt;
use std::str::FromStr;

use prism_core::{PrismError, Result};

/// The branch a reference without `@REVISION` means.
pub const DEFAULT_REVISION: &str = "main";

/// A repository at a revision, and optionally a file or folder inside it.
///
/// ```
/// use prism_hub::HubRef;
/// let r: HubRef = "google/gemma-scope-2b-pt-res@v1/layer_12/width_16k".parse().unwrap();
/// assert_eq!(r.repo(), "google/gemma-scope-2b-pt-res");
/// assert_eq!(r.revision(), "v1");
/// assert_eq!(r.path(), Some("layer_12/width_16k"));
/// let r: HubRef = "hf:EleutherAI/pythia-70m".parse().unwrap();
/// assert_eq!((r.revision(), r.path()), ("main", None));
/// assert!("../weights".parse::<HubRef>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubRef {
    repo: String,
    revision: String,
    path: Option<String>,
}

impl HubRef {
    /// A reference to a whole repository at `revision`.
    pub fn new(repo: &str, revision: &str) -> Result<HubRef> {
        format!("{repo}@{revision}").parse()
    }
    /// `ORG/NAME`.
    pub fn repo(&self) -> &str {
        &self.repo
    }
    /// The branch, tag or commit (`main` unless given).
    pub fn revision(&self) -> &str {
        &self.revision
    }
    /// The file or folder inside the repository, if any.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }
    /// The same repository and revision with another path inside it.
    pub fn with_path(&self, path: Option<&str>) -> HubRef {
        HubRef {
            path: path
                .map(|p| p.trim_matches('/').to_string())
                .filter(|p| !p.is_empty()),
            ..self.clone()
        }
    }
    /// `ORG/NAME`, with `@REVISION` unless it is the default branch (for messages).
    pub fn repo_at(&self) -> String {
        if self.revision == DEFAULT_REVISION {
            self.repo.clone()
        } else {
            format!("{}@{}", self.repo, self.revision)
        }
    }
}

impl fmt::Display for HubRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repo_at())?;
        if let Some(p) = &self.path {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

/// Hub names: letters, digits, `-`, `_`, `.`; not starting or ending with `-` or `.`, no `..`.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 96
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
        && !s.contains("..")
}

impl FromStr for HubRef {
    type Err = PrismError;

    fn from_str(s: &str) -> Result<HubRef> {
        let bad = |why: &str| {
            PrismError::InvalidInput(format!(
                "`{s}` is not a hub reference ORG/NAME[@REVISION][/PATH]: {why}"
            ))
        };
        let body = s
            .strip_prefix("hf://")
            .or_else(|| s.strip_prefix("hf:"))
            .unwrap_or(s);
        let mut parts = body.splitn(3, '/');
        let org = parts.next().unwrap_or_default();
        let name_rev = parts.next().ok_or_else(|| bad("no `/NAME`"))?;
        let (name, revision) = match name_rev.split_once('@') {
            Some((n, r)) => (n, r),
            None => (name_rev, DEFAULT_REVISION),
        };
        if !valid_name(org) || !valid_name(name) {
            return Err(bad("ORG and NAME are letters, digits, `-`, `_` and `.`"));
        }
        if revision.is_empty()
            || !revision
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad("a revision is a branch, tag or commit name"));
        }
        let path = parts
            .next()
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty());
        if let Some(p) = path
            && p.split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(bad("the path has an empty, `.` or `..` segment"));
        }
        Ok(HubRef {
            repo: format!("{org}/{name}"),
            revision: revision.to_string(),
            path: path.map(str::to_string),
        })
    }
}
