//! The hooked forward pass: captures agree with each other, interventions do what they say.

use crate::common;

use common::*;
use prism_core::{Edit, HookPoint, Hooks, HostTensor, Intervention};
use prism_models::{Model, TokenBatch};

fn load(name: &str) -> (Model, TokenBatch) {
    let device = prism_core::device("cpu").unwrap();
    let model = Model::load(&fixtures().join("models").join(name), &device).unwrap();
    let r = reference(name);
    let batch = TokenBatch::from_sequences(&r.tokens[..2], 0).unwrap();
    (model, batch)
}

/// The activation at `hp` (after `hooks`' edits) on `batch`, on the host.
fn capture_at(model: &Model, batch: &TokenBatch, hooks: Hooks, hp: HookPoint) -> HostTensor {
    let mut out = model.forward(batch, &hooks.capture(hp)).unwrap();
    host(out.captures.remove(&hp).unwrap())
}

fn seq_of(t: &HostTensor) -> usize {
    t.shape[1]
}

fn host(a: prism_core::Activation) -> HostTensor {
    match a {
        prism_core::Activation::Rank3(t) => HostTensor::from_burn(t).unwrap(),
        prism_core::Activation::Rank4(t) => HostTensor::from_burn(t).unwrap(),
    }
}

#[test]
fn resid_post_is_the_sum_of_its_parts() {
    for name in MODELS {
        let (model, batch) = load(name);
        let parallel = model.config().parallel_residual;
        for l in 0..model.config().n_layers {
            let mut hooks = Hooks::new().capture_all([
                HookPoint::ResidPre(l),
                HookPoint::AttnOut(l),
                HookPoint::MlpOut(l),
                HookPoint::ResidPost(l),
            ]);
            if !parallel {
                hooks = hooks.capture(HookPoint::ResidMid(l));
            }
            let mut out = model.forward(&batch, &hooks).unwrap();
            let pre = host(out.take(HookPoint::ResidPre(l)).unwrap());
            let attn = host(out.take(HookPoint::AttnOut(l)).unwrap());
            let mlp = host(out.take(HookPoint::MlpOut(l)).unwrap());
            let post = host(out.take(HookPoint::ResidPost(l)).unwrap());
            let by_hand: Vec<f32> = (0..pre.len())
                .map(|i| pre.data[i] + attn.data[i] + mlp.data[i])
                .collect();
            let diff = max_abs_diff(&by_hand, &post.data);
            assert!(
                diff < 1e-5,
                "{name} layer {l}: resid_post differs from the sum by {diff}"
            );
            if !parallel {
                let mid = host(out.take(HookPoint::ResidMid(l)).unwrap());
                let by_hand: Vec<f32> =
                    (0..pre.len()).map(|i| pre.data[i] + attn.data[i]).collect();
                assert!(
                    max_abs_diff(&by_hand, &mid.data) < 1e-6,
                    "{name} layer {l}: resid_mid"
                );
            }
            if l + 1 < model.config().n_layers {
                let next = model
                    .forward(&batch, &Hooks::new().capture(HookPoint::ResidPre(l + 1)))
                    .unwrap();
                let next = host(next.captures.into_values().next().unwrap());
                assert_eq!(
                    next.data,
                    post.data,
                    "{name}: resid_pre({}) must equal resid_post({l})",
                    l + 1
                );
            }
        }
    }
}

#[test]
fn replacing_an_activation_by_itself_changes_nothing_and_zeroing_does() {
    for name in MODELS {
        let (model, batch) = load(name);
        let clean = model
            .forward(&batch, &Hooks::new().capture(HookPoint::MlpOut(0)))
            .unwrap();
        let clean_logits = HostTensor::from_burn(clean.logits().unwrap()).unwrap();
        let mlp0 = clean.captures[&HookPoint::MlpOut(0)].clone();
        let same =
            Hooks::new().intervene(Intervention::new(HookPoint::MlpOut(0), Edit::Replace(mlp0)));
        let patched =
            HostTensor::from_burn(model.forward(&batch, &same).unwrap().logits().unwrap()).unwrap();
        assert_eq!(
            patched.data, clean_logits.data,
            "{name}: self-replacement changed the logits"
        );
        let zero = Hooks::new().intervene(Intervention::new(HookPoint::MlpOut(0), Edit::Zero));
        let ablated =
            HostTensor::from_burn(model.forward(&batch, &zero).unwrap().logits().unwrap()).unwrap();
        assert!(
            max_abs_diff(&ablated.data, &clean_logits.data) > 1e-3,
            "{name}: zero-ablation changed nothing"
        );
    }
}

