//! One fuzz target per file reader, each driven through the same public entry point a user's
//! file goes through (the path-taking loaders, then everything the loaded value offers).

use prism_testkit::fixtures;
use std::path::{Path, PathBuf};

use prism_core::{Device, FloatDtype, PrismError, Result};
use prism_models::{GgufFile, Model, Tokenizer};

use crate::mutate::Format;

/// The readers Prism has for files other people make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A llama.cpp GGUF file: header, metadata, tensor table, every quant type; then the model
    /// config, tokenizer and weights it describes.
    Gguf,
    /// An HF `config.json` (the other files of the model directory stay valid).
    HfConfig,
    /// An HF `model.safetensors`, through Prism's weight loading.
    Safetensors,
    /// An HF `tokenizer.json`, loaded and used to encode and decode.
    TokenizerJson,
    /// A dictionary_learning `ae.pt` (zip + pickle), for every dictionary class.
    AePt,
    /// A SAELens `cfg.json` beside valid weights.
    SaeCfg,
    /// A SAELens `sae_weights.safetensors` beside each valid `cfg.json`.
    SaeWeights,
    /// An activation cache's `manifest.json`, then every row, context and batch it serves.
    CacheManifest,
    /// An activation cache's shard, with the manifest's sha256 updated to match (so the shard
    /// reader itself is reached, not only the checksum).
    CacheShard,
    /// A labelled CSV dataset (geometry-of-truth's format) and its splits.
    ProbeCsv,
    /// A JSONL file of prompt pairs (feature-circuits' format), tokenised by a model.
    PairsJsonl,
    /// GeoNames' countries and cities JSON (capital pairs and city statements).
    Geonames,
    /// A corpus file (`.jsonl`, `.jsonl.zst`, `.rst`), read piece by piece and cut into windows.
    Corpus,
    /// Gemma Scope's `params.npz` (zip + `.npy` arrays), opened as a dictionary.
    Npz,
    /// A sparsify hook folder's `cfg.json` beside valid `sae.safetensors`.
    SparsifyCfg,
    /// The hub's JSON answers: the model-info listing and a sharded model's
    /// `model.safetensors.index.json`.
    HubJson,
    /// SAELens' registry `pretrained_saes.yaml` (Prism's YAML subset reader), every name
    /// resolved.
    RegistryYaml,
    /// A Llama Scope folder's `hyperparams.json` beside valid weights.
    LlamaScopeJson,
    /// A circuit-tracer transcoder file (`layer_N.safetensors`), opened as a transcoder.
    TranscoderFile,
    /// A SAELens transcoder `cfg.json` beside valid weights (with `W_skip`).
    TranscoderCfg,
    /// A circuit-tracer `config.yaml` (the hooks) beside a valid layer file.
    CircuitTracerYaml,
}

impl Target {
    /// Every target, in the order the tests and the long run visit them.
    pub const ALL: [Target; 21] = [
        Target::Gguf,
        Target::HfConfig,
        Target::Safetensors,
        Target::TokenizerJson,
        Target::AePt,
        Target::SaeCfg,
        Target::SaeWeights,
        Target::CacheManifest,
        Target::CacheShard,
        Target::ProbeCsv,
        Target::PairsJsonl,
        Target::Geonames,
        Target::Corpus,
        Target::Npz,
        Target::SparsifyCfg,
        Target::HubJson,
        Target::RegistryYaml,
        Target::LlamaScopeJson,
        Target::TranscoderFile,
        Target::TranscoderCfg,
        Target::CircuitTracerYaml,
    ];

