//! SHIFT on a model: statement activations, the probe, feature and head selection, and the
//! ablated reruns, all through the model's hooks.

use std::collections::BTreeSet;
use std::sync::Arc;

use prism_core::{Dictionary, Edit, HookPoint, Hooks, Intervention, PrismError, Result};
use prism_models::Model;
use prism_patch::{FeatureEdit, Splice};
use serde::Serialize;

use crate::activations::{Pooling, statement_activations};
use crate::dataset::LabelledDataset;
use crate::probe::ProbeMethod;
use crate::shift::{
    FeatureChoice, ShiftConfig, ShiftHead, ShiftReport, ShiftRow, ShiftSets, choose_heads, shift,
    train_and_measure,
};

/// A SHIFT experiment on a model.
#[derive(Clone)]
pub struct ShiftOnModel<'a> {
    /// The model.
    pub model: &'a Model,
    /// The labelled statements.
    pub dataset: &'a LabelledDataset,
    /// Which rows are ambiguous / balanced (indices into `dataset`).
    pub sets: &'a ShiftSets,
    /// Where the probe reads.
    pub probe_hook: HookPoint,
    /// Where the dictionary sits: the probe's hook, or the attention/MLP output added to it.
    pub dictionary_hook: HookPoint,
    /// The dictionary.
    pub dictionary: Arc<dyn Dictionary + Send + Sync>,
    /// The probe.
    pub method: ProbeMethod,
    /// How features are chosen.
    pub features: FeatureChoice,
    /// How many heads the head variant ablates at most (0: skip it).
    pub heads: usize,
    /// Minimum confound-minus-label separation of an ablated head.
    pub head_margin: f64,
    /// Random-feature baseline trials.
    pub trials: usize,
    /// Seed of the random baseline.
    pub seed: u64,
    /// Statements per forward pass.
    pub batch_size: usize,
}

/// SHIFT's table and what was ablated.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShiftOutcome {
    /// Features, the table's rows (heads ablated inserted before the skyline).
    #[serde(flatten)]
    pub report: ShiftReport,
    /// Heads scored (those ablated have `selected`).
    pub heads: Vec<ShiftHead>,
    /// Rows in each set.
    pub set_sizes: [usize; 3],
}

/// Whether the probe's score is linear in the dictionary's codes: the same hook, or an
/// attention/MLP output read at the residual hook it is added to.
fn reads_directly(dictionary: HookPoint, probe: HookPoint) -> bool {
    use HookPoint::*;
    dictionary == probe
        || matches!((dictionary, probe),
            (MlpOut(a), ResidPost(b)) | (AttnOut(a), ResidMid(b)) if a == b)
}

