//! Matryoshka BatchTopK against dictionary_learning's own `MatryoshkaBatchTopKTrainer`
//! (fixtures/matryoshka/, made by scripts/make_fixtures.py): from the same initial parameters
//! and inputs, every step's loss and the final parameters and inference threshold agree within
//! 1e-4, on both engines; the trained dictionary saves in SAELens' layout.
//!
//! Two conventions differ and are mapped, not changed: dictionary_learning tracks the threshold
//! from the step *after* `threshold_start_step` (Prism from that step), and counts a latent dead
//! once the tokens since it fired, this batch included, reach the limit (Prism counts the
//! tokens before the batch) — so Prism's start step is one later and its limit one batch lower.
//! Both run without a learning-rate warm-up and with Adam's ε at 1e-6 (scripts/make_fixtures.py
//! says why).

use crate::common::{self, max_diff};

use prism_core::{Dictionary, HostTensor};
use prism_sae::Sae;
use prism_sae::train::{ArchitectureConfig, Matryoshka, Params, TrainConfig, Trainer};
use serde_json::Value;

/// `[r, c]` row-major → `[c, r]`.
fn transpose(v: &[f32], r: usize, c: usize) -> Vec<f32> {
    (0..c * r).map(|e| v[(e % r) * c + e / r]).collect()
}

#[test]
fn matryoshka_trains_like_dictionary_learning_on_both_engines() {
    let dir = prism_testkit::fixtures().join("matryoshka");
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("trainer.json")).unwrap()).unwrap();
    let t = prism_core::read_safetensors(&dir.join("trainer.safetensors")).unwrap();
    let c = &run["config"];
    let int = |k: &str| c[k].as_u64().unwrap() as usize;
    let (d, m, k, n, steps) = (int("d"), int("m"), int("k"), int("n"), int("steps"));
    let floats = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let mut arch = Matryoshka::new(k);
    arch.group_fractions = floats(&c["fractions"]);
    arch.group_weights = Some(floats(&c["weights"]).iter().map(|&w| w as f32).collect());
    arch.batch_topk.threshold_start_step = c["threshold_start_step"].as_u64().unwrap() + 1;
    let sizes: Vec<usize> = run["group_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(
        arch.group_sizes(m),
        sizes,
        "dictionary_learning's group sizes"
    );
    let mut config = TrainConfig::new(ArchitectureConfig::Matryoshka(arch), d, m);
    config.lr = c["lr"].as_f64().unwrap() as f32;
    config.warmup_steps = 0;
    config.adam.eps = c["adam_eps"].as_f64().unwrap() as f32;
    config.dead_after_tokens = c["dead_after_tokens"].as_u64().unwrap() - n as u64;
    let want_losses = floats(&run["losses"]);
    let x = &t["x"].data;
    let init = Params {
        d,
        d_out: d,
        m,
        w_enc: transpose(&t["init_W_enc"].data, d, m),
        b_enc: t["init_b_enc"].data.clone(),
        w_dec: t["init_W_dec"].data.clone(),
        b_dec: vec![0.0; d],
        log_threshold: Vec::new(),
        r_mag: Vec::new(),
        b_mag: Vec::new(),
        w_skip: Vec::new(),
    };
    for (label, engine) in common::engines() {
        let mut trainer = Trainer::new_on(config.clone(), &engine).unwrap();
        trainer.set_params(init.clone()).unwrap();
        let mut auxk_acted = false;
        for (s, want) in want_losses.iter().enumerate() {
            let batch = HostTensor::new(vec![n, d], x[s * n * d..][..n * d].to_vec()).unwrap();
            let log = trainer.step(&batch).unwrap();
            auxk_acted |= log.aux > 0.0;
            assert!(
                (log.loss - want).abs() < 1e-4 * (1.0 + want.abs()),
                "{label} step {}: loss {} vs dictionary_learning {want}",
                s + 1,
                log.loss
            );
        }
        assert!(
            auxk_acted,
            "{label}: AuxK should act, as in the fixture run"
        );
        let p = trainer.params().unwrap();
        let checks = [
            ("W_enc", transpose(&p.w_enc, m, d), &t["W_enc"].data),
            ("b_enc", p.b_enc.clone(), &t["b_enc"].data),
            ("W_dec", p.w_dec.clone(), &t["W_dec"].data),
            ("b_dec", p.b_dec.clone(), &t["b_dec"].data),
        ];
        for (name, got, want) in checks {
            let diff = max_diff(&got, want);
            assert!(
                diff < 1e-4,
                "{label} {name} after {steps} steps: max |Δ| {diff}"
            );
        }
        let threshold = trainer.batch_threshold().unwrap();
        let want = t["threshold"].data[0];
        assert!(
            (threshold - want).abs() < 1e-4,
            "{label} threshold {threshold} vs {want}"
        );

        // Saved in SAELens' layout: JumpReLU with the threshold on every feature, the prefix
        // widths recorded, the codes those of the threshold rule.
        let device = prism_core::device("cpu").unwrap();
        let sae = trainer.to_sae(&device).unwrap();
        let out = tempfile::tempdir().unwrap();
        sae.save(out.path()).unwrap();
        let cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("cfg.json")).unwrap())
                .unwrap();
        assert_eq!(cfg["architecture"], "jumprelu");
        assert_eq!(cfg["trained_architecture"], "matryoshka_batchtopk");
        let widths: Vec<usize> = sizes
            .iter()
            .scan(0, |e, s| {
                *e += s;
                Some(*e)
            })
            .collect();
        assert_eq!(cfg["matryoshka_widths"], serde_json::json!(widths));
        let back = Sae::load(out.path(), &device).unwrap();
        let batch = HostTensor::new(vec![n, d], x[..n * d].to_vec()).unwrap();
        let codes = HostTensor::from_burn(back.encode(batch.to_burn(&device).unwrap())).unwrap();
        let pre: Vec<f32> = (0..n * m)
            .map(|e| {
                let (r, j) = (e / m, e % m);
                (0..d)
                    .map(|i| (x[r * d + i] - p.b_dec[i]) * p.w_enc[j * d + i])
                    .sum::<f32>()
                    + p.b_enc[j]
            })
            .collect();
        for (e, (&got, &pre)) in codes.data.iter().zip(&pre).enumerate() {
            let want = if pre > threshold { pre } else { 0.0 };
            assert!(
                (got - want).abs() < 1e-4,
                "{label} code {e}: {got} vs {want}"
            );
        }
    }
}

