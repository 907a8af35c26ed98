//! The feature browser: one self-contained static page (`index.html`-style, CSS and script
//! inline) and its data beside it in `<stem>.data/`, loaded lazily: `summary.js` (one short row
//! per feature: id, fires, max, peak tokens, promoted tokens — enough to list, filter by density
//! band and search by id or token), `windows.js` (the token ids of every window an example
//! points into, once), `tokens.js` (the text of every token id used) and `f-<chunk>.js` (full
//! panels for [`CHUNK`] features each). Data files are JSON wrapped in a
//! `prismData(name, …)` call, so the page works from `file://` without a server (browsers refuse
//! `fetch` of local JSON); strip the wrapper to read them as JSON.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use prism_core::{PrismError, Result, atomic_write};
use prism_similarity::Neighbours;
use serde_json::{Value, json};

use crate::collect::{Example, FeatureActivity};
use crate::contexts::{FeatureScan, LogitEffect};

/// Features per lazily loaded data file.
pub const CHUNK: usize = 128;

const PAGE: &str = include_str!("../assets/browser.html");

/// Everything the browser shows.
pub struct FeatureSite<'a> {
    /// Page title.
    pub title: &'a str,
    /// Hook point of the dictionary.
    pub hook: &'a str,
    /// The windows the scan ran over (examples point into them).
    pub windows: &'a [Vec<u32>],
    /// The scan's result.
    pub scan: &'a FeatureScan,
    /// Logit effects, one per scanned feature, same order.
    pub logits: &'a [LogitEffect],
    /// Nearest features of the same dictionary by decoder cosine, one list per scanned feature
    /// (empty: not computed).
    pub nearest: &'a [Neighbours],
    /// Nearest features in another dictionary: its name and one list per scanned feature.
    pub other: Option<(&'a str, &'a [Neighbours])>,
    /// Tokens kept either side of a context's peak (as scanned).
    pub radius: usize,
}

/// What [`write_feature_site`] wrote.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SiteFiles {
    /// The page.
    pub page: PathBuf,
    /// The data directory beside it.
    pub data: PathBuf,
    /// Data files written.
    pub files: usize,
    /// Bytes written, page included.
    pub bytes: u64,
}

/// Rounds to 4 significant digits (the page shows 3–4; the files stay small).
fn r4(x: f32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return 0.0;
    }
    format!("{:.3e}", x).parse().unwrap_or(0.0)
}

/// `[window, position, activation, span start, span length, [[offset, value], …]]`; the tokens
/// are in `windows.js`, once per window however many examples point into it.
fn example(ex: &Example, referenced: &mut BTreeSet<usize>) -> Value {
    referenced.insert(ex.window);
    json!([
        ex.window,
        ex.position,
        r4(ex.activation),
        ex.span_start,
        ex.span_len,
        ex.span
            .iter()
            .map(|&(o, a)| json!([o, r4(a)]))
            .collect::<Vec<_>>()
    ])
}

fn bins<'a>(bins: impl IntoIterator<Item = &'a crate::collect::Bin>) -> Value {
    bins.into_iter()
        .map(|b| json!([r4(b.lo), r4(b.hi), b.count]))
        .collect()
}

fn pairs(list: &[(u32, f32)]) -> Value {
    list.iter().map(|&(i, v)| json!([i, r4(v)])).collect()
}

