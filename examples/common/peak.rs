//! This machine's arithmetic ceiling: the f32 FMA peak (registers only, no memory traffic) on one
//! core and on every core, and the GEMM rate burn's `flex` backend reaches at the shapes the
//! pipeline spends its time in. A speed goal above the peak cannot be met by any kernel.

use std::hint::black_box;
use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};

/// FMAs per call of [`fma_block`]: 12 independent 8-lane accumulators × `ROUNDS`.
const ROUNDS: usize = 1 << 25;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_block(seed: f32) -> f32 {
    use std::arch::x86_64::*;
    // Twelve independent chains hide the FMA latency on every x86 core of the last decade.
    let (x, y) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(seed); 12];
    for _ in 0..ROUNDS {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, x, y);
        }
    }
    let mut sum = _mm256_setzero_ps();
    for a in acc {
        sum = _mm256_add_ps(sum, a);
    }
    let mut lanes = [0f32; 8];
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    lanes.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_block_512(seed: f32) -> f32 {
    use std::arch::x86_64::*;
    let (x, y) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(seed); 12];
    for _ in 0..ROUNDS {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, x, y);
        }
    }
    let mut sum = _mm512_setzero_ps();
    for a in acc {
        sum = _mm512_add_ps(sum, a);
    }
    _mm512_reduce_add_ps(sum)
}

/// The vector width of an FMA peak measurement.
#[derive(Clone, Copy, Debug)]
enum Width {
    /// 256-bit AVX2 FMAs, 8 lanes.
    Avx2,
    /// 512-bit AVX-512 FMAs, 16 lanes.
    Avx512,
}

/// GFLOP/s of FMAs of `width` on `threads` threads at once, or `None` when the CPU lacks them.
fn fma_peak(threads: usize, width: Width) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        let (supported, lanes) = match width {
            Width::Avx2 => (
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
                8,
            ),
            Width::Avx512 => (is_x86_feature_detected!("avx512f"), 16),
        };
        if !supported {
            return None;
        }
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                // SAFETY: the instructions were detected above.
                s.spawn(move || match width {
                    Width::Avx2 => black_box(unsafe { fma_block(t as f32) }),
                    Width::Avx512 => black_box(unsafe { fma_block_512(t as f32) }),
                });
            }
        });
        let flops = (threads * ROUNDS * 12 * lanes * 2) as f64;
        Some(flops / start.elapsed().as_secs_f64() / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// GFLOP/s of `run` doing `flops` floating-point operations: best of three after a warm-up.
fn best_gflops(flops: f64, mut run: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for i in 0..4 {
        let start = Instant::now();
        run();
        if i > 0 {
            best = best.min(start.elapsed().as_secs_f64());
        }
    }
    flops / best / 1e9
}

/// GFLOP/s of burn's matmul `[m, k] · [k, n]`.
fn matmul_rate(m: usize, k: usize, n: usize, device: &Device) -> f64 {
    let a = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), device);
    let b = Tensor::<2>::random([k, n], Distribution::Normal(0.0, 1.0), device);
    best_gflops(2.0 * (m * k * n) as f64, || {
        let c = a.clone().matmul(b.clone());
        black_box(c.slice([0..1, 0..1]).into_scalar::<f32>());
    })
}

/// GFLOP/s of the host GEMM (`prism_core::dense`, the fused CPU path's) `[m, k] · [k, n]`:
/// on the rayon pool, on one thread, and as one serial product per thread over a split of the
/// rows.
fn host_rates(m: usize, k: usize, n: usize) -> [f64; 3] {
    use prism::core::dense::{View, matmul, matmul_serial};
    use rayon::prelude::*;
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7919) % 1009) as f32 / 1009.0 - 0.5)
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| ((i * 104_729) % 997) as f32 / 997.0 - 0.5)
        .collect();
    let mut out = vec![0f32; m * n];
    let rows = m.div_ceil(rayon::current_num_threads().max(1));
    let flops = 2.0 * (m * k * n) as f64;
    let (a_all, b_all) = (View::new(&a, m, k), View::new(&b, k, n));
    let pool = best_gflops(flops, || matmul(a_all, b_all, &mut out, false));
    let one = best_gflops(flops, || matmul_serial(a_all, b_all, &mut out, false));
    let split = best_gflops(flops, || {
        out.par_chunks_mut(rows * n)
            .zip(a.par_chunks(rows * k))
            .for_each(|(o, a)| matmul_serial(View::new(a, a.len() / k, k), b_all, o, false))
    });
    black_box(&out);
    [pool, one, split]
}

/// Prints the FMA peak and burn's GEMM rates, each as a share of the all-core peak.
pub fn report(device: &Device) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut all = 0.0f64;
    for width in [Width::Avx2, Width::Avx512] {
        let Some(one) = fma_peak(1, width) else {
            println!("no {width:?} FMAs on this CPU");
            continue;
        };
        let peak = (0..3)
            .filter_map(|_| fma_peak(threads, width))
            .fold(0.0, f64::max);
        println!(
            "f32 FMA peak ({width:?}): {one:.1} GFLOP/s on one core, {peak:.1} on {threads} threads"
        );
        all = all.max(peak);
    }
    if all == 0.0 {
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    for (what, m, k, n) in [
        ("projection 1024×576 · 576×1536", 1024, 576, 1536),
        ("down projection 1024×1536 · 1536×576", 1024, 1536, 576),
        ("unembedding 1024×576 · 576×49152", 1024, 576, 49152),
        ("similarity chunk 1024×512 · 512×32768", 1024, 512, 32768),
        ("encoder 4096×512 · 512×8192", 4096, 512, 8192),
        ("demo encoder 1024×576 · 576×4608", 1024, 576, 4608),
    ] {
        let rate = matmul_rate(m, k, n, device);
        println!(
            "burn matmul {what}: {rate:.1} GFLOP/s = {:.2} of the peak",
            rate / all
        );
        let [pool, one, split] = host_rates(m, k, n);
        println!(
            "  host GEMM: {pool:.1} GFLOP/s on the pool = {:.2}; one thread {one:.1} = {:.2} of \
             one core's share; rows split per thread {split:.1} = {:.2}",
            pool / all,
            one * threads as f64 / all,
            split / all,
        );
    }
}
