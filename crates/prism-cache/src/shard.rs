//! One cache shard on disk, read with positional reads: opening streams the file once through
//! sha256 and parses the safetensors header; rows are then read where they lie. Nothing is
//! memory-mapped, so a process reading a cache holds only the rows it asked for, however large
//! the cache (a mapped file's touched pages count in the reader's resident memory), and a shard
//! truncated by another process is an I/O error, not a SIGBUS.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use prism_core::{PrismError, Result};
use sha2::{Digest, Sha256};

/// The largest safetensors header accepted (the safetensors crate's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// A tensor's place in the file: shape and absolute byte range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Extent {
    pub shape: Vec<usize>,
    pub start: u64,
    pub end: u64,
}

/// An open, checksum-verified shard file.
pub(crate) struct ShardFile {
    pub path: PathBuf,
    file: File,
    pub tensors: HashMap<String, Extent>,
}

impl ShardFile {
    /// Opens `path`, checks its sha256 against `sha256` (hex) and parses its header; every
    /// tensor's byte range is checked to lie in the file.
    pub fn open(path: &Path, sha256: &str) -> Result<Self> {
        let bad = |message: String| PrismError::Cache {
            path: path.to_path_buf(),
            message,
        };
        let mut file = File::open(path).map_err(|e| {
            bad(format!(
                "shard listed in the manifest cannot be opened: {e}"
            ))
        })?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(|e| PrismError::io(path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        let digest = hex::encode(hasher.finalize());
        if digest != sha256 {
            return Err(bad(format!(
                "sha256 {digest} does not match the manifest's {sha256} (the shard is corrupt or truncated)"
            )));
        }
        let mut shard = Self {
            path: path.to_path_buf(),
            file,
            tensors: HashMap::new(),
        };
        let mut n = [0u8; 8];
        shard.read_at(0, &mut n)?;
        let header_len = u64::from_le_bytes(n);
        if header_len > MAX_HEADER || header_len > len.saturating_sub(8) {
            return Err(bad(format!(
                "safetensors header of {header_len} bytes in a file of {len}"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        shard.read_at(8, &mut header)?;
        let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| bad(format!("safetensors header is not a JSON object: {e}")))?;
        let data_start = 8 + header_len;
        for (name, v) in header {
            if name == "__metadata__" {
                continue;
            }
            let shape: Option<Vec<usize>> = v["shape"]
                .as_array()
                .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect());
            let offsets: Option<Vec<u64>> = v["data_offsets"]
                .as_array()
                .and_then(|a| a.iter().map(|o| o.as_u64()).collect());
            let range = offsets.and_then(|o| <[u64; 2]>::try_from(o).ok());
            let (Some(shape), Some([begin, end])) = (shape, range) else {
                return Err(bad(format!(
                    "tensor `{name}` has no valid shape and data_offsets"
                )));
            };
            match (data_start.checked_add(begin), data_start.checked_add(end)) {
                (Some(start), Some(end)) if start <= end && end <= len => {
                    shard.tensors.insert(name, Extent { shape, start, end });
                }
                _ => {
                    return Err(bad(format!(
                        "tensor `{name}` lies outside the file ({begin}..{end} after the header, file of {len} bytes)"
                    )));
                }
            }
        }
        Ok(shard)
    }

    /// Fills `buf` with the bytes at `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        read_exact_at(&self.file, buf, offset).map_err(|e| PrismError::io(&self.path, e))
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(file, buf, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}
