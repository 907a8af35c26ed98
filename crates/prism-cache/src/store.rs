//! The sharded on-disk activation store: safetensors shards plus a JSON manifest.
//!
//! Layout of a cache directory:
//! - `manifest.json`: model, hook points and widths, dtype, window settings, token count,
//!   corpus and tokenizer provenance, and one entry per shard with its sha256;
//! - `shard-00000.safetensors`, …: per hook point a `[rows, d]` tensor named after the hook,
//!   `windows` (`u32 [n_windows, ctx]`, the token windows) and `origin` (`u32 [rows]`,
//!   `window · ctx + position` of each row within the shard).
//!
//! Every file is written atomically and the manifest only lists shards that are complete, so a
//! killed harvest resumes exactly where it stopped.

use std::path::{Path, PathBuf};

use prism_core::{
    FloatDtype, HookPoint, HostTensor, PrismError, RawTensor, Result, atomic_write,
    serialize_safetensors,
};
use prism_models::Model;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::harvest::Harvester;
use crate::permutation::Permutation;
use crate::shard::ShardFile;
use crate::source::{Corpus, SkipCounts};
use crate::windows::{WindowConfig, windows};

/// The manifest format name.
pub const FORMAT: &str = "prism-activation-cache";

/// One hook point in a cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookInfo {
    /// TransformerLens name.
    pub name: String,
    /// Vector width.
    pub d: usize,
}

/// One shard file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// File name inside the cache directory.
    pub file: String,
    /// Activation rows in the shard.
    pub rows: usize,
    /// Token windows in the shard.
    pub windows: usize,
    /// sha256 of the file, hex.
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// Where the model came from, and its shape.
    pub model: serde_json::Value,
    /// Hook points, in tensor order.
    pub hooks: Vec<HookInfo>,
    /// Storage dtype of the activations (`f32`, `f16`, `bf16`).
    pub dtype: String,
    /// What the dtype costs in precision.
    pub dtype_note: String,
    /// How windows were cut.
    pub window: WindowConfig,
    /// Whether BOS rows were dropped.
    pub drop_bos: bool,
    /// Windows per forward pass.
    pub windows_per_forward: usize,
    /// Windows per shard.
    pub windows_per_shard: usize,
    /// Rows asked for.
    pub target_tokens: u64,
    /// Rows stored.
    pub token_count: u64,
    /// Windows consumed from the corpus so far (the resume point).
    pub windows_done: u64,
    /// Corpus provenance.
    pub corpus: serde_json::Value,
    /// Tokenizer provenance.
    pub tokenizer: serde_json::Value,
    /// Complete shards, in order.
    pub shards: Vec<ShardInfo>,
    /// True when the harvest reached its target (or the corpus ended).
    pub complete: bool,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let p = dir.join("manifest.json");
        let text = std::fs::read_to_string(&p).map_err(|e| PrismError::io(&p, e))?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| PrismError::Cache {
            path: p.clone(),
            message: format!("invalid manifest: {e}"),
        })?;
        if m.format != FORMAT {
            return Err(PrismError::Cache {
                path: p,
                message: format!("format `{}` is not {FORMAT}", m.format),
            });
        }
        Ok(m)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| PrismError::InvalidInput(e.to_string()))?;
        atomic_write(&dir.join("manifest.json"), text.as_bytes())
    }

    /// The storage dtype.
    pub fn float_dtype(&self) -> Result<FloatDtype> {
        self.dtype.parse()
    }
}

/// What to harvest and how to store it.
#[derive(Clone, Debug)]
pub struct CacheOptions {
    /// Hook points to capture (all in one forward pass).
    pub hooks: Vec<HookPoint>,
    /// Window settings.
    pub window: WindowConfig,
    /// Drop rows whose token is BOS.
    pub drop_bos: bool,
    /// Storage dtype.
    pub dtype: FloatDtype,
    /// Rows to store (the last shard is cut to hit it exactly).
    pub target_tokens: u64,
    /// Windows per shard.
    pub windows_per_shard: usize,
    /// Windows per forward pass.
    pub windows_per_forward: usize,
    /// Stop after writing this many shards in this run (to test resuming; `None` runs to the end).
    pub stop_after_shards: Option<usize>,
}

/// Progress of a harvest, for progress bars.
#[derive(Clone, Copy, Debug)]
pub struct CacheProgress {
    /// Rows stored so far.
    pub tokens: u64,
    /// Rows asked for.
    pub target: u64,
}

