//! Dictionaries spliced into the model with their error term kept, so that features can be
//! edited one at a time or as sets while the rest of the activation stays exactly as it was.

use std::sync::Arc;

use burn::tensor::{Tensor, TensorData};
use prism_core::{Activation, Dictionary, Edit, HookPoint, Intervention, PrismError, Result};

/// What to do to a dictionary's codes before decoding them back into the activation.
#[derive(Clone, Debug, PartialEq)]
pub enum FeatureEdit {
    /// Nothing: `decode(encode(x)) + (x − decode(encode(x)))` is `x` again.
    Keep,
    /// Zero these features (zero-ablation).
    Zero(Vec<usize>),
    /// Zero every feature *except* these (the complement, for faithfulness).
    KeepOnly(Vec<usize>),
    /// Set each listed feature to a value at every position (e.g. its dataset mean).
    Set(Vec<(usize, f32)>),
}

/// A dictionary at its hook point with the error term `e = x − decode(encode(x))` kept:
/// the activation becomes `decode(edit(encode(x))) + e`. With [`FeatureEdit::Keep`] the model's
/// output is unchanged (up to rounding); zeroing feature `j` subtracts `f_j · W_dec[j]`.
///
/// ```no_run
/// # fn f(model: &prism_models::Model, sae: prism_sae::Sae) -> prism_core::Result<()> {
/// use std::sync::Arc;
/// use prism_patch::{FeatureEdit, Splice};
/// let hook = "blocks.15.hook_mlp_out".parse()?;
/// let splice = Splice::new(hook, Arc::new(sae), FeatureEdit::Zero(vec![7, 42]));
/// let batch = model.batch(&["Sparse features, edited one at a time."])?;
/// let loss = model.loss(&batch, &prism_core::Hooks::new().intervene(splice.intervention()?))?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Splice {
    hook: HookPoint,
    dictionary: Arc<dyn Dictionary + Send + Sync>,
    edit: FeatureEdit,
}

impl Splice {
    /// A splice of `dictionary` at `hook` with `edit` applied to its codes.
    pub fn new(
        hook: HookPoint,
        dictionary: Arc<dyn Dictionary + Send + Sync>,
        edit: FeatureEdit,
    ) -> Self {
        Self {
            hook,
            dictionary,
            edit,
        }
    }

    /// The intervention that performs the splice in a forward pass. Features out of range are
    /// an error here; a hook whose width differs from the dictionary's `d_in` is an error when
    /// the pass reaches it.
    pub fn intervention(&self) -> Result<Intervention> {
        let m = self.dictionary.d_sae();
        let listed: Vec<usize> = match &self.edit {
            FeatureEdit::Keep => Vec::new(),
            FeatureEdit::Zero(v) | FeatureEdit::KeepOnly(v) => v.clone(),
            FeatureEdit::Set(v) => v.iter().map(|(j, _)| *j).collect(),
        };
        if let Some(bad) = listed.iter().find(|&&j| j >= m) {
            return Err(PrismError::InvalidInput(format!(
                "feature {bad} does not exist (the dictionary has {m})"
            )));
        }
        if self.hook.has_heads() {
            return Err(PrismError::Hook {
                hook: self.hook.to_string(),
                message: "dictionaries are spliced at hooks with one vector per token".into(),
            });
        }
        let dict = self.dictionary.clone();
        let edit = self.edit.clone();
        let f: prism_core::HookFn = Arc::new(move |hook: HookPoint, act: Activation| {
            let x = act.into_rank3()?;
            let [b, s, d] = x.dims();
            if d != dict.d_in() {
                return Err(PrismError::Shape(format!(
                    "{hook} has width {d}, the dictionary reads {}",
                    dict.d_in()
                )));
            }
            let flat = x.reshape([b * s, d]);
            let codes = dict.encode(flat.clone());
            let error = flat - dict.decode(codes.clone());
            let edited = apply(codes, &edit);
            Ok(Activation::Rank3(
                (dict.decode(edited) + error).reshape([b, s, d]),
            ))
        });
        Ok(Intervention::new(self.hook, Edit::Custom(f)))
    }
}

/// `codes` `[n, m]` with `edit` applied.
fn apply(codes: Tensor<2>, edit: &FeatureEdit) -> Tensor<2> {
    let [n, m] = codes.dims();
    let device = codes.device();
    let column_mask = |cols: &[usize], value: f32, rest: f32| {
        let mut v = vec![rest; m];
        for &j in cols {
            v[j] = value;
        }
        Tensor::<2>::from_data(TensorData::new(v, [1, m]), &device).expand([n, m])
    };
    match edit {
        FeatureEdit::Keep => codes,
        FeatureEdit::Zero(cols) => codes * column_mask(cols, 0.0, 1.0),
        FeatureEdit::KeepOnly(cols) => codes * column_mask(cols, 1.0, 0.0),
        FeatureEdit::Set(pairs) => {
            let cols: Vec<usize> = pairs.iter().map(|(j, _)| *j).collect();
            let mut values = vec![0f32; m];
            for &(j, v) in pairs {
                values[j] = v;
            }
            let values =
                Tensor::<2>::from_data(TensorData::new(values, [1, m]), &device).expand([n, m]);
            codes * column_mask(&cols, 0.0, 1.0) + values
        }
    }
}
