//! `prism eval` and `prism similarity`: judging and comparing dictionaries.

use std::path::PathBuf;

use prism_cache::{Corpus, EvalStart, HeldOut, HeldOutRequest, TrainingData, held_out_windows};
use prism_core::{Dictionary, HookPoint, PrismError, Result};
use prism_models::TokenBatch;
use prism_sae::{Loaded, Sae};
use prism_similarity::{SimilarityOptions, compare};
use prism_stats::{
    BrowserOptions, CollectOptions, Evaluation, FeatureSelection, Placement, PruneRule,
    ScanOptions, build_feature_browser, evaluate, features_to_keep,
};
use serde_json::json;

use crate::forward::ModelArgs;
use crate::progress::bar;

/// `prism eval` arguments.
#[derive(clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: EvalData,
    /// Also draw the feature-density histogram to this PNG (and an SVG beside it).
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// Which dictionary, and where and on what to evaluate it (shared by `eval`, `prune`, `features`).
#[derive(clap::Args)]
pub struct EvalData {
    /// Dictionary: a SAELens directory (`cfg.json` + `sae_weights.safetensors`), a
    /// dictionary_learning `ae.pt` file or directory (`ae.pt` + `config.json`), a published
    /// suite's folder, or any of them on the hub as `ORG/NAME/PATH` or a SAELens registry name.
    /// `prism eval` also takes transcoders (docs/transcoders.md).
    #[arg(long)]
    sae: PathBuf,
    /// Corpus to evaluate on.
    #[arg(long)]
    data: PathBuf,
    /// Hook point (default: the dictionary's own, from cfg.json or config.json); for a
    /// transcoder, the hook it reads.
    #[arg(long)]
    hook: Option<String>,
    /// Tokens to evaluate on.
    #[arg(long, default_value_t = 8192)]
    tokens: u64,
    /// Tokens per window.
    #[arg(long, default_value_t = 128)]
    ctx: usize,
    /// Start after this many windows. Default: right after the dictionary's training data
    /// (`training_data` in its cfg.json), so that evaluation runs on held-out text; a start
    /// inside the training data is refused.
    #[arg(long)]
    skip_windows: Option<usize>,
    /// Evaluate even where the text may overlap the training data (a dictionary that records
    /// none, or a --skip-windows inside it).
    #[arg(long)]
    allow_overlap: bool,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
}

impl EvalData {
    /// The dictionary, on `device`.
    fn load(&self, device: &burn::tensor::Device) -> Result<Sae> {
        crate::hub::open_sae(&self.sae, self.hook.as_deref(), device)
    }

    /// The hook point: `--hook`, else the dictionary's own, checked against the model.
    fn hook(&self, sae: &Sae, model: &prism_models::Model) -> Result<HookPoint> {
        let explicit = self.hook.as_deref().map(str::parse).transpose()?;
        sae.hook_in(&model.config().shape(), explicit)
    }

    /// Where the dictionary sits on the model: `--hook` (or its own hook) for an autoencoder;
    /// for a transcoder, the hook it reads (`--hook` or its own) and the one it writes.
    fn placement(&self, dict: &Loaded, model: &prism_models::Model) -> Result<Placement> {
        match dict {
            Loaded::Autoencoder(sae) => Ok(self.hook(sae, model)?.into()),
            Loaded::Transcoder(t) => {
                let explicit = self.hook.as_deref().map(str::parse).transpose()?;
                let (reads, writes) = t.hooks(&model.config().shape(), explicit, None)?;
                Placement::transcoding(reads, writes)
            }
        }
    }

