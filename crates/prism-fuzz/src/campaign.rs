//! A fuzz campaign: seeds first, then mutated inputs, each run with panics caught and the
//! allocator watching; every finding saved to a file that becomes a regression input.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use prism_core::{PrismError, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::guard::{self, AllocationReport};
use crate::mutate::mutate;
use crate::targets::{Target, Workbench};

/// The longest input the mutator makes: 2 MiB (the allocation bounds assume it).
pub const MAX_INPUT_BYTES: usize = 2 << 20;

/// What one input did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The reader accepted it.
    Accepted,
    /// The reader refused it with a typed error (the message a user would see).
    Refused(String),
    /// The reader panicked (message and location).
    Panicked(String),
    /// The reader allocated beyond the bounds of [`crate::guard`].
    Allocated(AllocationReport),
}

impl Outcome {
    /// Whether this outcome is a bug.
    pub fn is_finding(&self) -> bool {
        matches!(self, Outcome::Panicked(_) | Outcome::Allocated(_))
    }
}

/// A bug the campaign found, with the file that reproduces it.
#[derive(Clone, Debug)]
pub struct Finding {
    /// What happened.
    pub outcome: Outcome,
    /// Where the input was saved.
    pub saved: PathBuf,
}

/// What a campaign did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Inputs run (seeds included).
    pub inputs: u64,
    /// Inputs the reader accepted.
    pub accepted: u64,
    /// Inputs refused with a typed error.
    pub refused: u64,
    /// Seeds the reader refused (a seed should load; one that does not hides the deeper paths).
    pub refused_seeds: Vec<String>,
    /// Panics and allocations beyond the bounds.
    pub findings: Vec<Finding>,
    /// The largest single allocation of any input, in bytes.
    pub largest_allocation: usize,
    /// The largest peak of live bytes of any input.
    pub peak_live: usize,
    /// Wall time.
    pub elapsed: Duration,
}

static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);
static PANIC_HOOK: Once = Once::new();
static CATCHING: AtomicBool = AtomicBool::new(false);

/// Wraps the panic hook (once per process): while an input runs, a panic's message is recorded
/// for the finding instead of printed; at other times (a failing assertion in a test) the
/// previous hook prints it as usual.
fn record_panics() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.load(Ordering::SeqCst) {
                if let Ok(mut m) = PANIC_MESSAGE.lock() {
                    *m = Some(info.to_string());
                }
            } else {
                previous(info);
            }
        }));
    });
}

/// One target's campaign.
pub struct Campaign {
    target: Target,
    bench: Workbench,
    seeds: Vec<(String, Vec<u8>)>,
    rng: StdRng,
    findings_dir: PathBuf,
    crash_file: File,
    last_report: AllocationReport,
}

impl Campaign {
    /// Prepares `target` with its seeds and committed regression inputs; findings go to
    /// `findings_dir/<target>/`. `seed` fixes the sequence of mutations.
    pub fn new(target: Target, seed: u64, findings_dir: &Path) -> Result<Self> {
        record_panics();
        let bench = Workbench::prepare(target)?;
        let mut seeds: Vec<(String, Vec<u8>)> = bench
            .seeds()?
            .into_iter()
            .enumerate()
            .map(|(i, s)| (format!("seed {i}"), s))
            .collect();
        for p in regression_inputs(target)? {
            let bytes = std::fs::read(&p).map_err(|e| PrismError::io(&p, e))?;
            seeds.push((format!("regression {}", p.display()), bytes));
        }
        let findings_dir = findings_dir.join(target.name());
        std::fs::create_dir_all(&findings_dir).map_err(|e| PrismError::io(&findings_dir, e))?;
        let crash_path = findings_dir.join("aborted-input.bin");
        let crash_file = File::create(&crash_path).map_err(|e| PrismError::io(&crash_path, e))?;
        Ok(Self {
            target,
            bench,
            seeds,
            rng: StdRng::seed_from_u64(seed),
            findings_dir,
            crash_file,
            last_report: AllocationReport::default(),
        })
    }

    /// Runs one input.
    pub fn run_one(&mut self, input: &[u8]) -> Outcome {
        if let Ok(mut m) = PANIC_MESSAGE.lock() {
            *m = None;
        }
        CATCHING.store(true, Ordering::SeqCst);
        guard::arm(input, self.crash_file.as_raw_fd());
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.bench.run(input)));
        let report = guard::disarm();
        CATCHING.store(false, Ordering::SeqCst);
        self.last_report = report;
        if !report.within_bounds() {
            // The allocator wrote the input to the crash file; start it afresh for the next.
            let _ = self.crash_file.set_len(0);
            let _ = self.crash_file.seek(SeekFrom::Start(0));
            return Outcome::Allocated(report);
        }
        match result {
            Ok(Ok(())) => Outcome::Accepted,
            Ok(Err(e)) => Outcome::Refused(e.to_string()),
            Err(_) => Outcome::Panicked(
                PANIC_MESSAGE
                    .lock()
                    .ok()
                    .and_then(|mut m| m.take())
                    .unwrap_or_else(|| "a panic without a message".into()),
            ),
        }
    }

    /// The seeds and regression inputs, then `mutated` mutated inputs (or fewer, if `budget`
    /// runs out first).
    pub fn run(&mut self, mutated: u64, budget: Option<Duration>) -> Summary {
        let start = Instant::now();
        let mut summary = Summary::default();
        let seeds = std::mem::take(&mut self.seeds);
        for (name, s) in &seeds {
            let outcome = self.run_one(s);
            if matches!(outcome, Outcome::Refused(_)) && name.starts_with("seed") {
                summary.refused_seeds.push(format!("{name}: {outcome:?}"));
            }
            self.tally(&mut summary, s, outcome);
        }
        let mut done = 0;
        while done < mutated && budget.is_none_or(|b| start.elapsed() < b) && !seeds.is_empty() {
            let a = &seeds[self.rng.random_range(0..seeds.len())].1;
            let b = &seeds[self.rng.random_range(0..seeds.len())].1;
            let input = mutate(a, b, self.target.format(), MAX_INPUT_BYTES, &mut self.rng);
            let outcome = self.run_one(&input);
            self.tally(&mut summary, &input, outcome);
            done += 1;
        }
        self.seeds = seeds;
        summary.elapsed = start.elapsed();
        summary
    }

    fn tally(&self, summary: &mut Summary, input: &[u8], outcome: Outcome) {
        summary.inputs += 1;
        match &outcome {
            Outcome::Accepted => summary.accepted += 1,
            Outcome::Refused(_) => summary.refused += 1,
            Outcome::Allocated(_) | Outcome::Panicked(_) => {}
        }
        let r = self.last_report;
        summary.largest_allocation = summary.largest_allocation.max(r.largest);
        summary.peak_live = summary.peak_live.max(r.peak);
        if outcome.is_finding() {
            let name = hex::encode(&Sha256::digest(input)[..8]);
            let saved = self.findings_dir.join(format!("{name}.bin"));
            let _ = std::fs::write(&saved, input);
            summary.findings.push(Finding { outcome, saved });
        }
    }
}

/// The committed inputs that once were findings: `regressions/<target>/*`.
pub fn regression_inputs(target: Target) -> Result<Vec<PathBuf>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("regressions")
        .join(target.name());
    let mut out = Vec::new();
    if dir.is_dir() {
        for e in std::fs::read_dir(&dir).map_err(|e| PrismError::io(&dir, e))? {
            out.push(e.map_err(|e| PrismError::io(&dir, e))?.path());
        }
    }
    out.sort();
    Ok(out)
}
