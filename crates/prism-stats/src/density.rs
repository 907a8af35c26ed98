//! Feature-density histograms as numbers (the plots are in `plot`).

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
