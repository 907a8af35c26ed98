//! Where a dictionary's training data came from, and evaluation text that is provably not part
//! of it.
//!
//! Training draws rows from a cache (every row of it, shuffled) or from a model stream (the
//! windows it consumed). Either way the training data is a prefix of one *window stream* over a
//! corpus. [`TrainingData`] records that stream and how far it went, and from it the first
//! corpus token (in corpus order) that no training window can contain. Evaluation windows are
//! then cut in corpus order from that token on ([`held_out_windows`]).

use std::path::{Path, PathBuf};

use prism_core::{PrismError, Result};
use prism_models::Tokenizer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::source::Corpus;
use crate::store::ActivationStore;
use crate::windows::{WindowConfig, windows};

/// The `cfg.json` key under which a dictionary records its [`TrainingData`].
pub const TRAINING_DATA_KEY: &str = "training_data";

/// The provenance of a dictionary's training activations.
///
/// ```
/// use prism_cache::{TrainingData, WindowConfig};
/// // 10 windows of 128 tokens in corpus order: corpus tokens 0..1280.
/// let t = TrainingData::stream("corpus.txt".as_ref(), &WindowConfig::default(), 10);
/// assert_eq!(t.corpus_tokens_end, 1280);
/// // Through a shuffle buffer of 4096 windows, any of the first 10 + 4095 may have been used.
/// let shuffled = WindowConfig { seed: Some(1), ..WindowConfig::default() };
/// let t = TrainingData::stream("corpus.txt".as_ref(), &shuffled, 10);
/// assert_eq!(t.corpus_tokens_end, (10 + 4095) * 128);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingData {
    /// The corpus (file or directory), as an absolute path where it could be resolved.
    pub corpus: PathBuf,
    /// How the corpus was cut into windows.
    pub window: WindowConfig,
    /// Windows taken from that stream (in the stream's own, possibly shuffled, order).
    pub windows: u64,
    /// sha256 of the cache's `manifest.json`, when training read a cache.
    pub cache_manifest_sha256: Option<String>,
    /// No training window holds a corpus token at or after this one (counted in corpus order,
    /// EOS separators between documents included).
    pub corpus_tokens_end: u64,
}

impl TrainingData {
    /// A prefix of `windows` windows of the window stream `window` over `corpus`.
    pub fn stream(corpus: &Path, window: &WindowConfig, windows: u64) -> Self {
        let body = window.ctx.saturating_sub(usize::from(window.prepend_bos)) as u64;
        // A seeded stream passes through a shuffle buffer: its first n windows come from the
        // first n + buffer − 1 windows in corpus order.
        let in_order = match window.seed {
            Some(_) if windows > 0 => windows + window.shuffle_windows.max(1) as u64 - 1,
            _ => windows,
        };
        TrainingData {
            corpus: absolute(corpus),
            window: window.clone(),
            windows,
            cache_manifest_sha256: None,
            corpus_tokens_end: in_order * body,
        }
    }

    /// Every window a cache holds (shuffled batches may draw any of its rows).
    pub fn cache(store: &ActivationStore) -> Result<Self> {
        let m = &store.manifest;
        let path = store.dir.join("manifest.json");
        let bytes = std::fs::read(&path).map_err(|e| PrismError::io(&path, e))?;
        let corpus = m.corpus["path"].as_str().ok_or_else(|| PrismError::Cache {
            path: path.clone(),
            message: "the manifest records no corpus path".into(),
        })?;
        Ok(TrainingData {
            cache_manifest_sha256: Some(hex::encode(Sha256::digest(&bytes))),
            ..Self::stream(Path::new(corpus), &m.window, m.windows_done)
        })
    }

    /// Reads the record from a dictionary's `cfg.json` entries (`None` when it has none).
    pub fn from_cfg(cfg: &serde_json::Map<String, serde_json::Value>) -> Result<Option<Self>> {
        cfg.get(TRAINING_DATA_KEY)
            .filter(|v| !v.is_null())
            .map(|v| {
                serde_json::from_value(v.clone()).map_err(|e| {
                    PrismError::InvalidInput(format!("cfg.json's `{TRAINING_DATA_KEY}`: {e}"))
                })
            })
            .transpose()
    }

