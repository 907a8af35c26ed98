//! Dedicated CPU kernels for the forward pass on burn's `flex` backend.
//!
//! burn runs each element-wise op as its own pass over memory, and SiLU's `exp` one scalar call
//! at a time; attention materialises `[batch, heads, seq, seq]` scores, a mask, a softmax and a
//! GQA copy of the keys and values. On a CPU those passes cost as much as the block's GEMMs
//! (`bench_forward --ops`). The kernels here do the same arithmetic in one pass over each row:
//!
//! - [`matmul`]: projections and the unembedding on the `gemm` crate, weights read in place;
//! - [`silu_times_up`]: `SiLU(gate) · up` from the fused gate|up projection's output, and
//!   [`gelu_tanh_times_up`] likewise for Gemma's GELU-tanh gating;
//! - [`gelu`]: the exact (erf) GELU of GPT-NeoX's MLP;
//! - [`causal_attention`]: rotary embedding, grouped-query attention, the causal softmax and the
//!   weighted sum of values, per (sequence, key-value head), without storing any pattern.
//!
//! They run only on plain (non-autodiff) `flex` tensors ([`CpuPath::applies`]) and only where
//! no hook asks for what they skip (the attention pattern); everything else stays burn's.
//! Loops are written so LLVM vectorises them, compiled three times (baseline, AVX2+FMA,
//! AVX-512) and chosen at run time.

use burn::tensor::{Device, Tensor, TensorData};
use prism_core::Result;

use crate::config::{RopeFrequencies, RopeScaling};
use prism_core::dense::{View, matmul_serial};
use prism_core::simd_dispatch;
use rayon::prelude::*;

/// Which implementation a CPU forward pass uses for its GEMMs, attention and SiLU·up.
///
/// ```
/// use prism_models::CpuPath;
/// assert_eq!(CpuPath::default(), CpuPath::Fused);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuPath {
    /// This module's fused kernels where they apply (the default).
    #[default]
    Fused,
    /// burn's tensor ops throughout: the reference the fused path is tested and timed against.
    BurnOps,
}

impl CpuPath {
    /// Whether the fused kernels run on `t`: this path is [`CpuPath::Fused`] and `t` is a plain
    /// `flex` CPU tensor (autodiff tensors keep burn's ops, so gradients flow).
    pub fn applies<const D: usize>(self, t: &Tensor<D>) -> bool {
        let device = t.device();
        self == CpuPath::Fused && !device.is_autodiff() && device == Device::flex()
    }
}

/// Runs `kernel` on a CPU tensor's values, read in place (no copy when the tensor owns a
/// contiguous buffer; a tensor shared with a clone is copied out first).
///
/// ```
/// let device = prism_core::device("cpu").unwrap();
/// let t = burn::tensor::Tensor::<1>::from_floats([1.0, 2.0], &device);
/// let sum = prism_models::cpu::on_host(t, |v| v.iter().sum::<f32>()).unwrap();
/// assert_eq!(sum, 3.0);
/// ```
pub fn on_host<const D: usize, R>(t: Tensor<D>, kernel: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let data = t
        .try_into_data()
        .map_err(|e| prism_core::PrismError::Readback(e.to_string()))?;
    let values = data
        .as_slice::<f32>()
        .map_err(|e| prism_core::PrismError::Readback(format!("{e:?}")))?;
    Ok(kernel(values))
}

/// `x · w` on the host GEMM (`prism_core::dense::matmul`, the `gemm` crate burn's `flex`
/// matmul also calls, without the copies around it), reading the weight in place through its
/// `flex` primitive; burn's matmul when `w` is not a contiguous f32 `flex` tensor.
pub fn matmul(x: Tensor<2>, w: &Tensor<2>) -> Result<Tensor<2>> {
    let ([n, k], m) = (x.dims(), w.dims()[1]);
    let device = x.device();
    let weight = w.clone().try_into_primitive::<burn::backend::Flex>().ok();
    let Some(weight) = weight
        .as_ref()
        .and_then(|w| w.as_slice::<f32>())
        .filter(|w| w.len() == k * m)
    else {
        return Ok(x.matmul(w.clone()));
    };
    let out = on_host(x, |x| {
        prism_core::dense::matmul_new(View::new(x, n, k), View::new(weight, k, m))
    })?;
    Ok(device_tensor(out, [n, m], &device))
}

