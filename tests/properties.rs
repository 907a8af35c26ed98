//! Round trips and invariants that must hold for every input, checked with `proptest`:
//! hook names, safetensors files, SAELens dictionaries, the activation cache, pruning, and
//! mean max cosine similarity.

use std::collections::HashSet;

use approx::assert_abs_diff_eq;
use burn::tensor::{Tensor, TensorData};
use prism::cache::{ActivationStore, CacheOptions, Corpus, WindowConfig, build_cache};
use prism::core::{Dictionary, FloatDtype, HookPoint, HostTensor};
use prism::sae::{Architecture, Sae};
use prism::similarity::{SimilarityOptions, compare_directions};
use proptest::prelude::*;

fn device() -> prism::Device {
    prism::core::device("cpu").unwrap()
}

fn hook_point() -> impl Strategy<Value = HookPoint> {
    let layer = 0usize..1000;
    prop_oneof![
        Just(HookPoint::Embed),
        Just(HookPoint::PosEmbed),
        Just(HookPoint::LnFinal),
        layer.clone().prop_map(HookPoint::ResidPre),
        layer.clone().prop_map(HookPoint::AttnPattern),
        layer.clone().prop_map(HookPoint::AttnZ),
        layer.clone().prop_map(HookPoint::AttnOut),
        layer.clone().prop_map(HookPoint::ResidMid),
        layer.clone().prop_map(HookPoint::MlpPost),
        layer.clone().prop_map(HookPoint::MlpOut),
        layer.prop_map(HookPoint::ResidPost),
    ]
}

/// A dictionary of any architecture with the given values as weights.
fn dictionary(kind: u8, d: usize, m: usize, values: &[f32]) -> Sae {
    let dev = device();
    let mut it = values.iter().cycle().copied();
    let mut t = |r: usize, c: usize| {
        let v: Vec<f32> = (0..r * c).map(|_| it.next().unwrap()).collect();
        Tensor::<2>::from_data(TensorData::new(v, [r, c]), &dev)
    };
    let architecture = match kind % 4 {
        0 => Architecture::Standard,
        1 => Architecture::TopK { k: 1 + m / 3 },
        2 => Architecture::JumpRelu {
            threshold: t(1, m).abs(),
        },
        _ => Architecture::Gated {
            r_mag: t(1, m),
            b_mag: t(1, m),
        },
    };
    let (w_enc, b_enc, w_dec, b_dec) = (t(d, m), t(1, m), t(m, d), t(1, d));
    Sae::new(architecture, w_enc, b_enc, w_dec, b_dec).unwrap()
}