/// The trained dictionary as dictionary_learning's training loop saves it (`ae.pt` beside the
/// trainer's `config.json`) opens as a JumpReLU dictionary with the learned global threshold,
/// its hook and prefix widths read, and encodes and decodes as `MatryoshkaBatchTopKSAE` does.
#[test]
fn a_saved_matryoshka_ae_pt_opens_with_identical_outputs() {
    let dir = prism_testkit::fixtures().join("matryoshka");
    let t = prism_core::read_safetensors(&dir.join("trainer.safetensors")).unwrap();
    let device = prism_core::device("cpu").unwrap();
    let sae = Sae::open(&dir, &device).unwrap();
    assert_eq!(sae.architecture().name(), "jumprelu");
    assert_eq!(sae.hook_name(), Some("blocks.0.hook_resid_post"));
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("trainer.json")).unwrap()).unwrap();
    let mut end = 0;
    let widths: Vec<u64> = run["group_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            end += s.as_u64().unwrap();
            end
        })
        .collect();
    assert_eq!(
        sae.extra_cfg()["matryoshka_widths"],
        serde_json::json!(widths)
    );
    let [steps, n, d] = t["x"].shape[..] else {
        panic!("x is [steps, n, d]")
    };
    let x = HostTensor::new(vec![n, d], t["x"].data[(steps - 1) * n * d..].to_vec()).unwrap();
    let codes = sae.encode(x.to_burn(&device).unwrap());
    let recon = HostTensor::from_burn(sae.decode(codes.clone())).unwrap();
    let codes = HostTensor::from_burn(codes).unwrap();
    assert!(
        max_diff(&codes.data, &t["codes"].data) < 1e-5,
        "codes differ"
    );
    assert!(
        max_diff(&recon.data, &t["recon"].data) < 1e-5,
        "reconstructions differ"
    );
    assert!(
        codes.data.iter().any(|&v| v > 0.0),
        "the threshold lets codes through"
    );
}
