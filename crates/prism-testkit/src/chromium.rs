//! Headless Chromium (Debian's `chromium`) on a machine without network, for the feature
//! browser's test and benchmark: the flags, and the page's `?selftest` report read from the DOM.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `/usr/bin/chromium` (or `PRISM_CHROMIUM`), if installed.
pub fn find() -> Option<PathBuf> {
    std::env::var_os("PRISM_CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/usr/bin/chromium")])
        .find(|p| p.exists())
}

/// A headless Chromium with a fresh profile in `profile`, a `width × 900` window, and nothing
/// that reaches for the network (background networking, component updates, sync, QUIC).
pub fn command(chrome: &Path, profile: &Path, width: u32) -> Command {
    let mut c = Command::new(chrome);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--window-size={width},900"));
    c
}

/// Loads `url` in `command` with `--dump-dom` and returns the text of the page's
/// `<pre id="selftest">` (HTML entities decoded), or the DOM and stderr when there is none.
pub fn selftest(mut command: Command, url: &str) -> Result<String, String> {
    let out = command
        .arg("--dump-dom")
        .arg(url)
        .output()
        .map_err(|e| e.to_string())?;
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = "<pre id=\"selftest\">";
    let Some(at) = dom.find(start) else {
        return Err(format!(
            "no self-test report in the DOM of {url}:\n{}\n{}",
            &dom[..dom.len().min(3000)],
            String::from_utf8_lossy(&out.stderr)
        ));
    };
    let text = &dom[at + start.len()..];
    let text = &text[..text.find("</pre>").unwrap_or(text.len())];
    Ok(text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&"))
}