fn host(t: Tensor<2>) -> HostTensor {
    HostTensor::from_burn(t).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn hook_names_parse_back_to_themselves(h in hook_point()) {
        let name = h.to_string();
        prop_assert_eq!(name.parse::<HookPoint>().unwrap(), h);
    }

    #[test]
    fn malformed_hook_names_are_errors_not_panics(s in "\\PC{0,40}") {
        if let Ok(h) = s.parse::<HookPoint>() {
            // Whatever parses is exactly a TransformerLens name.
            prop_assert_eq!(h.to_string(), s);
        }
    }

    #[test]
    fn safetensors_files_round_trip(
        shape in prop::collection::vec(1usize..5, 1..4),
        seed in any::<u64>(),
        dtype in prop_oneof![Just(FloatDtype::F32), Just(FloatDtype::F16), Just(FloatDtype::BF16)],
    ) {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| (((seed.wrapping_add(i as u64)).wrapping_mul(2654435761) % 20001) as f32 - 10000.0) / 1000.0)
            .collect();
        let t = HostTensor::new(shape.clone(), values).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        prism::core::write_safetensors(&path, &[("t".into(), t.clone())], dtype, None).unwrap();
        let back = prism::core::read_safetensors(&path).unwrap().remove("t").unwrap();
        prop_assert_eq!(&back.shape, &shape);
        // Exact in f32; within the format's rounding (relative 2^-11 / 2^-8) otherwise.
        let rel = match dtype { FloatDtype::F32 => 0.0, FloatDtype::F16 => 4.9e-4, FloatDtype::BF16 => 3.9e-3 };
        for (a, b) in back.data.iter().zip(&t.data) {
            assert_abs_diff_eq!(*a, *b, epsilon = rel * b.abs() + 1e-7);
        }
    }

    #[test]
    fn saelens_dictionaries_round_trip(
        kind in 0u8..4,
        d in 1usize..6,
        m in 3usize..9,
        values in prop::collection::vec(-1.0f32..1.0, 1..40),
        apply_b_dec in any::<bool>(),
    ) {
        let mut sae = dictionary(kind, d, m, &values);
        sae.set_apply_b_dec_to_input(apply_b_dec);
        sae.set_hook_name(Some("blocks.1.hook_mlp_out".into()));
        let dir = tempfile::tempdir().unwrap();
        sae.save(dir.path()).unwrap();
        let back = Sae::load(dir.path(), &device()).unwrap();
        prop_assert_eq!(back.architecture().name(), sae.architecture().name());
        prop_assert_eq!(back.architecture().k(), sae.architecture().k());
        prop_assert_eq!(back.hook_name(), sae.hook_name());
        prop_assert_eq!(back.applies_b_dec_to_input(), apply_b_dec);
        let x = Tensor::<2>::from_data(TensorData::new(values.iter().cycle().take(4 * d).map(|v| v * 2.0).collect::<Vec<_>>(), [4, d]), &device());
        prop_assert_eq!(host(back.encode(x.clone())), host(sae.encode(x.clone())));
        prop_assert_eq!(host(back.forward(x.clone())), host(sae.forward(x)));
    }

    #[test]
    fn pruning_equals_zeroing_the_removed_codes(
        kind in prop_oneof![Just(0u8), Just(2), Just(3)], // per-feature codes (not TopK)
        d in 1usize..6,
        m in 3usize..9,
        values in prop::collection::vec(-1.0f32..1.0, 1..40),
        keep_mask in prop::collection::vec(any::<bool>(), 9),
    ) {
        let sae = dictionary(kind, d, m, &values);
        let keep: Vec<usize> = (0..m).filter(|&j| keep_mask[j]).collect();
        prop_assume!(!keep.is_empty());
        let pruned = sae.keep_features(&keep).unwrap();
        let x = Tensor::<2>::from_data(TensorData::new(values.iter().cycle().skip(3).take(5 * d).copied().collect::<Vec<_>>(), [5, d]), &device());
        // JumpReLU and Gated codes jump where the pre-activation crosses the cut-off; a
        // pre-activation within rounding of it may land on either side in a narrower product.
        let pre = host(sae.pre_activations(x.clone()));
        let cut: Option<Vec<f32>> = match &sae.architecture() {
            Architecture::JumpRelu { threshold } => Some(host(threshold.clone()).data),
            Architecture::Gated { .. } => Some(vec![0.0; m]),
            _ => None,
        };
        if let Some(cut) = cut {
            prop_assume!(pre.data.iter().enumerate().all(|(i, p)| (p - cut[i % m]).abs() > 1e-4));
        }
        let full = host(sae.encode(x.clone()));
        let part = host(pruned.encode(x.clone()));
        // The kept features' codes are unchanged (to rounding: a narrower product sums in
        // another order) …
        for r in 0..5 {
            for (c, &j) in keep.iter().enumerate() {
                assert_abs_diff_eq!(part.data[r * keep.len() + c], full.data[r * m + j], epsilon = 1e-5);
            }
        }
        // … and decoding them equals decoding the full codes with the others zeroed.
        let mut zeroed = full.clone();
        for r in 0..5 {
            for j in (0..m).filter(|j| !keep.contains(j)) {
                zeroed.data[r * m + j] = 0.0;
            }
        }
        let a = host(pruned.decode(part.to_burn(&device()).unwrap()));
        let b = host(sae.decode(zeroed.to_burn(&device()).unwrap()));
        for (u, v) in a.data.iter().zip(&b.data) {
            assert_abs_diff_eq!(*u, *v, epsilon = 1e-5);
        }
    }

    #[test]
    fn a_permuted_rescaled_copy_has_mmcs_one(
        m in 2usize..24,
        d in 2usize..12,
        seed in any::<u64>(),
        scales in prop::collection::vec(0.1f32..10.0, 24),
    ) {
        let mut s = seed | 1;
        let mut next = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5 };
        let a: Vec<f32> = (0..m * d).map(|_| next()).collect();
        let mut perm: Vec<usize> = (0..m).collect();
        perm.sort_by_key(|&i| (i.wrapping_mul(7919) ^ seed as usize) % 1009);
        let mut b = Vec::with_capacity(m * d);
        for (r, &p) in perm.iter().enumerate() {
            b.extend(a[p * d..(p + 1) * d].iter().map(|v| v * scales[r]));
        }
        let t = |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [m, d]), &device());
        let sim = compare_directions(t(&a), t(&b), &SimilarityOptions::default()).unwrap();
        assert_abs_diff_eq!(sim.mmcs_a_to_b, 1.0, epsilon = 1e-5);
        assert_abs_diff_eq!(sim.mmcs_b_to_a, 1.0, epsilon = 1e-5);
    }
}

