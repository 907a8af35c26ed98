//! `prism train`: train one or several dictionaries from one activation stream — a cache on
//! disk or activations harvested on the fly from a model and a corpus.

use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use prism_cache::{
    ActivationBuffer, ActivationStore, BufferConfig, Corpus, Harvester, StoreTrainingConfig,
    TRAINING_DATA_KEY, TrainingData, WindowConfig, train_on_store, windows,
};
use prism_core::{HookPoint, PrismError, Result};
use prism_models::Model;
use prism_sae::Sae;
use prism_sae::train::{
    ArchitectureConfig, EngineChoice, FitOptions, LOG_FILE, ResampleConfig, Run, RunSpec,
    TrainConfig, fit, read_log,
};
use prism_stats::{RunLog, plot_convergence};
use serde_json::json;

/// `prism train` arguments.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Train from a cache written by `prism cache` (resumable exactly).
    #[arg(long, conflicts_with_all = ["model", "data"])]
    cache: Option<PathBuf>,
    /// Or harvest on the fly: an HF model directory or a .gguf file ...
    #[arg(long, requires = "data")]
    model: Option<PathBuf>,
    /// ... and a corpus (.txt/.rst/.md/.jsonl/.jsonl.zst file or directory).
    #[arg(long, requires = "model")]
    data: Option<PathBuf>,
    /// Hook point(s), comma-separated: one dictionary family per hook, all from one stream.
    #[arg(long, value_delimiter = ',', required = true)]
    hook: Vec<String>,
    /// Train transcoders: for each --hook, the hook whose activations its features write
    /// (comma-separated, one per --hook; e.g. `--hook blocks.3.ln2.hook_normalized --hook-out
    /// blocks.3.hook_mlp_out`). Both are harvested from the same tokens.
    #[arg(long, value_delimiter = ',')]
    hook_out: Vec<String>,
    /// With --hook-out: skip transcoders, with a trained linear term from input to output
    /// (relu, topk, batchtopk, jumprelu).
    #[arg(long, requires = "hook_out")]
    skip: bool,
    /// relu (L1 + resampling), topk, batchtopk, jumprelu, gated or matryoshka_batchtopk
    /// (`matryoshka`: nested prefixes of the dictionary each reconstruct).
    #[arg(long, default_value = "relu")]
    arch: String,
    /// Dictionary size(s), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    dict_size: Vec<usize>,
    /// TopK/BatchTopK/Matryoshka: active latents per token (comma-separated for several).
    #[arg(long, value_delimiter = ',')]
    k: Vec<usize>,
    /// ReLU/Gated: L1 coefficient; JumpReLU: L0 coefficient (comma-separated for several).
    #[arg(long, value_delimiter = ',')]
    l1: Vec<f32>,
    /// Peak learning rate (default: dictionary_learning's for the architecture).
    #[arg(long)]
    lr: Option<f32>,
    /// Training tokens per dictionary (with --cache, epochs over the cache as needed).
    #[arg(long, default_value_t = 10_000_000)]
    tokens: u64,
    /// Seed(s), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    seed: Vec<u64>,
    /// Activation vectors per step.
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    /// Learning-rate and sparsity warm-up steps (default: min(1000, steps / 10), see
    /// `TrainConfig::for_steps`).
    #[arg(long)]
    warmup: Option<u64>,
    /// ReLU: resample dead features every this many steps, those dead for half of that
    /// (default: steps / 5; 0 disables).
    #[arg(long)]
    resample_every: Option<u64>,
    /// ReLU: the L0 the dictionary starts from (each feature's encoder bias set on the first
    /// batch; default 64; 0 starts from the tied initialisation's dense codes).
    #[arg(long)]
    initial_l0: Option<f32>,
    /// Scale activations so that E‖x‖ = √d (folded back into the saved weights).
    #[arg(long)]
    normalize: bool,
    /// Write checkpoints every this many steps (always at the end).
    #[arg(long, default_value_t = 0)]
    checkpoint_every: u64,
    /// With --cache: keep the cache's last N rows (its last text) out of training and measure
    /// every dictionary on them from the 4th step on, at token counts spaced ×√2 apart, and
    /// after the last step (held-out variance explained,
    /// L0, alive and dense features, and the MMCS between runs that differ only in --seed),
    /// written into each log.jsonl; plot them with `prism curves`.
    #[arg(long, default_value_t = 0)]
    held_out_tokens: u64,
    /// Continue from the checkpoints in --out (exact with --cache).
    #[arg(long)]
    resume: bool,
    /// Tokens per window when harvesting.
    #[arg(long, default_value_t = 128)]
    ctx: usize,
    /// Windows held in the shuffling buffer when harvesting.
    #[arg(long, default_value_t = 256)]
    n_ctxs: usize,
    /// JSON field holding the text in .jsonl files.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// cpu, or wgpu / cuda / ndarray in a build with that cargo feature: where the model runs and
    /// where dictionaries train (the host kernels on `cpu`, burn on the others).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Force a training engine: `host` (the CPU kernels) or `burn` (burn tensors on --device;
    /// on `cpu` that is burn's flex backend).
    #[arg(long)]
    engine: Option<String>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Output directory (one subdirectory per dictionary when training several).
    #[arg(long)]
    out: PathBuf,
}