fn feature_json(
    f: &FeatureActivity,
    logit: &LogitEffect,
    near: &[(u32, f32)],
    other: Option<&[(u32, f32)]>,
    referenced: &mut BTreeSet<usize>,
    used: &mut BTreeSet<u32>,
) -> Value {
    used.extend(logit.promoted.iter().chain(&logit.suppressed).map(|p| p.0));
    json!({
        "id": f.feature,
        "fires": f.fires,
        "max": r4(f.max_activation),
        "hist": bins(&f.histogram),
        "top": f.top.iter().map(|e| example(e, referenced)).collect::<Vec<_>>(),
        "bands": f.bands.iter().map(|b| json!({
            "qlo": b.quantile_lo, "qhi": b.quantile_hi,
            "lo": r4(b.activation_lo), "hi": r4(b.activation_hi), "n": b.count,
            "ex": b.examples.iter().map(|e| example(e, referenced)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "logit": {
            "pos": pairs(&logit.promoted),
            "neg": pairs(&logit.suppressed),
            "hist": bins(&logit.histogram),
        },
        "near": pairs(near),
        "other": other.map(pairs),
    })
}

/// The distinct peak tokens of a feature's strongest contexts (up to three).
fn peak_tokens(f: &FeatureActivity, windows: &[Vec<u32>]) -> Vec<u32> {
    let mut out = Vec::new();
    for e in &f.top {
        let t = windows[e.window][e.position];
        if !out.contains(&t) {
            out.push(t);
        }
        if out.len() == 3 {
            break;
        }
    }
    out
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn wrapped(name: &str, value: &Value) -> Result<String> {
    let text = serde_json::to_string(value).map_err(|e| PrismError::InvalidInput(e.to_string()))?;
    // `</script` cannot occur inside JSON strings' escapes we emit, but a token may hold it.
    Ok(format!(
        "prismData({}, {});\n",
        json!(name),
        text.replace("</", "<\\/")
    ))
}

/// Writes the page to `page` and its data to `page` with the extension `data` (a directory),
/// each file atomically; stale data files of an earlier browser there are removed.
pub fn write_feature_site(
    page: &Path,
    site: &FeatureSite<'_>,
    token_str: impl Fn(u32) -> String,
) -> Result<SiteFiles> {
    let n = site.scan.features.len();
    if site.logits.len() != n
        || !(site.nearest.is_empty() || site.nearest.len() == n)
        || site.other.is_some_and(|o| o.1.len() != n)
    {
        return Err(PrismError::Shape(format!(
            "{n} scanned features but {} logit effects, {} nearest lists",
            site.logits.len(),
            site.nearest.len()
        )));
    }
    let outside = site.scan.features.iter().find_map(|f| {
        f.top
            .iter()
            .chain(f.bands.iter().flat_map(|b| &b.examples))
            .find(|e| {
                site.windows
                    .get(e.window)
                    .is_none_or(|w| e.position >= w.len() || e.span_start + e.span_len > w.len())
            })
            .map(|e| (f.feature, e.window, e.position))
    });
    if let Some((feature, window, position)) = outside {
        return Err(PrismError::InvalidInput(format!(
            "feature {feature}'s example at window {window}, position {position} is outside the \
             {} windows given: the scan was not made over these windows",
            site.windows.len()
        )));
    }
    let data = page.with_extension("data");
    std::fs::create_dir_all(&data).map_err(|e| PrismError::io(&data, e))?;
    if let Ok(entries) = std::fs::read_dir(&data) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("f-") && name.ends_with(".js") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let mut used = BTreeSet::new();
    let mut referenced = BTreeSet::new();
    let mut bytes = 0u64;
    let mut files = 0usize;
    let mut write = |name: &str, text: String| -> Result<()> {
        bytes += text.len() as u64;
        files += 1;
        atomic_write(&data.join(name), text.as_bytes())
    };
    let first = site
        .scan
        .features
        .iter()
        .find(|f| f.fires > 0)
        .or(site.scan.features.first())
        .map_or(0, |f| f.feature);
    for (c, start) in (0..n).step_by(CHUNK).enumerate() {
        let end = (start + CHUNK).min(n);
        let chunk: Vec<Value> = (start..end)
            .map(|i| {
                feature_json(
                    &site.scan.features[i],
                    &site.logits[i],
                    site.nearest.get(i).map_or(&[][..], Vec::as_slice),
                    site.other.map(|o| o.1[i].as_slice()),
                    &mut referenced,
                    &mut used,
                )
            })
            .collect();
        write(
            &format!("f-{c}.js"),
            wrapped(&format!("chunk:{c}"), &Value::Array(chunk))?,
        )?;
    }
    let summary = json!({
        "title": site.title,
        "hook": site.hook,
        "tokens": site.scan.tokens,
        "windows": site.windows.len(),
        "radius": site.radius,
        "chunk": CHUNK,
        "first": first,
        "other": site.other.map(|o| o.0),
        "features": site.scan.features.iter().zip(site.logits).map(|(f, l)| {
            let peaks = peak_tokens(f, site.windows);
            let promoted: Vec<u32> = l.promoted.iter().take(3).map(|p| p.0).collect();
            used.extend(peaks.iter().chain(&promoted));
            json!([f.feature, f.fires, r4(f.max_activation), peaks, promoted])
        }).collect::<Vec<_>>(),
    });
    write("summary.js", wrapped("summary", &summary)?)?;
    // Windows no example points into are left empty.
    let windows: Vec<&[u32]> = site
        .windows
        .iter()
        .enumerate()
        .map(|(w, ids)| {
            if referenced.contains(&w) {
                used.extend(ids);
                ids.as_slice()
            } else {
                &[]
            }
        })
        .collect();
    write("windows.js", wrapped("windows", &json!(windows))?)?;
    let tokens: serde_json::Map<String, Value> = used
        .iter()
        .map(|&t| (t.to_string(), Value::String(token_str(t))))
        .collect();
    write("tokens.js", wrapped("tokens", &Value::Object(tokens))?)?;
    let data_name = data
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let html = PAGE.replace("{{TITLE}}", &escape_html(site.title)).replace(
        "{{DATA}}",
        &json!(data_name).to_string().replace("</", "<\\/"),
    );
    bytes += html.len() as u64;
    atomic_write(page, html.as_bytes())?;
    Ok(SiteFiles {
        page: page.to_path_buf(),
        data,
        files,
        bytes,
    })
}
