//! Published dictionary suites (fixtures/suites/, written by scripts/make_fixtures.py --only
//! suites): Gemma Scope's params.npz as sae-lens's own Gemma Scope loader reads it, sparsify
//! folders as `SparseCoder.save_to_disk` writes them; codes and reconstructions against those
//! packages' own encode/decode.

use std::path::PathBuf;

use prism_core::{Dictionary, HostTensor, PrismError};
use prism_sae::Sae;
use prism_sae::npz::parse_npy;

use crate::common::{check_against_reference, max_diff};

fn suites() -> PathBuf {
    prism_testkit::fixtures().join("suites")
}

/// Codes (same active features, values within 1e-5) and reconstructions within 1e-5.
fn check(sae: &Sae, name: &str) {
    check_against_reference(sae, &suites().join("reference.safetensors"), name, "recon");
}

/// Catches: a transposed W_enc, b_dec subtracted from the input (Gemma Scope does not), a
/// threshold compared with ≥ instead of >, the hook not derived from the published layout.
#[test]
fn gemma_scope_npz_matches_sae_lens_loader() {
    let device = prism_core::device("cpu").unwrap();
    let dir = suites().join("gemma-scope-2b-pt-res/layer_1/width_16k/average_l0_10");
    for path in [dir.clone(), dir.join("params.npz")] {
        let sae = Sae::open(&path, &device).unwrap();
        assert_eq!((sae.d_in(), sae.d_sae()), (64, 48));
        assert_eq!(sae.hook_name(), Some("blocks.1.hook_resid_post"));
        check(&sae, "gemma_scope");
    }
    // Written back in SAELens' layout, it reads the same.
    let tmp = tempfile::tempdir().unwrap();
    Sae::open(&dir, &device).unwrap().save(tmp.path()).unwrap();
    let back = Sae::load(tmp.path(), &device).unwrap();
    assert_eq!(back.hook_name(), Some("blocks.1.hook_resid_post"));
    check(&back, "gemma_scope");
}

/// Catches: encoder.weight not transposed, b_dec not subtracted before encoding, the hook
/// folder's module name mapped to the wrong hook, a run directory opened as one dictionary.
#[test]
fn sparsify_folders_match_sparse_coder() {
    let device = prism_core::device("cpu").unwrap();
    let run = suites().join("sparsify-run");
    for (folder, hook, k) in [
        ("layers.1", "blocks.1.hook_resid_post", 4),
        ("layers.2.mlp", "blocks.2.hook_mlp_out", 6),
    ] {
        let sae = Sae::open(&run.join(folder), &device).unwrap();
        assert_eq!(sae.hook_name(), Some(hook));
        assert!(
            matches!(sae.architecture(), prism_sae::Architecture::TopK { k: got } if *got == k)
        );
        check(&sae, &format!("sparsify_{folder}"));
        // The run directory with a hook picks that folder.
        let options = prism_sae::OpenOptions::default().with_hook(Some(hook.into()));
        let picked = Sae::open_with(&run, &options, &device).unwrap();
        check(&picked, &format!("sparsify_{folder}"));
    }
    match Sae::open(&run, &device) {
        Err(PrismError::Config { message, .. }) => {
            assert!(
                message.contains("layers.2.mlp (blocks.2.hook_mlp_out)"),
                "{message}"
            )
        }
        other => panic!(
            "a run directory must ask which hook, got {:?}",
            other.map(|_| ())
        ),
    }
    // A transcoder is refused by name, not misread as an autoencoder.
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("layers.1.mlp");
    std::fs::create_dir(&t).unwrap();
    std::fs::copy(
        run.join("layers.1/sae.safetensors"),
        t.join("sae.safetensors"),
    )
    .unwrap();
    let cfg = std::fs::read_to_string(run.join("layers.1/cfg.json")).unwrap();
    std::fs::write(
        t.join("cfg.json"),
        cfg.replace("\"transcode\": false", "\"transcode\": true"),
    )
    .unwrap();
    match Sae::open(&t, &device) {
        Err(PrismError::Config { message, .. }) => {
            assert!(message.contains("transcode"), "{message}")
        }
        other => panic!("expected a config error, got {:?}", other.map(|_| ())),
    }
}

fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

