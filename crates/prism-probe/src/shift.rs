//! SHIFT (Sparse Feature Circuits, Marks et al.): when the labelled data cannot tell the
//! intended concept from a correlated one, train the probe anyway, find the dictionary features
//! (or attention heads) that carry the confound, ablate them, and retrain.
//!
//! The sets: an *ambiguous* training set where label and confound agree on every row, a
//! *balanced* set where they are independent (its training half scores candidate features and
//! trains the skyline probe; its test half measures everything).

use std::collections::BTreeSet;

use prism_core::{Dictionary, HostTensor, PrismError, Result};
use rand::SeedableRng;
use rand::seq::index::sample;
use serde::Serialize;

use crate::activations::select_rows;
use crate::dataset::LabelledDataset;
use crate::features::{FeatureClassifier, score_codes, sparse_codes};
use crate::metrics::{accuracy, separation};
use crate::probe::{Probe, ProbeMethod};

/// Row indices of the three SHIFT sets, with each row's label and confound.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShiftSets {
    /// Label and confound agree on every row (the probe's training data).
    pub ambiguous: Vec<usize>,
    /// Label and confound independent, equal counts of the four combinations (skyline probe,
    /// feature scoring).
    pub balanced_train: Vec<usize>,
    /// As `balanced_train`, held out (every accuracy is measured here).
    pub balanced_test: Vec<usize>,
    /// The label of every dataset row.
    pub labels: Vec<bool>,
    /// The confound of every dataset row.
    pub confound: Vec<bool>,
}

impl ShiftSets {
    /// Sets from `dataset` with confound `column == value` (e.g. `continent == Europe`), split by
    /// `group` (e.g. `city`, so no city is on both sides) with a seed.
    pub fn from_dataset(
        dataset: &LabelledDataset,
        column: &str,
        value: &str,
        group: Option<&str>,
        seed: u64,
    ) -> Result<Self> {
        let confound: Vec<bool> = dataset
            .column(column)?
            .iter()
            .map(|v| *v == value)
            .collect();
        let labels = dataset.labels();
        // Three parts, whole groups each: the ambiguous pool (only two of its four
        // label/confound cells are used), the balanced training and the balanced test rows.
        let parts = dataset.partition(&[0.4, 0.3, 0.3], group, seed)?;
        let cells = |rows: &[usize]| {
            let mut cells: [Vec<usize>; 4] = Default::default();
            for &i in rows {
                cells[usize::from(labels[i]) * 2 + usize::from(confound[i])].push(i);
            }
            cells
        };
        let balanced = |cells: &[Vec<usize>; 4]| -> Vec<usize> {
            let per = cells.iter().map(Vec::len).min().unwrap_or(0);
            let mut v: Vec<usize> = cells
                .iter()
                .flat_map(|c| c[..per].iter().copied())
                .collect();
            v.sort_unstable();
            v
        };
        let pool = cells(&parts[0]);
        // Ambiguous: (false, not-confound) and (true, confound), equal counts.
        let per = pool[0].len().min(pool[3].len());
        let mut ambiguous: Vec<usize> = pool[0][..per]
            .iter()
            .chain(&pool[3][..per])
            .copied()
            .collect();
        ambiguous.sort_unstable();
        let sets = Self {
            ambiguous,
            balanced_train: balanced(&cells(&parts[1])),
            balanced_test: balanced(&cells(&parts[2])),
            labels,
            confound,
        };
        for (name, s) in [
            ("ambiguous", &sets.ambiguous),
            ("balanced training", &sets.balanced_train),
            ("balanced test", &sets.balanced_test),
        ] {
            if s.len() < 4 {
                return Err(PrismError::InvalidInput(format!(
                    "the {name} set has {} rows: `{column} == {value}` leaves too few rows of some \
                     label/confound combination",
                    s.len()
                )));
            }
        }
        Ok(sets)
    }

    fn pick(&self, of: &[bool], rows: &[usize]) -> Vec<bool> {
        rows.iter().map(|&i| of[i]).collect()
    }
}

