//! The hub client against the loopback stand-in hub (prism-testkit's `HubServer`): what a user
//! meets — downloads into the shared cache layout, sharded weights, resumed transfers, the
//! cache reused offline, tokens, typed errors.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use prism_core::{Hooks, HostTensor, HubProblem, PrismError};
use prism_hub::{Hub, HubConfig, HubRef};
use prism_models::{Model, TokenBatch};
use prism_testkit::fixtures;
use prism_testkit::hub_server::{HubServer, ServedRepo, sha256};

const MODEL: &str = "tiny-org/tiny-llama";

fn serve_model(private: bool, token: Option<&str>) -> (HubServer, ServedRepo) {
    let mut repo = ServedRepo::from_dir(&fixtures().join("models/llama3"));
    if private {
        repo = repo.private();
    }
    let server = HubServer::start(BTreeMap::from([(MODEL.to_string(), repo.clone())]), token);
    (server, repo)
}

fn hub(server: &HubServer, cache: &Path) -> Hub {
    Hub::new(
        HubConfig::new(cache)
            .with_endpoint(&server.url())
            .with_retries(0, Duration::from_millis(10)),
    )
}

fn logits(dir: &Path) -> Vec<f32> {
    let device = prism_core::device("cpu").unwrap();
    let model = Model::load(dir, &device).unwrap();
    let ids = model.encode("The hub serves the same weights.").unwrap();
    let batch = TokenBatch::from_sequences(&[ids], model.pad_id()).unwrap();
    let out = model
        .forward(&batch, &Hooks::new())
        .unwrap()
        .logits()
        .unwrap();
    HostTensor::from_burn(out).unwrap().data
}

fn problem(e: PrismError) -> HubProblem {
    match e {
        PrismError::Hub { problem, .. } => problem,
        other => panic!("expected a hub error, got {other}"),
    }
}

/// Catches: a wrong file choice (tokenizer, weights), a broken link layout, a forward that
/// differs from the local directory's, refs not recorded (offline reuse would fail).
#[test]
fn a_downloaded_model_runs_like_the_local_directory_and_is_reused_offline() {
    let cache = tempfile::tempdir().unwrap();
    let (server, served) = serve_model(false, None);
    let r: HubRef = MODEL.parse().unwrap();
    let mut seen = 0u64;
    let dir = hub(&server, cache.path())
        .model(&r, &mut |t| seen = seen.max(t.done))
        .unwrap();
    let repo = cache.path().join("models--tiny-org--tiny-llama");
    assert_eq!(dir, repo.join("snapshots").join(&served.commit));
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        served.commit
    );
    // The weights are a relative link to the blob named by their sha256, as huggingface_hub
    // lays them out; reference files the model does not need are not downloaded.
    let weights = &served.files["model.safetensors"];
    assert_eq!(
        std::fs::read_link(dir.join("model.safetensors")).unwrap(),
        Path::new("../../blobs").join(sha256(weights))
    );
    assert!(!dir.join("reference.safetensors").exists());
    assert_eq!(
        seen,
        weights.len() as u64,
        "progress reached the weights' size"
    );
    let local = logits(&fixtures().join("models/llama3"));
    assert_eq!(logits(&dir), local);

    // Offline: no request at all, the same snapshot.
    let before = server.log().len();
    let offline = Hub::new(HubConfig::new(cache.path()).with_offline(true));
    assert_eq!(offline.model(&r, &mut |_| {}).unwrap(), dir);
    assert_eq!(server.log().len(), before);
    // The hub gone while online: the cache serves (a lost connection falls back to it).
    let url = server.url();
    drop(server);
    let gone = Hub::new(
        HubConfig::new(cache.path())
            .with_endpoint(&url)
            .with_retries(0, Duration::ZERO),
    );
    assert_eq!(gone.model(&r, &mut |_| {}).unwrap(), dir);
    // Offline with an empty cache: a typed error naming the cache.
    let empty = tempfile::tempdir().unwrap();
    let e = Hub::new(HubConfig::new(empty.path()).with_offline(true))
        .model(&r, &mut |_| {})
        .unwrap_err();
    assert!(matches!(problem(e), HubProblem::NotCached(_)));
}

