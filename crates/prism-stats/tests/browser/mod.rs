//! The feature browser in a real headless Chromium: the page loads its data lazily from
//! `file://`, shows every feature, centres every context on its peak, overflows nowhere at a
//! wide and a narrow window, and its token search finds exactly the features whose peak or
//! promoted tokens match. The checks read the DOM (the page's `?selftest` report), not pixels;
//! screenshots are written beside for people.
//!
//! Chromium comes from Debian's `chromium` package (CI installs it); without it the test is
//! skipped unless `PRISM_REQUIRE_BROWSER` is set (`prism_testkit::require_or_skip`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;
use prism_core::HookPoint;
use prism_stats::{
    BrowserOptions, CollectOptions, FeatureSite, ScanOptions, build_feature_browser, logit_effects,
    write_feature_site,
};

/// Chromium for a check: headless, and virtual time so the page's lazy loads all finish.
fn headless(chrome: &Path, profile: &Path, width: u32) -> Command {
    let mut c = prism_testkit::chromium::command(chrome, profile, width);
    c.arg("--virtual-time-budget=20000");
    c
}

/// The page's self-test report for `url`.
fn selftest(chrome: &Path, profile: &Path, url: &str, width: u32) -> serde_json::Value {
    let report = prism_testkit::chromium::selftest(headless(chrome, profile, width), url).unwrap();
    serde_json::from_str(&report).unwrap()
}

#[test]
fn the_browser_works_in_headless_chromium() {
    let model = common::llama();
    let sae = common::spread_sae(64, 96);
    let other = common::spread_sae(64, 40);
    let hook = HookPoint::ResidPost(0);
    let text = "The browser shows each feature's contexts: where it fires, how strongly, and \
                what it writes to the logits.\n\tIndented lines and  double  spaces stay visible. "
        .repeat(10);
    let ids = model.encode(&text).unwrap();
    let windows: Vec<Vec<u32>> = ids.chunks(32).map(<[u32]>::to_vec).collect();
    let dir = tempfile::tempdir().unwrap();
    let dir = match std::env::var("PRISM_KEEP_BROWSER") {
        Ok(keep) => PathBuf::from(keep), // to look at the page by hand
        Err(_) => dir.path().to_path_buf(),
    };
    let page = dir.join("features.html");
    let options = BrowserOptions {
        title: "test",
        scan: ScanOptions {
            collect: CollectOptions {
                top: 6,
                per_band: 2,
                radius: 5,
                ..CollectOptions::default()
            },
            ..ScanOptions::default()
        },
        other: Some(("other seed", &other)),
        ..BrowserOptions::default()
    };
    let browser =
        build_feature_browser(&model, &sae, hook, &windows, &page, &options, |_| {}).unwrap();
    assert_eq!(browser.files.data, dir.join("features.data"));
    // 96 features in chunks of 128: one chunk, a summary, the windows and the tokens.
    assert_eq!(browser.files.files, 4);
    // A scan written beside windows it was not made over is refused, not a panic.
    let logits = logit_effects(&model, &sae, &(0..96).collect::<Vec<_>>(), 10, 40).unwrap();
    let wrong = FeatureSite {
        title: "wrong",
        hook: "blocks.0.hook_resid_post",
        windows: &windows[..2],
        scan: &browser.scan,
        logits: &logits,
        nearest: &[],
        other: None,
        radius: 5,
    };
    let err = write_feature_site(&dir.join("wrong.html"), &wrong, |t| t.to_string()).unwrap_err();
    assert!(
        err.to_string().contains("not made over these windows"),
        "{err}"
    );

    let Some(chrome) = prism_testkit::chromium() else {
        return;
    };

    let profile = tempfile::tempdir().unwrap();
    let url = |query: &str, feature: usize| {
        format!("file://{}?selftest{query}#f={feature}", page.display())
    };
    // A feature with contexts in several quantile bands.
    let f = browser
        .scan
        .features
        .iter()
        .max_by_key(|f| (f.bands.len(), f.fires))
        .unwrap();
    let expected_contexts = f.top.len() + f.bands.iter().map(|b| b.examples.len()).sum::<usize>();
    for width in [1280, 400] {
        let r = selftest(&chrome, profile.path(), &url("", f.feature), width);
        assert_eq!(r["features"], 96, "{r}");
        assert_eq!(r["feature"], f.feature, "{r}");
        assert_eq!(r["contexts"], expected_contexts as u64, "{r}");
        assert_eq!(r["centred"], r["contexts"], "contexts not centred: {r}");
        assert_eq!(r["overflow"], serde_json::json!([]), "width {width}: {r}");
    }
    // Search by token: the features whose strongest contexts peak on it or whose decoder
    // direction promotes it most (the first three of each, as the summary lists them).
    let query = model
        .tokenizer
        .token_str(windows[f.top[0].window][f.top[0].position])
        .trim()
        .to_lowercase();
    let mut want = Vec::new();
    for (a, l) in browser.scan.features.iter().zip(&logits) {
        let mut peaks: Vec<u32> = Vec::new();
        for e in &a.top {
            let t = windows[e.window][e.position];
            if !peaks.contains(&t) && peaks.len() < 3 {
                peaks.push(t);
            }
        }
        let hit = peaks
            .iter()
            .chain(l.promoted.iter().take(3).map(|p| &p.0))
            .any(|&t| model.tokenizer.token_str(t).trim().to_lowercase() == query);
        if hit {
            want.push(a.feature);
        }
    }
    let r = selftest(
        &chrome,
        profile.path(),
        &url(&format!("&q={}", urlencode(&query)), f.feature),
        1280,
    );
    let got: Vec<usize> = r["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert!(want.contains(&f.feature));
    assert_eq!(got, want, "search {query:?}");
    // Search by id prefix.
    let r = selftest(&chrome, profile.path(), &url("&q=9", 0), 1280);
    assert_eq!(r["matches"], serde_json::json!([9, 90, 91, 92, 93, 94, 95]));

    // Screenshots for people (not compared).
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for (width, name) in [(1280, "browser-wide.png"), (400, "browser-narrow.png")] {
        let status = headless(&chrome, profile.path(), width)
            .arg(format!("--screenshot={}", shots.join(name).display()))
            .arg(format!("file://{}#f={}", page.display(), f.feature))
            .output()
            .unwrap();
        assert!(status.status.success());
        eprintln!("screenshot: {}", shots.join(name).display());
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
