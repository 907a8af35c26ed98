//! Several dictionaries trained from one activation stream (different sizes, penalties, seeds
//! or hook points), with running logs and checkpoints.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use prism_core::{DirLock, HostTensor, PrismError, Result};

use super::convergence::{ConvergenceOptions, measure};
use super::engine::EngineChoice;
use super::trainer::{StepLog, Trainer};

/// One dictionary of a group.
#[derive(Debug)]
pub struct Run {
    /// A short name (used in messages and as the directory name by the CLI).
    pub name: String,
    /// Where its log, checkpoint and final dictionary go.
    pub dir: PathBuf,
    /// Which input of each batch it trains on (the index of its hook point in the stream).
    pub input: usize,
    /// A transcoder's target: the input of each batch it reconstructs (`None`: its own input).
    pub output: Option<usize>,
    /// Its state.
    pub trainer: Trainer,
    /// Held while the run is open: a second process opening the same directory gets
    /// [`PrismError::Busy`] instead of writing into it too.
    _lock: DirLock,
}

/// File names inside a run's directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The checkpoint before [`CHECKPOINT_FILE`], kept so that a group killed while writing its
/// runs' checkpoints one after another still has a step that every run was saved at.
pub const PREVIOUS_CHECKPOINT_FILE: &str = "checkpoint.previous.safetensors";
/// The running log, one JSON [`StepLog`] per line.
pub const LOG_FILE: &str = "log.jsonl";

/// What a [`Run`] is before it is opened.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// A short name (used in messages and as the directory name by the CLI).
    pub name: String,
    /// Where its log, checkpoints and final dictionary go.
    pub dir: PathBuf,
    /// Which input of each batch it trains on.
    pub input: usize,
    /// A transcoder's target: the input of each batch it reconstructs (`None`: its own input;
    /// a target needs a configuration [`super::TrainConfig::with_output`] made).
    pub output: Option<usize>,
    /// How it trains.
    pub config: super::TrainConfig,
}

impl Run {
    /// Opens a group of runs on `engine`, each holding its directory's [`DirLock`] until it is
    /// dropped (a directory another process has open is [`PrismError::Busy`]). With `resume`,
    /// the group continues from the latest step that every run has a checkpoint of
    /// ([`CHECKPOINT_FILE`] or [`PREVIOUS_CHECKPOINT_FILE`], whichever engine wrote it), and
    /// that checkpoint becomes each run's current one; a group without such a step (nothing
    /// saved yet, or killed while its first checkpoints were written) starts fresh, as it does
    /// without `resume`. A checkpoint trained with another configuration is refused (a longer
    /// `total_steps` is not another configuration: the plan may grow).
    pub fn open_group(
        specs: Vec<RunSpec>,
        resume: bool,
        engine: &EngineChoice,
    ) -> Result<Vec<Run>> {
        let locks = specs
            .iter()
            .map(|spec| DirLock::acquire(&spec.dir))
            .collect::<Result<Vec<_>>>()?;
        for spec in &specs {
            prism_core::remove_interrupted_writes(&spec.dir)?;
        }
        let step = if resume {
            resume_step(&specs.iter().map(|s| &s.dir).collect::<Vec<_>>())?
        } else {
            None
        };
        specs
            .into_iter()
            .zip(locks)
            .map(|(spec, lock)| {
                let trainer = match step {
                    Some(step) => resume_at(&spec, step)?.on(engine)?,
                    None => Trainer::new_on(spec.config, engine)?,
                };
                Ok(Run {
                    name: spec.name,
                    dir: spec.dir,
                    input: spec.input,
                    output: spec.output,
                    trainer,
                    _lock: lock,
                })
            })
            .collect()
    }
}

/// The steps a run's directory holds checkpoints of: `(step, file)`, newest file first.
fn saved_steps(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    [CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.exists())
        .map(|p| Ok((super::export::checkpoint_step(&p)?, p)))
        .collect()
}

