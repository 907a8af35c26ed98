//! prism-cache: corpus reading, windows, harvesting, the buffer and the disk store.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use prism_cache::*;
use prism_core::{FloatDtype, HookPoint, Hooks, HostTensor, PrismError};
use prism_models::{Model, TokenBatch};

fn model() -> Model {
    let dir = prism_testkit::fixtures().join("models/llama_gqa");
    Model::load(&dir, &prism_core::device("cpu").unwrap()).unwrap()
}

/// About 4000 characters of varied English in three documents.
fn write_corpus(dir: &Path) -> PathBuf {
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    let words = [
        "sparse",
        "features",
        "model",
        "the",
        "of",
        "activations",
        "layer",
        "attention",
        "dictionary",
        "reads",
        "writes",
        "token",
        "residual",
        "stream",
        "and",
        "a",
        "head",
        "neuron",
        "fires",
        "on",
    ];
    for d in 0..3 {
        let text: String = (0..250)
            .map(|i| words[(i * 7 + d * 3 + i / 5) % words.len()])
            .collect::<Vec<_>>()
            .join(" ");
        std::fs::write(corpus.join(format!("doc{d}.txt")), text + ".\n").unwrap();
    }
    corpus
}

fn options(hooks: Vec<HookPoint>, target: u64) -> CacheOptions {
    CacheOptions {
        hooks,
        window: WindowConfig {
            ctx: 32,
            prepend_bos: false,
            seed: None,
            shuffle_windows: 16,
        },
        drop_bos: false,
        dtype: FloatDtype::F32,
        target_tokens: target,
        windows_per_shard: 4,
        windows_per_forward: 2,
        stop_after_shards: None,
    }
}

#[test]
fn lines_longer_than_16_mib_are_read_in_parts_or_skipped() {
    // A 20 MiB text line of 3-byte characters (so the 16 MiB cut falls inside one): delivered
    // in parts no longer than 16 MiB + one chunk, nothing lost, no character broken.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let long = "€".repeat(7 << 20);
    std::fs::write(p.join("long.txt"), format!("{long}\nshort\n")).unwrap();
    let corpus = Corpus::open(&p.join("long.txt"), "text").unwrap();
    let pieces: Vec<String> = corpus.pieces().map(|r| r.unwrap().text).collect();
    assert!(
        pieces.iter().all(|t| t.len() <= (16 << 20) + (64 << 10)),
        "a piece is too long"
    );
    assert_eq!(pieces.concat(), format!("{long}\nshort\n"));
    // The same line in JSONL is skipped and counted; the next line is read.
    let jsonl = format!("{{\"text\": \"{long}\"}}\n{{\"text\": \"after\"}}\n");
    std::fs::write(p.join("long.jsonl"), jsonl).unwrap();
    let corpus = Corpus::open(&p.join("long.jsonl"), "text").unwrap();
    let mut pieces = corpus.pieces();
    let texts: Vec<String> = pieces.by_ref().map(|r| r.unwrap().text).collect();
    assert_eq!(texts, vec!["after"]);
    assert_eq!(pieces.skipped().too_long, 1);
}

