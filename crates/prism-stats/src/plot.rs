//! Feature-density histograms as PNG and SVG (plotters; text drawn with an embedded font, so no
//! system font or library is needed).

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontTransform;
use prism_core::{PrismError, Result};

use crate::density::{DensityHistogram, density_histogram};

/// DejaVu Sans (see `assets/DejaVuSans-LICENSE.txt`), registered as plotters' sans-serif.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| "invalid font".to_string())
    })
    .clone()
    .map_err(PrismError::InvalidInput)
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    h: &DensityHistogram,
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let total: usize = h.bins.iter().map(|b| b.2).sum::<usize>() + h.dead;
    let y_max = h.bins.iter().map(|b| b.2).max().unwrap_or(0).max(1) as u32;
    let caption = format!("{title} — {total} features, {} dead (not shown)", h.dead);
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(-6.0f64..0.0f64, 0u32..(y_max + y_max / 10 + 1))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("log10(feature density)")
        .y_desc("features")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(h.bins.iter().filter(|b| b.2 > 0).map(|&(x0, x1, c)| {
            Rectangle::new(
                [(x0 + 0.012, 0), (x1 - 0.012, c as u32)],
                RGBColor(210, 90, 20).filled(),
            )
        }))
        .map_err(err)?;
    root.present().map_err(err)
}

/// Draws the density histogram to a PNG (`width × height` pixels) and/or an SVG.
pub fn plot_density_histogram(
    density: &[f64],
    title: &str,
    png: Option<&Path>,
    svg: Option<&Path>,
    size: (u32, u32),
) -> Result<DensityHistogram> {
    register_font()?;
    let h = density_histogram(density);
    if let Some(p) = png {
        draw(BitMapBackend::new(p, size).into_drawing_area(), title, &h)
            .map_err(|e| PrismError::io(p, std::io::Error::other(e)))?;
    }
    if let Some(p) = svg {
        draw(SVGBackend::new(p, size).into_drawing_area(), title, &h)
            .map_err(|e| PrismError::io(p, std::io::Error::other(e)))?;
    }
    Ok(h)
}

/// A heat map of `values` (`rows × cols`, row-major; NaN cells left blank) on a diverging
/// scale centred at zero (blue negative, red positive, symmetric in the largest magnitude), with
/// labelled rows and columns — e.g. blocks × positions (the tokens as labels) of a patching
/// sweep. Written to a PNG and/or an SVG of `size` pixels.
pub fn plot_heatmap(
    values: &[f64],
    rows: &[String],
    cols: &[String],
    title: &str,
    png: Option<&Path>,
    svg: Option<&Path>,
    size: (u32, u32),
) -> Result<()> {
    if values.len() != rows.len() * cols.len() || values.is_empty() {
        return Err(PrismError::Shape(format!(
            "{} values for a {}×{} heat map",
            values.len(),
            rows.len(),
            cols.len()
        )));
    }
    register_font()?;
    if let Some(p) = png {
        draw_heatmap(
            BitMapBackend::new(p, size).into_drawing_area(),
            values,
            rows,
            cols,
            title,
        )
        .map_err(|e| PrismError::io(p, std::io::Error::other(e)))?;
    }
    if let Some(p) = svg {
        draw_heatmap(
            SVGBackend::new(p, size).into_drawing_area(),
            values,
            rows,
            cols,
            title,
        )
        .map_err(|e| PrismError::io(p, std::io::Error::other(e)))?;
    }
    Ok(())
}