    /// Held-out evaluation windows for a dictionary with configuration `cfg` (its
    /// `training_data`; see `prism_cache::held_out_windows`).
    fn windows(
        &self,
        model: &prism_models::Model,
        cfg: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<HeldOut> {
        let training: Vec<TrainingData> = TrainingData::from_cfg(cfg)?.into_iter().collect();
        let corpus = Corpus::open(&self.data, "text")?;
        let held = held_out_windows(
            &corpus,
            &model.tokenizer,
            &HeldOutRequest {
                ctx: self.ctx,
                tokens: self.tokens,
                start: match self.skip_windows {
                    Some(k) => EvalStart::SkipWindows(k),
                    None => EvalStart::AfterTraining,
                },
                training: &training,
                allow_overlap: self.allow_overlap,
            },
        )?;
        eprintln!(
            "evaluating on {} windows of {} tokens after the first {}{}",
            held.windows.len(),
            self.ctx,
            held.skipped,
            if training.is_empty() {
                ""
            } else {
                " (the dictionary's training data ends there)"
            }
        );
        Ok(held)
    }
}

/// Evaluates `dict` at `at` on the held-out corpus slice `data` describes (after the training
/// data its configuration `cfg` records), with a progress bar.
fn evaluate_on_corpus(
    model: &prism_models::Model,
    dict: &dyn Dictionary,
    at: Placement,
    cfg: &serde_json::Map<String, serde_json::Value>,
    data: &EvalData,
) -> Result<(Evaluation, usize)> {
    let HeldOut {
        windows: wins,
        skipped,
    } = data.windows(model, cfg)?;
    let bar = crate::progress::bar(wins.len() as u64, "evaluating", "windows");
    let e = evaluate(
        model,
        dict,
        at,
        TokenBatch::batches(&wins, data.batch, model.pad_id()),
        |b| bar.inc(b.batch as u64),
    )?;
    bar.finish_and_clear();
    Ok((e, skipped))
}

fn evaluation_json(e: &Evaluation) -> serde_json::Value {
    serde_json::to_value(e).unwrap_or_default()
}

fn print_metrics(title: &str, v: &serde_json::Value) {
    println!("{title}");
    for (k, x) in v.as_object().into_iter().flatten() {
        if let Some(x) = x.as_f64() {
            println!("  {k:<30} {x:.6}");
        }
    }
}

pub fn eval(args: &EvalArgs) -> Result<()> {
    let model = args.model.load()?;
    let dict =
        crate::hub::open_dictionary(&args.data.sae, args.data.hook.as_deref(), model.device())?;
    let at = args.data.placement(&dict, &model)?;
    let (e, skipped) = match &dict {
        Loaded::Autoencoder(sae) => {
            evaluate_on_corpus(&model, sae, at, sae.extra_cfg(), &args.data)?
        }
        Loaded::Transcoder(t) => evaluate_on_corpus(&model, t, at, t.extra_cfg(), &args.data)?,
    };
    let hook = at.reads;
    if let Some(png) = &args.plot {
        let title = format!("feature density at {hook}");
        let svg = png.with_extension("svg");
        prism_stats::plot_density_histogram(
            &e.reconstruction.feature_density,
            e.reconstruction.tokens,
            &title,
            Some(png),
            Some(&svg),
            (800, 480),
        )?;
        eprintln!("density histogram: {} and {}", png.display(), svg.display());
    }
    let mut out = evaluation_json(&e);
    if let Some(o) = out.as_object_mut() {
        o.insert("hook".into(), json!(hook.to_string()));
        if at.writes != at.reads {
            // A transcoder: the reconstruction metrics compare its output with this hook's.
            o.insert("hook_out".into(), json!(at.writes.to_string()));
        }
        o.insert("sae".into(), json!(args.data.sae.display().to_string()));
        o.insert("skipped_windows".into(), json!(skipped));
    }
    if args.model.json {
        println!("{out}");
    } else {
        print_metrics(
            &format!(
                "{} on {} tokens at {at}:",
                args.data.sae.display(),
                e.reconstruction.tokens
            ),
            &out,
        );
    }
    Ok(())
}

/// `prism prune` arguments.
#[derive(clap::Args)]
pub struct PruneArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: EvalData,
    /// Remove features firing on more than this fraction of tokens.
    #[arg(long, group = "rule")]
    max_density: Option<f64>,
    /// Remove the N densest features.
    #[arg(long, group = "rule")]
    top_n: Option<usize>,
    /// Remove densest features until the expected L0 is at most this.
    #[arg(long, group = "rule")]
    target_l0: Option<f64>,
    /// Where to write the pruned dictionary.
    #[arg(long)]
    out: PathBuf,
}

pub fn prune(args: &PruneArgs) -> Result<()> {
    let rule = match (args.max_density, args.top_n, args.target_l0) {
        (Some(p), None, None) => PruneRule::MaxDensity(p),
        (None, Some(n), None) => PruneRule::TopN(n),
        (None, None, Some(l)) => PruneRule::TargetL0(l),
        _ => {
            return Err(PrismError::InvalidInput(
                "give exactly one of --max-density, --top-n, --target-l0".into(),
            ));
        }
    };
    let model = args.model.load()?;
    let sae = args.data.load(model.device())?;
    let hook = args.data.hook(&sae, &model)?;
    let (before, _) = evaluate_on_corpus(&model, &sae, hook.into(), sae.extra_cfg(), &args.data)?;
    let keep = features_to_keep(&before.reconstruction.feature_density, rule)?;
    let pruned = sae.keep_features(&keep)?;
    pruned.save(&args.out)?;
    // The pruned dictionary is evaluated on the same text as the original.
    let (after, _) = evaluate_on_corpus(&model, &pruned, hook.into(), sae.extra_cfg(), &args.data)?;
    let removed = sae.d_sae() - keep.len();
    if args.model.json {
        println!(
            "{}",
            json!({"hook": hook.to_string(), "removed": removed, "kept": keep.len(), "out": args.out.display().to_string(),
                   "before": evaluation_json(&before), "after": evaluation_json(&after)})
        );
    } else {
        println!(
            "removed {removed} of {} features ({rule:?}); pruned dictionary in {}",
            sae.d_sae(),
            args.out.display()
        );
        print_metrics("before:", &evaluation_json(&before));
        print_metrics("after:", &evaluation_json(&after));
    }
    Ok(())
}