#[test]
fn sources_read_every_format_and_count_what_they_skip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("a.txt"), "first line\nsecond line\n").unwrap();
    let mut jsonl = b"{\"text\": \"from jsonl\"}\n{\"other\": 1}\nnot json\n".to_vec();
    jsonl.extend(b"{\"text\": \"bad \xff utf8\"}\n");
    std::fs::write(p.join("b.jsonl"), jsonl).unwrap();
    let zst = ruzstd::encoding::compress_to_vec(
        &b"{\"text\": \"zipped one\"}\n{\"text\": \"zipped two\"}\n"[..],
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    std::fs::write(p.join("c.jsonl.zst"), zst).unwrap();
    std::fs::write(p.join("d.txt"), "").unwrap();
    std::fs::write(p.join("ignored.bin"), "x").unwrap();
    let corpus = Corpus::open(p, "text").unwrap();
    assert_eq!(corpus.files.len(), 4);
    let mut pieces = corpus.pieces();
    let texts: Vec<String> = pieces.by_ref().map(|r| r.unwrap().text).collect();
    assert_eq!(
        texts,
        vec![
            "first line\nsecond line\n",
            "from jsonl",
            "zipped one",
            "zipped two"
        ]
    );
    assert_eq!(
        pieces.skipped(),
        &SkipCounts {
            invalid_utf8: 1,
            invalid_json: 1,
            missing_field: 1,
            empty_files: 1,
            too_long: 0,
        }
    );
    // A different field name, and corpora with no text at all.
    std::fs::write(p.join("e.jsonl"), "{\"body\": \"custom field\"}\n").unwrap();
    let only = Corpus::open(&p.join("e.jsonl"), "body").unwrap();
    assert_eq!(only.pieces().next().unwrap().unwrap().text, "custom field");
    let empty = Corpus::open(&p.join("d.txt"), "text").unwrap();
    let e = empty.pieces().next().unwrap().unwrap_err();
    assert!(
        matches!(e, PrismError::InvalidInput(_)) && e.to_string().contains("no text"),
        "{e}"
    );
    assert!(Corpus::open(&p.join("ignored.bin"), "text").is_err());
    assert!(Corpus::open(&p.join("missing"), "text").is_err());
}

#[test]
fn windows_are_packed_in_order_and_deterministic_per_seed() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = Corpus::open(&write_corpus(dir.path()), "text").unwrap();
    let m = model();
    let cfg = WindowConfig {
        ctx: 32,
        prepend_bos: false,
        seed: None,
        shuffle_windows: 8,
    };
    let ordered: Vec<Vec<u32>> = windows(&corpus, &m.tokenizer, cfg.clone())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // In order, the windows are the documents' tokens joined by EOS, cut every 32 tokens.
    let eos = m.tokenizer.eos_token_id.unwrap();
    let mut all = Vec::new();
    for (i, f) in corpus.files.iter().enumerate() {
        if i > 0 {
            all.push(eos);
        }
        all.extend(
            m.tokenizer
                .encode_plain(&std::fs::read_to_string(f).unwrap())
                .unwrap(),
        );
    }
    assert_eq!(ordered.len(), all.len() / 32);
    assert_eq!(ordered.concat(), all[..ordered.len() * 32]);
    let seeded = |seed| -> Vec<Vec<u32>> {
        windows(
            &corpus,
            &m.tokenizer,
            WindowConfig {
                seed: Some(seed),
                ..cfg.clone()
            },
        )
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    let (a, b, c) = (seeded(1), seeded(1), seeded(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, ordered);
    let (mut sa, mut so) = (a.clone(), ordered.clone());
    sa.sort();
    so.sort();
    assert_eq!(sa, so, "shuffling must only reorder windows");
    let with_bos: Vec<Vec<u32>> = windows(
        &corpus,
        &m.tokenizer,
        WindowConfig {
            prepend_bos: true,
            ..cfg
        },
    )
    .unwrap()
    .map(Result::unwrap)
    .collect();
    assert!(
        with_bos
            .iter()
            .all(|w| w.len() == 32 && w[0] == m.tokenizer.bos_token_id.unwrap())
    );
}

#[test]
fn cached_activations_equal_a_direct_forward_pass_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = Corpus::open(&write_corpus(dir.path()), "text").unwrap();
    let m = model();
    let hooks = vec![
        HookPoint::MlpOut(1),
        HookPoint::ResidPost(0),
        HookPoint::AttnZ(1),
    ];
    let out = dir.path().join("cache");
    let manifest = build_cache(
        &m,
        &corpus,
        &options(hooks.clone(), 10_000),
        &out,
        &mut |_| {},
    )
    .unwrap();
    assert!(manifest.complete);
    let store = ActivationStore::open(&out).unwrap();
    assert_eq!(store.len(), manifest.token_count);
    let all: Vec<Vec<u32>> = windows(&corpus, &m.tokenizer, options(vec![], 0).window)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        store.len() as usize,
        all.len() * 32,
        "every window's every token is cached"
    );
    // Windows 2..4 were harvested as one forward pass of the first shard; run them directly.
    let batch = TokenBatch::from_sequences(&all[2..4], 0).unwrap();
    let mut direct = m
        .forward(&batch, &Hooks::new().capture_all(hooks.iter().copied()))
        .unwrap();
    let rows: Vec<u64> = (64..128).collect();
    for (k, h) in hooks.iter().enumerate() {
        let want = match direct.take(*h).unwrap() {
            prism_core::Activation::Rank3(t) => HostTensor::from_burn(t).unwrap().data,
            prism_core::Activation::Rank4(t) => HostTensor::from_burn(t).unwrap().data,
        };
        let got = store
            .gather(store.hook_index(&h.to_string()).unwrap(), &rows)
            .unwrap();
        assert_eq!(
            got.data, want,
            "{h}: cached rows differ from the direct forward pass"
        );
        assert_eq!(manifest.hooks[k].d, got.shape[1]);
    }
    // Contexts come back: row 70 is window 2, position 6.
    let (window, pos) = store.context(70).unwrap();
    assert_eq!((window, pos), (all[2].clone(), 6));
}

