//! A probing study as geometry-of-truth runs one: statement activations at every requested hook
//! for every dataset (once), held-out accuracy per hook and method, the best hook, and the
//! generalisation matrix there.

use std::collections::BTreeMap;

use prism_core::{HookPoint, Hooks, HostTensor, PrismError, Result};
use prism_models::Model;
use serde::Serialize;

use crate::activations::{Pooling, statement_activations};
use crate::dataset::{LabelledDataset, Split};
use crate::probe::ProbeMethod;
use crate::sweep::{Generalisation, LayerScore, ProbeData, generalisation, layer_sweep};

/// The column a dataset is split by: `city` when it has one (no city on both sides), else
/// `n1` (the first number of a comparison), else single rows.
pub fn default_group(dataset: &LabelledDataset) -> Option<&'static str> {
    ["city", "n1"]
        .into_iter()
        .find(|c| dataset.columns.iter().any(|k| k == c))
}

/// What to probe.
#[derive(Clone, Debug)]
pub struct ProbeStudy {
    /// Hooks to probe (e.g. every `hook_resid_post`).
    pub hooks: Vec<HookPoint>,
    /// Methods to compare.
    pub methods: Vec<ProbeMethod>,
    /// Token pooling.
    pub pooling: Pooling,
    /// Held-out share of each dataset.
    pub test_fraction: f64,
    /// Split seed.
    pub seed: u64,
    /// Statements per forward pass.
    pub batch_size: usize,
}

/// One dataset's activations and split.
#[derive(Clone, Debug)]
pub struct StudiedDataset {
    /// The dataset's name.
    pub name: String,
    /// Labels.
    pub labels: Vec<bool>,
    /// Train/test rows.
    pub split: Split,
    /// Activations per hook.
    pub acts: BTreeMap<HookPoint, HostTensor>,
}

/// What a study found.
#[derive(Clone, Debug, Serialize)]
pub struct StudyOutcome {
    /// Held-out accuracy per dataset, hook and method.
    pub layers: BTreeMap<String, Vec<LayerScore>>,
    /// The hook and method with the best held-out accuracy on the first dataset.
    pub best: LayerScore,
    /// Train-on-row, test-on-column accuracy at the best hook, per method.
    pub generalisation: Vec<Generalisation>,
}

impl ProbeStudy {
    /// Activations of every dataset at every hook, with splits (`progress(done, total)`
    /// counts statements over all datasets).
    pub fn activations(
        &self,
        model: &Model,
        datasets: &[LabelledDataset],
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Vec<StudiedDataset>> {
        let total: usize = datasets.iter().map(LabelledDataset::len).sum();
        let mut before = 0;
        datasets
            .iter()
            .map(|d| {
                let split = d.split(self.test_fraction, default_group(d), self.seed)?;
                let acts = statement_activations(
                    model,
                    &d.texts(),
                    &self.hooks,
                    self.pooling,
                    &Hooks::new(),
                    self.batch_size,
                    |done, _| progress(before + done, total),
                )?;
                before += d.len();
                Ok(StudiedDataset {
                    name: d.name.clone(),
                    labels: d.labels(),
                    split,
                    acts,
                })
            })
            .collect()
    }

    /// The sweep, the best hook and the generalisation matrix from computed activations.
    pub fn run(&self, data: &[StudiedDataset]) -> Result<StudyOutcome> {
        let first = data
            .first()
            .ok_or_else(|| PrismError::InvalidInput("a probing study needs a dataset".into()))?;
        let mut layers = BTreeMap::new();
        for d in data {
            layers.insert(
                d.name.clone(),
                layer_sweep(&d.acts, &d.labels, &d.split, &self.methods)?,
            );
        }
        let best = layers[&first.name]
            .iter()
            .max_by(|a, b| a.accuracy.total_cmp(&b.accuracy).then(b.hook.cmp(&a.hook)))
            .cloned()
            .ok_or_else(|| PrismError::InvalidInput("no hooks were probed".into()))?;
        let hook: HookPoint = best.hook.parse()?;
        let at_best: Vec<ProbeData> = data
            .iter()
            .map(|d| ProbeData {
                name: d.name.clone(),
                acts: d.acts[&hook].clone(),
                labels: d.labels.clone(),
                split: d.split.clone(),
            })
            .collect();
        let generalisation = self
            .methods
            .iter()
            .map(|&m| generalisation(&at_best, m))
            .collect::<Result<Vec<_>>>()?;
        Ok(StudyOutcome {
            layers,
            best,
            generalisation,
        })
    }
}
