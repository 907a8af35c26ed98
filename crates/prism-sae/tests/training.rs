//! Training behaviour: resampling, checkpoint resume, bad input, export and round trips, and
//! the burn engine (on `flex` and `wgpu`) against the host engine.

use crate::common;

use std::path::PathBuf;

use prism_core::{Dictionary, HostTensor, PrismError, device};
use prism_sae::train::{
    ArchitectureConfig, EngineChoice, JumpRelu, Matryoshka, Params, ResampleConfig, StepLog,
    TrainConfig, Trainer,
};
use prism_sae::{Architecture, Sae};

/// Deterministic pseudo-random batches `[n, d]` with a common offset (so `b_dec` matters).
fn batch(seed: u64, n: usize, d: usize) -> HostTensor {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data = (0..n * d)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 + 0.3 * ((i % d) as f32 / d as f32)
        })
        .collect();
    HostTensor::new(vec![n, d], data).unwrap()
}

fn all_architectures() -> Vec<ArchitectureConfig> {
    let mut btk = ArchitectureConfig::batch_topk(4);
    if let ArchitectureConfig::BatchTopK(b) = &mut btk {
        b.threshold_start_step = 2;
    }
    vec![
        ArchitectureConfig::relu(0.05),
        ArchitectureConfig::topk(4),
        btk,
        ArchitectureConfig::JumpRelu(JumpRelu {
            l0_coeff: 0.05,
            bandwidth: 0.05,
            init_threshold: 0.05,
        }),
        ArchitectureConfig::gated(0.05),
        {
            let mut m = Matryoshka::new(4);
            m.batch_topk.threshold_start_step = 2;
            m.group_fractions = vec![0.25, 0.25, 0.5];
            ArchitectureConfig::Matryoshka(m)
        },
    ]
}

fn small(arch: ArchitectureConfig) -> TrainConfig {
    let mut c = TrainConfig::new(arch, 16, 40);
    c.warmup_steps = 3;
    c.sparsity_warmup_steps = 3;
    c.seed = 3;
    c.lr = 3e-3;
    c
}

#[test]
fn resampling_revives_dead_features() {
    let mut c = small(ArchitectureConfig::relu(0.01));
    c.resample = Some(ResampleConfig {
        every: 30,
        window: 5,
    });
    let mut t = Trainer::new(c).unwrap();
    for s in 0..20 {
        t.step(&batch(s, 64, 16)).unwrap();
    }
    // Kill 12 features: with a hugely negative bias they can no longer fire.
    let killed: Vec<usize> = (0..12).collect();
    let mut p = t.params().unwrap();
    for &j in &killed {
        p.b_enc[j] = -1e3;
    }
    t.set_params(p).unwrap();
    let dev = device("cpu").unwrap();
    let fires = |t: &Trainer| -> usize {
        let sae = t.to_sae(&dev).unwrap();
        let codes =
            HostTensor::from_burn(sae.encode(batch(999, 256, 16).to_burn::<2>(&dev).unwrap()))
                .unwrap();
        killed
            .iter()
            .filter(|&&j| codes.data.chunks(40).any(|r| r[j] != 0.0))
            .count()
    };
    assert_eq!(fires(&t), 0);
    let mut dead_before = 0;
    let mut resampled = 0;
    for s in 20..30 {
        let log = t.step(&batch(s, 64, 16)).unwrap();
        if s == 28 {
            dead_before = log.dead;
        }
        resampled += log.resampled;
    }
    assert!(
        dead_before >= killed.len(),
        "dead features counted: {dead_before}"
    );
    assert!(resampled >= killed.len(), "resampled {resampled}");
    let log = t.step(&batch(31, 64, 16)).unwrap();
    assert!(
        log.dead < dead_before,
        "dead {} after resampling, {dead_before} before",
        log.dead
    );
    let revived = fires(&t);
    assert!(
        revived >= killed.len() * 3 / 4,
        "only {revived} of {} revived",
        killed.len()
    );
}