#[test]
fn store_batches_are_a_global_permutation_that_mixes_shards() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = Corpus::open(&write_corpus(dir.path()), "text").unwrap();
    let m = model();
    let mut opts = options(vec![HookPoint::ResidPost(1)], 10_000);
    opts.windows_per_shard = 2;
    let out = dir.path().join("cache");
    build_cache(&m, &corpus, &opts, &out, &mut |_| {}).unwrap();
    let store = ActivationStore::open(&out).unwrap();
    let n_shards = store.shard_count();
    assert!(n_shards >= 6, "{n_shards} shards");
    // Rows and hooks outside the cache are typed errors, not panics.
    for e in [
        store.gather(0, &[store.len()]).unwrap_err(),
        store.context(u64::MAX).unwrap_err(),
        store.gather(7, &[0]).unwrap_err(),
    ] {
        assert!(matches!(e, PrismError::InvalidInput(_)), "{e}");
    }
    let mut batches = store.shuffled_batches(&[0], 64, 7);
    let mut seen = Vec::new();
    let mut shards_per_batch = Vec::new();
    loop {
        let rows = batches.peek_rows();
        let Some(batch) = batches.next() else { break };
        let batch = batch.unwrap();
        assert_eq!(batch[0], store.gather(0, &rows).unwrap());
        shards_per_batch.push(
            rows.iter()
                .map(|&r| store.shard_of(r).unwrap())
                .collect::<HashSet<_>>()
                .len(),
        );
        seen.extend(rows);
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..store.len()).collect::<Vec<_>>(),
        "served rows must be a permutation of all rows"
    );
    // With 64 of ~700 rows spread uniformly over ≥ 6 shards, every full batch touches most shards.
    let full = &shards_per_batch[..shards_per_batch.len() - 1];
    assert!(
        full.iter().all(|&k| k >= n_shards / 2),
        "shards per batch: {shards_per_batch:?}"
    );
    assert_ne!(seen[..64], (0..64).collect::<Vec<u64>>()[..]);
    // Another seed, another order.
    let other: Vec<u64> = store.shuffled_batches(&[0], 64, 8).peek_rows();
    assert_ne!(other, seen[..64].to_vec());
}

#[test]
fn an_interrupted_harvest_resumes_to_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = Corpus::open(&write_corpus(dir.path()), "text").unwrap();
    let m = model();
    let mut opts = options(vec![HookPoint::MlpOut(0)], 500);
    opts.window.seed = Some(3);
    let whole = build_cache(&m, &corpus, &opts, &dir.path().join("whole"), &mut |_| {}).unwrap();
    assert!(whole.complete && whole.token_count == 500);
    let part = dir.path().join("part");
    let killed = build_cache(
        &m,
        &corpus,
        &CacheOptions {
            stop_after_shards: Some(2),
            ..opts.clone()
        },
        &part,
        &mut |_| {},
    )
    .unwrap();
    assert!(!killed.complete);
    assert_eq!(killed.shards.len(), 2);
    let resumed = build_cache(&m, &corpus, &opts, &part, &mut |_| {}).unwrap();
    assert!(resumed.complete);
    assert_eq!(resumed.token_count, 500);
    assert_eq!(
        resumed.shards, whole.shards,
        "shards (with checksums) must equal the uninterrupted run's"
    );
    // Different settings on an existing cache are refused.
    let other = CacheOptions {
        hooks: vec![HookPoint::MlpOut(1)],
        ..opts
    };
    assert!(matches!(
        build_cache(&m, &corpus, &other, &part, &mut |_| {}).unwrap_err(),
        PrismError::Cache { .. }
    ));
}