/// Catches: shards not found through the index, a shard missed, the index's own parsing.
#[test]
fn sharded_weights_are_fetched_through_their_index() {
    let src = fixtures().join("models/llama3");
    let tensors = prism_core::read_safetensors(&src.join("model.safetensors")).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let tmp = tempfile::tempdir().unwrap();
    let mut files = BTreeMap::new();
    let mut weight_map = serde_json::Map::new();
    for (i, part) in names.chunks(names.len().div_ceil(3)).enumerate() {
        let file = format!("model-{:05}-of-00003.safetensors", i + 1);
        let list: Vec<(String, HostTensor)> = part
            .iter()
            .map(|n| ((*n).clone(), tensors[*n].clone()))
            .collect();
        let path = tmp.path().join(&file);
        prism_core::write_safetensors(&path, &list, prism_core::FloatDtype::F32, None).unwrap();
        for n in part {
            weight_map.insert((*n).clone(), file.clone().into());
        }
        files.insert(file, std::fs::read(path).unwrap());
    }
    files.insert(
        "model.safetensors.index.json".into(),
        serde_json::to_vec(&serde_json::json!({"metadata": {}, "weight_map": weight_map})).unwrap(),
    );
    for f in ["config.json", "tokenizer.json"] {
        files.insert(f.into(), std::fs::read(src.join(f)).unwrap());
    }
    // A stray file the index does not name must not be fetched.
    files.insert("extra/ignored.safetensors".into(), vec![0; 8]);
    let server = HubServer::start(
        BTreeMap::from([(MODEL.to_string(), ServedRepo::from_files(files))]),
        None,
    );
    let cache = tempfile::tempdir().unwrap();
    let dir = hub(&server, cache.path())
        .model(&MODEL.parse().unwrap(), &mut |_| {})
        .unwrap();
    assert!(dir.join("model-00003-of-00003.safetensors").exists());
    assert!(!dir.join("extra").exists());
    assert_eq!(logits(&dir), logits(&src));
}

/// Catches: a resumed download that restarts from zero, appends at the wrong offset, or keeps
/// a truncated file as complete.
#[test]
fn a_cut_transfer_resumes_where_it_stopped() {
    let cache = tempfile::tempdir().unwrap();
    let (server, served) = serve_model(false, None);
    let weights = &served.files["model.safetensors"];
    let file: HubRef = format!("{MODEL}/model.safetensors").parse().unwrap();
    server.cut_next(1, 100_000);
    let e = hub(&server, cache.path())
        .file(&file, &mut |_| {})
        .unwrap_err();
    assert!(matches!(problem(e), HubProblem::Connection(_)));
    let part = cache
        .path()
        .join("models--tiny-org--tiny-llama/blobs")
        .join(format!("{}.incomplete", sha256(weights)));
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 100_000);
    let path = hub(&server, cache.path()).file(&file, &mut |_| {}).unwrap();
    assert_eq!(&std::fs::read(path).unwrap(), weights);
    assert!(!part.exists());
    let ranges: Vec<Option<String>> = server
        .log()
        .into_iter()
        .filter(|s| s.path.starts_with("/cdn/"))
        .map(|s| s.range)
        .collect();
    assert_eq!(ranges, [None, Some("bytes=100000-".to_string())]);

    // Within one call: cut twice, retried, whole.
    let cache = tempfile::tempdir().unwrap();
    server.cut_next(2, 50_000);
    let retrying = Hub::new(
        HubConfig::new(cache.path())
            .with_endpoint(&server.url())
            .with_retries(3, Duration::from_millis(5)),
    );
    let path = retrying.file(&file, &mut |_| {}).unwrap();
    assert_eq!(&std::fs::read(path).unwrap(), weights);
}

