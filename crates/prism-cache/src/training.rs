//! Training dictionaries on a cache, as one call: the batches drawn epoch by epoch from all but
//! the cache's last rows, convergence measured on those last rows, and each saved dictionary's
//! `cfg.json` recording where its training data came from ([`TRAINING_DATA_KEY`]) — the policy
//! `prism train --cache`, the demo and the tests share.

use burn::config::Config;
use burn::tensor::Device;
use prism_core::{PrismError, Result};
use prism_sae::Sae;
use prism_sae::train::{ConvergenceOptions, FitOptions, Run, StepLog, fit};

use crate::held_out::{TRAINING_DATA_KEY, TrainingData};
use crate::store::ActivationStore;

/// How dictionaries train on an [`ActivationStore`].
///
/// ```
/// let c = prism_cache::StoreTrainingConfig::new(vec!["blocks.0.hook_mlp_out".into()], 4096, 100)
///     .with_held_out(8192);
/// assert_eq!((c.seed, c.held_out, c.first_measurement), (0, 8192, None));
/// ```
#[derive(Config, Debug)]
pub struct StoreTrainingConfig {
    /// The cached hooks that feed the runs' inputs, by name, in input order.
    pub hooks: Vec<String>,
    /// Rows per batch.
    pub batch: usize,
    /// Optimisation steps in all (a resumed group continues to it).
    pub steps: u64,
    /// A checkpoint every this many steps (0: only at the end).
    #[config(default = 0)]
    pub checkpoint_every: u64,
    /// Seed of the shuffles: epoch `e` draws its order with `seed + e`.
    #[config(default = 0)]
    pub seed: u64,
    /// The cache's last rows (the last text), kept out of training and measured on; 0 for none.
    #[config(default = 0)]
    pub held_out: u64,
    /// The first held-out measurement after this many tokens (four batches where unset).
    #[config(default = "None")]
    pub first_measurement: Option<u64>,
}

/// Trains `runs` (a group at one step, as [`Run::open_group`] opens it) on `store` as `config`
/// says, from the group's step on the same batches an uninterrupted run draws, calls `on_step`
/// after every step, and records the cache as each dictionary's training data. Returns that
/// record.
pub fn train_on_store(
    store: &ActivationStore,
    runs: &mut [Run],
    config: &StoreTrainingConfig,
    device: &Device,
    on_step: impl FnMut(&[Run], &[StepLog]),
) -> Result<TrainingData> {
    let hooks: Vec<usize> = config
        .hooks
        .iter()
        .map(|h| store.hook_index(h))
        .collect::<Result<_>>()?;
    let held_out = config.held_out;
    if held_out >= store.len() {
        return Err(PrismError::InvalidInput(format!(
            "holding out {held_out} rows leaves nothing of the cache's {} rows to train on",
            store.len()
        )));
    }
    let convergence = match held_out {
        0 => None,
        _ => {
            let mut c = ConvergenceOptions::new(store.tail(&hooks, held_out)?);
            c.first_tokens = config.first_measurement.unwrap_or(4 * config.batch as u64);
            Some(c)
        }
    };
    let widths: Vec<usize> = hooks.iter().map(|&h| store.manifest.hooks[h].d).collect();
    let rows = store.len() - held_out;
    let start = runs.first().map_or(0, |r| r.trainer.step);
    let batches = store.epoch_batches(&hooks, config.batch, config.seed, rows, start);
    let options = FitOptions {
        steps: config.steps,
        checkpoint_every: config.checkpoint_every,
        convergence,
    };
    fit(runs, &widths, batches, &options, device, on_step)?;
    // Shuffled batches may draw any row before the held-out tail: the record names the cache.
    let data = TrainingData::cache(store)?;
    for r in runs.iter() {
        Sae::record_in_cfg(&r.dir, TRAINING_DATA_KEY, data.to_json())?;
    }
    Ok(data)
}