/// A corpus shorter than the target ends the harvest with every window cached and the cache
/// complete — also when it is interrupted and resumed — and the manifest (skip counts included)
/// is the same either way: the tokeniser thread runs ahead of the model but never changes what a
/// shard holds.
#[test]
fn a_corpus_shorter_than_the_target_is_cached_whole() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = Corpus::open(&write_corpus(dir.path()), "text").unwrap();
    let m = model();
    let opts = options(vec![HookPoint::MlpOut(0)], 1_000_000);
    let all_windows: Vec<Vec<u32>> = windows(&corpus, &m.tokenizer, opts.window.clone())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let whole = build_cache(&m, &corpus, &opts, &dir.path().join("whole"), &mut |_| {}).unwrap();
    assert!(whole.complete);
    assert_eq!(whole.windows_done, all_windows.len() as u64);
    assert_eq!(whole.token_count, (all_windows.len() * 32) as u64);
    assert_eq!(whole.shards.len(), all_windows.len().div_ceil(4));
    let part = dir.path().join("part");
    let stopped = CacheOptions {
        stop_after_shards: Some(1),
        ..opts.clone()
    };
    let first = build_cache(&m, &corpus, &stopped, &part, &mut |_| {}).unwrap();
    assert!(!first.complete);
    assert_eq!(first.shards.len(), 1);
    let resumed = build_cache(&m, &corpus, &opts, &part, &mut |_| {}).unwrap();
    assert_eq!(resumed.shards, whole.shards);
    assert_eq!(
        (resumed.complete, resumed.windows_done, resumed.token_count),
        (true, whole.windows_done, whole.token_count)
    );
    assert_eq!(resumed.corpus["skipped"], whole.corpus["skipped"]);
}

#[test]
fn corrupt_truncated_or_missing_shards_are_typed_errors_naming_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = Corpus::open(&write_corpus(dir.path()), "text").unwrap();
    let m = model();
    let out = dir.path().join("cache");
    build_cache(
        &m,
        &corpus,
        &options(vec![HookPoint::MlpOut(0)], 300),
        &out,
        &mut |_| {},
    )
    .unwrap();
    let shard = out.join("shard-00001.safetensors");
    let good = std::fs::read(&shard).unwrap();
    let check = |what: &str| {
        let e = ActivationStore::open(&out)
            .err()
            .unwrap_or_else(|| panic!("{what}: opened"));
        assert!(matches!(e, PrismError::Cache { .. }), "{what}: {e}");
        assert!(
            e.to_string().contains("shard-00001.safetensors"),
            "{what}: {e}"
        );
    };
    let mut flipped = good.clone();
    let i = flipped.len() - 10;
    flipped[i] ^= 0x01;
    std::fs::write(&shard, &flipped).unwrap();
    check("flipped byte");
    std::fs::write(&shard, &good[..good.len() / 2]).unwrap();
    check("truncated");
    std::fs::remove_file(&shard).unwrap();
    check("missing");
    std::fs::write(&shard, &good).unwrap();
    assert!(ActivationStore::open(&out).is_ok());
}