/// `prism similarity` arguments.
#[derive(clap::Args)]
pub struct SimilarityArgs {
    /// Dictionary A (the "ground truth" for mmcs_a_to_b): SAELens directory or dictionary_learning ae.pt.
    #[arg(long)]
    a: PathBuf,
    /// Dictionary B.
    #[arg(long)]
    b: PathBuf,
    /// cpu, or wgpu / ndarray / cuda in a build with that cargo feature.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub fn similarity(args: &SimilarityArgs) -> Result<()> {
    let device = prism_core::device(&args.device)?;
    let (a, b) = (
        crate::hub::open_sae(&args.a, None, &device)?,
        crate::hub::open_sae(&args.b, None, &device)?,
    );
    let s = compare(&a, &b, &SimilarityOptions::default())?;
    let matching = s.matching.as_ref();
    let hist = prism_similarity::histogram(&s.max_cos_a, -1.0, 1.0, 20);
    if args.json {
        println!(
            "{}",
            json!({
                "mmcs_a_to_b": s.mmcs_a_to_b,
                "mmcs_b_to_a": s.mmcs_b_to_a,
                "matched_mean_cos": s.matched_mean_cos(),
                "matching_method": matching.map(|m| m.method),
                "matched_pairs": matching.map(|m| m.pairs.len()),
                "max_cos_a_histogram": hist,
            })
        );
    } else {
        println!(
            "mean max cosine similarity A→B {:.4}, B→A {:.4}",
            s.mmcs_a_to_b, s.mmcs_b_to_a
        );
        if let Some(m) = matching {
            println!(
                "one-to-one matching ({}): {} pairs, mean cosine {:.4}",
                m.method,
                m.pairs.len(),
                m.mean_cos
            );
        }
    }
    Ok(())
}

/// `prism features` arguments.
#[derive(clap::Args)]
pub struct FeaturesArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: EvalData,
    /// Top contexts per feature (one per window).
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Contexts sampled uniformly from each activation quantile band.
    #[arg(long, default_value_t = 4)]
    per_band: usize,
    /// Tokens shown either side of a context's activating token.
    #[arg(long, default_value_t = 12)]
    radius: usize,
    /// Features to show (comma-separated); default: every feature.
    #[arg(long, value_delimiter = ',')]
    features: Vec<usize>,
    /// Nearest features by decoder cosine listed per feature.
    #[arg(long, default_value_t = 8)]
    nearest: usize,
    /// Another dictionary over the same space (e.g. another seed): each feature's nearest
    /// features in it are listed too.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// The HTML page to write; its data goes beside it in `<stem>.data/`, and a JSON summary
    /// (density, fires, max activation per feature) in `<stem>.json`.
    #[arg(long)]
    out: PathBuf,
}

pub fn features(args: &FeaturesArgs) -> Result<()> {
    let model = args.model.load()?;
    let sae = args.data.load(model.device())?;
    let other = args
        .compare
        .as_ref()
        .map(|p| crate::hub::open_sae(p, args.data.hook.as_deref(), model.device()))
        .transpose()?;
    let other_name = args.compare.as_ref().map(|p| p.display().to_string());
    let hook = args.data.hook(&sae, &model)?;
    let wins = args.data.windows(&model, sae.extra_cfg())?.windows;
    let title = format!("{} at {hook}", args.data.sae.display());
    let options = BrowserOptions {
        title: &title,
        scan: ScanOptions {
            selection: if args.features.is_empty() {
                FeatureSelection::All
            } else {
                FeatureSelection::Only(args.features.clone())
            },
            collect: CollectOptions {
                top: args.top,
                per_band: args.per_band,
                radius: args.radius,
                ..CollectOptions::default()
            },
            windows_per_forward: args.data.batch,
        },
        nearest: args.nearest,
        other: other_name
            .as_deref()
            .zip(other.as_ref().map(|o| o as &dyn Dictionary)),
    };
    let pb = bar(wins.len() as u64, "scanning features", "windows");
    let browser = build_feature_browser(&model, &sae, hook, &wins, &args.out, &options, |done| {
        pb.set_position(done as u64)
    })?;
    pb.finish_and_clear();
    let json_path = args.out.with_extension("json");
    let summary = json!({
        "hook": hook.to_string(),
        "tokens": browser.scan.tokens,
        "windows": wins.len(),
        "page": args.out,
        "data": browser.files.data,
        "bytes": browser.files.bytes,
        "features": browser.scan.features.iter().map(|f| json!({
            "feature": f.feature, "fires": f.fires, "density": f.density,
            "max_activation": f.max_activation,
        })).collect::<Vec<_>>(),
    });
    let json =
        serde_json::to_string(&summary).map_err(|e| PrismError::InvalidInput(e.to_string()))?;
    prism_core::atomic_write(&json_path, json.as_bytes())?;
    if args.model.json {
        println!("{json}");
    } else {
        eprintln!(
            "{} features over {} tokens: {} ({} data files, {:.1} MB) and {}",
            browser.scan.features.len(),
            browser.scan.tokens,
            args.out.display(),
            browser.files.files,
            browser.files.bytes as f64 / 1e6,
            json_path.display()
        );
    }
    Ok(())
}
