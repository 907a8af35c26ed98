//! Packing a corpus's tokens into fixed-length windows.

use std::collections::VecDeque;

use prism_core::{PrismError, Result};
use prism_models::Tokenizer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::source::{Corpus, Pieces, SkipCounts};

/// How token windows are cut from the corpus.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowConfig {
    /// Tokens per window (default 128).
    pub ctx: usize,
    /// Start every window with the BOS token (the window then holds `ctx − 1` corpus tokens).
    pub prepend_bos: bool,
    /// Shuffle windows with this seed through a buffer of `shuffle_windows` windows
    /// (deterministic for a given seed); `None` keeps corpus order.
    pub seed: Option<u64>,
    /// Size of the shuffle buffer, in windows.
    pub shuffle_windows: usize,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            ctx: 128,
            prepend_bos: false,
            seed: None,
            shuffle_windows: 4096,
        }
    }
}

/// Token windows of a corpus, in a deterministic order; see [`windows`].
pub struct Windows<'a> {
    pieces: Pieces<'a>,
    tokenizer: &'a Tokenizer,
    config: WindowConfig,
    body: usize,
    pending: VecDeque<u32>,
    separator: Option<u32>,
    started: bool,
    shuffle: Vec<Vec<u32>>,
    rng: Option<StdRng>,
    exhausted: bool,
}

/// Tokenises `corpus` and packs the tokens into windows of `config.ctx` tokens.
///
/// Documents are concatenated with the EOS token between them (where the tokenizer has one);
/// a final partial window is dropped. With a seed, windows pass through a seeded shuffle buffer
/// so that neighbouring windows do not all come from the same document.
pub fn windows<'a>(
    corpus: &'a Corpus,
    tokenizer: &'a Tokenizer,
    config: WindowConfig,
) -> Result<Windows<'a>> {
    let body = config.ctx.saturating_sub(usize::from(config.prepend_bos));
    if body == 0 {
        return Err(PrismError::InvalidInput(format!(
            "a window of {} tokens holds no text",
            config.ctx
        )));
    }
    if config.prepend_bos && tokenizer.bos_token_id.is_none() {
        return Err(PrismError::InvalidInput(
            "prepend_bos is set but the tokenizer has no BOS token".into(),
        ));
    }
    Ok(Windows {
        pieces: corpus.pieces(),
        tokenizer,
        rng: config.seed.map(StdRng::seed_from_u64),
        body,
        separator: tokenizer.eos_token_id,
        config,
        pending: VecDeque::new(),
        started: false,
        shuffle: Vec::new(),
        exhausted: false,
    })
}

impl Windows<'_> {
    /// What the corpus reader has skipped so far.
    pub fn skipped(&self) -> &SkipCounts {
        self.pieces.skipped()
    }

    /// The next window in corpus order.
    fn next_in_order(&mut self) -> Option<Result<Vec<u32>>> {
        while self.pending.len() < self.body {
            match self.pieces.next()? {
                Err(e) => return Some(Err(e)),
                Ok(piece) => {
                    if piece.starts_document
                        && self.started
                        && let Some(sep) = self.separator
                    {
                        self.pending.push_back(sep);
                    }
                    self.started = true;
                    match self.tokenizer.encode_plain(&piece.text) {
                        Ok(ids) => self.pending.extend(ids),
                        Err(e) => return Some(Err(e)),
                    }
                }
            }
        }
        let mut w = Vec::with_capacity(self.config.ctx);
        if self.config.prepend_bos {
            w.extend(self.tokenizer.bos_token_id);
        }
        w.extend(self.pending.drain(..self.body));
        Some(Ok(w))
    }
}

impl Iterator for Windows<'_> {
    type Item = Result<Vec<u32>>;

    fn next(&mut self) -> Option<Result<Vec<u32>>> {
        if self.rng.is_none() {
            return self.next_in_order();
        }
        while !self.exhausted && self.shuffle.len() < self.config.shuffle_windows.max(1) {
            match self.next_in_order() {
                Some(Ok(w)) => self.shuffle.push(w),
                Some(Err(e)) => return Some(Err(e)),
                None => self.exhausted = true,
            }
        }
        if self.shuffle.is_empty() {
            return None;
        }
        let rng = self.rng.as_mut()?;
        let i = rng.random_range(0..self.shuffle.len());
        Some(Ok(self.shuffle.swap_remove(i)))
    }
}