impl ShiftOnModel<'_> {
    /// Runs SHIFT: the original probe, features ablated, random features, heads ablated (when
    /// `heads > 0`), and the skyline. `progress(stage)` names each pass as it starts.
    pub fn run(&self, mut progress: impl FnMut(&str)) -> Result<ShiftOutcome> {
        if !reads_directly(self.dictionary_hook, self.probe_hook) {
            return Err(PrismError::InvalidInput(format!(
                "SHIFT attributes the probe's score to features exactly when the probe reads the \
                 dictionary's hook or the residual hook its output is added to; {} does not \
                 feed {} that way",
                self.dictionary_hook, self.probe_hook
            )));
        }
        let shape = self.model.config().shape();
        self.probe_hook.validate(&shape)?;
        // Only the rows in some set are run; the sets are re-indexed onto them.
        let used: Vec<usize> = self
            .sets
            .ambiguous
            .iter()
            .chain(&self.sets.balanced_train)
            .chain(&self.sets.balanced_test)
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let local = |rows: &[usize]| -> Vec<usize> {
            rows.iter()
                .map(|r| used.binary_search(r).unwrap_or_default())
                .collect()
        };
        let sets = ShiftSets {
            ambiguous: local(&self.sets.ambiguous),
            balanced_train: local(&self.sets.balanced_train),
            balanced_test: local(&self.sets.balanced_test),
            labels: used.iter().map(|&i| self.sets.labels[i]).collect(),
            confound: used.iter().map(|&i| self.sets.confound[i]).collect(),
        };
        let texts: Vec<&str> = used
            .iter()
            .map(|&i| self.dataset.rows[i].text.as_str())
            .collect();
        let probe_layer = self.probe_hook.layer().unwrap_or(0);
        let head_layers: Vec<usize> = if self.heads > 0 {
            let last = match self.probe_hook {
                HookPoint::ResidPre(l) => l,
                _ => probe_layer + 1,
            };
            (0..last.min(shape.n_layers)).collect()
        } else {
            Vec::new()
        };
        let mut hooks = vec![self.probe_hook, self.dictionary_hook];
        hooks.extend(head_layers.iter().map(|&l| HookPoint::AttnZ(l)));
        hooks.sort();
        hooks.dedup();
        let run = |base: &Hooks, hooks: &[HookPoint]| {
            statement_activations(
                self.model,
                &texts,
                hooks,
                Pooling::LastToken,
                base,
                self.batch_size,
                |_, _| {},
            )
        };
        progress("clean activations");
        let mut clean = run(&Hooks::new(), &hooks)?;
        let probe_acts = clean[&self.probe_hook].clone();
        let dict_acts = clean[&self.dictionary_hook].clone();
        let mut ablated = |features: &[usize]| {
            progress("features ablated");
            let splice = Splice::new(
                self.dictionary_hook,
                self.dictionary.clone(),
                FeatureEdit::Zero(features.to_vec()),
            );
            let base = Hooks::new().intervene(splice.intervention()?);
            let mut out = run(&base, &[self.probe_hook])?;
            out.remove(&self.probe_hook)
                .ok_or_else(|| PrismError::Hook {
                    hook: self.probe_hook.to_string(),
                    message: "was not captured".into(),
                })
        };
        let config = ShiftConfig::new(self.method, self.features.clone())
            .with_baseline(self.trials, self.seed);
        let mut report = shift(
            &sets,
            &probe_acts,
            self.dictionary.as_ref(),
            &dict_acts,
            &config,
            &mut ablated,
        )?;
        let mut heads = Vec::new();
        if self.heads > 0 && !head_layers.is_empty() {
            let z: Vec<(usize, prism_core::HostTensor)> = head_layers
                .iter()
                .filter_map(|&l| clean.remove(&HookPoint::AttnZ(l)).map(|t| (l, t)))
                .collect();
            heads = choose_heads(&z, shape.n_heads, &sets, self.heads, self.head_margin)?;
            let mut base = Hooks::new();
            for &layer in &head_layers {
                let chosen: Vec<usize> = heads
                    .iter()
                    .filter(|h| h.selected && h.layer == layer)
                    .map(|h| h.head)
                    .collect();
                if !chosen.is_empty() {
                    base = base.intervene(
                        Intervention::new(HookPoint::AttnZ(layer), Edit::Zero).at_heads(chosen),
                    );
                }
            }
            progress("heads ablated");
            let acts = run(&base, &[self.probe_hook])?.remove(&self.probe_hook);
            let acts = acts.ok_or_else(|| PrismError::InvalidInput("no activations".into()))?;
            let (_, mut row) =
                train_and_measure(self.method, &acts, &sets, &sets.ambiguous, "heads ablated")?;
            let n = heads.iter().filter(|h| h.selected).count();
            row.condition = format!("{n} heads ablated");
            let at = report.rows.len() - 1;
            report.rows.insert(at, row);
        }
        Ok(ShiftOutcome {
            report,
            heads,
            set_sizes: [
                sets.ambiguous.len(),
                sets.balanced_train.len(),
                sets.balanced_test.len(),
            ],
        })
    }
}

/// The table as text rows (`condition`, label accuracy, confound accuracy).
pub fn shift_table(rows: &[ShiftRow]) -> String {
    let mut s = String::from("| condition | label accuracy | confound accuracy |\n|---|---|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.3} | {:.3} |\n",
            r.condition, r.label_accuracy, r.confound_accuracy
        ));
    }
    s
}