/// A stream of batches, one tensor per hook, and where it came from.
pub enum Source {
    /// A cache on disk.
    Cache(Box<ActivationStore>),
    /// A model and a corpus, harvested on the fly.
    Model(Box<Model>, Corpus),
}

impl TrainArgs {
    fn steps(&self) -> u64 {
        self.tokens.div_ceil(self.batch as u64).max(1)
    }

    /// The stream's hooks: every --hook, then each --hook-out not among them; and for each
    /// --hook, the index of its output hook in that list.
    fn stream_hooks(&self) -> Result<(Vec<HookPoint>, Vec<Option<usize>>)> {
        let parse = |h: &String| h.trim().parse::<HookPoint>();
        let mut hooks: Vec<HookPoint> = self.hook.iter().map(parse).collect::<Result<_>>()?;
        if self.hook_out.is_empty() {
            return Ok((hooks.clone(), vec![None; hooks.len()]));
        }
        if self.hook_out.len() != self.hook.len() {
            return Err(PrismError::InvalidInput(format!(
                "{} --hook-out for {} --hook: give one output hook per input hook",
                self.hook_out.len(),
                self.hook.len()
            )));
        }
        let mut outputs = Vec::new();
        for h in &self.hook_out {
            let h = parse(h)?;
            let i = match hooks.iter().position(|k| *k == h) {
                Some(i) => i,
                None => {
                    hooks.push(h);
                    hooks.len() - 1
                }
            };
            outputs.push(Some(i));
        }
        Ok((hooks, outputs))
    }

