//! SAELens-layout dictionaries: encode/decode against sae-lens's own (on dictionaries sae-lens
//! saved, and on dictionaries Prism saved and sae-lens loaded), round trips, errors.

use std::path::PathBuf;

use prism_core::{Dictionary, HostTensor, PrismError};
use prism_sae::{Architecture, Sae};

use crate::common::max_diff;

fn fixtures() -> PathBuf {
    prism_testkit::fixtures().join("sae")
}

#[test]
fn encode_and_decode_match_the_saelens_formulas() {
    let device = prism_core::device("cpu").unwrap();
    let refs = prism_core::read_safetensors(&fixtures().join("reference.safetensors")).unwrap();
    let x = refs["x"].to_burn::<2>(&device).unwrap();
    // Dictionaries that sae-lens made and saved, against its own encode/decode.
    for arch in ["standard", "topk", "jumprelu", "gated"] {
        let sae = Sae::load(&fixtures().join(arch), &device).unwrap();
        assert_eq!((sae.d_in(), sae.d_sae()), (16, 48));
        assert_eq!(sae.hook_name(), Some("blocks.0.hook_resid_post"));
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
    for arch in ["standard", "topk", "jumprelu", "gated"] {
        let sae = Sae::load(&fixtures().join(arch), &device).unwrap();
        let out = dir.path().join(arch);
        sae.save(&out).unwrap();
        let back = Sae::load(&out, &device).unwrap();
        assert_eq!(back.architecture().name(), sae.architecture().name());
        assert_eq!(back.architecture().k(), sae.architecture().k());
        let a = HostTensor::from_burn(sae.forward(x.clone())).unwrap();
        let b = HostTensor::from_burn(back.forward(x.clone())).unwrap();
        assert_eq!(a.data, b.data, "{arch}: round trip changed the outputs");
        // The file has exactly SAELens' tensor names and shapes, and cfg keeps unknown keys.
        let w = prism_core::read_safetensors(&out.join("sae_weights.safetensors")).unwrap();
        let mut names: Vec<_> = w.keys().cloned().collect();
        names.sort();
        let mut want = match arch {
            "gated" => vec!["W_dec", "W_enc", "b_dec", "b_gate", "b_mag", "r_mag"],
            _ => vec!["W_dec", "W_enc", "b_dec", "b_enc"],
        };
        if arch == "jumprelu" {
            want.push("threshold");
        }
        assert_eq!(names, want);
        // The file holds the same numbers sae-lens wrote.
        let orig =
            prism_core::read_safetensors(&fixtures().join(arch).join("sae_weights.safetensors"))
                .unwrap();
        for n in &want {
            assert_eq!(w[*n].data, orig[*n].data, "{arch}: {n}");
        }
        assert_eq!(w["W_enc"].shape, vec![16, 48]);
        assert_eq!(w["W_dec"].shape, vec![48, 16]);
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("cfg.json")).unwrap()).unwrap();
        assert_eq!(cfg["metadata"]["model_name"], "fixture");
        assert_eq!(cfg["metadata"]["hook_name"], "blocks.0.hook_resid_post");
        assert_eq!(cfg["architecture"], arch);
    }
    assert!(matches!(
        Sae::load(&fixtures().join("topk"), &device)
            .unwrap()
            .architecture(),
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
    // A cfg.json that claims an architecture whose own tensors the file lacks: an error that
    // names the missing tensor, never a dictionary with a zero threshold or magnitude path.
    for (arch, missing) in [("jumprelu", "threshold"), ("gated", "r_mag")] {
        let d = dir.path().join(format!("claims_{arch}"));
        copy(&d);
        let cfg = std::fs::read_to_string(d.join("cfg.json"))
            .unwrap()
            .replace("\"standard\"", &format!("\"{arch}\""));
        std::fs::write(d.join("cfg.json"), cfg).unwrap();
        if arch == "gated" {
            // Give it the gate bias so that the first thing missing is the magnitude path.
            let mut w = prism_core::read_safetensors(&d.join("sae_weights.safetensors")).unwrap();
            let b = w.remove("b_enc").unwrap();
            let raws: Vec<prism_core::RawTensor> = w
                .iter()
                .map(|(n, t)| {
                    prism_core::RawTensor::floats(n.clone(), t, prism_core::FloatDtype::F32)
                })
                .chain([prism_core::RawTensor::floats(
                    "b_gate",
                    &b,
                    prism_core::FloatDtype::F32,
                )])
                .collect();
            let path = d.join("sae_weights.safetensors");
            std::fs::write(
                &path,
                prism_core::serialize_safetensors(&path, &raws, None).unwrap(),
            )
            .unwrap();
        }
        let e = Sae::load(&d, &device).unwrap_err();
        assert!(
            matches!(&e, PrismError::Weight { name, .. } if name == missing),
            "{arch}: {e}"
        );
    }
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

/// Dictionaries Prism trained and saved (`examples/write_prism_saved.rs`), loaded by sae-lens's
/// `SAE.load_from_disk` in `scripts/make_fixtures.py`: Prism's codes and reconstructions equal
/// sae-lens's, and saving them again today writes the same files sae-lens accepted.
#[test]
fn dictionaries_prism_saves_load_in_saelens_with_the_same_outputs() {
    let device = prism_core::device("cpu").unwrap();
    let root = prism_testkit::fixtures().join("prism_saved");
    let refs = prism_core::read_safetensors(&root.join("reference.safetensors")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for arch in ["relu", "topk", "batchtopk", "jumprelu", "gated"] {
        let sae = Sae::load(&root.join(arch), &device).unwrap();
        let x = refs[&format!("x_{arch}")].to_burn::<2>(&device).unwrap();
        let f = HostTensor::from_burn(sae.encode(x.clone())).unwrap();
        let want = &refs[&format!("codes_{arch}")];
        assert!(
            want.data.iter().any(|&v| v != 0.0),
            "{arch}: no active codes"
        );
        assert!(
            max_diff(&f.data, &want.data) < 1e-5,
            "{arch}: codes differ from sae-lens's"
        );
        let recon = HostTensor::from_burn(sae.forward(x)).unwrap();
        assert!(
            max_diff(&recon.data, &refs[&format!("recon_{arch}")].data) < 1e-5,
            "{arch}: reconstructions differ from sae-lens's"
        );
        let hook: String = refs[&format!("hook_{arch}")]
            .data
            .iter()
            .map(|&c| char::from_u32(c as u32).unwrap())
            .collect();
        assert_eq!(
            Some(hook.as_str()),
            sae.hook_name(),
            "{arch}: sae-lens read another hook"
        );
        // Today's writer produces what sae-lens loaded.
        let again = tmp.path().join(arch);
        sae.save(&again).unwrap();
        let read_json = |p: PathBuf| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
        };
        assert_eq!(
            read_json(again.join("cfg.json")),
            read_json(root.join(arch).join("cfg.json")),
            "{arch}: cfg.json changed"
        );
        let (a, b) = (
            prism_core::read_safetensors(&again.join("sae_weights.safetensors")).unwrap(),
            prism_core::read_safetensors(&root.join(arch).join("sae_weights.safetensors")).unwrap(),
        );
        assert_eq!(a, b, "{arch}: sae_weights.safetensors changed");
    }
}
