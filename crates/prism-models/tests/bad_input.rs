//! Bad input must be a typed error naming the file and the problem, never a panic.

use crate::common;

use std::path::Path;

use common::*;
use prism_core::PrismError;
use prism_models::Model;

fn copy_model(name: &str, to: &Path) {
    let from = fixtures().join("models").join(name);
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut c);
    std::fs::write(&p, c.to_string()).unwrap();
}

fn load_err(dir: &Path) -> PrismError {
    let device = prism_core::device("cpu").unwrap();
    match Model::load(dir, &device) {
        Ok(_) => panic!("{} loaded although it is broken", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn truncated_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    copy_model("llama_gqa", dir.path());
    let p = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    for cut in [4, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = load_err(dir.path());
        assert!(
            matches!(e, PrismError::Safetensors { .. }),
            "cut {cut}: {e}"
        );
        assert!(e.to_string().contains("model.safetensors"), "{e}");
    }
}

#[test]
fn config_missing_a_key() {
    let dir = tempfile::tempdir().unwrap();
    copy_model("gpt_neox_parallel", dir.path());
    edit_config(dir.path(), |c| {
        c.as_object_mut().unwrap().remove("hidden_size");
    });
    let e = load_err(dir.path());
    assert!(matches!(e, PrismError::Config { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("config.json") && msg.contains("hidden_size"),
        "{msg}"
    );
}

#[test]
fn unsupported_model_type_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    copy_model("gpt2", dir.path());
    edit_config(dir.path(), |c| c["model_type"] = "mamba".into());
    assert!(load_err(dir.path()).to_string().contains("mamba"));
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    assert!(matches!(load_err(dir.path()), PrismError::Io { .. }));
    assert!(matches!(
        load_err(&dir.path().join("nothing-here")),
        PrismError::Io { .. }
    ));
}

#[test]
fn tokenizer_that_does_not_fit_the_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    copy_model("gpt2", dir.path());
    edit_config(dir.path(), |c| c["vocab_size"] = 100.into());
    let e = load_err(dir.path());
    assert!(matches!(e, PrismError::Tokenizer { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("tokenizer.json") && msg.contains("100"),
        "{msg}"
    );
}

#[test]
fn weight_with_the_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    copy_model("llama_tied", dir.path());
    edit_config(dir.path(), |c| c["intermediate_size"] = 97.into());
    let e = load_err(dir.path());
    assert!(matches!(e, PrismError::Weight { .. }), "{e}");
    assert!(e.to_string().contains("mlp.gate_proj"), "{e}");
}

#[test]
fn empty_text_and_out_of_vocab_ids() {
    let device = prism_core::device("cpu").unwrap();
    let model = Model::load(&fixtures().join("models/gpt2"), &device).unwrap();
    assert!(matches!(
        model.encode("").unwrap_err(),
        PrismError::InvalidInput(_)
    ));
    let batch = prism_models::TokenBatch::from_sequences(&[vec![1, 999]], 0).unwrap();
    assert!(matches!(
        model
            .forward(&batch, &prism_core::Hooks::new())
            .unwrap_err(),
        PrismError::InvalidInput(_)
    ));
}
