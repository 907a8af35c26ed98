//! Probes against scikit-learn and numpy on real activations: GeoNames city statements run
//! through SmolLM2 by HF `transformers` (fixtures/probes, made by scripts/make_fixtures.py
//! `--only probes`), so both sides fit the very same numbers.

use std::path::PathBuf;

use prism_core::HostTensor;
use prism_probe::{Probe, ProbeMethod, select_rows, separation};
use serde_json::Value;

fn probes() -> PathBuf {
    prism_testkit::fixtures().join("probes")
}

struct Fixture {
    acts: HostTensor,
    labels: Vec<bool>,
    reference: Value,
}

fn load() -> Fixture {
    let t = prism_core::read_safetensors(&probes().join("acts.safetensors")).unwrap();
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(probes().join("reference.json")).unwrap())
            .unwrap();
    Fixture {
        acts: t["acts"].clone(),
        labels: t["labels"].data.iter().map(|&v| v == 1.0).collect(),
        reference,
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn indices(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

/// The rows of a split with their labels.
fn part(f: &Fixture, key: &str) -> (HostTensor, Vec<bool>) {
    let idx = indices(&f.reference[key]);
    let labels = idx.iter().map(|&i| f.labels[i]).collect();
    (select_rows(&f.acts, &idx).unwrap(), labels)
}

#[test]
fn logistic_probe_equals_scikit_learn() {
    let f = load();
    let (train, train_labels) = part(&f, "train");
    let (test, test_labels) = part(&f, "test");
    for key in ["logistic", "logistic_c01_bias"] {
        let r = &f.reference[key];
        let method = ProbeMethod::Logistic {
            c: r["c"].as_f64().unwrap(),
            bias: r["bias"].as_bool().unwrap(),
        };
        let probe = Probe::fit(method, &train, &train_labels).unwrap();
        let want = floats(&r["coef"]);
        let cos = cosine(&probe.weights, &want);
        assert!(
            cos >= 0.999,
            "{key}: cosine with scikit-learn's weights {cos}"
        );
        let score = probe.evaluate(&test, &test_labels).unwrap();
        assert_eq!(
            score.accuracy,
            r["test_accuracy"].as_f64().unwrap(),
            "{key} accuracy"
        );
        assert!(
            (score.auroc - r["test_auroc"].as_f64().unwrap()).abs() < 1e-3,
            "{key} auroc"
        );
        let b = r["intercept"].as_f64().unwrap();
        assert!(
            (probe.bias - b).abs() <= 1e-3 * (1.0 + b.abs()),
            "{key}: bias {} vs {b}",
            probe.bias
        );
    }
}

#[test]
fn mass_mean_probes_equal_numpy() {
    let f = load();
    let (train, train_labels) = part(&f, "train");
    let (test, test_labels) = part(&f, "test");
    let probe = Probe::fit(ProbeMethod::MassMean, &train, &train_labels).unwrap();
    let theta = floats(&f.reference["mass_mean"]["theta"]);
    let scale = theta.iter().fold(0f64, |a, b| a.max(b.abs()));
    for (a, b) in probe.weights.iter().zip(&theta) {
        assert!((a - b).abs() <= 1e-5 * scale.max(1.0), "θ {a} vs numpy {b}");
    }
    let acc = probe.evaluate(&test, &test_labels).unwrap().accuracy;
    assert_eq!(
        acc,
        f.reference["mass_mean"]["test_accuracy"].as_f64().unwrap()
    );

    // The iid form on the first dimensions, where Σ is invertible.
    let k = f.reference["mass_mean_iid"]["dims"].as_u64().unwrap() as usize;
    let d = train.shape[1];
    let narrow = HostTensor::new(
        vec![train.shape[0], k],
        train.data.chunks(d).flat_map(|r| r[..k].to_vec()).collect(),
    )
    .unwrap();
    let iid = Probe::fit(ProbeMethod::MassMeanIid, &narrow, &train_labels).unwrap();
    let want = floats(&f.reference["mass_mean_iid"]["weights"]);
    let scale = want.iter().fold(0f64, |a, b| a.max(b.abs()));
    for (a, b) in iid.weights.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-5 * scale, "Σ⁺θ {a} vs numpy {b}");
    }
}

#[test]
fn auroc_equals_roc_auc_score_with_ties() {
    let f = load();
    for case in f.reference["auroc"].as_array().unwrap() {
        let scores: Vec<f32> = floats(&case["scores"]).iter().map(|&v| v as f32).collect();
        let labels: Vec<bool> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_bool().unwrap())
            .collect();
        let got = separation(&scores, &labels).auroc;
        let want = case["auroc"].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-12,
            "auroc {got} vs scikit-learn {want}"
        );
    }
}
