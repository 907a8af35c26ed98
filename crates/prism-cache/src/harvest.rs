//! Harvesting: one forward pass per batch of windows captures every requested hook point.

use prism_core::{Activation, HookPoint, Hooks, HostTensor, PrismError, Result};
use prism_models::{Model, TokenBatch};

/// Activations of one batch of windows: one `[rows, d]` matrix per hook point, plus the token
/// id and the (window, position) each row came from.
#[derive(Clone, Debug)]
pub struct Harvest {
    /// Per hook (in the harvester's order): `[rows, d]`.
    pub acts: Vec<HostTensor>,
    /// Token id at each kept row.
    pub tokens: Vec<u32>,
    /// `window · ctx + position` of each kept row, the window counted within the batch.
    pub origin: Vec<u32>,
}

impl Harvest {
    /// Number of activation rows.
    pub fn rows(&self) -> usize {
        self.tokens.len()
    }
}

/// Captures a fixed set of hook points from a model, dropping positions that are padding or (if
/// asked) BOS.
pub struct Harvester<'m> {
    /// The model.
    pub model: &'m Model,
    /// The hook points, in the order their activations are returned.
    pub hooks: Vec<HookPoint>,
    /// Drop rows whose token is BOS.
    pub drop_bos: bool,
    plan: Hooks,
}

impl<'m> Harvester<'m> {
    /// Checks the hook points exist on the model and give one vector per token.
    pub fn new(model: &'m Model, hooks: Vec<HookPoint>, drop_bos: bool) -> Result<Self> {
        if hooks.is_empty() {
            return Err(PrismError::InvalidInput("no hook points to harvest".into()));
        }
        let shape = model.config().shape();
        for h in &hooks {
            h.validate(&shape)?;
            if matches!(h, HookPoint::AttnPattern(_)) {
                return Err(PrismError::Hook {
                    hook: h.to_string(),
                    message: "attention patterns are not one vector per token and cannot be cached"
                        .into(),
                });
            }
        }
        let plan = Hooks::new().capture_all(hooks.iter().copied());
        Ok(Self {
            model,
            hooks,
            drop_bos,
            plan,
        })
    }

    /// Width of each hook's vectors (`hook_z` flattens heads: `n_heads · d_head`).
    pub fn widths(&self) -> Vec<usize> {
        let shape = self.model.config().shape();
        self.hooks
            .iter()
            .map(|h| h.activation_shape(&shape, 1, 1)[2..].iter().product())
            .collect()
    }

    /// Runs one forward pass over `windows` (equal lengths) and returns the kept rows.
    pub fn harvest(&self, windows: &[Vec<u32>]) -> Result<Harvest> {
        let batch = TokenBatch::from_sequences(windows, self.model.pad_id())?;
        if batch.lengths.iter().any(|&l| l != batch.seq) {
            return Err(PrismError::InvalidInput(
                "harvest windows must all have the same length".into(),
            ));
        }
        let mut out = self.model.transformer.capture_only(&batch, &self.plan)?;
        let bos = if self.drop_bos {
            self.model.tokenizer.bos_token_id
        } else {
            None
        };
        let keep: Vec<usize> = (0..batch.ids.len())
            .filter(|&i| Some(batch.ids[i]) != bos)
            .collect();
        let mut acts = Vec::with_capacity(self.hooks.len());
        for h in &self.hooks {
            let flat = match out.take(*h)? {
                Activation::Rank3(t) => HostTensor::from_burn(t)?,
                Activation::Rank4(t) => HostTensor::from_burn(t)?,
            };
            let d = flat.len() / batch.ids.len();
            acts.push(if keep.len() == batch.ids.len() {
                HostTensor::new(vec![keep.len(), d], flat.data)?
            } else {
                let mut data = Vec::with_capacity(keep.len() * d);
                for &i in &keep {
                    data.extend_from_slice(&flat.data[i * d..(i + 1) * d]);
                }
                HostTensor::new(vec![keep.len(), d], data)?
            });
        }
        Ok(Harvest {
            acts,
            tokens: keep.iter().map(|&i| batch.ids[i]).collect(),
            origin: keep.iter().map(|&i| i as u32).collect(),
        })
    }
}
