//! A hook's state in a run: its activation, or — with a dictionary spliced in — the
//! dictionary's codes and error term. Patching, ablation and attribution all edit states.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::tensor::{Bool, Tensor, TensorData};
use prism_core::{Activation, Dictionary, HookPoint, PrismError, Result};

use crate::node::Node;

/// Dictionaries spliced in at hook points (error term kept): their features and error terms
/// become nodes.
pub type Dictionaries = BTreeMap<HookPoint, Arc<dyn Dictionary + Send + Sync>>;

/// One hook's state for a batch: `[activation]`, or `[codes [b, s, d_sae], error [b, s, d]]`
/// where a dictionary is spliced in (`x = decode(codes) + error`).
#[derive(Clone, Debug)]
pub(crate) struct State {
    pub parts: Vec<Activation>,
}

impl State {
    /// The state of `act` at `hook`, decomposed by the hook's dictionary if it has one. The
    /// codes are computed without gradient tracking (burn cannot differentiate `topk`); the
    /// error term carries the activation's gradient path, so `decode(codes) + error` passes
    /// gradients upstream exactly as `x` does.
    pub fn read(
        hook: HookPoint,
        act: Activation,
        dictionary: Option<&Arc<dyn Dictionary + Send + Sync>>,
    ) -> Result<Self> {
        let Some(dict) = dictionary else {
            return Ok(Self { parts: vec![act] });
        };
        let x = act.into_rank3().map_err(|_| PrismError::Hook {
            hook: hook.to_string(),
            message: "dictionaries are spliced at hooks with one vector per token".into(),
        })?;
        let [b, s, d] = x.dims();
        if d != dict.d_in() {
            return Err(PrismError::Shape(format!(
                "{hook} has width {d}, the dictionary reads {}",
                dict.d_in()
            )));
        }
        let flat = x.clone().reshape([b * s, d]);
        let codes = dict.encode(flat.without_autodiff());
        let error = x - dict.decode(codes.clone()).reshape([b, s, d]);
        let m = dict.d_sae();
        Ok(Self {
            parts: vec![
                Activation::Rank3(codes.reshape([b, s, m])),
                Activation::Rank3(error),
            ],
        })
    }

    /// The activation this state stands for.
    pub fn compose(
        self,
        dictionary: Option<&Arc<dyn Dictionary + Send + Sync>>,
    ) -> Result<Activation> {
        let mut parts = self.parts.into_iter();
        let first = parts
            .next()
            .ok_or_else(|| PrismError::Shape("an empty state".into()))?;
        let Some(dict) = dictionary else {
            return Ok(first);
        };
        let codes = first.into_rank3()?;
        let error = parts
            .next()
            .ok_or_else(|| PrismError::Shape("a dictionary state without its error".into()))?
            .into_rank3()?;
        let [b, s, m] = codes.dims();
        let d = dict.d_in();
        Ok(Activation::Rank3(
            dict.decode(codes.reshape([b * s, m])).reshape([b, s, d]) + error,
        ))
    }

    /// Each part's dimensions.
    pub fn dims(&self) -> Vec<Vec<usize>> {
        self.parts.iter().map(Activation::dims).collect()
    }

    /// `f(self_i, other_i)` part by part.
    pub fn zip(&self, other: &State, f: Op) -> Result<State> {
        if self.dims() != other.dims() {
            return Err(PrismError::Shape(format!(
                "states of shapes {:?} and {:?}: clean and corrupted prompts must have equal \
                 lengths",
                self.dims(),
                other.dims()
            )));
        }
        Ok(State {
            parts: self
                .parts
                .iter()
                .zip(&other.parts)
                .map(|(a, b)| f.apply(a.clone(), b.clone()))
                .collect::<Result<_>>()?,
        })
    }

    /// Every part repeated `copies` times along the batch axis.
    pub fn tile(&self, copies: usize) -> State {
        self.map(|t| t.repeat_dim(0, copies), |t| t.repeat_dim(0, copies))
    }

    /// Where `masks[i]` (row-major over part `i`) is true, the element of `source`; elsewhere
    /// this state's.
    pub fn select(&self, masks: &[Vec<bool>], source: &State) -> Result<State> {
        let parts = self
            .parts
            .iter()
            .zip(masks)
            .zip(&source.parts)
            .map(|((p, m), s)| {
                let device = match p {
                    Activation::Rank3(t) => t.device().inner(),
                    Activation::Rank4(t) => t.device().inner(),
                };
                let dims = p.dims();
                Ok(match (p.clone(), s.clone()) {
                    (Activation::Rank3(t), Activation::Rank3(s)) => {
                        let m =
                            Tensor::<3, Bool>::from_data(TensorData::new(m.clone(), dims), &device);
                        let s = s.expand(t.dims());
                        Activation::Rank3(t.mask_where(m, s))
                    }
                    (Activation::Rank4(t), Activation::Rank4(s)) => {
                        let m =
                            Tensor::<4, Bool>::from_data(TensorData::new(m.clone(), dims), &device);
                        let s = s.expand(t.dims());
                        Activation::Rank4(t.mask_where(m, s))
                    }
                    _ => return Err(PrismError::Shape("states of different ranks".into())),
                })
            })
            .collect::<Result<_>>()?;
        Ok(State { parts })
    }

    /// The same values outside any autodiff graph.
    pub fn untracked(&self) -> State {
        self.map(Tensor::without_autodiff, Tensor::without_autodiff)
    }

    /// Zeros of this state's shape.
    pub fn zeros(&self) -> State {
        self.map(|t| t.zeros_like(), |t| t.zeros_like())
    }