fn run(config: TrainConfig, from: u64, to: u64, trainer: Option<Trainer>) -> Trainer {
    let mut t = trainer.unwrap_or_else(|| Trainer::new(config).unwrap());
    for s in from..to {
        t.step(&batch(s, 48, 16)).unwrap();
    }
    t
}

#[test]
fn checkpoint_resume_equals_uninterrupted_training_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    for arch in all_architectures() {
        let mut c = small(arch.clone());
        c.normalize_activations = true;
        c.dead_after_tokens = 96; // AuxK acts within the run
        c.resample = Some(ResampleConfig {
            every: 4,
            window: 2,
        });
        let straight = run(c.clone(), 0, 12, None);
        let first = run(c.clone(), 0, 5, None);
        let path = dir.path().join(format!("{}.safetensors", arch.name()));
        first.save_checkpoint(&path).unwrap();
        drop(first);
        let resumed = run(c, 5, 12, Some(Trainer::load_checkpoint(&path).unwrap()));
        assert_eq!(resumed.step, 12);
        assert_eq!(
            straight.params().unwrap(),
            resumed.params().unwrap(),
            "{}: parameters differ",
            arch.name()
        );
        assert_eq!(straight.batch_threshold(), resumed.batch_threshold());
        // And the next step logs identically.
        let (mut a, mut b) = (straight, resumed);
        assert_eq!(
            a.step(&batch(50, 48, 16)).unwrap(),
            b.step(&batch(50, 48, 16)).unwrap()
        );
    }
}

/// A transcoder's run (12-wide targets, resampling toward targets, two normalising scales, a
/// skip term where the architecture trains one) resumes from its checkpoint bit for bit, on the
/// host and on burn: catches a skip term, an output scale or a target left out of the
/// checkpoint or the resampling.
#[test]
fn transcoder_checkpoints_resume_bit_for_bit_on_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let target = |s: u64| {
        let t = batch(s + 1000, 48, 12);
        HostTensor::new(t.shape.clone(), t.data.iter().map(|v| 4.0 * v).collect()).unwrap()
    };
    let steps = |t: &mut Trainer, from: u64, to: u64| {
        for s in from..to {
            t.step_with_target(&batch(s, 48, 16), &target(s)).unwrap();
        }
    };
    for (label, engine) in common::engines() {
        for arch in all_architectures() {
            let skip = arch.name() != "gated" && !arch.name().starts_with("matryoshka");
            let mut c = small(arch.clone()).with_output(12, skip);
            c.normalize_activations = true;
            c.dead_after_tokens = 96;
            c.resample = Some(ResampleConfig {
                every: 4,
                window: 2,
            });
            let mut straight = Trainer::new_on(c.clone(), &engine).unwrap();
            steps(&mut straight, 0, 12);
            let mut first = Trainer::new_on(c.clone(), &engine).unwrap();
            steps(&mut first, 0, 5);
            let file = format!("{}-{}.safetensors", label.replace('/', "-"), arch.name());
            let path = dir.path().join(file);
            first.save_checkpoint(&path).unwrap();
            drop(first);
            let mut resumed = Trainer::load_checkpoint(&path)
                .unwrap()
                .on(&engine)
                .unwrap();
            steps(&mut resumed, 5, 12);
            let (a, b) = (straight.params().unwrap(), resumed.params().unwrap());
            assert_eq!(a, b, "{label} {}: parameters differ", arch.name());
            assert_eq!(a.w_skip.is_empty(), !skip);
            assert_eq!(straight.output_scale(), resumed.output_scale());
            assert_ne!(straight.output_scale(), straight.input_scale());
            // An autoencoder's step is refused, and the export is a transcoder's.
            assert!(resumed.step(&batch(0, 48, 16)).is_err());
            assert!(resumed.to_sae(&prism_core::device("cpu").unwrap()).is_err());
            let t = resumed
                .to_transcoder(&prism_core::device("cpu").unwrap())
                .unwrap();
            assert_eq!(t.skip().is_some(), skip);
        }
    }
}

