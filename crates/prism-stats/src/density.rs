//! Feature-density histograms as numbers (the plots are in `plot`), and picking features
//! across density bands.

/// Width of a density bin in log10 units.
pub const BIN_WIDTH: f64 = 0.125;

/// The histogram's numbers: bins over log10 density from the floor `log10(1/tokens)` (the
/// rarest density the measurement can see) to 0, and the dead features counted apart.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DensityHistogram {
    /// `(log10 density lower edge, upper edge, features)`, the first bin holding the floor.
    pub bins: Vec<(f64, f64, usize)>,
    /// Features that never fired.
    pub dead: usize,
    /// `log10(1 / tokens)`: a feature that fired once.
    pub floor: f64,
    /// Features firing on more than 10 % of tokens (the notes' "dense" threshold).
    pub above_tenth: usize,
}

/// Bins densities measured on `tokens` tokens by log10 (`BIN_WIDTH`, ⅛ of a decade, wide; on a grid aligned to
/// 0, from the bin holding `log10(1/tokens)` to 0).
///
/// ```
/// let h = prism_stats::density_histogram(&[0.0, 0.5, 0.5, 0.001], 1000);
/// assert_eq!(h.dead, 1);
/// assert_eq!(h.floor, -3.0);
/// assert_eq!(h.bins[0].0, -3.0); // the first bin starts at the floor
/// assert_eq!(h.bins[0].2, 1); // fired once in 1000 tokens
/// assert_eq!(h.above_tenth, 2);
/// ```
pub fn density_histogram(density: &[f64], tokens: u64) -> DensityHistogram {
    let floor = -(tokens.max(1) as f64).log10();
    let lo = (floor / BIN_WIDTH + 1e-9).floor() * BIN_WIDTH;
    let n = ((-lo / BIN_WIDTH).round() as usize).max(1);
    let mut bins: Vec<(f64, f64, usize)> = (0..n)
        .map(|i| {
            (
                lo + i as f64 * BIN_WIDTH,
                lo + (i + 1) as f64 * BIN_WIDTH,
                0,
            )
        })
        .collect();
    let (mut dead, mut above_tenth) = (0, 0);
    for &d in density {
        if d <= 0.0 {
            dead += 1;
            continue;
        }
        if d > 0.1 {
            above_tenth += 1;
        }
        let i = ((d.log10() - lo) / BIN_WIDTH + 1e-9)
            .floor()
            .clamp(0.0, (n - 1) as f64) as usize;
        bins[i].2 += 1;
    }
    DensityHistogram {
        bins,
        dead,
        floor,
        above_tenth,
    }
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