/// The latest step that every run of a group (their directories) has a checkpoint of, where
/// [`Run::open_group`] with `resume` would continue it; `None` where it would start fresh.
///
/// ```
/// # fn main() -> prism_core::Result<()> {
/// use prism_sae::train::{resume_step, ArchitectureConfig, Run, RunSpec, TrainConfig};
/// let dir = tempfile::tempdir().unwrap();
/// let spec = RunSpec {
///     name: "a".into(),
///     dir: dir.path().join("a"),
///     input: 0,
///     output: None,
///     config: TrainConfig::new(ArchitectureConfig::topk(4), 16, 64),
/// };
/// assert_eq!(resume_step(&[&spec.dir])?, None); // nothing saved yet
/// let mut runs = Run::open_group(vec![spec.clone()], false, &Default::default())?;
/// let x = prism_core::HostTensor::new(vec![8, 16], (0..128).map(|i| (i % 7) as f32).collect())?;
/// runs[0].trainer.step(&x)?;
/// std::fs::create_dir_all(&spec.dir).unwrap();
/// runs[0].trainer.save_checkpoint(&spec.dir.join(prism_sae::train::CHECKPOINT_FILE))?;
/// assert_eq!(resume_step(&[&spec.dir])?, Some(1));
/// # Ok(())
/// # }
/// ```
pub fn resume_step<P: AsRef<Path>>(dirs: &[P]) -> Result<Option<u64>> {
    let mut common: Option<Vec<u64>> = None;
    for dir in dirs {
        let steps: Vec<u64> = saved_steps(dir.as_ref())?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        common = Some(match common {
            None => steps,
            Some(c) => c.into_iter().filter(|s| steps.contains(s)).collect(),
        });
    }
    Ok(common.and_then(|c| c.into_iter().max()))
}

/// Loads `spec`'s checkpoint at `step`, first making it the run's [`CHECKPOINT_FILE`] (so the
/// next checkpoint moves it to [`PREVIOUS_CHECKPOINT_FILE`] and the group keeps a common step
/// however often it is killed).
fn resume_at(spec: &RunSpec, step: u64) -> Result<Trainer> {
    let current = spec.dir.join(CHECKPOINT_FILE);
    let (_, path) = saved_steps(&spec.dir)?
        .into_iter()
        .find(|(s, _)| *s == step)
        .ok_or_else(|| {
            PrismError::InvalidInput(format!("{}: no checkpoint at step {step}", spec.name))
        })?;
    if path != current {
        std::fs::rename(&path, &current).map_err(|e| PrismError::io(&current, e))?;
    }
    let mut t = Trainer::load_checkpoint(&current)?;
    let mut expected = spec.config.clone();
    expected.total_steps = t.config.total_steps;
    if t.config != expected {
        return Err(PrismError::InvalidInput(format!(
            "{}: the checkpoint was trained with another configuration; remove it or drop \
             --resume",
            current.display()
        )));
    }
    t.config.total_steps = spec.config.total_steps;
    Ok(t)
}

/// How [`fit`] runs.
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Train until every run has taken this many steps (or the stream ends).
    pub steps: u64,
    /// Write checkpoints every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Measure convergence on held-out rows at geometrically spaced token counts and after the
    /// last planned step (written into the log's [`StepLog::held_out`]).
    pub convergence: Option<ConvergenceOptions>,
}

