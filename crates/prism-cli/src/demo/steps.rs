//! The demo's steps, each a small function over the library API.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use prism_cache::{
    ActivationStore, CacheOptions, Corpus, EvalStart, HeldOutRequest, StoreTrainingConfig,
    TrainingData, WindowConfig, build_cache, held_out_windows, train_on_store,
};
use prism_core::{FloatDtype, HookPoint, PrismError, Result};
use prism_models::{Model, TokenBatch};
use prism_sae::Sae;
use prism_sae::train::{ArchitectureConfig, EngineChoice, Run, RunSpec, TrainConfig, read_log};
use prism_similarity::{MatchingMethod, SimilarityOptions, compare, compare_directions};
use prism_stats::{
    BrowserOptions, Evaluation, PruneRule, RunLog, XyPlot, build_feature_browser,
    density_overlay_series, evaluate_many, features_to_keep, plot_convergence,
    plot_density_histogram, plot_xy, sample_across_density_bands, top_activating,
};

use super::{DemoArgs, Plan};

/// `args` with a model named on the command line (`--model smollm2|gemma3`) replaced by its
/// file in `assets/`, fetched when missing; a path is kept as given.
pub fn with_named_model(args: &DemoArgs) -> Result<DemoArgs> {
    let assets = Path::new("assets");
    let named = match args.model.to_str() {
        Some("smollm2") => (
            crate::fetch::Asset::Smollm2,
            crate::fetch::smollm2_path(assets),
        ),
        Some("gemma3") => (
            crate::fetch::Asset::Gemma3,
            crate::fetch::gemma3_path(assets),
        ),
        _ => return Ok(args.clone()),
    };
    let (asset, path) = named;
    if !path.exists() {
        eprintln!("fetching {}", path.display());
        crate::fetch::fetch(asset, assets)?;
    }
    Ok(DemoArgs {
        model: path,
        ..args.clone()
    })
}

/// Downloads the default assets when they are the ones asked for and missing.
pub fn ensure_assets(args: &DemoArgs) -> Result<()> {
    let defaults = DemoArgs {
        preset: super::Preset::Default,
        quick: false,
        out: PathBuf::new(),
        model: "assets/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        data: "assets/python-docs".into(),
        countries: "assets/geonames-countries.json".into(),
        datasets: "assets/datasets".into(),
        hook: None,
        tokens: None,
        eval_tokens: None,
        epochs: None,
        expansion: Vec::new(),
        l1: Vec::new(),
        device: String::new(),
        keep_cache: false,
        resume: false,
    };
    if args.model == defaults.model && !args.model.exists() {
        eprintln!("fetching the default model");
        crate::fetch::fetch(crate::fetch::Asset::Smollm2, Path::new("assets"))?;
    }
    if args.data == defaults.data && !args.data.exists() {
        eprintln!("fetching the default corpus");
        crate::fetch::fetch(crate::fetch::Asset::PythonDocs, Path::new("assets"))?;
    }
    if args.countries == defaults.countries && !args.countries.exists() {
        eprintln!("fetching GeoNames' country list");
        crate::fetch::fetch(crate::fetch::Asset::Geonames, Path::new("assets"))?;
    }
    if args.datasets == defaults.datasets && !args.datasets.join("cities.csv").exists() {
        eprintln!("building the statement datasets from GeoNames");
        crate::fetch::fetch(crate::fetch::Asset::Cities, Path::new("assets"))?;
    }
    Ok(())
}

fn bar(len: u64, what: &str) -> indicatif::ProgressBar {
    crate::progress::bar(len, what, "")
}

/// What the report needs about one dictionary.
pub struct DictResult {
    pub name: String,
    pub dir: PathBuf,
    pub sae: Sae,
    pub eval: Evaluation,
    /// Which model it was evaluated on.
    pub on: String,
    pub density_png: PathBuf,
    pub traits: Option<Traits>,
}

/// What a dictionary's features respond to, on a sample across density bands.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Traits {
    /// Fraction of all features firing on more than 10% of tokens.
    pub frac_dense: f64,
    /// Features inspected.
    pub sampled: usize,
    /// Of those, how many have the same token at the peak of every top context.
    pub single_token: usize,
    /// Feature, density, and its top contexts' peak tokens.
    pub examples: Vec<(usize, f64, Vec<String>)>,
}

/// One similarity comparison.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SimRow {
    /// What is compared: `seeds`, `random_all`, `random_but_embeddings` or `sizes`.
    pub kind: String,
    pub a: String,
    pub b: String,
    pub mmcs_a_to_b: f64,
    pub mmcs_b_to_a: f64,
    /// The same over features that fired on the evaluation tokens in both dictionaries.
    pub alive_a_to_b: f64,
    pub alive_b_to_a: f64,
}

