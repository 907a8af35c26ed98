//! Crash consistency of the long jobs: `prism cache` and `prism train` killed with SIGKILL —
//! half the trials at a seeded random moment of the run, half at the first file write in
//! progress after such a moment (a shard, the manifest, a checkpoint) — then run again to
//! resume, end bit-identical to an uninterrupted run; a write that fails (the file-size limit of
//! `ulimit -f`, a real `EFBIG` from the kernel) is a clear error that leaves the last good state
//! readable and resumable.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fixtures;

/// Trials per job (the issue asks for ≥ 20); `PRISM_CRASH_TRIALS` raises it for a long run.
fn trials() -> u64 {
    std::env::var("PRISM_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// splitmix64: the kill moments are a function of the trial number, so a failure replays.
fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as f64 / u64::MAX as f64
}

fn corpus(dir: &Path) -> PathBuf {
    let path = dir.join("corpus.txt");
    let text: String = (0..300)
        .map(|i| format!("Paragraph {i}: attention heads move information between positions, and the MLP layers write features into the residual stream.\n\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn cache_args(data: &Path, out: &Path, tokens: &str) -> Vec<String> {
    let model = fixtures().join("models/llama_gqa");
    [
        "cache",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--hooks",
        "blocks.0.hook_resid_post,blocks.1.hook_mlp_out",
        "--tokens",
        tokens,
        "--ctx",
        "32",
        "--shard-windows",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

fn train_args(cache: &Path, out: &Path, tokens: &str) -> Vec<String> {
    let mut args = common::topk_train_args(cache, out, 8, 256, tokens, 32);
    args.extend(
        [
            "--warmup",
            "2",
            "--seed",
            "3",
            "--checkpoint-every",
            "2",
            "--resume",
        ]
        .map(String::from),
    );
    args
}

fn command(args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_prism"));
    c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// In `dir`: the corpus, its 3000-token cache (`dir/cache`) and an uninterrupted 2880-token
/// training run on it (`dir/reference`), with that run's wall time.
fn trained_reference(dir: &Path) -> (PathBuf, PathBuf, PathBuf, Duration) {
    let data = corpus(dir);
    let cache = dir.join("cache");
    complete(&cache_args(&data, &cache, "3000"));
    let reference = dir.join("reference");
    let full = complete(&train_args(&cache, &reference, "2880"));
    (data, cache, reference, full)
}

/// Runs to the end; panics with stderr on failure. Returns the wall time.
fn complete(args: &[String]) -> Duration {
    let start = Instant::now();
    let out = command(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

/// Starts the job and SIGKILLs it after `after` (if it has not finished by then).
fn kill_after(args: &[String], after: Duration) -> bool {
    let mut child = command(args).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + after;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    true
}

/// Whether `dir` holds a temporary file of an atomic write in progress.
fn writing(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with('.') && name.contains(".tmp-")
        })
    })
}

/// Starts the job, waits `after`, then SIGKILLs it the moment a file write is in progress in
/// `dir` (a temporary file exists). False if the job finished first.
fn kill_inside_a_write(args: &[String], dir: &Path, after: Duration) -> bool {
    let mut child = command(args).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(after);
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if writing(dir) {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
    }
}

/// Kills the job at `at` (even trials), or at the first write in progress after `at` (odd
/// trials); returns (killed mid-run, killed inside a write).
fn interrupt(trial: u64, args: &[String], dir: &Path, at: Duration) -> (bool, bool) {
    let killed = if trial.is_multiple_of(2) {
        kill_after(args, at)
    } else {
        kill_inside_a_write(args, dir, at)
    };
    (killed, writing(dir))
}

/// Every file under `dir` (relative path → bytes), the hidden temporary files of an
/// interrupted atomic write excepted (they are never read; listed separately).
fn files(dir: &Path) -> (BTreeMap<String, Vec<u8>>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut stale = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp-") {
            stale.push(name);
        } else if e.path().is_file() {
            out.insert(name, std::fs::read(e.path()).unwrap());
        }
    }
    (out, stale)
}

fn assert_same(reference: &Path, resumed: &Path, what: &str) {
    let (a, _) = files(reference);
    let (b, stale) = files(resumed);
    assert!(
        stale.is_empty(),
        "{what}: temporary files of the killed run were left behind: {stale:?}"
    );
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}: different files"
    );
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{what}: {name} differs");
    }
}

