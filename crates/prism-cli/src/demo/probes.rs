//! The demo's probing step (the notes' second theme): does SmolLM2 represent whether a
//! statement is true, at which layer, does a probe transfer across datasets, which dictionary
//! features classify truth — and can SHIFT remove a confound (the city's continent) that the
//! training data cannot tell from truth?

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prism_core::{HookPoint, Result};
use prism_models::Model;
use prism_probe::{
    FeatureChoice, FeatureClassifier, Generalisation, LabelledDataset, LayerScore, Pooling,
    ProbeMethod, ProbeStudy, ShiftOnModel, ShiftRow, ShiftSets, default_group, score_features,
    select_rows, top_classifiers,
};

use super::Plan;
use super::steps::DictResult;
use crate::probe::{plot_generalisation, plot_layers, plot_shift, probe_hook_for};

/// What the report says about probes and SHIFT.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProbesResult {
    /// Statements probed per dataset.
    pub statements: Vec<(String, usize)>,
    pub best: LayerScore,
    pub layers_plot: PathBuf,
    pub generalisation: Vec<Generalisation>,
    pub generalisation_plot: PathBuf,
    /// The dictionary's features as classifiers of `cities` at its hook.
    pub classifier_hook: String,
    pub classifiers: Vec<FeatureClassifier>,
    /// SHIFT with the continent as confound.
    pub shift_confound: String,
    pub shift_sets: [usize; 3],
    pub shift_rows: Vec<ShiftRow>,
    pub shift_ablated: Vec<usize>,
    pub shift_heads: Vec<(usize, usize)>,
    pub shift_plot: PathBuf,
}

/// `dataset` cut to about `rows` statements, whole groups (cities) at a time.
fn sample(dataset: &LabelledDataset, rows: usize, seed: u64) -> Result<LabelledDataset> {
    if dataset.len() <= rows {
        return Ok(dataset.clone());
    }
    let share = rows as f64 / dataset.len() as f64;
    let parts = dataset.partition(&[share, 1.0 - share], default_group(dataset), seed)?;
    Ok(dataset.subset(dataset.name.clone(), &parts[0]))
}

/// Probes per layer on cities / neg_cities / larger_than, the generalisation matrix, the
/// dictionary's features as truth classifiers, and SHIFT on cities with the continent as
/// confound.
pub fn probes_step(
    model: &Model,
    datasets_dir: &Path,
    dict: &DictResult,
    hook: HookPoint,
    plan: &Plan,
    out: &Path,
) -> Result<ProbesResult> {
    let per_dataset = plan.probe_statements;
    let names = ["cities", "neg_cities", "larger_than"];
    let datasets = names
        .iter()
        .map(|n| {
            let d = LabelledDataset::read_csv(&datasets_dir.join(format!("{n}.csv")))?;
            sample(&d, per_dataset, 0)
        })
        .collect::<Result<Vec<_>>>()?;
    let n_layers = model.config().n_layers;
    let stride = plan.probe_stride.max(1);
    let mut hooks: Vec<HookPoint> = (0..n_layers)
        .step_by(stride)
        .map(HookPoint::ResidPost)
        .collect();
    hooks.push(hook);
    hooks.sort();
    hooks.dedup();
    let study = ProbeStudy {
        hooks,
        methods: vec![
            ProbeMethod::Logistic {
                c: 1.0,
                bias: false,
            },
            ProbeMethod::MassMean,
        ],
        pooling: Pooling::LastToken,
        test_fraction: 0.25,
        seed: 0,
        batch_size: 64,
    };
    let total: usize = datasets.iter().map(|d| d.len()).sum();
    let bar = crate::progress::bar(total as u64, "probes: statements", "");
    let data = study.activations(model, &datasets, |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    // The dictionary's hook is probed only for its features; the sweep is over resid_post.
    let mut sweep_data = data.clone();
    for d in &mut sweep_data {
        if !matches!(hook, HookPoint::ResidPost(_)) {
            d.acts.remove(&hook);
        }
    }
    let outcome = study.run(&sweep_data)?;
    let layers_plot = out.join("probe_layers.png");
    plot_layers(&outcome, &out.join("probe_layers"))?;
    let generalisation_plot = out.join("probe_generalisation.png");
    if let Some(g) = outcome.generalisation.first() {
        plot_generalisation(g, &out.join("probe_generalisation"))?;
    }

    // Features as classifiers of truth on held-out cities statements.
    let cities = &data[0];
    let test = select_rows(&cities.acts[&hook], &cities.split.test)?;
    let labels: Vec<bool> = cities
        .split
        .test
        .iter()
        .map(|&i| cities.labels[i])
        .collect();
    let classifiers = top_classifiers(&score_features(&dict.sae, &test, &labels, 512)?, 8);

    // SHIFT: the continent as confound (Asia: the largest group, so every cell is populated).
    let full = LabelledDataset::read_csv(&datasets_dir.join("cities.csv"))?;
    let full = sample(&full, plan.shift_statements, 1)?;
    let sets = ShiftSets::from_dataset(&full, "continent", "Asia", default_group(&full), 0)?;
    let run = ShiftOnModel {
        model,
        dataset: &full,
        sets: &sets,
        probe_hook: probe_hook_for(hook),
        dictionary_hook: hook,
        dictionary: Arc::new(dict.sae.clone()),
        method: ProbeMethod::Logistic {
            c: 1.0,
            bias: false,
        },
        features: FeatureChoice::Auto {
            candidates: 50,
            k: 10,
            margin: 0.1,
        },
        heads: plan.shift_heads,
        head_margin: 0.05,
        trials: plan.shift_trials,
        seed: 0,
        batch_size: 64,
    };
    let shift_bar = crate::progress::bar(1, "probes: SHIFT", "");
    let shift = run.run(|stage| shift_bar.set_message(stage.to_string()))?;
    shift_bar.finish_and_clear();
    let shift_plot = out.join("shift.png");
    plot_shift(&shift.report.rows, &out.join("shift"))?;
    Ok(ProbesResult {
        statements: datasets.iter().map(|d| (d.name.clone(), d.len())).collect(),
        best: outcome.best,
        layers_plot,
        generalisation: outcome.generalisation,
        generalisation_plot,
        classifier_hook: hook.to_string(),
        classifiers,
        shift_confound: "continent = Asia".into(),
        shift_sets: shift.set_sizes,
        shift_rows: shift.report.rows,
        shift_ablated: shift.report.ablated,
        shift_heads: shift
            .heads
            .iter()
            .filter(|h| h.selected)
            .map(|h| (h.layer, h.head))
            .collect(),
        shift_plot,
    })
}