/// How SHIFT chooses the features to ablate.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum FeatureChoice {
    /// Automatically: among the `candidates` features with the largest mean |attribution| to
    /// the probe's score on the ambiguous set, those whose separation of the confound on the
    /// balanced training set exceeds their separation of the label by at least `margin`
    /// (`|AUROC_conf − ½| − |AUROC_label − ½|`), at most `k`, largest first.
    Auto {
        /// How many attributed features are considered.
        candidates: usize,
        /// At most this many are ablated.
        k: usize,
        /// Minimum confound-minus-label separation.
        margin: f64,
    },
    /// Exactly these features (a list the user made, e.g. by reading feature dashboards).
    Given(Vec<usize>),
}

/// A probe's accuracy for the label and for the confound on the balanced test set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShiftRow {
    /// What was done (`original`, `features ablated`, …).
    pub condition: String,
    /// Accuracy for the intended label.
    pub label_accuracy: f64,
    /// Accuracy for the confound (1 − this is how far it ignores the confound).
    pub confound_accuracy: f64,
}

/// A candidate feature: its attribution and how it separates label and confound.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShiftFeature {
    /// Feature index.
    pub feature: usize,
    /// Mean attribution to the probe's score over the ambiguous set.
    pub attribution: f64,
    /// AUROC for the confound on the balanced training set.
    pub confound_auroc: f64,
    /// AUROC for the label there.
    pub label_auroc: f64,
    /// Whether it was ablated.
    pub selected: bool,
}

/// What SHIFT did and found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShiftReport {
    /// Rows of the table: original, features ablated, random features (mean over trials),
    /// heads ablated (when run), skyline.
    pub rows: Vec<ShiftRow>,
    /// The candidate features, selected or not.
    pub features: Vec<ShiftFeature>,
    /// The ablated features.
    pub ablated: Vec<usize>,
}

/// A probe trained on `train` rows of `acts`, measured on `test` for the label and confound.
pub fn train_and_measure(
    method: ProbeMethod,
    acts: &HostTensor,
    sets: &ShiftSets,
    train: &[usize],
    condition: &str,
) -> Result<(Probe, ShiftRow)> {
    let probe = Probe::fit(
        method,
        &select_rows(acts, train)?,
        &sets.pick(&sets.labels, train),
    )?;
    let test = &sets.balanced_test;
    let predicted: Vec<bool> = probe
        .scores(&select_rows(acts, test)?)?
        .iter()
        .map(|&s| s > 0.0)
        .collect();
    Ok((
        probe,
        ShiftRow {
            condition: condition.into(),
            label_accuracy: accuracy(&predicted, &sets.pick(&sets.labels, test)),
            confound_accuracy: accuracy(&predicted, &sets.pick(&sets.confound, test)),
        },
    ))
}