/// Puts values back on the CPU device as a tensor of `shape` (no copy).
pub fn device_tensor<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// `e^x` in f32 to within 2 ulp over the range where it is a normal number (inputs are clamped
/// to it), branch-free so loops over it vectorise: `x = n·ln2 + r`, a degree-6 polynomial for
/// `e^r` on `|r| ≤ ln2/2` (Cephes' coefficients), and `2^n` built from its exponent bits.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n·LN2_HI is exact for the n that occur.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a rounding instruction.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.33, 88.37);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    p = p * r * r + r + 1.0;
    // `shifted`'s low mantissa bits hold n (an integer in −126..=127): 2ⁿ's exponent bits
    // without a float-to-int conversion (whose saturating form would not vectorise).
    let two_n = (shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127))
        << 23;
    p * f32::from_bits(two_n)
}

/// `out[i] = act(gate[i]) · up[i]` for one row, `act` SiLU (`g·σ(g)`) or, with `tanh_gelu`, the
/// tanh-approximated GELU `0.5·g·(1 + tanh(u)) = g·σ(2u)`, `u = √(2/π)·(g + 0.044715·g³)`.
#[inline(always)]
fn gated_row(gate: &[f32], up: &[f32], out: &mut [f32], tanh_gelu: bool) {
    if tanh_gelu {
        const K: f32 = 0.797_884_6; // √(2/π)
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            let inner = K * (g + 0.044_715 * g * g * g);
            *o = g / (1.0 + exp(-2.0 * inner)) * u;
        }
    } else {
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = g / (1.0 + exp(-g)) * u;
        }
    }
}

simd_dispatch! {
    /// [`gated_row`] over a block of rows of `[gate | up]`, `m` wide each.
    fn gated_rows(gate_up: &[f32], out: &mut [f32], m: usize, tanh_gelu: bool) => gated_rows_body
}

#[inline(always)]
fn gated_rows_body(gate_up: &[f32], out: &mut [f32], m: usize, tanh_gelu: bool) {
    for (row, o) in gate_up.chunks_exact(2 * m).zip(out.chunks_exact_mut(m)) {
        let (gate, up) = row.split_at(m);
        gated_row(gate, up, o, tanh_gelu);
    }
}

/// `act(gate) · up` for every row of `gate_up: [rows, 2m]` (columns gate | up), rows split over
/// the cores.
fn gated(gate_up: &[f32], m: usize, tanh_gelu: bool) -> Vec<f32> {
    let rows = gate_up.len() / (2 * m).max(1);
    let mut out = vec![0.0f32; rows * m];
    const ROWS_PER_TASK: usize = 16;
    out.par_chunks_mut(ROWS_PER_TASK * m)
        .zip(gate_up.par_chunks(ROWS_PER_TASK * 2 * m))
        .for_each(|(o, g)| gated_rows(g, o, m, tanh_gelu));
    out
}

/// `SiLU(gate) · up` for every row of `gate_up: [rows, 2m]` (columns gate | up), the gated MLP's
/// hidden activation `[rows, m]`, in one pass, rows split over the cores.
///
/// ```
/// # use prism_models::cpu::silu_times_up;
/// let (gate, up) = (0.5f32, 3.0f32);
/// let out = silu_times_up(&[gate, up], 1);
/// let silu = gate / (1.0 + (-gate).exp());
/// assert!((out[0] - silu * up).abs() < 1e-6);
/// ```
pub fn silu_times_up(gate_up: &[f32], m: usize) -> Vec<f32> {
    gated(gate_up, m, false)
}

/// `GELU_tanh(gate) · up` (Gemma's gated MLP, `gelu_pytorch_tanh`) for every row of `gate_up`,
/// as [`silu_times_up`].
///
/// ```
/// # use prism_models::cpu::gelu_tanh_times_up;
/// let (gate, up) = (-0.7f32, 2.0f32);
/// let out = gelu_tanh_times_up(&[gate, up], 1);
/// let u = (2.0f32 / std::f32::consts::PI).sqrt() * (gate + 0.044715 * gate.powi(3));
/// assert!((out[0] - 0.5 * gate * (1.0 + u.tanh()) * up).abs() < 1e-6);
/// ```
pub fn gelu_tanh_times_up(gate_up: &[f32], m: usize) -> Vec<f32> {
    gated(gate_up, m, true)
}

