//! Conversions between burn tensors, host `ndarray` arrays and safetensors bytes.
//!
//! Every crate converts through here, so there is exactly one place that knows how f16/bf16
//! are widened, how shapes are checked and how files are written atomically.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use safetensors::{Dtype, SafeTensors};

use crate::error::{PrismError, Result};

/// A float tensor on the host: row-major `f32` data and its shape.
///
/// The common currency between file formats (safetensors, GGUF) and devices.
///
/// ```
/// use prism_core::HostTensor;
/// let t = HostTensor::new(vec![2, 3], (0..6).map(|v| v as f32).collect()).unwrap();
/// assert_eq!(t.transpose2().unwrap().data, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
/// assert!(HostTensor::new(vec![2, 2], vec![1.0]).is_err());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Builds a host tensor, checking that the data fills the shape exactly.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(PrismError::Shape(format!(
                "shape {shape:?} needs {n} values, got {}",
                data.len()
            )));
        }
        Ok(Self { shape, data })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no values.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Transposes a 2-D tensor (`[r, c]` → `[c, r]`).
    pub fn transpose2(&self) -> Result<Self> {
        let [r, c] = self.dims2()?;
        let mut out = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                out[j * r + i] = self.data[i * c + j];
            }
        }
        Ok(Self {
            shape: vec![c, r],
            data: out,
        })
    }

    /// The two dimensions of a 2-D tensor, or a shape error.
    pub fn dims2(&self) -> Result<[usize; 2]> {
        match self.shape.as_slice() {
            &[r, c] => Ok([r, c]),
            s => Err(PrismError::Shape(format!(
                "expected a 2-D tensor, got shape {s:?}"
            ))),
        }
    }

    /// Moves the data onto `device` as a burn tensor of rank `D`.
    pub fn to_burn<const D: usize>(&self, device: &Device) -> Result<Tensor<D>> {
        if self.shape.len() != D {
            return Err(PrismError::Shape(format!(
                "cannot make a rank-{D} tensor from shape {:?}",
                self.shape
            )));
        }
        Ok(Tensor::from_data(
            TensorData::new(self.data.clone(), self.shape.clone()),
            device,
        ))
    }

    /// Reads a burn tensor back to the host (as f32).
    pub fn from_burn<const D: usize>(t: Tensor<D>) -> Result<Self> {
        let shape = t.dims().to_vec();
        let data = t
            .try_into_data()
            .map_err(|e| PrismError::Readback(e.to_string()))?
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| PrismError::Readback(format!("{e:?}")))?;
        Self::new(shape, data)
    }

    /// Views the tensor as an `ndarray` array.
    pub fn into_ndarray(self) -> Result<ArrayD<f32>> {
        ArrayD::from_shape_vec(IxDyn(&self.shape), self.data)
            .map_err(|e| PrismError::Shape(e.to_string()))
    }

    /// Copies an `ndarray` array (any layout) into a host tensor.
    pub fn from_ndarray(a: &ArrayD<f32>) -> Self {
        Self {
            shape: a.shape().to_vec(),
            data: a.iter().copied().collect(),
        }
    }
}

/// Reads a burn tensor into a host `ndarray` array.
///
/// ```
/// use burn::tensor::Tensor;
/// let device = prism_core::device("cpu").unwrap();
/// let t = Tensor::<2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &device);
/// let a = prism_core::to_ndarray(t).unwrap();
/// assert_eq!(a[[1, 0]], 3.0);
/// ```
pub fn to_ndarray<const D: usize>(t: Tensor<D>) -> Result<ArrayD<f32>> {
    HostTensor::from_burn(t)?.into_ndarray()
}

/// Puts a host `ndarray` array on `device` as a burn tensor of rank `D`.
///
/// ```
/// let device = prism_core::device("cpu").unwrap();
/// let a = ndarray::ArrayD::from_shape_vec(vec![2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
/// let t = prism_core::from_ndarray::<2>(&a, &device).unwrap();
/// assert_eq!(t.dims(), [2, 2]);
/// assert!(prism_core::from_ndarray::<3>(&a, &device).is_err());
/// ```
pub fn from_ndarray<const D: usize>(a: &ArrayD<f32>, device: &Device) -> Result<Tensor<D>> {
    HostTensor::from_ndarray(a).to_burn(device)
}

