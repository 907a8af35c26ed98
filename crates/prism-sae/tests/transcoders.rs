//! Published transcoders (fixtures/transcoders/, written by scripts/make_fixtures.py --only
//! transcoders): Gemma Scope and Gemma Scope 2 as sae-lens's own loaders (and circuit-tracer's)
//! read them, sparsify transcoders and skip autoencoders as `SparseCoder` saves them,
//! circuit-tracer's layer files as `SingleLayerTranscoder.to_safetensors` writes them; codes and
//! outputs against those packages' own encode and forward.

use std::path::PathBuf;

use prism_core::{Dictionary, HookPoint, PrismError};
use prism_sae::{Architecture, OpenOptions, Sae, Transcoder};

use crate::common::check_against_reference;

fn transcoders() -> PathBuf {
    prism_testkit::fixtures().join("transcoders")
}

/// Codes (same active features, values within 1e-5) and outputs within 1e-5.
fn check(t: &Transcoder, name: &str) {
    check_against_reference(t, &transcoders().join("reference.safetensors"), name, "out");
}

fn open(rel: &str) -> Transcoder {
    let device = prism_core::device("cpu").unwrap();
    Transcoder::open(&transcoders().join(rel), &device).unwrap()
}

/// Written in SAELens' layout and read back, it computes the same and keeps its hooks.
fn round_trip(t: &Transcoder, name: &str) {
    let device = prism_core::device("cpu").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    t.save(tmp.path()).unwrap();
    let back = Transcoder::load(tmp.path(), &device).unwrap();
    assert_eq!(back.hook_name(), t.hook_name(), "{name}");
    assert_eq!(back.hook_name_out(), t.hook_name_out(), "{name}");
    assert_eq!(back.skip().is_some(), t.skip().is_some(), "{name}");
    check(&back, name);
}

/// Prism's SAELens copy has the cfg.json entries and tensors (names, shapes) that sae-lens's
/// own `save_model` wrote for the same transcoder, so sae-lens opens it as that class.
fn same_layout_as_sae_lens(t: &Transcoder, name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    t.save(tmp.path()).unwrap();
    let theirs = transcoders().join("saelens").join(name);
    let cfg = |dir: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("cfg.json")).unwrap()).unwrap()
    };
    let (ours, want) = (cfg(tmp.path()), cfg(&theirs));
    for key in [
        "architecture",
        "d_in",
        "d_sae",
        "d_out",
        "apply_b_dec_to_input",
    ] {
        assert_eq!(ours[key], want[key], "{name}: cfg.json `{key}`");
    }
    assert_eq!(
        ours["metadata"]["hook_name_out"], want["metadata"]["hook_name_out"],
        "{name}: metadata.hook_name_out"
    );
    let shapes = |dir: &std::path::Path| -> Vec<(String, Vec<usize>)> {
        let w = prism_core::read_safetensors(&dir.join("sae_weights.safetensors")).unwrap();
        let mut v: Vec<_> = w.into_iter().map(|(k, t)| (k, t.shape)).collect();
        v.sort();
        v
    };
    assert_eq!(shapes(tmp.path()), shapes(&theirs), "{name}: tensors");
}

/// Catches: W_dec read as the input's width, the hooks of a transcoder repository taken for a
/// residual SAE's, b_dec subtracted from the input; sae-lens's saved copy read the same.
#[test]
fn gemma_scope_transcoder_matches_sae_lens_and_circuit_tracer() {
    let t = open("gemma-scope-2b-pt-transcoders/layer_1/width_16k/average_l0_65");
    assert_eq!((t.d_in(), t.d_sae(), t.d_out()), (64, 48, 64));
    assert_eq!(t.hook_name(), Some("blocks.1.ln2.hook_normalized"));
    assert_eq!(t.hook_name_out(), Some("blocks.1.hook_mlp_out"));
    assert!(t.skip().is_none());
    assert_eq!(t.saelens_architecture(), "jumprelu_transcoder");
    check(&t, "gemma_scope");
    round_trip(&t, "gemma_scope");
    same_layout_as_sae_lens(&t, "gemma_scope");
    let device = prism_core::device("cpu").unwrap();
    check(
        &Transcoder::load(&transcoders().join("saelens/gemma_scope"), &device).unwrap(),
        "gemma_scope",
    );
}