    /// The target's name (the directory of its regression inputs, the long run's argument).
    pub fn name(self) -> &'static str {
        match self {
            Target::Gguf => "gguf",
            Target::HfConfig => "hf-config",
            Target::Safetensors => "safetensors",
            Target::TokenizerJson => "tokenizer-json",
            Target::AePt => "ae-pt",
            Target::SaeCfg => "sae-cfg",
            Target::SaeWeights => "sae-weights",
            Target::CacheManifest => "cache-manifest",
            Target::CacheShard => "cache-shard",
            Target::ProbeCsv => "probe-csv",
            Target::PairsJsonl => "pairs-jsonl",
            Target::Geonames => "geonames",
            Target::Corpus => "corpus",
            Target::Npz => "npz",
            Target::SparsifyCfg => "sparsify-cfg",
            Target::HubJson => "hub-json",
            Target::RegistryYaml => "registry-yaml",
            Target::LlamaScopeJson => "llama-scope-json",
            Target::TranscoderFile => "transcoder-file",
            Target::TranscoderCfg => "transcoder-cfg",
            Target::CircuitTracerYaml => "circuit-tracer-yaml",
        }
    }

    /// The target named `name`.
    ///
    /// ```
    /// use prism_fuzz::Target;
    /// assert_eq!(Target::from_name("gguf"), Some(Target::Gguf));
    /// assert_eq!(Target::from_name("pdf"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Binary or text mutations.
    pub fn format(self) -> Format {
        match self {
            Target::Gguf
            | Target::Safetensors
            | Target::AePt
            | Target::SaeWeights
            | Target::CacheShard
            | Target::Npz
            | Target::TranscoderFile => Format::Binary,
            _ => Format::Text,
        }
    }

    /// The valid files mutations start from: committed fixtures and the excerpts in `seeds/`.
    pub fn seed_files(self) -> Vec<PathBuf> {
        let f = fixtures();
        let s = seeds_dir();
        let saes = ["standard", "topk", "jumprelu", "gated"];
        match self {
            // Every committed GGUF: the quant blocks and one tiny model per family.
            Target::Gguf => {
                let mut files: Vec<PathBuf> = std::fs::read_dir(f.join("gguf"))
                    .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                    .unwrap_or_default();
                files.retain(|p| p.extension().is_some_and(|e| e == "gguf"));
                files.sort();
                files.push(s.join("tiny-llama.gguf"));
                files
            }
            Target::HfConfig => fixture_models()
                .unwrap_or_default()
                .iter()
                .map(|(m, _)| f.join("models").join(m).join("config.json"))
                .collect(),
            Target::Safetensors => vec![f.join("models/llama_gqa/model.safetensors")],
            Target::TokenizerJson => vec![f.join("models/llama_gqa/tokenizer.json")],
            Target::AePt => ["standard", "topk", "batchtopk", "jumprelu", "gated"]
                .iter()
                .map(|a| f.join("ae").join(format!("{a}.pt")))
                .chain([f.join("matryoshka/ae.pt")])
                .collect(),
            Target::SaeCfg => saes
                .iter()
                .map(|a| f.join("sae").join(a).join("cfg.json"))
                .collect(),
            Target::SaeWeights => saes
                .iter()
                .map(|a| f.join("sae").join(a).join("sae_weights.safetensors"))
                .collect(),
            // Built by `prepare`: the seeds are the files of a freshly harvested cache.
            Target::CacheManifest | Target::CacheShard => Vec::new(),
            Target::ProbeCsv => vec![s.join("cities.csv"), s.join("larger_than.csv")],
            Target::PairsJsonl => vec![s.join("pairs.jsonl")],
            Target::Geonames => vec![
                s.join("geonames-countries.json"),
                s.join("geonames-cities.json"),
            ],
            Target::Corpus => vec![
                s.join("corpus.jsonl"),
                s.join("corpus.jsonl.zst"),
                s.join("corpus.rst"),
            ],
            Target::Npz => vec![f.join(GEMMA_SCOPE).join("params.npz")],
            Target::SparsifyCfg => ["layers.1", "layers.2.mlp"]
                .iter()
                .map(|h| f.join("suites/sparsify-run").join(h).join("cfg.json"))
                .collect(),
            Target::HubJson => vec![
                s.join("hub-model-info.json"),
                s.join("model.safetensors.index.json"),
            ],
            Target::RegistryYaml => vec![s.join("pretrained_saes.yaml")],
            Target::LlamaScopeJson => vec![f.join(LLAMA_SCOPE).join("hyperparams.json")],
            Target::TranscoderFile => [0, 1]
                .map(|l| {
                    f.join(CIRCUIT_TRACER)
                        .join(format!("layer_{l}.safetensors"))
                })
                .into(),
            Target::TranscoderCfg => vec![f.join(SAELENS_TRANSCODER).join("cfg.json")],
            Target::CircuitTracerYaml => vec![f.join(CIRCUIT_TRACER).join("config.yaml")],
        }
    }
}

