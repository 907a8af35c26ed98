//! Adam with per-element state that can be reset for resampled features.

use prism_core::simd_dispatch;

use super::params::Params;

/// Adam's hyper-parameters (PyTorch's defaults).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator guard.
    pub eps: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

impl AdamConfig {
    /// What update `t` (counted from 1) with learning rate `lr` needs besides the moments,
    /// `[β₁, β₂, ε, lr / (1 − β₁ᵗ), √(1 − β₂ᵗ)]`: each element then moves as
    /// `m ← β₁m + (1 − β₁)g`, `v ← β₂v + (1 − β₂)g²`, `p ← p − step · m / (√v / √(1 − β₂ᵗ) + ε)`,
    /// `torch.optim.Adam`'s arithmetic — on the host ([`Adam::step`]) and on burn devices alike.
    pub fn coefficients(&self, t: u64, lr: f32) -> [f32; 5] {
        let AdamConfig { beta1, beta2, eps } = *self;
        let bc1 = 1.0 - beta1.powi(t as i32);
        let bc2 = 1.0 - beta2.powi(t as i32);
        [beta1, beta2, eps, lr / bc1, bc2.sqrt()]
    }
}

/// Optimiser state: moments shaped like the parameters, and the step count.
#[derive(Clone, Debug, PartialEq)]
pub struct Adam {
    /// Hyper-parameters.
    pub config: AdamConfig,
    /// First moments.
    pub m: Params,
    /// Second moments.
    pub v: Params,
    /// Updates taken (bias correction uses it).
    pub t: u64,
}

impl Adam {
    /// Fresh state for `params`.
    pub fn new(params: &Params, config: AdamConfig) -> Self {
        Self {
            config,
            m: params.zeros_like(),
            v: params.zeros_like(),
            t: 0,
        }
    }

    /// One update with learning rate `lr`, exactly as `torch.optim.Adam` computes it.
    pub fn step(&mut self, params: &mut Params, grads: &Params, lr: f32) {
        use rayon::prelude::*;
        self.t += 1;
        let coefficients = self.config.coefficients(self.t, lr);
        let ps = params.tensors_mut();
        let gs = grads.tensors();
        let ms = self.m.tensors_mut();
        let vs = self.v.tensors_mut();
        for (((p, g), m), v) in ps.into_iter().zip(gs).zip(ms).zip(vs) {
            const CHUNK: usize = 1 << 14;
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| adam_update(p, g, m, v, coefficients));
        }
    }

    /// Zeroes the moments of feature `j` (its encoder and decoder rows and per-feature values),
    /// as resampling requires.
    pub fn reset_feature(&mut self, j: usize) {
        let (d, d_out) = (self.m.d, self.m.d_out);
        for s in [&mut self.m, &mut self.v] {
            s.w_enc[j * d..(j + 1) * d].fill(0.0);
            s.w_dec[j * d_out..(j + 1) * d_out].fill(0.0);
            for t in [
                &mut s.b_enc,
                &mut s.log_threshold,
                &mut s.r_mag,
                &mut s.b_mag,
            ] {
                if let Some(x) = t.get_mut(j) {
                    *x = 0.0;
                }
            }
        }
    }
}

simd_dispatch! {
    /// One Adam update of a stretch of parameters `p` with gradients `g` and moments `m`, `v`;
    /// `[β₁, β₂, ε, lr / (1 − β₁ᵗ), √(1 − β₂ᵗ)]`.
    fn adam_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: [f32; 5]) => adam_update_body
}

#[inline(always)]
fn adam_update_body(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: [f32; 5]) {
    let [beta1, beta2, eps, step, bc2_sqrt] = c;
    let n = p.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    for i in 0..n {
        m[i] = beta1 * m[i] + (1.0 - beta1) * g[i];
        v[i] = beta2 * v[i] + (1.0 - beta2) * g[i] * g[i];
        p[i] -= step * m[i] / (v[i].sqrt() / bc2_sqrt + eps);
    }
}
