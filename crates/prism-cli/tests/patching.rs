//! `prism patch`, `prism attribute` and `prism circuit` on the tiny fixture models: the JSON
//! they print (README; nodes as docs/metrics.md describes them), plots, the identities that tie the three commands together, and
//! typed errors.

use crate::common;

use common::{fixtures, prism, prism_json};
use serde_json::Value;

fn pairs_file(dir: &std::path::Path) -> String {
    let path = dir.join("pairs.jsonl");
    std::fs::write(
        &path,
        concat!(
            r#"{"clean_prefix": "The answer is 42 and", "patch_prefix": "The answer is 17 and", "clean_answer": "4", "patch_answer": "1"}"#,
            "\n",
            r#"{"clean_prefix": "The answer is 58 and", "patch_prefix": "The answer is 17 and", "clean_answer": "5", "patch_answer": "1"}"#,
            "\n"
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

fn model(name: &str) -> String {
    fixtures()
        .join("models")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn values(v: &Value) -> Vec<f64> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_f64().unwrap())
        .collect()
}

#[test]
fn patch_prints_the_design_contract_and_draws_heat_maps() {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = pairs_file(tmp.path());
    let plot = tmp.path().join("heat.png");
    let gpt2 = model("gpt2");
    let v = prism_json(&[
        "patch",
        "--model",
        &gpt2,
        "--pairs",
        &pairs,
        "--hooks",
        "resid_pre,z",
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let (clean, corrupt) = (v["clean"].as_f64().unwrap(), v["corrupt"].as_f64().unwrap());
    let results = v["results"].as_array().unwrap();
    let seq = v["tokens"].as_array().unwrap().len();
    // 2 blocks × seq positions, then 2 blocks × 4 heads.
    assert_eq!(results.len(), 2 * seq + 2 * 4);
    for r in results {
        for key in [
            "hook",
            "position",
            "head",
            "neuron",
            "feature",
            "value",
            "normalized",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        let (value, normalized) = (
            r["value"].as_f64().unwrap(),
            r["normalized"].as_f64().unwrap(),
        );
        assert!((normalized - (value - corrupt) / (clean - corrupt)).abs() < 1e-6);
    }
    assert!(results[2 * seq]["position"].is_null() && results[2 * seq]["head"] == 0);
    for sweep in ["resid_pre", "z"] {
        for ext in ["png", "svg"] {
            let f = tmp.path().join(format!("heat_{sweep}.{ext}"));
            assert!(
                std::fs::metadata(&f).unwrap().len() > 1000,
                "{}",
                f.display()
            );
        }
    }
}

#[test]
fn attribute_agrees_with_patch_where_the_metric_is_linear_and_ig_1_is_atp() {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = pairs_file(tmp.path());
    let m = model("gpt_neox_parallel");
    let hook = "ln_final.hook_normalized";
    let exact = prism_json(&[
        "patch", "--model", &m, "--pairs", &pairs, "--hooks", hook, "--json",
    ]);
    let corrupt = exact["corrupt"].as_f64().unwrap();
    let atp = prism_json(&[
        "attribute",
        "--model",
        &m,
        "--pairs",
        &pairs,
        "--hooks",
        hook,
        "--json",
    ]);
    assert_eq!(atp["method"]["method"], "atp");
    for (a, e) in values(&atp).iter().zip(values(&exact)) {
        assert!(
            (a - (e - corrupt)).abs() < 1e-4 * (1.0 + e.abs()),
            "{a} vs {}",
            e - corrupt
        );
    }
    let args = |method: &str| {
        prism_json(&[
            "attribute",
            "--model",
            &m,
            "--pairs",
            &pairs,
            "--hooks",
            "resid_pre,z",
            "--method",
            method,
            "--steps",
            "1",
            "--json",
        ])
    };
    let (a, i) = (args("atp"), args("ig"));
    assert_eq!(i["method"]["steps"], 1);
    for (x, y) in values(&a).iter().zip(values(&i)) {
        assert!((x - y).abs() < 1e-4 * (1.0 + x.abs()));
    }
}

#[test]
fn dictionary_nodes_and_circuits_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = pairs_file(tmp.path());
    let m = model("llama_tied");
    let sae = fixtures().join("sae/pipeline_resid0");
    let sae = sae.to_str().unwrap();
    let v = prism_json(&[
        "attribute",
        "--model",
        &m,
        "--pairs",
        &pairs,
        "--sae",
        sae,
        "--json",
    ]);
    let results = v["results"].as_array().unwrap();
    let seq = v["tokens"].as_array().unwrap().len();
    assert_eq!(results.len(), seq * (64 + 1));
    assert_eq!(results[3]["feature"], 3);
    assert_eq!(results[64]["error"], true);
    // The plain hook, attributed without the dictionary, equals features + error per position.
    let plain = prism_json(&[
        "attribute",
        "--model",
        &m,
        "--pairs",
        &pairs,
        "--hooks",
        "blocks.0.hook_resid_post",
        "--json",
    ]);
    for (p, want) in values(&plain).iter().enumerate() {
        let got: f64 = values(&v)[p * 65..(p + 1) * 65].iter().sum();
        assert!(
            (got - want).abs() < 1e-4 * (1.0 + want.abs()),
            "pos {p}: {got} vs {want}"
        );
    }
    let plot = tmp.path().join("faith.png");
    let c = prism_json(&[
        "circuit",
        "--model",
        &m,
        "--pairs",
        &pairs,
        "--sae",
        sae,
        "--top",
        "5",
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let nodes = c["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 5);
    let mags: Vec<f64> = nodes
        .iter()
        .map(|n| n["value"].as_f64().unwrap().abs())
        .collect();
    assert!(mags.windows(2).all(|w| w[0] >= w[1]), "{mags:?}");
    let curve = c["faithfulness"]["curve"].as_array().unwrap();
    let last = curve.last().unwrap();
    assert_eq!(last["nodes"], seq * 65);
    assert!((last["faithfulness"].as_f64().unwrap() - 1.0).abs() < 1e-6);
    assert!(
        std::fs::metadata(tmp.path().join("faith.svg"))
            .unwrap()
            .len()
            > 1000
    );
}

#[test]
fn bad_patching_input_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = pairs_file(tmp.path());
    let sae = fixtures().join("sae/pipeline_resid0");
    let err = |args: &[&str]| {
        let out = prism(args);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // A dictionary of width 32 at a hook of width 64.
    let e = err(&[
        "attribute",
        "--model",
        &model("gpt2"),
        "--pairs",
        &pairs,
        "--sae",
        sae.to_str().unwrap(),
    ]);
    assert!(e.contains("width"), "{e}");
    let e = err(&[
        "patch",
        "--model",
        &model("gpt2"),
        "--pairs",
        &pairs,
        "--hooks",
        "blocks.7.hook_resid_pre",
    ]);
    assert!(e.contains("blocks.7"), "{e}");
    let e = err(&[
        "attribute",
        "--model",
        &model("gpt2"),
        "--pairs",
        &pairs,
        "--method",
        "shap",
    ]);
    assert!(e.contains("atp, ig"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}