#[test]
fn non_finite_inputs_and_divergence_stop_training_and_keep_the_state() {
    let mut t = Trainer::new(small(ArchitectureConfig::topk(4))).unwrap();
    for s in 0..5 {
        t.step(&batch(s, 32, 16)).unwrap();
    }
    let before = t.params().unwrap();
    let mut bad = batch(5, 32, 16);
    bad.data[37] = f32::NAN;
    match t.step(&bad) {
        Err(PrismError::NonFinite(m)) => assert!(m.contains("token 2"), "{m}"),
        other => panic!("expected a NonFinite error, got {other:?}"),
    }
    bad.data[37] = f32::INFINITY;
    assert!(matches!(t.step(&bad), Err(PrismError::NonFinite(_))));
    // A batch a million times larger makes the loss explode: divergence.
    let mut huge = batch(6, 32, 16);
    huge.data.iter_mut().for_each(|v| *v *= 1e6);
    match t.step(&huge) {
        Err(PrismError::Diverged { step: 6, best, .. }) => assert!(best.is_some()),
        other => panic!("expected divergence at step 6, got {other:?}"),
    }
    assert_eq!(
        t.params().unwrap(),
        before,
        "a failed step must not change the parameters"
    );
    assert_eq!(t.step, 5);
    t.step(&batch(7, 32, 16)).unwrap();
}

#[test]
fn wrong_width_and_bad_configurations_are_errors() {
    let mut t = Trainer::new(small(ArchitectureConfig::relu(0.1))).unwrap();
    assert!(matches!(
        t.step(&batch(0, 8, 12)),
        Err(PrismError::Shape(_))
    ));
    let mut c = small(ArchitectureConfig::topk(41));
    assert!(Trainer::new(c.clone()).is_err());
    c.architecture = ArchitectureConfig::topk(4);
    c.lr = f32::NAN;
    assert!(Trainer::new(c).is_err());
}