fn dtype_note(d: FloatDtype) -> &'static str {
    match d {
        FloatDtype::F32 => "f32: exact copies of the model's f32 activations",
        FloatDtype::F16 => {
            "f16: relative rounding error ≤ 2^-11 (4.9e-4); values beyond ±65504 become ±inf"
        }
        FloatDtype::BF16 => {
            "bf16: relative rounding error ≤ 2^-8 (3.9e-3); the f32 exponent range is kept"
        }
    }
}

/// Harvests activations of `corpus` from `model` into a cache directory, resuming a partial
/// cache left by an interrupted run with the same settings.
pub fn build_cache(
    model: &Model,
    corpus: &Corpus,
    options: &CacheOptions,
    out: &Path,
    progress: &mut dyn FnMut(CacheProgress),
) -> Result<Manifest> {
    // One writer at a time: a second harvest into `out` stops here ([`PrismError::Busy`]).
    let _lock = prism_core::DirLock::acquire(out)?;
    prism_core::remove_interrupted_writes(out)?;
    let harvester = Harvester::new(model, options.hooks.clone(), options.drop_bos)?;
    let hooks: Vec<HookInfo> = options
        .hooks
        .iter()
        .zip(harvester.widths())
        .map(|(h, d)| HookInfo {
            name: h.to_string(),
            d,
        })
        .collect();
    let cfg = model.config();
    let fresh = Manifest {
        format: FORMAT.into(),
        version: 1,
        model: serde_json::json!({
            "source": model.source.display().to_string(),
            "architecture": format!("{:?}", cfg.architecture),
            "n_layers": cfg.n_layers,
            "d_model": cfg.d_model,
            "vocab_size": cfg.vocab_size,
        }),
        hooks,
        dtype: options.dtype.to_string(),
        dtype_note: dtype_note(options.dtype).into(),
        window: options.window.clone(),
        drop_bos: options.drop_bos,
        windows_per_forward: options.windows_per_forward.max(1),
        windows_per_shard: options.windows_per_shard.max(1),
        target_tokens: options.target_tokens,
        token_count: 0,
        windows_done: 0,
        corpus: serde_json::json!({
            "path": std::fs::canonicalize(&corpus.root)
                .unwrap_or_else(|_| corpus.root.clone())
                .display()
                .to_string(),
            "files": corpus.files.len(),
            "text_field": corpus.text_field,
            "skipped": SkipCounts::default(),
        }),
        tokenizer: serde_json::json!({
            "vocab_size": model.tokenizer.vocab_size(),
            "bos_token_id": model.tokenizer.bos_token_id,
            "eos_token_id": model.tokenizer.eos_token_id,
            "source": model.source.display().to_string(),
        }),
        shards: Vec::new(),
        complete: false,
    };
    let mut manifest = if out.join("manifest.json").exists() {
        let old = Manifest::load(out)?;
        let same = |a: &Manifest| {
            serde_json::json!([
                a.model["source"],
                a.hooks,
                a.dtype,
                a.window,
                a.drop_bos,
                a.windows_per_shard,
                a.windows_per_forward,
                a.corpus["path"]
            ])
        };
        if same(&old) != same(&fresh) {
            return Err(PrismError::Cache {
                path: out.to_path_buf(),
                message: "a cache with different settings (model, hooks, dtype, windows or corpus) is already here; \
                          choose another --out or delete it"
                    .into(),
            });
        }
        Manifest {
            target_tokens: options.target_tokens,
            complete: old.complete && old.target_tokens >= options.target_tokens,
            ..old
        }
    } else {
        fresh
    };
    progress(CacheProgress {
        tokens: manifest.token_count,
        target: manifest.target_tokens,
    });
    if manifest.complete || manifest.token_count >= manifest.target_tokens {
        manifest.complete = true;
        manifest.save(out)?;
        return Ok(manifest);
    }
    let mut stream = windows(corpus, &model.tokenizer, options.window.clone())?;
    for _ in 0..manifest.windows_done {
        if stream.next().transpose()?.is_none() {
            break;
        }
    }
    let rows_per_window =
        (options.window.ctx - usize::from(options.drop_bos && options.window.prepend_bos)).max(1);
    // Three stages overlap: tokenisation runs ahead on its own thread (a bounded queue), the
    // model runs here, and each shard is serialised, hashed and written on a writer thread while
    // the model computes the next one. A shard enters the manifest only once its file is
    // complete, so a killed harvest still resumes exactly.
    std::thread::scope(|scope| {
        let (window_tx, window_rx) = std::sync::mpsc::sync_channel(manifest.windows_per_shard);
        scope.spawn(move || {
            while let Some(w) = stream.next() {
                let failed = w.is_err();
                if window_tx
                    .send(w.map(|w| (w, stream.skipped().clone())))
                    .is_err()
                    || failed
                {
                    break;
                }
            }
        });
        let mut in_flight: Option<InFlight<'_>> = None;
        let mut submitted = 0;
        let mut corpus_ended = false;
        loop {
            let planned = manifest.token_count + in_flight.as_ref().map_or(0, |f| f.rows as u64);
            let stop = options.stop_after_shards.is_some_and(|k| submitted >= k);
            if planned >= manifest.target_tokens || stop {
                break;
            }
            // No more windows than the target still needs (each gives up to `rows_per_window`
            // rows; a short shard is topped up by the next one).
            let wanted = ((manifest.target_tokens - planned).div_ceil(rows_per_window as u64)
                as usize)
                .min(manifest.windows_per_shard);
            let mut shard_windows: Vec<Vec<u32>> = Vec::with_capacity(wanted);
            let mut skipped = None;
            for w in window_rx.iter().take(wanted) {
                let (w, s) = w?;
                shard_windows.push(w);
                skipped = Some(s);
            }
            let Some(skipped) = skipped else {
                corpus_ended = true;
                break;
            };
            let shard = harvest_shard(&harvester, &manifest, shard_windows, planned, options)?;
            if let Some(previous) = in_flight.take() {
                previous.finish(&mut manifest, out, progress)?;
            }
            // The previous shard is listed, so this one's number is the manifest's length.
            let file = format!("shard-{:05}.safetensors", manifest.shards.len());
            in_flight = Some(InFlight::spawn(scope, out, file, shard, skipped));
            submitted += 1;
        }
        if let Some(last) = in_flight.take() {
            last.finish(&mut manifest, out, progress)?;
        }
        // Complete when the target is met, or when the corpus ended before it.
        manifest.complete |= corpus_ended;
        Ok::<_, PrismError>(())
    })?;
    manifest.save(out)?;
    Ok(manifest)
}

