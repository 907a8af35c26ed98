//! Reading GGUF (version 2 and 3) files: metadata, the tensor table, and dequantised tensors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prism_core::{HostTensor, PrismError, Result};

use crate::quant::{GgmlType, dequantize};

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    /// Any unsigned integer type.
    U64(u64),
    /// Any signed integer type.
    I64(i64),
    /// f32 or f64.
    F64(f64),
    /// bool.
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// Array of values.
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// As an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U64(v) => Some(v),
            GgufValue::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    /// As a float, if it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F64(v) => Some(v),
            GgufValue::U64(v) => Some(v as f64),
            GgufValue::I64(v) => Some(v as f64),
            _ => None,
        }
    }
    /// As a string slice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::Str(s) => Some(s),
            _ => None,
        }
    }
    /// As a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }
    /// As an array.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where a tensor's data lies in the file, and how it is stored.
#[derive(Clone, Debug)]
pub struct GgufTensorInfo {
    /// Dimensions outermost first (GGUF stores them innermost first; already reversed here).
    pub shape: Vec<usize>,
    /// The ggml type id as written in the file.
    pub type_id: u32,
    /// Byte offset of the data from the start of the file.
    pub offset: usize,
    /// Number of bytes of data.
    pub n_bytes: usize,
}

/// A parsed GGUF file: metadata, tensor table, and the mapped bytes.
pub struct GgufFile {
    path: PathBuf,
    bytes: memmap2::Mmap,
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata key → value.
    pub metadata: BTreeMap<String, GgufValue>,
    /// Tensor name → location.
    pub tensors: BTreeMap<String, GgufTensorInfo>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

struct Cursor<'a> {
    path: &'a Path,
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, message: impl Into<String>) -> PrismError {
        PrismError::Gguf {
            path: self.path.to_path_buf(),
            message: message.into(),
        }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| {
                self.err(format!(
                    "file ends while reading {what} at byte {} (needs {n} more bytes, file has {})",
                    self.pos,
                    self.b.len()
                ))
            })?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        let s = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    /// A count that must be plausible for the bytes left (each item needs ≥ `min_item` bytes).
    fn count(&mut self, what: &str, min_item: usize) -> Result<usize> {
        let n = self.u64(what)?;
        let left = (self.b.len() - self.pos) as u64;
        if n.saturating_mul(min_item as u64) > left {
            return Err(self.err(format!(
                "{what} = {n} is impossible: only {left} bytes remain"
            )));
        }
        Ok(n as usize)
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(what, 1)?;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| self.err(format!("{what} is not valid UTF-8")))
    }
    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<GgufValue> {
        let what = &format!("value of `{key}`");
        Ok(match ty {
            0 => GgufValue::U64(self.take(1, what)?[0] as u64),
            1 => GgufValue::I64(self.take(1, what)?[0] as i8 as i64),
            2 => {
                let s = self.take(2, what)?;
                GgufValue::U64(u16::from_le_bytes([s[0], s[1]]) as u64)
            }
            3 => {
                let s = self.take(2, what)?;
                GgufValue::I64(i16::from_le_bytes([s[0], s[1]]) as i64)
            }
            4 => GgufValue::U64(self.u32(what)? as u64),
            5 => GgufValue::I64(self.u32(what)? as i32 as i64),
            6 => GgufValue::F64(f32::from_bits(self.u32(what)?) as f64),
            7 => GgufValue::Bool(self.take(1, what)?[0] != 0),
            8 => GgufValue::Str(self.string(what)?),
            9 => {
                if depth > 4 {
                    return Err(self.err(format!("`{key}`: arrays nested too deeply")));
                }
                let elem = self.u32(what)?;
                let n = self.count(&format!("length of array `{key}`"), 1)?;
                let mut v = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    v.push(self.value(elem, key, depth + 1)?);
                }
                GgufValue::Array(v)
            }
            10 => GgufValue::U64(self.u64(what)?),
            11 => GgufValue::I64(self.u64(what)? as i64),
            12 => GgufValue::F64(f64::from_bits(self.u64(what)?)),
            other => return Err(self.err(format!("`{key}` has unknown value type {other}"))),
        })
    }
}