/// Catches: the token not sent (or sent where it should not be), 401/404 not told apart.
#[test]
fn private_repositories_need_the_token_and_errors_are_typed() {
    let (server, _) = serve_model(true, Some("hf_secret"));
    let r: HubRef = MODEL.parse().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let config = HubConfig::new(cache.path()).with_endpoint(&server.url());
    let e = Hub::new(config.clone()).model(&r, &mut |_| {}).unwrap_err();
    assert_eq!(problem(e), HubProblem::RepoNotFound);
    let e = Hub::new(config.clone().with_token(Some("hf_wrong".into())))
        .model(&r, &mut |_| {})
        .unwrap_err();
    assert_eq!(problem(e), HubProblem::RepoNotFound);
    let with = Hub::new(config.clone().with_token(Some("hf_secret".into())));
    let dir = with.model(&r, &mut |_| {}).unwrap();
    assert!(dir.join("model.safetensors").exists());
    // The token goes to the hub, never to the storage the weights redirect to.
    for s in server.log() {
        if s.path.starts_with("/cdn/") {
            assert!(!s.authorized, "the token was sent to {}", s.path);
        }
    }
    let e = with
        .model(&"tiny-org/absent".parse().unwrap(), &mut |_| {})
        .unwrap_err();
    assert_eq!(problem(e), HubProblem::RepoNotFound);
    let e = with
        .file(
            &format!("{MODEL}/absent.json").parse().unwrap(),
            &mut |_| {},
        )
        .unwrap_err();
    assert_eq!(problem(e), HubProblem::EntryNotFound);
    let e = with
        .model(&format!("{MODEL}@v9").parse().unwrap(), &mut |_| {})
        .unwrap_err();
    assert_eq!(problem(e), HubProblem::RevisionNotFound);
    // Nothing listening: a connection problem, not a panic.
    let port = server.url();
    drop(server);
    let e = Hub::new(HubConfig::new(tempfile::tempdir().unwrap().path()).with_endpoint(&port))
        .model(&r, &mut |_| {})
        .unwrap_err();
    assert!(matches!(problem(e), HubProblem::Connection(_)));
}

/// Catches: a dictionary folder fetched without its files, or a Gemma Scope hook that cannot
/// be derived once the folder sits in the cache (its repository name comes from the cache's
/// `models--ORG--NAME`).
#[test]
fn a_gemma_scope_folder_by_name_opens_with_its_hook() {
    let published = fixtures().join("suites/gemma-scope-2b-pt-res");
    let server = HubServer::start(
        BTreeMap::from([(
            "google/gemma-scope-2b-pt-res".to_string(),
            ServedRepo::from_dir(&published),
        )]),
        None,
    );
    let cache = tempfile::tempdir().unwrap();
    let r: HubRef = "google/gemma-scope-2b-pt-res/layer_1/width_16k/average_l0_10"
        .parse()
        .unwrap();
    let dir = hub(&server, cache.path()).folder(&r, &mut |_| {}).unwrap();
    let device = prism_core::device("cpu").unwrap();
    let sae = prism_sae::Sae::open(&dir, &device).unwrap();
    assert_eq!(sae.hook_name(), Some("blocks.1.hook_resid_post"));
    let local =
        prism_sae::Sae::open(&published.join("layer_1/width_16k/average_l0_10"), &device).unwrap();
    let x = sample_rows(&device, 64);
    use prism_core::Dictionary;
    assert_eq!(
        prism_core::to_vec(sae.forward(x.clone())).unwrap(),
        prism_core::to_vec(local.forward(x)).unwrap()
    );
}

fn sample_rows(device: &prism_core::Device, d: usize) -> prism_core::Tensor<2> {
    let data: Vec<f32> = (0..3 * d)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
        .collect();
    HostTensor::new(vec![3, d], data)
        .unwrap()
        .to_burn(device)
        .unwrap()
}

fn pinned_registry() -> (prism_hub::Registry, serde_json::Value) {
    use std::io::Read;
    let file = std::fs::File::open(fixtures().join("registry/registry.zip")).unwrap();
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let mut read = |name: &str| {
        let mut s = String::new();
        zip.by_name(name).unwrap().read_to_string(&mut s).unwrap();
        s
    };
    let registry = prism_hub::Registry::parse(&read("pretrained_saes.yaml")).unwrap();
    (
        registry,
        serde_json::from_str(&read("directory.json")).unwrap(),
    )
}

