//! `prism probe` and `prism shift`: truth probes across layers and datasets (geometry-of-truth),
//! dictionary features as classifiers, and SHIFT (Sparse Feature Circuits).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prism_core::{HookPoint, ModelShape, PrismError, Result};
use prism_probe::{
    FeatureChoice, Generalisation, LabelledDataset, Pooling, Probe, ProbeMethod, ProbeStudy,
    ShiftOnModel, ShiftRow, ShiftSets, StudyOutcome, decoder_cosines, default_group,
    score_features, select_rows, shift_table, top_classifiers,
};
use prism_stats::{Mark, Series, XyPlot, plot_heatmap, plot_xy};
use serde_json::json;

use crate::forward::ModelArgs;
use crate::patch::open_dictionary;

/// `prism probe` arguments.
#[derive(clap::Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A labelled CSV (`statement,label,…`), e.g. assets/datasets/cities.csv.
    #[arg(long)]
    dataset: PathBuf,
    /// More datasets: probed too, and crossed with --dataset in the generalisation matrix.
    #[arg(long)]
    transfer: Vec<PathBuf>,
    /// Hooks: `all` (every hook_resid_post), short names expanded over blocks (resid_pre,
    /// resid_mid, resid_post, attn_out, mlp_out), or full names, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    hooks: Vec<String>,
    /// Probe methods, comma-separated: logistic, mass-mean, mass-mean-iid.
    #[arg(long, value_delimiter = ',', default_value = "logistic,mass-mean")]
    method: Vec<String>,
    /// Inverse L2 strength of the logistic probe (scikit-learn's C).
    #[arg(long, default_value_t = 1.0)]
    c: f64,
    /// Fit a bias in the logistic probe.
    #[arg(long)]
    bias: bool,
    /// last (the statement's last token) or mean (over its tokens).
    #[arg(long, default_value = "last")]
    pooling: String,
    /// Held-out share (split by city where the dataset has a `city` column).
    #[arg(long, default_value_t = 0.25)]
    test_fraction: f64,
    /// Split seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Statements per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// A dictionary (`DIR` or `HOOK=DIR`): its features scored as classifiers of the labels and
    /// their decoder cosines with the probe at its hook.
    #[arg(long)]
    sae: Option<String>,
    /// How many features to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// A feature browser (HTML + JSON) of the top classifier features on the statements.
    #[arg(long)]
    features_html: Option<PathBuf>,
    /// Accuracy against layer (one line per method), FILE.png or .svg (both are written);
    /// the generalisation heat map goes to FILE_generalisation.png/.svg.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// The hooks named by `items` on a model of `shape`.