#[test]
fn the_buffer_serves_every_harvested_row_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = Corpus::open(&write_corpus(dir.path()), "text").unwrap();
    let m = model();
    let hooks = vec![HookPoint::MlpOut(0), HookPoint::ResidPost(1)];
    let cfg = WindowConfig {
        ctx: 32,
        prepend_bos: false,
        seed: None,
        shuffle_windows: 8,
    };
    let all: Vec<Vec<u32>> = windows(&corpus, &m.tokenizer, cfg.clone())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let direct = Harvester::new(&m, hooks.clone(), false)
        .unwrap()
        .harvest(&all)
        .unwrap();
    let key = |row: &[f32]| row.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
    let d0 = direct.acts[0].shape[1];
    let mut expected: Vec<Vec<u32>> = direct.acts[0].data.chunks(d0).map(key).collect();
    let harvester = Harvester::new(&m, hooks, false).unwrap();
    let stream = windows(&corpus, &m.tokenizer, cfg).unwrap();
    let config = BufferConfig::new()
        .with_n_ctxs(4)
        .with_ctx(32)
        .with_batch(40)
        .with_windows_per_forward(2);
    let mut buffer = ActivationBuffer::new(harvester, stream, &config);
    let mut served = Vec::new();
    let mut first = None;
    while let Some(batch) = buffer.next_batch().unwrap() {
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].shape[0], batch[1].shape[0], "hooks stay aligned");
        first.get_or_insert_with(|| batch[0].data[..d0].to_vec());
        served.extend(batch[0].data.chunks(d0).map(key));
    }
    assert_eq!(buffer.rows_harvested as usize, expected.len());
    served.sort();
    expected.sort();
    assert_eq!(served, expected, "each row served once, none lost");
    assert_ne!(
        first.unwrap(),
        direct.acts[0].data[..d0].to_vec(),
        "the buffer shuffles"
    );
}

#[test]
fn harvesting_on_wgpu_matches_cpu() {
    let Some(device) = prism_testkit::wgpu_device() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let corpus = Corpus::open(&write_corpus(dir.path()), "text").unwrap();
    let cpu = model();
    let gpu = Model::load(&prism_testkit::fixtures().join("models/llama_gqa"), &device).unwrap();
    let cfg = WindowConfig {
        ctx: 32,
        prepend_bos: false,
        seed: None,
        shuffle_windows: 8,
    };
    let wins: Vec<Vec<u32>> = windows(&corpus, &cpu.tokenizer, cfg)
        .unwrap()
        .take(4)
        .map(Result::unwrap)
        .collect();
    let hooks = vec![HookPoint::MlpOut(1), HookPoint::AttnZ(0)];
    let a = Harvester::new(&cpu, hooks.clone(), false)
        .unwrap()
        .harvest(&wins)
        .unwrap();
    let b = Harvester::new(&gpu, hooks, false)
        .unwrap()
        .harvest(&wins)
        .unwrap();
    assert_eq!(a.tokens, b.tokens);
    for (x, y) in a.acts.iter().zip(&b.acts) {
        assert_eq!(x.shape, y.shape);
        let diff = x
            .data
            .iter()
            .zip(&y.data)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-4, "wgpu and cpu activations differ by {diff}");
    }
}

#[test]
fn half_precision_caches_read_back_within_their_rounding() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = Corpus::open(&write_corpus(dir.path()), "text").unwrap();
    let m = model();
    let build = |dtype: FloatDtype| {
        let out = dir.path().join(dtype.to_string());
        build_cache(
            &m,
            &corpus,
            &CacheOptions {
                dtype,
                ..options(vec![HookPoint::ResidPost(1)], 200)
            },
            &out,
            &mut |_| {},
        )
        .unwrap();
        ActivationStore::open(&out).unwrap()
    };
    let exact = build(FloatDtype::F32);
    let rows: Vec<u64> = (0..200).collect();
    let want = exact.gather(0, &rows).unwrap();
    for (dtype, rel) in [
        (FloatDtype::F16, 1.0 / 2048.0),
        (FloatDtype::BF16, 1.0 / 256.0),
    ] {
        let got = build(dtype).gather(0, &rows).unwrap();
        assert_eq!(got.shape, want.shape);
        for (g, w) in got.data.iter().zip(&want.data) {
            assert!((g - w).abs() <= rel * w.abs() + 1e-6, "{dtype}: {g} vs {w}");
        }
    }
}
