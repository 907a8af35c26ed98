//! Pruning high-frequency features (the research notes' experiment) on a real tiny model.

use crate::common;

use burn::tensor::{Tensor, TensorData};
use prism_core::{Dictionary, HookPoint};
use prism_models::TokenBatch;
use prism_sae::Sae;
use prism_stats::*;

/// The original dictionary with some features' codes forced to zero.
struct Masked<'a> {
    sae: &'a Sae,
    mask: Tensor<2>,
}

impl Dictionary for Masked<'_> {
    fn d_in(&self) -> usize {
        self.sae.d_in()
    }
    fn d_sae(&self) -> usize {
        self.sae.d_sae()
    }
    fn encode(&self, x: Tensor<2>) -> Tensor<2> {
        self.sae.encode(x) * self.mask.clone()
    }
    fn decode(&self, f: Tensor<2>) -> Tensor<2> {
        self.sae.decode(f)
    }
    fn decoder_directions(&self) -> Tensor<2> {
        self.sae.decoder_directions()
    }
}

#[test]
fn pruning_removes_exactly_the_dense_features_and_equals_zeroing_their_codes() {
    let device = prism_core::device("cpu").unwrap();
    let model = common::llama();
    let texts = [
        "The quick brown fox jumps over the lazy dog.",
        "Sparse is better than dense; readability counts.",
    ];
    let seqs: Vec<Vec<u32>> = texts.iter().map(|t| model.encode(t).unwrap()).collect();
    let batches = [TokenBatch::from_sequences(&seqs, 0).unwrap()];
    let (d, m) = (64, 96);
    let sae = common::spread_sae(d, m);
    let hook = HookPoint::ResidPost(0);
    let full = evaluate(&model, &sae, hook, batches.iter().cloned().map(Ok), |_| {}).unwrap();
    let density = full.reconstruction.feature_density.clone();
    let mut sorted = density.clone();
    sorted.sort_by(f64::total_cmp);
    let p = sorted[m / 2];
    assert!(
        sorted[0] < p && p < sorted[m - 1],
        "densities should spread: {sorted:?}"
    );

    let keep = features_to_keep(&density, PruneRule::MaxDensity(p)).unwrap();
    let removed: Vec<usize> = (0..m).filter(|i| !keep.contains(i)).collect();
    assert_eq!(
        removed,
        (0..m).filter(|&i| density[i] > p).collect::<Vec<_>>(),
        "exactly the features above p"
    );
    let pruned = sae.keep_features(&keep).unwrap();
    assert_eq!(pruned.d_sae(), keep.len());

    let mask: Vec<f32> = (0..m)
        .map(|i| if keep.contains(&i) { 1.0 } else { 0.0 })
        .collect();
    let masked = Masked {
        sae: &sae,
        mask: Tensor::from_data(TensorData::new(mask, [1, m]), &device),
    };
    let a = evaluate(
        &model,
        &pruned,
        hook,
        batches.iter().cloned().map(Ok),
        |_| {},
    )
    .unwrap();
    let b = evaluate(
        &model,
        &masked,
        hook,
        batches.iter().cloned().map(Ok),
        |_| {},
    )
    .unwrap();
    let close = |x: f64, y: f64, what: &str| {
        assert!((x - y).abs() < 1e-5 * (1.0 + y.abs()), "{what}: {x} vs {y}")
    };
    close(a.reconstruction.mse, b.reconstruction.mse, "mse");
    close(a.reconstruction.l0, b.reconstruction.l0, "l0");
    close(a.reconstruction.l1, b.reconstruction.l1, "l1");
    close(
        a.reconstruction.frac_variance_explained,
        b.reconstruction.frac_variance_explained,
        "fve",
    );
    close(
        a.downstream.loss_reconstructed,
        b.downstream.loss_reconstructed,
        "loss_reconstructed",
    );
    close(
        a.downstream.frac_recovered,
        b.downstream.frac_recovered,
        "frac_recovered",
    );
    close(
        a.downstream.kl_div_with_sae,
        b.downstream.kl_div_with_sae,
        "kl",
    );
    // L0 falls by exactly the removed features' densities.
    let removed_density: f64 = removed.iter().map(|&i| density[i]).sum();
    close(
        a.reconstruction.l0,
        full.reconstruction.l0 - removed_density,
        "l0 after pruning",
    );
    // Pruning down to a target L0 reaches it.
    let target = full.reconstruction.l0 / 3.0;
    let keep = features_to_keep(&density, PruneRule::TargetL0(target)).unwrap();
    let l0 = evaluate(
        &model,
        &sae.keep_features(&keep).unwrap(),
        hook,
        batches.iter().cloned().map(Ok),
        |_| {},
    )
    .unwrap()
    .reconstruction
    .l0;
    assert!(l0 <= target + 1e-9, "target L0 {target}, reached {l0}");
}
