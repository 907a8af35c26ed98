//! `prism probe` and `prism shift` on a tiny fixture model (llama_tied, d = 32) with a
//! dictionary sae-lens made for it: the JSON contract, plots, and typed errors for bad CSVs.

use crate::common;

use common::{fixtures, prism, prism_json};

fn model() -> String {
    fixtures()
        .join("models/llama_tied")
        .to_string_lossy()
        .into_owned()
}

fn sae() -> String {
    fixtures()
        .join("sae/pipeline_resid0")
        .to_string_lossy()
        .into_owned()
}

/// Statements whose label is the colour word and whose confound is the animal, independent.
fn statements(dir: &std::path::Path) -> String {
    let mut csv = String::from("statement,label,animal,city\n");
    let mut k = 0;
    for animal in ["cat", "dog"] {
        for (colour, label) in [("red", 1), ("blue", 0)] {
            for n in 0..12 {
                csv.push_str(&format!(
                    "The {animal} number {n} is {colour}.,{label},{animal},c{k}\n"
                ));
                k += 1;
            }
        }
    }
    let path = dir.join("colours.csv");
    std::fs::write(&path, csv).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn probe_sweeps_hooks_and_scores_features() {
    let tmp = tempfile::tempdir().unwrap();
    let data = statements(tmp.path());
    let plot = tmp.path().join("layers.png");
    let html = tmp.path().join("classifiers.html");
    let v = prism_json(&[
        "probe",
        "--model",
        &model(),
        "--dataset",
        &data,
        "--transfer",
        &data,
        "--hooks",
        "resid_post",
        "--pooling",
        "mean",
        "--sae",
        &sae(),
        "--top",
        "5",
        "--json",
        "--plot",
        plot.to_str().unwrap(),
        "--features-html",
        html.to_str().unwrap(),
    ]);
    // Two blocks × two methods for each dataset (the transfer set is the same file).
    let layers = v["layers"]["colours"].as_array().unwrap();
    assert_eq!(layers.len(), 4, "{layers:?}");
    // The colour word is in every token's mean: a linear probe separates it.
    let best = v["best"]["accuracy"].as_f64().unwrap();
    assert!(best >= 0.9, "best accuracy {best}");
    let g = v["generalisation"][0]["accuracy"].as_array().unwrap();
    assert_eq!(g.len(), 2);
    assert_eq!(g[0][0], g[1][1], "the same dataset on both axes");
    let f = &v["features"];
    assert_eq!(f["hook"], "blocks.0.hook_resid_post");
    assert_eq!(f["top_classifiers"].as_array().unwrap().len(), 5);
    for c in f["top_classifiers"].as_array().unwrap() {
        assert!((0.0..=1.0).contains(&c["auroc"].as_f64().unwrap()), "{c}");
    }
    let reads = f["probe_reads"].as_array().unwrap();
    assert!(
        reads
            .iter()
            .all(|r| r["cosine"].as_f64().unwrap().abs() <= 1.0 + 1e-9)
    );
    for ext in ["png", "svg"] {
        assert!(plot.with_extension(ext).exists());
    }
    assert!(
        tmp.path()
            .join("layers_generalisation_logistic.png")
            .exists()
    );
}

/// `prism shift` on the colour statements with the animal as confound, plus `extra` arguments.
fn shift(data: &str, extra: &[&str]) -> std::process::Output {
    let (model, sae) = (model(), sae());
    let mut args = vec!["shift", "--model", &model, "--dataset", data];
    args.extend(["--confound", "animal=cat", "--sae", &sae]);
    args.extend(extra);
    prism(&args)
}

#[test]
fn shift_reports_every_condition() {
    let tmp = tempfile::tempdir().unwrap();
    let data = statements(tmp.path());
    let v = common::ok(shift(&data, &["--heads", "1", "--trials", "2", "--json"]));
    let rows = v["shift"]["rows"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["condition"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(names[0], "original");
    assert!(names[4].starts_with("skyline"));
    assert_eq!(v["probe_hook"], "blocks.0.hook_resid_post");
    // A given list is ablated as given; a feature the dictionary lacks is a typed error.
    let args = [
        "--features",
        "3,7",
        "--heads",
        "0",
        "--trials",
        "0",
        "--json",
    ];
    let given = common::ok(shift(&data, &args));
    assert_eq!(given["shift"]["ablated"], serde_json::json!([3, 7]));
    let bad = shift(&data, &["--features", "999"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("feature 999 does not exist"), "{err}");
}

#[test]
fn bad_csvs_are_errors_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "missing.csv",
            "statement,city\nThe cat is red.,c1\n",
            "no `label` column",
        ),
        (
            "label.csv",
            "statement,label\nThe cat is red.,1\nThe cat is blue.,maybe\n",
            "label.csv:3: label `maybe` is not 0 or 1",
        ),
        ("empty.csv", "", "empty file"),
        (
            "short.csv",
            "statement,label,city\nThe cat is red.,1\n",
            "short.csv:2: 2 fields, the header has 3",
        ),
        (
            "quote.csv",
            "statement,label\n\"The cat is red.,1\n",
            "quote.csv:2: a quoted field is never closed",
        ),
    ];
    for (name, text, message) in cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = prism(&[
            "probe",
            "--model",
            &model(),
            "--dataset",
            path.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} was accepted");
        assert!(err.contains(message), "{name}: {err}");
    }
}
