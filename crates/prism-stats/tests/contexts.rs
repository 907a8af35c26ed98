//! Top-activating contexts against a brute-force scan of every code.

mod common;

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
        let mut all: Vec<(f32, usize, usize)> = (0..windows.len() * 16)
            .map(|i| (codes.data[i * 96 + f], i / 16, i % 16))
            .filter(|e| e.0 > 0.0)
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let want: Vec<(usize, usize)> = all.iter().take(n).map(|e| (e.1, e.2)).collect();
        let got: Vec<(usize, usize)> = r.top.iter().map(|c| (c.window, c.position)).collect();
        assert_eq!(got, want, "feature {f}");
        for c in &r.top {
            assert!(
                (c.activation - codes.data[(c.window * 16 + c.position) * 96 + f]).abs() < 1e-5
            );
            assert_eq!(c.activations.len(), 16);
            assert_eq!(c.activations[c.position], c.activation);
            assert_eq!(c.tokens.len(), 16);
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
        let w_dec = HostTensor::from_burn(sae.w_dec.clone()).unwrap();
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
