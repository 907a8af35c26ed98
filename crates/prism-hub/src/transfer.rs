//! One blob's download: resumable (`Range` from what an `.incomplete` file already holds),
//! retried on a lost connection, checked against the size and sha256 the hub announced, and
//! written by one process at a time.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use prism_core::{HubProblem, PrismError, Result};
use sha2::{Digest, Sha256};

use crate::cache::RepoCache;
use crate::http::{Request, header, problem};

/// How far a file's download is, for progress bars.
#[derive(Clone, Copy, Debug)]
pub struct Transfer<'a> {
    /// The file's path in the repository.
    pub file: &'a str,
    /// Bytes on disk so far (a resumed download starts above zero).
    pub done: u64,
    /// The file's size, when the hub announced it.
    pub total: Option<u64>,
}

/// What the hub says about a file before it is downloaded.
#[derive(Clone, Debug)]
pub struct FileMeta {
    /// The commit the revision resolved to.
    pub commit: String,
    /// The content's ETag (a git blob hash, or for large files their sha256).
    pub etag: String,
    /// Its size in bytes.
    pub size: Option<u64>,
    /// Where the bytes come from (the storage a large file redirects to).
    pub url: String,
}

/// An ETag as a file name: `W/` and quotes removed; only hex digits, letters, `-`, `_`.
pub fn normalise_etag(raw: &str) -> std::result::Result<String, HubProblem> {
    let e = raw.trim().trim_start_matches("W/").trim_matches('"');
    if e.is_empty()
        || e.len() > 128
        || !e
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(HubProblem::BadAnswer(format!("unusable ETag `{raw}`")));
    }
    Ok(e.to_string())
}

fn incomplete(blob: &Path) -> PathBuf {
    let mut s = blob.as_os_str().to_owned();
    s.push(".incomplete");
    PathBuf::from(s)
}

/// Holds the blob's lock file locked (blocking until another process releases it).
fn lock(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| PrismError::io(dir, e))?;
    }
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| PrismError::io(path, e))?;
    match f.lock() {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {}
        Err(e) => return Err(PrismError::io(path, e)),
    }
    Ok(f)
}

/// Downloads `meta` into the cache's blob (unless another process already did), resuming a
/// partial file and retrying a lost connection `retries` times (pauses doubling from `pause`).
pub fn fetch_blob(
    request: &Request<'_>,
    cache: &RepoCache,
    meta: &FileMeta,
    file: &str,
    retries: (u32, std::time::Duration),
    hub_error: &dyn Fn(HubProblem) -> PrismError,
    progress: &mut dyn FnMut(Transfer<'_>),
) -> Result<PathBuf> {
    let blob = cache.blob(&meta.etag);
    let _held = lock(&cache.lock_path(&meta.etag))?;
    if blob.exists() {
        return Ok(blob);
    }
    let part = incomplete(&blob);
    if let Some(dir) = part.parent() {
        std::fs::create_dir_all(dir).map_err(|e| PrismError::io(dir, e))?;
    }
    let (retries, mut pause) = retries;
    let mut attempt = 0;
    let (len, digest) = loop {
        match transfer(request, meta, &part, file, progress) {
            Ok(done) => break done,
            Err(Failure::Retry(_)) if attempt < retries => {
                attempt += 1;
                std::thread::sleep(pause);
                pause *= 2;
            }
            Err(Failure::Retry(p)) | Err(Failure::Hub(p)) => return Err(hub_error(p)),
            Err(Failure::Local(e)) => return Err(e),
        }
    };
    verify(meta, len, digest).map_err(|p| {
        let _ = std::fs::remove_file(&part);
        hub_error(p)
    })?;
    std::fs::rename(&part, &blob).map_err(|e| PrismError::io(&blob, e))?;
    Ok(blob)
}

enum Failure {
    /// A lost or refused connection: worth another try from where it stopped.
    Retry(HubProblem),
    /// An answer that another try would not change.
    Hub(HubProblem),
    /// The local disk.
    Local(PrismError),
}

fn transfer(
    request: &Request<'_>,
    meta: &FileMeta,
    part: &Path,
    file: &str,
    progress: &mut dyn FnMut(Transfer<'_>),
) -> std::result::Result<(u64, Sha256), Failure> {
    let local = |e| Failure::Local(PrismError::io(part, e));
    // What an earlier attempt left is hashed once here; the rest as it arrives.
    let hash_existing = || -> std::io::Result<Sha256> {
        let mut h = Sha256::new();
        std::io::copy(&mut File::open(part)?, &mut h)?;
        Ok(h)
    };
    let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if let Some(size) = meta.size {
        if have == size {
            return Ok((have, hash_existing().map_err(local)?));
        }
        if have > size {
            have = 0;
        }
    }
    let answer = request
        .send(false, &meta.url, (have > 0).then_some(have), true)
        .map_err(Failure::Retry)?;
    let response = answer.response;
    let status = response.status().as_u16();
    let start = match status {
        206 => {
            // `Content-Range: bytes START-END/TOTAL` must start where the file stops.
            let range = header(response.headers(), "content-range").unwrap_or_default();
            let begins = range
                .strip_prefix("bytes ")
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.parse::<u64>().ok());
            if begins != Some(have) {
                return Err(Failure::Hub(HubProblem::BadAnswer(format!(
                    "asked for bytes from {have}, got Content-Range `{range}`"
                ))));
            }
            have
        }
        200 => 0,
        416 => {
            let _ = std::fs::remove_file(part);
            return Err(Failure::Retry(HubProblem::Http {
                status,
                message: "range not satisfiable; restarting the file".into(),
            }));
        }
        500..=599 => return Err(Failure::Retry(problem(&response, true))),
        _ => return Err(Failure::Hub(problem(&response, true))),
    };
    let (mut out, mut hash) = if start == 0 {
        (File::create(part).map_err(local)?, Sha256::new())
    } else {
        let hash = hash_existing().map_err(local)?;
        let out = OpenOptions::new().append(true).open(part).map_err(local)?;
        (out, hash)
    };
    let mut done = start;
    progress(Transfer {
        file,
        done,
        total: meta.size,
    });
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = out.sync_all();
                return Err(Failure::Retry(HubProblem::Connection(format!(
                    "lost after {done} bytes: {e}"
                ))));
            }
        };
        out.write_all(&buf[..n]).map_err(local)?;
        hash.update(&buf[..n]);
        done += n as u64;
        progress(Transfer {
            file,
            done,
            total: meta.size,
        });
    }
    out.sync_all().map_err(local)?;
    if let Some(size) = meta.size
        && done < size
    {
        return Err(Failure::Retry(HubProblem::Connection(format!(
            "the transfer ended after {done} of {size} bytes"
        ))));
    }
    Ok((done, hash))
}

/// The finished file (`len` bytes hashing to `digest`) has the announced size, and the
/// announced sha256 when the ETag is one (64 hex digits: large files' ETags are their sha256).
fn verify(meta: &FileMeta, len: u64, digest: Sha256) -> std::result::Result<(), HubProblem> {
    if let Some(size) = meta.size
        && len != size
    {
        return Err(HubProblem::BadAnswer(format!(
            "downloaded {len} bytes, the hub announced {size}"
        )));
    }
    if meta.etag.len() == 64 && meta.etag.bytes().all(|b| b.is_ascii_hexdigit()) {
        let got = hex::encode(digest.finalize());
        if !got.eq_ignore_ascii_case(&meta.etag) {
            return Err(HubProblem::BadAnswer(format!(
                "sha256 {got} differs from the announced {}; the partial file was removed",
                meta.etag
            )));
        }
    }
    Ok(())
}