    /// Zeros of this state's shape on the autodiff form of its device, tracked for gradients.
    pub fn leaves(&self) -> State {
        let leaf3 = |t: Tensor<3>| Tensor::zeros(t.dims(), &t.device().inner().autodiff());
        let leaf4 = |t: Tensor<4>| Tensor::zeros(t.dims(), &t.device().inner().autodiff());
        self.map(|t| leaf3(t).require_grad(), |t| leaf4(t).require_grad())
    }

    /// The gradient of each (leaf) part, zeros where the part did not reach the metric.
    pub fn grads(&self, grads: &burn::tensor::Gradients) -> State {
        self.map(
            |t| {
                t.grad(grads)
                    .unwrap_or_else(|| t.zeros_like().without_autodiff())
            },
            |t| {
                t.grad(grads)
                    .unwrap_or_else(|| t.zeros_like().without_autodiff())
            },
        )
    }

    /// Every part multiplied by `k`.
    pub fn scale(&self, k: f32) -> State {
        self.map(|t| t * k, |t| t * k)
    }

    /// Every part multiplied row by row (`alphas[r]` for batch row `r`).
    pub fn scale_rows(&self, alphas: &[f32]) -> State {
        let n = alphas.len();
        let column = |shape: Vec<usize>| TensorData::new(alphas.to_vec(), shape);
        self.map(
            |t| {
                let a = Tensor::<3>::from_data(column(vec![n, 1, 1]), &t.device());
                t * a
            },
            |t| {
                let a = Tensor::<4>::from_data(column(vec![n, 1, 1, 1]), &t.device());
                t * a
            },
        )
    }

    /// `f3` or `f4` applied to every part, by rank.
    fn map(
        &self,
        f3: impl Fn(Tensor<3>) -> Tensor<3>,
        f4: impl Fn(Tensor<4>) -> Tensor<4>,
    ) -> State {
        State {
            parts: self
                .parts
                .iter()
                .map(|p| match p {
                    Activation::Rank3(t) => Activation::Rank3(f3(t.clone())),
                    Activation::Rank4(t) => Activation::Rank4(f4(t.clone())),
                })
                .collect(),
        }
    }

    /// Part by part, the sum over the batch axis of `self · other`, on the host, row-major
    /// over the remaining axes.
    pub fn batch_dot(&self, other: &State) -> Result<Vec<Vec<f32>>> {
        self.parts
            .iter()
            .zip(&other.parts)
            .map(|(a, b)| match (a.clone(), b.clone()) {
                (Activation::Rank3(a), Activation::Rank3(b)) => {
                    prism_core::to_vec((a.without_autodiff() * b.without_autodiff()).sum_dim(0))
                }
                (Activation::Rank4(a), Activation::Rank4(b)) => {
                    prism_core::to_vec((a.without_autodiff() * b.without_autodiff()).sum_dim(0))
                }
                _ => Err(PrismError::Shape("states of different ranks".into())),
            })
            .collect()
    }

    /// Each part with its leading `[copies · b]` batch axis summed over the copies: `[b, …]`.
    pub fn sum_copies(&self, copies: usize) -> State {
        State {
            parts: self
                .parts
                .iter()
                .map(|p| match p {
                    Activation::Rank3(t) => {
                        let [n, s, d] = t.dims();
                        Activation::Rank3(
                            t.clone()
                                .reshape([copies, n / copies, s, d])
                                .sum_dim(0)
                                .squeeze_dim(0),
                        )
                    }
                    Activation::Rank4(t) => {
                        let [n, s, h, d] = t.dims();
                        Activation::Rank4(
                            t.clone()
                                .reshape([copies, n / copies, s, h * d])
                                .sum_dim(0)
                                .squeeze_dim::<3>(0)
                                .reshape([n / copies, s, h, d]),
                        )
                    }
                })
                .collect(),
        }
    }
}

/// An element-wise operation of two states.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    /// `a + b`.
    Add,
    /// `a − b`.
    Sub,
}

impl Op {
    fn apply(self, a: Activation, b: Activation) -> Result<Activation> {
        Ok(match (a, b) {
            (Activation::Rank3(a), Activation::Rank3(b)) => Activation::Rank3(match self {
                Op::Add => a + b,
                Op::Sub => a - b,
            }),
            (Activation::Rank4(a), Activation::Rank4(b)) => Activation::Rank4(match self {
                Op::Add => a + b,
                Op::Sub => a - b,
            }),
            _ => return Err(PrismError::Shape("states of different ranks".into())),
        })
    }
}

/// Masks, one per part of a state whose parts have `dims` (batch axis first, `b` rows for one
/// copy), for a pass of `copies` copies: copy `k` covers the elements of every node listed
/// with `k` in `covered`.
pub(crate) fn masks(
    dims: &[Vec<usize>],
    dictionary: bool,
    copies: usize,
    covered: &[(usize, Node)],
) -> Result<Vec<Vec<bool>>> {
    dims.iter()
        .enumerate()
        .map(|(part, d)| {
            let (b, row): (usize, usize) = (d[0], d[1..].iter().product());
            let mut mask = vec![false; copies * b * row];
            for (k, node) in covered {
                for r in node.ranges(dictionary, part, &d[1..])? {
                    for i in 0..b {
                        let start = (k * b + i) * row;
                        mask[start + r.start..start + r.end].fill(true);
                    }
                }
            }
            Ok(mask)
        })
        .collect()
}

/// Sum of `values` (one part's per-element numbers for one batch row, row-major over `dims`
/// without the batch axis) over the elements `node` covers in `part`.
pub(crate) fn node_sum(
    node: &Node,
    dictionary: bool,
    part: usize,
    dims: &[usize],
    values: &[f32],
) -> Result<f64> {
    Ok(node
        .ranges(dictionary, part, dims)?
        .into_iter()
        .map(|r| values[r].iter().map(|&v| f64::from(v)).sum::<f64>())
        .sum())
}