/// The Gemma Scope fixture's folder (its path names the repository and the hook).
const GEMMA_SCOPE: &str = "suites/gemma-scope-2b-pt-res/layer_1/width_16k/average_l0_10";
const CIRCUIT_TRACER: &str = "transcoders/circuit-tracer";
const SAELENS_TRANSCODER: &str = "transcoders/saelens/gemma_scope_2";

/// The Llama Scope fixture's folder.
const LLAMA_SCOPE: &str = "suites/Llama3_1-8B-Base-LXR-8x/Llama3_1-8B-Base-L1R-8x";

/// This crate's `seeds/`.
pub fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds")
}

/// A scratch directory where one target's input files are written and read back.
pub struct Workbench {
    target: Target,
    dir: tempfile::TempDir,
    device: Device,
    /// The model that tokenises pair files and harvested the cache.
    model: Option<Model>,
    /// The tokenizer that cuts corpus files into windows.
    tokenizer: Option<Tokenizer>,
    /// Cache seeds (manifest, shard 0) when the target is a cache file.
    cache_seeds: Vec<Vec<u8>>,
    /// The fixture models `(directory, model_type)` beside which HF configs load.
    models: Vec<(String, String)>,
}

/// The fixture models (tiny, random weights, written by `scripts/make_fixtures.py`): every
/// directory of `fixtures/models` with its `model_type`, by name. Their `config.json` files seed
/// the HF config target (one or more per family), and each fuzzed config is loaded beside the
/// weights of the fixtures of its `model_type`.
fn fixture_models() -> Result<Vec<(String, String)>> {
    let root = fixtures().join("models");
    let mut models = Vec::new();
    for entry in std::fs::read_dir(&root).map_err(|e| PrismError::io(&root, e))? {
        let dir = entry.map_err(|e| PrismError::io(&root, e))?.path();
        let config = dir.join("config.json");
        let Ok(bytes) = std::fs::read(&config) else {
            continue;
        };
        if let (Some(name), Some(kind)) =
            (dir.file_name().and_then(|n| n.to_str()), model_type(&bytes))
        {
            models.push((name.to_string(), kind));
        }
    }
    models.sort();
    Ok(models)
}

const MODEL_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

fn copy_dir_files(from: &Path, to: &Path, files: &[&str]) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| PrismError::io(to, e))?;
    for f in files {
        std::fs::copy(from.join(f), to.join(f)).map_err(|e| PrismError::io(from.join(f), e))?;
    }
    Ok(())
}