/// `erfc(z)` for `z ≥ 0`, to a relative error below 1.3e-7 (Numerical Recipes' Chebyshev fit,
/// `erfc(z) = t·exp(−z² + P(t))`, `t = 1 / (1 + z/2)`), branch-free.
#[inline(always)]
fn erfc_nonnegative(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let mut p = 0.170_872_77_f32;
    p = p * t - 0.822_152_23;
    p = p * t + 1.488_515_9;
    p = p * t - 1.135_204;
    p = p * t + 0.278_868_07;
    p = p * t - 0.186_288_06;
    p = p * t + 0.096_784_18;
    p = p * t + 0.374_091_96;
    p = p * t + 1.000_023_7;
    p = p * t - 1.265_512_2;
    t * exp(p - z * z)
}

/// GELU, `x·Φ(x) = x·erfc(−x/√2)/2`: from `erfc(|x|/√2)` so that both tails keep their relative
/// precision (no `1 − erf` cancellation).
#[inline(always)]
fn gelu_exact(x: f32) -> f32 {
    let c = erfc_nonnegative(x.abs() * std::f32::consts::FRAC_1_SQRT_2);
    let half = 0.5 * x * c;
    if x >= 0.0 { x - half } else { half }
}

simd_dispatch! {
    /// [`gelu_exact`] of every value.
    fn gelu_exact_all(x: &[f32], out: &mut [f32]) => gelu_exact_body
}

#[inline(always)]
fn gelu_exact_body(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = gelu_exact(v);
    }
}

/// The exact (erf) GELU of GPT-NeoX's MLP for every value, in one vectorised pass split over the
/// cores, within 1e-6 of its f64 definition (relative, or absolute below 1). GPT-2's `gelu_new`
/// stays on burn's ops: attribution patching's parity with `transformers` on GPT-2 depends on
/// reproducing torch's own f32 rounding of it, which a faster kernel (or the exact value) does not.
///
/// ```
/// let out = prism_models::cpu::gelu(&[1.0, -1.0]);
/// assert!((out[0] - 0.841_344_7).abs() < 1e-6 && (out[1] + 0.158_655_3).abs() < 1e-6);
/// ```
pub fn gelu(x: &[f32]) -> Vec<f32> {
    const CHUNK: usize = 1 << 14;
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(o, x)| gelu_exact_all(x, o));
    out
}

/// The shape of one attention call: `batch` sequences of `seq` positions, `heads` query heads
/// sharing `kv_heads` key/value heads, `d_head` wide.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    /// Sequences.
    pub batch: usize,
    /// Positions per sequence.
    pub seq: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`).
    pub kv_heads: usize,
    /// Width of a head.
    pub d_head: usize,
}

impl AttentionShape {
    /// Columns of the fused q|k|v projection: `(heads + 2·kv_heads)·d_head`.
    pub fn qkv_width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.d_head
    }
}

/// How one layer scores keys: the multiplier of `q·k`, an optional soft-cap `c·tanh(s/c)` of the
/// scores (Gemma 2), and an optional window (a query at `i` sees keys `j` with `i − window < j
/// ≤ i`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionRule {
    /// Multiplier of `q·k`.
    pub scale: f32,
    /// Soft-cap of the scaled scores.
    pub softcap: Option<f32>,
    /// Sliding window, in positions.
    pub window: Option<usize>,
}

impl AttentionRule {
    /// Plain causal attention scaled by `d_head^−½`.
    ///
    /// ```
    /// let rule = prism_models::cpu::AttentionRule::plain(16);
    /// assert_eq!((rule.scale, rule.softcap, rule.window), (0.25, None, None));
    /// ```
    pub fn plain(d_head: usize) -> Self {
        Self {
            scale: (d_head as f32).powf(-0.5),
            softcap: None,
            window: None,
        }
    }
}

/// Rotary tables `[seq, dims]` on the host (rotate-half layout; [`crate::rotary_on_device`]
/// puts them on a device for burn's ops).
#[derive(Clone, Debug)]
pub struct Rotary {
    /// Rotated features per head (from the first; ≤ `d_head`, even).
    pub dims: usize,
    /// `cos(p·θᵢ)` row-major `[seq, dims]`.
    pub cos: Vec<f32>,
    /// `sin(p·θᵢ)` row-major `[seq, dims]`.
    pub sin: Vec<f32>,
}

impl Rotary {
    /// The tables for positions `0..seq`, computed in f32 the way `transformers` computes them
    /// (inverse frequencies `θ^(−2i/dims)`, halves duplicated).
    ///
    /// ```
    /// let r = prism_models::cpu::Rotary::new(3, 4, 10000.0);
    /// assert_eq!((r.cos.len(), r.cos[0], r.sin[0]), (12, 1.0, 0.0));
    /// assert_eq!(r.cos[4], 1.0f32.cos()); // position 1, frequency θ⁰
    /// ```
    pub fn new(seq: usize, dims: usize, theta: f64) -> Self {
        Self::with_frequencies(seq, dims, &RopeFrequencies::plain(theta))
    }

