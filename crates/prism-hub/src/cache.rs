//! The hub cache's layout, shared with Python's `huggingface_hub`:
//!
//! ```text
//! <cache>/models--ORG--NAME/
//!     refs/REVISION                 the commit a branch or tag pointed to when last seen
//!     blobs/ETAG                    each file's content, once, named by its ETag
//!     blobs/ETAG.incomplete         a download in progress (resumed from its length)
//!     snapshots/COMMIT/PATH         a relative symbolic link to ../../blobs/ETAG
//! <cache>/.locks/models--ORG--NAME/ETAG.lock   one writer per blob across processes
//! ```

use std::path::{Path, PathBuf};

use prism_core::{PrismError, Result, atomic_write};

use crate::HubRef;

/// One repository's folder in the cache.
#[derive(Clone, Debug)]
pub struct RepoCache {
    dir: PathBuf,
    locks: PathBuf,
}

/// True for a full 40-hex-digit commit hash.
pub fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

impl RepoCache {
    /// The folder of `repo` under the cache directory `root`.
    ///
    /// ```
    /// let c = prism_hub::RepoCache::new("/c".as_ref(), "EleutherAI/pythia-70m");
    /// assert_eq!(c.dir(), std::path::Path::new("/c/models--EleutherAI--pythia-70m"));
    /// ```
    pub fn new(root: &Path, repo: &str) -> RepoCache {
        let folder = format!("models--{}", repo.replace('/', "--"));
        RepoCache {
            dir: root.join(&folder),
            locks: root.join(".locks").join(folder),
        }
    }
    /// The repository's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The commit `revision` was last seen at (itself when it is a commit hash).
    pub fn commit(&self, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_string());
        }
        let text = std::fs::read_to_string(self.dir.join("refs").join(revision)).ok()?;
        let commit = text.trim();
        is_commit(commit).then(|| commit.to_string())
    }
    /// Records that `revision` points to `commit`.
    pub fn set_ref(&self, revision: &str, commit: &str) -> Result<()> {
        if revision == commit || self.commit(revision).as_deref() == Some(commit) {
            return Ok(());
        }
        let refs = self.dir.join("refs");
        std::fs::create_dir_all(&refs).map_err(|e| PrismError::io(&refs, e))?;
        atomic_write(&refs.join(revision), commit.as_bytes())
    }
    /// `snapshots/COMMIT`.
    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit)
    }
    /// `blobs/ETAG`.
    pub fn blob(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(etag)
    }
    /// The lock file serialising writers of one blob.
    pub fn lock_path(&self, etag: &str) -> PathBuf {
        self.locks.join(format!("{etag}.lock"))
    }
    /// A cached file of `r` (its path, or the whole snapshot folder when `r` names none), if
    /// the cache has it.
    pub fn cached(&self, r: &HubRef) -> Option<PathBuf> {
        let commit = self.commit(r.revision())?;
        let mut p = self.snapshot(&commit);
        if let Some(path) = r.path() {
            p.push(path);
        }
        p.exists().then_some(p)
    }
    /// Every file of the cached snapshot of `revision` (paths relative to it, `/`-separated).
    pub fn cached_files(&self, revision: &str) -> Option<(String, Vec<String>)> {
        let commit = self.commit(revision)?;
        let root = self.snapshot(&commit);
        if !root.is_dir() {
            return None;
        }
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).ok()?.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(&root) {
                    let parts: Vec<String> = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    out.push(parts.join("/"));
                }
            }
        }
        out.sort();
        Some((commit, out))
    }
    /// Makes `snapshots/COMMIT/PATH` a relative link to `blobs/ETAG` (a copy where links are
    /// not available), replacing any previous one atomically.
    pub fn link(&self, commit: &str, path: &str, etag: &str) -> Result<PathBuf> {
        let pointer = self.snapshot(commit).join(path);
        let parent = pointer.parent().unwrap_or(&self.dir).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(|e| PrismError::io(&parent, e))?;
        let blob = self.blob(etag);
        let tmp = parent.join(format!(
            ".{}.tmp-{}",
            pointer.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        #[cfg(unix)]
        let made = {
            // From snapshots/COMMIT/a/b/FILE: up one level per folder, then blobs/ETAG.
            let depth = 2 + path.matches('/').count();
            let mut target = PathBuf::new();
            for _ in 0..depth {
                target.push("..");
            }
            target.push("blobs");
            target.push(etag);
            std::os::unix::fs::symlink(&target, &tmp)
        };
        #[cfg(not(unix))]
        let made = std::fs::copy(&blob, &tmp).map(|_| ());
        made.and_then(|()| std::fs::rename(&tmp, &pointer))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                PrismError::io(&pointer, e)
            })?;
        if !pointer.exists() {
            return Err(PrismError::io(
                &pointer,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("dangling link to {}", blob.display()),
                ),
            ));
        }
        Ok(pointer)
    }
}
