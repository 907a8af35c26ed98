//! `Model`: a transformer, its tokenizer, and loading from an HF directory or a GGUF file.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use prism_core::{HookPoint, Hooks, PrismError, Result};

use crate::config::{Architecture, HfConfig, ModelConfig};
use crate::gguf::GgufFile;
use crate::loss::next_token_loss;
use crate::randomize::Randomization;
use crate::tokenizer::Tokenizer;
use crate::transformer::{ForwardOutput, TokenBatch, Transformer};
use crate::weights::SafetensorsDir;
use crate::{gemma, gpt_neox, gpt2, llama, mistral, olmo2, phi3, qwen};

/// A language model ready to run: weights on a device, and its tokenizer.
///
/// ```no_run
/// use prism_core::{HookPoint, Hooks};
/// let device = prism_core::device("cpu")?;
/// let model = prism_models::Model::load("assets/SmolLM2-135M-Instruct.Q4_1.gguf".as_ref(), &device)?;
/// let batch = model.batch(&["The quick brown fox"])?;
/// let mut out = model.forward(&batch, &Hooks::new().capture(HookPoint::MlpOut(15)))?;
/// let mlp_out = out.take(HookPoint::MlpOut(15))?; // [1, seq, 576]
/// # Ok::<(), prism_core::PrismError>(())
/// ```
pub struct Model {
    /// The network.
    pub transformer: Transformer,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Where it was loaded from.
    pub source: PathBuf,
}

impl Model {
    /// Loads a model from an HF directory (`config.json`, `*.safetensors`, `tokenizer.json`) or
    /// a `.gguf` file (weights, config and tokenizer all from the file).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        if path.is_dir() {
            Self::load_hf_dir(path, device)
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            Self::load_gguf(path, device)
        } else if !path.exists() {
            Err(PrismError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            ))
        } else {
            Err(PrismError::Config {
                path: path.to_path_buf(),
                message: "expected an HF model directory or a .gguf file".into(),
            })
        }
    }

    /// Loads an HF-layout directory.
    pub fn load_hf_dir(dir: &Path, device: &Device) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| PrismError::io(&cfg_path, e))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| PrismError::Config {
                path: cfg_path.clone(),
                message: format!("not valid JSON: {e}"),
            })?;
        let hf = HfConfig {
            json: &json,
            path: &cfg_path,
        };
        let model_type = json
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let config = match model_type {
            "gpt_neox" => gpt_neox::config(&hf)?,
            "gpt2" => gpt2::config(&hf)?,
            "llama" => llama::config(&hf)?,
            "mistral" => mistral::config(&hf)?,
            "qwen2" => qwen::config(&hf, Architecture::Qwen2)?,
            "qwen3" => qwen::config(&hf, Architecture::Qwen3)?,
            "gemma" => gemma::config(&hf, Architecture::Gemma)?,
            "gemma2" => gemma::config(&hf, Architecture::Gemma2)?,
            "gemma3_text" => gemma::config(&hf, Architecture::Gemma3)?,
            "phi3" => phi3::config(&hf)?,
            "olmo2" => olmo2::config(&hf)?,
            other => {
                let supported: Vec<&str> =
                    Architecture::ALL.iter().map(|a| a.model_type()).collect();
                let hint = if other == "gemma3" {
                    " (a multimodal Gemma 3 checkpoint; Prism reads the text-only `gemma3_text`)"
                } else {
                    ""
                };
                return Err(PrismError::Config {
                    path: cfg_path,
                    message: format!(
                        "model_type `{other}` is not supported{hint}; supported: {}",
                        supported.join(", ")
                    ),
                });
            }
        };
        config.validate(&cfg_path)?;
        let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?.with_special_ids(
            config.bos_token_id,
            config.eos_token_id,
            config.pad_token_id,
        );
        tokenizer.check_fits(config.vocab_size)?;
        let weights = SafetensorsDir::open(dir)?;
        let transformer = match config.architecture {
            Architecture::GptNeoX => gpt_neox::load(&weights, &config, device)?,
            Architecture::Gpt2 => gpt2::load(&weights, &config, device)?,
            _ => llama::load_hf(&weights, &config, device)?,
        };
        Ok(Self {
            transformer,
            tokenizer,
            source: dir.to_path_buf(),
        })
    }

    /// Loads a llama.cpp GGUF file of any family [`Architecture::gguf_architecture`] names
    /// (weights, config and tokenizer all from the file).
    pub fn load_gguf(path: &Path, device: &Device) -> Result<Self> {
        let gguf = GgufFile::open(path)?;
        let config = llama::config_from_gguf(&gguf)?;
        config.validate(path)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        tokenizer.check_fits(config.vocab_size)?;
        let transformer = llama::load_gguf(&gguf, &config, device)?;
        Ok(Self {
            transformer,
            tokenizer,
            source: path.to_path_buf(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.transformer.config
    }

    /// The device holding the weights.
    pub fn device(&self) -> &Device {
        &self.transformer.device
    }

    /// Token ids of a text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(text)
    }

    /// Tokenises texts into one right-padded batch.
    pub fn batch(&self, texts: &[&str]) -> Result<TokenBatch> {
        let seqs = texts
            .iter()
            .map(|t| self.encode(t))
            .collect::<Result<Vec<_>>>()?;
        TokenBatch::from_sequences(&seqs, self.pad_id())
    }

    /// The id used for padding (the tokenizer's pad, else EOS, else 0).
    pub fn pad_id(&self) -> u32 {
        self.tokenizer
            .pad_token_id
            .or(self.tokenizer.eos_token_id)
            .unwrap_or(0)
    }

    /// Runs the model with hooks.
    pub fn forward(&self, batch: &TokenBatch, hooks: &Hooks) -> Result<ForwardOutput> {
        self.transformer.forward(batch, hooks)
    }

    /// Mean next-token cross-entropy on a batch (padding ignored), with optional interventions.
    pub fn loss(&self, batch: &TokenBatch, hooks: &Hooks) -> Result<f64> {
        next_token_loss(self.forward(batch, hooks)?.logits()?, batch)
    }

    /// Every hook point this model has, with the activation shape for one sequence of `seq` tokens.
    pub fn hook_points(&self, seq: usize) -> Vec<(HookPoint, Vec<usize>)> {
        let shape = self.config().shape();
        HookPoint::all(&shape)
            .into_iter()
            .map(|h| (h, h.activation_shape(&shape, 1, seq)))
            .collect()
    }

    /// A copy with randomised weights (same tokenizer); see [`Transformer::randomized`].
    pub fn randomized(&self, mode: Randomization, seed: u64) -> Result<Model> {
        let tokenizer = if self.source.is_dir() {
            Tokenizer::from_file(&self.source.join("tokenizer.json"))?.with_special_ids(
                self.tokenizer.bos_token_id,
                self.tokenizer.eos_token_id,
                self.tokenizer.pad_token_id,
            )
        } else {
            Tokenizer::from_gguf(&GgufFile::open(&self.source)?)?
        };
        Ok(Model {
            transformer: self.transformer.randomized(mode, seed),
            tokenizer,
            source: self.source.clone(),
        })
    }
}
