//! Feature edges against a PyTorch reference (`scripts/make_fixtures.py --only edges`, docs/metrics.md:
//! feature-circuits' `get_circuit` formulation with torch autograd and transformers' forward
//! hooks), on a sequential and a parallel-attention tiny model with a sae-lens StandardSAE at
//! every block's attn_out, mlp_out and resid_post.

use std::sync::Arc;

use prism_core::{Dictionary, HookPoint};
use prism_patch::{
    Dictionaries, Direction, EdgeOptions, EdgeTarget, Method, Node, PatchOptions, Unit, edges,
};

use crate::common::{case, fixtures};

fn dictionaries(model: &str) -> Dictionaries {
    let dir = fixtures().join("edges").join(model);
    let mut out = Dictionaries::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_dir() {
            continue;
        }
        let hook: HookPoint = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
        // (hook_embed for llama_gqa: the embedding feeds block 0.)
        let sae = prism_sae::Sae::load(&path, &prism_core::device("cpu").unwrap()).unwrap();
        out.insert(hook, Arc::new(sae) as Arc<dyn Dictionary + Send + Sync>);
    }
    out
}

fn unit(j: usize, m: usize) -> Unit {
    if j < m { Unit::Feature(j) } else { Unit::Error }
}

/// Every node effect and every edge of every link equals the reference within 1e-4 of the
/// largest value of its tensor. Catches a wrong link plan (a missing hold makes the residual
/// edges include the MLP's path), a wrong node selection, a transposed or mis-scaled weight, an
/// error node whose gradient does not reach its own error term.
#[test]
fn feature_edges_match_the_pytorch_reference() {
    for model_name in ["llama_gqa", "gpt_neox_parallel"] {
        let c = case(model_name);
        let reference = prism_core::read_safetensors(
            &fixtures()
                .join("edges")
                .join(model_name)
                .join("edges.safetensors"),
        )
        .unwrap();
        let steps = reference["steps"].data[0] as usize;
        let threshold = reference["threshold"].data[0] as f64;
        let options = PatchOptions {
            direction: Direction::Noise,
            dictionaries: dictionaries(model_name),
            ..Default::default()
        };
        let edge_options = EdgeOptions::default()
            .with_node_threshold(threshold)
            .with_edge_threshold(0.0)
            .with_method(Method::IntegratedGradients { steps });
        let circuit = edges(&c.model, &c.pairs, &options, &edge_options, |_, _| {}).unwrap();
        let mut links = 0;
        for (key, want) in &reference {
            let parts: Vec<&str> = key.splitn(2, '.').collect();
            match parts[0] {
                "nodes" => {
                    let hook: HookPoint = parts[1].parse().unwrap();
                    let got: Vec<f64> = circuit
                        .nodes
                        .iter()
                        .filter(|n| n.node.hook == hook)
                        .map(|n| n.effect)
                        .collect();
                    crate::common::assert_close(&got, &want.data, &format!("{model_name} {key}"));
                }
                "edges" => {
                    // `edges.UP.DOWN`, each a hook name `blocks.L.hook_…`.
                    let rest: Vec<&str> = parts[1].split(".blocks.").collect();
                    let up: HookPoint = rest[0].parse().unwrap();
                    let down: HookPoint = format!("blocks.{}", rest[1]).parse().unwrap();
                    let (m_down, m_up) = (want.shape[0] - 1, want.shape[1] - 1);
                    let mut got = Vec::new();
                    for jd in 0..=m_down {
                        for ju in 0..=m_up {
                            got.push(circuit.weight(
                                Node::new(up, None, unit(ju, m_up)),
                                EdgeTarget::Node(Node::new(down, None, unit(jd, m_down))),
                            ));
                        }
                    }
                    assert!(want.data.iter().any(|&v| v != 0.0), "{model_name} {key}");
                    crate::common::assert_close(&got, &want.data, &format!("{model_name} {key}"));
                    links += 1;
                }
                _ => {}
            }
        }
        // Sequential llama_gqa also has the embedding's three links into block 0.
        let parallel = model_name == "gpt_neox_parallel";
        assert_eq!(links, if parallel { 7 } else { 12 }, "{model_name}");
        // The last residual site's nodes reach the metric with their effects.
        let last = Node::new(HookPoint::ResidPost(1), None, Unit::Error);
        let effect = circuit
            .nodes
            .iter()
            .find(|n| n.node == last)
            .unwrap()
            .effect;
        assert_eq!(circuit.weight(last, EdgeTarget::Metric), effect);
    }
}

/// Where the downstream node is linear in the sites before it, its incoming edges add up to
/// its effect: with block l's residual dictionary made dead (every code 0, so its error term
/// is the whole residual stream, `resid_l = resid_{l−1} + attn_l + mlp_l`, the embedding in
/// place of `resid_{−1}`) and every position counting, the edges into that error node from
/// attn_l, mlp_l and the site before sum to its node effect. Catches a link that leaves a path
/// in twice (a missing hold) or out, and a weight scaled per pair or per position.
#[test]
fn edges_into_a_linear_node_sum_to_its_effect() {
    for (model_name, block) in [("llama_gqa", 1), ("gpt_neox_parallel", 1), ("llama_gqa", 0)] {
        let c = case(model_name);
        let mut dictionaries = dictionaries(model_name);
        let hook = HookPoint::ResidPost(block);
        let sae = prism_sae::Sae::load(
            &fixtures()
                .join("edges")
                .join(model_name)
                .join(hook.to_string()),
            &prism_core::device("cpu").unwrap(),
        )
        .unwrap();
        let mut dead = prism_sae::Sae::new(
            prism_sae::Architecture::Standard,
            sae.w_enc().clone(),
            sae.b_enc().clone() - 1e6,
            sae.w_dec().clone(),
            sae.b_dec().clone(),
        )
        .unwrap();
        dead.set_apply_b_dec_to_input(false);
        dictionaries.insert(hook, Arc::new(dead));
        let options = PatchOptions {
            direction: Direction::Noise,
            dictionaries,
            ..Default::default()
        };
        let edge_options = EdgeOptions::default()
            .with_node_threshold(0.0)
            .with_edge_threshold(0.0)
            .with_method(Method::IntegratedGradients { steps: 2 });
        let circuit = edges(&c.model, &c.pairs, &options, &edge_options, |_, _| {}).unwrap();
        let error = Node::new(hook, None, Unit::Error);
        let effect = circuit
            .nodes
            .iter()
            .find(|n| n.node == error)
            .unwrap()
            .effect;
        let incoming: f64 = circuit
            .edges
            .iter()
            .filter(|e| e.to == EdgeTarget::Node(error))
            .map(|e| e.weight)
            .sum();
        let sources: std::collections::BTreeSet<HookPoint> = circuit
            .edges
            .iter()
            .filter(|e| e.to == EdgeTarget::Node(error))
            .map(|e| e.from.hook)
            .collect();
        assert_eq!(sources.len(), 3, "{model_name}: {sources:?}");
        assert!(effect.abs() > 0.0);
        assert!(
            (incoming - effect).abs() <= 1e-4 * effect.abs().max(1e-6),
            "{model_name}: edges in {incoming} vs node effect {effect}"
        );
    }
}