    /// The tables of rescaled frequencies ([`RopeScaling`]) for a pass of `seq` positions
    /// (`dynamic` scaling depends on it), cos and sin multiplied by YaRN's attention factor.
    ///
    /// ```
    /// use prism_models::{RopeFrequencies, RopeScaling, cpu::Rotary};
    /// let linear = RopeFrequencies { theta: 10000.0, scaling: RopeScaling::Linear { factor: 4.0 } };
    /// // Position 4 under linear scaling by 4 is position 1 unscaled.
    /// let (scaled, plain) = (Rotary::with_frequencies(5, 4, &linear), Rotary::new(2, 4, 10000.0));
    /// assert!((scaled.cos[16] - plain.cos[4]).abs() < 1e-6);
    /// ```
    pub fn with_frequencies(seq: usize, dims: usize, frequencies: &RopeFrequencies) -> Self {
        let (inv, attention_factor) = inverse_frequencies(dims, seq, frequencies);
        let mut cos = Vec::with_capacity(seq * dims);
        let mut sin = Vec::with_capacity(seq * dims);
        for p in 0..seq {
            for _half in 0..2 {
                for f in &inv {
                    let a = p as f32 * f;
                    cos.push(a.cos() * attention_factor);
                    sin.push(a.sin() * attention_factor);
                }
            }
        }
        Self { dims, cos, sin }
    }
}

/// The `dims / 2` inverse frequencies of a rotary embedding for a pass of `seq` positions and
/// the factor on cos and sin, in f32 step by step as `transformers`' `modeling_rope_utils`
/// computes them (docs/models.md states each scheme).
fn inverse_frequencies(dims: usize, seq: usize, f: &RopeFrequencies) -> (Vec<f32>, f32) {
    let half = dims / 2;
    let exponents = (0..half).map(|i| (2 * i) as f32 / dims as f32);
    let with_base =
        |base: f32| -> Vec<f32> { exponents.clone().map(|e| 1.0 / base.powf(e)).collect() };
    let theta = f.theta as f32;
    match f.scaling {
        RopeScaling::None => (with_base(theta), 1.0),
        RopeScaling::Divisors(ref divisors) => (
            with_base(theta)
                .into_iter()
                .zip(divisors)
                .map(|(v, d)| v / d)
                .collect(),
            1.0,
        ),
        RopeScaling::Linear { factor } => {
            let factor = factor as f32;
            (
                with_base(theta).into_iter().map(|v| v / factor).collect(),
                1.0,
            )
        }
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_positions,
        } => {
            let old = original_max_positions as f64;
            let (low_wavelen, high_wavelen) = (
                (old / low_freq_factor) as f32,
                (old / high_freq_factor) as f32,
            );
            let factor = factor as f32;
            let inv = with_base(theta)
                .into_iter()
                .map(|inv| {
                    let wavelen = (2.0 * std::f64::consts::PI) as f32 / inv;
                    let scaled = if wavelen > low_wavelen {
                        inv / factor
                    } else {
                        inv
                    };
                    let medium = (high_wavelen..=low_wavelen).contains(&wavelen);
                    if medium {
                        let smooth = (old as f32 / wavelen - low_freq_factor as f32)
                            / (high_freq_factor - low_freq_factor) as f32;
                        (1.0 - smooth) * scaled / factor + smooth * scaled
                    } else {
                        scaled
                    }
                })
                .collect();
            (inv, 1.0)
        }
        RopeScaling::Dynamic {
            factor,
            max_positions,
        } => {
            if seq <= max_positions || dims <= 2 {
                return (with_base(theta), 1.0);
            }
            // `transformers` grows the base in f32 arithmetic from the pass's length.
            let growth = factor as f32 * seq as f32 / max_positions as f32 - (factor - 1.0) as f32;
            let exponent = (dims as f64 / (dims as f64 - 2.0)) as f32;
            (
                with_base((f.theta * growth.powf(exponent) as f64) as f32),
                1.0,
            )
        }
        RopeScaling::Yarn {
            factor,
            original_max_positions,
            beta_slow,
            beta_fast,
            attention_factor,
            truncate,
        } => {
            // The dimension whose wavelength fits `rotations` times into the original context.
            let dimension_of = |rotations: f64| {
                dims as f64
                    * (original_max_positions as f64 / (rotations * 2.0 * std::f64::consts::PI))
                        .ln()
                    / (2.0 * f.theta.ln())
            };
            let (mut low, mut high) = (dimension_of(beta_fast), dimension_of(beta_slow));
            if truncate {
                (low, high) = (low.floor(), high.ceil());
            }
            let (low, mut high) = (low.max(0.0), high.min(dims as f64 - 1.0));
            if low == high {
                high += 0.001;
            }
            let (low, span) = (low as f32, (high - low) as f32);
            let factor = factor as f32;
            let inv = exponents
                .clone()
                .enumerate()
                .map(|(i, e)| {
                    let pos = theta.powf(e);
                    let (extrapolated, interpolated) = (1.0 / pos, 1.0 / (factor * pos));
                    let ramp = ((i as f32 - low) / span).clamp(0.0, 1.0);
                    let keep = 1.0 - ramp;
                    interpolated * (1.0 - keep) + extrapolated * keep
                })
                .collect();
            (inv, attention_factor as f32)
        }
    }
}

