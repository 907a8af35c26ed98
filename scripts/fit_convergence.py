#!/usr/bin/env python3
"""Fits MMCS(t) = a - b * t**(-c) to each run's held-out seeds' MMCS (alive features) in a
`prism demo` report, and prints the level a and the values predicted for longer runs.

    python3 scripts/fit_convergence.py REPORT_DIR [--from TOKENS]

Only numpy. Used for the `--preset long` goal check in docs/experiments.md: a fit is a model of
the curve, not a measurement, and is read next to the measured curves.
"""
import argparse
import glob
import json
import os

import numpy as np


def series(report):
    out = {}
    for log in sorted(glob.glob(os.path.join(report, "dictionaries", "*", "log.jsonl"))):
        name = os.path.basename(os.path.dirname(log))
        for line in open(log):
            e = json.loads(line)
            h = e.get("held_out") or {}
            if h.get("mmcs_seeds_alive") is not None:
                out.setdefault(name, []).append((e["tokens"], h["mmcs_seeds_alive"]))
    return out


def fit(t, y):
    """Least squares for a and b at each c of a grid; the c with the smallest residual."""
    best = None
    for c in np.linspace(0.05, 2.0, 400):
        x = np.stack([np.ones_like(t), -(t ** -c)], 1)
        coef = np.linalg.lstsq(x, y, rcond=None)[0]
        r = float(((x @ coef - y) ** 2).sum())
        if best is None or r < best[0]:
            best = (r, c, coef)
    return best[1], best[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("report")
    ap.add_argument("--from", dest="start", type=float, default=1e6)
    args = ap.parse_args()
    for name, points in series(args.report).items():
        pts = [(t / 1e6, y) for t, y in points if t >= args.start]
        if len(pts) < 4:
            continue
        t = np.array([p[0] for p in pts])
        y = np.array([p[1] for p in pts])
        c, (a, b) = fit(t, y)
        pred = lambda k: a - b * (k * t[-1]) ** (-c)
        print(
            f"{name}: last {y[-1]:.3f} at {t[-1]:.2f}M tokens; level a = {a:.3f} (c = {c:.2f}); "
            f"predicted {pred(2):.3f} at 2x, {pred(8):.3f} at 8x"
        )


if __name__ == "__main__":
    main()