impl Workbench {
    /// Prepares the valid surroundings of `target`'s file (a model directory, a dictionary
    /// directory, a harvested cache) in a fresh directory (in `/dev/shm` when it exists).
    pub fn prepare(target: Target) -> Result<Self> {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .map_err(|e| PrismError::io(shm, e))?;
        let device = prism_core::device("cpu")?;
        let f = fixtures();
        let mut model = None;
        let mut cache_seeds = Vec::new();
        let mut tokenizer = None;
        let mut models = Vec::new();
        match target {
            Target::Corpus => {
                // The fixture model's tokenizer, with the BOS id its config.json gives.
                let t = Tokenizer::from_file(&f.join("models/llama_gqa/tokenizer.json"))?;
                tokenizer = Some(t.with_special_ids(Some(1), Some(2), None));
            }
            Target::HfConfig => {
                models = fixture_models()?;
                for (m, _) in &models {
                    copy_dir_files(&f.join("models").join(m), &dir.path().join(m), &MODEL_FILES)?;
                }
            }
            Target::Safetensors | Target::TokenizerJson => {
                copy_dir_files(&f.join("models/llama_gqa"), dir.path(), &MODEL_FILES)?;
            }
            Target::SaeCfg | Target::SaeWeights => {
                for a in ["standard", "topk", "jumprelu", "gated"] {
                    copy_dir_files(
                        &f.join("sae").join(a),
                        &dir.path().join(a),
                        &["cfg.json", "sae_weights.safetensors"],
                    )?;
                }
            }
            Target::PairsJsonl => model = Some(Model::load(&f.join("models/llama_gqa"), &device)?),
            Target::SparsifyCfg => copy_dir_files(
                &f.join("suites/sparsify-run/layers.1"),
                &dir.path().join("layers.1"),
                &["sae.safetensors"],
            )?,
            Target::Npz => {
                let d = dir.path().join(GEMMA_SCOPE);
                std::fs::create_dir_all(&d).map_err(|e| PrismError::io(&d, e))?;
            }
            Target::LlamaScopeJson => copy_dir_files(
                &f.join(LLAMA_SCOPE).join("checkpoints"),
                &dir.path().join("llama-scope/checkpoints"),
                &["final.safetensors"],
            )?,
            Target::TranscoderCfg => copy_dir_files(
                &f.join(SAELENS_TRANSCODER),
                &dir.path().join("transcoder"),
                &["sae_weights.safetensors"],
            )?,
            Target::CircuitTracerYaml => copy_dir_files(
                &f.join(CIRCUIT_TRACER),
                &dir.path().join("circuit-tracer"),
                &["layer_0.safetensors"],
            )?,
            Target::CacheManifest | Target::CacheShard => {
                let m = Model::load(&f.join("models/llama_gqa"), &device)?;
                let corpus = prism_cache::Corpus::open(&seeds_dir().join("corpus.jsonl"), "text")?;
                let options = prism_cache::CacheOptions {
                    hooks: vec![
                        "blocks.0.hook_resid_post".parse()?,
                        "blocks.1.mlp.hook_post".parse()?,
                    ],
                    window: prism_cache::WindowConfig {
                        ctx: 16,
                        prepend_bos: false,
                        seed: None,
                        shuffle_windows: 4,
                    },
                    drop_bos: false,
                    dtype: FloatDtype::BF16,
                    target_tokens: 96,
                    windows_per_shard: 2,
                    windows_per_forward: 2,
                    stop_after_shards: None,
                };
                let cache = dir.path().join("cache");
                prism_cache::build_cache(&m, &corpus, &options, &cache, &mut |_| {})?;
                let manifest = prism_cache::Manifest::load(&cache)?;
                let read = |p: PathBuf| std::fs::read(&p).map_err(|e| PrismError::io(&p, e));
                cache_seeds = match target {
                    Target::CacheManifest => vec![read(cache.join("manifest.json"))?],
                    _ => manifest
                        .shards
                        .iter()
                        .map(|s| read(cache.join(&s.file)))
                        .collect::<Result<_>>()?,
                };
                std::fs::copy(
                    cache.join("manifest.json"),
                    dir.path().join("manifest.valid"),
                )
                .map_err(|e| PrismError::io(&cache, e))?;
            }
            _ => {}
        }
        Ok(Self {
            target,
            dir,
            device,
            model,
            tokenizer,
            cache_seeds,
            models,
        })
    }

    /// The seeds' bytes.
    pub fn seeds(&self) -> Result<Vec<Vec<u8>>> {
        let mut out = self.cache_seeds.clone();
        for p in self.target.seed_files() {
            out.push(std::fs::read(&p).map_err(|e| PrismError::io(&p, e))?);
        }
        Ok(out)
    }

