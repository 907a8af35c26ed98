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
