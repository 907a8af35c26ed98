//! A self-contained static HTML page to browse features: density, logit effects, contexts.

use crate::contexts::FeatureReport;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' => out.push('↵'),
            c if c.is_control() => out.push('�'),
            c => out.push(c),
        }
    }
    out
}

/// Chooses up to `count` features spread over log10-density bands (one band per decade from
/// 1e-5 to 1), evenly within each band; dead features are left out.
///
/// ```
/// let density = [0.0, 0.5, 0.002, 0.03, 0.0004, 0.6, 0.004];
/// let picked = prism_stats::sample_across_density_bands(&density, 4);
/// assert_eq!(picked.len(), 4);
/// assert!(!picked.contains(&0)); // dead
/// ```
pub fn sample_across_density_bands(density: &[f64], count: usize) -> Vec<usize> {
    let mut bands: Vec<Vec<usize>> = vec![Vec::new(); 5];
    for (i, &d) in density.iter().enumerate() {
        if d > 0.0 {
            let band = ((-d.log10()).floor().max(0.0) as usize).min(4);
            bands[4 - band].push(i);
        }
    }
    let mut picked = Vec::new();
    let mut round = 0;
    while picked.len() < count && bands.iter().any(|b| round < b.len()) {
        for b in &bands {
            if round < b.len() && picked.len() < count {
                // Spread picks: 0, then the middle, then quarter points… via a stride permutation.
                let i = (round * 7919) % b.len();
                if !picked.contains(&b[i]) {
                    picked.push(b[i]);
                }
            }
        }
        round += 1;
    }
    picked.sort_unstable();
    picked
}

/// Renders a feature browser: one section per feature with its density, the tokens its decoder
/// direction promotes and suppresses, and its top contexts with each token shaded by activation.
/// The markup is well-formed (every element closed, attributes quoted, text escaped).
pub fn feature_browser_html(title: &str, reports: &[FeatureReport]) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\" />\n");
    h.push_str(&format!("<title>{}</title>\n", escape(title)));
    h.push_str(
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}section{border-top:1px solid #ccc;padding:.5em 0}\
         .ctx{font-family:monospace;margin:.2em 0;white-space:pre-wrap}.tok{border-radius:2px}\
         .max{outline:2px solid #b00}.logit{font-family:monospace;font-size:90%}nav a{margin-right:.6em}</style>\n</head>\n<body>\n",
    );
    h.push_str(&format!("<h1>{}</h1>\n<nav>", escape(title)));
    for r in reports {
        h.push_str(&format!("<a href=\"#f{0}\">{0}</a>", r.feature));
    }
    h.push_str("</nav>\n");
    for r in reports {
        h.push_str(&format!(
            "<section id=\"f{0}\">\n<h2>Feature {0}</h2>\n<p>density {1:.5} ({2:.3}% of tokens)</p>\n",
            r.feature,
            r.density,
            100.0 * r.density
        ));
        for (label, list) in [("promotes", &r.promoted), ("suppresses", &r.suppressed)] {
            h.push_str(&format!("<p class=\"logit\">{label}: "));
            for (t, v) in list.iter() {
                h.push_str(&format!(
                    "<span title=\"{v:.3}\">{}</span> ",
                    escape(&format!("{t:?}"))
                ));
            }
            h.push_str("</p>\n");
        }
        let max = r
            .top
            .first()
            .map(|c| c.activation)
            .unwrap_or(1.0)
            .max(1e-12);
        for c in &r.top {
            h.push_str(&format!(
                "<div class=\"ctx\" data-activation=\"{:.4}\">",
                c.activation
            ));
            for (i, (t, a)) in c.tokens.iter().zip(&c.activations).enumerate() {
                let alpha = (a / max).clamp(0.0, 1.0);
                let class = if i == c.position { "tok max" } else { "tok" };
                h.push_str(&format!(
                    "<span class=\"{class}\" style=\"background:rgba(255,80,0,{alpha:.3})\" title=\"{a:.4}\">{}</span>",
                    escape(t)
                ));
            }
            h.push_str("</div>\n");
        }
        h.push_str("</section>\n");
    }
    h.push_str("</body>\n</html>\n");
    h
}