#[test]
fn zeroing_a_head_in_hook_z_equals_zeroing_its_slice_of_the_output_projection() {
    for name in MODELS {
        let (model, batch) = load(name);
        let (l, head) = (1, 1);
        let hooks = Hooks::new()
            .intervene(Intervention::new(HookPoint::AttnZ(l), Edit::Zero).at_heads([head]));
        let via_hook =
            HostTensor::from_burn(model.forward(&batch, &hooks).unwrap().logits().unwrap())
                .unwrap();

        // Same ablation done on the weights: the rows of W_O that read this head's output.
        let dh = model.config().d_head;
        let mut edited = model.transformer.clone();
        let w = &mut edited.blocks[l].attn.out.weight;
        let rows = w.dims()[0];
        let mask: Vec<f32> = (0..rows)
            .map(|r| if r / dh == head { 0.0 } else { 1.0 })
            .collect();
        let mask = burn::tensor::Tensor::<2>::from_data(
            burn::tensor::TensorData::new(mask, [rows, 1]),
            model.device(),
        );
        *w = w.clone() * mask;
        let via_weights = HostTensor::from_burn(
            edited
                .forward(&batch, &Hooks::new())
                .unwrap()
                .logits()
                .unwrap(),
        )
        .unwrap();
        let diff = max_abs_diff(&via_hook.data, &via_weights.data);
        assert!(
            diff < 1e-5,
            "{name}: head ablation via hook_z vs W_O differ by {diff}"
        );
        let clean = HostTensor::from_burn(
            model
                .forward(&batch, &Hooks::new())
                .unwrap()
                .logits()
                .unwrap(),
        )
        .unwrap();
        assert!(
            max_abs_diff(&clean.data, &via_hook.data) > 1e-4,
            "{name}: ablating a head changed nothing"
        );
    }
}

#[test]
fn patterns_are_causal_distributions_and_positions_restrict_edits() {
    let (model, batch) = load("llama_gqa");
    let mut out = model
        .forward(&batch, &Hooks::new().capture(HookPoint::AttnPattern(0)))
        .unwrap();
    let p = host(out.take(HookPoint::AttnPattern(0)).unwrap());
    let [b, h, s] = [p.shape[0], p.shape[1], p.shape[2]];
    assert_eq!(p.shape, vec![b, h, s, s]);
    for row in p.data.chunks(s).enumerate() {
        let q = row.0 % s;
        let sum: f32 = row.1.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5);
        assert!(
            row.1[q + 1..].iter().all(|&v| v == 0.0),
            "attention to the future"
        );
    }
    // Zeroing only position 2 of resid_pre(1) leaves positions 0 and 1 of the logits unchanged.
    let clean = HostTensor::from_burn(
        model
            .forward(&batch, &Hooks::new())
            .unwrap()
            .logits()
            .unwrap(),
    )
    .unwrap();
    let hooks = Hooks::new()
        .intervene(Intervention::new(HookPoint::ResidPre(1), Edit::Zero).at_positions([2]));
    let edited =
        HostTensor::from_burn(model.forward(&batch, &hooks).unwrap().logits().unwrap()).unwrap();
    let v = model.config().vocab_size;
    let seq = batch.seq;
    for pos in 0..seq {
        let a = &clean.data[pos * v..(pos + 1) * v];
        let e = &edited.data[pos * v..(pos + 1) * v];
        if pos < 2 {
            assert_eq!(a, e, "position {pos} is before the edit");
        } else {
            assert!(
                max_abs_diff(a, e) > 0.0,
                "position {pos} should see the edit"
            );
        }
    }
}

#[test]
fn capture_only_stops_early_and_matches_the_full_pass() {
    let (model, batch) = load("gpt2");
    let hooks = Hooks::new().capture(HookPoint::MlpPost(0));
    let mut full = model.forward(&batch, &hooks).unwrap();
    let mut early = model.transformer.capture_only(&batch, &hooks).unwrap();
    assert!(early.logits.is_none());
    assert_eq!(
        host(full.take(HookPoint::MlpPost(0)).unwrap()).data,
        host(early.take(HookPoint::MlpPost(0)).unwrap()).data
    );
}