/// Kills `job`'s command (built by `args` for an output directory) in each trial, runs it
/// again, and requires the result to equal `reference` file for file, byte for byte.
fn kill_and_resume(
    job: &str,
    tmp: &Path,
    reference: &Path,
    full: Duration,
    seed: u64,
    args: impl Fn(&Path) -> Vec<String>,
) {
    let (mut killed, mut in_write) = (0, 0);
    for trial in 0..trials() {
        let dir = tmp.join(format!("{job}-trial-{trial}"));
        let args = args(&dir);
        // Within the first 80 % of the uninterrupted run's time: a resumed or warmed-up run can
        // be faster than the reference was (measured: 1 in 15 runs of this test had fewer than
        // half of its kills land when they were drawn over the whole time).
        let at = full.mul_f64(0.8 * unit(seed + trial));
        let (k, w) = interrupt(trial, &args, &dir, at);
        killed += k as u64;
        in_write += w as u64;
        complete(&args);
        assert_same(
            reference,
            &dir,
            &format!("{job} trial {trial} (killed at {at:?})"),
        );
    }
    println!(
        "{job}: {killed} of {} trials killed mid-run, {in_write} inside a file write (uninterrupted run {full:?})",
        trials()
    );
    assert!(killed * 2 >= trials(), "too few kills landed: {killed}");
    assert!(
        in_write * 4 >= trials(),
        "too few kills inside a write: {in_write}"
    );
}

/// `prism cache` killed at random moments and run again equals the uninterrupted cache, file
/// for file and byte for byte.
#[test]
fn a_killed_cache_resumes_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let data = corpus(tmp.path());
    let reference = tmp.path().join("reference");
    let full = complete(&cache_args(&data, &reference, "3000"));
    kill_and_resume("cache", tmp.path(), &reference, full, 0, |dir| {
        cache_args(&data, dir, "3000")
    });
}

/// `prism train --resume` killed at random moments (checkpoints every 2 steps) and run again
/// equals the uninterrupted run: dictionary, checkpoint and log byte for byte.
#[test]
fn a_killed_training_resumes_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, cache, reference, full) = trained_reference(tmp.path());
    kill_and_resume("train", tmp.path(), &reference, full, 1000, |dir| {
        train_args(&cache, dir, "2880")
    });
}

/// A second `prism train --resume` started on the directory a first one is training in stops
/// at once with a clear error naming the directory (before it could truncate the first's logs
/// or write its checkpoints), and the first finishes equal to an uninterrupted run; once the
/// first has ended, the directory is free again. The same for `prism cache`.
#[test]
fn a_second_run_on_the_same_directory_stops_and_leaves_the_first_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, cache, reference, _) = trained_reference(tmp.path());
    let jobs = [
        (
            train_args(&cache, &tmp.path().join("run"), "2880"),
            "log.jsonl",
            tmp.path().join("run"),
            reference,
        ),
        (
            cache_args(&data, &tmp.path().join("cache2"), "3000"),
            "manifest.json",
            tmp.path().join("cache2"),
            cache,
        ),
    ];
    for (args, first_file, dir, want) in jobs {
        let first = command(&args).spawn().unwrap();
        // Once the first writes its first file it holds the lock; it is paused (SIGSTOP) while
        // the second runs, so it cannot finish first however fast it is.
        while !dir.join(first_file).exists() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let signal = |s: &str| {
            let pid = first.id().to_string();
            assert!(
                Command::new("kill")
                    .args([s, &pid])
                    .status()
                    .unwrap()
                    .success()
            );
        };
        signal("-STOP");
        let second = command(&args).output().unwrap();
        signal("-CONT");
        let err = String::from_utf8_lossy(&second.stderr);
        assert!(!second.status.success(), "the second run succeeded: {err}");
        assert!(
            err.contains("in use by another Prism run") && err.contains(dir.to_str().unwrap()),
            "{err}"
        );
        let first = first.wait_with_output().unwrap();
        assert!(
            first.status.success(),
            "{}",
            String::from_utf8_lossy(&first.stderr)
        );
        assert_same(
            &want,
            &dir,
            "the first run, with a second one refused beside it",
        );
        complete(&args); // free again: a resume of the finished run
    }
}

/// Runs `args` under a file-size limit of `kib` KiB with SIGXFSZ ignored, so an oversized
/// write fails with `EFBIG` ("File too large") as on a full disk, instead of killing.
fn with_file_size_limit(args: &[String], kib: u64) -> std::process::Output {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "ulimit -f {}; trap '' XFSZ; exec '{}' {}",
        kib * 2, // 512-byte blocks
        env!("CARGO_BIN_EXE_prism"),
        quoted.join(" ")
    );
    Command::new("sh").arg("-c").arg(script).output().unwrap()
}