/// One shard's rows, harvested and ready to be written.
struct HarvestedShard {
    tensors: Vec<RawTensor>,
    rows: usize,
    windows: usize,
}

/// Runs the model over `shard_windows` (`windows_per_forward` at a time) and lays the captured
/// rows out as a shard's tensors, keeping no more rows than the target still needs after
/// `planned` tokens.
fn harvest_shard(
    harvester: &Harvester<'_>,
    manifest: &Manifest,
    shard_windows: Vec<Vec<u32>>,
    planned: u64,
    options: &CacheOptions,
) -> Result<HarvestedShard> {
    let ctx = options.window.ctx;
    let mut acts: Vec<Vec<f32>> = vec![Vec::new(); manifest.hooks.len()];
    let mut origin: Vec<u32> = Vec::new();
    for (g, group) in shard_windows
        .chunks(manifest.windows_per_forward)
        .enumerate()
    {
        let h = harvester.harvest(group)?;
        for (a, t) in acts.iter_mut().zip(&h.acts) {
            a.extend_from_slice(&t.data);
        }
        let base = (g * manifest.windows_per_forward * ctx) as u32;
        origin.extend(h.origin.iter().map(|o| base + o));
    }
    let rows = origin
        .len()
        .min((manifest.target_tokens - planned) as usize);
    origin.truncate(rows);
    let mut tensors = Vec::with_capacity(manifest.hooks.len() + 2);
    for (info, a) in manifest.hooks.iter().zip(acts.iter_mut()) {
        a.truncate(rows * info.d);
        let t = HostTensor::new(vec![rows, info.d], std::mem::take(a))?;
        tensors.push(RawTensor::floats(info.name.clone(), &t, options.dtype));
    }
    let flat: Vec<u32> = shard_windows.iter().flatten().copied().collect();
    tensors.push(RawTensor::u32s(
        "windows",
        vec![shard_windows.len(), ctx],
        &flat,
    ));
    tensors.push(RawTensor::u32s("origin", vec![rows], &origin));
    Ok(HarvestedShard {
        tensors,
        rows,
        windows: shard_windows.len(),
    })
}