proptest! {
    // Each case harvests a small cache from a real model: a few cases only.
    #![proptest_config(ProptestConfig { cases: 6, .. ProptestConfig::default() })]

    #[test]
    fn a_cache_serves_every_harvested_row_once_whatever_its_shape(
        tokens in 40u64..400,
        ctx in 8usize..40,
        per_shard in 1usize..6,
        dtype in prop_oneof![Just(FloatDtype::F32), Just(FloatDtype::BF16)],
        seed in any::<u64>(),
        batch in 1usize..64,
    ) {
        let root = prism_testkit::root();
        let model = prism::Model::load(&root.join("fixtures/models/gpt2"), &device()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("c.txt");
        std::fs::write(&text, "Tokens become windows, windows become activations, and rows come back shuffled.\n".repeat(40)).unwrap();
        let corpus = Corpus::open(&text, "text").unwrap();
        let hook = HookPoint::ResidPost(1);
        let options = CacheOptions {
            hooks: vec![hook],
            window: WindowConfig { ctx, ..Default::default() },
            drop_bos: false,
            dtype,
            target_tokens: tokens,
            windows_per_shard: per_shard,
            windows_per_forward: 3,
            stop_after_shards: None,
        };
        build_cache(&model, &corpus, &options, &dir.path().join("cache"), &mut |_| {}).unwrap();
        let store = ActivationStore::open(&dir.path().join("cache")).unwrap();
        prop_assert_eq!(store.len(), tokens);
        // The shuffled batches are a permutation of all rows.
        let mut order = Vec::new();
        let mut batches = store.shuffled_batches(&[0], batch, seed);
        loop {
            let next: Vec<u64> = batches.peek_rows();
            match batches.next() {
                Some(b) => {
                    prop_assert_eq!(b.unwrap()[0].shape[0], next.len());
                    order.extend(next);
                }
                None => break,
            }
        }
        let unique: HashSet<u64> = order.iter().copied().collect();
        prop_assert_eq!(order.len() as u64, tokens);
        prop_assert_eq!(unique.len() as u64, tokens);
        // The last row is the model's activation at the window and position it records.
        let (window, pos) = store.context(tokens - 1).unwrap();
        let batch = prism::TokenBatch::from_sequences(&[window], 0).unwrap();
        let mut out = model.forward(&batch, &prism::Hooks::new().capture(hook)).unwrap();
        let act = HostTensor::from_burn(out.take(hook).unwrap().into_rank3().unwrap()).unwrap();
        let w = act.shape[2];
        let mut last = Vec::new();
        store.read_row(0, tokens - 1, &mut last).unwrap();
        let tol = if dtype == FloatDtype::F32 { 0.0 } else { 3.9e-3 };
        for (a, b) in last.iter().zip(&act.data[pos * w..(pos + 1) * w]) {
            assert_abs_diff_eq!(*a, *b, epsilon = tol * b.abs() + 1e-6);
        }
    }
}