/// Reads a burn tensor's values into a flat `Vec<f32>`.
///
/// ```
/// use burn::tensor::Tensor;
/// let device = prism_core::device("cpu").unwrap();
/// let v = prism_core::to_vec(Tensor::<1>::from_floats([1.5, 2.5], &device)).unwrap();
/// assert_eq!(v, vec![1.5, 2.5]);
/// ```
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    Ok(HostTensor::from_burn(t)?.data)
}

/// Indices (rows to select, features to keep) as an `Int` tensor on `device`.
///
/// ```
/// let device = prism_core::device("cpu").unwrap();
/// let t = burn::tensor::Tensor::<2>::from_floats([[1.0], [2.0], [3.0]], &device);
/// let picked = t.select(0, prism_core::index_tensor(&[2, 0], &device));
/// assert_eq!(prism_core::to_vec(picked).unwrap(), vec![3.0, 1.0]);
/// ```
pub fn index_tensor(indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let ids: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(ids, [indices.len()]), device)
}

/// Storage precision of a float tensor in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FloatDtype {
    /// 32-bit IEEE float.
    #[default]
    F32,
    /// 16-bit IEEE half.
    F16,
    /// bfloat16.
    BF16,
}

/// Decodes raw little-endian bytes of the given safetensors dtype into f32 values.
///
/// ```
/// let bytes = half::f16::from_f32(1.5).to_le_bytes();
/// let v = prism_core::decode_floats(safetensors::Dtype::F16, &bytes).unwrap();
/// assert_eq!(v, vec![1.5]);
/// ```
pub fn decode_floats(dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    let bad_len = |w: usize| {
        PrismError::Shape(format!(
            "{} bytes is not a whole number of {w}-byte values",
            bytes.len()
        ))
    };
    Ok(match dtype {
        Dtype::F32 => {
            if !bytes.len().is_multiple_of(4) {
                return Err(bad_len(4));
            }
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        }
        Dtype::F16 | Dtype::BF16 => {
            if !bytes.len().is_multiple_of(2) {
                return Err(bad_len(2));
            }
            let halves = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]));
            if dtype == Dtype::F16 {
                halves.map(|h| f16::from_bits(h).to_f32()).collect()
            } else {
                halves.map(|h| bf16::from_bits(h).to_f32()).collect()
            }
        }
        Dtype::F64 => {
            if !bytes.len().is_multiple_of(8) {
                return Err(bad_len(8));
            }
            bytes
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b) as f32
                })
                .collect()
        }
        other => {
            return Err(PrismError::Shape(format!(
                "dtype {other:?} is not a float type"
            )));
        }
    })
}

/// Encodes f32 values as little-endian bytes in the given storage precision.
pub fn encode_floats(values: &[f32], dtype: FloatDtype) -> Vec<u8> {
    match dtype {
        FloatDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        FloatDtype::F16 => values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
        FloatDtype::BF16 => values
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
            .collect(),
    }
}

/// Reads every float tensor of a safetensors file into host tensors (f32/f16/bf16/f64 → f32).
///
/// Errors name the file: a truncated header, offsets past the end of the file, or a non-float
/// tensor are all reported as [`PrismError::Safetensors`].
pub fn read_safetensors(path: &Path) -> Result<HashMap<String, HostTensor>> {
    let bytes = std::fs::read(path).map_err(|e| PrismError::io(path, e))?;
    let st = parse_safetensors(path, &bytes)?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        out.insert(name.clone(), view_to_host(path, &name, &view)?);
    }
    Ok(out)
}

/// Parses safetensors bytes, mapping the format's errors to a message that names `path`.
pub fn parse_safetensors<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| PrismError::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Converts one safetensors tensor view into a host tensor.
pub fn view_to_host(
    path: &Path,
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
) -> Result<HostTensor> {
    let data = decode_floats(view.dtype(), view.data()).map_err(|e| PrismError::Safetensors {
        path: path.to_path_buf(),
        message: format!("tensor `{name}`: {e}"),
    })?;
    HostTensor::new(view.shape().to_vec(), data).map_err(|e| PrismError::Safetensors {
        path: path.to_path_buf(),
        message: format!("tensor `{name}`: {e}"),
    })
}

/// A tensor already encoded as little-endian bytes, of any safetensors dtype.
#[derive(Clone, Debug)]
pub struct RawTensor {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Little-endian bytes.
    pub bytes: Vec<u8>,
}

