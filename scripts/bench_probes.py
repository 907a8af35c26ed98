"""scikit-learn on the numbers `cargo run --release --example bench_probes -- --dump FILE` wrote:
LogisticRegression (lbfgs, C = 1, no intercept, on centred rows — Prism's objective), the
mass-mean probe in numpy, and roc_auc_score of every dictionary feature (one call per feature,
as a researcher would write it), each timed, with Prism's times printed next to them by the
example. Run with the packages of requirements-fixtures.txt:

    python scripts/bench_probes.py FILE.safetensors
"""
import sys
import time

import numpy as np
import scipy.sparse as sp
from safetensors.numpy import load_file
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

t = load_file(sys.argv[1])
x = t["acts"].astype(np.float64)
y = t["labels"] > 0.5
n, d = x.shape
xc = x - x.mean(0)
start = time.perf_counter()
lr = LogisticRegression(C=1.0, fit_intercept=False, solver="lbfgs", max_iter=10000, tol=1e-6).fit(xc, y)
t_lr = time.perf_counter() - start
start = time.perf_counter()
theta = x[y].mean(0) - x[~y].mean(0)
t_mm = time.perf_counter() - start
m = int(t["d_sae"][0])
codes = sp.csc_matrix((t["code_value"], (t["code_row"].astype(np.int64), t["code_feature"].astype(np.int64))), shape=(n, m))
start = time.perf_counter()
aucs = [roc_auc_score(y, codes[:, j].toarray().ravel()) for j in range(m)]
t_auc = time.perf_counter() - start
print(f"{n} statements × {d} dims, {m} features")
print(f"scikit-learn LogisticRegression {t_lr:.3f} s (train accuracy {lr.score(xc, y):.3f}, {lr.n_iter_[0]} iterations)")
print(f"numpy mass-mean {t_mm:.4f} s")
print(f"roc_auc_score per feature {t_auc:.2f} s (strongest |AUROC − ½| {max(abs(a - 0.5) for a in aucs):.3f})")