/// Dictionaries trained from one stream, with their logs and convergence plots.
pub struct TrainedGroup {
    /// `(name, directory)` in the order asked for.
    pub dicts: Vec<(String, PathBuf)>,
    /// Each run's log.
    pub logs: Vec<RunLog>,
    /// The convergence plots (PNG; an SVG beside each).
    pub curves: Vec<PathBuf>,
}

/// One dictionary to train.
#[derive(Clone, Debug, PartialEq)]
pub struct DictSpec {
    /// Its directory's name under `dictionaries/`.
    pub name: String,
    /// Features.
    pub features: usize,
    /// L1 coefficient.
    pub l1: f32,
    /// Seed of its initialisation.
    pub seed: u64,
}

/// The demo's training configuration for one dictionary: ReLU + L1 with
/// [`TrainConfig::for_steps`]' schedule, inputs normalised, the plan's learning rate.
pub fn dictionary_config(
    plan: &Plan,
    d: usize,
    m: usize,
    l1: f32,
    seed: u64,
    steps: u64,
) -> TrainConfig {
    let mut c = TrainConfig::for_steps(ArchitectureConfig::relu(l1), d, m, steps);
    c.seed = seed;
    c.lr = plan.lr;
    c.normalize_activations = true;
    c.hook_name = Some(plan.hook.clone());
    c
}

/// Shared settings of the steps.
pub struct Stage<'a> {
    args: &'a DemoArgs,
    plan: &'a Plan,
    corpus: &'a Corpus,
    device: &'a Device,
    engine: EngineChoice,
    hook: HookPoint,
}

impl<'a> Stage<'a> {
    pub fn new(
        args: &'a DemoArgs,
        plan: &'a Plan,
        corpus: &'a Corpus,
        device: &'a Device,
        hook: HookPoint,
    ) -> Result<Self> {
        Ok(Self {
            engine: EngineChoice::for_device(&args.device)?,
            args,
            plan,
            corpus,
            device,
            hook,
        })
    }

    /// The training engine.
    pub fn engine(&self) -> &EngineChoice {
        &self.engine
    }

    /// Harvests `tokens` activation vectors at the hook into `out/cache/<label>` (the last
    /// `plan.held_out` of them are kept out of training).
    pub fn harvest(&self, model: &Model, label: &str, tokens: u64) -> Result<ActivationStore> {
        let dir = self.args.out.join("cache").join(label);
        let options = CacheOptions {
            hooks: vec![self.hook],
            window: WindowConfig {
                ctx: self.plan.ctx,
                ..Default::default()
            },
            drop_bos: false,
            dtype: FloatDtype::F32,
            target_tokens: tokens,
            windows_per_shard: 256,
            windows_per_forward: 8,
            stop_after_shards: None,
        };
        let pb = bar(tokens, &format!("harvesting {label}"));
        build_cache(model, self.corpus, &options, &dir, &mut |p| {
            pb.set_position(p.tokens)
        })?;
        pb.finish_and_clear();
        let store = ActivationStore::open(&dir)?;
        if store.is_empty() {
            return Err(PrismError::InvalidInput(format!(
                "{}: the corpus gave no activations",
                self.args.data.display()
            )));
        }
        Ok(store)
    }

