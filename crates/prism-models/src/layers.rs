//! The building blocks every architecture shares: linear maps, norms, rotary embedding.
//!
//! Activations flow as `[rows, width]` matrices (batch and sequence flattened) so that every
//! projection is one large GEMM.

use burn::tensor::activation;
use burn::tensor::{Device, Tensor, TensorData};
use prism_core::{HostTensor, Result};

use crate::config::{MlpActivation, NormKind};
use crate::cpu::{CpuPath, Rotary};

/// `y = x W + b` with `W` stored `[in, out]`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `[d_in, d_out]`.
    pub weight: Tensor<2>,
    /// `[1, d_out]`.
    pub bias: Option<Tensor<2>>,
}

impl Linear {
    /// Builds from HF-layout host tensors: weight `[out, in]` (transposed here), bias `[out]`.
    pub fn from_hf(
        weight: &HostTensor,
        bias: Option<&HostTensor>,
        device: &Device,
    ) -> Result<Self> {
        Self::from_in_out(&weight.transpose2()?, bias, device)
    }

    /// Builds from a weight already laid out `[in, out]` (GPT-2's Conv1D), bias `[out]`.
    pub fn from_in_out(
        weight: &HostTensor,
        bias: Option<&HostTensor>,
        device: &Device,
    ) -> Result<Self> {
        let weight = weight.to_burn::<2>(device)?;
        let bias = bias.map(|b| row(b, device)).transpose()?;
        Ok(Self { weight, bias })
    }

    /// Applies the map to `[rows, d_in]` with burn's ops.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.add_bias(x.matmul(self.weight.clone()))
    }

    /// Applies the map on `path`: the host GEMM where [`CpuPath::applies`], burn's matmul
    /// elsewhere.
    pub fn forward_on(&self, x: Tensor<2>, path: CpuPath) -> Result<Tensor<2>> {
        Ok(self.add_bias(matmul_on(x, &self.weight, path)?))
    }

    fn add_bias(&self, y: Tensor<2>) -> Tensor<2> {
        match &self.bias {
            Some(b) => y + b.clone(),
            None => y,
        }
    }
}

/// `x · w` on `path`: the host GEMM where [`CpuPath::applies`] (and `w` is a plain `flex`
/// tensor), burn's matmul elsewhere.
pub fn matmul_on(x: Tensor<2>, w: &Tensor<2>, path: CpuPath) -> Result<Tensor<2>> {
    if path.applies(&x) && path.applies(w) {
        crate::cpu::matmul(x, w)
    } else {
        Ok(x.matmul(w.clone()))
    }
}

/// A 1-D host tensor as a `[1, n]` row on the device (broadcasts over rows).
pub fn row(t: &HostTensor, device: &Device) -> Result<Tensor<2>> {
    HostTensor::new(vec![1, t.len()], t.data.clone())?.to_burn::<2>(device)
}

/// Loads a LayerNorm (`{prefix}.weight`, `{prefix}.bias`, each `[d]`) from a weight source.
pub fn load_layer_norm(
    src: &dyn crate::weights::WeightSource,
    prefix: &str,
    d: usize,
    eps: f64,
    device: &Device,
) -> Result<Norm> {
    Ok(Norm {
        kind: NormKind::LayerNorm,
        weight: row(&src.shaped(&format!("{prefix}.weight"), &[d])?, device)?,
        bias: Some(row(&src.shaped(&format!("{prefix}.bias"), &[d])?, device)?),
        eps,
    })
}

/// LayerNorm or RMSNorm over the last axis.
#[derive(Clone, Debug)]
pub struct Norm {
    /// Flavour.
    pub kind: NormKind,
    /// `[1, d]`.
    pub weight: Tensor<2>,
    /// `[1, d]` (LayerNorm only).
    pub bias: Option<Tensor<2>>,
    /// Added to the variance.
    pub eps: f64,
}

impl Norm {
    /// Normalises each row of `[rows, d]`: [`Norm::standardize`] then [`Norm::scale`].
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.scale(self.standardize(x))
    }

    /// Each row of `[rows, d]` normalised without the learned scale and bias: `x/rms(x)`
    /// (RMSNorm) or `(x − mean)/std` (LayerNorm).
    pub fn standardize(&self, x: Tensor<2>) -> Tensor<2> {
        match self.kind {
            NormKind::LayerNorm => {
                let centred = x.clone() - x.mean_dim(1);
                let var = centred.clone().square().mean_dim(1);
                centred * var.add_scalar(self.eps).sqrt().recip()
            }
            NormKind::RmsNorm => {
                let ms = x.clone().square().mean_dim(1);
                x * ms.add_scalar(self.eps).sqrt().recip()
            }
        }
    }

    /// A standardised `[rows, d]` times the learned scale, plus the bias where there is one.
    pub fn scale(&self, normed: Tensor<2>) -> Tensor<2> {
        let y = normed * self.weight.clone();
        match &self.bias {
            Some(b) => y + b.clone(),
            None => y,
        }
    }
}

/// Applies the MLP nonlinearity.
pub fn activate(kind: MlpActivation, x: Tensor<2>) -> Tensor<2> {
    match kind {
        MlpActivation::Gelu => activation::gelu(x),
        MlpActivation::GeluTanh => activation::gelu_approximate(x),
        MlpActivation::Silu => activation::silu(x),
    }
}

/// A [`Rotary`]'s cos/sin tables as `[seq, dims]` device tensors, for [`apply_rotary`].
///
/// ```
/// let device = prism_core::device("cpu").unwrap();
/// let r = prism_models::cpu::Rotary::new(3, 4, 10000.0);
/// let (cos, sin) = prism_models::rotary_on_device(&r, &device);
/// assert_eq!((cos.dims(), sin.dims()), ([3, 4], [3, 4]));
/// ```
pub fn rotary_on_device(r: &Rotary, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let shape = [r.cos.len() / r.dims.max(1), r.dims];
    let table = |v: &[f32]| Tensor::from_data(TensorData::new(v.to_vec(), shape), device);
    (table(&r.cos), table(&r.sin))
}

/// Rotates the first `dims` features of each head of `x: [batch, heads, seq, d_head]`.
pub fn apply_rotary(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>) -> Tensor<4> {
    let [b, h, s, dh] = x.dims();
    let dims = cos.dims()[1];
    let half = dims / 2;
    let rot = if dims == dh {
        x.clone()
    } else {
        x.clone().narrow(3, 0, dims)
    };
    let x1 = rot.clone().narrow(3, 0, half);
    let x2 = rot.clone().narrow(3, half, half);
    let rotated_half = Tensor::cat(vec![x2.neg(), x1], 3);
    let cos = cos.clone().reshape([1, 1, s, dims]);
    let sin = sin.clone().reshape([1, 1, s, dims]);
    let out = rot * cos + rotated_half * sin;
    if dims == dh {
        out
    } else {
        Tensor::cat(vec![out, x.narrow(3, dims, dh - dims)], 3)
    }
    .reshape([b, h, s, dh])
}