pub fn expand_hooks(shape: &ModelShape, items: &[String]) -> Result<Vec<HookPoint>> {
    let mut out = Vec::new();
    for item in items {
        let per_block = |f: fn(usize) -> HookPoint| (0..shape.n_layers).map(f).collect::<Vec<_>>();
        match item.as_str() {
            "all" | "resid_post" => out.extend(per_block(HookPoint::ResidPost)),
            "resid_pre" => out.extend(per_block(HookPoint::ResidPre)),
            "resid_mid" => out.extend(per_block(HookPoint::ResidMid)),
            "attn_out" => out.extend(per_block(HookPoint::AttnOut)),
            "mlp_out" => out.extend(per_block(HookPoint::MlpOut)),
            name => {
                let h: HookPoint = name.parse()?;
                h.validate(shape)?;
                out.push(h);
            }
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(PrismError::InvalidInput("no hooks to probe".into()));
    }
    Ok(out)
}

fn methods(args: &ProbeArgs) -> Result<Vec<ProbeMethod>> {
    args.method
        .iter()
        .map(|m| {
            Ok(match m.parse()? {
                ProbeMethod::Logistic { .. } => ProbeMethod::Logistic {
                    c: args.c,
                    bias: args.bias,
                },
                other => other,
            })
        })
        .collect()
}

/// Accuracy against layer, one line per dataset × method.
pub fn plot_layers(outcome: &StudyOutcome, stem: &Path) -> Result<()> {
    let mut series = Vec::new();
    for (dataset, scores) in &outcome.layers {
        let mut by_method: std::collections::BTreeMap<&str, Vec<(f64, f64)>> = Default::default();
        for s in scores {
            let layer = s.hook.parse::<HookPoint>()?.layer().unwrap_or(0) as f64;
            by_method
                .entry(&s.method)
                .or_default()
                .push((layer, s.accuracy));
        }
        for (method, points) in by_method {
            series.push(Series {
                name: format!("{dataset} · {method}"),
                points,
                mark: Mark::Line,
            });
        }
    }
    let axes = XyPlot {
        title: "probe accuracy on held-out statements",
        x: "layer",
        y: "accuracy",
        log_x: false,
    };
    plot_xy(
        &series,
        &axes,
        Some(&stem.with_extension("png")),
        Some(&stem.with_extension("svg")),
        (900, 560),
    )
}

/// The generalisation matrix as a heat map of accuracy − 0.5 (red above chance, blue below).
pub fn plot_generalisation(g: &Generalisation, stem: &Path) -> Result<()> {
    let values: Vec<f64> = g.accuracy.iter().flatten().map(|a| a - 0.5).collect();
    let names: Vec<String> = g.datasets.clone();
    let rows: Vec<String> = names.iter().map(|n| format!("train {n}")).collect();
    let cols: Vec<String> = names.iter().map(|n| format!("test {n}")).collect();
    plot_heatmap(
        &values,
        &rows,
        &cols,
        &format!("{} probe: accuracy − 0.5", g.method),
        Some(&stem.with_extension("png")),
        Some(&stem.with_extension("svg")),
        (720, 520),
    )
}

/// A markdown table of a generalisation matrix.
pub fn generalisation_table(g: &Generalisation) -> String {
    let mut s = format!("| {} probe: train ↓ test → |", g.method);
    for n in &g.datasets {
        s.push_str(&format!(" {n} |"));
    }
    s.push_str(&format!("\n|---|{}\n", "---|".repeat(g.datasets.len())));
    for (n, row) in g.datasets.iter().zip(&g.accuracy) {
        s.push_str(&format!("| {n} |"));
        for a in row {
            s.push_str(&format!(" {a:.3} |"));
        }
        s.push('\n');
    }
    s
}

fn with_suffix(stem: &Path, suffix: &str) -> PathBuf {
    let name = stem
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    stem.with_file_name(format!("{name}{suffix}"))
}

pub fn probe(args: &ProbeArgs) -> Result<()> {
    let model = args.model.load()?;
    let shape = model.config().shape();
    let mut hooks = expand_hooks(&shape, &args.hooks)?;
    let dictionary = args
        .sae
        .as_deref()
        .map(|spec| open_dictionary(spec, &model))
        .transpose()?;
    if let Some((h, _)) = &dictionary
        && !hooks.contains(h)
    {
        hooks.push(*h);
        hooks.sort();
    }
    let mut datasets = vec![LabelledDataset::read_csv(&args.dataset)?];
    for p in &args.transfer {
        datasets.push(LabelledDataset::read_csv(p)?);
    }
    let study = ProbeStudy {
        hooks: hooks.clone(),
        methods: methods(args)?,
        pooling: args.pooling.parse::<Pooling>()?,
        test_fraction: args.test_fraction,
        seed: args.seed,
        batch_size: args.batch_size,
    };
    let total: usize = datasets.iter().map(|d| d.len()).sum();
    let bar = crate::progress::bar(total as u64, "activations", "statements");
    let data = study.activations(&model, &datasets, |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    let outcome = study.run(&data)?;
    let mut features_json = serde_json::Value::Null;
    if let Some((hook, sae)) = &dictionary {
        let first = &data[0];
        let x = &first.acts[hook];
        let test = select_rows(x, &first.split.test)?;
        let test_labels: Vec<bool> = first.split.test.iter().map(|&i| first.labels[i]).collect();
        let scores = score_features(sae, &test, &test_labels, 512)?;
        let top = top_classifiers(&scores, args.top);
        // The probe at the dictionary's hook, and the features its direction reads.
        let train = select_rows(x, &first.split.train)?;
        let train_labels: Vec<bool> = first.split.train.iter().map(|&i| first.labels[i]).collect();
        let probe = Probe::fit(study.methods[0], &train, &train_labels)?;
        let cos = decoder_cosines(sae, &probe.direction())?;
        let mut by_cos: Vec<usize> = (0..cos.len()).collect();
        by_cos.sort_by(|&a, &b| cos[b].abs().total_cmp(&cos[a].abs()));
        by_cos.truncate(args.top);
        if let Some(html) = &args.features_html {
            let texts = datasets[0].texts();
            let windows: Vec<Vec<u32>> = first
                .split
                .test
                .iter()
                .map(|&i| model.encode(texts[i]))
                .collect::<Result<_>>()?;
            let ids: Vec<usize> = top.iter().map(|f| f.feature).collect();
            let title = format!("features classifying `{}` at {hook}", datasets[0].name);
            let options = prism_stats::BrowserOptions {
                title: &title,
                scan: prism_stats::ScanOptions {
                    selection: prism_stats::FeatureSelection::Only(ids),
                    ..Default::default()
                },
                ..prism_stats::BrowserOptions::default()
            };
            prism_stats::build_feature_browser(
                &model,
                sae,
                *hook,
                &windows,
                html,
                &options,
                |_| {},
            )?;
            eprintln!("feature browser: {}", html.display());
        }
        features_json = json!({
            "hook": hook.to_string(),
            "top_classifiers": top,
            "probe_method": study.methods[0].name(),
            "probe_reads": by_cos.iter().map(|&f| json!({"feature": f, "cosine": cos[f]})).collect::<Vec<_>>(),
        });
    }
    if let Some(stem) = &args.plot {
        plot_layers(&outcome, stem)?;
        for g in &outcome.generalisation {
            plot_generalisation(
                g,
                &with_suffix(stem, &format!("_generalisation_{}", g.method)),
            )?;
        }
        eprintln!(
            "plots: {}.png/.svg and its _generalisation_* heat maps",
            stem.display()
        );
    }
    if args.model.json {
        let out = json!({
            "datasets": datasets.iter().map(|d| json!({"name": d.name, "statements": d.len(), "group": default_group(d)})).collect::<Vec<_>>(),
            "layers": outcome.layers,
            "best": outcome.best,
            "generalisation": outcome.generalisation,
            "features": features_json,
        });
        println!("{out}");
    } else {
        let b = &outcome.best;
        eprintln!(
            "best: {} {} held-out accuracy {:.3} (AUROC {:.3})",
            b.hook, b.method, b.accuracy, b.auroc
        );
        for g in &outcome.generalisation {
            eprintln!("{}", generalisation_table(g));
        }
        if !features_json.is_null() {
            eprintln!(
                "{}",
                serde_json::to_string_pretty(&features_json).unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// `prism shift` arguments.
#[derive(clap::Args)]
pub struct ShiftArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A labelled CSV, e.g. assets/datasets/cities.csv.
    #[arg(long)]
    dataset: PathBuf,
    /// The confound, `COLUMN=VALUE`: true where the column equals the value.
    #[arg(long, default_value = "continent=Asia")]
    confound: String,
    /// The dictionary (`DIR` or `HOOK=DIR`) whose features are candidates for ablation.
    #[arg(long)]
    sae: String,
    /// Where the probe reads: the dictionary's hook (default), or for a dictionary at
    /// attn_out/mlp_out the residual hook its output is added to (default for those).
    #[arg(long)]
    hook: Option<String>,
    /// Probe method: logistic, mass-mean or mass-mean-iid.
    #[arg(long, default_value = "logistic")]
    method: String,
    /// Inverse L2 strength of the logistic probe.
    #[arg(long, default_value_t = 1.0)]
    c: f64,
    /// Features to ablate: `auto`, or a comma-separated list.
    #[arg(long, default_value = "auto")]
    features: String,
    /// Auto: how many of the most attributed features are candidates …
    #[arg(long, default_value_t = 50)]
    candidates: usize,
    /// … at most how many are ablated …
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// … and by how much their confound AUROC must exceed their label AUROC (distance from ½).
    #[arg(long, default_value_t = 0.1)]
    margin: f64,
    /// Heads ablated in the head variant (0: skip).
    #[arg(long, default_value_t = 6)]
    heads: usize,
    /// Random-feature baseline trials.
    #[arg(long, default_value_t = 3)]
    trials: usize,
    /// Split and baseline seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Statements per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// The table as a heat map (accuracy − 0.5), FILE.png or .svg (both are written).
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// The default probe hook for a dictionary at `hook`.
pub fn probe_hook_for(hook: HookPoint) -> HookPoint {
    match hook {
        HookPoint::MlpOut(l) => HookPoint::ResidPost(l),
        HookPoint::AttnOut(l) => HookPoint::ResidMid(l),
        other => other,
    }
}

/// SHIFT's table as a heat map: conditions × (label, confound), accuracy − 0.5.
pub fn plot_shift(rows: &[ShiftRow], stem: &Path) -> Result<()> {
    let values: Vec<f64> = rows
        .iter()
        .flat_map(|r| [r.label_accuracy - 0.5, r.confound_accuracy - 0.5])
        .collect();
    let names: Vec<String> = rows.iter().map(|r| r.condition.clone()).collect();
    plot_heatmap(
        &values,
        &names,
        &["label".to_string(), "confound".to_string()],
        "SHIFT on the balanced test set: accuracy − 0.5",
        Some(&stem.with_extension("png")),
        Some(&stem.with_extension("svg")),
        (760, 120 + 60 * rows.len() as u32),
    )
}

pub fn shift(args: &ShiftArgs) -> Result<()> {
    let model = args.model.load()?;
    let (dict_hook, sae) = open_dictionary(&args.sae, &model)?;
    let probe_hook = match &args.hook {
        Some(h) => h.parse()?,
        None => probe_hook_for(dict_hook),
    };
    let dataset = LabelledDataset::read_csv(&args.dataset)?;
    let (column, value) = args.confound.split_once('=').ok_or_else(|| {
        PrismError::InvalidInput(format!(
            "--confound `{}` is not COLUMN=VALUE",
            args.confound
        ))
    })?;
    let sets =
        ShiftSets::from_dataset(&dataset, column, value, default_group(&dataset), args.seed)?;
    let features = if args.features == "auto" {
        FeatureChoice::Auto {
            candidates: args.candidates,
            k: args.k,
            margin: args.margin,
        }
    } else {
        FeatureChoice::Given(
            args.features
                .split(',')
                .map(|f| {
                    f.trim().parse::<usize>().map_err(|_| {
                        PrismError::InvalidInput(format!("feature `{f}` is not an index"))
                    })
                })
                .collect::<Result<_>>()?,
        )
    };
    let method = match args.method.parse()? {
        ProbeMethod::Logistic { .. } => ProbeMethod::Logistic {
            c: args.c,
            bias: false,
        },
        other => other,
    };
    let run = ShiftOnModel {
        model: &model,
        dataset: &dataset,
        sets: &sets,
        probe_hook,
        dictionary_hook: dict_hook,
        dictionary: Arc::new(sae),
        method,
        features,
        heads: args.heads,
        head_margin: 0.05,
        trials: args.trials,
        seed: args.seed,
        batch_size: args.batch_size,
    };
    let outcome = run.run(|stage| eprintln!("SHIFT: {stage} …"))?;
    if let Some(stem) = &args.plot {
        plot_shift(&outcome.report.rows, stem)?;
        eprintln!("plot: {}.png/.svg", stem.display());
    }
    if args.model.json {
        let out = json!({
            "dataset": dataset.name,
            "confound": {"column": column, "value": value},
            "probe_hook": probe_hook.to_string(),
            "dictionary_hook": dict_hook.to_string(),
            "method": method.name(),
            "shift": outcome,
        });
        println!("{out}");
    } else {
        eprintln!(
            "sets: {} ambiguous, {} balanced training, {} balanced test statements",
            outcome.set_sizes[0], outcome.set_sizes[1], outcome.set_sizes[2]
        );
        eprintln!("{}", shift_table(&outcome.report.rows));
        let ablated = &outcome.report.ablated;
        let shown: Vec<String> = ablated.iter().take(20).map(usize::to_string).collect();
        let more = if ablated.len() > 20 {
            format!(" … ({} in all)", ablated.len())
        } else {
            String::new()
        };
        eprintln!("ablated features: {}{more}", shown.join(", "));
    }
    Ok(())
}