/// Catches: the affine skip connection dropped or transposed (Gemma Scope 2 stores it
/// `[d_in, d_out]`, SAELens `[d_out, d_in]`), the MLP-input hook.
#[test]
fn gemma_scope_2_affine_transcoder_matches_sae_lens_and_circuit_tracer() {
    let t = open("gemma-scope-2-270m-pt/transcoder_all/layer_1_width_16k_l0_small_affine");
    assert_eq!(t.hook_name(), Some("blocks.1.mlp.hook_in"));
    assert_eq!(t.hook_name_out(), Some("blocks.1.hook_mlp_out"));
    assert!(t.skip().is_some());
    assert_eq!(t.saelens_architecture(), "jumprelu_skip_transcoder");
    check(&t, "gemma_scope_2");
    round_trip(&t, "gemma_scope_2");
    same_layout_as_sae_lens(&t, "gemma_scope_2");
    let device = prism_core::device("cpu").unwrap();
    let saved = Transcoder::load(&transcoders().join("saelens/gemma_scope_2"), &device).unwrap();
    // sae-lens names this hook `hook_mlp_in` (docs/transcoders.md).
    assert_eq!(saved.hook_name(), Some("blocks.1.hook_mlp_in"));
    check(&saved, "gemma_scope_2");
}

/// Catches: b_dec subtracted from a transcoder's input (sparsify does so only when
/// autoencoding), W_skip not transposed, the module's hooks (input → output) mixed up.
#[test]
fn sparsify_transcoder_and_skip_autoencoder_match_sparse_coder() {
    let t = open("sparsify-run/layers.1.mlp");
    assert_eq!(t.hook_name(), Some("blocks.1.mlp.hook_in"));
    assert_eq!(t.hook_name_out(), Some("blocks.1.hook_mlp_out"));
    assert!(matches!(t.architecture(), Architecture::TopK { k: 6 }));
    check(&t, "sparsify_layers.1.mlp");
    round_trip(&t, "sparsify_layers.1.mlp");
    let skip_sae = open("sparsify-run/layers.2");
    assert_eq!(skip_sae.hook_name(), Some("blocks.2.hook_resid_post"));
    assert_eq!(skip_sae.hook_name_out(), Some("blocks.2.hook_resid_post"));
    check(&skip_sae, "sparsify_layers.2");
}

/// Catches: circuit-tracer's `[d_sae, d_in]` encoder not transposed, a ReLU file read as
/// JumpReLU, the hooks in config.yaml ignored (`mlp.hook_out` is the MLP's output).
#[test]
fn circuit_tracer_layers_match_its_loader() {
    let device = prism_core::device("cpu").unwrap();
    for layer in [0usize, 1] {
        let t = open(&format!("circuit-tracer/layer_{layer}.safetensors"));
        assert_eq!(
            t.hook_name(),
            Some(format!("blocks.{layer}.mlp.hook_in").as_str())
        );
        assert_eq!(
            t.hook_name_out(),
            Some(format!("blocks.{layer}.hook_mlp_out").as_str())
        );
        assert_eq!(t.skip().is_some(), layer == 0);
        let want_arch = if layer == 0 { "jumprelu" } else { "standard" };
        assert_eq!(t.architecture().name(), want_arch);
        check(&t, &format!("circuit_tracer_{layer}"));
        // The set's folder with a hook of that block picks the file.
        let options = OpenOptions::default().with_hook(Some(format!("blocks.{layer}.mlp.hook_in")));
        let picked =
            Transcoder::open_with(&transcoders().join("circuit-tracer"), &options, &device)
                .unwrap();
        check(&picked, &format!("circuit_tracer_{layer}"));
    }
    round_trip(
        &open("circuit-tracer/layer_0.safetensors"),
        "circuit_tracer_0",
    );
    match Transcoder::open(&transcoders().join("circuit-tracer"), &device) {
        Err(PrismError::Config { message, .. }) => {
            assert!(
                message.contains("layer_0.safetensors") && message.contains("HOOK=DIR"),
                "{message}"
            )
        }
        other => panic!("expected a Config error listing the layers, got {other:?}"),
    }
}

/// An autoencoder asked for as a transcoder, and a transcoder as an autoencoder, are typed
/// errors that say which it is and how to open it.
#[test]
fn autoencoders_and_transcoders_are_not_confused() {
    let device = prism_core::device("cpu").unwrap();
    let dir = transcoders().join("gemma-scope-2b-pt-transcoders/layer_1/width_16k/average_l0_65");
    match Sae::open(&dir, &device) {
        Err(PrismError::Config { message, .. }) => assert!(
            message.contains("Gemma Scope transcoder")
                && message.contains("blocks.1.ln2.hook_normalized")
                && message.contains("Transcoder::open")
                && message.contains("not a sparse autoencoder"),
            "{message}"
        ),
        other => panic!("expected a Config error, got {other:?}"),
    }
    match Sae::load(&transcoders().join("saelens/gemma_scope_2"), &device) {
        Err(PrismError::Config { message, .. }) => {
            assert!(message.contains("jumprelu_skip_transcoder"), "{message}")
        }
        other => panic!("expected a Config error, got {other:?}"),
    }
    let sae_dir = prism_testkit::fixtures()
        .join("suites/gemma-scope-2b-pt-res/layer_1/width_16k/average_l0_10");
    match Transcoder::open(&sae_dir, &device) {
        Err(PrismError::Config { message, .. }) => {
            assert!(message.contains("Sae::open"), "{message}")
        }
        other => panic!("expected a Config error, got {other:?}"),
    }
}

