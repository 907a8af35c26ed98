//! # prism-probe
//!
//! Does the model know whether a statement is true — and which of its features carry that
//! knowledge? This crate follows geometry-of-truth (probes, datasets) and Sparse Feature
//! Circuits (SHIFT):
//!
//! - [`LabelledDataset`]: statements in geometry-of-truth's CSV layout (`statement,label,…`),
//!   split by a column such as `city` ([`LabelledDataset::split`]); [`geonames_cities`] +
//!   [`city_statements`] build `cities` / `neg_cities` from GeoNames, and
//!   [`comparison_statements`] builds `larger_than` / `smaller_than`;
//! - [`statement_activations`]: one vector per statement (last token or mean) at any hooks;
//! - [`Probe`]: logistic regression (scikit-learn's objective, solved by Newton's method), mass-mean and
//!   its iid form; [`layer_sweep`] and [`generalisation`] across layers and datasets;
//! - [`score_features`]: every dictionary feature as a classifier (AUROC with ties,
//!   best-threshold accuracy), and [`decoder_cosines`] (which features a probe reads);
//! - [`ShiftSets`] / [`shift`] / [`ShiftOnModel`]: train a probe on data where the label and a
//!   confound coincide, ablate the features (error term kept) or heads that carry the
//!   confound, retrain, and compare with random ablations and a probe trained on balanced data.
//!
//! It sits above prism-patch: SHIFT's ablations are prism-patch's splices and head
//! interventions, while probes and their datasets are a concern of their own.

#![warn(missing_docs)]

mod activations;
mod builders;
mod dataset;
mod features;
mod linalg;
mod metrics;
mod probe;
mod run;
mod shift;
mod study;
mod sweep;

pub use activations::{Pooling, select_rows, statement_activations};
pub use builders::{City, city_statements, comparison_statements, geonames_cities, number_words};
pub use dataset::{LabelledDataset, Split, Statement};
pub use features::{
    FeatureClassifier, decoder_cosines, score_codes, score_features, sparse_codes, top_classifiers,
};
pub use metrics::{Separation, accuracy, separation, sparse_separation};
pub use probe::{Probe, ProbeMethod, ProbeScore};
pub use run::{ShiftOnModel, ShiftOutcome, shift_table};
pub use shift::{
    FeatureChoice, ShiftConfig, ShiftFeature, ShiftHead, ShiftReport, ShiftRow, ShiftSets,
    choose_features, choose_heads, shift, train_and_measure,
};
pub use study::{ProbeStudy, StudiedDataset, StudyOutcome, default_group};
pub use sweep::{Generalisation, LayerScore, ProbeData, column_mean, generalisation, layer_sweep};
