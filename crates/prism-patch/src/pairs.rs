//! Clean/corrupted prompt pairs.

use std::path::Path;

use prism_core::{PrismError, Result};
use prism_models::{Model, TokenBatch};
use serde::Deserialize;

/// A clean prompt and a corrupted one of the same token length, with the token the clean
/// prompt should be continued with (`answer`) and the one the corrupted prompt favours
/// (`wrong`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptPair {
    /// Clean prompt tokens.
    pub clean: Vec<u32>,
    /// Corrupted prompt tokens (same length).
    pub corrupt: Vec<u32>,
    /// The clean answer token.
    pub answer: u32,
    /// The corrupted answer token.
    pub wrong: u32,
}

impl PromptPair {
    /// A pair from token ids; unequal lengths are an error.
    pub fn new(clean: Vec<u32>, corrupt: Vec<u32>, answer: u32, wrong: u32) -> Result<Self> {
        if clean.len() != corrupt.len() || clean.is_empty() {
            return Err(PrismError::InvalidInput(format!(
                "the clean prompt has {} tokens and the corrupted one {}: patching needs equal, \
                 non-zero lengths",
                clean.len(),
                corrupt.len()
            )));
        }
        Ok(Self {
            clean,
            corrupt,
            answer,
            wrong,
        })
    }

    /// Tokenises a pair of texts and two answers with the model's tokenizer (exactly as
    /// `prism forward` does); each answer must be exactly one token.
    ///
    /// ```no_run
    /// # fn f(model: &prism_models::Model) -> prism_core::Result<()> {
    /// let pair = prism_patch::PromptPair::from_texts(
    ///     model, "When Mary and John went to the store, John gave a drink to",
    ///     "When Mary and John went to the store, Mary gave a drink to", " Mary", " John")?;
    /// # Ok(()) }
    /// ```
    pub fn from_texts(
        model: &Model,
        clean: &str,
        corrupt: &str,
        answer: &str,
        wrong: &str,
    ) -> Result<Self> {
        let one = |text: &str| -> Result<u32> {
            let ids = model.tokenizer.encode_plain(text)?;
            match ids[..] {
                [id] => Ok(id),
                _ => Err(PrismError::InvalidInput(format!(
                    "the answer {text:?} is {} tokens ({ids:?}); it must be exactly one",
                    ids.len()
                ))),
            }
        };
        Self::new(
            model.encode(clean)?,
            model.encode(corrupt)?,
            one(answer)?,
            one(wrong)?,
        )
    }
}

/// Prompt pairs from a template and a word list: `template` with `{}` filled by one entry's
/// subject is the clean prompt (answer: that entry's answer), filled by another entry's subject
/// the corrupted one (its answer is the wrong one). Entries whose answer is not exactly one token
/// are left out, and only prompts of equal token length are paired; answers within a pair differ.
/// Deterministic for a `seed`; at most `n` pairs, each entry used once as clean.
///
/// ```no_run
/// # fn f(model: &prism_models::Model) -> prism_core::Result<()> {
/// let capitals = vec![("France".to_string(), " Paris".to_string()),
///                     ("Japan".to_string(), " Tokyo".to_string())];
/// let pairs = prism_patch::template_pairs(model, "The capital of {} is", &capitals, 8, 0)?;
/// # Ok(()) }
/// ```
pub fn template_pairs(
    model: &Model,
    template: &str,
    entries: &[(String, String)],
    n: usize,
    seed: u64,
) -> Result<Vec<PromptPair>> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    if !template.contains("{}") {
        return Err(PrismError::InvalidInput(format!(
            "the template {template:?} has no `{{}}` for the subject"
        )));
    }
    // (prompt tokens, answer token) of every usable entry, grouped by prompt length.
    let mut by_length: std::collections::BTreeMap<usize, Vec<(Vec<u32>, u32)>> =
        std::collections::BTreeMap::new();
    for (subject, answer) in entries {
        if let [a] = model.tokenizer.encode_plain(answer)?[..] {
            let prompt = model.encode(&template.replacen("{}", subject, 1))?;
            by_length.entry(prompt.len()).or_default().push((prompt, a));
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut groups: Vec<Vec<(Vec<u32>, u32)>> = by_length
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.shuffle(&mut rng);
            g
        })
        .collect();
    groups.shuffle(&mut rng);
    // Each entry is clean once, against the next entry of its group with another answer.
    let mut out = Vec::new();
    for g in &groups {
        for (i, (clean, answer)) in g.iter().enumerate() {
            let other = (1..g.len())
                .map(|k| &g[(i + k) % g.len()])
                .find(|(_, a)| a != answer);
            if let Some((corrupt, wrong)) = other {
                out.push(PromptPair::new(
                    clean.clone(),
                    corrupt.clone(),
                    *answer,
                    *wrong,
                )?);
            }
        }
    }
    out.shuffle(&mut rng);
    out.truncate(n);
    if out.is_empty() {
        return Err(PrismError::InvalidInput(
            "no two entries give prompts of equal token length with different one-token answers"
                .into(),
        ));
    }
    Ok(out)
}