/// Writes `x` rotated to position `p` into `out` (rotate-half: `x·cos + rot(x)·sin`, with
/// `rot(x) = [−x₂, x₁]` over the first `dims` features; the rest unchanged), times `scale`.
#[inline(always)]
fn rotate(x: &[f32], p: usize, rotary: Option<&Rotary>, scale: f32, out: &mut [f32]) {
    match rotary {
        Some(r) => {
            let (dims, half) = (r.dims, r.dims / 2);
            let (cos, sin) = (&r.cos[p * dims..][..dims], &r.sin[p * dims..][..dims]);
            for d in 0..half {
                out[d] = (x[d] * cos[d] - x[d + half] * sin[d]) * scale;
                out[d + half] = (x[d + half] * cos[d + half] + x[d] * sin[d + half]) * scale;
            }
            for d in dims..x.len() {
                out[d] = x[d] * scale;
            }
        }
        None => {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = v * scale;
            }
        }
    }
}

/// The largest value of `x` (−∞ when empty), over 16 lanes so that it vectorises.
#[inline(always)]
pub(crate) fn max_in_lanes(x: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = l.max(v);
        }
    }
    chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// The causal softmax of one row of scores, in place: entries `start..=i` become probabilities,
/// the rest 0. Max and sum run over 16 lanes so that they vectorise.
#[inline(always)]
fn causal_softmax_row(row: &mut [f32], start: usize, i: usize) {
    const LANES: usize = 16;
    let (live, masked) = row.split_at_mut(i + 1);
    masked.fill(0.0);
    let (before, live) = live.split_at_mut(start.min(i));
    before.fill(0.0);
    let max = max_in_lanes(live);
    for v in live.iter_mut() {
        *v = exp(*v - max);
    }
    let mut sums = [0.0f32; LANES];
    let mut chunks = live.chunks_exact(LANES);
    for c in &mut chunks {
        for (l, &v) in sums.iter_mut().zip(c) {
            *l += v;
        }
    }
    let sum: f32 = sums.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
    let inv = 1.0 / sum;
    for v in live.iter_mut() {
        *v *= inv;
    }
}

simd_dispatch! {
    /// [`causal_softmax_row`] over stacked blocks of `rows` score rows, `keys` wide, whose first
    /// row is query position `first`, each seeing the last `window` keys.
    fn causal_softmax(scores: &mut [f32], keys: usize, rows: usize, first: usize, window: usize) => causal_softmax_body
}

#[inline(always)]
fn causal_softmax_body(scores: &mut [f32], keys: usize, rows: usize, first: usize, window: usize) {
    for (r, row) in scores.chunks_exact_mut(keys).enumerate() {
        let i = first + r % rows;
        causal_softmax_row(row, (i + 1).saturating_sub(window), i);
    }
}

