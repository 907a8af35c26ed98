//! Top-activating contexts against a brute-force scan of every code, and the feature browser
//! in a real browser (`browser/`; one test binary for both, as each binary links burn).

use crate::common;

use prism_core::{Dictionary, HookPoint, Hooks, HostTensor};
use prism_models::TokenBatch;
use prism_stats::top_activating;

#[test]
fn top_contexts_equal_a_brute_force_scan_and_logit_effects_use_the_unembedding() {
    let model = common::llama();
    let sae = common::spread_sae(64, 96);
    let hook = HookPoint::ResidPost(0);
    let text =
        "The residual stream carries features from layer to layer; sparse dictionaries read them. "
            .repeat(6);
    let ids = model.encode(&text).unwrap();
    let windows: Vec<Vec<u32>> = ids.chunks_exact(16).take(10).map(<[u32]>::to_vec).collect();
    let features = [3, 40, 95];
    let n = 4;
    let reports = top_activating(&model, &sae, hook, &windows, &features, n, 3).unwrap();

    // Brute force: every window, every position, every code.
    let batch = TokenBatch::from_sequences(&windows, 0).unwrap();
    let mut out = model.forward(&batch, &Hooks::new().capture(hook)).unwrap();
    let x = out.take(hook).unwrap().into_rank3().unwrap();
    let codes = HostTensor::from_burn(sae.encode(x.reshape([windows.len() * 16, 64]))).unwrap();
    for (r, &f) in reports.iter().zip(&features) {
        assert_eq!(r.feature, f);
        // Each window's peak (first position on ties), strongest first, earlier window on ties.
        let mut peaks: Vec<(f32, usize, usize)> = (0..windows.len())
            .filter_map(|w| {
                (0..16)
                    .map(|p| (codes.data[(w * 16 + p) * 96 + f], w, p))
                    .filter(|e| e.0 > 0.0)
                    .reduce(|best, e| if e.0 > best.0 { e } else { best })
            })
            .collect();
        peaks.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let want: Vec<(usize, usize)> = peaks.iter().take(n).map(|e| (e.1, e.2)).collect();
        let got: Vec<(usize, usize)> = r.top.iter().map(|c| (c.window, c.position)).collect();
        assert_eq!(got, want, "feature {f}");
        for c in &r.top {
            assert!(
                (c.activation - codes.data[(c.window * 16 + c.position) * 96 + f]).abs() < 1e-5
            );
            // A span of 12 tokens either side of the peak, cut at the window's ends.
            let start = c.position.saturating_sub(12);
            let end = (c.position + 13).min(16);
            assert_eq!(c.offset, c.position - start);
            assert_eq!(c.tokens.len(), end - start);
            assert_eq!(c.activations.len(), end - start);
            assert_eq!(c.activations[c.offset], c.activation);
            for (i, a) in c.activations.iter().enumerate() {
                assert_eq!(*a, codes.data[(c.window * 16 + start + i) * 96 + f]);
            }
            assert_eq!(
                c.peak_token(),
                model.tokenizer.token_str(windows[c.window][c.position])
            );
        }
        let density = (0..windows.len() * 16)
            .filter(|i| codes.data[i * 96 + f] != 0.0)
            .count() as f64
            / (windows.len() * 16) as f64;
        assert!((r.density - density).abs() < 1e-12);
        // Logit effect: the decoder row times W_U, largest first.
        assert_eq!(r.promoted.len(), 10);
        assert!(r.promoted.windows(2).all(|w| w[0].1 >= w[1].1));
        assert!(r.suppressed.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(r.promoted[0].1 > r.suppressed[0].1);
        let w_dec = HostTensor::from_burn(sae.w_dec().clone()).unwrap();
        let w_u = HostTensor::from_burn(model.transformer.unembed.clone()).unwrap();
        let vocab = w_u.shape[1];
        let effect: Vec<f32> = (0..vocab)
            .map(|v| {
                (0..64)
                    .map(|j| w_dec.data[f * 64 + j] * w_u.data[j * vocab + v])
                    .sum()
            })
            .collect();
        let max = effect.iter().copied().fold(f32::MIN, f32::max);
        let min = effect.iter().copied().fold(f32::MAX, f32::min);
        assert!((r.promoted[0].1 - max).abs() < 1e-4 && (r.suppressed[0].1 - min).abs() < 1e-4);
    }
    // High-bias features fire more often than low-bias ones.
    assert!(reports[2].density > reports[0].density);
    assert!(top_activating(&model, &sae, hook, &windows, &[96], 2, 4).is_err());
}

/// Checks a scan of every feature against brute force: `code(w, p, f)` is the feature's
/// activation computed outside the collector. Densities, histograms, distinct-window tops,
/// quantile bands (counts, shares, samples inside their band) and the spans kept must agree.
/// Returns how many features had three or more bands.
fn check_against_brute_force(
    scan: &prism_stats::FeatureScan,
    windows: &[Vec<u32>],
    options: &prism_stats::CollectOptions,
    code: impl Fn(usize, usize, usize) -> f32,
) -> usize {
    let r = options.radius;
    let mut banded = 0;
    for (f, a) in scan.features.iter().enumerate() {
        assert_eq!(a.feature, f);
        let all: Vec<(f32, usize, usize)> = windows
            .iter()
            .enumerate()
            .flat_map(|(w, win)| (0..win.len()).map(move |p| (w, p)))
            .map(|(w, p)| (code(w, p, f), w, p))
            .filter(|e| e.0 > 0.0)
            .collect();
        assert_eq!(a.fires, all.len() as u64, "feature {f}");
        let max = all.iter().map(|e| e.0).fold(0.0f32, f32::max);
        assert_eq!(a.max_activation, max);
        // Histogram: contiguous bins whose counts are the brute-force counts.
        for pair in a.histogram.windows(2) {
            assert_eq!(pair[0].hi, pair[1].lo);
        }
        for b in &a.histogram {
            let n = all.iter().filter(|e| b.lo <= e.0 && e.0 < b.hi).count() as u64;
            assert_eq!(b.count, n, "feature {f} bin {}..{}", b.lo, b.hi);
        }
        // Top: one per window, each window's peak (first position on ties), strongest first,
        // earlier window on ties.
        let mut peaks: Vec<(f32, usize, usize)> = (0..windows.len())
            .filter_map(|w| {
                (0..windows[w].len())
                    .map(|p| (code(w, p, f), w, p))
                    .filter(|e| e.0 > 0.0)
                    .reduce(|best, e| if e.0 > best.0 { e } else { best })
            })
            .collect();
        peaks.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let want: Vec<(usize, usize)> =
            peaks.iter().take(options.top).map(|e| (e.1, e.2)).collect();
        let got: Vec<(usize, usize)> = a.top.iter().map(|e| (e.window, e.position)).collect();
        assert_eq!(got, want, "feature {f}");
        // Bands: contiguous, covering every nonzero activation, with exact shares.
        if all.is_empty() {
            assert!(a.bands.is_empty());
            continue;
        }
        assert_eq!(a.bands.first().unwrap().quantile_lo, 0.0);
        assert_eq!(a.bands.last().unwrap().quantile_hi, 1.0);
        for b in &a.bands {
            let inside = all
                .iter()
                .filter(|e| b.activation_lo <= e.0 && e.0 < b.activation_hi)
                .count();
            let below = all.iter().filter(|e| e.0 < b.activation_lo).count();
            assert_eq!(b.count, inside as u64);
            assert!((b.quantile_lo - below as f64 / all.len() as f64).abs() < 1e-12);
            assert!((b.quantile_hi - (below + inside) as f64 / all.len() as f64).abs() < 1e-12);
            assert_eq!(b.examples.len(), inside.min(options.per_band));
            let mut distinct = std::collections::HashSet::new();
            for e in &b.examples {
                assert!(distinct.insert((e.window, e.position)));
                assert!(b.activation_lo <= e.activation && e.activation < b.activation_hi);
            }
        }
        // Every example: its activation, and a span of `radius` either side, as brute force.
        for e in a.top.iter().chain(a.bands.iter().flat_map(|b| &b.examples)) {
            assert_eq!(e.activation, code(e.window, e.position, f));
            let len = windows[e.window].len();
            assert_eq!(e.span_start, e.position.saturating_sub(r));
            assert_eq!(e.span_start + e.span_len, (e.position + r + 1).min(len));
            for (i, v) in e.span_values().iter().enumerate() {
                assert_eq!(*v, code(e.window, e.span_start + i, f));
            }
        }
        banded += usize::from(a.bands.len() >= 3);
    }
    banded
}

/// Every feature's codes, window by window, by plain forwards of `per` windows at a time.
fn brute_codes(
    model: &prism_models::Model,
    sae: &prism_sae::Sae,
    hook: HookPoint,
    windows: &[Vec<u32>],
    per: usize,
) -> Vec<Vec<f32>> {
    let m = sae.d_sae();
    let mut out = Vec::new();
    for group in windows.chunks(per) {
        let batch = TokenBatch::from_sequences(group, model.pad_id()).unwrap();
        let mut acts = model.forward(&batch, &Hooks::new().capture(hook)).unwrap();
        let x = acts.take(hook).unwrap().into_rank3().unwrap();
        let [b, s, d] = x.dims();
        let codes = HostTensor::from_burn(sae.encode(x.reshape([b * s, d]))).unwrap();
        for (w, win) in group.iter().enumerate() {
            out.push(codes.data[w * s * m..(w * s + win.len()) * m].to_vec());
        }
    }
    out
}

/// Scans every feature of `sae` over `windows` (`per` windows per forward) and checks the
/// result against brute force computed with forwards of `brute_per` windows at a time.
fn scan_and_check(
    model: &prism_models::Model,
    sae: &prism_sae::Sae,
    hook: HookPoint,
    windows: &[Vec<u32>],
    options: &prism_stats::CollectOptions,
    (per, brute_per): (usize, usize),
) -> usize {
    use prism_stats::{FeatureSelection, ScanOptions, scan_features};
    let scan_options = ScanOptions {
        selection: FeatureSelection::All,
        collect: options.clone(),
        windows_per_forward: per,
    };
    let scan = scan_features(model, sae, hook, windows, &scan_options, |_| {}).unwrap();
    let tokens: usize = windows.iter().map(Vec::len).sum();
    assert_eq!(scan.tokens, tokens as u64);
    let m = sae.d_sae();
    assert_eq!(scan.features.len(), m);
    let codes = brute_codes(model, sae, hook, windows, brute_per);
    check_against_brute_force(&scan, windows, options, |w, p, f| codes[w][p * m + f])
}

/// The streaming scan of every feature against brute force over windows of unequal lengths
/// (each window run alone in the brute force, so padding cannot leak in).
#[test]
fn scan_of_every_feature_equals_a_brute_force_pass() {
    use prism_stats::CollectOptions;
    let model = common::llama();
    let sae = common::spread_sae(64, 96);
    let hook = HookPoint::ResidPost(0);
    let text = "Sparse autoencoders find features; each feature fires on some tokens and not on \
                others, and a browser shows where. "
        .repeat(8);
    let ids = model.encode(&text).unwrap();
    let mut windows: Vec<Vec<u32>> = Vec::new();
    let mut at = 0;
    for i in 0..24 {
        let len = if i % 2 == 0 { 16 } else { 11 };
        windows.push(ids[at..at + len].to_vec());
        at += len;
    }
    let options = CollectOptions {
        top: 5,
        per_band: 3,
        radius: 4,
        band_cuts: vec![0.5, 0.8, 0.95],
    };
    let banded = scan_and_check(&model, &sae, hook, &windows, &options, (5, 1));
    assert!(
        banded > 10,
        "only {banded} features with three or more bands"
    );
}

/// The same at a real scale: SmolLM2-135M, 4 096 tokens of the Python docs, 2 304 features of a
/// TopK dictionary (k = 32) at the middle block, the default options. Needs
/// `prism fetch smollm2` and `prism fetch python-docs`; skipped without them unless
/// `PRISM_REQUIRE_ASSETS` is set.
#[test]
fn scan_at_smollm2_scale_equals_a_brute_force_pass() {
    use burn::tensor::{Distribution, Tensor};
    use prism_stats::CollectOptions;
    let (Some(gguf), Some(docs)) = (
        prism_testkit::asset("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2"),
        prism_testkit::asset("python-docs", "python-docs"),
    ) else {
        return;
    };
    let device = prism_core::device("cpu").unwrap();
    let model = prism_models::Model::load(&gguf, &device).unwrap();
    let corpus = prism_cache::Corpus::open(&docs, "text").unwrap();
    let windows: Vec<Vec<u32>> = prism_cache::windows(
        &corpus,
        &model.tokenizer,
        prism_cache::WindowConfig::default(),
    )
    .unwrap()
    .take(32)
    .collect::<prism_core::Result<_>>()
    .unwrap();
    let d = model.config().d_model;
    let m = 4 * d;
    let sae = prism_sae::Sae::new(
        prism_sae::Architecture::TopK { k: 32 },
        Tensor::random([d, m], Distribution::Normal(0.0, 0.05), &device),
        Tensor::zeros([1, m], &device),
        Tensor::random([m, d], Distribution::Normal(0.0, 0.05), &device),
        Tensor::zeros([1, d], &device),
    )
    .unwrap();
    let hook = HookPoint::MlpOut(model.config().n_layers / 2);
    let options = CollectOptions::default();
    let banded = scan_and_check(&model, &sae, hook, &windows, &options, (8, 8));
    assert!(
        banded > m / 4,
        "only {banded} of {m} features with three or more bands"
    );
}
