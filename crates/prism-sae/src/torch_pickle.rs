//! Reading PyTorch `torch.save` files (a zip archive holding `data.pkl` and one file per
//! storage) without Python: a pickle reader for the opcodes state dicts use, and tensor
//! reconstruction from `torch._utils._rebuild_tensor_v2` calls.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use prism_core::{PrismError, Result};

/// A pickled value, as far as state dicts need.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// `module.name`.
    Global(String, String),
    /// A call the reader does not evaluate, kept for inspection.
    Call(Box<Value>, Box<Value>),
    /// A persistent id (torch: a storage reference).
    Persistent(Box<Value>),
    Tensor(TensorRef),
    Mark,
}

/// Where a tensor's values live.
#[derive(Clone, Debug, PartialEq)]
struct TensorRef {
    storage_type: String,
    key: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// A tensor read from a `.pt` file, converted to f32 (integers included, e.g. TopK's `k`).
#[derive(Clone, Debug, PartialEq)]
pub struct PtTensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// Reads the tensors of a `torch.save`d state dict (`{name: tensor}`, nested dicts flattened
/// with dots).
pub fn read_state_dict(path: &Path) -> Result<HashMap<String, PtTensor>> {
    let bad = |message: String| {
        PrismError::InvalidInput(format!(
            "{}: not a readable state dict: {message}",
            path.display()
        ))
    };
    let file = std::fs::File::open(path).map_err(|e| PrismError::io(path, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| {
        bad(format!(
            "not a PyTorch zip archive ({e}); files from torch < 1.6 (legacy format) are not supported"
        ))
    })?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let pkl = names
        .iter()
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| bad("no data.pkl in the archive".into()))?
        .clone();
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let mut read = |name: &str| -> Result<Vec<u8>> {
        let mut f = zip
            .by_name(name)
            .map_err(|e| bad(format!("archive entry `{name}`: {e}")))?;
        let mut out = Vec::new();
        f.read_to_end(&mut out)
            .map_err(|e| PrismError::io(path, e))?;
        Ok(out)
    };
    let root = Unpickler::new(&read(&pkl)?)
        .run()
        .map_err(|e| bad(format!("data.pkl: {e}")))?;
    let mut flat = Vec::new();
    flatten("", root, &mut flat);
    let mut out = HashMap::new();
    for (name, t) in flat {
        let bytes = read(&format!("{prefix}data/{}", t.key))?;
        let data = gather(&t, &bytes).map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        out.insert(
            name,
            PtTensor {
                shape: t.shape,
                data,
            },
        );
    }
    if out.is_empty() {
        return Err(bad("the file holds no tensors".into()));
    }
    Ok(out)
}

fn flatten(prefix: &str, v: Value, out: &mut Vec<(String, TensorRef)>) {
    match v {
        Value::Dict(items) => {
            for (k, v) in items {
                let key = match k {
                    Value::Str(s) => s,
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                let name = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, v, out);
            }
        }
        Value::Tensor(t) => out.push((prefix.to_string(), t)),
        _ => {}
    }
}

/// The tensor's values from its storage bytes, following offset and strides.
fn gather(t: &TensorRef, bytes: &[u8]) -> std::result::Result<Vec<f32>, String> {
    let (size, decode): (usize, fn(&[u8]) -> f32) = match t.storage_type.as_str() {
        "FloatStorage" => (4, |b| f32::from_le_bytes(b.try_into().unwrap())),
        "DoubleStorage" => (8, |b| f64::from_le_bytes(b.try_into().unwrap()) as f32),
        "HalfStorage" => (2, |b| {
            half::f16::from_le_bytes(b.try_into().unwrap()).to_f32()
        }),
        "BFloat16Storage" => (2, |b| {
            half::bf16::from_le_bytes(b.try_into().unwrap()).to_f32()
        }),
        "LongStorage" => (8, |b| i64::from_le_bytes(b.try_into().unwrap()) as f32),
        "IntStorage" => (4, |b| i32::from_le_bytes(b.try_into().unwrap()) as f32),
        other => return Err(format!("storage type {other} is not supported")),
    };
    // The furthest element the view reaches must lie inside the storage (checked before any
    // allocation, so a corrupt shape cannot ask for terabytes).
    let too_big = || {
        format!(
            "shape {:?} does not fit a storage of {} bytes",
            t.shape,
            bytes.len()
        )
    };
    let mut last = t.offset;
    for (&n, &s) in t.shape.iter().zip(&t.stride) {
        if n == 0 {
            return Ok(Vec::new());
        }
        last = (n - 1)
            .checked_mul(s)
            .and_then(|x| x.checked_add(last))
            .ok_or_else(too_big)?;
    }
    if t.shape.len() != t.stride.len() || last >= bytes.len() / size {
        return Err(too_big());
    }
    let count: usize = t.shape.iter().product();
    let mut out = Vec::with_capacity(count);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..count {
        let at = t.offset
            + index
                .iter()
                .zip(&t.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        let b = bytes
            .get(at * size..(at + 1) * size)
            .ok_or_else(|| format!("storage of {} bytes is too short", bytes.len()))?;
        out.push(decode(b));
        for dim in (0..index.len()).rev() {
            index[dim] += 1;
            if index[dim] < t.shape[dim] {
                break;
            }
            index[dim] = 0;
        }
    }
    Ok(out)
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<usize, Value>,
}

type PResult<T> = std::result::Result<T, String>;

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> PResult<&'a [u8]> {
        let s = self
            .data
            .get(self.pos..self.pos + n)
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> PResult<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> PResult<usize> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()) as usize)
    }
    fn u32(&mut self) -> PResult<usize> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()) as usize)
    }
    fn line(&mut self) -> PResult<String> {
        let start = self.pos;
        while self.u8()? != b'\n' {}
        Ok(String::from_utf8_lossy(&self.data[start..self.pos - 1]).into_owned())
    }
    fn pop(&mut self) -> PResult<Value> {
        self.stack
            .pop()
            .ok_or_else(|| "stack underflow".to_string())
    }
    fn pop_mark(&mut self) -> PResult<Vec<Value>> {
        let at = self
            .stack
            .iter()
            .rposition(|v| *v == Value::Mark)
            .ok_or("MARK not found")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }
    fn top(&mut self) -> PResult<&mut Value> {
        self.stack
            .last_mut()
            .ok_or_else(|| "empty stack".to_string())
    }
    fn memoize(&mut self, key: usize) -> PResult<()> {
        let v = self.stack.last().ok_or("empty stack")?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn run(mut self) -> PResult<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return self.pop(),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()? as i64;
                    self.stack.push(Value::Int(v))
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.stack.push(Value::Int(v))
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().unwrap()) as i64;
                    self.stack.push(Value::Int(v))
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate().take(8) {
                        v |= (x as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v))
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.stack.push(Value::Float(v))
                }
                b'X' => {
                    let n = self.u32()?;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.stack.push(Value::Str(s))
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.stack.push(Value::Str(s))
                }
                b'B' => {
                    let n = self.u32()?;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b))
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b))
                }
                b'q' => {
                    let k = self.u8()? as usize;
                    self.memoize(k)?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memoize(k)?
                }
                0x94 => {
                    let k = self.memo.len();
                    self.memoize(k)?
                }
                b'h' | b'j' => {
                    let k = if op == b'h' {
                        self.u8()? as usize
                    } else {
                        self.u32()?
                    };
                    let v = self.memo.get(&k).ok_or(format!("memo {k} unset"))?.clone();
                    self.stack.push(v)
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err("STACK_GLOBAL needs two strings".into()),
                    }
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items))
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = items
                        .chunks(2)
                        .filter(|c| c.len() == 2)
                        .map(|c| (c[0].clone(), c[1].clone()))
                        .collect();
                    self.stack.push(Value::Dict(pairs))
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(Value::Persistent(Box::new(pid)))
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = reduce(callable, args)?;
                    self.stack.push(v)
                }
                b'b' => {
                    // BUILD: object state (e.g. an OrderedDict's `_metadata`); not needed.
                    self.pop()?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(items) => items.push((k, v)),
                        _ => return Err("SETITEM on a non-dict".into()),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::Dict(d) => d.extend(
                            items
                                .chunks(2)
                                .filter(|c| c.len() == 2)
                                .map(|c| (c[0].clone(), c[1].clone())),
                        ),
                        _ => return Err("SETITEMS on a non-dict".into()),
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.push(v),
                        _ => return Err("APPEND on a non-list".into()),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => return Err("APPENDS on a non-list".into()),
                    }
                }
                other => {
                    return Err(format!(
                        "pickle opcode 0x{other:02x} at byte {} is not supported",
                        self.pos - 1
                    ));
                }
            }
        }
    }
}

