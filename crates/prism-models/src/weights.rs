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
            let shards = shards_of_index(&text).map_err(|message| PrismError::Config {
                path: index.clone(),
                message,
            })?;
            return Ok(shards.iter().map(|s| dir.join(s)).collect());
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

/// The shard files a `model.safetensors.index.json` names (its `weight_map` values), each once,
/// sorted; each must be a plain `*.safetensors` file name beside the index.
///
/// ```
/// let index = r#"{"weight_map": {"a": "model-2.safetensors", "b": "model-1.safetensors",
///                                "c": "model-2.safetensors"}}"#;
/// assert_eq!(prism_models::shards_of_index(index).unwrap(), ["model-1.safetensors", "model-2.safetensors"]);
/// assert!(prism_models::shards_of_index(r#"{"weight_map": {"a": "../x.safetensors"}}"#).is_err());
/// ```
pub fn shards_of_index(text: &str) -> std::result::Result<Vec<String>, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or("no `weight_map` object")?;
    let mut shards: Vec<String> = Vec::new();
    for file in map.values() {
        let f = file
            .as_str()
            .filter(|n| {
                !n.contains(['/', '\\']) && n.ends_with(".safetensors") && !n.starts_with('.')
            })
            .ok_or_else(|| format!("`{file}` is not a shard file name"))?;
        if !shards.iter().any(|s| s == f) {
            shards.push(f.to_string());
        }
    }
    if shards.is_empty() {
        return Err("`weight_map` is empty".into());
    }
    shards.sort();
    Ok(shards)
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