    /// As a JSON value for `cfg.json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// True when `corpus` is the corpus this training data came from.
    pub fn same_corpus(&self, corpus: &Path) -> bool {
        absolute(corpus) == self.corpus
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Where evaluation text starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalStart {
    /// Right after the training data (an error when the training data is unknown).
    AfterTraining,
    /// After this many windows of the evaluation's own size (an error when they overlap known
    /// training data).
    SkipWindows(usize),
}

/// What to evaluate on.
#[derive(Clone, Debug)]
pub struct HeldOutRequest<'a> {
    /// Window length.
    pub ctx: usize,
    /// Tokens wanted (rounded up to whole windows).
    pub tokens: u64,
    /// Where to start.
    pub start: EvalStart,
    /// The training data of the dictionaries to evaluate (an empty slice: unknown).
    pub training: &'a [TrainingData],
    /// Evaluate anyway where the text may overlap training data (unknown provenance, or an
    /// overlapping `SkipWindows`).
    pub allow_overlap: bool,
}

/// Evaluation windows (corpus order, no BOS) and where they start.
#[derive(Clone, Debug)]
pub struct HeldOut {
    /// The windows.
    pub windows: Vec<Vec<u32>>,
    /// Windows of `ctx` tokens skipped before them.
    pub skipped: usize,
}

/// Cuts evaluation windows from `corpus` that no training window of `request.training` can
/// contain: by default they start at the first corpus token after the furthest training span on
/// the same corpus (training data from another corpus does not constrain them). Unknown
/// training data, or an explicit start inside a training span, is an error unless
/// `allow_overlap` is set.
pub fn held_out_windows(
    corpus: &Corpus,
    tokenizer: &Tokenizer,
    request: &HeldOutRequest<'_>,
) -> Result<HeldOut> {
    let ctx = request.ctx.max(1);
    let end = request
        .training
        .iter()
        .filter(|t| t.same_corpus(&corpus.root))
        .map(|t| t.corpus_tokens_end)
        .max();
    let safe_skip = end.map(|e| e.div_ceil(ctx as u64) as usize);
    let skip = match (request.start, safe_skip) {
        (EvalStart::SkipWindows(k), Some(safe)) if k < safe && !request.allow_overlap => {
            return Err(PrismError::InvalidInput(format!(
                "evaluating after {k} windows of {ctx} tokens would reuse training text: the \
                 dictionary's training data reaches corpus token {} (skip at least {safe} \
                 windows, or pass --allow-overlap)",
                end.unwrap_or(0)
            )));
        }
        (EvalStart::SkipWindows(k), _) => k,
        (EvalStart::AfterTraining, Some(safe)) => safe,
        (EvalStart::AfterTraining, None) if request.training.is_empty() => {
            if !request.allow_overlap {
                return Err(PrismError::InvalidInput(
                    "the dictionary records no `training_data` (where its training activations \
                     came from), so held-out text cannot be chosen: pass --skip-windows N to \
                     start after text you know it was not trained on, or --allow-overlap to \
                     evaluate from the corpus start"
                        .into(),
                ));
            }
            0
        }
        // Trained on other corpora only: this one is held out from its start.
        (EvalStart::AfterTraining, None) => 0,
    };
    let config = WindowConfig {
        ctx,
        ..Default::default()
    };
    let wins: Vec<Vec<u32>> = windows(corpus, tokenizer, config)?
        .skip(skip)
        .take(request.tokens.div_ceil(ctx as u64).max(1) as usize)
        .collect::<Result<_>>()?;
    if wins.is_empty() {
        return Err(PrismError::InvalidInput(format!(
            "{}: no text left for evaluation after skipping {skip} windows of {ctx} tokens",
            corpus.root.display()
        )));
    }
    Ok(HeldOut {
        windows: wins,
        skipped: skip,
    })
}