impl RawTensor {
    /// A float host tensor encoded in `dtype`.
    pub fn floats(name: impl Into<String>, t: &HostTensor, dtype: FloatDtype) -> Self {
        let st = match dtype {
            FloatDtype::F32 => Dtype::F32,
            FloatDtype::F16 => Dtype::F16,
            FloatDtype::BF16 => Dtype::BF16,
        };
        Self {
            name: name.into(),
            dtype: st,
            shape: t.shape.clone(),
            bytes: encode_floats(&t.data, dtype),
        }
    }

    /// A `u32` tensor.
    pub fn u32s(name: impl Into<String>, shape: Vec<usize>, values: &[u32]) -> Self {
        Self {
            name: name.into(),
            dtype: Dtype::U32,
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// Serialises tensors into safetensors bytes (errors name `path`, the file they are meant for).
pub fn serialize_safetensors(
    path: &Path,
    tensors: &[RawTensor],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let err = |message: String| PrismError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    let views = tensors
        .iter()
        .map(|t| {
            safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| err(format!("tensor `{}`: {e}", t.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, metadata).map_err(|e| err(e.to_string()))
}

/// Writes named host tensors to a safetensors file, atomically (temp file, then rename).
///
/// ```
/// use prism_core::{HostTensor, FloatDtype};
/// let dir = std::env::temp_dir().join(format!("prism-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("t.safetensors");
/// let t = HostTensor::new(vec![2], vec![1.0, -2.0]).unwrap();
/// prism_core::write_safetensors(&path, &[("w".into(), t.clone())], FloatDtype::F32, None).unwrap();
/// assert_eq!(prism_core::read_safetensors(&path).unwrap()["w"], t);
/// ```
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, HostTensor)],
    dtype: FloatDtype,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let raw: Vec<RawTensor> = tensors
        .iter()
        .map(|(n, t)| RawTensor::floats(n.clone(), t, dtype))
        .collect();
    atomic_write(path, &serialize_safetensors(path, &raw, metadata)?)
}

/// Writes `bytes` to `path` so that a reader sees either the old file or the whole new one:
/// the data goes to a temporary file in the same directory, is flushed, then renamed.
///
/// ```
/// let path = std::env::temp_dir().join(format!("prism-atomic-{}.txt", std::process::id()));
/// prism_core::atomic_write(&path, b"hello").unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"hello");
/// ```
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let (dir, tmp) = temporary_path(path);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        PrismError::io(path, e)
    })?;
    // The rename is durable once the directory is: without this, a power cut right after a
    // checkpoint could bring back the previous one (a kill cannot; the page cache survives it).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Makes `to` a copy of `from` atomically — a hard link where the file system has them, else a
/// copy — through the same hidden temporary name as [`atomic_write`], so `to` is always either
/// its old content or all of `from`'s, and `from` is left in place. When `to` already is a hard
/// link of `from`, `rename` does nothing (POSIX: renaming one link of a file onto another link
/// of the same file succeeds and leaves both); the temporary link is then removed here, not
/// left behind.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let (a, b) = (dir.path().join("a"), dir.path().join("b"));
/// prism_core::atomic_write(&a, b"new").unwrap();
/// prism_core::atomic_write(&b, b"old").unwrap();
/// prism_core::atomic_link(&a, &b).unwrap();
/// assert_eq!(std::fs::read(&b).unwrap(), b"new");
/// assert!(a.exists());
/// // Again, now that `b` is a link of `a`: still only the two files.
/// prism_core::atomic_link(&a, &b).unwrap();
/// assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
/// ```
pub fn atomic_link(from: &Path, to: &Path) -> Result<()> {
    let (_, tmp) = temporary_path(to);
    let _ = std::fs::remove_file(&tmp);
    std::fs::hard_link(from, &tmp)
        .or_else(|_| std::fs::copy(from, &tmp).map(|_| ()))
        .and_then(|()| std::fs::rename(&tmp, to))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            PrismError::io(to, e)
        })?;
    // Gone after a rename that moved it; still there after one that did nothing (see above).
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

