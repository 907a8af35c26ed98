//! A dictionary spliced in with its error term: nothing changes until a feature is edited, and
//! an edit moves the activation by exactly that feature's decoder contribution.

use std::sync::Arc;

use burn::tensor::{Tensor, TensorData};
use prism_core::{Activation, Dictionary, Edit, HookPoint, Hooks, HostTensor, Intervention};
use prism_models::{Model, TokenBatch};
use prism_patch::{FeatureEdit, Splice};
use prism_sae::Sae;

use prism_testkit::fixtures;

fn setup() -> (Model, Sae, TokenBatch) {
    let device = prism_core::device("cpu").unwrap();
    let model = Model::load(&fixtures().join("models/llama_tied"), &device).unwrap();
    // Made by sae-lens: a 32 → 64 dictionary at blocks.0.hook_resid_post of this model.
    let sae = Sae::open(&fixtures().join("sae/pipeline_resid0"), &device).unwrap();
    let batch = model
        .batch(&[
            "Edit one feature at a time.",
            "The rest stays as it was, error term included.",
        ])
        .unwrap();
    (model, sae, batch)
}

fn logits(model: &Model, batch: &TokenBatch, hooks: &Hooks) -> Vec<f32> {
    HostTensor::from_burn(model.forward(batch, hooks).unwrap().logits().unwrap())
        .unwrap()
        .data
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn splicing_changes_nothing_until_a_feature_is_edited() {
    let (model, sae, batch) = setup();
    let hook = HookPoint::ResidPost(0);
    let sae = Arc::new(sae);
    let clean = logits(&model, &batch, &Hooks::new());
    let spliced = |edit: FeatureEdit| {
        let iv = Splice::new(hook, sae.clone(), edit).intervention().unwrap();
        logits(&model, &batch, &Hooks::new().intervene(iv))
    };
    assert!(max_diff(&spliced(FeatureEdit::Keep), &clean) <= 1e-5);
    let all: Vec<usize> = (0..sae.d_sae()).collect();
    assert!(max_diff(&spliced(FeatureEdit::KeepOnly(all)), &clean) <= 1e-5);

    // The activation and its codes, to edit by hand.
    let mut out = model.forward(&batch, &Hooks::new().capture(hook)).unwrap();
    let x = out.take(hook).unwrap().into_rank3().unwrap();
    let [b, s, d] = x.dims();
    let codes = HostTensor::from_burn(sae.encode(x.clone().reshape([b * s, d]))).unwrap();
    let w_dec = HostTensor::from_burn(sae.w_dec().clone()).unwrap();
    let m = sae.d_sae();
    let j = (0..m)
        .max_by_key(|&j| (0..b * s).filter(|&r| codes.data[r * m + j] != 0.0).count())
        .unwrap();
    assert!(
        (0..b * s).any(|r| codes.data[r * m + j] != 0.0),
        "feature {j} never fires"
    );
    // x + (new_j − f_j) · W_dec[j], replaced in by hand.
    let by_hand = |new_value: Option<f32>| {
        let xs = HostTensor::from_burn(x.clone()).unwrap();
        let mut v = xs.data.clone();
        for r in 0..b * s {
            let f = codes.data[r * m + j];
            let delta = new_value.unwrap_or(0.0) - f;
            for k in 0..d {
                v[r * d + k] += delta * w_dec.data[j * d + k];
            }
        }
        let t = Tensor::<3>::from_data(TensorData::new(v, [b, s, d]), model.device());
        let iv = Intervention::new(hook, Edit::Replace(Activation::Rank3(t)));
        logits(&model, &batch, &Hooks::new().intervene(iv))
    };
    let zeroed = spliced(FeatureEdit::Zero(vec![j]));
    assert!(
        max_diff(&zeroed, &clean) > 1e-3,
        "zeroing a firing feature should matter"
    );
    assert!(max_diff(&zeroed, &by_hand(None)) <= 1e-5);
    let set = spliced(FeatureEdit::Set(vec![(j, 2.5)]));
    assert!(max_diff(&set, &by_hand(Some(2.5))) <= 1e-5);
}

#[test]
fn bad_splices_are_typed_errors() {
    let (model, sae, batch) = setup();
    let sae = Arc::new(sae);
    let m = sae.d_sae();
    assert!(
        Splice::new(
            HookPoint::ResidPost(0),
            sae.clone(),
            FeatureEdit::Zero(vec![m])
        )
        .intervention()
        .is_err()
    );
    assert!(
        Splice::new(HookPoint::AttnZ(0), sae.clone(), FeatureEdit::Keep)
            .intervention()
            .is_err()
    );
    // A hook of another width (mlp.hook_post: d_mlp, not d_model) fails when reached.
    let iv = Splice::new(HookPoint::MlpPost(0), sae, FeatureEdit::Keep)
        .intervention()
        .unwrap();
    let e = model
        .forward(&batch, &Hooks::new().intervene(iv))
        .unwrap_err()
        .to_string();
    assert!(e.contains("width"), "{e}");
}
