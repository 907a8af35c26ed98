//! Attribution patching and integrated gradients: against torch autograd on the tiny fixture
//! models (`scripts/make_fixtures.py --only patching`), and the identities that tie them to
//! exact patching.

use crate::common;

use prism_core::{Dictionary, HookPoint};
use prism_patch::{
    Dictionaries, Method, Node, PatchOptions, Unit, attribute, dictionary_nodes, nodes, patch,
};

use common::{ARCHITECTURES, SWEEPS, assert_close, case};

#[test]
fn integrated_gradients_with_one_step_is_attribution_patching() {
    let c = case("llama_gqa");
    let shape = c.model.config().shape();
    let seq = c.pairs.clean.seq;
    let mut ns = Vec::new();
    for item in ["resid_pre", "z", "neurons", "attn_out"] {
        ns.extend(nodes(&shape, item.parse().unwrap(), seq).unwrap());
    }
    let opts = PatchOptions::default();
    let atp = attribute(&c.model, &c.pairs, &ns, Method::Atp, &opts, |_, _| {}).unwrap();
    let ig = attribute(
        &c.model,
        &c.pairs,
        &ns,
        Method::IntegratedGradients { steps: 1 },
        &opts,
        |_, _| {},
    )
    .unwrap();
    let want: Vec<f32> = atp.results.iter().map(|r| r.value as f32).collect();
    let got: Vec<f64> = ig.results.iter().map(|r| r.value).collect();
    assert_close(&got, &want, "ig(1) vs atp");
    assert!(
        want.iter().any(|v| v.abs() > 1e-3),
        "all attributions vanish"
    );
}

#[test]
fn integrated_gradients_are_exact_where_the_metric_is_linear() {
    // The logit difference is linear in ln_final.hook_normalized (logits = x · W_U), so every
    // linear estimate equals exact patching there, position by position.
    for name in ["gpt2", "gpt_neox_parallel"] {
        let c = case(name);
        let hook = HookPoint::LnFinal;
        let ns: Vec<Node> = (0..c.pairs.clean.seq)
            .map(|p| Node::new(hook, Some(p), Unit::All))
            .collect();
        let opts = PatchOptions::default();
        let exact = patch(&c.model, &c.pairs, &ns, &opts, |_, _| {}).unwrap();
        let want: Vec<f32> = exact
            .results
            .iter()
            .map(|r| (r.value - exact.corrupt) as f32)
            .collect();
        for method in [Method::Atp, Method::IntegratedGradients { steps: 3 }] {
            let s = attribute(&c.model, &c.pairs, &ns, method, &opts, |_, _| {}).unwrap();
            let got: Vec<f64> = s.results.iter().map(|r| r.value).collect();
            assert_close(&got, &want, &format!("{name} {method:?} vs exact"));
        }
    }
}

#[test]
fn attribution_patching_matches_torch_autograd_on_every_architecture() {
    for name in ARCHITECTURES {
        let c = case(name);
        let reference = common::reference(name, "attribution.safetensors");
        let shape = c.model.config().shape();
        let seq = c.pairs.clean.seq;
        for (sweep, key, direction) in SWEEPS {
            let opts = PatchOptions {
                direction,
                ..Default::default()
            };
            let ns = nodes(&shape, sweep.parse().unwrap(), seq).unwrap();
            let s = attribute(&c.model, &c.pairs, &ns, Method::Atp, &opts, |_, _| {}).unwrap();
            let got: Vec<f64> = s.results.iter().map(|r| r.value).collect();
            // [layer][position | head | neuron], the order `nodes` gives.
            let key = format!("atp_{key}");
            assert_close(&got, &reference[&key].data, &format!("{name} {key}"));
        }
    }
}

#[test]
fn dictionary_feature_attributions_match_torch_autograd_for_a_sae_lens_dictionary() {
    let c = case("llama_tied");
    let reference = common::reference("llama_tied", "attribution.safetensors");
    let device = prism_core::device("cpu").unwrap();
    let sae =
        prism_sae::Sae::load(&common::fixtures().join("sae/pipeline_resid0"), &device).unwrap();
    let hook = HookPoint::ResidPost(0);
    let m = sae.d_sae();
    let mut dictionaries = Dictionaries::new();
    dictionaries.insert(hook, std::sync::Arc::new(sae));
    let opts = PatchOptions {
        dictionaries,
        ..Default::default()
    };
    let seq = c.pairs.clean.seq;
    let ns = dictionary_nodes(hook, m, Some(seq));
    for (method, prefix) in [
        (Method::Atp, "atp"),
        (Method::IntegratedGradients { steps: 4 }, "ig4"),
    ] {
        let s = attribute(&c.model, &c.pairs, &ns, method, &opts, |_, _| {}).unwrap();
        let features: Vec<f64> = s
            .results
            .iter()
            .filter(|r| r.node.feature().is_some())
            .map(|r| r.value)
            .collect();
        let errors: Vec<f64> = s
            .results
            .iter()
            .filter(|r| r.node.unit == Unit::Error)
            .map(|r| r.value)
            .collect();
        // [position][feature] and [position], the order `dictionary_nodes` gives.
        let want = &reference[&format!("{prefix}_sae_features")].data;
        assert_close(&features, want, &format!("{prefix} features"));
        assert!(want.iter().filter(|v| v.abs() > 1e-4).count() > 10);
        let want = &reference[&format!("{prefix}_sae_error")].data;
        assert_close(&errors, want, &format!("{prefix} error"));
    }
    // With the dictionary spliced in, a whole position's features and error sum to the plain
    // node's attribution (the splice is exact and AtP is linear in the state).
    let plain: Vec<Node> = (0..seq)
        .map(|p| Node::new(hook, Some(p), Unit::All))
        .collect();
    let s = attribute(
        &c.model,
        &c.pairs,
        &plain,
        Method::Atp,
        &PatchOptions::default(),
        |_, _| {},
    )
    .unwrap();
    let d = attribute(&c.model, &c.pairs, &ns, Method::Atp, &opts, |_, _| {}).unwrap();
    let sums: Vec<f32> = (0..seq)
        .map(|p| {
            d.results
                .iter()
                .filter(|r| r.node.position == Some(p))
                .map(|r| r.value)
                .sum::<f64>() as f32
        })
        .collect();
    let got: Vec<f64> = s.results.iter().map(|r| r.value).collect();
    assert_close(&got, &sums, "features + error = the plain node");
}