/// One work item: sequence `bi`, key/value head `g` and its `rep` query heads, query positions
/// `first..end` against keys `0..end`. `qkv` is the fused projection's output `[batch·seq,
/// (heads + 2·kv_heads)·d_head]`; returns `z` for the query heads `g·rep .. (g+1)·rep`,
/// `[rep, end − first, d_head]`. The query heads are stacked so that scores and values are one
/// GEMM each (`[rep·rows, d_head] · [d_head, end]` and `[rep·rows, end] · [end, d_head]`); the
/// masked part costs GEMM time but no branches.
fn attention_block(
    qkv: &[f32],
    shape: &AttentionShape,
    rotary: Option<&Rotary>,
    rule: &AttentionRule,
    (bi, g): (usize, usize),
    (first, end): (usize, usize),
) -> Vec<f32> {
    let width = shape.qkv_width();
    let AttentionShape {
        seq: s,
        heads: h,
        kv_heads: kv,
        d_head: dh,
        ..
    } = *shape;
    let rep = h / kv;
    let n = end - first;
    let rows = &qkv[bi * s * width..][..s * width];
    let scale = rule.scale;
    let mut q = vec![0.0f32; rep * n * dh];
    for r in 0..rep {
        let head = g * rep + r;
        for p in first..end {
            let x = &rows[p * width + head * dh..][..dh];
            rotate(
                x,
                p,
                rotary,
                scale,
                &mut q[(r * n + p - first) * dh..][..dh],
            );
        }
    }
    let mut k = vec![0.0f32; end * dh];
    for p in 0..end {
        let x = &rows[p * width + (h + g) * dh..][..dh];
        rotate(x, p, rotary, 1.0, &mut k[p * dh..][..dh]);
    }
    let mut scores = vec![0.0f32; rep * n * end];
    matmul_serial(
        View::new(&q, rep * n, dh),
        View::new(&k, end, dh).t(),
        &mut scores,
        false,
    );
    if let Some(cap) = rule.softcap {
        for v in scores.iter_mut() {
            *v = (*v / cap).tanh() * cap;
        }
    }
    causal_softmax(
        &mut scores,
        end,
        n,
        first,
        rule.window.unwrap_or(usize::MAX),
    );
    let v = View::strided_rows(&rows[(h + kv + g) * dh..], end, dh, width);
    let mut z = vec![0.0f32; rep * n * dh];
    matmul_serial(View::new(&scores, rep * n, end), v, &mut z, false);
    z
}

