//! Metrics against hand-computed values, and loss recovered on a real (tiny) model.

use burn::tensor::{Device, Tensor};
use prism_core::{Dictionary, Edit, HookPoint, Hooks, HostTensor, Intervention};
use prism_models::{Model, TokenBatch};
use prism_stats::*;

fn t(shape: [usize; 2], v: &[f32]) -> HostTensor {
    HostTensor::new(shape.to_vec(), v.to_vec()).unwrap()
}

#[test]
fn reconstruction_metrics_match_hand_computation() {
    // x = [[1,2],[3,4]], x̂ = [[1,1],[2,4]], codes over 4 features (feature 3 never fires).
    let x = t([2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let xh = t([2, 2], &[1.0, 1.0, 2.0, 4.0]);
    let f = t([2, 4], &[0.0, 1.0, 0.0, 0.0, 2.0, 0.0, -0.5, 0.0]);
    let mut s = ReconstructionStats::default();
    // Added as two batches of one token: accumulation must not depend on batching.
    s.add(
        &t([1, 2], &x.data[..2]),
        &t([1, 2], &xh.data[..2]),
        &t([1, 4], &f.data[..4]),
    )
    .unwrap();
    s.add(
        &t([1, 2], &x.data[2..]),
        &t([1, 2], &xh.data[2..]),
        &t([1, 4], &f.data[4..]),
    )
    .unwrap();
    let m = s.finish().unwrap();
    let close = |a: f64, b: f64, what: &str| assert!((a - b).abs() < 1e-12, "{what}: {a} vs {b}");
    close(
        m.mse,
        1.0,
        "mse: errors [0,1] and [1,0], squared norms 1 and 1",
    );
    close(m.l2_loss, 1.0, "l2_loss");
    close(m.l0, 1.5, "l0: 1 and 2 non-zero codes");
    close(m.l1, 1.75, "l1: 1 and 2.5");
    // Var(x) per dim: [1,3] → 1, [2,4] → 1; residuals [0,1] → 0.25, [1,0] → 0.25: 1 − 0.5/2.
    close(m.frac_variance_explained, 0.75, "fve");
    let cos = (3.0 / (5f64.sqrt() * 2f64.sqrt()) + 22.0 / (5.0 * 20f64.sqrt())) / 2.0;
    close(m.cossim, cos, "cossim");
    close(
        m.l2_ratio,
        (2f64.sqrt() / 5f64.sqrt() + 20f64.sqrt() / 5.0) / 2.0,
        "l2_ratio",
    );
    close(
        m.relative_reconstruction_bias,
        11.0 / 12.5,
        "E‖x̂‖² = 11, E[x·x̂] = 12.5",
    );
    close(m.frac_alive, 0.75, "three of four features fired");
    assert_eq!(m.feature_density, vec![0.5, 0.5, 0.5, 0.0]);
    assert_eq!(m.tokens, 2);
}

#[test]
fn variance_explained_is_not_the_mse_over_total_variance_shortcut() {
    // A reconstruction off by a constant: the residual has zero variance, so FVE = 1 even though
    // the MSE is large (the definition centres the residual; tools that divide MSE by the
    // variance report 1 − 4/1.25 < 0 here).
    let x = t([2, 2], &[1.0, 2.0, 2.0, 4.0]);
    let xh = t([2, 2], &[3.0, 4.0, 4.0, 6.0]);
    let f = t([2, 1], &[1.0, 1.0]);
    let mut s = ReconstructionStats::default();
    s.add(&x, &xh, &f).unwrap();
    let m = s.finish().unwrap();
    assert!((m.frac_variance_explained - 1.0).abs() < 1e-12);
    assert!((m.mse - 8.0).abs() < 1e-12);
    assert!(ReconstructionStats::default().finish().is_err());
    assert!(s.add(&x, &t([2, 3], &[0.0; 6]), &f).is_err());
}

/// Reconstructs `factor · x` (1: a perfect dictionary; `x · 1.0` is `x` to the bit).
struct Scaled(usize, Device, f32);
impl Dictionary for Scaled {
    fn d_in(&self) -> usize {
        self.0
    }
    fn d_sae(&self) -> usize {
        self.0
    }
    fn encode(&self, x: Tensor<2>) -> Tensor<2> {
        x * self.2
    }
    fn decode(&self, f: Tensor<2>) -> Tensor<2> {
        f
    }
    fn decoder_directions(&self) -> Tensor<2> {
        Tensor::eye(self.0, &self.1)
    }
}

struct Zero(usize, Device);
impl Dictionary for Zero {
    fn d_in(&self) -> usize {
        self.0
    }
    fn d_sae(&self) -> usize {
        1
    }
    fn encode(&self, x: Tensor<2>) -> Tensor<2> {
        Tensor::zeros([x.dims()[0], 1], &self.1)
    }
    fn decode(&self, f: Tensor<2>) -> Tensor<2> {
        Tensor::zeros([f.dims()[0], self.0], &self.1)
    }
    fn decoder_directions(&self) -> Tensor<2> {
        Tensor::zeros([1, self.0], &self.1)
    }
}

fn tiny() -> (Model, Vec<TokenBatch>) {
    let dir = prism_testkit::fixtures().join("models/gpt_neox_sequential");
    let model = Model::load(&dir, &prism_core::device("cpu").unwrap()).unwrap();
    let texts = [
        "The quick brown fox jumps over the lazy dog.",
        "Sparse is better than dense.",
        "def add(a, b): return a + b",
    ];
    let seqs: Vec<Vec<u32>> = texts.iter().map(|t| model.encode(t).unwrap()).collect();
    let batches = vec![
        TokenBatch::from_sequences(&seqs[..2], 0).unwrap(), // padded
        TokenBatch::from_sequences(&seqs[2..], 0).unwrap(),
    ];
    (model, batches)
}

#[test]
fn loss_recovered_is_one_for_a_perfect_dictionary_and_zero_for_a_zero_one() {
    let (model, batches) = tiny();
    let d = model.config().d_model;
    let hook = HookPoint::MlpOut(0);
    let device = model.device().clone();
    let perfect = evaluate(
        &model,
        &Scaled(d, device.clone(), 1.0),
        hook,
        batches.iter().cloned().map(Ok),
        |_| {},
    )
    .unwrap();
    assert_eq!(
        perfect.downstream.loss_reconstructed,
        perfect.downstream.loss_original
    );
    assert_eq!(perfect.downstream.frac_recovered, 1.0);
    assert_eq!(perfect.downstream.kl_div_with_sae, 0.0);
    assert_eq!(perfect.downstream.kl_div_score, 1.0);
    assert!(
        perfect.reconstruction.mse == 0.0 && perfect.reconstruction.frac_variance_explained == 1.0
    );
    let tokens: usize = batches.iter().flat_map(|b| b.lengths.iter()).sum();
    assert_eq!(
        perfect.reconstruction.tokens as usize, tokens,
        "padding is not evaluated"
    );

    let zero = evaluate(
        &model,
        &Zero(d, device),
        hook,
        batches.iter().cloned().map(Ok),
        |_| {},
    )
    .unwrap();
    assert_eq!(
        zero.downstream.loss_reconstructed,
        zero.downstream.loss_zero
    );
    assert_eq!(zero.downstream.frac_recovered, 0.0);
    assert_eq!(zero.downstream.kl_div_score, 0.0);
    assert!(zero.downstream.kl_div_with_ablation > 0.0);
    assert_eq!(zero.reconstruction.l0, 0.0);
    assert_eq!(zero.reconstruction.frac_alive, 0.0);

    // The losses are the model's own mean next-token losses, token-weighted over the batches.
    let n: Vec<f64> = batches
        .iter()
        .map(|b| b.lengths.iter().map(|&l| (l - 1) as f64).sum())
        .collect();
    let by_hand = |hooks: &Hooks| -> f64 {
        batches
            .iter()
            .zip(&n)
            .map(|(b, n)| model.loss(b, hooks).unwrap() * n)
            .sum::<f64>()
            / n.iter().sum::<f64>()
    };
    assert!((perfect.downstream.loss_original - by_hand(&Hooks::new())).abs() < 1e-5);
    let zeroed = Hooks::new().intervene(Intervention::new(hook, Edit::Zero));
    assert!((zero.downstream.loss_zero - by_hand(&zeroed)).abs() < 1e-5);
    // Hooks without one vector per token are refused.
    let e = evaluate(
        &model,
        &Scaled(d, model.device().clone(), 1.0),
        HookPoint::AttnZ(0),
        batches.iter().cloned().map(Ok),
        |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("hook_z"), "{e}");
}

/// Every loss and KL of `evaluate` against whole forward passes with the same edits, scored in
/// f64 on the host by hand (log-softmax from its definition), at a hook in the first and in
/// the last block (the spliced and zeroed runs resume at the hook's block).
#[test]
fn losses_and_kl_equal_whole_passes_scored_by_hand() {
    let (model, batches) = tiny();
    let d = model.config().d_model;
    let n = model.config().n_layers;
    // Σ over real positions: next-token NLL of each run, and KL(clean ‖ run).
    let by_hand = |edited: &Hooks| -> [f64; 4] {
        let mut acc = [0.0f64; 4];
        for b in &batches {
            let host = |hooks: &Hooks| {
                HostTensor::from_burn(model.forward(b, hooks).unwrap().logits().unwrap()).unwrap()
            };
            let (clean, run) = (host(&Hooks::new()), host(edited));
            let v = clean.shape[2];
            let log_softmax = |row: &[f32]| -> Vec<f64> {
                let m = row.iter().fold(f64::MIN, |m, &x| m.max(x as f64));
                let z = row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln() + m;
                row.iter().map(|&x| x as f64 - z).collect()
            };
            for i in 0..b.batch {
                for t in 0..b.lengths[i] {
                    let at = (i * b.seq + t) * v;
                    let lp = log_softmax(&clean.data[at..at + v]);
                    let lq = log_softmax(&run.data[at..at + v]);
                    if t + 1 < b.lengths[i] {
                        let next = b.ids[i * b.seq + t + 1] as usize;
                        acc[0] -= lp[next];
                        acc[1] -= lq[next];
                        acc[2] += 1.0;
                    }
                    acc[3] += lp
                        .iter()
                        .zip(&lq)
                        .map(|(p, q)| p.exp() * (p - q))
                        .sum::<f64>();
                }
            }
        }
        acc
    };
    let positions: usize = batches.iter().flat_map(|b| b.lengths.iter()).sum();
    for hook in [
        HookPoint::MlpOut(0),
        HookPoint::ResidPre(n - 1),
        HookPoint::ResidPost(n - 1),
    ] {
        let device = model.device().clone();
        let e = evaluate(
            &model,
            &Scaled(d, device, 0.5),
            hook,
            batches.iter().cloned().map(Ok),
            |_| {},
        )
        .unwrap()
        .downstream;
        let half = by_hand(&Hooks::new().intervene(Intervention::new(hook, Edit::Scale(0.5))));
        let zero = by_hand(&Hooks::new().intervene(Intervention::new(hook, Edit::Zero)));
        let close = |a: f64, b: f64, what: &str| {
            assert!(
                (a - b).abs() < 1e-5 * b.abs().max(1.0),
                "{hook} {what}: {a} vs {b}"
            )
        };
        close(e.loss_original, half[0] / half[2], "loss_original");
        close(
            e.loss_reconstructed,
            half[1] / half[2],
            "loss_reconstructed",
        );
        close(e.loss_zero, zero[1] / zero[2], "loss_zero");
        close(
            e.kl_div_with_sae,
            half[3] / positions as f64,
            "kl_div_with_sae",
        );
        close(
            e.kl_div_with_ablation,
            zero[3] / positions as f64,
            "kl_div_with_ablation",
        );
        assert!(e.kl_div_with_sae > 0.0 && e.kl_div_with_ablation > e.kl_div_with_sae);
    }
    // The same numbers, to the bit, whatever the number of threads.
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let half = Scaled(d, model.device().clone(), 0.5);
            let batches = batches.iter().cloned().map(Ok);
            evaluate(&model, &half, HookPoint::MlpOut(0), batches, |_| {}).unwrap()
        })
    };
    assert_eq!(on(1), on(3));
}