/// Catches: a YAML construct of the pinned registry read wrongly (a numeric path, a nested
/// block, a list at its key's indentation), a release or SAE id dropped, a path resolved to
/// another repository or folder than `SAE.from_pretrained` uses.
#[test]
fn every_registry_name_resolves_as_sae_lens_does() {
    let (registry, want) = pinned_registry();
    let want = want.as_object().unwrap();
    assert_eq!(registry.releases().len(), want.len());
    let (mut resolved, mut refused) = (0, 0);
    for (name, w) in want {
        let r = &registry.releases()[name];
        assert_eq!(r.repo_id, w["repo_id"].as_str().unwrap(), "{name}");
        assert_eq!(r.model, w["model"].as_str().unwrap(), "{name}");
        assert_eq!(
            r.conversion.as_deref(),
            w["conversion_func"].as_str(),
            "{name}"
        );
        let saes = w["saes_map"].as_object().unwrap();
        assert_eq!(r.saes.len(), saes.len(), "{name}");
        let norms = w["norm_scaling_factor"].as_object().unwrap();
        assert_eq!(r.norm_scaling_factors.len(), norms.len(), "{name}");
        for (id, f) in norms {
            // serde_json's float parsing may be one unit in the last place off (it is not
            // correctly rounded without its `float_roundtrip` feature); the YAML side is.
            let (got, want) = (r.norm_scaling_factors[id], f.as_f64().unwrap());
            assert!(
                (got - want).abs() <= 4.0 * f64::EPSILON * want.abs(),
                "{name}/{id}"
            );
        }
        for (id, path) in saes {
            let path = path.as_str().unwrap();
            assert_eq!(r.saes[id], path, "{name}/{id}");
            let conversion = r.conversion.as_deref().unwrap_or("sae_lens");
            match registry.resolve(&format!("{name}/{id}")) {
                Ok(Some((hub_ref, _))) => {
                    assert_eq!(hub_ref.repo(), r.repo_id, "{name}/{id}");
                    assert_eq!(hub_ref.path(), Some(path.trim_matches('/')), "{name}/{id}");
                    resolved += 1;
                }
                Err(PrismError::InvalidInput(m))
                    if !prism_hub::READABLE_CONVERSIONS.contains(&conversion) =>
                {
                    assert!(m.contains(conversion), "{m}");
                    refused += 1;
                }
                other => panic!("{name}/{id}: {:?}", other.map(|o| o.map(|(r, _)| r))),
            }
        }
    }
    assert!(resolved > 5000, "{resolved} resolved, {refused} refused");
    println!("{resolved} registry names resolved, {refused} in formats not read yet");
}

/// Catches: a transcoder registry name resolved to another file, the repository's name (which
/// says "transcoders") lost on the way through the cache, so the hooks of a residual SAE are
/// assumed; a single circuit-tracer layer file not read as one.
#[test]
fn registry_names_open_published_transcoders() {
    let transcoders = fixtures().join("transcoders");
    let server = HubServer::start(
        BTreeMap::from([
            (
                "google/gemma-scope-2b-pt-transcoders".to_string(),
                ServedRepo::from_dir(&transcoders.join("gemma-scope-2b-pt-transcoders")),
            ),
            (
                "mwhanna/qwen3-4b-transcoders".to_string(),
                ServedRepo::from_dir(&transcoders.join("circuit-tracer")),
            ),
        ]),
        None,
    );
    let cache = tempfile::tempdir().unwrap();
    let hub = hub(&server, cache.path());
    let (registry, _) = pinned_registry();
    let refs = prism_core::read_safetensors(&transcoders.join("reference.safetensors")).unwrap();
    let device = prism_core::device("cpu").unwrap();
    let x = refs["x"].to_burn::<2>(&device).unwrap();
    for (name, key, hooks) in [
        (
            "gemma-scope-2b-pt-transcoders/layer_1/width_16k/average_l0_65",
            "gemma_scope",
            ("blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out"),
        ),
        (
            "mwhanna-qwen3-4b-transcoders/layer_0",
            "circuit_tracer_0",
            ("blocks.0.mlp.hook_in", "blocks.0.hook_mlp_out"),
        ),
    ] {
        let found = hub.dictionary(name, Some(&registry), &mut |_| {}).unwrap();
        let t = prism_sae::Transcoder::open(&found.path, &device).unwrap();
        assert_eq!(
            (t.hook_name(), t.hook_name_out()),
            (Some(hooks.0), Some(hooks.1)),
            "{name}"
        );
        use prism_core::Dictionary;
        let out = prism_core::to_vec(t.forward(x.clone())).unwrap();
        let want = &refs[&format!("out_{key}")].data;
        let diff = out
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "{name}: outputs differ by {diff}");
    }
}