fn draw_heatmap<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    values: &[f64],
    rows: &[String],
    cols: &[String],
    title: &str,
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let max = values
        .iter()
        .filter(|v| v.is_finite())
        .fold(1e-12f64, |m, v| m.max(v.abs()));
    let (nr, nc) = (rows.len(), cols.len());
    let caption = format!("{title} (colour scale ±{max:.3})");
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(70)
        .y_label_area_size(110)
        .build_cartesian_2d(0..nc, 0..nr)
        .map_err(err)?;
    let label = |names: &[String], i: &usize| names.get(*i).cloned().unwrap_or_default();
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(nc.min(64))
        .y_labels(nr.min(64))
        .x_label_formatter(&|i| label(cols, i))
        .y_label_formatter(&|i| label(rows, i))
        .x_label_style(
            ("sans-serif", 11)
                .into_font()
                .transform(FontTransform::Rotate90),
        )
        .y_label_style(("sans-serif", 11))
        .draw()
        .map_err(err)?;
    chart
        .draw_series((0..nr).flat_map(|r| {
            (0..nc).filter_map(move |c| {
                let v = values[r * nc + c];
                if !v.is_finite() {
                    return None;
                }
                let t = (v / max).clamp(-1.0, 1.0);
                let fade = |x: f64| (255.0 * (1.0 - x.abs())) as u8;
                let colour = if t >= 0.0 {
                    RGBColor(255, fade(t), fade(t))
                } else {
                    RGBColor(fade(t), fade(t), 255)
                };
                Some(Rectangle::new([(c, r), (c + 1, r + 1)], colour.filled()))
            })
        }))
        .map_err(err)?;
    root.present().map_err(err)
}

/// How a [`Series`] is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Points joined by a line, with a dot at each (curves over n, over layers, over tokens).
    Line,
    /// Dots only (scatter plots).
    Dots,
}

/// One named set of `(x, y)` points.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
    /// Line or dots.
    pub mark: Mark,
}

/// Axes and title of an x–y plot.
#[derive(Clone, Debug, PartialEq)]
pub struct XyPlot<'a> {
    /// Title.
    pub title: &'a str,
    /// x axis label.
    pub x: &'a str,
    /// y axis label.
    pub y: &'a str,
    /// A logarithmic x axis (x must be positive).
    pub log_x: bool,
}

/// An x–y plot of several series (one colour each, with a legend), e.g. faithfulness against
/// circuit size, accuracy against layer, or attribution against exact patching, written to a
/// PNG and/or an SVG of `size` pixels.
pub fn plot_xy(
    series: &[Series],
    axes: &XyPlot<'_>,
    png: Option<&Path>,
    svg: Option<&Path>,
    size: (u32, u32),
) -> Result<()> {
    let finite = |s: &&Series| s.points.iter().all(|p| p.0.is_finite() && p.1.is_finite());
    if series.is_empty()
        || series.iter().all(|s| s.points.is_empty())
        || !series.iter().all(|s| finite(&s))
    {
        return Err(PrismError::InvalidInput(
            "an x–y plot needs at least one finite point".into(),
        ));
    }
    if axes.log_x && series.iter().flat_map(|s| &s.points).any(|p| p.0 <= 0.0) {
        return Err(PrismError::InvalidInput(
            "a logarithmic x axis needs positive x".into(),
        ));
    }
    register_font()?;
    if let Some(p) = png {
        draw_xy(
            BitMapBackend::new(p, size).into_drawing_area(),
            series,
            axes,
        )
        .map_err(|e| PrismError::io(p, std::io::Error::other(e)))?;
    }
    if let Some(p) = svg {
        draw_xy(SVGBackend::new(p, size).into_drawing_area(), series, axes)
            .map_err(|e| PrismError::io(p, std::io::Error::other(e)))?;
    }
    Ok(())
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(127, 127, 127),
];

fn draw_xy<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    series: &[Series],
    axes: &XyPlot<'_>,
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    let span = |lo: f64, hi: f64| {
        let pad = ((hi - lo).abs() * 0.05).max(1e-9);
        (lo - pad, hi + pad)
    };
    let (x0, x1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = span(
        all.iter().map(|p| p.1).fold(f64::MAX, f64::min),
        all.iter().map(|p| p.1).fold(f64::MIN, f64::max),
    );
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(axes.title, ("sans-serif", 17))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64);
    macro_rules! finish {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(axes.x)
                .y_desc(axes.y)
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(err)?;
            for (i, s) in series.iter().enumerate() {
                let colour = PALETTE[i % PALETTE.len()];
                let pts = s.points.clone();
                if s.mark == Mark::Line {
                    chart
                        .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
                        .map_err(err)?;
                }
                chart
                    .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
                    .map_err(err)?
                    .label(s.name.clone())
                    .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(err)?;
        }};
    }
    if axes.log_x {
        finish!(
            builder
                .build_cartesian_2d((x0 / 1.2..x1 * 1.2).log_scale(), y0..y1)
                .map_err(err)?
        );
    } else {
        let (x0, x1) = span(x0, x1);
        finish!(builder.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?);
    }
    root.present().map_err(err)
}
