//! Every reader, fuzzed briefly: seeds load, committed regression inputs and a few thousand
//! mutated inputs per target end as values or typed errors — no panic, no allocation beyond the
//! bounds. One test function, because the allocation guard is process-wide (tests in parallel
//! threads would count each other's memory).

use std::time::Duration;

use prism_fuzz::{BoundedAllocator, Campaign, Outcome, Target, guard};

#[global_allocator]
static ALLOCATOR: BoundedAllocator = BoundedAllocator;

fn findings_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-findings")
}

/// One line per finding of a campaign.
fn findings(target: Target, s: &prism_fuzz::Summary) -> Vec<String> {
    s.findings
        .iter()
        .map(|f| {
            format!(
                "{}: {:?} (input: {})",
                target.name(),
                f.outcome,
                f.saved.display()
            )
        })
        .collect()
}

fn campaign(target: Target, inputs: u64, budget: Duration, seed: u64) -> prism_fuzz::Summary {
    let mut c = Campaign::new(target, seed, &findings_dir()).unwrap();
    let s = c.run(inputs, Some(budget));
    for line in findings(target, &s) {
        println!("FINDING {line}");
    }
    println!(
        "{:<15} {:>8} inputs ({} accepted, {} refused) in {:6.1} s; largest allocation {:.1} MiB, peak live {:.1} MiB; {} findings",
        target.name(),
        s.inputs,
        s.accepted,
        s.refused,
        s.elapsed.as_secs_f64(),
        s.largest_allocation as f64 / 1048576.0,
        s.peak_live as f64 / 1048576.0,
        s.findings.len()
    );
    s
}

#[test]
fn every_reader_survives_a_short_fuzz_run() {
    // The guard is live and sees what a reader would ask for.
    assert!(guard::installed());
    assert!(!guard::measure(|| drop(std::hint::black_box(vec![0u8; 80 << 20]))).within_bounds());
    assert!(guard::measure(|| drop(std::hint::black_box(vec![0u8; 1 << 20]))).within_bounds());

    let per_target = std::env::var("PRISM_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6.0);
    let mut failures = Vec::new();
    // Every committed finding is now a typed error naming the problem.
    for target in Target::ALL {
        let inputs = prism_fuzz::regression_inputs(target).unwrap();
        if inputs.is_empty() {
            continue;
        }
        let mut c = Campaign::new(target, 0, &findings_dir()).unwrap();
        for p in inputs {
            match c.run_one(&std::fs::read(&p).unwrap()) {
                Outcome::Refused(message) => println!("{}: {message}", p.display()),
                other => failures.push(format!("{}: {other:?}", p.display())),
            }
        }
    }
    for target in Target::ALL {
        let s = campaign(
            target,
            u64::MAX,
            Duration::from_secs_f64(per_target),
            20261128,
        );
        for r in &s.refused_seeds {
            failures.push(format!("{}: a valid file was refused: {r}", target.name()));
        }
        if s.inputs < 50 {
            failures.push(format!("{}: only {} inputs", target.name(), s.inputs));
        }
        failures.extend(findings(target, &s));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The long run: `PRISM_FUZZ_INPUTS` mutated inputs per target (default 1 000 000), targets
/// named in `PRISM_FUZZ_TARGETS` (comma-separated; default all), seed `PRISM_FUZZ_SEED`.
#[test]
#[ignore = "long: PRISM_FUZZ_INPUTS=1000000 cargo test --workspace --features wgpu --test fuzz long_run -- --ignored --nocapture"]
fn long_run() {
    let inputs = std::env::var("PRISM_FUZZ_INPUTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let seed = std::env::var("PRISM_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let targets: Vec<Target> = match std::env::var("PRISM_FUZZ_TARGETS") {
        Ok(list) => list
            .split(',')
            .map(|n| Target::from_name(n.trim()).expect("unknown target"))
            .collect(),
        Err(_) => Target::ALL.to_vec(),
    };
    let mut failures = Vec::new();
    for target in targets {
        let s = campaign(target, inputs, Duration::MAX, seed);
        failures.extend(findings(target, &s));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