#[test]
fn unknown_and_out_of_range_hooks_are_errors() {
    let (model, batch) = load("gpt_neox_parallel");
    let err = "blocks.0.hook_mlp_outt".parse::<HookPoint>().unwrap_err();
    assert!(err.to_string().contains("blocks.0.hook_mlp_outt"), "{err}");
    for bad in [
        HookPoint::ResidPost(2),
        HookPoint::ResidMid(0),
        HookPoint::PosEmbed,
    ] {
        let e = model
            .forward(&batch, &Hooks::new().capture(bad))
            .unwrap_err();
        assert!(
            matches!(e, prism_core::PrismError::UnknownHook { .. }),
            "{bad}: {e}"
        );
    }
    let e = model
        .forward(
            &batch,
            &Hooks::new()
                .intervene(Intervention::new(HookPoint::MlpOut(0), Edit::Zero).at_heads([0])),
        )
        .unwrap_err();
    assert!(e.to_string().contains("head"), "{e}");
}

#[test]
fn every_edit_kind_does_what_it_says() {
    use burn::tensor::Tensor;
    use std::sync::Arc;
    let (model, batch) = load("gpt_neox_sequential");
    let hp = HookPoint::ResidMid(0);
    let logits = |hooks: &Hooks| {
        HostTensor::from_burn(model.forward(&batch, hooks).unwrap().logits().unwrap()).unwrap()
    };
    let captured = |hooks: Hooks| capture_at(&model, &batch, hooks, hp);
    let clean = captured(Hooks::new());
    let d = clean.shape[2];

    // A closure that doubles equals Scale(2).
    let double: prism_core::HookFn = Arc::new(|_, a| {
        Ok(match a {
            prism_core::Activation::Rank3(t) => prism_core::Activation::Rank3(t * 2.0),
            prism_core::Activation::Rank4(t) => prism_core::Activation::Rank4(t * 2.0),
        })
    });
    let by_closure = logits(&Hooks::new().intervene(Intervention::new(hp, Edit::Custom(double))));
    let by_scale = logits(&Hooks::new().intervene(Intervention::new(hp, Edit::Scale(2.0))));
    assert_eq!(by_closure.data, by_scale.data);

    // Add a vector at position 1 only.
    let v: Vec<f32> = (0..d).map(|i| i as f32 * 0.01).collect();
    let vt = Tensor::<1>::from_floats(v.as_slice(), model.device());
    let added =
        captured(Hooks::new().intervene(Intervention::new(hp, Edit::Add(vt)).at_positions([1])));
    let seq = clean.shape[1];
    for (i, (a, c)) in added.data.iter().zip(&clean.data).enumerate() {
        let (pos, k) = ((i / d) % seq, i % d);
        let want = if pos == 1 { c + v[k] } else { *c };
        assert!((a - want).abs() < 1e-6, "add at {i}");
    }

    // Mean over the batch replaces every row by the column means of the real (unpadded) rows.
    let mean = captured(Hooks::new().intervene(Intervention::new(hp, Edit::MeanOverBatch)));
    let rows = clean.len() / d;
    let real: Vec<usize> = (0..rows)
        .filter(|r| r % seq_of(&clean) < batch.lengths[r / seq_of(&clean)])
        .collect();
    assert!(real.len() < rows, "the batch should be padded");
    for k in 0..d {
        let m: f32 = real.iter().map(|r| clean.data[r * d + k]).sum::<f32>() / real.len() as f32;
        assert!(
            (mean.data[k] - m).abs() < 1e-5 && (mean.data[(rows - 1) * d + k] - m).abs() < 1e-5
        );
    }
    // MeanOf(that mean vector) gives the same activation.
    let mvec = Tensor::<1>::from_floats(&mean.data[..d], model.device());
    let mean_of = captured(Hooks::new().intervene(Intervention::new(hp, Edit::MeanOf(mvec))));
    assert!(max_abs_diff(&mean_of.data, &mean.data) < 1e-6);

    // A replacement of the wrong shape is an error naming the hook.
    let wrong = prism_core::Activation::Rank3(Tensor::zeros([1, 1, d], model.device()));
    let e = model
        .forward(
            &batch,
            &Hooks::new().intervene(Intervention::new(hp, Edit::Replace(wrong))),
        )
        .unwrap_err();
    assert!(e.to_string().contains("blocks.0.hook_resid_mid"), "{e}");
}

