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

/// `prism circuit --edges` with the edge fixture's seven dictionaries (their own hooks): the edges
/// it reports are the library's (`prism_patch::edges`, checked against PyTorch in prism-patch's
/// tests) for the same pairs, the pruned circuit's faithfulness lies between its ablated and
/// full runs' scales, and the graph is written as JSON and SVG. A missing site is an error
/// naming it.
#[test]
fn feature_edges_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = pairs_file(tmp.path());
    let m = model("llama_gqa");
    let dir = fixtures().join("edges/llama_gqa");
    let mut saes: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    saes.sort();
    assert_eq!(saes.len(), 7); // six block sites and hook_embed
    let graph = tmp.path().join("circuit.json");
    let mut args = vec![
        "circuit",
        "--model",
        &m,
        "--pairs",
        &pairs,
        "--edges",
        "--direction",
        "noise",
        "--node-threshold",
        "0.01",
        "--edge-threshold",
        "0.001",
        "--steps",
        "3",
        "--top",
        "5",
        "--graph",
        graph.to_str().unwrap(),
        "--json",
    ];
    for s in &saes {
        args.push("--sae");
        args.push(s);
    }
    let c = prism_json(&args);
    assert_eq!(c["sites"].as_array().unwrap().len(), 7);
    let top = c["top_edges"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    // The library on the same inputs.
    let model = prism_models::Model::load(
        std::path::Path::new(&m),
        &prism_core::device("cpu").unwrap(),
    )
    .unwrap();
    let file = prism_patch::read_pairs(std::path::Path::new(&pairs), &model).unwrap();
    let batch = prism_patch::PairBatch::new(&file.pairs, model.pad_id()).unwrap();
    let mut dictionaries = prism_patch::Dictionaries::new();
    for s in &saes {
        let sae = prism_sae::Sae::load(std::path::Path::new(s), model.device()).unwrap();
        let hook: prism_core::HookPoint = sae.hook_name().unwrap().parse().unwrap();
        dictionaries.insert(hook, std::sync::Arc::new(sae));
    }
    let options = prism_patch::PatchOptions {
        direction: prism_patch::Direction::Noise,
        dictionaries,
        ..Default::default()
    };
    let edge_options = prism_patch::EdgeOptions::default()
        .with_node_threshold(0.01)
        .with_edge_threshold(0.001)
        .with_method(prism_patch::Method::IntegratedGradients { steps: 3 });
    let lib = prism_patch::edges(&model, &batch, &options, &edge_options, |_, _| {}).unwrap();
    assert_eq!(c["edges"].as_u64().unwrap() as usize, lib.edges.len());
    for (got, want) in top.iter().zip(&lib.edges) {
        assert_eq!(got["from"], serde_json::to_value(want.from).unwrap());
        assert_eq!(got["to"], serde_json::to_value(want.to).unwrap());
        assert!((got["weight"].as_f64().unwrap() - want.weight).abs() < 1e-9);
    }
    assert!(c["faithfulness"].as_f64().unwrap().is_finite());
    assert!(c["circuit_nodes"].as_u64().unwrap() > 0);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&graph).unwrap()).unwrap();
    // Edges as [source, target, weight] over the node list (the metric last).
    let nodes = written["nodes"].as_array().unwrap();
    let listed = written["edges"].as_array().unwrap();
    assert_eq!(listed.len(), lib.edges.len());
    assert_eq!(nodes.len(), lib.nodes.len() + 1);
    let first = &listed[0];
    let from = &nodes[first[0].as_u64().unwrap() as usize];
    assert_eq!(
        from["hook"],
        serde_json::to_value(lib.edges[0].from).unwrap()["hook"]
    );
    assert_eq!(
        from["feature"],
        serde_json::to_value(lib.edges[0].from).unwrap()["feature"]
    );
    assert_eq!(first[2].as_f64().unwrap(), lib.edges[0].weight);
    let svg = std::fs::read_to_string(graph.with_extension("svg")).unwrap();
    assert!(
        svg.starts_with("<svg")
            && svg.contains("<line")
            && svg.contains("blocks.1.hook_resid_post")
    );
    // Without block 1's MLP dictionary: refused, naming the site.
    let mut short: Vec<&str> = args[..args.len() - 2 * saes.len()].to_vec();
    for s in saes
        .iter()
        .filter(|s| !s.ends_with("blocks.1.hook_mlp_out"))
    {
        short.push("--sae");
        short.push(s);
    }
    let out = prism(&short);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("blocks.1.hook_mlp_out has no dictionary")
    );
}
