//! Feature-density histograms as PNG and SVG (plotters; text drawn with an embedded font, so no
//! system font or library is needed).

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontTransform;
use plotters::style::text_anchor::{HPos, Pos, VPos};
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
    let (width, _) = root.dim_in_pixel();
    let live: usize = h.bins.iter().map(|b| b.2).sum();
    let y_max = h.bins.iter().map(|b| b.2).max().unwrap_or(0).max(1) as u32;
    // The title on its own line, sized to fit; the counts on a second line.
    let title_size = (1.9 * width as f64 / title.chars().count().max(1) as f64).clamp(11.0, 18.0);
    let (top, body) = root.split_vertically(48);
    top.draw(&Text::new(
        title.to_string(),
        (12, 6),
        ("sans-serif", title_size).into_font(),
    ))
    .map_err(err)?;
    let sub = format!(
        "{live} live features shown, {} dead (never fired) not shown; {} above 10 % density",
        h.dead, h.above_tenth
    );
    top.draw(&Text::new(
        sub,
        (12, 28),
        ("sans-serif", 13).into_font().color(&RGBColor(80, 80, 80)),
    ))
    .map_err(err)?;
    let x0 = h.bins.first().map_or(-6.0, |b| b.0);
    let y_top = y_max + y_max / 10 + 1;
    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..0.0f64, 0u32..y_top)
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
    let grey = RGBColor(90, 90, 90);
    for (x, label) in [(h.floor, "fired once (1/N)"), (-1.0, "10 %")] {
        if x < x0 {
            continue;
        }
        chart
            .draw_series(DashedLineSeries::new(
                [(x, 0), (x, y_top)],
                6,
                4,
                grey.stroke_width(1),
            ))
            .map_err(err)?;
        let anchor = if x > -0.8 { x - 0.03 } else { x + 0.03 };
        let pos = if x > -0.8 {
            Pos::new(HPos::Right, VPos::Top)
        } else {
            Pos::new(HPos::Left, VPos::Top)
        };
        chart
            .draw_series(std::iter::once(Text::new(
                label.to_string(),
                (anchor, y_top - y_top / 40),
                ("sans-serif", 12).into_font().color(&grey).pos(pos),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// Draws the density histogram of densities measured on `tokens` tokens to a PNG
/// (`width × height` pixels) and/or an SVG: bars from the floor `log10(1/tokens)` to 0, dashed
/// lines at the floor and at 10 %, dead features counted in the subtitle.
pub fn plot_density_histogram(
    density: &[f64],
    tokens: u64,
    title: &str,
    png: Option<&Path>,
    svg: Option<&Path>,
    size: (u32, u32),
) -> Result<DensityHistogram> {
    register_font()?;
    let h = density_histogram(density, tokens);
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

/// The densities of several dictionaries on one plot: for each, the share of its live features
/// in each log10-density bin (dictionaries of different sizes compare), plus vertical markers at
/// 10 % and at the floor of the fewest tokens measured. Pass the result to [`plot_xy`].
///
/// ```
/// let a = (String::from("8x"), vec![0.001, 0.01, 0.0], 1000u64);
/// let series = prism_stats::density_overlay_series(&[a]);
/// assert_eq!(series[0].name, "8x (2 live, 1 dead)");
/// let share: f64 = series[0].points.iter().map(|p| p.1).sum();
/// assert!((share - 1.0).abs() < 1e-12);
/// ```
pub fn density_overlay_series(dictionaries: &[(String, Vec<f64>, u64)]) -> Vec<Series> {
    let mut out = Vec::new();
    let mut top = 0.0f64;
    let mut floor = f64::MIN;
    for (name, density, tokens) in dictionaries {
        let h = density_histogram(density, *tokens);
        floor = floor.max(h.floor);
        let live: usize = h.bins.iter().map(|b| b.2).sum();
        let points: Vec<(f64, f64)> = h
            .bins
            .iter()
            .map(|b| ((b.0 + b.1) / 2.0, b.2 as f64 / live.max(1) as f64))
            .collect();
        top = points.iter().fold(top, |t, p| t.max(p.1));
        out.push(Series {
            name: format!("{name} ({live} live, {} dead)", h.dead),
            points,
            mark: Mark::Line,
        });
    }
    for (x, name) in [(-1.0, "10 % density"), (floor, "fired once (1/N)")] {
        if !out.is_empty() && x.is_finite() && x > f64::MIN {
            out.push(Series {
                name: name.into(),
                points: vec![(x, 0.0), (x, top)],
                mark: Mark::Reference,
            });
        }
    }
    out
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
    /// A grey dashed line through the points, no dots, no colour of its own: a reference such
    /// as a threshold.
    Reference,
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
    RGBColor(140, 86, 75),
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
            let mut coloured = 0;
            for s in series {
                let pts = s.points.clone();
                if s.mark == Mark::Reference {
                    let grey = RGBColor(110, 110, 110);
                    chart
                        .draw_series(DashedLineSeries::new(pts, 6, 4, grey.stroke_width(1)))
                        .map_err(err)?
                        .label(s.name.clone())
                        .legend(move |(x, y)| {
                            PathElement::new([(x, y), (x + 16, y)], grey.stroke_width(1))
                        });
                    continue;
                }
                let colour = PALETTE[coloured % PALETTE.len()];
                coloured += 1;
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