/// A transcoder standing in for block 1's MLP of the tiny Gemma 2 (Gemma Scope's layout, read
/// by sae-lens's loader in scripts/make_fixtures.py): every metric equals the one transformers
/// gives with forward hooks replacing `post_feedforward_layernorm`'s output by sae-lens's
/// transcoder of the standardised pre-MLP input (and zeroing it). Catches: the output spliced at
/// the hook the transcoder reads instead of the one it writes (the KL moves by half), the
/// reconstruction metrics taken against the input rather than the MLP's output, the skip term
/// or the norm's scale misplaced. (Zeroing the MLP's input instead of its output would not be
/// caught here: Gemma's MLP has no biases, so both give zero.)
#[test]
fn a_transcoder_replacing_the_mlp_matches_transformers() {
    let device = prism_core::device("cpu").unwrap();
    let fixtures = prism_testkit::fixtures();
    let model = Model::load(&fixtures.join("models/gemma2"), &device).unwrap();
    let transcoders = fixtures.join("transcoders");
    let t = prism_sae::Transcoder::open(
        &transcoders.join("gemma-scope-2b-pt-transcoders/layer_1/width_16k/average_l0_65"),
        &device,
    )
    .unwrap();
    let (reads, writes) = t.hooks(&model.config().shape(), None, None).unwrap();
    let at = Placement::transcoding(reads, writes).unwrap();
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("models/gemma2/reference.json")).unwrap(),
    )
    .unwrap();
    let batches: Vec<_> = json["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let ids: Vec<u32> = serde_json::from_value(t["tokens"].clone()).unwrap();
            TokenBatch::from_sequences(&[ids], model.pad_id())
        })
        .collect();
    let e = evaluate(&model, &t, at, batches, |_| {}).unwrap();
    let refs = prism_core::read_safetensors(&transcoders.join("reference.safetensors")).unwrap();
    let want = |k: &str| refs[&format!("eval_{k}")].data[0] as f64;
    let (r, d) = (&e.reconstruction, &e.downstream);
    // The spliced-in output is the same to float precision, so the reconstruction metrics agree
    // tightly. The runs' losses agree as closely as the model itself does with transformers
    // (its plain loss is 3e-5 off on these texts), so losses are compared within 2e-4 — a
    // fiftieth of what ablating this MLP moves them — the KLs within 2 % (they are small
    // differences of two runs), and frac_recovered within what those loss tolerances allow.
    let (lo, lz) = (want("loss_original"), want("loss_zero"));
    let close = |name: &str, got: f64, want: f64, tol: f64| {
        assert!(
            (got - want).abs() <= tol,
            "{name}: {got} vs transformers' {want} (tolerance {tol:e})"
        );
    };
    close("mse", r.mse, want("mse"), 1e-6 * want("mse"));
    close(
        "frac_variance_explained",
        r.frac_variance_explained,
        want("frac_variance_explained"),
        1e-6,
    );
    close("l0", r.l0, want("l0"), 1e-6);
    for (name, got) in [
        ("loss_original", d.loss_original),
        ("loss_reconstructed", d.loss_reconstructed),
        ("loss_zero", d.loss_zero),
    ] {
        close(name, got, want(name), 2e-4);
    }
    close(
        "frac_recovered",
        d.frac_recovered,
        want("frac_recovered"),
        3.0 * 2e-4 / (lo - lz).abs(),
    );
    for (name, got) in [
        ("kl_div_with_sae", d.kl_div_with_sae),
        ("kl_div_with_ablation", d.kl_div_with_ablation),
    ] {
        close(name, got, want(name), 0.02 * want(name));
    }
}