/// `path`'s directory and the hidden `.NAME.tmp-PID` file an atomic write of it goes through
/// (what [`remove_interrupted_writes`] recognises).
fn temporary_path(path: &Path) -> (&Path, std::path::PathBuf) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (
        dir,
        dir.join(format!(".{file_name}.tmp-{}", std::process::id())),
    )
}

/// Removes what interrupted [`atomic_write`]s left in `dir`: the hidden `.NAME.tmp-PID` files of
/// other processes (a job killed mid-write). Jobs that resume in a directory call it first,
/// holding the directory's [`crate::DirLock`], so no other process can be writing there: any
/// other PID's file is stale, whether or not that PID has since been reused (PIDs wrap at
/// 32768 on many systems, so "is the PID running" is no test). It returns how many it
/// removed. A missing `dir` is not an error.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::write(dir.path().join(".manifest.json.tmp-4000000"), b"half a manif").unwrap();
/// std::fs::write(dir.path().join("manifest.json"), b"{}").unwrap();
/// assert_eq!(prism_core::remove_interrupted_writes(dir.path()).unwrap(), 1);
/// assert!(dir.path().join("manifest.json").exists());
/// ```
pub fn remove_interrupted_writes(dir: &Path) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(PrismError::io(dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| PrismError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".tmp-"))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() {
            std::fs::remove_file(entry.path()).map_err(|e| PrismError::io(entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

impl std::fmt::Display for FloatDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FloatDtype::F32 => "f32",
            FloatDtype::F16 => "f16",
            FloatDtype::BF16 => "bf16",
        })
    }
}

impl std::str::FromStr for FloatDtype {
    type Err = PrismError;
    /// ```
    /// assert_eq!("bf16".parse::<prism_core::FloatDtype>().unwrap(), prism_core::FloatDtype::BF16);
    /// assert!("f8".parse::<prism_core::FloatDtype>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "float32" => Ok(FloatDtype::F32),
            "f16" | "float16" => Ok(FloatDtype::F16),
            "bf16" | "bfloat16" => Ok(FloatDtype::BF16),
            _ => Err(PrismError::InvalidInput(format!(
                "dtype `{s}`: expected f32, f16 or bf16"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_round_trips_within_their_precision() {
        let values = vec![0.0, 1.0, -2.5, 2.718_5, 1e-3, 65504.0];
        for (dtype, st, rel) in [
            (FloatDtype::F16, Dtype::F16, 1e-3),
            (FloatDtype::BF16, Dtype::BF16, 8e-3),
        ] {
            let back = decode_floats(st, &encode_floats(&values, dtype)).unwrap();
            for (a, b) in values.iter().zip(&back) {
                assert!(
                    (a - b).abs() <= rel * a.abs(),
                    "{dtype:?}: {a} came back as {b}"
                );
            }
        }
        // Exactly representable values are exact.
        assert_eq!(
            decode_floats(Dtype::BF16, &encode_floats(&[1.5, -0.25], FloatDtype::BF16)).unwrap(),
            vec![1.5, -0.25]
        );
        assert!(decode_floats(Dtype::F32, &[0, 0, 0]).is_err());
        assert!(decode_floats(Dtype::I64, &[0; 8]).is_err());
    }

    #[test]
    fn safetensors_files_round_trip_in_every_dtype() {
        let dir = std::env::temp_dir().join(format!("prism-convert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = HostTensor::new(vec![2, 3], vec![1.0, 2.0, -3.0, 0.5, 0.25, 8.0]).unwrap();
        for dtype in [FloatDtype::F32, FloatDtype::F16, FloatDtype::BF16] {
            let p = dir.join(format!("{dtype:?}.safetensors"));
            write_safetensors(&p, &[("w".into(), t.clone())], dtype, None).unwrap();
            assert_eq!(read_safetensors(&p).unwrap()["w"], t, "{dtype:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn burn_and_ndarray_conversions_agree() {
        let device = crate::device("cpu").unwrap();
        let a = ndarray::Array3::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 12 + j * 4 + k) as f32)
            .into_dyn();
        let t = from_ndarray::<3>(&a, &device).unwrap();
        assert_eq!(t.dims(), [2, 3, 4]);
        assert_eq!(to_ndarray(t).unwrap(), a);
        // A non-contiguous view converts by logical order.
        let v = a.t().to_owned();
        let back = to_ndarray(from_ndarray::<3>(&v, &device).unwrap()).unwrap();
        assert_eq!(back, v);
    }
}
