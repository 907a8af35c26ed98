//! Agreement between two measurements of the same things.

/// Pearson's correlation of the `(x, y)` points (NaN for fewer than two points or a constant
/// coordinate).
///
/// ```
/// let r = prism_stats::pearson(&[(1.0, 2.0), (2.0, 4.1), (3.0, 5.9)]);
/// assert!((r - 0.9997).abs() < 1e-3);
/// assert!(prism_stats::pearson(&[(1.0, 1.0)]).is_nan());
/// ```
pub fn pearson(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return f64::NAN;
    }
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let cov: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let vx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let vy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}
