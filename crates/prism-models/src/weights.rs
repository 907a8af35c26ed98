//! Where weights come from: a directory of `*.safetensors` files, or a GGUF file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prism_core::{HostTensor, PrismError, Result, parse_safetensors, view_to_host};

use crate::gguf::GgufFile;

/// A named store of float tensors (dequantised to f32 on read).
pub trait WeightSource {
    /// The file or directory the weights come from (for error messages).
    fn path(&self) -> &Path;
    /// Reads a tensor by name.
    fn tensor(&self, name: &str) -> Result<HostTensor>;
    /// True when the store has a tensor of this name.
    fn contains(&self, name: &str) -> bool;

    /// Reads a tensor and checks its shape.
    fn shaped(&self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let t = self.tensor(name)?;
        if t.shape != shape {
            return Err(PrismError::Weight {
                path: self.path().to_path_buf(),
                name: name.into(),
                message: format!("expected shape {shape:?}, found {:?}", t.shape),
            });
        }
        Ok(t)
    }
}

impl WeightSource for GgufFile {
    fn path(&self) -> &Path {
        GgufFile::path(self)
    }
    fn tensor(&self, name: &str) -> Result<HostTensor> {
        GgufFile::tensor(self, name)
    }
    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// The `*.safetensors` files of an HF model directory (one file or many shards), memory-mapped.
pub struct SafetensorsDir {
    dir: PathBuf,
    files: Vec<(PathBuf, memmap2::Mmap)>,
    index: BTreeMap<String, usize>,
}

impl SafetensorsDir {
    /// Maps every `*.safetensors` file in `dir` and indexes their tensor names.
    ///
    /// The files are memory-mapped: they must not be modified or truncated while this value
    /// lives.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut paths = Self::weight_files(dir)?;
        paths.sort();
        if paths.is_empty() {
            return Err(PrismError::Config {
                path: dir.to_path_buf(),
                message: "no *.safetensors files in the model directory".into(),
            });
        }
        let mut files = Vec::new();
        let mut index = BTreeMap::new();
        for (i, p) in paths.into_iter().enumerate() {
            let f = std::fs::File::open(&p).map_err(|e| PrismError::io(&p, e))?;
            // SAFETY: `Mmap::map` is unsafe because another process may change or truncate the
            // file while it is mapped, changing bytes behind a `&[u8]` (undefined behaviour, or
            // SIGBUS on truncation). Nothing here can prevent that; like the safetensors and
            // candle loaders, Prism requires that model files are not modified while loaded
            // (`SafetensorsDir::open` documents it). Offsets are bounds-checked by the parser.
            let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| PrismError::io(&p, e))?;
            let st = parse_safetensors(&p, &map)?;
            for name in st.names() {
                index.insert(name.to_string(), i);
            }
            files.push((p, map));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            index,
        })
    }
}

impl SafetensorsDir {
    /// The weight files: the shards `model.safetensors.index.json` names when there is one,
    /// else `model.safetensors` when there is one, else every `*.safetensors` (a directory
    /// holding a whole hub snapshot may also have consolidated copies or adapters).
    fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
        let index = dir.join("model.safetensors.index.json");
        if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|e| PrismError::io(&index, e))?;
            let bad = |message: String| PrismError::Config {
                path: index.clone(),
                message,
            };
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| bad("no `weight_map` object".into()))?;
            let mut files: Vec<PathBuf> = Vec::new();
            for v in map.values() {
                let name = v
                    .as_str()
                    .filter(|n| !n.contains(['/', '\\']) && n.ends_with(".safetensors"))
                    .ok_or_else(|| bad(format!("`{v}` is not a shard file name")))?;
                let p = dir.join(name);
                if !files.contains(&p) {
                    files.push(p);
                }
            }
            return Ok(files);
        }
        let single = dir.join("model.safetensors");
        if single.exists() {
            return Ok(vec![single]);
        }
        Ok(std::fs::read_dir(dir)
            .map_err(|e| PrismError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect())
    }
}

impl WeightSource for SafetensorsDir {
    fn path(&self) -> &Path {
        &self.dir
    }
    fn tensor(&self, name: &str) -> Result<HostTensor> {
        let i = *self.index.get(name).ok_or_else(|| PrismError::Weight {
            path: self.dir.clone(),
            name: name.into(),
            message: "not found in any *.safetensors file".into(),
        })?;
        let (p, map) = &self.files[i];
        let st = parse_safetensors(p, map)?;
        let view = st.tensor(name).map_err(|e| PrismError::Safetensors {
            path: p.clone(),
            message: e.to_string(),
        })?;
        view_to_host(p, name, &view)
    }
    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }
}
