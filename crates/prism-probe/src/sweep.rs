//! Probes across layers and across datasets: accuracy per hook (which layer knows), and the
//! generalisation matrix (a probe trained on one dataset, tested on another).

use std::collections::BTreeMap;

use prism_core::{HookPoint, HostTensor, PrismError, Result};
use serde::Serialize;

use crate::activations::select_rows;
use crate::dataset::Split;
use crate::probe::{Probe, ProbeMethod};

/// One probe's held-out quality at one hook.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerScore {
    /// The hook.
    pub hook: String,
    /// The probe method's name.
    pub method: String,
    /// Held-out accuracy.
    pub accuracy: f64,
    /// Held-out AUROC.
    pub auroc: f64,
}

/// Fits every method at every hook on `split.train` and measures it on `split.test`.
pub fn layer_sweep(
    acts: &BTreeMap<HookPoint, HostTensor>,
    labels: &[bool],
    split: &Split,
    methods: &[ProbeMethod],
) -> Result<Vec<LayerScore>> {
    let pick = |rows: &[usize]| rows.iter().map(|&i| labels[i]).collect::<Vec<_>>();
    let (train_labels, test_labels) = (pick(&split.train), pick(&split.test));
    let mut out = Vec::new();
    for (hook, x) in acts {
        let (train, test) = (select_rows(x, &split.train)?, select_rows(x, &split.test)?);
        for &method in methods {
            let score = Probe::fit(method, &train, &train_labels)?.evaluate(&test, &test_labels)?;
            out.push(LayerScore {
                hook: hook.to_string(),
                method: method.name().into(),
                accuracy: score.accuracy,
                auroc: score.auroc,
            });
        }
    }
    Ok(out)
}

/// One dataset's activations at a hook, its labels and its split.
#[derive(Clone, Debug)]
pub struct ProbeData {
    /// Dataset name.
    pub name: String,
    /// `[rows, d]` activations.
    pub acts: HostTensor,
    /// Labels of the rows.
    pub labels: Vec<bool>,
    /// Train/test split.
    pub split: Split,
}

/// Held-out accuracy of a probe trained on one dataset (row) and tested on another (column).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Generalisation {
    /// The probe method's name.
    pub method: String,
    /// Dataset names, rows and columns.
    pub datasets: Vec<String>,
    /// `accuracy[train][test]` on the test dataset's held-out rows.
    pub accuracy: Vec<Vec<f64>>,
}

/// Trains on each dataset's training rows and tests on every dataset's held-out rows. Each
/// dataset is centred on its own mean before scoring (geometry-of-truth centres every dataset
/// separately), so a probe transfers its direction, not the training set's offset.
pub fn generalisation(data: &[ProbeData], method: ProbeMethod) -> Result<Generalisation> {
    if data.is_empty() {
        return Err(PrismError::InvalidInput("no datasets to compare".into()));
    }
    let pick = |d: &ProbeData, rows: &[usize]| -> Vec<bool> {
        rows.iter().map(|&i| d.labels[i]).collect()
    };
    let mut accuracy = Vec::new();
    for a in data {
        let probe = Probe::fit(
            method,
            &select_rows(&a.acts, &a.split.train)?,
            &pick(a, &a.split.train),
        )?;
        let mut row = Vec::new();
        for b in data {
            let test = select_rows(&b.acts, &b.split.test)?;
            let recentred = Probe {
                center: column_mean(&b.acts)?,
                ..probe.clone()
            };
            row.push(recentred.evaluate(&test, &pick(b, &b.split.test))?.accuracy);
        }
        accuracy.push(row);
    }
    Ok(Generalisation {
        method: method.name().into(),
        datasets: data.iter().map(|d| d.name.clone()).collect(),
        accuracy,
    })
}

/// The mean row of a `[n, d]` host tensor.
pub fn column_mean(x: &HostTensor) -> Result<Vec<f64>> {
    let [n, d] = x.dims2()?;
    let mut m = vec![0f64; d];
    for r in x.data.chunks_exact(d) {
        for (a, &v) in m.iter_mut().zip(r) {
            *a += v as f64 / n.max(1) as f64;
        }
    }
    Ok(m)
}