/// A write that fails part-way (the disk is full) is an error naming the file; the cache and
/// the checkpoint already saved stay readable, and running again without the limit finishes
/// bit-identical to an uninterrupted run.
#[test]
fn a_failed_write_keeps_the_last_good_state() {
    let tmp = tempfile::tempdir().unwrap();
    let data = corpus(tmp.path());
    // The reference grows the same way (1000 tokens, then 3000), without failures.
    let reference = tmp.path().join("reference");
    complete(&cache_args(&data, &reference, "1000"));
    complete(&cache_args(&data, &reference, "3000"));

    let cache = tmp.path().join("cache");
    complete(&cache_args(&data, &cache, "1000"));
    let before = prism_cache::ActivationStore::open(&cache).unwrap();
    let rows_before = before.gather(1, &[0, 500, 999]).unwrap();
    // A shard is ~40 KiB: a 16 KiB limit fails the first new shard.
    let out = with_file_size_limit(&cache_args(&data, &cache, "3000"), 16);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("error:") && err.contains("File too large") && !err.contains("panicked"),
        "{err}"
    );
    let after = prism_cache::ActivationStore::open(&cache).unwrap();
    assert_eq!(after.len(), 1000, "the saved cache changed");
    assert_eq!(after.gather(1, &[0, 500, 999]).unwrap(), rows_before);
    complete(&cache_args(&data, &cache, "3000"));
    assert_same(&reference, &cache, "cache after a failed write");

    let straight = tmp.path().join("straight");
    complete(&train_args(&cache, &straight, "960"));
    complete(&train_args(&cache, &straight, "2880"));
    let run = tmp.path().join("run");
    complete(&train_args(&cache, &run, "960"));
    let checkpoint = run.join("checkpoint.safetensors");
    let saved = std::fs::read(&checkpoint).unwrap();
    let out = with_file_size_limit(&train_args(&cache, &run, "2880"), 64);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("File too large") && !err.contains("panicked"),
        "{err}"
    );
    // The failed write was the first checkpoint after step 30: the one before it is intact.
    assert!(
        std::fs::read(&checkpoint).unwrap() == saved,
        "the last checkpoint changed"
    );
    prism_sae::Trainer::load_checkpoint(&checkpoint).unwrap();
    complete(&train_args(&cache, &run, "2880"));
    assert_same(&straight, &run, "training after a failed write");
}

/// Runs `script` (sh) in a new user and mount namespace with `dir` a tmpfs of `kib` KiB — a
/// real full disk (`ENOSPC`) without privileges. None where user namespaces are not allowed.
fn in_small_tmpfs(dir: &Path, kib: u64, script: &str) -> Option<std::process::Output> {
    std::fs::create_dir_all(dir).unwrap();
    let mount = format!("mount -t tmpfs -o size=64k tmpfs '{}'", dir.display());
    let probe = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &mount])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return None;
    }
    let mount = format!(
        "mount -t tmpfs -o size={kib}k tmpfs '{}' && {script}",
        dir.display()
    );
    Some(
        Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c", &mount])
            .output()
            .unwrap(),
    )
}

/// A cache extended on a disk that fills up: `No space left on device`, and the cache saved
/// before is intact — it opens with the same rows and extends to the uninterrupted result.
#[test]
fn a_full_disk_keeps_the_saved_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let data = corpus(tmp.path());
    let reference = tmp.path().join("reference");
    complete(&cache_args(&data, &reference, "1000"));
    complete(&cache_args(&data, &reference, "3000"));
    let saved = tmp.path().join("saved");
    complete(&cache_args(&data, &saved, "1000"));
    let used: u64 = std::fs::read_dir(&saved)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len().div_ceil(4096) * 4)
        .sum();
    let disk = tmp.path().join("disk");
    let after = tmp.path().join("after");
    let args: Vec<String> = cache_args(&data, &disk, "3000")
        .iter()
        .map(|a| format!("'{a}'"))
        .collect();
    // Room for the saved cache and one more manifest, not for a new shard (~64 KiB).
    let script = format!(
        "cp -a '{saved}/.' '{disk}/' && '{prism}' {args}; status=$?; cp -a '{disk}/.' '{after}/'; exit $status",
        saved = saved.display(),
        disk = disk.display(),
        after = after.display(),
        prism = env!("CARGO_BIN_EXE_prism"),
        args = args.join(" "),
    );
    std::fs::create_dir_all(&after).unwrap();
    let Some(out) = in_small_tmpfs(&disk, used + 32, &script) else {
        println!(
            "note: user namespaces are not available here; the full-disk case runs under ulimit -f only"
        );
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the job did not fail: {err}");
    assert!(
        err.contains("error:")
            && err.contains("No space left on device")
            && !err.contains("panicked"),
        "{err}"
    );
    println!(
        "{}",
        err.lines().find(|l| l.starts_with("error:")).unwrap_or("")
    );
    let kept = prism_cache::ActivationStore::open(&after).unwrap();
    let before = prism_cache::ActivationStore::open(&saved).unwrap();
    assert_eq!(kept.len(), 1000);
    assert_eq!(
        kept.gather(1, &[0, 999]).unwrap(),
        before.gather(1, &[0, 999]).unwrap()
    );
    complete(&cache_args(&data, &after, "3000"));
    assert_same(&reference, &after, "cache after a full disk");
}