impl GgufFile {
    /// Opens and parses a GGUF file (the tensor data stays memory-mapped until asked for).
    ///
    /// Truncated files, impossible counts and offsets, and tensor types Prism cannot read are
    /// reported as [`PrismError::Gguf`] naming the file.
    ///
    /// The file is memory-mapped: it must not be modified or truncated while this value lives.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| PrismError::io(path, e))?;
        // SAFETY: `Mmap::map` is unsafe because another process may change or truncate the
        // file while it is mapped, changing bytes behind a `&[u8]` (undefined behaviour, or
        // SIGBUS on truncation). Nothing here can prevent that; Prism requires that a GGUF file
        // is not modified while open (`GgufFile::open` documents it). Every offset read from
        // the file is checked against its size below.
        let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| PrismError::io(path, e))?;
        let mut c = Cursor {
            path,
            b: &bytes,
            pos: 0,
        };
        if c.take(4, "magic")? != b"GGUF" {
            return Err(c.err("not a GGUF file (magic bytes are not `GGUF`)"));
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(c.err(format!(
                "GGUF version {version} is not supported (2 and 3 are)"
            )));
        }
        let n_tensors = c.count("tensor count", 8)?;
        let n_kv = c.count("metadata count", 8)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("metadata key")?;
            let ty = c.u32("metadata type")?;
            let v = c.value(ty, &key, 0)?;
            metadata.insert(key, v);
        }
        let mut infos = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = c.string("tensor name")?;
            let n_dims = c.u32("tensor rank")? as usize;
            if n_dims > 8 {
                return Err(c.err(format!("tensor `{name}` claims {n_dims} dimensions")));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                dims.push(c.u64("tensor dimension")? as usize);
            }
            dims.reverse();
            let type_id = c.u32("tensor type")?;
            let offset = c.u64("tensor offset")? as usize;
            infos.push((name, dims, type_id, offset));
        }
        let alignment = metadata
            .get("general.alignment")
            .and_then(|v| v.as_u64())
            .unwrap_or(32) as usize;
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(c.err(format!(
                "general.alignment = {alignment} is not a power of two"
            )));
        }
        let data_start = c.pos.div_ceil(alignment) * alignment;
        let mut tensors = BTreeMap::new();
        for (name, shape, type_id, offset) in infos {
            let n = shape
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .ok_or_else(|| {
                    c.err(format!(
                        "tensor `{name}` claims shape {shape:?}: more elements than memory holds"
                    ))
                })?;
            let n_bytes = match GgmlType::from_id(type_id) {
                Some(ty) => {
                    let (block, bytes_per) = ty.block_layout();
                    if !n.is_multiple_of(block) {
                        return Err(c.err(format!(
                            "tensor `{name}` has {n} elements, not a multiple of its block size {block}"
                        )));
                    }
                    (n / block).checked_mul(bytes_per).ok_or_else(|| {
                        c.err(format!(
                            "tensor `{name}` claims shape {shape:?}: more bytes than memory holds"
                        ))
                    })?
                }
                None => 0, // reported when the tensor is read
            };
            let start = data_start.checked_add(offset);
            let end = start.and_then(|s| s.checked_add(n_bytes));
            match (start, end) {
                (Some(s), Some(e)) if e <= bytes.len() => {
                    tensors.insert(
                        name,
                        GgufTensorInfo {
                            shape,
                            type_id,
                            offset: s,
                            n_bytes,
                        },
                    );
                }
                _ => {
                    return Err(c.err(format!(
                        "tensor `{name}` lies past the end of the file (data at {}+{offset}, \
                         {n_bytes} bytes; the file has {}) — is the file truncated?",
                        data_start,
                        bytes.len()
                    )));
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            version,
            metadata,
            tensors,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The vocabulary size: the token embedding's rows, or `{arch}.vocab_size`.
    pub(crate) fn vocab_size(&self, arch: &str) -> Result<usize> {
        match self.tensors.get("token_embd.weight") {
            Some(info) => Ok(info.shape.first().copied().unwrap_or(0)),
            None => self.get_usize(&format!("{arch}.vocab_size")),
        }
    }

    /// A token id from the tokenizer metadata (`tokenizer.ggml.bos_token_id`, …), if present.
    pub(crate) fn token_id(&self, key: &str) -> Option<u32> {
        self.metadata
            .get(key)
            .and_then(|v| v.as_u64())
            .map(|v| v as u32)
    }

    /// Reads and dequantises one tensor to f32.
    pub fn tensor(&self, name: &str) -> Result<HostTensor> {
        let info = self.tensors.get(name).ok_or_else(|| PrismError::Weight {
            path: self.path.clone(),
            name: name.into(),
            message: "not in the file".into(),
        })?;
        let ty = GgmlType::from_id(info.type_id).ok_or_else(|| PrismError::Gguf {
            path: self.path.clone(),
            message: format!(
                "tensor `{name}` has ggml type {}, which Prism cannot read \
                 (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)",
                info.type_id
            ),
        })?;
        let n = info.shape.iter().product();
        let data = dequantize(ty, &self.bytes[info.offset..info.offset + info.n_bytes], n);
        HostTensor::new(info.shape.clone(), data)
    }

    /// A metadata value, or a config error naming the missing key.
    pub fn get(&self, key: &str) -> Result<&GgufValue> {
        self.metadata.get(key).ok_or_else(|| PrismError::Config {
            path: self.path.clone(),
            message: format!("metadata key `{key}` is missing"),
        })
    }

    /// An integer metadata value.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        self.get(key)?
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| PrismError::Config {
                path: self.path.clone(),
                message: format!("metadata key `{key}` is not an unsigned integer"),
            })
    }

    /// A numeric metadata value as f64.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        self.get(key)?.as_f64().ok_or_else(|| PrismError::Config {
            path: self.path.clone(),
            message: format!("metadata key `{key}` is not a number"),
        })
    }

    /// An integer metadata value where present (an error when it is not one).
    pub(crate) fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.metadata.contains_key(key) {
            true => self.get_usize(key).map(Some),
            false => Ok(None),
        }
    }

    /// A numeric metadata value where present (an error when it is not one).
    pub(crate) fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.metadata.contains_key(key) {
            true => self.get_f64(key).map(Some),
            false => Ok(None),
        }
    }

    /// A string metadata value where present (an error when it is not one).
    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.metadata
            .get(key)
            .map(|v| {
                v.as_str().ok_or_else(|| PrismError::Config {
                    path: self.path.clone(),
                    message: format!("metadata key `{key}` is not a string"),
                })
            })
            .transpose()
    }

    /// An array of strings (e.g. the tokenizer's tokens).
    pub fn get_strings(&self, key: &str) -> Result<Vec<&str>> {
        let bad = || PrismError::Config {
            path: self.path.clone(),
            message: format!("metadata key `{key}` is not an array of strings"),
        };
        self.get(key)?
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|v| v.as_str().ok_or_else(bad))
            .collect()
    }
}