    /// Trains ReLU+L1 dictionaries from shuffled batches over all but the last
    /// `plan.held_out` rows of `store` (`plan.epochs` passes), measuring convergence on those
    /// last rows; plots the curves as `plots/curves/{label}_*.png`.
    pub fn train(
        &self,
        store: &ActivationStore,
        specs: &[DictSpec],
        label: &str,
    ) -> Result<TrainedGroup> {
        let d = store.manifest.hooks[0].d;
        let batch = self.plan.batch;
        let rows = store.len().saturating_sub(self.plan.held_out);
        let steps = (rows / batch as u64 * self.plan.epochs).max(1);
        let runs = specs
            .iter()
            .map(|s| RunSpec {
                name: s.name.clone(),
                dir: self.args.out.join("dictionaries").join(&s.name),
                input: 0,
                output: None,
                config: dictionary_config(self.plan, d, s.features, s.l1, s.seed, steps),
            })
            .collect();
        let mut runs = Run::open_group(runs, self.args.resume, &self.engine)?;
        // A resumed group continues at its checkpoint's step (`fit` checks that every run of
        // the group is there) on the same batches an uninterrupted run would draw.
        let start = runs[0].trainer.step;
        let config =
            StoreTrainingConfig::new(vec![store.manifest.hooks[0].name.clone()], batch, steps)
                .with_checkpoint_every(self.plan.checkpoint_every)
                .with_seed(1000)
                .with_held_out(self.plan.held_out)
                .with_first_measurement(Some((4 * batch as u64).max(8192)));
        let names = specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>();
        let pb = bar(steps, &format!("training {}", names.join(", ")));
        pb.set_position(start);
        let t0 = std::time::Instant::now();
        train_on_store(store, &mut runs, &config, self.device, |_, logs| {
            let l = &logs[0];
            let rate =
                (l.step - start) as f64 * batch as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            let seeds = logs[0]
                .held_out
                .as_ref()
                .and_then(|h| h.mmcs_seeds)
                .map(|m| format!(" seeds' MMCS {m:.3}"))
                .unwrap_or_default();
            pb.set_message(format!(
                "L0 {:.1} dead {}{seeds} {:.0} tok/s",
                l.l0, l.dead, rate
            ));
            pb.set_position(l.step);
        })?;
        pb.finish_and_clear();
        let mut logs = Vec::new();
        for r in &runs {
            logs.push(RunLog {
                name: r.name.clone(),
                entries: read_log(&r.dir)?,
            });
        }
        let curves = plot_convergence(
            &logs,
            &self.args.out.join("plots").join("curves"),
            &format!("{label}_"),
        )?;
        Ok(TrainedGroup {
            dicts: runs.into_iter().map(|r| (r.name, r.dir)).collect(),
            logs,
            curves,
        })
    }

    /// Held-out evaluation windows: after the training data of every cache in `caches`.
    pub fn eval_windows(
        &self,
        model: &Model,
        caches: &[&ActivationStore],
        tokens: u64,
    ) -> Result<Vec<Vec<u32>>> {
        let training = caches
            .iter()
            .map(|c| TrainingData::cache(c))
            .collect::<Result<Vec<_>>>()?;
        Ok(held_out_windows(
            self.corpus,
            &model.tokenizer,
            &HeldOutRequest {
                ctx: self.plan.ctx,
                tokens,
                start: EvalStart::AfterTraining,
                training: &training,
                allow_overlap: false,
            },
        )?
        .windows)
    }

    /// Every metric of each dictionary on `windows` (one pass over the text for all of
    /// them), and each one's density histogram as a PNG.
    pub fn evaluate_all(
        &self,
        model: &Model,
        dicts: &[(String, PathBuf)],
        windows: &[Vec<u32>],
        on: &str,
    ) -> Result<Vec<DictResult>> {
        let saes = dicts
            .iter()
            .map(|(_, dir)| Sae::load(dir, self.device))
            .collect::<Result<Vec<_>>>()?;
        let names: Vec<&str> = dicts.iter().map(|(n, _)| n.as_str()).collect();
        let pb = bar(
            windows.len() as u64,
            &format!("evaluating {}", names.join(", ")),
        );
        let refs: Vec<&dyn prism_core::Dictionary> = saes
            .iter()
            .map(|s| s as &dyn prism_core::Dictionary)
            .collect();
        let evals = evaluate_many(
            model,
            &refs,
            self.hook,
            TokenBatch::batches(windows, 8, model.pad_id()),
            |b| pb.inc(b.batch as u64),
        )?;
        pb.finish_and_clear();
        let plots = self.args.out.join("plots");
        std::fs::create_dir_all(&plots).map_err(|e| PrismError::io(&plots, e))?;
        let mut out = Vec::new();
        for (((name, dir), sae), eval) in dicts.iter().zip(saes).zip(evals) {
            let density_png = plots.join(format!("{name}_density.png"));
            plot_density_histogram(
                &eval.reconstruction.feature_density,
                eval.reconstruction.tokens,
                &format!("{name} ({on}): log10 feature density"),
                Some(&density_png),
                None,
                (900, 500),
            )?;
            out.push(DictResult {
                name: name.clone(),
                dir: dir.clone(),
                sae,
                eval,
                on: on.into(),
                density_png,
                traits: None,
            });
        }
        Ok(out)
    }

    /// Removes each base dictionary's densest features until its L0 is at most `target_l0`,
    /// and evaluates the pruned dictionaries.
    pub fn prune_all(
        &self,
        model: &Model,
        bases: &[DictResult],
        target_l0: f64,
        windows: &[Vec<u32>],
    ) -> Result<Vec<DictResult>> {
        let mut pruned_dicts = Vec::new();
        for base in bases {
            let keep = features_to_keep(
                &base.eval.reconstruction.feature_density,
                PruneRule::TargetL0(target_l0),
            )?;
            let mut pruned = base.sae.keep_features(&keep)?;
            pruned
                .extra_cfg_mut()
                .insert("pruned_from".into(), serde_json::json!(base.name));
            pruned
                .extra_cfg_mut()
                .insert("pruned_target_l0".into(), serde_json::json!(target_l0));
            let name = format!("{}_pruned", base.name);
            let dir = self.args.out.join("dictionaries").join(&name);
            pruned.save(&dir)?;
            pruned_dicts.push((name, dir));
        }
        self.evaluate_all(model, &pruned_dicts, windows, "real model")
    }

