//! Tokenizers: HF `tokenizer.json`, or the one a GGUF file's metadata describes (byte-level BPE,
//! or Gemma's SentencePiece vocabulary, `sentencepiece.rs`).

use std::path::{Path, PathBuf};

use prism_core::{PrismError, Result};
use serde_json::json;

use crate::gguf::GgufFile;

/// A text ↔ token-id mapping with the special tokens a model uses.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    /// Beginning-of-sequence token, if the model has one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token, if the model has one.
    pub eos_token_id: Option<u32>,
    /// Padding token (falls back to EOS where a model names none).
    pub pad_token_id: Option<u32>,
    /// Whether `encode` puts BOS in front (GGUF `tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size())
            .field("bos_token_id", &self.bos_token_id)
            .finish()
    }
}

impl Tokenizer {
    /// Loads an HF `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let err = |message: String| PrismError::Tokenizer {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| PrismError::io(path, e))?;
        // The JSON is checked here first: tokenizers 0.22 panics (instead of returning an error)
        // on some malformed JSON inside its `decoder` section (found by prism-fuzz).
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| err(format!("not valid JSON: {e}")))?;
        let inner: tokenizers::Tokenizer = text
            .parse()
            .map_err(|e: tokenizers::Error| err(e.to_string()))?;
        Ok(Self::wrap(inner, path, None, None, None, false))
    }

    fn wrap(
        inner: tokenizers::Tokenizer,
        path: &Path,
        bos: Option<u32>,
        eos: Option<u32>,
        pad: Option<u32>,
        add_bos: bool,
    ) -> Self {
        Self {
            inner,
            path: path.to_path_buf(),
            bos_token_id: bos,
            eos_token_id: eos,
            pad_token_id: pad.or(eos),
            add_bos,
        }
    }

    /// Sets the special-token ids from a model's config (HF `config.json` keys).
    pub fn with_special_ids(
        mut self,
        bos: Option<u32>,
        eos: Option<u32>,
        pad: Option<u32>,
    ) -> Self {
        // Configs sometimes name ids the vocabulary does not have (a resized vocab); ignore those.
        let bound = self.id_bound() as u32;
        let known = |id: Option<u32>| id.filter(|&i| i < bound);
        self.bos_token_id = self.bos_token_id.or(known(bos));
        self.eos_token_id = self.eos_token_id.or(known(eos));
        self.pad_token_id = self.pad_token_id.or(known(pad)).or(self.eos_token_id);
        self
    }

    /// Builds the tokenizer a GGUF file describes the same way HF `transformers` does when it
    /// loads the file: for `tokenizer.ggml.model = gpt2` (byte-level BPE) vocabulary and merges
    /// from the metadata, GPT-2's byte-level pre-tokenizer, control tokens as special tokens; for
    /// Gemma's SentencePiece vocabulary (`llama` in a `gemma*` file), the BPE `transformers`
    /// rebuilds from it (`sentencepiece.rs`).
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let path = gguf.path();
        let err = |message: String| PrismError::Tokenizer {
            path: path.to_path_buf(),
            message,
        };
        let model = gguf.get("tokenizer.ggml.model")?.as_str().unwrap_or("");
        let arch = gguf
            .metadata
            .get("general.architecture")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let gemma = matches!(arch, "gemma" | "gemma2" | "gemma3");
        if model != "gpt2" && !(model == "llama" && gemma) {
            return Err(err(format!(
                "tokenizer.ggml.model = `{model}` ({arch}); Prism reads byte-level BPE (`gpt2`) \
                 tokenizers and Gemma's SentencePiece vocabularies"
            )));
        }
        let tokens = gguf.get_strings("tokenizer.ggml.tokens")?;
        let types: Vec<u64> = match gguf.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .as_array()
                .unwrap_or(&[])
                .iter()
                .map(|t| t.as_u64().unwrap_or(1))
                .collect(),
            None => Vec::new(),
        };
        let id = |k: &str| gguf.token_id(k);
        let add_bos = gguf
            .metadata
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.as_bool());
        if gemma {
            let unk = id("tokenizer.ggml.unknown_token_id")
                .and_then(|i| tokens.get(i as usize).copied())
                .unwrap_or("<unk>");
            let inner = crate::sentencepiece::gemma_tokenizer(&tokens, &types, unk)
                .map_err(|e| err(format!("cannot build Gemma's tokenizer: {e}")))?;
            // `transformers` adds BOS to a SentencePiece vocabulary that does not say otherwise.
            return Ok(Self::wrap(
                inner,
                path,
                id("tokenizer.ggml.bos_token_id"),
                id("tokenizer.ggml.eos_token_id"),
                id("tokenizer.ggml.padding_token_id"),
                add_bos.unwrap_or(true),
            ));
        }
        let merges = gguf.get_strings("tokenizer.ggml.merges")?;
        let alphabet = byte_alphabet();
        let in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));
        let mut vocab = serde_json::Map::new();
        for (i, t) in tokens.iter().enumerate() {
            let spelled = if in_alphabet(t) {
                t.to_string()
            } else {
                t.bytes().map(|b| alphabet[b as usize]).collect()
            };
            vocab.insert(spelled, json!(i));
        }
        let mut added = Vec::new();
        for (i, (t, ty)) in tokens.iter().zip(types.iter()).enumerate() {
            // 3 = control (special), 4 = user-defined (added, not special).
            if (*ty == 3 && in_alphabet(t)) || *ty == 4 {
                added.push(
                    json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": *ty == 3}),
                );
            }
        }
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges},
        });
        let inner: tokenizers::Tokenizer = spec
            .to_string()
            .parse()
            .map_err(|e: tokenizers::Error| err(format!("cannot build the BPE tokenizer: {e}")))?;
        Ok(Self::wrap(
            inner,
            path,
            id("tokenizer.ggml.bos_token_id"),
            id("tokenizer.ggml.eos_token_id"),
            id("tokenizer.ggml.padding_token_id"),
            add_bos.unwrap_or(false),
        ))
    }

    /// Token ids of `text` (with BOS in front when the tokenizer adds one).
    ///
    /// Empty text is an error: a model cannot run on zero tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let body = self.encode_plain(text)?;
        let mut ids = Vec::with_capacity(body.len() + 1);
        if self.add_bos
            && let Some(b) = self.bos_token_id
        {
            ids.push(b);
        }
        ids.extend(body);
        if ids.is_empty() {
            return Err(PrismError::InvalidInput(
                "the text produced no tokens".into(),
            ));
        }
        Ok(ids)
    }

    /// Token ids of `text` with no BOS added (for packing corpus text into windows); empty text
    /// gives no ids.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| PrismError::Tokenizer {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of token ids (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| PrismError::Tokenizer {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }

    /// The text of one token, as it would print (e.g. `" the"`).
    pub fn token_str(&self, id: u32) -> String {
        self.decode(&[id]).unwrap_or_else(|_| format!("<{id}>"))
    }

    /// Number of ids the tokenizer can produce (including added tokens).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The largest id the tokenizer can produce, plus one.
    pub fn id_bound(&self) -> usize {
        self.inner
            .get_vocab(true)
            .values()
            .map(|&v| v as usize + 1)
            .max()
            .unwrap_or(0)
    }

    /// Checks that every id this tokenizer can produce has a row in the model's embedding.
    pub fn check_fits(&self, model_vocab: usize) -> Result<()> {
        let bound = self.id_bound();
        if bound > model_vocab {
            return Err(PrismError::Tokenizer {
                path: self.path.clone(),
                message: format!(
                    "the tokenizer produces ids up to {} but the model's vocabulary has only {model_vocab} \
                     rows: tokenizer and model do not belong together",
                    bound - 1
                ),
            });
        }
        Ok(())
    }
}

/// GPT-2's byte → printable-character map (each of the 256 bytes gets a visible character).
fn byte_alphabet() -> Vec<char> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut extra = 0;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap_or('?')
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap_or('?')
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_alphabet_matches_gpt2() {
        let a = super::byte_alphabet();
        assert_eq!(a[b' ' as usize], 'Ġ');
        assert_eq!(a[b'\n' as usize], 'Ċ');
        assert_eq!(a[b'A' as usize], 'A');
        assert_eq!(
            a.iter().collect::<std::collections::HashSet<_>>().len(),
            256
        );
    }
}
