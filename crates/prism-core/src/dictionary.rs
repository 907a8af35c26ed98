//! The `Dictionary` trait: what every sparse autoencoder architecture offers the rest of Prism.

use burn::tensor::Tensor;

/// A sparse dictionary (sparse autoencoder) over activations of width `d_in`.
///
/// It maps activations `x ∈ R^d_in` to codes `f ∈ R^d_sae` and back. Statistics, similarity and
/// patching code only see this trait, never a concrete architecture.
///
/// ```
/// use burn::tensor::Tensor;
/// use prism_core::Dictionary;
///
/// /// The identity "dictionary": one feature per input dimension.
/// struct Identity { d: usize, device: burn::tensor::Device }
/// impl Dictionary for Identity {
///     fn d_in(&self) -> usize { self.d }
///     fn d_sae(&self) -> usize { self.d }
///     fn encode(&self, x: Tensor<2>) -> Tensor<2> { x }
///     fn decode(&self, f: Tensor<2>) -> Tensor<2> { f }
///     fn decoder_directions(&self) -> Tensor<2> { Tensor::eye(self.d, &self.device) }
/// }
/// let device = prism_core::device("cpu").unwrap();
/// let dict = Identity { d: 3, device: device.clone() };
/// let x = Tensor::<2>::from_floats([[1.0, 0.0, 2.0]], &device);
/// assert_eq!(prism_core::to_vec(dict.forward(x)).unwrap(), vec![1.0, 0.0, 2.0]);
/// ```
pub trait Dictionary {
    /// Width of the activations it reads.
    fn d_in(&self) -> usize;
    /// Number of features (dictionary size).
    fn d_sae(&self) -> usize;
    /// Codes for a batch of activations: `[n, d_in]` → `[n, d_sae]`.
    fn encode(&self, x: Tensor<2>) -> Tensor<2>;
    /// Width of what it writes: `d_in` for an autoencoder (the default), the output hook's
    /// width for a transcoder.
    fn d_out(&self) -> usize {
        self.d_in()
    }
    /// Reconstructions from codes: `[n, d_sae]` → `[n, d_out]`.
    fn decode(&self, f: Tensor<2>) -> Tensor<2>;
    /// The output for input `x` whose codes `f = encode(x)` are already known: `decode(f)`,
    /// plus a transcoder's skip term (which needs `x`).
    fn output(&self, x: Tensor<2>, f: Tensor<2>) -> Tensor<2> {
        let _ = x;
        self.decode(f)
    }
    /// The output for input `x`: `output(x, encode(x))`.
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let f = self.encode(x.clone());
        self.output(x, f)
    }
    /// Each feature's decoder direction, one per row: `[d_sae, d_out]`.
    fn decoder_directions(&self) -> Tensor<2>;
    /// The codes of `x` as a function autodiff can differentiate: where a dictionary's code is
    /// its pre-activation on the features it keeps active (ReLU, TopK, JumpReLU), the
    /// pre-activations times the active set of `encode(x)` — equal to the codes, with the
    /// derivative they have almost everywhere (the active set held). `None` (the default) where
    /// the codes are another function of the input (Gated's magnitude path).
    fn differentiable_codes(&self, x: Tensor<2>) -> Option<Tensor<2>> {
        let _ = x;
        None
    }
}
