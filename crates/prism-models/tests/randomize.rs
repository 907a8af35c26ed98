//! Weight randomisation for control experiments.

use crate::common;

use common::*;
use prism_core::{Hooks, HostTensor};
use prism_models::{Model, Randomization, TokenBatch, Transformer};

fn weights(t: &Transformer) -> Vec<HostTensor> {
    let mut out = vec![
        HostTensor::from_burn(t.embed.clone()).unwrap(),
        HostTensor::from_burn(t.unembed.clone()).unwrap(),
    ];
    for b in &t.blocks {
        let norms = [
            &b.ln1,
            &b.ln2,
            &b.post_attn,
            &b.post_mlp,
            &b.attn.q_norm,
            &b.attn.k_norm,
        ];
        let norms = norms.into_iter().flatten().map(|n| &n.weight);
        for w in [
            &b.attn.qkv.weight,
            &b.attn.out.weight,
            &b.mlp.up.weight,
            &b.mlp.down.weight,
        ]
        .into_iter()
        .chain(norms)
        {
            out.push(HostTensor::from_burn(w.clone()).unwrap());
        }
    }
    out
}

#[test]
fn randomised_models_keep_shapes_differ_and_are_reproducible() {
    let device = prism_core::device("cpu").unwrap();
    for name in MODELS {
        let model = Model::load(&fixtures().join("models").join(name), &device).unwrap();
        let orig = weights(&model.transformer);
        for mode in [Randomization::All, Randomization::AllButEmbeddings] {
            let a = weights(&model.transformer.randomized(mode, 1));
            let b = weights(&model.transformer.randomized(mode, 1));
            let c = weights(&model.transformer.randomized(mode, 2));
            assert_eq!(a, b, "{name} {mode:?}: same seed, different weights");
            for ((o, x), y) in orig.iter().zip(&a).zip(&c).skip(2) {
                assert_eq!(o.shape, x.shape);
                assert_ne!(
                    o.data, x.data,
                    "{name} {mode:?}: a block weight was not re-drawn"
                );
                if x.data.iter().any(|v| *v != 1.0) {
                    assert_ne!(x.data, y.data, "{name} {mode:?}: seeds 1 and 2 agree");
                }
            }
            let embeddings_equal = orig[0] == a[0] && orig[1] == a[1];
            match mode {
                Randomization::AllButEmbeddings => {
                    assert!(embeddings_equal, "{name}: embeddings changed")
                }
                Randomization::All => assert!(!embeddings_equal, "{name}: embeddings kept"),
            }
        }
        // Initialisation scale: matrices have the configured std.
        let r = model.transformer.randomized(Randomization::All, 3);
        let w = HostTensor::from_burn(r.blocks[0].attn.qkv.weight.clone()).unwrap();
        let std = (w.data.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        let want = model.config().initializer_range;
        assert!(
            (std / want - 1.0).abs() < 0.1,
            "{name}: std {std} vs {want}"
        );
        // And the randomised model still runs.
        let batch = TokenBatch::from_sequences(&reference(name).tokens[..1], 0).unwrap();
        let rm = model.randomized(Randomization::All, 3).unwrap();
        assert!(rm.loss(&batch, &Hooks::new()).unwrap().is_finite());
    }
}
