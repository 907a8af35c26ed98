//! A feature circuit drawn by layer: one row per site in the order a forward pass reaches it
//! (the first at the bottom, the metric on top), the circuit's nodes in each row, edges as lines
//! whose width follows the weight's size — blue where a change raises the metric, red where it
//! lowers it (nodes coloured likewise by their effect). Plain SVG text, no plotting library.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::edges::{EdgeCircuit, EdgeTarget};
use crate::node::{Node, Unit};

const ROW: f64 = 90.0;
const COLUMN: f64 = 64.0;
const LEFT: f64 = 190.0;
const TOP: f64 = 60.0;

/// `rgb(…)` for a signed share in `[-1, 1]`: white at 0, blue for positive, red for negative.
fn colour(share: f64) -> String {
    let s = share.clamp(-1.0, 1.0);
    let fade = |v: f64| (255.0 - (255.0 - v) * s.abs()).round() as u8;
    if s >= 0.0 {
        format!("rgb({},{},{})", fade(33.0), fade(102.0), fade(172.0))
    } else {
        format!("rgb({},{},{})", fade(178.0), fade(24.0), fade(43.0))
    }
}

fn label(node: &Node) -> String {
    match node.unit {
        Unit::Feature(j) => j.to_string(),
        Unit::Error => "ε".into(),
        _ => node.to_string(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl EdgeCircuit {
    /// The circuit as an SVG document: per site, the `per_site` nodes with the largest
    /// |effect| among those that count or carry an edge, and the edges among the nodes drawn.
    pub fn svg(&self, per_site: usize) -> String {
        let mut shown: BTreeMap<usize, Vec<Node>> = BTreeMap::new();
        let in_edges = |n: &Node| {
            self.edges
                .iter()
                .any(|e| e.from == *n || e.to == EdgeTarget::Node(*n))
        };
        for (row, site) in self.sites.iter().enumerate() {
            let mut nodes: Vec<_> = self
                .nodes
                .iter()
                .filter(|n| n.node.hook == *site && (n.selected || in_edges(&n.node)))
                .collect();
            nodes.sort_by(|a, b| b.effect.abs().total_cmp(&a.effect.abs()));
            nodes.truncate(per_site);
            let mut nodes: Vec<Node> = nodes.iter().map(|n| n.node).collect();
            nodes.sort();
            shown.insert(row, nodes);
        }
        let width = shown.values().map(Vec::len).max().unwrap_or(1).max(1);
        let rows = self.sites.len() + 1;
        let (w, h) = (
            LEFT + COLUMN * width as f64 + 40.0,
            TOP + ROW * rows as f64 + 20.0,
        );
        // Row 0 is the first site, drawn at the bottom; the metric sits above the last.
        let y_of = |row: usize| TOP + ROW * (rows - 1 - row) as f64 + ROW / 2.0;
        let mut at: BTreeMap<Node, (f64, f64)> = BTreeMap::new();
        for (&row, nodes) in &shown {
            let offset = (width - nodes.len()) as f64 * COLUMN / 2.0;
            for (i, n) in nodes.iter().enumerate() {
                at.insert(*n, (LEFT + offset + COLUMN * (i as f64 + 0.5), y_of(row)));
            }
        }
        let metric_at = (LEFT + COLUMN * width as f64 / 2.0, y_of(rows - 1));
        let max_edge = self
            .edges
            .iter()
            .filter(|e| at.contains_key(&e.from))
            .map(|e| e.weight.abs())
            .fold(0.0, f64::max)
            .max(f64::MIN_POSITIVE);
        let max_effect = self
            .nodes
            .iter()
            .map(|n| n.effect.abs())
            .fold(0.0, f64::max)
            .max(f64::MIN_POSITIVE);
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="DejaVu Sans, sans-serif" font-size="12">"##
        );
        let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##);
        let _ = writeln!(
            svg,
            r##"<text x="12" y="24" font-size="15">Feature circuit: {} ({:?}), clean {:.4}, corrupted {:.4}</text>"##,
            escape(&self.metric),
            self.direction,
            self.clean,
            self.corrupt
        );
        for (row, site) in self.sites.iter().enumerate() {
            let _ = writeln!(
                svg,
                r##"<text x="12" y="{:.1}" fill="#444">{}</text>"##,
                y_of(row) + 4.0,
                escape(&site.to_string())
            );
        }
        let _ = writeln!(
            svg,
            r##"<text x="12" y="{:.1}" fill="#444">metric</text>"##,
            metric_at.1 + 4.0
        );
        for e in self.edges.iter().rev() {
            let Some(&(x1, y1)) = at.get(&e.from) else {
                continue;
            };
            let (x2, y2) = match e.to {
                EdgeTarget::Node(n) => match at.get(&n) {
                    Some(&p) => p,
                    None => continue,
                },
                EdgeTarget::Metric => metric_at,
            };
            let share = e.weight / max_edge;
            let _ = writeln!(
                svg,
                r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{}" stroke-width="{:.2}" stroke-opacity="0.75"><title>{} → {}: {:.4e}</title></line>"##,
                colour(share.signum()),
                0.5 + 5.0 * share.abs(),
                escape(&e.from.to_string()),
                escape(&match e.to {
                    EdgeTarget::Node(n) => n.to_string(),
                    EdgeTarget::Metric => "metric".into(),
                }),
                e.weight
            );
        }
        for n in &self.nodes {
            let Some(&(x, y)) = at.get(&n.node) else {
                continue;
            };
            let _ = writeln!(
                svg,
                r##"<g><title>{}: effect {:.4e}</title><rect x="{:.1}" y="{:.1}" width="44" height="24" rx="5" fill="{}" stroke="{}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text></g>"##,
                escape(&n.node.to_string()),
                n.effect,
                x - 22.0,
                y - 12.0,
                colour(n.effect / max_effect),
                if n.selected { "#222" } else { "#aaa" },
                y + 4.0,
                escape(&label(&n.node))
            );
        }
        let _ = writeln!(
            svg,
            r##"<g><rect x="{:.1}" y="{:.1}" width="64" height="24" rx="5" fill="#eee" stroke="#222"/><text x="{:.1}" y="{:.1}" text-anchor="middle">metric</text></g>"##,
            metric_at.0 - 32.0,
            metric_at.1 - 12.0,
            metric_at.0,
            metric_at.1 + 4.0
        );
        svg.push_str("</svg>\n");
        svg
    }
}