/// The mean over batch and real positions of `clean` (row-major `dims`) at every element,
/// leaving out padded positions, computed by plain index arithmetic: the expectation for
/// `Edit::MeanOverBatch`.
fn masked_mean_by_hand(clean: &HostTensor, pos_axis: usize, lengths: &[usize]) -> Vec<f32> {
    let dims = &clean.shape;
    let strides: Vec<usize> = (0..dims.len())
        .map(|a| dims[a + 1..].iter().product())
        .collect();
    let mut sums = std::collections::HashMap::<Vec<usize>, (f64, usize)>::new();
    let key = |idx: &[usize]| -> Vec<usize> {
        idx.iter()
            .enumerate()
            .filter(|&(a, _)| a != 0 && a != pos_axis)
            .map(|(_, &i)| i)
            .collect()
    };
    let index = |flat: usize| -> Vec<usize> {
        (0..dims.len())
            .map(|a| flat / strides[a] % dims[a])
            .collect()
    };
    for (flat, v) in clean.data.iter().enumerate() {
        let idx = index(flat);
        if idx[pos_axis] < lengths[idx[0]] {
            let e = sums.entry(key(&idx)).or_default();
            e.0 += *v as f64;
            e.1 += 1;
        }
    }
    (0..clean.data.len())
        .map(|flat| {
            let (s, n) = sums[&key(&index(flat))];
            (s / n as f64) as f32
        })
        .collect()
}

#[test]
fn mean_ablation_averages_real_positions_per_head_at_every_hook_kind() {
    for name in ["gpt_neox_sequential", "gpt2"] {
        let device = prism_core::device("cpu").unwrap();
        let model = Model::load(&fixtures().join("models").join(name), &device).unwrap();
        let r = reference(name);
        // Three sequences of different lengths: the shorter two are right-padded.
        let seqs = vec![
            r.tokens[1].clone(),
            r.tokens[0][..5].to_vec(),
            r.tokens[2][..3].to_vec(),
        ];
        let batch = TokenBatch::from_sequences(&seqs, 0).unwrap();
        assert!(batch.lengths.iter().any(|&l| l < batch.seq));
        for hp in HookPoint::all(&model.config().shape()) {
            let capture = |hooks: Hooks| capture_at(&model, &batch, hooks, hp);
            let clean = capture(Hooks::new());
            let pos_axis = if matches!(hp, HookPoint::AttnPattern(_)) {
                2
            } else {
                1
            };
            let want = masked_mean_by_hand(&clean, pos_axis, &batch.lengths);
            let got = capture(Hooks::new().intervene(Intervention::new(hp, Edit::MeanOverBatch)));
            assert_eq!(got.shape, clean.shape, "{name} {hp}");
            let err = max_abs_diff(&got.data, &want);
            assert!(
                err < 1e-5,
                "{name} {hp}: mean ablation differs from the masked mean by {err}"
            );
        }
    }
}

/// A pass resumed at block l from the residual stream captured there equals the whole pass:
/// logits, later captures and later interventions — on every fixture architecture (padded
/// batches included). Hooks it cannot reach and malformed inputs are refused.
#[test]
fn a_pass_resumed_at_a_block_equals_the_whole_pass() {
    for name in MODELS {
        let (model, batch) = load(name);
        let n = model.config().n_layers;
        for l in 0..n {
            let later = HookPoint::MlpOut(l);
            let zero_later = Hooks::new().intervene(Intervention::new(later, Edit::Zero));
            for hooks in [
                Hooks::new().capture(HookPoint::ResidPost(n - 1)),
                zero_later,
            ] {
                let mut whole = model
                    .forward(&batch, &hooks.clone().capture(HookPoint::ResidPre(l)))
                    .unwrap();
                let resid = whole
                    .take(HookPoint::ResidPre(l))
                    .unwrap()
                    .into_rank3()
                    .unwrap();
                let resumed = model
                    .transformer
                    .forward_from(&batch, l, resid, &hooks)
                    .unwrap();
                assert_eq!(
                    resumed.logits().unwrap().to_data(),
                    whole.logits().unwrap().to_data(),
                    "{name}: resumed at block {l}"
                );
                for (hp, act) in &resumed.captures {
                    assert_eq!(
                        host(act.clone()),
                        host(whole.captures[hp].clone()),
                        "{name} {hp}"
                    );
                }
            }
        }
        let resid = || {
            let mut out = model
                .forward(&batch, &Hooks::new().capture(HookPoint::ResidPre(1)))
                .unwrap();
            out.take(HookPoint::ResidPre(1))
                .unwrap()
                .into_rank3()
                .unwrap()
        };
        let t = &model.transformer;
        let early = Hooks::new().capture(HookPoint::MlpOut(0));
        assert!(
            t.forward_from(&batch, 1, resid(), &early).is_err(),
            "{name}"
        );
        let embed = Hooks::new().capture(HookPoint::Embed);
        assert!(t.forward_from(&batch, 1, resid(), &embed).is_err());
        assert!(t.forward_from(&batch, n, resid(), &Hooks::new()).is_err());
        let short = resid().narrow(1, 0, batch.seq - 1);
        assert!(t.forward_from(&batch, 1, short, &Hooks::new()).is_err());
    }
}