    /// One run per dictionary, in `--out/NAME` (`input` and `output` index the stream).
    fn configs(
        &self,
        d_of: &dyn Fn(usize) -> usize,
        hooks: &[HookPoint],
        outputs: &[Option<usize>],
    ) -> Result<Vec<RunSpec>> {
        let steps = self.steps();
        let base: ArchitectureConfig = self.arch.parse()?;
        let sparsity: Vec<(Option<usize>, Option<f32>)> = match (&self.k[..], &self.l1[..]) {
            ([], []) => vec![(None, None)],
            (ks, []) => ks.iter().map(|&k| (Some(k), None)).collect(),
            ([], ls) => ls.iter().map(|&l| (None, Some(l))).collect(),
            _ => {
                return Err(PrismError::InvalidInput(
                    "give --k (TopK, BatchTopK, Matryoshka) or --l1 (ReLU, Gated, JumpReLU), not both".into(),
                ));
            }
        };
        let mut out = Vec::new();
        for (hi, hook) in self.hook.iter().enumerate() {
            for &m in &self.dict_size {
                for &(k, l1) in &sparsity {
                    for &seed in &self.seed {
                        let arch = base.with_sparsity(k, l1)?;
                        let mut c = TrainConfig::for_steps(arch, d_of(hi), m, steps);
                        if let Some(lr) = self.lr {
                            c.lr = lr;
                        }
                        if let Some(warm) = self.warmup {
                            c.warmup_steps = warm;
                            if c.sparsity_warmup_steps > 0 {
                                c.sparsity_warmup_steps = warm;
                            }
                        }
                        c.resample = match (c.resample, self.resample_every) {
                            (_, Some(0)) | (None, _) => None,
                            (Some(_), Some(every)) => Some(ResampleConfig {
                                every,
                                window: (every / 2).max(1),
                            }),
                            (r, None) => r,
                        };
                        if let Some(l0) = self.initial_l0 {
                            c.initial_l0 = (l0 > 0.0 && c.fit_initial_scale).then_some(l0);
                        }
                        c.seed = seed;
                        c.normalize_activations = self.normalize;
                        c.hook_name = Some(hooks[hi].to_string());
                        let output = outputs[hi];
                        if let Some(o) = output {
                            c = c.with_output(d_of(o), self.skip);
                            c.hook_name_out = Some(hooks[o].to_string());
                        }
                        c.validate()?;
                        let value = match (k, l1) {
                            (Some(k), _) => format!("k{k}"),
                            (_, Some(l)) => format!("l{l}"),
                            _ => "default".into(),
                        };
                        let to = match output {
                            Some(o) => format!(
                                "_to_{}{}",
                                hooks[o].to_string().replace('.', "-"),
                                if self.skip { "_skip" } else { "" }
                            ),
                            None => String::new(),
                        };
                        let name = format!(
                            "{}{to}_{}_{m}_{value}_s{seed}",
                            hook.trim().replace('.', "-"),
                            self.arch
                        );
                        out.push(RunSpec {
                            dir: self.out.join(&name),
                            name,
                            input: hi,
                            output,
                            config: c,
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}

pub fn train(args: &TrainArgs) -> Result<()> {
    let device = prism_core::device(&args.device)?;
    let engine = match args.engine.as_deref().map(str::trim) {
        None => EngineChoice::for_device(&args.device)?,
        Some("host") => EngineChoice::Host,
        Some("burn") => EngineChoice::Burn(device.clone()),
        Some(other) => {
            return Err(PrismError::InvalidInput(format!(
                "unknown engine `{other}` (host, burn)"
            )));
        }
    };
    let (hooks, outputs) = args.stream_hooks()?;
    let source = match (&args.cache, &args.model, &args.data) {
        (Some(dir), _, _) => Source::Cache(Box::new(ActivationStore::open(dir)?)),
        (None, Some(model), Some(data)) => Source::Model(
            Box::new(Model::load(&crate::hub::model(model)?, &device)?),
            Corpus::open(data, &args.text_field)?,
        ),
        _ => {
            return Err(PrismError::InvalidInput(
                "give --cache DIR, or --model PATH and --data PATH".into(),
            ));
        }
    };
    if args.held_out_tokens > 0 && matches!(source, Source::Model(..)) {
        return Err(PrismError::InvalidInput(
            "--held-out-tokens needs --cache (held-out rows are the cache's last ones)".into(),
        ));
    }
    if args.resume && matches!(source, Source::Model(..)) {
        eprintln!(
            "note: resuming from a model stream re-harvests and skips the batches already \
             trained on; the skipped rows equal the original ones only with a cache (--cache)"
        );
    }
    let widths: Vec<usize> = match &source {
        Source::Cache(store) => hooks
            .iter()
            .map(|h| {
                let i = store.hook_index(&h.to_string())?;
                Ok(store.manifest.hooks[i].d)
            })
            .collect::<Result<_>>()?,
        Source::Model(model, _) => {
            let shape = model.config().shape();
            hooks
                .iter()
                .map(|h| {
                    h.validate(&shape)?;
                    Ok(h.activation_shape(&shape, 1, 1).iter().product())
                })
                .collect::<Result<_>>()?
        }
    };
    let mut specs = args.configs(&|i| widths[i], &hooks, &outputs)?;
    if let [single] = &mut specs[..] {
        single.dir = args.out.clone();
    }
    let mut runs = Run::open_group(specs, args.resume, &engine)?;
    let steps = args.steps();
    let start = runs[0].trainer.step;
    eprintln!(
        "training {} dictionar{} for {steps} steps of {} tokens on the {engine} engine{}",
        runs.len(),
        if runs.len() == 1 { "y" } else { "ies" },
        args.batch,
        if start > 0 {
            format!(" (resuming at step {start})")
        } else {
            String::new()
        }
    );
    let bar = ProgressBar::new(steps).with_style(
        ProgressStyle::with_template(
            "{spinner} step {pos}/{len} [{bar:30}] {msg}  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_position(start);
    let t0 = Instant::now();
    let batch = args.batch;
    let on_step = |runs: &[Run], logs: &[prism_sae::StepLog]| {
        let l = &logs[0];
        let tok_s = (l.step - start) as f64 * batch as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "loss {:.4}  L0 {:.1}  dead {}  {:.0} tok/s{}",
            l.loss,
            l.l0,
            l.dead,
            tok_s,
            if runs.len() > 1 {
                format!("  (1 of {} shown)", runs.len())
            } else {
                String::new()
            }
        ));
        bar.set_position(l.step);
    };
    match &source {
        Source::Cache(store) => {
            let held_out = args.held_out_tokens;
            // `train_on_store` refuses a held-out tail that leaves nothing to train on.
            if let Some(rows) = store.len().checked_sub(held_out).filter(|&r| r > 0) {
                let epochs = (steps as f64 * batch as f64) / rows as f64;
                if epochs > 1.0 {
                    eprintln!(
                        "{rows} rows to train on: {epochs:.1} epochs, each in a new shuffled order"
                    );
                }
            }
            let config = StoreTrainingConfig::new(
                hooks.iter().map(ToString::to_string).collect(),
                batch,
                steps,
            )
            .with_checkpoint_every(args.checkpoint_every)
            .with_seed(runs[0].trainer.config.seed)
            .with_held_out(held_out);
            train_on_store(store, &mut runs, &config, &device, on_step)?;
        }
        Source::Model(model, corpus) => {
            let harvester = Harvester::new(model, hooks.clone(), false)?;
            let window = WindowConfig {
                ctx: args.ctx,
                ..Default::default()
            };
            let wins = windows(corpus, &model.tokenizer, window.clone())?;
            let seed = runs[0].trainer.config.seed;
            let config = BufferConfig::new()
                .with_n_ctxs(args.n_ctxs)
                .with_ctx(args.ctx)
                .with_batch(batch)
                .with_seed(seed);
            let mut buffer = ActivationBuffer::new(harvester, wins, &config);
            for _ in 0..start {
                buffer.next_batch()?;
            }
            let stream = std::iter::from_fn(|| buffer.next_batch().transpose());
            let options = FitOptions {
                steps,
                checkpoint_every: args.checkpoint_every,
                convergence: None,
            };
            fit(&mut runs, &widths, stream, &options, &device, on_step)?;
            let data = TrainingData::stream(&corpus.root, &window, buffer.windows_consumed);
            for r in &runs {
                Sae::record_in_cfg(&r.dir, TRAINING_DATA_KEY, data.to_json())?;
            }
        }
    }
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let summary: Vec<_> = runs
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "dir": r.dir.display().to_string(),
                "steps": r.trainer.step,
                "tokens": r.trainer.tokens,
                "d_in": r.trainer.config.d_in,
                "d_sae": r.trainer.config.d_sae,
                "d_out": r.trainer.config.output_width(),
                "hook": r.trainer.config.hook_name,
                "hook_out": r.trainer.config.hook_name_out,
                "skip": r.trainer.config.skip,
                "architecture": r.trainer.config.architecture.name(),
            })
        })
        .collect();
    let trained = runs[0].trainer.step.saturating_sub(start) * batch as u64;
    let out = json!({
        "dictionaries": summary,
        "engine": engine.to_string(),
        "device": args.device,
        "seconds": secs,
        "tokens_per_s": trained as f64 * runs.len() as f64 / secs.max(1e-9),
    });
    if args.json {
        println!("{out}");
    } else {
        for r in &runs {
            eprintln!(
                "wrote {} ({} steps) to {}",
                r.name,
                r.trainer.step,
                r.dir.display()
            );
        }
        eprintln!(
            "{:.0} dictionary-tokens/s over {:.1}s",
            out["tokens_per_s"].as_f64().unwrap_or(0.0),
            secs
        );
    }
    Ok(())
}

/// `prism curves` arguments.
#[derive(clap::Args)]
pub struct CurvesArgs {
    /// Run directories (each with a log.jsonl), or a `prism train --out` directory holding
    /// several runs.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Where the plots go.
    #[arg(long, default_value = "curves")]
    out: PathBuf,
    /// Print the last measurement of each run as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// The run directories under `path`: itself when it holds a log, else its subdirectories
/// that do, in name order.
fn run_dirs(path: &std::path::Path) -> Result<Vec<PathBuf>> {
    if path.join(LOG_FILE).exists() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| PrismError::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(LOG_FILE).exists())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(PrismError::InvalidInput(format!(
            "{}: no {LOG_FILE} in it or in its subdirectories",
            path.display()
        )));
    }
    Ok(dirs)
}

pub fn curves(args: &CurvesArgs) -> Result<()> {
    let mut runs = Vec::new();
    for path in &args.runs {
        for dir in run_dirs(path)? {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string());
            runs.push(RunLog {
                name,
                entries: read_log(&dir)?,
            });
        }
    }
    let written = plot_convergence(&runs, &args.out, "")?;
    let last: Vec<_> = runs
        .iter()
        .map(|r| {
            let point = r.entries.iter().rev().find(|e| e.held_out.is_some());
            json!({
                "name": r.name,
                "tokens": point.map(|e| e.tokens),
                "held_out": point.and_then(|e| e.held_out.clone()),
            })
        })
        .collect();
    if args.json {
        println!("{}", json!({ "runs": last, "plots": written }));
    } else {
        for (r, l) in runs.iter().zip(&last) {
            eprintln!("{}: last measured {}", r.name, l["held_out"]);
        }
        eprintln!("wrote {} plots to {}", written.len(), args.out.display());
    }
    Ok(())
}
