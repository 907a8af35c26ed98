//! Gemma's SentencePiece vocabulary from a GGUF file, rebuilt as the byte-fallback BPE that
//! `transformers` makes of it (its `GemmaTokenizer` fed by its GGUF reader), so that token ids
//! agree with `transformers` on any text.
//!
//! A GGUF file stores the vocabulary (`tokenizer.ggml.tokens`) and token types but no merges.
//! The merges are recovered from the vocabulary: every token that splits into two tokens of the
//! vocabulary yields those pairs, and the pairs are ranked by the token's position in the file
//! (Gemma's scores do not follow its merge order; its order in the file does), then by the
//! longer left part, then the longer right part. Tokens made only of spaces are stored with real
//! spaces and looked up as `▁` runs, so they are respelled first. Text is normalised by turning
//! spaces into `▁`; bytes no token covers fall back to `<0xNN>` tokens; control tokens (type 3)
//! are special tokens and user-defined ones (type 4) added tokens, both matched whole.

use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, DecoderWrapper, SplitDelimiterBehavior};

/// The SentencePiece word-boundary mark.
const SPACE: char = '▁';

/// The tokenizer `transformers` builds from a Gemma GGUF file's `tokens` and token `types`, with
/// `unk` as the unknown token.
pub(crate) fn gemma_tokenizer(
    tokens: &[&str],
    types: &[u64],
    unk: &str,
) -> std::result::Result<tokenizers::Tokenizer, String> {
    let spelled: Vec<String> = tokens
        .iter()
        .map(|t| {
            if t.contains(' ') && t.trim().is_empty() {
                SPACE.to_string().repeat(t.chars().count())
            } else {
                t.to_string()
            }
        })
        .collect();
    // A repeated spelling keeps its last id, and its rank from its last position, but its place
    // in the walk below from its first (a Python dict's behaviour, which `transformers` relies on).
    let mut vocab: HashMap<String, u32> = HashMap::with_capacity(spelled.len());
    let mut order: Vec<&str> = Vec::with_capacity(spelled.len());
    for (i, t) in spelled.iter().enumerate() {
        if vocab.insert(t.clone(), i as u32).is_none() {
            order.push(t);
        }
    }
    let merges = merges_from_vocabulary(&order, &vocab);
    let mut bpe = BPE::builder()
        .vocab_and_merges(
            vocab
                .iter()
                .map(|(t, &i)| (t.clone(), i))
                .collect::<tokenizers::models::bpe::Vocab>(),
            merges,
        )
        .fuse_unk(true)
        .byte_fallback(true);
    // A vocabulary without its unknown token leaves out what it cannot spell (as `tokenizers`
    // does with no unknown token) instead of failing on it.
    if vocab.contains_key(unk) {
        bpe = bpe.unk_token(unk.to_string());
    }
    let bpe = bpe.build().map_err(|e| e.to_string())?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_normalizer(Some(
        Replace::new(" ", SPACE.to_string()).map_err(|e| e.to_string())?,
    ));
    tokenizer.with_pre_tokenizer(Some(
        Split::new(
            SplitPattern::String(" ".into()),
            SplitDelimiterBehavior::MergedWithPrevious,
            false,
        )
        .map_err(|e| e.to_string())?,
    ));
    let respace = Replace::new(SPACE.to_string(), " ").map_err(|e| e.to_string())?;
    tokenizer.with_decoder(Some(Sequence::new(vec![
        DecoderWrapper::Replace(respace),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ])));
    let whole = |t: &str, special: bool| AddedToken::from(t.to_string(), special).normalized(false);
    let typed = |want: u64| {
        tokens
            .iter()
            .zip(types)
            .filter(move |(_, ty)| **ty == want)
            .map(|(t, _)| *t)
    };
    let control: Vec<AddedToken> = typed(3).map(|t| whole(t, true)).collect();
    tokenizer.add_special_tokens(&control);
    let user: Vec<AddedToken> = typed(4)
        .filter(|t| vocab.contains_key(*t))
        .map(|t| whole(t, false))
        .collect();
    tokenizer.add_tokens(&user);
    Ok(tokenizer)
}

/// The merges a vocabulary implies, best first: each token (in `order`, ranked by its id) split
/// at every character into two tokens of `vocab`, a token's pairs by the ids of their parts;
/// then all pairs by the token's rank, longer left parts first, longer right parts first.
fn merges_from_vocabulary(order: &[&str], vocab: &HashMap<String, u32>) -> Vec<(String, String)> {
    // (rank, left length, right length, left, right), in discovery order.
    let mut pairs: Vec<(u32, usize, usize, String, String)> = Vec::new();
    for token in order {
        let rank = vocab[*token];
        let cuts: Vec<usize> = token.char_indices().map(|(i, _)| i).skip(1).collect();
        let mut local: Vec<(u32, u32, &str, &str)> = cuts
            .iter()
            .filter_map(|&cut| {
                let (l, r) = token.split_at(cut);
                Some((*vocab.get(l)?, *vocab.get(r)?, l, r))
            })
            .collect();
        local.sort_by_key(|&(l, r, ..)| (l, r));
        pairs.extend(local.into_iter().map(|(_, _, l, r)| {
            (
                rank,
                l.chars().count(),
                r.chars().count(),
                l.to_string(),
                r.to_string(),
            )
        }));
    }
    // Best first: lower rank (earlier in the file), then longer parts; a stable sort keeps ties
    // in discovery order, as Python's reversed sort does.
    pairs.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
    pairs.into_iter().map(|(_, _, _, l, r)| (l, r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_follow_file_order_then_longer_parts() {
        let tokens = ["a", "b", "c", "ab", "abc", "bc"];
        let vocab: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let merges = merges_from_vocabulary(&tokens, &vocab);
        let pair = |l: &str, r: &str| (l.to_string(), r.to_string());
        // "ab" (rank 3), then "abc" (rank 4): "ab"+"c" (left 2) before "a"+"bc"; then "bc".
        assert_eq!(
            merges,
            vec![
                pair("a", "b"),
                pair("ab", "c"),
                pair("a", "bc"),
                pair("b", "c")
            ]
        );
    }
}