/// The fused CPU kernels (attention without a stored pattern, SiLU·up in one pass) against
/// burn's ops: every hook's capture, an intervention on `hook_z`, and a pass that asks for the
/// pattern (which the fused path must leave to burn's ops) agree on every fixture model.
#[test]
fn the_fused_cpu_path_gives_burn_ops_captures_edits_and_patterns() {
    use prism_models::CpuPath;
    for name in MODELS {
        let (mut model, batch) = load(name);
        let shape = model.config().shape();
        let layer = 1;
        let hooks_at: Vec<HookPoint> = HookPoint::all(&shape)
            .into_iter()
            .filter(|h| h.validate(&shape).is_ok() && *h != HookPoint::AttnPattern(layer))
            .collect();
        let zero_head = Intervention::new(HookPoint::AttnZ(layer), Edit::Zero).at_heads([1]);
        let runs = |model: &Model| {
            let all = model
                .forward(&batch, &Hooks::new().capture_all(hooks_at.clone()))
                .unwrap();
            let edited = model
                .forward(&batch, &Hooks::new().intervene(zero_head.clone()))
                .unwrap()
                .logits()
                .unwrap();
            let mut with_pattern = model
                .forward(&batch, &Hooks::new().capture(HookPoint::AttnPattern(layer)))
                .unwrap();
            let pattern = host(with_pattern.take(HookPoint::AttnPattern(layer)).unwrap());
            let mut values: Vec<(String, HostTensor)> = all
                .captures
                .into_iter()
                .map(|(h, a)| (h.to_string(), host(a)))
                .collect();
            values.push((
                "logits".into(),
                HostTensor::from_burn(all.logits.unwrap()).unwrap(),
            ));
            values.push((
                "logits, head zeroed".into(),
                HostTensor::from_burn(edited).unwrap(),
            ));
            let logits = with_pattern.logits().unwrap();
            values.push((
                "logits with the pattern hooked".into(),
                HostTensor::from_burn(logits).unwrap(),
            ));
            values.push(("pattern".into(), pattern));
            values
        };
        model.transformer.cpu_path = CpuPath::BurnOps;
        let want = runs(&model);
        model.transformer.cpu_path = CpuPath::Fused;
        let got = runs(&model);
        assert_eq!(got.len(), want.len());
        assert!(got.len() > 10, "{name}: too few hooks compared");
        for ((what, g), (_, w)) in got.iter().zip(&want) {
            assert_eq!(g.shape, w.shape, "{name} {what}");
            let diff = max_abs_diff(&g.data, &w.data);
            assert!(
                diff < 1e-5,
                "{name} {what}: fused vs burn ops differ by {diff}"
            );
        }
    }
}

/// `ln2.hook_normalized` sits between the pre-MLP norm's standardisation and its learned scale:
/// its rows have unit mean square (less where ε is large against a tiny model's variance), and zeroing it leaves the MLP an input
/// that is the norm's bias alone — one vector, the same at every position.
#[test]
fn ln2_normalized_is_the_standardised_mlp_input() {
    for name in MODELS {
        let (model, _) = load(name);
        // One unpadded sequence: every row is a real token's.
        let batch = TokenBatch::from_sequences(&reference(name).tokens[..1], 0).unwrap();
        let l = model.config().n_layers - 1;
        let z = capture_at(&model, &batch, Hooks::new(), HookPoint::Ln2Normalized(l));
        let d = *z.shape.last().unwrap();
        // OLMo 2 has no pre-MLP norm: there the hook is the MLP's input as it is.
        for row in z.data.chunks(d).filter(|_| name != "olmo2") {
            let ms = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
            assert!(ms > 0.5 && ms < 1.0 + 1e-4, "{name}: mean square {ms}");
        }
        let zeroed =
            Hooks::new().intervene(Intervention::new(HookPoint::Ln2Normalized(l), Edit::Zero));
        let mlp_in = capture_at(&model, &batch, zeroed, HookPoint::MlpIn(l));
        let first = &mlp_in.data[..d];
        for row in mlp_in.data.chunks(d) {
            assert_eq!(row, first, "{name}: the MLP's input after a zeroed ln2");
        }
        let plain = capture_at(&model, &batch, Hooks::new(), HookPoint::MlpIn(l));
        assert!(
            plain.data.chunks(d).any(|r| r != first),
            "{name}: the edit must reach the MLP"
        );
    }
}
