//! A streaming pass that keeps, for every feature, what a feature dashboard shows — in memory
//! bounded per feature whatever the number of tokens scanned:
//!
//! - how often it fired (density) and the histogram of its nonzero activations over
//!   half-octave bins (bin `b` holds activations in `[2^(b/2), 2^((b+1)/2))`);
//! - its `top` strongest activations from *distinct* windows (each window offers only its peak);
//! - uniform samples from activation quantile bands: each bin keeps the `per_band` activations
//!   with the smallest pseudo-random keys (a bottom-k sketch; keys hash feature, window and
//!   position, so the result does not depend on batch order). The bottom-k of a union of bins is
//!   inside the union of their bottom-k, so a band made of whole bins gets an exact uniform
//!   sample without replacement. Band edges are snapped to bin edges, and each band states the
//!   exact share of nonzero activations below and above it.
//!
//! Each kept example holds the feature's activations in a span of `radius` tokens on each side
//! of it (nonzero values only), so contexts can be drawn centred on the peak.

use prism_core::{PrismError, Result};
use rayon::prelude::*;

/// What to keep for each feature.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectOptions {
    /// Strongest activations kept, one per window.
    pub top: usize,
    /// Samples kept per quantile band.
    pub per_band: usize,
    /// Tokens kept on each side of an example's activating token.
    pub radius: usize,
    /// Cut points of the quantile bands over a feature's nonzero activations (increasing, in
    /// (0, 1)); snapped to histogram bin edges.
    pub band_cuts: Vec<f64>,
}

impl Default for CollectOptions {
    fn default() -> Self {
        Self {
            top: 20,
            per_band: 4,
            radius: 12,
            band_cuts: vec![0.5, 0.8, 0.95],
        }
    }
}

/// One activating token and the feature's activations around it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Example {
    /// Index of the window in the scanned list.
    pub window: usize,
    /// Position of the activating token in the window.
    pub position: usize,
    /// The feature's activation there.
    pub activation: f32,
    /// First position of the span kept around it.
    pub span_start: usize,
    /// Number of positions in the span.
    pub span_len: usize,
    /// `(position − span_start, activation)` of every nonzero activation in the span.
    pub span: Vec<(u16, f32)>,
}

impl Example {
    /// The span's activations, zeros included (`span_len` values).
    pub fn span_values(&self) -> Vec<f32> {
        let mut v = vec![0.0; self.span_len];
        for &(i, a) in &self.span {
            v[i as usize] = a;
        }
        v
    }
}

/// A range of a feature's activations holding a known share of its nonzero activations, with a
/// uniform sample of them.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Band {
    /// Share of nonzero activations below the band.
    pub quantile_lo: f64,
    /// Share of nonzero activations below the band's upper edge.
    pub quantile_hi: f64,
    /// Lowest activation the band admits (inclusive).
    pub activation_lo: f32,
    /// Activations in the band are below this (exclusive).
    pub activation_hi: f32,
    /// Nonzero activations in the band.
    pub count: u64,
    /// Uniformly sampled activations of the band, strongest first.
    pub examples: Vec<Example>,
}

/// One bar of a histogram: `[lo, hi)` and how many values fell in it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Bin {
    /// Lower edge (inclusive).
    pub lo: f32,
    /// Upper edge (exclusive).
    pub hi: f32,
    /// Values in the bin.
    pub count: u64,
}

/// Everything kept about one feature.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FeatureActivity {
    /// Feature index.
    pub feature: usize,
    /// Tokens on which its activation was nonzero.
    pub fires: u64,
    /// Tokens scanned.
    pub tokens: u64,
    /// `fires / tokens`.
    pub density: f64,
    /// Largest activation.
    pub max_activation: f32,
    /// Nonzero activations over half-octave bins, lowest first (empty bins between kept).
    pub histogram: Vec<Bin>,
    /// Strongest activations, one per window, strongest first (ties: earlier window).
    pub top: Vec<Example>,
    /// Quantile bands, lowest first.
    pub bands: Vec<Band>,
}

/// Half-octave bin of a positive activation.
fn bin_of(a: f32) -> i32 {
    let mut b = (2.0 * (a as f64).log2()).floor() as i32;
    // The edges are rounded to f32: keep every value inside its bin's stated edges.
    if a < bin_edge(b) {
        b -= 1;
    } else if a >= bin_edge(b + 1) {
        b += 1;
    }
    b
}

fn bin_edge(b: i32) -> f32 {
    (b as f64 / 2.0).exp2() as f32
}