/// Catches: big-endian or Fortran-ordered arrays read as if C-ordered little-endian, a shape
/// that does not fit the data accepted, a scalar's empty shape mishandled.
#[test]
fn npy_arrays_are_read_or_refused_clearly() {
    let two = [1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat();
    let t = parse_npy(&npy("<f4", false, "(1, 2)", &two)).unwrap();
    assert_eq!(
        (t.shape.clone(), t.data.clone()),
        (vec![1, 2], vec![1.5, -2.0])
    );
    let t = parse_npy(&npy(
        "<f8",
        false,
        "(2,)",
        &[1.0f64.to_le_bytes(), 3.0f64.to_le_bytes()].concat(),
    ))
    .unwrap();
    assert_eq!(t.data, [1.0, 3.0]);
    let scalar = parse_npy(&npy("<f4", false, "()", &2.5f32.to_le_bytes())).unwrap();
    assert_eq!(scalar.data, [2.5]);
    for (bytes, why) in [
        (npy(">f4", false, "(2,)", &two), "little-endian"),
        (npy("<f4", true, "(2,)", &two), "Fortran"),
        (npy("<f4", false, "(3,)", &two), "needs 12 bytes"),
        (npy("<i8", false, "(1,)", &two), "little-endian float"),
        (
            npy("<f4", false, "(99999999999, 99999999999)", &two),
            "overflows",
        ),
        (b"\x93NUMPY\x01\x00\xff\xff".to_vec(), "truncated"),
        (b"PK\x03\x04".to_vec(), "bad magic"),
    ] {
        let e = parse_npy(&bytes).unwrap_err();
        assert!(e.contains(why), "{e} (wanted {why})");
    }
}

/// Catches: Gemma Scope 2's lower-case names not found, its folder's site mapped to the wrong
/// hook, a transcoder read as an autoencoder.
#[test]
fn gemma_scope_2_safetensors_matches_sae_lens_loader() {
    let device = prism_core::device("cpu").unwrap();
    let published =
        suites().join("gemma-scope-2-270m-pt/resid_post_all/layer_1_width_16k_l0_small");
    let sae = Sae::open(&published, &device).unwrap();
    assert_eq!(sae.hook_name(), Some("blocks.1.hook_resid_post"));
    check(&sae, "gemma_scope_2");
    // Copied out of its repository, the site and layer folders still give the hook.
    let tmp = tempfile::tempdir().unwrap();
    for site in ["mlp_out", "transcoder"] {
        let dir = tmp.path().join(site).join("layer_1_width_16k_l0_small");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            published.join("params.safetensors"),
            dir.join("params.safetensors"),
        )
        .unwrap();
        match (site, Sae::open(&dir, &device)) {
            ("mlp_out", Ok(sae)) => assert_eq!(sae.hook_name(), Some("blocks.1.hook_mlp_out")),
            ("transcoder", Err(PrismError::Config { message, .. })) => {
                assert!(message.contains("transcoder"), "{message}")
            }
            (site, other) => panic!("{site}: {:?}", other.map(|_| ())),
        }
    }
}

/// Catches: Llama Scope's nn.Linear layouts not transposed, the threshold not scaled (or not
/// rounded to bfloat16 as sae-lens builds it), the registry's factor not folded into W_enc,
/// W_dec and b_dec.
#[test]
fn llama_scope_matches_sae_lens_from_pretrained() {
    let device = prism_core::device("cpu").unwrap();
    let refs = prism_core::read_safetensors(&suites().join("reference.safetensors")).unwrap();
    let factor = refs["llama_scope_norm_scaling_factor"].data[0] as f64;
    let dir = suites().join("Llama3_1-8B-Base-LXR-8x/Llama3_1-8B-Base-L1R-8x");
    let options = prism_sae::OpenOptions::default().with_norm_scaling_factor(Some(factor));
    let sae = Sae::open_with(&dir, &options, &device).unwrap();
    assert_eq!(sae.hook_name(), Some("blocks.1.hook_resid_post"));
    check(&sae, "llama_scope");
    // Without the registry's factor the file's own (√d / average norm) is folded: other codes.
    let own = Sae::open(&dir, &device).unwrap();
    let x = refs["x"].to_burn::<2>(&device).unwrap();
    let a = HostTensor::from_burn(own.encode(x)).unwrap();
    assert!(max_diff(&a.data, &refs["codes_llama_scope"].data) > 1e-3);
}

/// Catches: an archive entry that inflates far beyond its size (a zip bomb) read whole into
/// memory; a plain np.savez archive of the same array still read.
#[test]
fn npz_entries_that_inflate_too_far_are_refused() {
    use std::io::Write;
    let zeros = vec![0u8; 4 << 20];
    let array = npy("<f4", false, &format!("({},)", zeros.len() / 4), &zeros);
    let archive = |method| {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        z.start_file("W_enc.npy", options).unwrap();
        z.write_all(&array).unwrap();
        z.finish().unwrap().into_inner()
    };
    let bomb = archive(zip::CompressionMethod::Deflated);
    assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
    let e = prism_sae::npz::parse_npz(&bomb).unwrap_err();
    assert!(e.contains("W_enc.npy"), "{e}");
    let stored = prism_sae::npz::parse_npz(&archive(zip::CompressionMethod::Stored)).unwrap();
    assert_eq!(stored["W_enc"].data.len(), 1 << 20);
}
