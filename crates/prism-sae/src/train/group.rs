//! Several dictionaries trained from one activation stream (different sizes, penalties, seeds
//! or hook points), with running logs and checkpoints.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use prism_core::{HostTensor, PrismError, Result};

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
    /// Its state.
    pub trainer: Trainer,
}

/// File names inside a run's directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The running log, one JSON [`StepLog`] per line.
pub const LOG_FILE: &str = "log.jsonl";

impl Run {
    /// A run on `engine` that resumes from `dir/checkpoint.safetensors` when `resume` and the
    /// file exists (whichever engine wrote it), and starts fresh from `config` otherwise.
    pub fn open(
        name: impl Into<String>,
        dir: impl Into<PathBuf>,
        input: usize,
        config: super::TrainConfig,
        resume: bool,
        engine: &EngineChoice,
    ) -> Result<Run> {
        let dir = dir.into();
        prism_core::remove_interrupted_writes(&dir)?;
        let ckpt = dir.join(CHECKPOINT_FILE);
        let trainer = if resume && ckpt.exists() {
            let mut t = Trainer::load_checkpoint(&ckpt)?;
            let mut expected = config.clone();
            expected.total_steps = t.config.total_steps;
            if t.config != expected {
                return Err(PrismError::InvalidInput(format!(
                    "{}: the checkpoint was trained with another configuration; remove it or \
                     drop --resume",
                    ckpt.display()
                )));
            }
            // The plan may have grown (train longer than first asked).
            t.config.total_steps = config.total_steps;
            t.on(engine)?
        } else {
            Trainer::new_on(config, engine)?
        };
        Ok(Run {
            name: name.into(),
            dir,
            input,
            trainer,
        })
    }
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
/// (SAELens layout) and a last checkpoint into each run's directory. `widths` (the stream's
/// input widths) are checked against each run's `d_in` before any batch is drawn. The runs
/// must be at the same step (fresh, or resumed from the same checkpoint step); the caller
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
            let entry = r.trainer.step(x).map_err(|e| match e {
                PrismError::NonFinite(m) => PrismError::NonFinite(format!(
                    "{}: {m}; its last checkpoint in {} is kept",
                    r.name,
                    r.dir.display()
                )),
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
        r.trainer.to_sae(device)?.save(&r.dir)?;
    }
    Ok(())
}

fn checkpoint(runs: &[Run], logs: &mut [std::io::BufWriter<std::fs::File>]) -> Result<()> {
    for (r, log) in runs.iter().zip(logs) {
        log.flush()
            .map_err(|e| PrismError::io(r.dir.join(LOG_FILE), e))?;
        r.trainer.save_checkpoint(&r.dir.join(CHECKPOINT_FILE))?;
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
