//! `prism demo --quick` on the real default assets (SmolLM2-135M-Instruct and the Python
//! documentation): every step runs and the report holds every table with valid numbers.
//! Skipped (with a note) when the assets are absent, unless PRISM_REQUIRE_ASSETS is set (CI).

use std::path::PathBuf;
use std::process::Command;

use prism_testkit::asset;

#[test]
fn quick_demo_writes_a_complete_report() {
    let Some([model, data, countries, datasets]) = assets() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("report");
    let run = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(["demo", "--quick", "--out", out.to_str().unwrap()])
        .args([
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--countries",
            countries.to_str().unwrap(),
            "--datasets",
            datasets.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    for heading in [
        "## The notes' findings, measured here",
        "## Convergence",
        "## Where the time went",
        "## Metrics",
        "## Pruning high-frequency features",
        "## Mean max cosine similarity",
        "## Randomised models",
        "## Feature densities",
        "## Feature browser",
        "## Causal patching",
        "## Truth probes and SHIFT",
    ] {
        assert!(readme.contains(heading), "report misses {heading}");
    }
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    // A fresh run resumed nothing, and says nothing about resuming.
    assert_eq!(
        s["resumed_from"],
        serde_json::json!({"harvested": 0, "steps": [0, 0]})
    );
    assert!(!readme.contains("resumed an interrupted one"));
    let dicts = s["dictionaries"].as_array().unwrap();
    // Two seeds of the small dictionary (--quick; three otherwise), one large, each small seed
    // pruned, two seeds on each randomised model.
    assert_eq!(dicts.len(), 9);
    for d in dicts {
        let m = &d["metrics"];
        let name = d["name"].as_str().unwrap();
        let f = |k: &str| {
            m[k].as_f64()
                .unwrap_or_else(|| panic!("{name}: {k} missing"))
        };
        assert!(
            f("l0") > 0.0 && f("l0") < d["d_sae"].as_f64().unwrap(),
            "{name}: L0 {}",
            f("l0")
        );
        assert!((0.0..=1.0).contains(&f("frac_alive")), "{name}");
        assert!(
            f("mse") >= 0.0 && f("frac_variance_explained") <= 1.0,
            "{name}"
        );
        assert!((-1.0..=1.0).contains(&f("cossim")), "{name}");
        assert!(
            f("loss_original") > 0.0 && f("loss_zero") > 0.0 && f("kl_div_with_sae") >= 0.0,
            "{name}"
        );
        assert!(f("frac_recovered").is_finite(), "{name}");
        let png = out.join("plots").join(format!("{name}_density.png"));
        assert!(
            std::fs::metadata(&png).unwrap().len() > 1000,
            "{name}: no density plot"
        );
        assert!(readme.contains(name), "{name} is not in the report");
    }
    // The real model's dictionaries beat zero ablation; a trained dictionary reconstructs.
    let first = &dicts[0]["metrics"];
    assert!(first["frac_recovered"].as_f64().unwrap() > 0.0);
    assert!(first["frac_variance_explained"].as_f64().unwrap() > 0.0);
    // Pruning reached the target L0 (measured on the same held-out tokens), for every seed.
    let p = &s["pruning"];
    let target = p["target_l0"].as_f64().unwrap();
    for got in p["pruned_l0"].as_array().unwrap() {
        let got = got.as_f64().unwrap();
        assert!(
            got <= target + 1e-6 && got > 0.5 * target,
            "pruned L0 {got} vs target {target}"
        );
    }
    assert!(p["removed_features"][0].as_u64().unwrap() > 0);
    // Dictionaries from two seeds agree more than with those of randomised models.
    let f = &s["findings"];
    let seeds = f["seeds_mmcs_alive"]["mean"].as_f64().unwrap();
    assert_eq!(
        f["seeds_mmcs_alive"]["n"], 2,
        "one pair of seeds, both ways"
    );
    for r in f["vs_random_mmcs_alive"].as_array().unwrap() {
        let v = r["spread"]["mean"].as_f64().unwrap();
        assert!(
            seeds > v,
            "MMCS across seeds {seeds} ≤ vs {} {v}",
            r["model"]
        );
    }
    // Convergence was measured during training: every run has several held-out points, the
    // real model's seeds an MMCS, and the curves are drawn.
    for run in s["convergence"].as_array().unwrap() {
        let points = run["points"].as_array().unwrap();
        assert!(points.len() >= 3, "{run}");
        let last = &points.last().unwrap()["held_out"];
        assert!(last["fve"].as_f64().unwrap().is_finite(), "{run}");
        assert!(
            last["mmcs_seeds"].as_f64().is_some()
                || run["name"].as_str().unwrap().starts_with("large"),
            "{run}"
        );
    }
    for png in [
        "real_fve.png",
        "real_mmcs_seeds_alive.png",
        "random_all_l0.png",
    ] {
        let path = out.join("plots/curves").join(png);
        assert!(std::fs::metadata(&path).unwrap().len() > 1000, "{png}");
        assert!(path.with_extension("svg").exists(), "{png}");
    }
    // The feature browser lists every feature of the first dictionary, with contexts.
    let html = std::fs::read_to_string(out.join("features.html")).unwrap();
    assert!(html.contains("const DATA = \"features.data\";"));
    let summary = std::fs::read_to_string(out.join("features.data/summary.js")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(
        summary
            .trim()
            .strip_prefix("prismData(\"summary\", ")
            .and_then(|t| t.strip_suffix(");"))
            .unwrap(),
    )
    .unwrap();
    let d_sae = s["dictionaries"][0]["d_sae"].as_u64().unwrap();
    assert_eq!(summary["features"].as_array().unwrap().len() as u64, d_sae);
    let fired = summary["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f[1].as_u64().unwrap() > 0)
        .count();
    assert!(
        fired as u64 > d_sae / 2,
        "{fired} of {d_sae} features fired"
    );
    assert!(out.join("plots/densities.png").exists());
    // Patching capital-city pairs: the clean prompts favour their capital, the corrupted ones
    // the other; attribution patching tracks exact patching of the residual stream; keeping
    // every node of the circuit is the whole model.
    let p = &s["patching"];
    assert_eq!(p["pairs"], 4);
    assert!(
        p["clean"].as_f64().unwrap() > 0.0 && p["corrupt"].as_f64().unwrap() < 0.0,
        "{p}"
    );
    let r = p["pearson_all"].as_f64().unwrap();
    assert!(r > 0.5, "AtP vs exact r = {r}");
    let curve = p["faithfulness"].as_array().unwrap();
    let last = curve.last().unwrap();
    assert_eq!(last["nodes"], p["universe"]);
    // Exactly 1 up to float rounding, which the division by F(M) − F(∅) can magnify.
    let full = last["faithfulness"].as_f64().unwrap();
    assert!(
        (full - 1.0).abs() < 1e-4,
        "faithfulness of every node {full}: {p}"
    );
    for png in [
        "patching_resid_pre.png",
        "patching_atp_vs_exact.png",
        "patching_faithfulness.png",
    ] {
        assert!(
            std::fs::metadata(out.join(png)).unwrap().len() > 1000,
            "{png}"
        );
    }
    // Probes: some layer of SmolLM2 tells true city statements from false ones well above
    // chance on held-out cities; the generalisation matrix is square over the three datasets;
    // SHIFT reports original, features ablated, random, heads ablated and skyline rows.
    let pr = &s["probes"];
    let best = pr["best"]["accuracy"].as_f64().unwrap();
    assert!(best > 0.7, "best probe accuracy {best}");
    let g = &pr["generalisation"][0]["accuracy"];
    assert_eq!(g.as_array().unwrap().len(), 3);
    let rows = pr["shift_rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{rows:?}");
    for r in rows {
        for key in ["label_accuracy", "confound_accuracy"] {
            assert!((0.0..=1.0).contains(&r[key].as_f64().unwrap()), "{r}");
        }
    }
    assert!(
        rows[4]["condition"]
            .as_str()
            .unwrap()
            .starts_with("skyline")
    );
    for png in ["probe_layers.png", "probe_generalisation.png", "shift.png"] {
        assert!(
            std::fs::metadata(out.join(png)).unwrap().len() > 1000,
            "{png}"
        );
    }
    // The caches are removed unless asked to keep them.
    assert!(!out.join("cache").exists());
}

/// The default assets' paths, gated as every asset is (`prism_testkit::asset`).
fn assets() -> Option<[PathBuf; 4]> {
    Some([
        asset("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2")?,
        asset("python-docs", "python-docs")?,
        asset("geonames-countries.json", "geonames")?,
        asset("datasets", "cities")?,
    ])
}

/// `prism demo --quick --resume` killed while it trains (just after the real model's group wrote
/// its first periodic checkpoint, the last of its dictionaries included) and run again ends with
/// every dictionary, checkpoint and training log equal byte for byte to an uninterrupted run's;
/// the resumed run's estimate leaves out the harvest already done. Several minutes (three quick demos), so not in CI:
/// `cargo test --release --workspace --features wgpu --test cli -- --ignored resumes`.
#[test]
#[ignore]
fn a_demo_killed_while_training_resumes_to_the_same_dictionaries() {
    let Some([model, data, countries, datasets]) = assets() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let command = |out: &std::path::Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_prism"));
        c.args([
            "demo",
            "--quick",
            "--resume",
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--model", model.to_str().unwrap()])
        .args(["--data", data.to_str().unwrap()])
        .args(["--countries", countries.to_str().unwrap()])
        .args(["--datasets", datasets.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        c
    };
    let run = |out: &std::path::Path| assert!(command(out).status().unwrap().success());
    // The tokens the start's estimate expects to harvest: its harvest seconds at its rate.
    let harvest_expected = |out: &std::path::Path| -> f64 {
        let text = std::fs::read_to_string(out.join("summary.json")).unwrap();
        let s: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(s["expected_seconds"][0][0], "harvest");
        s["expected_seconds"][0][1].as_f64().unwrap() * s["rates"]["to_hook"].as_f64().unwrap()
    };
    let reference = tmp.path().join("reference");
    run(&reference);

    let resumed = tmp.path().join("resumed");
    let first = resumed.join("dictionaries/large_high_l1_s4/checkpoint.safetensors");
    let mut child = command(&resumed).spawn().unwrap();
    while !first.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    run(&resumed);
    // The real model's cache (its training rows and the held-out ones) was complete when the
    // run was killed: the resumed run's estimate leaves those rows out.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reference.join("summary.json")).unwrap())
            .unwrap();
    let plan = |key: &str| summary["plan"][key].as_f64().unwrap();
    let real = plan("tokens") + plan("held_out");
    let (all, left) = (harvest_expected(&reference), harvest_expected(&resumed));
    assert!(
        (all - 2.0 * plan("random_tokens") - 3.0 * plan("held_out") - plan("tokens")).abs()
            < 1e-6 * all
    );
    assert!(
        (all - real - left).abs() < 1e-6 * all,
        "expected to harvest {left} tokens on resuming, {all} in all, {real} already cached"
    );
    // … and its report says what it resumed from.
    let resumed_summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(resumed.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        resumed_summary["resumed_from"]["harvested"].as_f64(),
        Some(real)
    );
    let readme = std::fs::read_to_string(resumed.join("README.md")).unwrap();
    assert!(readme.contains("This run resumed an interrupted one"));

    let mut compared = 0;
    for entry in std::fs::read_dir(reference.join("dictionaries")).unwrap() {
        let name = entry.unwrap().file_name();
        // Pruned dictionaries are written by pruning, with no checkpoint or log.
        for file in [
            "sae_weights.safetensors",
            "checkpoint.safetensors",
            "checkpoint.previous.safetensors",
            "log.jsonl",
        ] {
            let Ok(want) = std::fs::read(reference.join("dictionaries").join(&name).join(file))
            else {
                continue;
            };
            let have = std::fs::read(resumed.join("dictionaries").join(&name).join(file));
            assert!(
                have.is_ok_and(|have| have == want),
                "{}/{file} differs after the resume",
                name.to_string_lossy()
            );
            compared += 1;
        }
    }
    assert!(compared >= 4 * 7, "only {compared} files compared");
}