/// Causal self-attention from the fused q|k|v projection `qkv: [batch·seq, (heads +
/// 2·kv_heads)·d_head]` (head-major columns): rotary embedding on q and k, each query head
/// attending to its key/value head (grouped-query), scores scaled (and soft-capped) by `rule`,
/// softmax over positions `≤` its own (within `rule`'s window), weighted sum of values. Returns `z` as `[batch·seq, heads·d_head]`
/// (TransformerLens' `hook_z` layout `[batch, seq, heads, d_head]`, flattened). Work items are
/// (sequence, key/value head) pairs, split over the cores; no `[seq, seq]` pattern is stored.
///
/// `lengths` are the sequences' real lengths in a right-padded batch: a sequence's real
/// positions are computed over exactly its real keys, so they come out bit-identical to the
/// same sequence run alone, whatever it was batched with (the padding positions, computed
/// separately, see the real keys and each other as burn's causal attention does).
pub fn causal_attention(
    qkv: &[f32],
    shape: &AttentionShape,
    rotary: Option<&Rotary>,
    rule: &AttentionRule,
    lengths: &[usize],
) -> Vec<f32> {
    let AttentionShape {
        batch: b,
        seq: s,
        heads: h,
        kv_heads: kv,
        d_head: dh,
    } = *shape;
    let rep = h / kv.max(1);
    // (sequence, kv head, first query, end) for the real positions, then the padding's.
    let items: Vec<(usize, usize, usize, usize)> = (0..b * kv)
        .flat_map(|item| {
            let (bi, g) = (item / kv, item % kv);
            let len = lengths.get(bi).copied().unwrap_or(s).min(s);
            [(bi, g, 0, len), (bi, g, len, s)]
        })
        .filter(|&(_, _, first, end)| end > first)
        .collect();
    let blocks: Vec<Vec<f32>> = items
        .par_iter()
        .map(|&(bi, g, first, end)| {
            attention_block(qkv, shape, rotary, rule, (bi, g), (first, end))
        })
        .collect();
    let mut out = vec![0.0f32; b * s * h * dh];
    for (&(bi, g, first, end), z) in items.iter().zip(&blocks) {
        let n = end - first;
        for r in 0..rep {
            let head = g * rep + r;
            for i in first..end {
                out[((bi * s + i) * h + head) * dh..][..dh]
                    .copy_from_slice(&z[(r * n + i - first) * dh..][..dh]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two finite positive f32s.
    fn ulps(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_correctly_rounded_value() {
        // Every 97th f32 pattern across the normal-result range, both signs.
        let mut worst = 0;
        for bits in (0u32..0x42b0_0000).step_by(97) {
            for x in [f32::from_bits(bits), -f32::from_bits(bits)] {
                if !(-87.3..=88.3).contains(&x) {
                    continue;
                }
                let want = (x as f64).exp() as f32;
                worst = worst.max(ulps(exp(x), want));
            }
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        // Clamped ends: tiny but normal below, finite above.
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1e-37);
        assert!(exp(1000.0).is_finite());
    }

    /// A deterministic spread of values in (−scale, scale).
    fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    /// `kernel` on random `[gate | up]` rows against `act(gate) · up` in f64.
    fn check_gated(kernel: fn(&[f32], usize) -> Vec<f32>, act: fn(f64) -> f64, seed: u64) {
        let (rows, m) = (37, 53);
        let gate_up = values(rows * 2 * m, seed, 12.0);
        let got = kernel(&gate_up, m);
        for r in 0..rows {
            for i in 0..m {
                let (g, u) = (
                    gate_up[r * 2 * m + i] as f64,
                    gate_up[r * 2 * m + m + i] as f64,
                );
                let want = act(g) * u;
                let diff = (got[r * m + i] as f64 - want).abs();
                assert!(
                    diff <= 1e-6 * want.abs().max(1.0),
                    "row {r} col {i}: {diff}"
                );
            }
        }
    }

    #[test]
    fn silu_times_up_matches_f64() {
        check_gated(silu_times_up, |g| g / (1.0 + (-g).exp()), 1);
    }

    #[test]
    fn gelu_tanh_times_up_matches_f64() {
        let gelu_tanh = |g: f64| {
            let inner = (2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g);
            0.5 * g * (1.0 + inner.tanh())
        };
        check_gated(gelu_tanh_times_up, gelu_tanh, 5);
    }

    #[test]
    fn gelu_matches_f64() {
        let x = values(20_000, 3, 12.0);
        let erf = |z: f64| {
            // erf by its Taylor series (|z| ≤ 3) or its continued-fraction tail, in f64.
            if z.abs() <= 3.0 {
                let (mut term, mut sum, mut n) = (z, z, 0.0);
                while term.abs() > 1e-17 * sum.abs().max(1e-300) {
                    n += 1.0;
                    term *= -z * z / n;
                    sum += term / (2.0 * n + 1.0);
                }
                2.0 / std::f64::consts::PI.sqrt() * sum
            } else {
                let a = z.abs();
                let mut f = a;
                for k in (1..60).rev() {
                    f = a + (k as f64 / 2.0) / f;
                }
                z.signum() * (1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * f))
            }
        };
        let got = gelu(&x);
        for (&v, &g) in x.iter().zip(&got) {
            let v = v as f64;
            let want = 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2));
            let diff = (g as f64 - want).abs();
            assert!(
                diff <= 1e-6 * want.abs().max(1.0),
                "gelu of {v}: {g} vs {want}"
            );
        }
    }

    /// Attention by the definition, in f64: rotate, score every earlier position, softmax,
    /// weight the values; query head `i` reads key/value head `i / (heads / kv_heads)`.
    fn attention_f64(
        qkv: &[f32],
        sh: &AttentionShape,
        rotary: Option<&Rotary>,
        rule: &AttentionRule,
    ) -> Vec<f64> {
        let AttentionShape {
            batch: b,
            seq: s,
            heads: h,
            kv_heads: kv,
            d_head: dh,
        } = *sh;
        let width = sh.qkv_width();
        let at = |bi: usize, p: usize, col: usize| qkv[(bi * s + p) * width + col] as f64;
        let rotated = |bi: usize, p: usize, head_col: usize| -> Vec<f64> {
            let x: Vec<f64> = (0..dh).map(|d| at(bi, p, head_col + d)).collect();
            match rotary {
                None => x,
                Some(r) => {
                    let half = r.dims / 2;
                    (0..dh)
                        .map(|d| {
                            if d >= r.dims {
                                return x[d];
                            }
                            let rot = if d < half { -x[d + half] } else { x[d - half] };
                            x[d] * r.cos[p * r.dims + d] as f64 + rot * r.sin[p * r.dims + d] as f64
                        })
                        .collect()
                }
            }
        };
        let mut out = vec![0.0; b * s * h * dh];
        for bi in 0..b {
            for head in 0..h {
                let g = head / (h / kv);
                for i in 0..s {
                    let q = rotated(bi, i, head * dh);
                    let first = rule.window.map_or(0, |w| (i + 1).saturating_sub(w));
                    let scores: Vec<f64> = (first..=i)
                        .map(|j| {
                            let k = rotated(bi, j, (h + g) * dh);
                            let s = q.iter().zip(&k).map(|(a, b)| a * b).sum::<f64>()
                                * rule.scale as f64;
                            match rule.softcap {
                                Some(c) => (s / c as f64).tanh() * c as f64,
                                None => s,
                            }
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for d in 0..dh {
                        out[((bi * s + i) * h + head) * dh + d] = (first..=i)
                            .map(|j| e[j - first] / sum * at(bi, j, (h + kv + g) * dh + d))
                            .sum();
                    }
                }
            }
        }
        out
    }

    #[test]
    fn causal_attention_matches_the_definition_in_f64() {
        // Grouped-query with full rotary; multi-head with partial rotary (NeoX); no rotary (GPT-2);
        // then Gemma 2's soft-capped scores with a window of 5 and another scale, and a window
        // wider than some sequences.
        let plain = |dh: usize| AttentionRule::plain(dh);
        let cases = [
            (
                AttentionShape {
                    batch: 2,
                    seq: 19,
                    heads: 6,
                    kv_heads: 2,
                    d_head: 8,
                },
                Some(8),
                vec![19, 11],
                plain(8),
            ),
            (
                AttentionShape {
                    batch: 3,
                    seq: 7,
                    heads: 3,
                    kv_heads: 3,
                    d_head: 12,
                },
                Some(4),
                vec![7, 0, 3],
                plain(12),
            ),
            (
                AttentionShape {
                    batch: 1,
                    seq: 33,
                    heads: 2,
                    kv_heads: 2,
                    d_head: 5,
                },
                None,
                vec![33],
                plain(5),
            ),
            (
                AttentionShape {
                    batch: 2,
                    seq: 23,
                    heads: 4,
                    kv_heads: 2,
                    d_head: 8,
                },
                Some(8),
                vec![23, 9],
                AttentionRule {
                    scale: 0.3,
                    softcap: Some(1.5),
                    window: Some(5),
                },
            ),
            (
                AttentionShape {
                    batch: 2,
                    seq: 12,
                    heads: 2,
                    kv_heads: 1,
                    d_head: 6,
                },
                Some(6),
                vec![12, 4],
                AttentionRule {
                    window: Some(7),
                    ..plain(6)
                },
            ),
        ];
        // Padded sequences (real lengths below `seq`, one empty) are computed as burn does
        // (causally over every position), in two parts; the definition sees no lengths.
        for (i, (shape, dims, lengths, rule)) in cases.into_iter().enumerate() {
            let width = shape.qkv_width();
            let qkv = values(shape.batch * shape.seq * width, 7 + i as u64, 3.0);
            let rotary = dims.map(|d| Rotary::new(shape.seq, d, 10000.0));
            let got = causal_attention(&qkv, &shape, rotary.as_ref(), &rule, &lengths);
            let want = attention_f64(&qkv, &shape, rotary.as_ref(), &rule);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(&g, &w)| (g as f64 - w).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-5, "case {i}: max |Δ| = {worst}");
        }
    }

    #[test]
    fn a_padded_sequence_gets_the_bits_it_gets_alone() {
        let alone = AttentionShape {
            batch: 1,
            seq: 11,
            heads: 4,
            kv_heads: 2,
            d_head: 16,
        };
        let padded = AttentionShape {
            batch: 2,
            seq: 16,
            ..alone
        };
        let width = alone.qkv_width();
        // Sequence 1 of the padded batch is the lone sequence plus 5 padding rows.
        let mut batch = values(padded.batch * padded.seq * width, 3, 2.0);
        let lone = values(alone.seq * width, 4, 2.0);
        batch[padded.seq * width..][..alone.seq * width].copy_from_slice(&lone);
        let rotary = Rotary::new(padded.seq, alone.d_head, 10000.0);
        let rule = AttentionRule::plain(alone.d_head);
        let z_batch = causal_attention(&batch, &padded, Some(&rotary), &rule, &[16, 11]);
        let rotary = Rotary::new(alone.seq, alone.d_head, 10000.0);
        let z_alone = causal_attention(&lone, &alone, Some(&rotary), &rule, &[11]);
        let zw = alone.heads * alone.d_head;
        assert_eq!(&z_batch[padded.seq * zw..][..alone.seq * zw], &z_alone[..]);
    }
}