    /// Density statistics and, on features sampled across density bands, whether each one's
    /// top contexts all peak on the same token.
    pub fn feature_traits(
        &self,
        model: &Model,
        r: &DictResult,
        windows: &[Vec<u32>],
    ) -> Result<Traits> {
        let density = &r.eval.reconstruction.feature_density;
        let frac_dense = density.iter().filter(|&&d| d > 0.1).count() as f64 / density.len() as f64;
        let features = sample_across_density_bands(density, self.plan.context_features);
        let reports = top_activating(model, &r.sae, self.hook, windows, &features, 8, 8)?;
        let mut single_token = 0;
        let mut examples = Vec::new();
        for rep in &reports {
            let peaks: Vec<String> = rep.top.iter().map(|c| c.peak_token().to_string()).collect();
            if peaks.len() >= 3 && peaks.iter().all(|p| *p == peaks[0]) {
                single_token += 1;
            }
            if examples.len() < 8 {
                examples.push((rep.feature, rep.density, peaks));
            }
        }
        Ok(Traits {
            frac_dense,
            sampled: reports.len(),
            single_token,
            examples,
        })
    }

    /// MMCS between `a` and `b` over every feature and over features alive (fired on the
    /// evaluation tokens) in both.
    pub fn similarity(&self, kind: &str, a: &DictResult, b: &DictResult) -> Result<SimRow> {
        let options = SimilarityOptions {
            matching: MatchingMethod::None,
            ..SimilarityOptions::default()
        };
        let all = compare(&a.sae, &b.sae, &options)?;
        let alive = |r: &DictResult| {
            let keep: Vec<usize> = (0..r.eval.reconstruction.feature_density.len())
                .filter(|&j| r.eval.reconstruction.feature_density[j] > 0.0)
                .collect();
            r.sae
                .w_dec()
                .clone()
                .select(0, prism_core::index_tensor(&keep, self.device))
        };
        let live = compare_directions(alive(a), alive(b), &options)?;
        Ok(SimRow {
            kind: kind.into(),
            a: a.name.clone(),
            b: b.name.clone(),
            mmcs_a_to_b: all.mmcs_a_to_b,
            mmcs_b_to_a: all.mmcs_b_to_a,
            alive_a_to_b: live.mmcs_a_to_b,
            alive_b_to_a: live.mmcs_b_to_a,
        })
    }

    /// Every dictionary's density histogram on one plot (`plots/densities.png` and `.svg`).
    pub fn density_overlay<'r>(
        &self,
        all: impl Iterator<Item = &'r DictResult>,
    ) -> Result<PathBuf> {
        let series = density_overlay_series(
            &all.map(|r| {
                (
                    r.name.clone(),
                    r.eval.reconstruction.feature_density.clone(),
                    r.eval.reconstruction.tokens,
                )
            })
            .collect::<Vec<_>>(),
        );
        let png = self.args.out.join("plots").join("densities.png");
        plot_xy(
            &series,
            &XyPlot {
                title: "Feature densities of every dictionary (share of live features per bin)",
                x: "log10(feature density)",
                y: "share of live features",
                log_x: false,
            },
            Some(&png),
            Some(&png.with_extension("svg")),
            (1000, 560),
        )?;
        Ok(png)
    }

    /// The feature browser of every feature of `r` over `windows`, with each feature's nearest
    /// features in `other` (the other seed's dictionary).
    pub fn browser(
        &self,
        model: &Model,
        r: &DictResult,
        other: &DictResult,
        windows: &[Vec<u32>],
    ) -> Result<PathBuf> {
        let path = self.args.out.join("features.html");
        let pb = bar(
            windows.len() as u64,
            &format!("feature browser of {}", r.name),
        );
        let title = format!("{} at {}", r.name, self.hook);
        let options = BrowserOptions {
            title: &title,
            other: Some((&other.name, &other.sae)),
            ..BrowserOptions::default()
        };
        build_feature_browser(model, &r.sae, self.hook, windows, &path, &options, |done| {
            pb.set_position(done as u64)
        })?;
        pb.finish_and_clear();
        Ok(path)
    }
}