fn usizes(v: &Value) -> PResult<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(x) if *x >= 0 => Ok(*x as usize),
                _ => Err("expected a non-negative integer".to_string()),
            })
            .collect(),
        _ => Err("expected a tuple of integers".into()),
    }
}

/// Evaluates the calls state dicts contain: ordered dicts and tensor rebuilds.
fn reduce(callable: Value, args: Value) -> PResult<Value> {
    let Value::Global(module, name) = &callable else {
        return Ok(Value::Call(Box::new(callable), Box::new(args)));
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") | ("builtins", "dict") => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let Value::Tuple(a) = args else {
                return Err("tensor rebuild without arguments".into());
            };
            let [
                Value::Persistent(pid),
                Value::Int(offset),
                shape,
                stride,
                ..,
            ] = a.as_slice()
            else {
                return Err("unexpected tensor rebuild arguments".into());
            };
            let Value::Tuple(p) = pid.as_ref() else {
                return Err("unexpected storage reference".into());
            };
            let (storage_type, key) = match p.as_slice() {
                [Value::Str(_), Value::Global(_, t), Value::Str(key), ..] => {
                    (t.clone(), key.clone())
                }
                _ => return Err("unexpected storage reference".into()),
            };
            Ok(Value::Tensor(TensorRef {
                storage_type,
                key,
                offset: *offset as usize,
                shape: usizes(shape)?,
                stride: usizes(stride)?,
            }))
        }
        _ => Ok(Value::Call(Box::new(callable), Box::new(args))),
    }
}