/// Chooses features by `choice`. `codes` are the dictionary's sparse codes of every row (from
/// [`sparse_codes`]); attribution of feature `i` on row `r` to the probe's score is
/// `f_i(r) · (W_dec[i] · w)` — exact when the probe reads the dictionary's own hook or the
/// residual hook its output is added to (the score is linear in the codes there, so integrated
/// gradients from a zero baseline equal it).
pub fn choose_features(
    codes: &[Vec<(u32, f32)>],
    decoder_dot_probe: &[f64],
    sets: &ShiftSets,
    choice: &FeatureChoice,
) -> Result<Vec<ShiftFeature>> {
    let m = codes.len();
    if decoder_dot_probe.len() != m {
        return Err(PrismError::Shape(format!(
            "{} decoder projections for {m} features",
            decoder_dot_probe.len()
        )));
    }
    let ambiguous: BTreeSet<u32> = sets.ambiguous.iter().map(|&i| i as u32).collect();
    let attribution: Vec<f64> = codes
        .iter()
        .zip(decoder_dot_probe)
        .map(|(entries, &dw)| {
            entries
                .iter()
                .filter(|(r, _)| ambiguous.contains(r))
                .map(|&(_, v)| v as f64 * dw)
                .sum::<f64>()
                / ambiguous.len().max(1) as f64
        })
        .collect();
    // Separation of label and confound by each feature on the balanced training rows.
    let local: std::collections::BTreeMap<u32, usize> = sets
        .balanced_train
        .iter()
        .enumerate()
        .map(|(k, &i)| (i as u32, k))
        .collect();
    let on_balanced = |f: usize| -> Vec<(u32, f32)> {
        codes[f]
            .iter()
            .filter_map(|&(r, v)| local.get(&r).map(|&k| (k as u32, v)))
            .collect()
    };
    let separations = |f: usize, of: &[bool]| -> FeatureClassifier {
        let labels = sets.pick(of, &sets.balanced_train);
        score_codes(&[on_balanced(f)], &labels)[0]
    };
    let describe = |f: usize, selected: bool| ShiftFeature {
        feature: f,
        attribution: attribution[f],
        confound_auroc: separations(f, &sets.confound).separation.auroc,
        label_auroc: separations(f, &sets.labels).separation.auroc,
        selected,
    };
    match choice {
        FeatureChoice::Given(list) => {
            if let Some(bad) = list.iter().find(|&&f| f >= m) {
                return Err(PrismError::InvalidInput(format!(
                    "feature {bad} does not exist (the dictionary has {m})"
                )));
            }
            Ok(list.iter().map(|&f| describe(f, true)).collect())
        }
        FeatureChoice::Auto {
            candidates,
            k,
            margin,
        } => {
            let mut order: Vec<usize> = (0..m).filter(|&f| attribution[f] != 0.0).collect();
            order.sort_by(|&a, &b| attribution[b].abs().total_cmp(&attribution[a].abs()));
            order.truncate(*candidates);
            let mut described: Vec<(f64, ShiftFeature)> = order
                .into_iter()
                .map(|f| {
                    let d = describe(f, false);
                    let excess = (d.confound_auroc - 0.5).abs() - (d.label_auroc - 0.5).abs();
                    (excess, d)
                })
                .collect();
            described.sort_by(|a, b| b.0.total_cmp(&a.0));
            for (rank, (excess, d)) in described.iter_mut().enumerate() {
                d.selected = rank < *k && *excess >= *margin;
            }
            Ok(described.into_iter().map(|(_, d)| d).collect())
        }
    }
}

/// How [`shift`] probes, chooses the features to ablate, and draws its random baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct ShiftConfig {
    /// The probe trained on each set.
    pub method: ProbeMethod,
    /// Which features are ablated.
    pub features: FeatureChoice,
    /// Random-feature baseline trials (0: none drawn).
    pub trials: usize,
    /// Seed of the random baseline.
    pub seed: u64,
}

impl ShiftConfig {
    /// `method` and `features`, with no random baseline.
    pub fn new(method: ProbeMethod, features: FeatureChoice) -> Self {
        Self {
            method,
            features,
            trials: 0,
            seed: 0,
        }
    }

    /// With a random baseline of `trials` draws from `seed`.
    pub fn with_baseline(self, trials: usize, seed: u64) -> Self {
        Self {
            trials,
            seed,
            ..self
        }
    }
}

/// The whole SHIFT comparison for a dictionary. `clean` holds the probe hook's activations of
/// every dataset row; `dict_acts` the dictionary hook's (the same tensor when the probe reads
/// the dictionary's hook); `ablated(features)` returns the probe hook's activations of every
/// row with those features zero-ablated (error term kept). Heads are compared separately
/// ([`choose_heads`], and [`crate::ShiftOnModel`] which runs both on a model).
///
/// The random baseline ablates as many random features (seeded) as were selected, `trials`
/// times, and reports the mean accuracies (its row is there even when nothing was selected, so
/// the table always has the same rows).
pub fn shift(
    sets: &ShiftSets,
    clean: &HostTensor,
    dictionary: &dyn Dictionary,
    dict_acts: &HostTensor,
    config: &ShiftConfig,
    mut ablated: impl FnMut(&[usize]) -> Result<HostTensor>,
) -> Result<ShiftReport> {
    let ShiftConfig {
        method,
        features: ref choice,
        trials,
        seed,
    } = *config;
    let (probe, original) = train_and_measure(method, clean, sets, &sets.ambiguous, "original")?;
    let codes = sparse_codes(dictionary, dict_acts, 1024)?;
    let dec = prism_core::to_vec(dictionary.decoder_directions())?;
    let d = dictionary.d_in();
    if probe.weights.len() != d {
        return Err(PrismError::Shape(format!(
            "the probe reads {} dimensions, the dictionary writes {d}: SHIFT's attribution needs \
             the dictionary at the probe's hook or at an output added to it",
            probe.weights.len()
        )));
    }
    let dw: Vec<f64> = dec
        .chunks_exact(d)
        .map(|row| {
            row.iter()
                .zip(&probe.weights)
                .map(|(&a, b)| a as f64 * b)
                .sum()
        })
        .collect();
    let features = choose_features(&codes, &dw, sets, choice)?;
    let chosen: Vec<usize> = features
        .iter()
        .filter(|f| f.selected)
        .map(|f| f.feature)
        .collect();
    let mut rows = vec![original];
    let (_, mut after) = train_and_measure(
        method,
        &ablated(&chosen)?,
        sets,
        &sets.ambiguous,
        "features ablated",
    )?;
    after.condition = format!("{} features ablated", chosen.len());
    rows.push(after);
    if trials > 0 {
        let m = dictionary.d_sae();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (mut label, mut conf) = (0.0, 0.0);
        for _ in 0..trials {
            let random: Vec<usize> = sample(&mut rng, m, chosen.len().min(m)).into_vec();
            let (_, r) =
                train_and_measure(method, &ablated(&random)?, sets, &sets.ambiguous, "random")?;
            label += r.label_accuracy / trials as f64;
            conf += r.confound_accuracy / trials as f64;
        }
        rows.push(ShiftRow {
            condition: format!(
                "{} random features ablated (mean of {trials})",
                chosen.len()
            ),
            label_accuracy: label,
            confound_accuracy: conf,
        });
    }
    let (_, skyline) = train_and_measure(
        method,
        clean,
        sets,
        &sets.balanced_train,
        "skyline (balanced training set)",
    )?;
    rows.push(skyline);
    Ok(ShiftReport {
        rows,
        features,
        ablated: chosen,
    })
}

