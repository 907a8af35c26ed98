//! SAELens-layout dictionaries: encode/decode against numpy's reference, round trips, errors.

use std::path::PathBuf;

use prism_core::{Dictionary, HostTensor, PrismError};
use prism_sae::{Architecture, Sae};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sae")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn encode_and_decode_match_the_saelens_formulas() {
    let device = prism_core::device("cpu").unwrap();
    let refs = prism_core::read_safetensors(&fixtures().join("reference.safetensors")).unwrap();
    let x = refs["x"].to_burn::<2>(&device).unwrap();
    for arch in ["standard", "topk", "jumprelu"] {
        let sae = Sae::load(&fixtures().join(arch), &device).unwrap();
        assert_eq!((sae.d_in(), sae.d_sae()), (16, 48));
        assert_eq!(sae.hook_name.as_deref(), Some("blocks.0.hook_resid_post"));
        let f = HostTensor::from_burn(sae.encode(x.clone())).unwrap();
        let want = &refs[&format!("codes_{arch}")];
        assert!(max_diff(&f.data, &want.data) < 1e-5, "{arch}: codes differ");
        // Same sparsity pattern exactly.
        let nz = |v: &[f32]| v.iter().map(|&a| a != 0.0).collect::<Vec<_>>();
        assert_eq!(
            nz(&f.data),
            nz(&want.data),
            "{arch}: active features differ"
        );
        if arch == "topk" {
            assert!(
                f.data
                    .chunks(48)
                    .all(|r| r.iter().filter(|&&v| v != 0.0).count() <= 5)
            );
        }
        let recon = HostTensor::from_burn(sae.forward(x.clone())).unwrap();
        assert!(
            max_diff(&recon.data, &refs[&format!("recon_{arch}")].data) < 1e-5,
            "{arch}: reconstructions differ"
        );
    }
}

#[test]
fn save_then_load_gives_identical_outputs_and_saelens_names() {
    let device = prism_core::device("cpu").unwrap();
    let refs = prism_core::read_safetensors(&fixtures().join("reference.safetensors")).unwrap();
    let x = refs["x"].to_burn::<2>(&device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for arch in ["standard", "topk", "jumprelu"] {
        let sae = Sae::load(&fixtures().join(arch), &device).unwrap();
        let out = dir.path().join(arch);
        sae.save(&out).unwrap();
        let back = Sae::load(&out, &device).unwrap();
        assert_eq!(back.architecture, sae.architecture);
        let a = HostTensor::from_burn(sae.forward(x.clone())).unwrap();
        let b = HostTensor::from_burn(back.forward(x.clone())).unwrap();
        assert_eq!(a.data, b.data, "{arch}: round trip changed the outputs");
        // The file has exactly SAELens' tensor names and shapes, and cfg keeps unknown keys.
        let w = prism_core::read_safetensors(&out.join("sae_weights.safetensors")).unwrap();
        let mut names: Vec<_> = w.keys().cloned().collect();
        names.sort();
        let mut want = vec!["W_dec", "W_enc", "b_dec", "b_enc"];
        if arch == "jumprelu" {
            want.push("threshold");
        }
        assert_eq!(names, want);
        assert_eq!(w["W_enc"].shape, vec![16, 48]);
        assert_eq!(w["W_dec"].shape, vec![48, 16]);
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("cfg.json")).unwrap()).unwrap();
        assert_eq!(cfg["model_name"], "fixture");
        assert_eq!(cfg["architecture"], arch);
    }
    assert!(matches!(
        Sae::load(&fixtures().join("topk"), &device)
            .unwrap()
            .architecture,
        Architecture::TopK { k: 5 }
    ));
}

#[test]
fn broken_dictionaries_are_typed_errors() {
    let device = prism_core::device("cpu").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("standard");
    let copy = |to: &std::path::Path| {
        std::fs::create_dir_all(to).unwrap();
        for f in ["cfg.json", "sae_weights.safetensors"] {
            std::fs::copy(src.join(f), to.join(f)).unwrap();
        }
    };
    let wrong_d = dir.path().join("wrong_d");
    copy(&wrong_d);
    let cfg = std::fs::read_to_string(wrong_d.join("cfg.json"))
        .unwrap()
        .replace("\"d_sae\": 48", "\"d_sae\": 64");
    std::fs::write(wrong_d.join("cfg.json"), cfg).unwrap();
    let e = Sae::load(&wrong_d, &device).unwrap_err();
    assert!(
        matches!(e, PrismError::Weight { .. }) && e.to_string().contains("W_enc"),
        "{e}"
    );
    let unknown = dir.path().join("gated");
    copy(&unknown);
    let cfg = std::fs::read_to_string(unknown.join("cfg.json"))
        .unwrap()
        .replace("\"standard\"", "\"mystery\"");
    std::fs::write(unknown.join("cfg.json"), cfg).unwrap();
    assert!(
        Sae::load(&unknown, &device)
            .unwrap_err()
            .to_string()
            .contains("mystery")
    );
    let truncated = dir.path().join("truncated");
    copy(&truncated);
    let bytes = std::fs::read(truncated.join("sae_weights.safetensors")).unwrap();
    std::fs::write(
        truncated.join("sae_weights.safetensors"),
        &bytes[..bytes.len() / 3],
    )
    .unwrap();
    assert!(matches!(
        Sae::load(&truncated, &device).unwrap_err(),
        PrismError::Safetensors { .. }
    ));
}