    fn write(&self, rel: impl AsRef<Path>, bytes: &[u8]) -> Result<PathBuf> {
        let p = self.dir.path().join(rel);
        std::fs::write(&p, bytes).map_err(|e| PrismError::io(&p, e))?;
        Ok(p)
    }

    /// Writes `input` as the target's file and reads it the way a user's file is read. `Ok` and
    /// typed errors are both fine; the campaign catches what is not (panics, huge allocations).
    pub fn run(&self, input: &[u8]) -> Result<()> {
        let d = &self.device;
        let root = self.dir.path();
        match self.target {
            Target::Gguf => {
                let p = self.write("model.gguf", input)?;
                let g = GgufFile::open(&p)?;
                for name in g.tensors.keys() {
                    let _ = g.tensor(name);
                }
                if let Ok(t) = Tokenizer::from_gguf(&g) {
                    exercise_tokenizer(&t);
                }
                // A file of tensors only (the quant seed) is fine as a GGUF file; one that
                // describes a model must load as one.
                let describes_a_model = ["llama", "gemma3"]
                    .iter()
                    .any(|arch| g.metadata.contains_key(&format!("{arch}.block_count")));
                drop(g);
                let loaded = Model::load(&p, d).map(|m| exercise_model(&m));
                if describes_a_model { loaded } else { Ok(()) }
            }
            Target::HfConfig => {
                // Beside the weights of each fixture model of the config's type (a type no
                // fixture has: beside the Llama ones).
                let kind = model_type(input);
                let mut dirs: Vec<&str> = self
                    .models
                    .iter()
                    .filter(|(_, t)| Some(t) == kind.as_ref())
                    .map(|(m, _)| m.as_str())
                    .collect();
                if dirs.is_empty() {
                    dirs = vec!["llama_gqa", "llama_tied"];
                }
                let mut outcomes = Vec::new();
                for dir in dirs {
                    let dir = root.join(dir);
                    self.write(dir.join("config.json"), input)?;
                    outcomes.push(Model::load(&dir, d).map(|m| exercise_model(&m)));
                }
                any_ok(outcomes)
            }
            Target::Safetensors => {
                self.write("model.safetensors", input)?;
                Model::load(root, d).map(|m| exercise_model(&m))
            }
            Target::TokenizerJson => {
                let p = self.write("tokenizer.json", input)?;
                exercise_tokenizer(&Tokenizer::from_file(&p)?);
                Model::load(root, d).map(|_| ())
            }
            Target::AePt => {
                let p = self.write("ae.pt", input)?;
                let _ = prism_sae::read_state_dict(&p);
                prism_sae::Sae::open(&p, d).map(|_| ())
            }
            Target::SaeCfg => {
                let arch = json_str(input, "architecture").unwrap_or_default();
                let a = if ["topk", "jumprelu", "gated"].contains(&arch.as_str()) {
                    arch
                } else {
                    "standard".into()
                };
                self.write(Path::new(&a).join("cfg.json"), input)?;
                prism_sae::Sae::open(&root.join(a), d).map(|_| ())
            }
            Target::SaeWeights => {
                // Beside every architecture's cfg.json; fine when one of them takes it.
                let mut outcomes = Vec::new();
                for a in ["standard", "topk", "jumprelu", "gated"] {
                    let dir = root.join(a);
                    let valid = fixtures()
                        .join("sae")
                        .join(a)
                        .join("sae_weights.safetensors");
                    self.write(dir.join("sae_weights.safetensors"), input)?;
                    outcomes.push(prism_sae::Sae::open(&dir, d).map(|_| ()));
                    std::fs::copy(&valid, dir.join("sae_weights.safetensors"))
                        .map_err(|e| PrismError::io(&valid, e))?;
                }
                any_ok(outcomes)
            }
            Target::CacheManifest => {
                self.write("cache/manifest.json", input)?;
                exercise_cache(&root.join("cache"))
            }
            Target::CacheShard => {
                let cache = root.join("cache");
                let mut manifest: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(root.join("manifest.valid"))
                        .map_err(|e| PrismError::io(root, e))?,
                )
                .map_err(|e| PrismError::InvalidInput(e.to_string()))?;
                let file = manifest["shards"][0]["file"]
                    .as_str()
                    .unwrap_or("shard-00000.safetensors")
                    .to_string();
                self.write(cache.join(&file), input)?;
                use sha2::Digest;
                manifest["shards"][0]["sha256"] = hex::encode(sha2::Sha256::digest(input)).into();
                self.write(cache.join("manifest.json"), manifest.to_string().as_bytes())?;
                exercise_cache(&cache)
            }
            Target::ProbeCsv => {
                let p = self.write("cities.csv", input)?;
                let data = prism_probe::LabelledDataset::read_csv(&p)?;
                let _ = data.split(0.25, Some("country"), 1);
                let _ = data.column("city");
                let _ = data.to_csv_string();
                Ok(())
            }
            Target::PairsJsonl => {
                let p = self.write("pairs.jsonl", input)?;
                let model = self
                    .model
                    .as_ref()
                    .ok_or_else(|| PrismError::InvalidInput("no model".into()))?;
                let file = prism_patch::read_pairs(&p, model)?;
                prism_patch::PairBatch::new(&file.pairs, model.pad_id()).map(|_| ())
            }
            Target::Geonames => {
                let p = self.write("countries.json", input)?;
                // As the countries file (capitals; cities' countries) and as the cities file.
                let countries = seeds_dir().join("geonames-countries.json");
                let cities = seeds_dir().join("geonames-cities.json");
                let statements = |c: Vec<prism_probe::City>| {
                    prism_probe::city_statements(&c, false, 0).map(|_| ())
                };
                any_ok(vec![
                    prism_patch::geonames_capitals(&p).map(|_| ()),
                    prism_probe::geonames_cities(&cities, &p, 0).and_then(statements),
                    prism_probe::geonames_cities(&p, &countries, 0).and_then(statements),
                ])
            }
            Target::Npz => {
                let p = self.write(Path::new(GEMMA_SCOPE).join("params.npz"), input)?;
                let _ = prism_sae::npz::read_npz(&p);
                let sae = prism_sae::Sae::open(&root.join(GEMMA_SCOPE), d)?;
                exercise_dictionary(&sae, d)
            }
            Target::SparsifyCfg => {
                self.write("layers.1/cfg.json", input)?;
                let sae = prism_sae::Sae::open(&root.join("layers.1"), d)?;
                exercise_dictionary(&sae, d)
            }
            Target::HubJson => {
                let text = String::from_utf8_lossy(input);
                let listing = prism_hub::parse_listing(&text).map(|l| l.under("layer_3"));
                let shards = prism_models::shards_of_index(&text);
                match (listing, shards) {
                    (Err(e), Err(_)) => Err(PrismError::InvalidInput(e.to_string())),
                    _ => Ok(()),
                }
            }
            Target::RegistryYaml => {
                let registry = prism_hub::Registry::parse(&String::from_utf8_lossy(input))
                    .map_err(PrismError::InvalidInput)?;
                for (name, release) in registry.releases() {
                    for id in release.saes.keys() {
                        let _ = registry.resolve(&format!("{name}/{id}"));
                    }
                }
                Ok(())
            }
            Target::LlamaScopeJson => {
                self.write("llama-scope/hyperparams.json", input)?;
                let options =
                    prism_sae::OpenOptions::default().with_norm_scaling_factor(Some(60.0));
                let sae = prism_sae::Sae::open_with(&root.join("llama-scope"), &options, d)?;
                exercise_dictionary(&sae, d)
            }
            Target::TranscoderFile => {
                let p = self.write("layer_0.safetensors", input)?;
                let t = prism_sae::Transcoder::open(&p, d)?;
                exercise_dictionary(&t, d)
            }
            Target::TranscoderCfg => {
                self.write("transcoder/cfg.json", input)?;
                let t = prism_sae::Transcoder::load(&root.join("transcoder"), d)?;
                exercise_dictionary(&t, d)
            }
            Target::CircuitTracerYaml => {
                use prism_core::Dictionary;
                self.write("circuit-tracer/config.yaml", input)?;
                let t = prism_sae::Transcoder::open(
                    &root.join("circuit-tracer/layer_0.safetensors"),
                    d,
                )?;
                let shape = prism_core::ModelShape {
                    n_layers: 2,
                    d_model: t.d_in(),
                    n_heads: 1,
                    d_head: t.d_in(),
                    d_mlp: 4 * t.d_in(),
                    parallel_residual: false,
                    learned_positions: false,
                };
                t.hooks(&shape, None, None)?;
                exercise_dictionary(&t, d)
            }
            Target::Corpus => {
                let name = if input.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                    "corpus.jsonl.zst"
                } else if input.first() == Some(&b'{') {
                    "corpus.jsonl"
                } else {
                    "corpus.rst"
                };
                let p = self.write(name, input)?;
                let corpus = prism_cache::Corpus::open(&p, "text")?;
                for piece in corpus.pieces() {
                    piece?;
                }
                let tokenizer = self
                    .tokenizer
                    .as_ref()
                    .ok_or_else(|| PrismError::InvalidInput("no tokenizer".into()))?;
                let config = prism_cache::WindowConfig {
                    ctx: 8,
                    prepend_bos: true,
                    seed: Some(1),
                    shuffle_windows: 4,
                };
                for w in prism_cache::windows(&corpus, tokenizer, config)? {
                    w?;
                }
                Ok(())
            }
        }
    }
}

