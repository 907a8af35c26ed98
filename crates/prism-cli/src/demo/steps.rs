//! The demo's steps, each a small function over the library API.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use prism_cache::{
    ActivationStore, CacheOptions, Corpus, EvalStart, HeldOutRequest, TRAINING_DATA_KEY,
    TrainingData, WindowConfig, build_cache, held_out_windows,
};
use prism_core::{FloatDtype, HookPoint, PrismError, Result};
use prism_models::{Model, TokenBatch};
use prism_sae::Sae;
use prism_sae::train::{ArchitectureConfig, EngineChoice, FitOptions, Run, TrainConfig, fit};
use prism_similarity::{SimilarityOptions, compare};
use prism_stats::{
    BrowserOptions, Evaluation, PruneRule, XyPlot, build_feature_browser, density_overlay_series,
    evaluate, features_to_keep, plot_density_histogram, plot_xy, sample_across_density_bands,
    top_activating,
};

use super::{DemoArgs, Plan};

/// Downloads the default assets when they are the ones asked for and missing.
pub fn ensure_assets(args: &DemoArgs) -> Result<()> {
    let defaults = DemoArgs {
        quick: false,
        out: PathBuf::new(),
        model: "assets/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        data: "assets/python-docs".into(),
        countries: "assets/geonames-countries.json".into(),
        datasets: "assets/datasets".into(),
        hook: None,
        tokens: None,
        eval_tokens: None,
        epochs: 0,
        expansion: Vec::new(),
        l1: Vec::new(),
        device: String::new(),
        keep_cache: false,
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
    pub a: String,
    pub b: String,
    pub mmcs_a_to_b: f64,
    pub mmcs_b_to_a: f64,
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

    /// Harvests `tokens` activation vectors at the hook into `out/cache/<label>`.
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

    /// Trains ReLU+L1 dictionaries `(name, size, l1, seed)` from one pass of shuffled batches
    /// per epoch over `store`; returns their directories.
    pub fn train(
        &self,
        store: &ActivationStore,
        configs: &[(&str, usize, f32, u64)],
    ) -> Result<Vec<(String, PathBuf)>> {
        let d = store.manifest.hooks[0].d;
        let batch = self.plan.batch;
        let per_epoch = store.len() / batch as u64;
        let steps = (per_epoch * self.plan.epochs).max(1);
        let mut runs = configs
            .iter()
            .map(|&(name, m, l1, seed)| {
                let mut c = TrainConfig::for_steps(ArchitectureConfig::Relu { l1 }, d, m, steps);
                c.seed = seed;
                c.normalize_activations = true;
                c.hook_name = Some(self.hook.to_string());
                Run::open(
                    name,
                    self.args.out.join("dictionaries").join(name),
                    0,
                    c,
                    false,
                    &self.engine,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let stream = (0..self.plan.epochs).flat_map(|epoch| {
            store
                .shuffled_batches(&[0], batch, 1000 + epoch)
                .take(per_epoch as usize)
        });
        let label = configs.iter().map(|c| c.0).collect::<Vec<_>>().join(", ");
        let pb = bar(steps, &format!("training {label}"));
        let t0 = std::time::Instant::now();
        fit(
            &mut runs,
            &[d],
            stream,
            &FitOptions {
                steps,
                checkpoint_every: 0,
            },
            self.device,
            |_, logs| {
                let l = &logs[0];
                let rate = l.step as f64 * batch as f64 / t0.elapsed().as_secs_f64().max(1e-9);
                pb.set_message(format!("L0 {:.1} dead {} {:.0} tok/s", l.l0, l.dead, rate));
                pb.set_position(l.step);
            },
        )?;
        pb.finish_and_clear();
        let provenance = TrainingData::cache(store)?.to_json();
        for r in &runs {
            Sae::record_in_cfg(&r.dir, TRAINING_DATA_KEY, provenance.clone())?;
        }
        Ok(runs.into_iter().map(|r| (r.name, r.dir)).collect())
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

    /// Every metric on `windows`, and the density histogram as a PNG.
    pub fn evaluate(
        &self,
        model: &Model,
        name: &str,
        dir: &Path,
        windows: &[Vec<u32>],
        on: &str,
    ) -> Result<DictResult> {
        let sae = Sae::load(dir, self.device)?;
        let pb = bar(windows.len() as u64, &format!("evaluating {name}"));
        let eval = evaluate(
            model,
            &sae,
            self.hook,
            TokenBatch::batches(windows, 8, model.pad_id()),
            |b| pb.inc(b.batch as u64),
        )?;
        pb.finish_and_clear();
        let plots = self.args.out.join("plots");
        std::fs::create_dir_all(&plots).map_err(|e| PrismError::io(&plots, e))?;
        let density_png = plots.join(format!("{name}_density.png"));
        plot_density_histogram(
            &eval.reconstruction.feature_density,
            eval.reconstruction.tokens,
            &format!("{name} ({on}): log10 feature density"),
            Some(&density_png),
            None,
            (900, 500),
        )?;
        Ok(DictResult {
            name: name.into(),
            dir: dir.into(),
            sae,
            eval,
            on: on.into(),
            density_png,
            traits: None,
        })
    }

    /// Removes `base`'s densest features until its L0 is at most `target_l0`, re-evaluates.
    pub fn prune_to(
        &self,
        model: &Model,
        base: &DictResult,
        target_l0: f64,
        windows: &[Vec<u32>],
    ) -> Result<DictResult> {
        let keep = features_to_keep(
            &base.eval.reconstruction.feature_density,
            PruneRule::TargetL0(target_l0),
        )?;
        let mut pruned = base.sae.keep_features(&keep)?;
        pruned
            .extra_cfg
            .insert("pruned_from".into(), serde_json::json!(base.name));
        pruned
            .extra_cfg
            .insert("pruned_target_l0".into(), serde_json::json!(target_l0));
        let name = format!("{}_pruned", base.name);
        let dir = self.args.out.join("dictionaries").join(&name);
        pruned.save(&dir)?;
        self.evaluate(model, &name, &dir, windows, "real model")
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

    /// MMCS across seeds, against the randomised models' dictionaries, and between the two sizes.
    pub fn similarities(&self, real: &[DictResult], random: &[DictResult]) -> Result<Vec<SimRow>> {
        let mut pairs: Vec<(&DictResult, &DictResult)> = vec![(&real[0], &real[1])];
        pairs.extend(random.iter().map(|r| (&real[0], r)));
        pairs.push((&real[0], &real[2]));
        pairs
            .into_iter()
            .map(|(a, b)| {
                let s = compare(&a.sae, &b.sae, &SimilarityOptions::default())?;
                Ok(SimRow {
                    a: a.name.clone(),
                    b: b.name.clone(),
                    mmcs_a_to_b: s.mmcs_a_to_b,
                    mmcs_b_to_a: s.mmcs_b_to_a,
                })
            })
            .collect()
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
        let options = BrowserOptions {
            other: Some((&other.name, &other.sae)),
            ..BrowserOptions::default()
        };
        build_feature_browser(
            model,
            &r.sae,
            self.hook,
            windows,
            &format!("{} at {}", r.name, self.hook),
            &path,
            &options,
            |done| pb.set_position(done as u64),
        )?;
        pb.finish_and_clear();
        Ok(path)
    }
}