#[test]
fn exported_dictionaries_encode_like_the_trainer_and_round_trip_through_saelens_files() {
    let dev = device("cpu").unwrap();
    let dir = tempfile::tempdir().unwrap();
    for arch in all_architectures() {
        let mut c = small(arch.clone());
        c.normalize_activations = true;
        let t = run(c, 0, 8, None);
        let sae = t.to_sae(&dev).unwrap();
        let x = batch(77, 32, 16);
        let codes = HostTensor::from_burn(sae.encode(x.to_burn::<2>(&dev).unwrap())).unwrap();
        // The trainer's own codes on the normalised input, divided by the folded scale c.
        let scale = t.input_scale();
        assert!(scale != 1.0);
        let scaled: Vec<f32> = x.data.iter().map(|v| v * scale).collect();
        let objective = t.objective();
        let params = t.params().unwrap();
        let mut g = params.zeros_like();
        let pass = prism_sae::train::loss_and_grads(
            &objective,
            &params,
            &scaled,
            32,
            prism_sae::train::StepInputs {
                dead: None,
                apply_b_dec_to_input: t.config.apply_b_dec_to_input,
                mode: prism_sae::kernel::KernelMode::Dense,
                target: None,
            },
            &mut g,
        )
        .unwrap();
        if !matches!(
            arch,
            ArchitectureConfig::BatchTopK(_) | ArchitectureConfig::Matryoshka(_)
        ) {
            let want = pass.codes.to_dense();
            for (a, b) in codes.data.iter().zip(&want) {
                assert!(
                    (a - b / scale).abs() < 1e-4 * (1.0 + b.abs()),
                    "{}: {a} vs {}",
                    arch.name(),
                    b / scale
                );
            }
        } else {
            // Inference uses the learned threshold θ instead of the batch selection: each code
            // is the normalised pre-activation where it exceeds θ (and 0), divided by c —
            // computed here by hand from the trainer's parameters.
            assert_eq!(sae.architecture().name(), "jumprelu");
            let theta = t.batch_threshold().expect("tracked from step 2");
            let p = &params;
            let mut open = 0;
            for i in 0..32 {
                for j in 0..p.m {
                    let pre = (0..16)
                        .map(|k| (scaled[i * 16 + k] - p.b_dec[k]) * p.w_enc[j * 16 + k])
                        .sum::<f32>()
                        + p.b_enc[j];
                    let want = if pre > theta && pre > 0.0 {
                        pre / scale
                    } else {
                        0.0
                    };
                    open += usize::from(want != 0.0);
                    let got = codes.data[i * p.m + j];
                    assert!(
                        (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "batchtopk code ({i}, {j}): {got} vs {want} (θ {theta})"
                    );
                }
            }
            assert!(
                open > 0 && open < 32 * p.m,
                "θ should select some codes, not all: {open}"
            );
        }
        // Save → load gives identical encode/decode.
        let out = dir.path().join(arch.name());
        sae.save(&out).unwrap();
        let back = Sae::load(&out, &dev).unwrap();
        let xb = x.to_burn::<2>(&dev).unwrap();
        let (f1, f2) = (sae.encode(xb.clone()), back.encode(xb.clone()));
        assert_eq!(
            HostTensor::from_burn(f1.clone()).unwrap(),
            HostTensor::from_burn(f2.clone()).unwrap()
        );
        assert_eq!(
            HostTensor::from_burn(sae.decode(f1)).unwrap(),
            HostTensor::from_burn(back.decode(f2)).unwrap()
        );
        // SAELens tensor names and shapes in the file.
        let names = tensor_shapes(&out.join("sae_weights.safetensors"));
        let mut want = vec![
            ("W_dec".to_string(), vec![40, 16]),
            ("W_enc".to_string(), vec![16, 40]),
            ("b_dec".to_string(), vec![16]),
        ];
        match sae.architecture() {
            Architecture::Gated { .. } => want.extend([
                ("b_gate".to_string(), vec![40]),
                ("b_mag".to_string(), vec![40]),
                ("r_mag".to_string(), vec![40]),
            ]),
            Architecture::JumpRelu { .. } => want.extend([
                ("b_enc".to_string(), vec![40]),
                ("threshold".to_string(), vec![40]),
            ]),
            _ => want.push(("b_enc".to_string(), vec![40])),
        }
        want.sort();
        assert_eq!(names, want, "{}", arch.name());
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("cfg.json")).unwrap()).unwrap();
        assert_eq!(cfg["training_tokens"], 8 * 48);
        assert_eq!(cfg["trained_architecture"], arch.name());
    }
}

