//! The families after GPT-NeoX, GPT-2 and Llama 2: every hook's activation against the output of
//! the `transformers` module TransformerLens puts it at (PyTorch forward hooks, recorded by
//! scripts/make_fixtures.py), and the errors a researcher meets with configs Prism cannot run.

use crate::common;

use common::*;
use prism_core::{HookPoint, Hooks, HostTensor, PrismError};
use prism_models::{Architecture, AttentionSpan, Model, TokenBatch};

/// The families' fixtures: every model after the first five (which predate the per-hook
/// references).
fn families() -> &'static [&'static str] {
    &MODELS[5..]
}

fn host(a: prism_core::Activation) -> HostTensor {
    match a {
        prism_core::Activation::Rank3(t) => HostTensor::from_burn(t).unwrap(),
        prism_core::Activation::Rank4(t) => HostTensor::from_burn(t).unwrap(),
    }
}

/// Each hook the reference recorded, captured by Prism on the same text, within 1e-4 of the
/// largest value (attention patterns: absolutely). Both CPU paths: the fused kernels skip the
/// pattern, so capturing everything at once would test burn's ops alone; the fused path is
/// checked on everything but the patterns.
#[test]
fn every_hook_matches_the_transformers_module_behind_it() {
    let device = prism_core::device("cpu").unwrap();
    for &name in families() {
        let dir = fixtures().join("models").join(name);
        let model = Model::load(&dir, &device).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
                .unwrap();
        let text = json["hooked_text"].as_u64().unwrap() as usize;
        let r = reference(name);
        let reference = prism_core::read_safetensors(&dir.join("reference.safetensors")).unwrap();
        let batch = TokenBatch::from_sequences(&[r.tokens[text].clone()], 0).unwrap();
        let hooks: Vec<(HookPoint, &HostTensor)> = reference
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("hook:")?.parse().unwrap(), v)))
            .collect();
        assert_eq!(
            hooks.len(),
            9 * model.config().n_layers + 2,
            "{name}: the reference's hooks"
        );
        for patterns in [false, true] {
            let chosen: Vec<_> = hooks
                .iter()
                .filter(|(h, _)| matches!(h, HookPoint::AttnPattern(_)) == patterns)
                .collect();
            let mut out = model
                .forward(
                    &batch,
                    &Hooks::new().capture_all(chosen.iter().map(|(h, _)| *h)),
                )
                .unwrap();
            for (hook, want) in chosen {
                let got = host(out.take(*hook).unwrap());
                assert_eq!(got.shape, want.shape, "{name} {hook}: shape");
                let scale = want.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                let diff = max_abs_diff(&got.data, &want.data);
                assert!(
                    diff < 1e-4 * scale,
                    "{name} {hook}: max |Δ| = {diff} (largest value {scale})"
                );
            }
        }
    }
}

/// What each family's config turns into: the knobs the fixtures exercise are read, not
/// defaulted (a family that forgot one would still load and compute something else).
#[test]
fn each_config_is_read_as_its_family_defines_it() {
    let device = prism_core::device("cpu").unwrap();
    let load = |name: &str| {
        Model::load(&fixtures().join("models").join(name), &device)
            .unwrap()
            .config()
            .clone()
    };
    let gemma2 = load("gemma2");
    assert_eq!(gemma2.architecture, Architecture::Gemma2);
    assert_eq!(
        (0..3).map(|l| gemma2.span(l)).collect::<Vec<_>>(),
        [
            AttentionSpan::Sliding(4),
            AttentionSpan::Global,
            AttentionSpan::Sliding(4)
        ]
    );
    assert_eq!(gemma2.design.attn_softcap, Some(2.0));
    assert_eq!(gemma2.design.final_softcap, Some(3.0));
    assert!((gemma2.attn_scale() - 20f64.powf(-0.5)).abs() < 1e-12);
    assert_eq!(gemma2.design.embed_scale, Some(8.0));
    let qwen2 = load("qwen2");
    assert_eq!(
        (0..2).map(|l| qwen2.span(l)).collect::<Vec<_>>(),
        [AttentionSpan::Global, AttentionSpan::Sliding(4)],
        "max_window_layers 1: layers from 1 on are local"
    );
    let gemma3 = load("gemma3");
    assert!(
        gemma3
            .design
            .local_rope
            .is_some_and(|f| f.theta == 10_000.0)
    );
    let phi3 = load("phi3");
    assert!(matches!(
        phi3.positions,
        prism_models::Positions::Rotary { dims: 8, .. }
    ));
    assert_eq!(load("llama3").d_head, 24);
}

fn config_error(model_type: &str, edit: impl Fn(&mut serde_json::Value)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("models").join(model_type);
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let path = dir.path().join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, json.to_string()).unwrap();
    match Model::load(dir.path(), &prism_core::device("cpu").unwrap()) {
        Err(e @ PrismError::Config { .. }) => e.to_string(),
        Err(e) => panic!("{model_type}: not a config error: {e}"),
        Ok(_) => panic!("{model_type}: loaded"),
    }
}

#[test]
fn configs_prism_cannot_run_are_refused_naming_what_is_wrong() {
    let e = config_error("llama3", |j| j["model_type"] = "mixtral".into());
    assert!(
        e.contains("`mixtral` is not supported") && e.contains("gemma3_text, phi3, olmo2"),
        "{e}"
    );
    let e = config_error("gemma3", |j| j["model_type"] = "gemma3".into());
    assert!(e.contains("gemma3_text"), "{e}");
    let e = config_error("phi3", |j| {
        j["rope_parameters"]["rope_type"] = "longrope".into();
    });
    assert!(
        e.contains(
            "rope_type `longrope` is not supported (default, linear, llama3, dynamic, yarn)"
        ),
        "{e}"
    );
    let e = config_error("llama3", |j| {
        j["rope_parameters"]
            .as_object_mut()
            .unwrap()
            .remove("low_freq_factor");
    });
    assert!(
        e.contains("`llama3` needs the rope parameter `low_freq_factor`"),
        "{e}"
    );
    let e = config_error("qwen3", |j| {
        j.as_object_mut().unwrap().remove("intermediate_size");
    });
    assert!(e.contains("key `intermediate_size` is missing"), "{e}");
    let e = config_error("gemma2", |j| j["sliding_window"] = 0.into());
    assert!(e.contains("sliding_window"), "{e}");
    let e = config_error("gemma2", |j| {
        j["layer_types"] = serde_json::json!([
            "chunked_attention",
            "chunked_attention",
            "chunked_attention"
        ])
    });
    assert!(
        e.contains("layer type Some(\"chunked_attention\") is not supported"),
        "{e}"
    );
    let e = config_error("gemma2", |j| j["attn_logit_softcapping"] = (-1.0).into());
    assert!(e.contains("attention soft-cap"), "{e}");
    let e = config_error("gemma3", |j| j["use_bidirectional_attention"] = true.into());
    assert!(e.contains("use_bidirectional_attention"), "{e}");
}