/// A shard being serialised, hashed and written on a writer thread.
struct InFlight<'scope> {
    writer: std::thread::ScopedJoinHandle<'scope, Result<String>>,
    file: String,
    rows: usize,
    windows: usize,
    skipped: SkipCounts,
}

impl<'scope> InFlight<'scope> {
    fn spawn<'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        dir: &'env Path,
        file: String,
        shard: HarvestedShard,
        skipped: SkipCounts,
    ) -> Self {
        let path = dir.join(&file);
        let tensors = shard.tensors;
        let writer = scope.spawn(move || {
            let bytes = serialize_safetensors(&path, &tensors, None)?;
            let sha256 = hex::encode(Sha256::digest(&bytes));
            atomic_write(&path, &bytes)?;
            Ok(sha256)
        });
        InFlight {
            writer,
            file,
            rows: shard.rows,
            windows: shard.windows,
            skipped,
        }
    }

    /// Waits for the file, then lists the shard in the manifest and saves it.
    fn finish(
        self,
        manifest: &mut Manifest,
        out: &Path,
        progress: &mut dyn FnMut(CacheProgress),
    ) -> Result<()> {
        let sha256 = self.writer.join().map_err(|_| PrismError::Cache {
            path: out.join(&self.file),
            message: "the shard writer panicked".into(),
        })??;
        manifest.shards.push(ShardInfo {
            file: self.file,
            rows: self.rows,
            windows: self.windows,
            sha256,
        });
        manifest.windows_done += self.windows as u64;
        manifest.token_count += self.rows as u64;
        manifest.corpus["skipped"] = serde_json::to_value(&self.skipped).unwrap_or_default();
        manifest.complete = manifest.token_count >= manifest.target_tokens;
        manifest.save(out)?;
        progress(CacheProgress {
            tokens: manifest.token_count,
            target: manifest.target_tokens,
        });
        Ok(())
    }
}

struct Shard {
    file: ShardFile,
    /// Per hook: byte offset of the `[rows, d]` data in the file.
    hook_offsets: Vec<u64>,
    windows_offset: u64,
    origin_offset: u64,
    rows: usize,
}

/// A cache opened for reading: shards checksum-verified, rows read where they lie (no memory
/// map: reading holds only the rows asked for, whatever the cache's size).
pub struct ActivationStore {
    /// The directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    dtype: FloatDtype,
    shards: Vec<Shard>,
    /// First global row of each shard, plus the total at the end.
    starts: Vec<u64>,
}

impl ActivationStore {
    /// Opens a cache: reads the manifest, verifies each shard's sha256 (streamed, 1 MiB at a
    /// time), tensor shapes and row origins. A missing, truncated or altered shard is a
    /// [`PrismError::Cache`] naming it. Rows are read from the files when asked for; a shard
    /// changed by another process afterwards gives wrong rows or an I/O error, never a crash.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::load(dir)?;
        let dtype = manifest.float_dtype()?;
        let width = match dtype {
            FloatDtype::F32 => 4,
            _ => 2,
        };
        let mut shards = Vec::with_capacity(manifest.shards.len());
        let mut starts = vec![0u64];
        for info in &manifest.shards {
            let path = dir.join(&info.file);
            let bad = |message: String| PrismError::Cache {
                path: path.clone(),
                message,
            };
            let file = ShardFile::open(&path, &info.sha256)?;
            let offset_of = |name: &str, shape: &[usize], bytes_per: usize| -> Result<u64> {
                let t = file
                    .tensors
                    .get(name)
                    .ok_or_else(|| bad(format!("tensor `{name}` is missing")))?;
                let expected_bytes = shape.iter().try_fold(bytes_per, |n, &d| n.checked_mul(d));
                if t.shape != shape || Some((t.end - t.start) as usize) != expected_bytes {
                    return Err(bad(format!(
                        "tensor `{name}` has shape {:?}, expected {shape:?}",
                        t.shape
                    )));
                }
                Ok(t.start)
            };
            let hook_offsets = manifest
                .hooks
                .iter()
                .map(|h| offset_of(&h.name, &[info.rows, h.d], width))
                .collect::<Result<Vec<_>>>()?;
            let windows_offset = offset_of("windows", &[info.windows, manifest.window.ctx], 4)?;
            let origin_offset = offset_of("origin", &[info.rows], 4)?;
            // Every row's origin must point into the shard's windows (`context` reads there).
            let positions = info.windows * manifest.window.ctx; // both sized the tensors above
            let mut origins = vec![0u8; 4 * info.rows];
            file.read_at(origin_offset, &mut origins)?;
            if let Some(r) = origins
                .chunks_exact(4)
                .position(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize >= positions)
            {
                return Err(bad(format!(
                    "row {r}'s origin lies outside the shard's {} windows",
                    info.windows
                )));
            }
            starts.push(starts.last().copied().unwrap_or(0) + info.rows as u64);
            shards.push(Shard {
                file,
                hook_offsets,
                windows_offset,
                origin_offset,
                rows: info.rows,
            });
        }
        let rows = starts.last().copied().unwrap_or(0);
        if rows != manifest.token_count {
            return Err(PrismError::Cache {
                path: dir.join("manifest.json"),
                message: format!(
                    "the manifest counts {} tokens but its shards hold {rows} rows",
                    manifest.token_count
                ),
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            dtype,
            shards,
            starts,
        })
    }

