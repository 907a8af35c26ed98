//! The streaming activation buffer (dictionary_learning's semantics): holds `n_ctxs` windows'
//! worth of activations, serves uniformly random batches without replacement, and refills from
//! the model when half has been served.

use burn::config::Config;
use prism_core::{HostTensor, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::harvest::Harvester;

/// How an [`ActivationBuffer`] fills and serves (dictionary_learning's `n_ctxs`, `ctx_len`,
/// `out_batch_size`), with `prism train`'s defaults.
///
/// ```
/// let c = prism_cache::BufferConfig::new().with_n_ctxs(64).with_batch(1024);
/// assert_eq!((c.n_ctxs, c.ctx, c.batch, c.windows_per_forward), (64, 128, 1024, 8));
/// ```
#[derive(Config, Debug)]
pub struct BufferConfig {
    /// Windows' worth of activations held.
    #[config(default = 256)]
    pub n_ctxs: usize,
    /// Tokens per window.
    #[config(default = 128)]
    pub ctx: usize,
    /// Rows per served batch.
    #[config(default = 8192)]
    pub batch: usize,
    /// Windows run through the model per forward pass when refilling.
    #[config(default = 8)]
    pub windows_per_forward: usize,
    /// Seed of the shuffle.
    #[config(default = 0)]
    pub seed: u64,
}

/// A refilling, shuffling buffer of activations over one or more hook points.
///
/// Rows of all hooks stay aligned: batch `i` of hook A and batch `i` of hook B come from the same
/// tokens.
pub struct ActivationBuffer<'m, W: Iterator<Item = Result<Vec<u32>>>> {
    harvester: Harvester<'m>,
    windows: W,
    capacity: usize,
    batch: usize,
    windows_per_forward: usize,
    data: Vec<Vec<f32>>,
    widths: Vec<usize>,
    unread: Vec<usize>,
    rng: StdRng,
    source_done: bool,
    /// Number of activation rows harvested so far.
    pub rows_harvested: u64,
    /// Number of windows taken from the window stream so far.
    pub windows_consumed: u64,
}

impl<'m, W: Iterator<Item = Result<Vec<u32>>>> ActivationBuffer<'m, W> {
    /// A buffer of `config.n_ctxs` windows of `config.ctx` tokens over `windows`, harvested by
    /// `harvester`.
    pub fn new(harvester: Harvester<'m>, windows: W, config: &BufferConfig) -> Self {
        let widths = harvester.widths();
        Self {
            data: widths.iter().map(|_| Vec::new()).collect(),
            widths,
            harvester,
            windows,
            capacity: config.n_ctxs * config.ctx,
            batch: config.batch.max(1),
            windows_per_forward: config.windows_per_forward.max(1),
            unread: Vec::new(),
            rng: StdRng::seed_from_u64(config.seed),
            source_done: false,
            rows_harvested: 0,
            windows_consumed: 0,
        }
    }

    fn rows(&self) -> usize {
        self.data[0].len() / self.widths[0]
    }

    /// Drops served rows and harvests until the buffer is full (or the corpus ends).
    fn refill(&mut self) -> Result<()> {
        // Keep unread rows only.
        self.unread.sort_unstable();
        for (k, d) in self.data.iter_mut().enumerate() {
            let w = self.widths[k];
            let mut kept = Vec::with_capacity(self.capacity * w);
            for &r in &self.unread {
                kept.extend_from_slice(&d[r * w..(r + 1) * w]);
            }
            *d = kept;
        }
        self.unread = (0..self.rows()).collect();
        while !self.source_done && self.rows() < self.capacity {
            let mut group = Vec::with_capacity(self.windows_per_forward);
            for w in self.windows.by_ref() {
                self.windows_consumed += 1;
                group.push(w?);
                if group.len() == self.windows_per_forward {
                    break;
                }
            }
            if group.len() < self.windows_per_forward {
                self.source_done = true;
            }
            if group.is_empty() {
                break;
            }
            let h = self.harvester.harvest(&group)?;
            let start = self.rows();
            for (d, a) in self.data.iter_mut().zip(&h.acts) {
                d.extend_from_slice(&a.data);
            }
            self.unread.extend(start..start + h.rows());
            self.rows_harvested += h.rows() as u64;
        }
        Ok(())
    }

    /// The next batch: one `[batch, d]` matrix per hook point, or `None` when the corpus is used
    /// up (the last batch may be smaller).
    pub fn next_batch(&mut self) -> Result<Option<Vec<HostTensor>>> {
        if self.unread.len() * 2 <= self.rows() || self.unread.len() < self.batch {
            self.refill()?;
        }
        if self.unread.is_empty() {
            return Ok(None);
        }
        let n = self.batch.min(self.unread.len());
        let mut picked = Vec::with_capacity(n);
        for _ in 0..n {
            let i = self.rng.random_range(0..self.unread.len());
            picked.push(self.unread.swap_remove(i));
        }
        let out = self
            .data
            .iter()
            .zip(&self.widths)
            .map(|(d, &w)| {
                let mut rows = Vec::with_capacity(n * w);
                for &r in &picked {
                    rows.extend_from_slice(&d[r * w..(r + 1) * w]);
                }
                HostTensor::new(vec![n, w], rows)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(out))
    }
}