/// Catches: a cache layout that differs from huggingface_hub's (refs, relative links to blobs),
/// so that what Python downloaded is fetched again or not found offline. The cache was filled by
/// huggingface_hub's own `snapshot_download` from the stand-in hub (scripts/make_fixtures.py
/// --only hub_cache, which also checks the reverse: a cache Prism filled opens in transformers).
#[test]
fn a_cache_filled_by_python_huggingface_hub_is_used_offline() {
    let cache = fixtures().join("hub_cache");
    let offline = Hub::new(HubConfig::new(&cache).with_offline(true));
    let dir = offline.model(&MODEL.parse().unwrap(), &mut |_| {}).unwrap();
    assert!(dir.starts_with(cache.join("models--tiny-org--tiny-llama/snapshots")));
    assert!(
        std::fs::symlink_metadata(dir.join("model.safetensors"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(logits(&dir), logits(&fixtures().join("models/llama3")));
}

/// Catches: a registry name resolved to another folder, the registry's norm scaling factor not
/// reaching the Llama Scope reader (its codes would be those of unscaled inputs), a Gemma Scope
/// hook lost on the way through the cache.
#[test]
fn registry_names_open_the_published_dictionaries_as_sae_lens_does() {
    let suites = fixtures().join("suites");
    let server = HubServer::start(
        BTreeMap::from([
            (
                "google/gemma-scope-2b-pt-res".to_string(),
                ServedRepo::from_dir(&suites.join("gemma-scope-2b-pt-res")),
            ),
            (
                "fnlp/Llama3_1-8B-Base-LXR-8x".to_string(),
                ServedRepo::from_dir(&suites.join("Llama3_1-8B-Base-LXR-8x")),
            ),
        ]),
        None,
    );
    let cache = tempfile::tempdir().unwrap();
    let hub = hub(&server, cache.path());
    let (registry, _) = pinned_registry();
    let refs = prism_core::read_safetensors(&suites.join("reference.safetensors")).unwrap();
    let device = prism_core::device("cpu").unwrap();
    let x = refs["x"].to_burn::<2>(&device).unwrap();
    for (name, key, hook) in [
        (
            "gemma-scope-2b-pt-res/layer_1/width_16k/average_l0_10",
            "gemma_scope",
            "blocks.1.hook_resid_post",
        ),
        (
            "llama_scope_lxr_8x/l1r_8x",
            "llama_scope",
            "blocks.1.hook_resid_post",
        ),
    ] {
        let found = hub.dictionary(name, Some(&registry), &mut |_| {}).unwrap();
        let options =
            prism_sae::OpenOptions::default().with_norm_scaling_factor(found.norm_scaling_factor);
        let sae = prism_sae::Sae::open_with(&found.path, &options, &device).unwrap();
        assert_eq!(sae.hook_name(), Some(hook), "{name}");
        use prism_core::Dictionary;
        let codes = prism_core::to_vec(sae.encode(x.clone())).unwrap();
        let want = &refs[&format!("codes_{key}")].data;
        let diff = codes
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "{name}: codes differ by {diff}");
    }
    let llama = hub
        .dictionary("llama_scope_lxr_8x/l1r_8x", Some(&registry), &mut |_| {})
        .unwrap();
    assert_eq!(
        llama.norm_scaling_factor,
        registry.releases()["llama_scope_lxr_8x"]
            .norm_scaling_factors
            .get("l1r_8x")
            .copied()
    );
}
