//! Zero, mean and resample ablations checked against the same edits made by hand (host
//! arithmetic on captured activations, then `Edit::Replace` / `Edit::MeanOf` from prism-core),
//! and faithfulness against its definition.

use crate::common;

use std::sync::Arc;

use prism_core::{Activation, Edit, HookPoint, Hooks, Intervention};
use prism_models::{Model, TokenBatch};
use prism_patch::{
    Ablation, Dictionaries, FeatureEdit, MeanStates, Node, PatchOptions, Splice, Unit, ablation,
    faithfulness,
};

use common::case;

fn logits(model: &Model, batch: &TokenBatch, hooks: &Hooks) -> Vec<f32> {
    prism_core::to_vec(model.forward(batch, hooks).unwrap().logits().unwrap()).unwrap()
}

fn assert_all_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(worst <= tol, "{what}: max difference {worst}");
}

/// Three sequences of different lengths (right-padded), from the fixture's token range.
fn reference_batch(pad: u32) -> TokenBatch {
    TokenBatch::from_sequences(
        &[vec![5, 9, 44, 3], vec![17, 2, 8, 61, 30, 12], vec![7, 7]],
        pad,
    )
    .unwrap()
}

/// `hook_z` `[b, s, heads, d_head]` of `batch` on the host.
fn z_of(model: &Model, batch: &TokenBatch, layer: usize) -> (Vec<f32>, Vec<usize>) {
    let mut out = model
        .forward(batch, &Hooks::new().capture(HookPoint::AttnZ(layer)))
        .unwrap();
    let a = out.take(HookPoint::AttnZ(layer)).unwrap();
    let dims = a.dims();
    (prism_core::to_vec(a.into_rank4().unwrap()).unwrap(), dims)
}

#[test]
fn mean_ablation_of_a_head_equals_its_dataset_mean_put_in_by_hand() {
    let c = case("llama_gqa");
    let (layer, head) = (1, 1);
    let reference = reference_batch(c.model.pad_id());
    let means = MeanStates::compute(
        &c.model,
        [Ok(reference.clone())],
        &[HookPoint::AttnZ(layer)],
        &Dictionaries::new(),
    )
    .unwrap();
    assert_eq!(means.positions, 4 + 6 + 2);
    // The head's mean over the 12 real positions only.
    let (z, dims) = z_of(&c.model, &reference, layer);
    let (s, h, dh) = (dims[1], dims[2], dims[3]);
    let mut mean = vec![0f32; dh];
    for (i, &len) in reference.lengths.iter().enumerate() {
        for t in 0..len {
            for k in 0..dh {
                mean[k] += z[((i * s + t) * h + head) * dh + k] / 12.0;
            }
        }
    }
    let target = &c.pairs.corrupt;
    let (mut zt, tdims) = z_of(&c.model, target, layer);
    for i in 0..tdims[0] {
        for t in 0..tdims[1] {
            let at = ((i * tdims[1] + t) * h + head) * dh;
            zt[at..at + dh].copy_from_slice(&mean);
        }
    }
    let replaced = burn::tensor::Tensor::<4>::from_data(
        burn::tensor::TensorData::new(zt, tdims),
        c.model.device(),
    );
    let by_hand = Hooks::new().intervene(Intervention::new(
        HookPoint::AttnZ(layer),
        Edit::Replace(Activation::Rank4(replaced)),
    ));
    let node = Node::new(HookPoint::AttnZ(layer), None, Unit::Head(head));
    let (batch, hooks) = ablation(
        &c.model,
        target,
        &[vec![node]],
        &Ablation::Mean(Arc::new(means)),
        &Dictionaries::new(),
    )
    .unwrap();
    let want = logits(&c.model, target, &by_hand);
    assert_all_close(
        &logits(&c.model, &batch, &hooks),
        &want,
        1e-4,
        "mean ablation",
    );
    // And it did change something: the head matters.
    let clean = logits(&c.model, target, &Hooks::new());
    assert!(clean.iter().zip(&want).any(|(a, b)| (a - b).abs() > 1e-3));
}

#[test]
fn resampling_draws_only_from_prompts_long_enough_to_have_no_padding_there() {
    let c = case("gpt2");
    let pad = c.model.pad_id();
    let source = reference_batch(pad);
    // Row 0 has 6 tokens: only source row 1 is that long, so it must be the one drawn.
    let target = TokenBatch::from_sequences(&[vec![3, 4, 5, 6, 7, 8], vec![9, 10]], pad).unwrap();
    let node = Node::new(HookPoint::ResidPost(0), None, Unit::All);
    let (z_src, _) = {
        let mut out = c
            .model
            .forward(&source, &Hooks::new().capture(HookPoint::ResidPost(0)))
            .unwrap();
        let a = out.take(HookPoint::ResidPost(0)).unwrap();
        let d = a.dims();
        (a, d)
    };
    let src_row1 = z_src.into_rank3().unwrap().narrow(0, 1, 1);
    for seed in 0..4 {
        let how = Ablation::Resample {
            source: source.clone(),
            seed,
        };
        let (batch, hooks) =
            ablation(&c.model, &target, &[vec![node]], &how, &Dictionaries::new()).unwrap();
        let got = logits(&c.model, &batch, &hooks);
        let row0 = TokenBatch::from_sequences(&[vec![3, 4, 5, 6, 7, 8]], pad).unwrap();
        let by_hand = Hooks::new().intervene(Intervention::new(
            HookPoint::ResidPost(0),
            Edit::Replace(Activation::Rank3(src_row1.clone())),
        ));
        let want = logits(&c.model, &row0, &by_hand);
        assert_all_close(&got[..want.len()], &want, 1e-4, &format!("seed {seed}"));
    }
    // No source row is as long as a 7-token prompt: a clear error, not padding.
    let long = TokenBatch::from_sequences(&[vec![1; 7]], pad).unwrap();
    let how = Ablation::Resample { source, seed: 0 };
    let e = ablation(&c.model, &long, &[vec![node]], &how, &Dictionaries::new())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("resampling"), "{e}");
}