    /// Total rows.
    pub fn len(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    /// True when the cache holds no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index of a hook point by name, or an error listing what the cache has.
    pub fn hook_index(&self, name: &str) -> Result<usize> {
        self.manifest
            .hooks
            .iter()
            .position(|h| h.name == name)
            .ok_or_else(|| PrismError::Cache {
                path: self.dir.clone(),
                message: format!(
                    "hook `{name}` is not cached here (cached: {})",
                    self.manifest
                        .hooks
                        .iter()
                        .map(|h| h.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// The width of hook number `hook`.
    fn hook_width(&self, hook: usize) -> Result<usize> {
        self.manifest.hooks.get(hook).map(|h| h.d).ok_or_else(|| {
            PrismError::InvalidInput(format!(
                "hook number {hook} is not in the cache ({} hooks)",
                self.manifest.hooks.len()
            ))
        })
    }

    /// The shard of global row `row` and the row's index in it.
    fn locate(&self, row: u64) -> Result<(usize, usize)> {
        if row >= self.len() {
            return Err(PrismError::InvalidInput(format!(
                "row {row} is outside the cache in {}, which has {} rows",
                self.dir.display(),
                self.len()
            )));
        }
        let s = self.starts.partition_point(|&start| start <= row) - 1;
        Ok((s, (row - self.starts[s]) as usize))
    }

    /// Appends row `row` of hook `hook` (f32) to `out`.
    pub fn read_row(&self, hook: usize, row: u64, out: &mut Vec<f32>) -> Result<()> {
        self.read_row_with(hook, row, out, &mut Vec::new())
    }

    /// [`Self::read_row`] with a caller's byte buffer, so a batch reuses one allocation.
    fn read_row_with(
        &self,
        hook: usize,
        row: u64,
        out: &mut Vec<f32>,
        bytes: &mut Vec<u8>,
    ) -> Result<()> {
        let (s, local) = self.locate(row)?;
        let shard = &self.shards[s];
        let d = self.hook_width(hook)?;
        let width = if self.dtype == FloatDtype::F32 { 4 } else { 2 };
        let start = shard.hook_offsets[hook] + (local * d * width) as u64;
        bytes.resize(d * width, 0);
        shard.file.read_at(start, bytes)?;
        match self.dtype {
            FloatDtype::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            FloatDtype::F16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
            ),
            FloatDtype::BF16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
            ),
        }
        Ok(())
    }

    /// Rows `rows` of hook `hook` as a `[rows.len(), d]` host tensor.
    pub fn gather(&self, hook: usize, rows: &[u64]) -> Result<HostTensor> {
        let d = self.hook_width(hook)?;
        let mut data = Vec::with_capacity(rows.len() * d);
        let mut bytes = Vec::new();
        for &r in rows {
            self.read_row_with(hook, r, &mut data, &mut bytes)?;
        }
        HostTensor::new(vec![rows.len(), d], data)
    }

    /// The token window a row came from and the row's position in it.
    pub fn context(&self, row: u64) -> Result<(Vec<u32>, usize)> {
        let (s, local) = self.locate(row)?;
        let shard = &self.shards[s];
        let ctx = self.manifest.window.ctx;
        let mut origin = [0u8; 4];
        shard
            .file
            .read_at(shard.origin_offset + 4 * local as u64, &mut origin)?;
        let origin = u32::from_le_bytes(origin) as usize; // checked at open: inside the windows
        let (w, pos) = (origin / ctx, origin % ctx);
        let mut bytes = vec![0u8; 4 * ctx];
        shard
            .file
            .read_at(shard.windows_offset + (4 * w * ctx) as u64, &mut bytes)?;
        let window = bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok((window, pos))
    }

    /// Which shard a row lives in (for tests and diagnostics).
    pub fn shard_of(&self, row: u64) -> Result<usize> {
        Ok(self.locate(row)?.0)
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Batches of `batch` rows in a globally shuffled order (a seeded [`Permutation`] of every
    /// row of every shard: nothing repeated, nothing lost, no per-row index held), one
    /// `[batch, d]` tensor per requested hook.
    pub fn shuffled_batches(
        &self,
        hooks: &[usize],
        batch: usize,
        seed: u64,
    ) -> ShuffledBatches<'_> {
        self.shuffled_prefix_batches(hooks, batch, seed, self.len())
    }

    /// [`ActivationStore::shuffled_batches`] over the first `rows` rows only (the rest held
    /// out: shards are in window order, so the last rows are the last text).
    pub fn shuffled_prefix_batches(
        &self,
        hooks: &[usize],
        batch: usize,
        seed: u64,
        rows: u64,
    ) -> ShuffledBatches<'_> {
        ShuffledBatches {
            store: self,
            hooks: hooks.to_vec(),
            batch: batch.max(1) as u64,
            order: Permutation::new(rows.min(self.len()), seed),
            next: 0,
        }
    }

    /// Full batches over the first `rows` rows, epoch after epoch without end: epoch `e` is
    /// [`ActivationStore::shuffled_prefix_batches`] with seed `seed + e`, its last partial
    /// batch dropped (so every step sees `batch` rows). The first `skip` batches are skipped
    /// without being read: a run resumed at step `skip` continues exactly.
    pub fn epoch_batches(
        &self,
        hooks: &[usize],
        batch: usize,
        seed: u64,
        rows: u64,
        skip: u64,
    ) -> impl Iterator<Item = Result<Vec<HostTensor>>> + '_ {
        let hooks = hooks.to_vec();
        let per_epoch = (rows.min(self.len()) / batch.max(1) as u64).max(1);
        let (first, within) = (skip / per_epoch, skip % per_epoch);
        (first..).flat_map(move |e| {
            let mut it = self.shuffled_prefix_batches(&hooks, batch, seed.wrapping_add(e), rows);
            let skipped = if e == first { within } else { 0 };
            it.skip_batches(skipped);
            it.take((per_epoch - skipped) as usize)
        })
    }

    /// The last `rows` rows of each of `hooks`, one `[rows, d]` tensor per hook (held-out rows
    /// for [`ActivationStore::shuffled_prefix_batches`]).
    pub fn tail(&self, hooks: &[usize], rows: u64) -> Result<Vec<HostTensor>> {
        let rows = rows.min(self.len());
        let index: Vec<u64> = (self.len() - rows..self.len()).collect();
        hooks.iter().map(|&h| self.gather(h, &index)).collect()
    }

    /// The path of shard `i`.
    pub fn shard_path(&self, i: usize) -> &Path {
        &self.shards[i].file.path
    }

    /// Rows in shard `i`.
    pub fn shard_rows(&self, i: usize) -> usize {
        self.shards[i].rows
    }
}

/// Iterator over globally shuffled batches; see [`ActivationStore::shuffled_batches`].
pub struct ShuffledBatches<'a> {
    store: &'a ActivationStore,
    hooks: Vec<usize>,
    batch: u64,
    order: Permutation,
    next: u64,
}

impl ShuffledBatches<'_> {
    /// The global row indices of the batch that `next()` will return.
    pub fn peek_rows(&self) -> Vec<u64> {
        let end = (self.next + self.batch).min(self.order.len());
        (self.next..end).map(|i| self.order.at(i)).collect()
    }

    /// Skips `n` batches without reading them (a resumed run starting at step `n`).
    pub fn skip_batches(&mut self, n: u64) {
        self.next = self
            .next
            .saturating_add(n.saturating_mul(self.batch))
            .min(self.order.len());
    }
}

impl Iterator for ShuffledBatches<'_> {
    type Item = Result<Vec<HostTensor>>;

    fn next(&mut self) -> Option<Result<Vec<HostTensor>>> {
        if self.next >= self.order.len() {
            return None;
        }
        let rows = self.peek_rows();
        self.next += rows.len() as u64;
        Some(
            self.hooks
                .iter()
                .map(|&h| self.store.gather(h, &rows))
                .collect(),
        )
    }
}
