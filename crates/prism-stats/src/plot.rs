//! Feature-density histograms as PNG and SVG (plotters; text drawn with an embedded font, so no
//! system font or library is needed).

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use prism_core::{PrismError, Result};

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

/// The histogram's numbers: `bins` over log10 density, and the dead features counted apart.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DensityHistogram {
    /// `(log10 density lower edge, upper edge, features)`, from 1e-6 (and below) to 1.
    pub bins: Vec<(f64, f64, usize)>,
    /// Features that never fired.
    pub dead: usize,
}

/// Bins densities by log10 (width 0.125 from −6 to 0; rarer live features go in the first bin).
///
/// ```
/// let h = prism_stats::density_histogram(&[0.0, 0.5, 0.5, 1e-9]);
/// assert_eq!(h.dead, 1);
/// assert_eq!(h.bins.iter().map(|b| b.2).sum::<usize>(), 3);
/// assert_eq!(h.bins[0].2, 1); // 1e-9 is clipped into the first bin
/// ```
pub fn density_histogram(density: &[f64]) -> DensityHistogram {
    let (lo, width, n) = (-6.0, 0.125, 48);
    let mut bins: Vec<(f64, f64, usize)> = (0..n)
        .map(|i| (lo + i as f64 * width, lo + (i + 1) as f64 * width, 0))
        .collect();
    let mut dead = 0;
    for &d in density {
        if d <= 0.0 {
            dead += 1;
            continue;
        }
        let i = ((d.log10() - lo) / width)
            .floor()
            .clamp(0.0, (n - 1) as f64) as usize;
        bins[i].2 += 1;
    }
    DensityHistogram { bins, dead }
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