#[test]
fn zero_ablating_dictionary_features_equals_the_splice_with_those_features_zeroed() {
    let c = case("llama_tied");
    let device = prism_core::device("cpu").unwrap();
    let sae = Arc::new(
        prism_sae::Sae::load(&common::fixtures().join("sae/pipeline_resid0"), &device).unwrap(),
    );
    let hook = HookPoint::ResidPost(0);
    let features = vec![3, 10, 41];
    let splice = Splice::new(hook, sae.clone(), FeatureEdit::Zero(features.clone()));
    let want = logits(
        &c.model,
        &c.pairs.clean,
        &Hooks::new().intervene(splice.intervention().unwrap()),
    );
    let mut dictionaries = Dictionaries::new();
    dictionaries.insert(hook, sae);
    let nodes: Vec<Node> = features
        .iter()
        .map(|&j| Node::new(hook, None, Unit::Feature(j)))
        .collect();
    let (batch, hooks) = ablation(
        &c.model,
        &c.pairs.clean,
        &[nodes],
        &Ablation::Zero,
        &dictionaries,
    )
    .unwrap();
    assert_all_close(
        &logits(&c.model, &batch, &hooks),
        &want,
        1e-4,
        "zeroed features",
    );
    // A feature node without its dictionary is a typed error.
    let lone = Node::new(hook, None, Unit::Feature(3));
    assert!(
        ablation(
            &c.model,
            &c.pairs.clean,
            &[vec![lone]],
            &Ablation::Zero,
            &Dictionaries::new()
        )
        .is_err()
    );
}

#[test]
fn faithfulness_follows_its_definition_with_mean_ablation_made_by_prism_core() {
    let c = case("gpt_neox_sequential");
    let hook = HookPoint::ResidPre(1);
    let seq = c.pairs.clean.seq;
    let universe: Vec<Node> = (0..seq)
        .map(|p| Node::new(hook, Some(p), Unit::All))
        .collect();
    let reference = reference_batch(c.model.pad_id());
    let means = Arc::new(
        MeanStates::compute(
            &c.model,
            [Ok(reference.clone())],
            &[hook],
            &Dictionaries::new(),
        )
        .unwrap(),
    );
    // The dataset mean by hand, over real positions only.
    let mut out = c
        .model
        .forward(&reference, &Hooks::new().capture(hook))
        .unwrap();
    let acts = out.take(hook).unwrap();
    let [_, s, d] = acts.clone().into_rank3().unwrap().dims();
    let host = prism_core::to_vec(acts.into_rank3().unwrap()).unwrap();
    let mut mean = vec![0f32; d];
    for (i, &len) in reference.lengths.iter().enumerate() {
        for t in 0..len {
            for k in 0..d {
                mean[k] += host[(i * s + t) * d + k] / 12.0;
            }
        }
    }
    let mean = burn::tensor::Tensor::<1>::from_floats(mean.as_slice(), c.model.device());
    let ld = |positions: Vec<usize>| -> f64 {
        let hooks = if positions.is_empty() {
            Hooks::new()
        } else {
            Hooks::new().intervene(
                Intervention::new(hook, Edit::MeanOf(mean.clone())).at_positions(positions),
            )
        };
        let logits = c
            .model
            .forward(&c.pairs.clean, &hooks)
            .unwrap()
            .logits()
            .unwrap();
        let v = prism_core::to_vec(logits).unwrap();
        let vocab = c.model.config().vocab_size;
        let last = c.pairs.last_positions();
        (0..c.pairs.len())
            .map(|i| {
                let row = &v[(i * seq + last[i]) * vocab..][..vocab];
                (row[c.pairs.answer[i] as usize] - row[c.pairs.wrong[i] as usize]) as f64
            })
            .sum::<f64>()
            / c.pairs.len() as f64
    };
    // Rank positions last-first; circuits of 0, 1, 3 and all positions.
    let ranked: Vec<Node> = universe.iter().rev().copied().collect();
    let f = faithfulness(
        &c.model,
        &c.pairs,
        &universe,
        &ranked,
        &[0, 1, 3, seq],
        means,
        &PatchOptions::default(),
    )
    .unwrap();
    let (full, empty) = (ld(vec![]), ld((0..seq).collect()));
    assert!((f.full - full).abs() < 1e-4 && (f.empty - empty).abs() < 1e-4);
    for (point, kept) in f.curve.iter().zip([0, 1, 3, seq]) {
        let ablated: Vec<usize> = (0..seq - kept).collect();
        let want = (ld(ablated) - empty) / (full - empty);
        assert!(
            (point.faithfulness - want).abs() < 1e-4,
            "{kept} kept: {} vs {want}",
            point.faithfulness
        );
    }
    assert!(f.curve[0].faithfulness.abs() < 1e-6);
    assert!((f.curve[3].faithfulness - 1.0).abs() < 1e-6);
}