/// The hooks check against a model's shape: the tiny Gemma 2 has both at width 64; a block it
/// lacks is an unknown hook.
#[test]
fn transcoder_hooks_exist_on_the_model() {
    let shape = prism_core::ModelShape {
        n_layers: 2,
        d_model: 64,
        n_heads: 4,
        d_head: 16,
        d_mlp: 128,
        parallel_residual: false,
        learned_positions: false,
    };
    let t = open("gemma-scope-2b-pt-transcoders/layer_1/width_16k/average_l0_65");
    assert_eq!(
        t.hooks(&shape, None, None).unwrap(),
        (HookPoint::Ln2Normalized(1), HookPoint::MlpOut(1))
    );
    let small = prism_core::ModelShape {
        n_layers: 1,
        ..shape
    };
    assert!(matches!(
        t.hooks(&small, None, None),
        Err(PrismError::UnknownHook { .. })
    ));
}

/// Transcoders Prism wrote in the three layouts (`fixtures/transcoders/prism_saved`: SAELens',
/// sparsify's, circuit-tracer's), loaded by sae-lens's `SAE.load_from_disk`, sparsify's
/// `SparseCoder.load_from_disk` and circuit-tracer's `load_relu_transcoder` in
/// `scripts/make_fixtures.py --only transcoders_saved`: Prism reads each back with those
/// packages' codes and outputs, and today's writers produce the same files. Catches: a tensor
/// written in the other orientation (every package stores its encoder and skip differently), a
/// config key the package needs, `transcode` written for a skip autoencoder.
/// `PRISM_WRITE_FIXTURES=1` writes the files instead (then run the script).
#[test]
fn transcoders_prism_writes_load_in_their_packages() {
    let device = prism_core::device("cpu").unwrap();
    let root = transcoders().join("prism_saved");
    let affine = open("gemma-scope-2-270m-pt/transcoder_all/layer_1_width_16k_l0_small_affine");
    let topk = open("sparsify-run/layers.1.mlp");
    let writing = std::env::var_os("PRISM_WRITE_FIXTURES").is_some();
    let tmp = tempfile::tempdir().unwrap();
    let out = if writing {
        root.clone()
    } else {
        tmp.path().to_path_buf()
    };
    affine.save(&out.join("saelens")).unwrap();
    topk.save_sparsify(&out.join("sparsify/layers.1.mlp"))
        .unwrap();
    affine
        .save_circuit_tracer(&out.join("circuit-tracer/layer_1.safetensors"))
        .unwrap();
    if writing {
        return;
    }
    for file in [
        "saelens/sae_weights.safetensors",
        "sparsify/layers.1.mlp/sae.safetensors",
        "circuit-tracer/layer_1.safetensors",
    ] {
        let read = |dir: &std::path::Path| {
            let mut v: Vec<_> = prism_core::read_safetensors(&dir.join(file))
                .unwrap()
                .into_iter()
                .map(|(k, t)| (k, t.shape, t.data))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        assert_eq!(read(&out), read(&root), "{file} changed");
    }
    for file in ["saelens/cfg.json", "sparsify/layers.1.mlp/cfg.json"] {
        let json = |dir: &std::path::Path| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap()
        };
        assert_eq!(json(&out), json(&root), "{file} changed");
    }
    let reference = root.join("reference.safetensors");
    let saelens = Transcoder::load(&root.join("saelens"), &device).unwrap();
    check_against_reference(&saelens, &reference, "saelens", "out");
    let sparsify = Transcoder::open(&root.join("sparsify/layers.1.mlp"), &device).unwrap();
    assert_eq!(sparsify.hook_name(), Some("blocks.1.mlp.hook_in"));
    check_against_reference(&sparsify, &reference, "sparsify", "out");
    let tracer =
        Transcoder::open(&root.join("circuit-tracer/layer_1.safetensors"), &device).unwrap();
    check_against_reference(&tracer, &reference, "circuit_tracer", "out");
    // What circuit-tracer's loader cannot hold is refused, not written wrong.
    let e = topk
        .save_circuit_tracer(&tmp.path().join("topk/layer_1.safetensors"))
        .unwrap_err();
    assert!(e.to_string().contains("ReLU and JumpReLU"), "{e}");
    let e = affine
        .save_sparsify(&tmp.path().join("jumprelu"))
        .unwrap_err();
    assert!(e.to_string().contains("TopK"), "{e}");
}
