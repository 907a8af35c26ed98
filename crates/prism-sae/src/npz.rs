//! numpy's `.npz` archives (a zip of `.npy` arrays, as `np.savez` writes them; Gemma Scope
//! publishes its dictionaries so): little-endian float arrays, C order, read as f32.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use prism_core::{HostTensor, PrismError, Result};

/// Every array of an `.npz` file, by name (without `.npy`).
pub fn read_npz(path: &Path) -> Result<HashMap<String, HostTensor>> {
    let bytes = std::fs::read(path).map_err(|e| PrismError::io(path, e))?;
    parse_npz(&bytes).map_err(|message| {
        PrismError::InvalidInput(format!(
            "{}: not a readable .npz file: {message}",
            path.display()
        ))
    })
}

/// [`read_npz`] on bytes in memory.
pub fn parse_npz(bytes: &[u8]) -> std::result::Result<HashMap<String, HostTensor>, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| e.to_string())?;
        let name = entry.name().to_string();
        let Some(key) = name.strip_suffix(".npy") else {
            continue;
        };
        // Float arrays barely compress (np.savez stores them as they are): an entry inflating
        // to more than 100 times its compressed size is refused before it is read whole, and
        // the buffer grows with what is actually read, not with what the header claims.
        let limit = entry.compressed_size().saturating_mul(100).max(1 << 16);
        if entry.size() > limit {
            return Err(format!(
                "`{name}` claims {} bytes from {} compressed",
                entry.size(),
                entry.compressed_size()
            ));
        }
        let mut data = Vec::with_capacity((entry.size() as usize).min(1 << 24));
        (&mut entry)
            .take(limit + 1)
            .read_to_end(&mut data)
            .map_err(|e| format!("`{name}`: {e}"))?;
        if data.len() as u64 > limit {
            return Err(format!(
                "`{name}` inflates beyond 100 times its compressed size"
            ));
        }
        let t = parse_npy(&data).map_err(|e| format!("`{name}`: {e}"))?;
        out.insert(key.to_string(), t);
    }
    if out.is_empty() {
        return Err("no .npy arrays in the archive".into());
    }
    Ok(out)
}

/// The value of `'key':` in an `.npy` header (a Python dict literal).
fn field<'h>(header: &'h str, key: &str) -> std::result::Result<&'h str, String> {
    let at = header
        .find(&format!("'{key}'"))
        .ok_or_else(|| format!("header has no `{key}`"))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')
        .ok_or("malformed header")?;
    Ok(rest.trim_start())
}

/// One `.npy` array: magic, version, header length, a dict of `descr`, `fortran_order`,
/// `shape`, then the data.
pub fn parse_npy(b: &[u8]) -> std::result::Result<HostTensor, String> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err("not an .npy array (bad magic)".into());
    }
    let (len, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10usize),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= b.len())
        .ok_or("truncated header")?;
    let header = std::str::from_utf8(&b[start..end]).map_err(|_| "header is not text")?;
    let descr = field(header, "descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or("malformed `descr`")?;
    if !field(header, "fortran_order")?.starts_with("False") {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape_text = field(header, "shape")?;
    let shape_text = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("malformed `shape`")?;
    let mut shape = Vec::new();
    for d in shape_text
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        shape.push(
            d.parse::<usize>()
                .map_err(|_| format!("bad dimension `{d}`"))?,
        );
    }
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape overflows")?;
    let data = &b[end..];
    let width = match descr {
        "<f4" | "=f4" => 4,
        "<f2" | "=f2" => 2,
        "<f8" | "=f8" => 8,
        other => return Err(format!("dtype `{other}` is not a little-endian float")),
    };
    if n.checked_mul(width) != Some(data.len()) {
        return Err(format!(
            "shape {shape:?} of {width}-byte values needs {} bytes, the array has {}",
            n.saturating_mul(width),
            data.len()
        ));
    }
    let values: Vec<f32> = match width {
        4 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        2 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
    };
    HostTensor::new(shape, values).map_err(|e| e.to_string())
}