/// A unit (a head) scored for SHIFT's head variant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShiftHead {
    /// Block.
    pub layer: usize,
    /// Head.
    pub head: usize,
    /// AUROC for the confound of the head's mass-mean direction on the balanced training set.
    pub confound_auroc: f64,
    /// The same for the label.
    pub label_auroc: f64,
    /// Whether it was ablated.
    pub selected: bool,
}

/// Scores heads for the head variant of SHIFT (the notes': ablate the heads that attend to the
/// confound). `z` holds, per block, the last-token `hook_z` of every row (`[rows, heads ·
/// d_head]`). Each head's output is projected on its own mass-mean direction for the confound
/// and for the label, fitted on the balanced training rows; the heads whose confound
/// separation exceeds their label separation the most (by at least `margin`) are selected, at
/// most `k`.
pub fn choose_heads(
    z: &[(usize, HostTensor)],
    heads: usize,
    sets: &ShiftSets,
    k: usize,
    margin: f64,
) -> Result<Vec<ShiftHead>> {
    let rows = &sets.balanced_train;
    let labels = sets.pick(&sets.labels, rows);
    let confound = sets.pick(&sets.confound, rows);
    let mut out: Vec<(f64, ShiftHead)> = Vec::new();
    for (layer, acts) in z {
        let [_, width] = acts.dims2()?;
        if heads == 0 || width % heads != 0 {
            return Err(PrismError::Shape(format!(
                "hook_z width {width} is not a multiple of {heads} heads"
            )));
        }
        let dh = width / heads;
        let x = select_rows(acts, rows)?;
        for head in 0..heads {
            let data: Vec<f32> = x
                .data
                .chunks_exact(width)
                .flat_map(|r| r[head * dh..(head + 1) * dh].iter().copied())
                .collect();
            let xh = HostTensor::new(vec![rows.len(), dh], data)?;
            let sep = |of: &[bool]| -> Result<f64> {
                let p = Probe::fit(ProbeMethod::MassMean, &xh, of)?;
                let s: Vec<f32> = p.scores(&xh)?.iter().map(|&v| v as f32).collect();
                Ok(separation(&s, of).auroc)
            };
            let (c, l) = (sep(&confound)?, sep(&labels)?);
            out.push((
                (c - 0.5).abs() - (l - 0.5).abs(),
                ShiftHead {
                    layer: *layer,
                    head,
                    confound_auroc: c,
                    label_auroc: l,
                    selected: false,
                },
            ));
        }
    }
    out.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (rank, (excess, h)) in out.iter_mut().enumerate() {
        h.selected = rank < k && *excess >= margin;
    }
    Ok(out.into_iter().map(|(_, h)| h).collect())
}