/// Trains every run on the same stream of batches (one tensor per input), appending each
/// step's [`StepLog`] to `dir/log.jsonl`, checkpointing, and finally writing the dictionary
/// (SAELens layout; a transcoder as [`crate::Transcoder::save`] writes it) and a last checkpoint
/// into each run's directory. `widths` (the stream's input widths) are checked against each
/// run's `d_in` (and a transcoder's target against its `d_out`) before any batch is drawn. The runs
/// must be at the same step (as [`Run::open_group`] opens them); the caller
/// positions the stream there. On an error (e.g. non-finite activations or divergence) the
/// last checkpoint on disk stays the last good state.
pub fn fit(
    runs: &mut [Run],
    widths: &[usize],
    batches: impl Iterator<Item = Result<Vec<HostTensor>>>,
    options: &FitOptions,
    device: &Device,
    mut on_step: impl FnMut(&[Run], &[StepLog]),
) -> Result<()> {
    let Some(first) = runs.first() else {
        return Err(PrismError::InvalidInput("no dictionaries to train".into()));
    };
    let start = first.trainer.step;
    for r in runs.iter() {
        let width = widths.get(r.input).copied().ok_or_else(|| {
            PrismError::InvalidInput(format!("{}: the stream has no input {}", r.name, r.input))
        })?;
        if width != r.trainer.config.d_in {
            return Err(PrismError::Shape(format!(
                "{}: activations have width {width} but the dictionary's d_in is {}",
                r.name, r.trainer.config.d_in
            )));
        }
        match (r.output, r.trainer.config.d_out) {
            (None, None) => {}
            (Some(o), Some(d_out)) => {
                let width = widths.get(o).copied().ok_or_else(|| {
                    PrismError::InvalidInput(format!("{}: the stream has no input {o}", r.name))
                })?;
                if width != d_out {
                    return Err(PrismError::Shape(format!(
                        "{}: target activations have width {width} but the transcoder's d_out \
                         is {d_out}",
                        r.name
                    )));
                }
            }
            (Some(_), None) => {
                return Err(PrismError::InvalidInput(format!(
                    "{}: a target is given but the configuration is an autoencoder's \
                     (TrainConfig::with_output makes a transcoder's)",
                    r.name
                )));
            }
            (None, Some(_)) => {
                return Err(PrismError::InvalidInput(format!(
                    "{}: a transcoder needs the stream input it reconstructs (RunSpec::output)",
                    r.name
                )));
            }
        }
        if r.trainer.step != start {
            return Err(PrismError::InvalidInput(format!(
                "{} is at step {} but {} at step {start}: resume runs from the same step",
                r.name, r.trainer.step, first.name
            )));
        }
    }
    let mut logs: Vec<std::io::BufWriter<std::fs::File>> = runs
        .iter()
        .map(|r| open_log(&r.dir, r.trainer.step))
        .collect::<Result<_>>()?;
    let mut step = start;
    for batch in batches.take(options.steps.saturating_sub(start) as usize) {
        let batch = batch?;
        let before = runs[0].trainer.tokens;
        let mut step_logs = Vec::with_capacity(runs.len());
        for r in runs.iter_mut() {
            let x = &batch[r.input];
            let entry = match r.output {
                None => r.trainer.step(x),
                Some(o) => r.trainer.step_with_target(x, &batch[o]),
            };
            let entry = entry.map_err(|e| match e {
                PrismError::NonFinite(m) => PrismError::NonFinite(format!(
                    "{}: {m}; its last checkpoint in {} is kept",
                    r.name,
                    r.dir.display()
                )),
                PrismError::Diverged {
                    step, loss, best, ..
                } => PrismError::Diverged {
                    step,
                    loss,
                    best,
                    run: Some(r.name.clone()),
                    checkpoint: Some(r.dir.clone()),
                },
                other => other,
            })?;
            step_logs.push(entry);
        }
        if let Some(c) = &options.convergence
            && (c.due(before, runs[0].trainer.tokens) || step + 1 == options.steps)
        {
            for (entry, point) in step_logs.iter_mut().zip(measure(runs, c, device)?) {
                entry.held_out = point;
            }
        }
        for ((r, log), entry) in runs.iter().zip(&mut logs).zip(&step_logs) {
            let line = serde_json::to_string(entry).expect("logs serialise");
            writeln!(log, "{line}").map_err(|e| PrismError::io(r.dir.join(LOG_FILE), e))?;
        }
        step += 1;
        on_step(runs, &step_logs);
        if options.checkpoint_every > 0 && step % options.checkpoint_every == 0 {
            checkpoint(runs, &mut logs)?;
        }
    }
    checkpoint(runs, &mut logs)?;
    for r in runs.iter() {
        if r.trainer.config.is_transcoder() {
            r.trainer.to_transcoder(device)?.save(&r.dir)?;
        } else {
            r.trainer.to_sae(device)?.save(&r.dir)?;
        }
    }
    Ok(())
}

/// Writes every run's checkpoint, one run after another; each run's last one is kept as
/// [`PREVIOUS_CHECKPOINT_FILE`] first, so a kill at any point leaves a step that every run has.
fn checkpoint(runs: &[Run], logs: &mut [std::io::BufWriter<std::fs::File>]) -> Result<()> {
    for (r, log) in runs.iter().zip(logs) {
        log.flush()
            .map_err(|e| PrismError::io(r.dir.join(LOG_FILE), e))?;
        let (current, previous) = (
            r.dir.join(CHECKPOINT_FILE),
            r.dir.join(PREVIOUS_CHECKPOINT_FILE),
        );
        if current.exists() {
            prism_core::atomic_link(&current, &previous)?;
        }
        r.trainer.save_checkpoint(&current)?;
    }
    Ok(())
}

/// Reads a run's `dir/log.jsonl` (what [`fit`] wrote), one [`StepLog`] per line.
pub fn read_log(dir: &Path) -> Result<Vec<StepLog>> {
    let path = dir.join(LOG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| PrismError::io(&path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                PrismError::InvalidInput(format!("{} line {}: {e}", path.display(), i + 1))
            })
        })
        .collect()
}

/// Opens `dir/log.jsonl` for appending, first dropping entries after `step` (written after
/// the checkpoint a resumed run starts from).
fn open_log(dir: &Path, step: u64) -> Result<std::io::BufWriter<std::fs::File>> {
    std::fs::create_dir_all(dir).map_err(|e| PrismError::io(dir, e))?;
    let path = dir.join(LOG_FILE);
    let kept: String = match std::fs::read_to_string(&path) {
        Ok(text) if step > 0 => text
            .lines()
            .filter(|l| serde_json::from_str::<StepLog>(l).is_ok_and(|e| e.step <= step))
            .map(|l| format!("{l}\n"))
            .collect(),
        _ => String::new(),
    };
    prism_core::atomic_write(&path, kept.as_bytes())?;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| PrismError::io(&path, e))?;
    Ok(std::io::BufWriter::new(file))
}