/// Encodes and decodes a few rows with a loaded dictionary.
fn exercise_dictionary(sae: &impl prism_core::Dictionary, d: &Device) -> Result<()> {
    let x = burn::tensor::Tensor::<2>::ones([2, sae.d_in()], d);
    let _ = prism_core::to_vec(sae.forward(x))?;
    Ok(())
}

/// `Ok` when one outcome is, else the first error.
fn any_ok(outcomes: Vec<Result<()>>) -> Result<()> {
    let mut first = None;
    for o in outcomes {
        match o {
            Ok(()) => return Ok(()),
            Err(e) => first = first.or(Some(e)),
        }
    }
    first.map_or(Ok(()), Err)
}

fn model_type(input: &[u8]) -> Option<String> {
    json_str(input, "model_type")
}

fn json_str(input: &[u8], key: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(input).ok()?;
    v.get(key)?.as_str().map(str::to_string)
}

fn exercise_tokenizer(t: &Tokenizer) {
    if let Ok(ids) = t.encode("The city of Paris is in France.\n\tdef f(x): return x ** 2") {
        let _ = t.decode(&ids);
        for &id in &ids {
            let _ = t.token_str(id);
        }
    }
    let _ = t.decode(&[0, 1, u32::MAX]);
    let _ = t.token_str(u32::MAX);
}

/// A short forward pass with every hook point listed: shapes read from a file decide them.
fn exercise_model(m: &Model) {
    let _ = m.hook_points(4);
    if let Ok(batch) = m.batch(&["The city of Paris"]) {
        let _ = m.loss(&batch, &prism_core::Hooks::default());
    }
}

fn exercise_cache(dir: &Path) -> Result<()> {
    let store = prism_cache::ActivationStore::open(dir)?;
    let mut row = Vec::new();
    for hook in 0..store.manifest.hooks.len() {
        for r in 0..store.len() {
            store.read_row(hook, r, &mut row)?;
        }
        let _ = store.gather(hook, &[0, store.len().saturating_sub(1)]);
    }
    for r in 0..store.len() {
        let _ = store.context(r);
    }
    let mut batches = store.shuffled_batches(&[0], 8, 1);
    for b in batches.by_ref() {
        b?;
    }
    Ok(())
}