/// One line of feature-circuits' pair files.
#[derive(Deserialize)]
struct PairLine {
    clean_prefix: String,
    patch_prefix: String,
    clean_answer: String,
    patch_answer: String,
}

/// The pairs of a file, and the lines left out as feature-circuits' `load_examples` leaves them
/// out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairFile {
    /// The usable pairs, in file order.
    pub pairs: Vec<PromptPair>,
    /// Each pair's line in the file (1-based).
    pub lines: Vec<usize>,
    /// Lines whose clean and corrupted prompts have different token lengths.
    pub skipped_unequal_lengths: usize,
    /// Lines with an answer that is not exactly one token.
    pub skipped_multi_token_answers: usize,
}

impl PairFile {
    /// A sentence saying what was left out, or `None` when nothing was.
    pub fn skipped_note(&self) -> Option<String> {
        let skipped = self.skipped_unequal_lengths + self.skipped_multi_token_answers;
        (skipped > 0).then(|| {
            format!(
                "left out {skipped} of {} lines as feature-circuits' load_examples does: {} with \
                 prompts of unequal token length, {} with an answer that is not one token",
                skipped + self.pairs.len(),
                self.skipped_unequal_lengths,
                self.skipped_multi_token_answers
            )
        })
    }
}

/// Reads a JSONL file of pairs in feature-circuits' format (`clean_prefix`, `patch_prefix`,
/// `clean_answer`, `patch_answer`; other keys ignored). As feature-circuits' `load_examples`
/// does, a line whose prompts have different token lengths, or whose answers are not one token
/// each, is left out and counted ([`PairFile`]); a line that is not such an object is an error
/// naming the line, and so is a file with no usable pair.
pub fn read_pairs(path: &Path, model: &Model) -> Result<PairFile> {
    let text = std::fs::read_to_string(path).map_err(|e| PrismError::io(path, e))?;
    let mut out = PairFile {
        pairs: Vec::new(),
        lines: Vec::new(),
        skipped_unequal_lengths: 0,
        skipped_multi_token_answers: 0,
    };
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |e: String| {
            PrismError::InvalidInput(format!("{}, line {}: {e}", path.display(), i + 1))
        };
        let p: PairLine = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
        let clean = model
            .encode(&p.clean_prefix)
            .map_err(|e| at(e.to_string()))?;
        let corrupt = model
            .encode(&p.patch_prefix)
            .map_err(|e| at(e.to_string()))?;
        if clean.len() != corrupt.len() || clean.is_empty() {
            out.skipped_unequal_lengths += 1;
            continue;
        }
        let one = |text: &str| -> Result<Option<u32>> {
            let ids = model
                .tokenizer
                .encode_plain(text)
                .map_err(|e| at(e.to_string()))?;
            Ok(match ids[..] {
                [id] => Some(id),
                _ => None,
            })
        };
        match (one(&p.clean_answer)?, one(&p.patch_answer)?) {
            (Some(answer), Some(wrong)) => {
                out.pairs
                    .push(PromptPair::new(clean, corrupt, answer, wrong)?);
                out.lines.push(i + 1);
            }
            _ => out.skipped_multi_token_answers += 1,
        }
    }
    if out.pairs.is_empty() {
        return Err(PrismError::InvalidInput(format!(
            "{}: no usable prompt pairs{}",
            path.display(),
            out.skipped_note()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        )));
    }
    Ok(out)
}

/// Pairs as two right-padded batches (clean and corrupted rows line up).
#[derive(Clone, Debug)]
pub struct PairBatch {
    /// The clean prompts.
    pub clean: TokenBatch,
    /// The corrupted prompts.
    pub corrupt: TokenBatch,
    /// Answer tokens, one per pair.
    pub answer: Vec<u32>,
    /// Wrong tokens, one per pair.
    pub wrong: Vec<u32>,
}

impl PairBatch {
    /// Batches `pairs`, padding with `pad`.
    pub fn new(pairs: &[PromptPair], pad: u32) -> Result<Self> {
        let clean: Vec<Vec<u32>> = pairs.iter().map(|p| p.clean.clone()).collect();
        let corrupt: Vec<Vec<u32>> = pairs.iter().map(|p| p.corrupt.clone()).collect();
        Ok(Self {
            clean: TokenBatch::from_sequences(&clean, pad)?,
            corrupt: TokenBatch::from_sequences(&corrupt, pad)?,
            answer: pairs.iter().map(|p| p.answer).collect(),
            wrong: pairs.iter().map(|p| p.wrong).collect(),
        })
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.answer.len()
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.answer.is_empty()
    }

    /// Each pair's last real position.
    pub fn last_positions(&self) -> Vec<usize> {
        self.clean.lengths.iter().map(|&l| l - 1).collect()
    }
}
