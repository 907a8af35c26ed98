//! Shared by the prism-stats integration tests: a real tiny model and a deterministic SAE.
#![allow(dead_code)]

use burn::tensor::{Tensor, TensorData};
use prism_models::Model;
use prism_sae::{Architecture, Sae};

pub fn llama() -> Model {
    let dir = prism_testkit::fixtures().join("models/llama_gqa");
    Model::load(&dir, &prism_core::device("cpu").unwrap()).unwrap()
}

/// A standard SAE `d → m` with pseudo-random weights and encoder biases from −1 to +1, so that
/// its features span a wide range of densities.
pub fn spread_sae(d: usize, m: usize) -> Sae {
    let device = prism_core::device("cpu").unwrap();
    let pseudo = |n: usize, seed: u64, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((((i as u64 + 1) * 2654435761 + seed * 97) % 10007) as f32 / 10007.0 - 0.5) * scale
            })
            .collect()
    };
    let b_enc: Vec<f32> = (0..m).map(|i| -1.0 + 2.0 * i as f32 / m as f32).collect();
    Sae::new(
        Architecture::Standard,
        Tensor::from_data(TensorData::new(pseudo(d * m, 1, 0.5), [d, m]), &device),
        Tensor::from_data(TensorData::new(b_enc, [1, m]), &device),
        Tensor::from_data(TensorData::new(pseudo(m * d, 2, 0.5), [m, d]), &device),
        Tensor::zeros([1, d], &device),
    )
    .unwrap()
}
