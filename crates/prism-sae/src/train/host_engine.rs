//! The host engine: parameters in host memory, the step on the dedicated CPU kernels
//! ([`super::loss_and_grads`]: one GEMM for the encoder, sparse loops through the codes).

use prism_core::Result;

use super::adam::Adam;
use super::architecture::ArchitectureConfig;
use super::engine::{Engine, EngineChoice, Reinit, StepStats};
use super::objective::{StepInputs, loss_and_grads};
use super::params::{Params, remove_parallel_component};
use crate::kernel::KernelMode;

/// Parameters, gradient and Adam's state in host memory.
#[derive(Clone, Debug)]
pub struct HostEngine {
    params: Params,
    grads: Params,
    adam: Adam,
    kernel: KernelMode,
}

impl HostEngine {
    /// An engine around these parameters and optimiser state.
    pub fn new(params: Params, adam: Adam, kernel: KernelMode) -> Self {
        Self {
            grads: params.zeros_like(),
            params,
            adam,
            kernel,
        }
    }
}

impl Engine for HostEngine {
    fn forward_backward(
        &mut self,
        objective: &ArchitectureConfig,
        x: &[f32],
        target: Option<&[f32]>,
        n: usize,
        dead: &[bool],
        apply_b_dec_to_input: bool,
    ) -> Result<StepStats> {
        let pass = loss_and_grads(
            objective,
            &self.params,
            x,
            n,
            StepInputs {
                dead: Some(dead),
                apply_b_dec_to_input,
                mode: self.kernel,
                target,
            },
            &mut self.grads,
        )?;
        Ok(pass.stats)
    }

    fn gradients_finite(&self) -> Result<bool> {
        Ok(self.grads.all_finite())
    }

    fn update(&mut self, lr: f32, clip: Option<f32>) -> Result<()> {
        remove_parallel_component(&self.params.w_dec, &mut self.grads.w_dec, self.params.d_out);
        if let Some(clip) = clip {
            let norm = self.grads.norm();
            if norm > clip as f64 {
                self.grads.scale((clip as f64 / norm) as f32);
            }
        }
        self.adam.step(&mut self.params, &self.grads, lr);
        self.params.normalize_decoder();
        Ok(())
    }

    fn b_dec(&self) -> Result<Vec<f32>> {
        Ok(self.params.b_dec.clone())
    }

    fn set_b_dec(&mut self, b_dec: &[f32]) -> Result<()> {
        if b_dec.len() != self.params.d_out {
            return Err(prism_core::PrismError::Shape(format!(
                "b_dec of {} values for an output width of {}",
                b_dec.len(),
                self.params.d_out
            )));
        }
        self.params.b_dec = b_dec.to_vec();
        Ok(())
    }

    fn encoder_row_norms(&self) -> Result<Vec<f32>> {
        Ok(self
            .params
            .w_enc
            .chunks(self.params.d)
            .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
            .collect())
    }

    fn reinitialise(&mut self, features: &[Reinit]) -> Result<()> {
        let (d, d_out) = (self.params.d, self.params.d_out);
        for r in features {
            let j = r.feature;
            self.params.w_dec[j * d_out..][..d_out].copy_from_slice(&r.decoder);
            self.params.w_enc[j * d..][..d].copy_from_slice(&r.encoder);
            self.params.b_enc[j] = 0.0;
            self.adam.reset_feature(j);
        }
        Ok(())
    }

    fn params(&self) -> Result<Params> {
        Ok(self.params.clone())
    }

    fn gradients(&self) -> Result<Params> {
        Ok(self.grads.clone())
    }

    fn optimiser(&self) -> Result<Adam> {
        Ok(self.adam.clone())
    }

    fn choice(&self) -> EngineChoice {
        EngineChoice::Host
    }
}