/// splitmix64 of the example's identity: the sampling key.
fn key(feature: usize, window: usize, position: usize) -> u64 {
    let mut z = (feature as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((window as u64) << 20 ^ position as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Clone, Default)]
struct BinState {
    count: u64,
    /// `(key, example)`, smallest keys, at most `per_band`, sorted by key.
    sample: Vec<(u64, Example)>,
}

#[derive(Clone, Default)]
struct FeatureState {
    fires: u64,
    max: f32,
    /// Bins `first_bin ..`.
    first_bin: i32,
    bins: Vec<BinState>,
    top: Vec<Example>,
}

impl FeatureState {
    fn bin_mut(&mut self, b: i32) -> &mut BinState {
        if self.bins.is_empty() {
            self.first_bin = b;
        } else if b < self.first_bin {
            let extra = (self.first_bin - b) as usize;
            self.bins
                .splice(0..0, std::iter::repeat_n(BinState::default(), extra));
            self.first_bin = b;
        }
        let i = (b - self.first_bin) as usize;
        if i >= self.bins.len() {
            self.bins.resize(i + 1, BinState::default());
        }
        &mut self.bins[i]
    }
}

/// The streaming collector: feed it windows' codes with [`FeatureCollector::observe`], then
/// [`FeatureCollector::finish`].
///
/// ```
/// use prism_stats::{CollectOptions, FeatureCollector};
/// let options = CollectOptions { top: 2, per_band: 1, radius: 1, band_cuts: vec![0.5] };
/// let mut c = FeatureCollector::new(vec![7], options);
/// // Two windows of three tokens, one feature (column): codes are row-major [tokens, features].
/// c.observe(0, &[0.0, 2.0, 1.0], 3)?;
/// c.observe(1, &[4.0, 0.0, 0.0], 3)?;
/// assert!(c.observe(2, &[1.0], 3).is_err()); // three tokens need three rows
/// let f = &c.finish()[0];
/// assert_eq!((f.feature, f.fires, f.tokens), (7, 3, 6));
/// assert_eq!(f.top.iter().map(|e| (e.window, e.position)).collect::<Vec<_>>(), [(1, 0), (0, 1)]);
/// assert_eq!(f.top[1].span, [(1, 2.0), (2, 1.0)]); // positions 0..=2 around position 1
/// # Ok::<(), prism_core::PrismError>(())
/// ```
pub struct FeatureCollector {
    features: Vec<usize>,
    options: CollectOptions,
    tokens: u64,
    states: Vec<FeatureState>,
}

impl FeatureCollector {
    /// A collector for `features` (the column `k` of the codes given is feature `features[k]`).
    pub fn new(features: Vec<usize>, options: CollectOptions) -> Self {
        let states = vec![FeatureState::default(); features.len()];
        Self {
            features,
            options,
            tokens: 0,
            states,
        }
    }

    /// Tokens observed so far.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Takes the codes of window `window` (`[len, features]`, row-major, one row per real token
    /// of the window, in order).
    pub fn observe(&mut self, window: usize, codes: &[f32], len: usize) -> Result<()> {
        let nf = self.features.len();
        if codes.len() != len * nf {
            return Err(PrismError::Shape(format!(
                "{} codes for {len} tokens of {nf} features",
                codes.len()
            )));
        }
        self.tokens += len as u64;
        if nf == 0 || len == 0 {
            return Ok(());
        }
        let options = &self.options;
        let block = nf.div_ceil(rayon::current_num_threads().max(1) * 4).max(64);
        self.states
            .par_chunks_mut(block)
            .zip(self.features.par_chunks(block))
            .enumerate()
            .for_each(|(b, (states, features))| {
                for (j, (state, &feature)) in states.iter_mut().zip(features).enumerate() {
                    let k = b * block + j;
                    observe_one(state, feature, window, codes, nf, k, len, options);
                }
            });
        Ok(())
    }

    /// The kept activity of every feature, in the order given to [`FeatureCollector::new`].
    pub fn finish(self) -> Vec<FeatureActivity> {
        let tokens = self.tokens;
        let options = self.options;
        self.states
            .into_iter()
            .zip(self.features)
            .map(|(s, feature)| finish_one(s, feature, tokens, &options))
            .collect()
    }
}

fn span_of(
    codes: &[f32],
    nf: usize,
    k: usize,
    len: usize,
    p: usize,
    radius: usize,
) -> (usize, usize, Vec<(u16, f32)>) {
    let start = p.saturating_sub(radius);
    let end = (p + radius + 1).min(len);
    let span = (start..end)
        .filter_map(|q| {
            let a = codes[q * nf + k];
            (a != 0.0).then_some(((q - start) as u16, a))
        })
        .collect();
    (start, end - start, span)
}

#[allow(clippy::too_many_arguments)]
fn observe_one(
    state: &mut FeatureState,
    feature: usize,
    window: usize,
    codes: &[f32],
    nf: usize,
    k: usize,
    len: usize,
    o: &CollectOptions,
) {
    let radius = o.radius.min(u16::MAX as usize / 2);
    let example = |p: usize, a: f32| {
        let (span_start, span_len, span) = span_of(codes, nf, k, len, p, radius);
        Example {
            window,
            position: p,
            activation: a,
            span_start,
            span_len,
            span,
        }
    };
    let (mut peak, mut peak_at) = (0.0f32, 0usize);
    for p in 0..len {
        let a = codes[p * nf + k];
        if a == 0.0 {
            continue;
        }
        state.fires += 1;
        let shown = a > 0.0 && a.is_finite();
        if !shown {
            continue; // negative or non-finite codes are counted as firing, never shown
        }
        state.max = state.max.max(a);
        if a > peak {
            (peak, peak_at) = (a, p);
        }
        let per_band = o.per_band;
        let bin = state.bin_mut(bin_of(a));
        bin.count += 1;
        if per_band > 0 {
            let kk = key(feature, window, p);
            if bin.sample.len() < per_band || kk < bin.sample[per_band - 1].0 {
                let at = bin.sample.partition_point(|e| e.0 < kk);
                bin.sample.insert(at, (kk, example(p, a)));
                bin.sample.truncate(per_band);
            }
        }
    }
    if peak > 0.0 && o.top > 0 {
        let full = state.top.len() >= o.top;
        if !full || peak > state.top[o.top - 1].activation {
            let at = state.top.partition_point(|e| e.activation >= peak);
            state.top.insert(at, example(peak_at, peak));
            state.top.truncate(o.top);
        }
    }
}

fn finish_one(s: FeatureState, feature: usize, tokens: u64, o: &CollectOptions) -> FeatureActivity {
    let histogram: Vec<Bin> = s
        .bins
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let at = s.first_bin + i as i32;
            Bin {
                lo: bin_edge(at),
                hi: bin_edge(at + 1),
                count: b.count,
            }
        })
        .collect();
    let total: u64 = histogram.iter().map(|b| b.count).sum();
    // Snap each cut to the bin edge whose cumulative share is nearest; bands are runs of bins.
    let mut cum = Vec::with_capacity(s.bins.len() + 1);
    cum.push(0u64);
    for b in &s.bins {
        cum.push(cum.last().unwrap() + b.count);
    }
    let mut edges = vec![0usize];
    if total > 0 {
        for &q in &o.band_cuts {
            let target = q * total as f64;
            let e = (1..s.bins.len())
                .min_by(|&a, &b| {
                    (cum[a] as f64 - target)
                        .abs()
                        .total_cmp(&(cum[b] as f64 - target).abs())
                })
                .unwrap_or(0);
            if e > *edges.last().unwrap() {
                edges.push(e);
            }
        }
    }
    edges.push(s.bins.len());
    let bands = edges
        .windows(2)
        .filter(|w| w[1] > w[0] && cum[w[1]] > cum[w[0]])
        .map(|w| {
            let mut sample: Vec<(u64, Example)> = s.bins[w[0]..w[1]]
                .iter()
                .flat_map(|b| b.sample.iter().cloned())
                .collect();
            sample.sort_by_key(|e| e.0);
            sample.truncate(o.per_band);
            let mut examples: Vec<Example> = sample.into_iter().map(|e| e.1).collect();
            examples.sort_by(|a, b| b.activation.total_cmp(&a.activation));
            Band {
                quantile_lo: cum[w[0]] as f64 / total as f64,
                quantile_hi: cum[w[1]] as f64 / total as f64,
                activation_lo: histogram[w[0]].lo,
                activation_hi: histogram[w[1] - 1].hi,
                count: cum[w[1]] - cum[w[0]],
                examples,
            }
        })
        .collect();
    FeatureActivity {
        feature,
        fires: s.fires,
        tokens,
        density: s.fires as f64 / tokens.max(1) as f64,
        max_activation: s.max,
        histogram,
        top: s.top,
        bands,
    }
}