/// Tensor names and shapes from a safetensors header, read by hand.
fn tensor_shapes(path: &PathBuf) -> Vec<(String, Vec<usize>)> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut out: Vec<(String, Vec<usize>)> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            assert_eq!(v["dtype"], "F32");
            (
                k.clone(),
                v["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_u64().unwrap() as usize)
                    .collect(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn dictionary_learning_ae_pt_files_import_with_identical_outputs() {
    let dev = device("cpu").unwrap();
    let fix = prism_testkit::fixtures().join("ae");
    let refs = prism_core::read_safetensors(&fix.join("reference.safetensors")).unwrap();
    let x = refs["x"].to_burn::<2>(&dev).unwrap();
    // Each class as dictionary_learning saves it; BatchTopKSAE (same tensors as
    // AutoEncoderTopK) through its trainer directory, whose config.json names the class.
    for (file, arch, k) in [
        ("standard.pt", "standard", None),
        ("topk.pt", "topk", Some(5)),
        ("jumprelu.pt", "jumprelu", None),
        ("gated.pt", "gated", None),
        ("batchtopk_trainer", "jumprelu", None),
    ] {
        let sae = Sae::open(&fix.join(file), &dev).unwrap();
        assert_eq!(
            (sae.architecture().name(), sae.architecture().k()),
            (arch, k),
            "{file}"
        );
        let file = file.trim_end_matches(".pt").trim_end_matches("_trainer");
        let codes = sae.encode(x.clone());
        let recon = sae.decode(codes.clone());
        for (got, key) in [(codes, "codes"), (recon, "recon")] {
            let got = HostTensor::from_burn(got).unwrap();
            let want = &refs[&format!("{key}_{file}")];
            assert_eq!(got.shape, want.shape);
            for (a, b) in got.data.iter().zip(&want.data) {
                assert!((a - b).abs() < 1e-5, "{file} {key}: {a} vs {b}");
            }
        }
    }
    // The trainer directory's config.json gives the hook point.
    let sae = Sae::open(&fix.join("batchtopk_trainer"), &dev).unwrap();
    assert_eq!(sae.hook_name(), Some("blocks.3.hook_mlp_out"));
    // A file that is not a PyTorch archive is a clear error.
    let tmp = tempfile::tempdir().unwrap();
    let bogus = tmp.path().join("ae.pt");
    std::fs::write(&bogus, b"not a zip").unwrap();
    let err = Sae::from_dictionary_learning(&bogus, &dev)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a PyTorch zip archive"), "{err}");
    // A truncated archive, at several cuts, is an error naming the file, never a panic.
    let whole = std::fs::read(fix.join("standard.pt")).unwrap();
    for cut in [10, whole.len() / 3, whole.len() / 2, whole.len() - 30] {
        std::fs::write(&bogus, &whole[..cut]).unwrap();
        let err = Sae::from_dictionary_learning(&bogus, &dev)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ae.pt"), "cut {cut}: {err}");
    }
}

#[test]
fn fit_keeps_the_last_good_checkpoint_and_checks_widths_first() {
    use prism_sae::train::{CHECKPOINT_FILE, FitOptions, LOG_FILE, Run, RunSpec, fit};
    let dev = device("cpu").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = small(ArchitectureConfig::topk(4));
    // Width 12 against d_in 16: refused before any batch is drawn or file written.
    let spec = RunSpec {
        name: "a".into(),
        dir: tmp.path().join("a"),
        input: 0,
        output: None,
        config: config.clone(),
    };
    let mut runs = Run::open_group(vec![spec], false, &Default::default()).unwrap();
    let mut drawn = 0;
    let batches = (0..3).map(|s| {
        drawn += 1;
        Ok(vec![batch(s, 32, 12)])
    });
    let options = FitOptions {
        steps: 10,
        checkpoint_every: 2,
        convergence: None,
    };
    let err = fit(&mut runs, &[12], batches, &options, &dev, |_, _| {}).unwrap_err();
    assert!(matches!(err, PrismError::Shape(_)), "{err}");
    assert_eq!(drawn, 0);
    assert!(!tmp.path().join("a").join(LOG_FILE).exists());
    // A NaN in the 5th batch: the error names the run; the checkpoint after step 4 remains.
    let batches = (0..10u64).map(|s| {
        let mut b = batch(s, 32, 16);
        if s == 4 {
            b.data[3] = f32::NAN;
        }
        Ok(vec![b])
    });
    let err = fit(&mut runs, &[16], batches, &options, &dev, |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("a: "), "{err}");
    let kept = Trainer::load_checkpoint(&tmp.path().join("a").join(CHECKPOINT_FILE)).unwrap();
    assert_eq!(kept.step, 4);
    let mut straight = Trainer::new(config).unwrap();
    for s in 0..4 {
        straight.step(&batch(s, 32, 16)).unwrap();
    }
    assert_eq!(kept.params().unwrap(), straight.params().unwrap());
}

/// A configuration that exercises everything an engine does within 12 steps: input
/// normalisation, AuxK (dead after 96 tokens), resampling every 4 steps, BatchTopK's threshold.
fn busy(arch: ArchitectureConfig) -> TrainConfig {
    let mut c = small(arch);
    c.normalize_activations = true;
    c.dead_after_tokens = 96;
    c.resample = Some(ResampleConfig {
        every: 4,
        window: 2,
    });
    c
}

/// Trains `steps` steps on `engine` from `trainer` (or fresh), returning the trainer and logs.
fn train_on(
    c: &TrainConfig,
    engine: &EngineChoice,
    steps: std::ops::Range<u64>,
    trainer: Option<Trainer>,
) -> (Trainer, Vec<StepLog>) {
    let mut t = match trainer {
        Some(t) => t.on(engine).unwrap(),
        None => {
            let mut t = Trainer::new_on(c.clone(), engine).unwrap();
            // Six features that cannot fire: AuxK and resampling have work to do.
            let mut p = t.params().unwrap();
            p.b_enc[..6].fill(-50.0);
            t.set_params(p).unwrap();
            t
        }
    };
    let logs = steps.map(|s| t.step(&batch(s, 48, 16)).unwrap()).collect();
    (t, logs)
}

/// Largest difference over each tensor, relative to that tensor's largest magnitude.
fn assert_close(label: &str, got: &Params, want: &Params, tol: f32) {
    for ((a, b), name) in got
        .tensors()
        .iter()
        .zip(want.tensors())
        .zip(prism_sae::train::PARAM_NAMES)
    {
        assert_eq!(a.len(), b.len(), "{label}: {name} sizes");
        let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(b.iter())
            .fold(0f32, |m, (u, v)| m.max((u - v).abs()));
        assert!(
            diff <= tol * scale,
            "{label}: {name} differs by {diff} (largest value {scale})"
        );
    }
}

#[test]
fn burn_engine_trains_like_the_host_engine() {
    let mut engines = vec![("burn/flex", EngineChoice::burn_on("cpu").unwrap())];
    if let Some(d) = common::wgpu_device() {
        engines.push(("burn/wgpu", EngineChoice::Burn(d)));
    }
    for arch in all_architectures() {
        let c = busy(arch.clone());
        let (host, host_logs) = train_on(&c, &EngineChoice::Host, 0..12, None);
        for (label, engine) in &engines {
            let label = format!("{label} {}", arch.name());
            let (burn, logs) = train_on(&c, engine, 0..12, None);
            assert_close(
                &label,
                &burn.params().unwrap(),
                &host.params().unwrap(),
                1e-4,
            );
            // The same features fired, died and were resampled at every step.
            for (a, b) in logs.iter().zip(&host_logs) {
                assert_eq!(
                    (a.dead, a.resampled, a.lr),
                    (b.dead, b.resampled, b.lr),
                    "{label}"
                );
                assert!(
                    (a.l0 - b.l0).abs() < 1e-9,
                    "{label}: L0 {} vs {}",
                    a.l0,
                    b.l0
                );
                assert!(
                    (a.loss - b.loss).abs() < 1e-4 * b.loss.abs(),
                    "{label}: loss {} vs {}",
                    a.loss,
                    b.loss
                );
            }
            assert!(
                host_logs.iter().any(|l| l.resampled > 0),
                "{label}: resampling should act"
            );
            if matches!(
                arch,
                ArchitectureConfig::TopK(_)
                    | ArchitectureConfig::BatchTopK(_)
                    | ArchitectureConfig::Matryoshka(_)
            ) {
                assert!(
                    host_logs.iter().any(|l| l.aux > 0.0),
                    "{label}: AuxK should act"
                );
            }
            match (burn.batch_threshold(), host.batch_threshold()) {
                (Some(a), Some(b)) => {
                    assert!((a - b).abs() < 1e-4 * b.abs(), "{label}: {a} vs {b}")
                }
                (a, b) => assert_eq!(a.is_some(), b.is_some(), "{label}: threshold {a:?} {b:?}"),
            }
            assert_eq!(burn.input_scale(), host.input_scale(), "{label}");
        }
    }
}

#[test]
fn checkpoints_move_between_engines() {
    let dir = tempfile::tempdir().unwrap();
    let burn = EngineChoice::burn_on("cpu").unwrap();
    for arch in all_architectures() {
        let c = busy(arch.clone());
        let (straight, _) = train_on(&c, &EngineChoice::Host, 0..12, None);
        for (from, to) in [(&burn, &EngineChoice::Host), (&EngineChoice::Host, &burn)] {
            let label = format!("{} {from} → {to}", arch.name());
            let (first, _) = train_on(&c, from, 0..5, None);
            let path = dir
                .path()
                .join(format!("{}-{from}.safetensors", arch.name()));
            first.save_checkpoint(&path).unwrap();
            let loaded = Trainer::load_checkpoint(&path).unwrap();
            // Nothing is lost on the way: the loaded state is the saved one, bit for bit.
            assert_eq!(loaded.params().unwrap(), first.params().unwrap(), "{label}");
            assert_eq!(loaded.step, 5);
            let (resumed, _) = train_on(&c, to, 5..12, Some(loaded));
            assert_eq!(resumed.engine().to_string(), to.to_string());
            assert_close(
                &label,
                &resumed.params().unwrap(),
                &straight.params().unwrap(),
                1e-4,
            );
        }
    }
}

#[test]
fn bad_input_is_the_same_error_on_the_burn_engine() {
    let burn = EngineChoice::burn_on("cpu").unwrap();
    let mut t = Trainer::new_on(small(ArchitectureConfig::topk(4)), &burn).unwrap();
    t.step(&batch(0, 32, 16)).unwrap();
    let before = t.params().unwrap();
    let mut bad = batch(1, 32, 16);
    bad.data[37] = f32::NAN;
    match t.step(&bad) {
        Err(PrismError::NonFinite(m)) => assert!(m.contains("token 2"), "{m}"),
        other => panic!("expected a NonFinite error, got {other:?}"),
    }
    assert!(matches!(
        t.step(&batch(1, 32, 12)),
        Err(PrismError::Shape(_))
    ));
    let mut huge = batch(2, 32, 16);
    huge.data.iter_mut().for_each(|v| *v *= 1e6);
    assert!(matches!(t.step(&huge), Err(PrismError::Diverged { .. })));
    assert_eq!(
        t.params().unwrap(),
        before,
        "a failed step must not change the parameters"
    );
    // A build without the `cuda` feature (or a machine without the driver) says so.
    if let Err(e) = EngineChoice::for_device("cuda") {
        assert!(matches!(e, PrismError::Device { .. }), "{e}");
    }
}

/// The sparse ReLU start (`fit_initial_scale` with `initial_l0`), recomputed here in f64 from the
/// parameters after the first step (its update made negligible): each feature fires on exactly
/// `round(n · l0 / m)` rows of the first batch, and the encoder's scale is the least-squares one
/// (the residual is orthogonal to the reconstruction without its bias). Catches an off-by-one in
/// the quantile, a bias of the wrong sign and a scale that is not the minimiser.
#[test]
fn relu_starts_sparse_at_the_least_squares_scale() {
    let (n, d, m, l0) = (300, 16, 48, 4.0f32);
    let mut c = TrainConfig::new(ArchitectureConfig::relu(0.05), d, m);
    c.lr = 1e-9;
    c.fit_initial_scale = true;
    c.initial_l0 = Some(l0);
    let x = batch(11, n, d);
    let mut trainer = Trainer::new(c.clone()).unwrap();
    let before = trainer.params().unwrap();
    trainer.step(&x).unwrap();
    let p = trainer.params().unwrap();
    assert_ne!(p.b_enc, before.b_enc, "the start was not fitted");
    let pre: Vec<f64> = (0..n * m)
        .map(|i| {
            let (r, j) = (i / m, i % m);
            let row = &x.data[r * d..][..d];
            (0..d)
                .map(|t| (row[t] - p.b_dec[t]) as f64 * p.w_enc[j * d + t] as f64)
                .sum::<f64>()
                + p.b_enc[j] as f64
        })
        .collect();
    let k = (n as f64 * l0 as f64 / m as f64).round() as usize;
    for j in 0..m {
        let fired = (0..n).filter(|&r| pre[r * m + j] > 0.0).count();
        assert_eq!(fired, k, "feature {j}");
    }
    let (mut along, mut norm) = (0f64, 0f64);
    for r in 0..n {
        for t in 0..d {
            let x_hat: f64 = (0..m)
                .map(|j| pre[r * m + j].max(0.0) * p.w_dec[j * d + t] as f64)
                .sum();
            along += (x.data[r * d + t] as f64 - p.b_dec[t] as f64 - x_hat) * x_hat;
            norm += x_hat * x_hat;
        }
    }
    assert!(
        along.abs() < 1e-4 * norm,
        "residual·x̂ {along} vs ‖x̂‖² {norm}"
    );
}

/// A run's two checkpoint files as they are now (absent ones as `None`).
fn checkpoint_files(dir: &std::path::Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    use prism_sae::train::{CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE};
    [CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE]
        .iter()
        .map(|f| {
            let p = dir.join(f);
            let bytes = std::fs::read(&p).ok();
            (p, bytes)
        })
        .collect()
}

/// Puts a run's checkpoint files back as [`checkpoint_files`] saw them.
fn restore_checkpoint_files(files: Vec<(PathBuf, Option<Vec<u8>>)>) {
    for (p, bytes) in files {
        match bytes {
            Some(b) => std::fs::write(&p, b).unwrap(),
            None => {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

#[test]
fn a_group_killed_while_writing_its_checkpoints_resumes_exactly_however_often() {
    use prism_sae::train::{FitOptions, Run, RunSpec, fit};
    let dev = device("cpu").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let configs: Vec<TrainConfig> = [3, 4]
        .iter()
        .map(|&seed| {
            let mut c = small(ArchitectureConfig::relu(0.05));
            c.seed = seed;
            c
        })
        .collect();
    let specs: Vec<RunSpec> = ["a", "b"]
        .iter()
        .zip(&configs)
        .map(|(name, c)| RunSpec {
            name: name.to_string(),
            dir: tmp.path().join(name),
            input: 0,
            output: None,
            config: c.clone(),
        })
        .collect();
    let (a, b) = (specs[0].dir.clone(), specs[1].dir.clone());
    let options = FitOptions {
        steps: 100,
        checkpoint_every: 2,
        convergence: None,
    };
    let batches = |from: u64, to: u64| (from..to).map(|s| Ok(vec![batch(s, 32, 16)]));
    // Killed while writing the checkpoints at the end of step 5 (the stream ended there), after
    // a's and before b's: a holds steps 5 and 4, b steps 4 and 2.
    let mut runs = Run::open_group(specs.clone(), true, &Default::default()).unwrap();
    let mut b_before = Vec::new();
    fit(&mut runs, &[16], batches(0, 5), &options, &dev, |r, _| {
        if r[0].trainer.step == 5 {
            b_before = checkpoint_files(&b);
        }
    })
    .unwrap();
    restore_checkpoint_files(b_before);
    drop(runs); // the killed process's locks go with it
    let mut runs = Run::open_group(specs.clone(), true, &Default::default()).unwrap();
    assert_eq!(
        runs.iter().map(|r| r.trainer.step).collect::<Vec<_>>(),
        [4, 4]
    );
    // Killed again while writing the checkpoints at step 6, after a's and before b's. a's
    // step-5 file must not be what it keeps beside 6: b's newest is still 4.
    let (mut a_after, mut b_before) = (Vec::new(), Vec::new());
    fit(
        &mut runs,
        &[16],
        batches(4, 7),
        &options,
        &dev,
        |r, _| match r[0].trainer.step {
            6 => b_before = checkpoint_files(&b),
            7 => a_after = checkpoint_files(&a),
            _ => {}
        },
    )
    .unwrap();
    restore_checkpoint_files(a_after);
    restore_checkpoint_files(b_before);
    drop(runs);
    let mut runs = Run::open_group(specs, true, &Default::default()).unwrap();
    assert_eq!(
        runs.iter().map(|r| r.trainer.step).collect::<Vec<_>>(),
        [4, 4]
    );
    fit(&mut runs, &[16], batches(4, 9), &options, &dev, |_, _| {}).unwrap();
    for (run, config) in runs.iter().zip(configs) {
        let mut straight = Trainer::new(config).unwrap();
        for s in 0..9 {
            straight.step(&batch(s, 32, 16)).unwrap();
        }
        assert_eq!(run.trainer.step, 9);
        assert_eq!(
            run.trainer.params().unwrap(),
            straight.params().unwrap(),
            "{}",
            run.name
        );
    }
}
