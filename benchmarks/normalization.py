"""Normalization benchmark: does the estimate integrate to one at every n and d, real tables included?

    python benchmarks/normalization.py          # writes benchmarks/results/normalization.{md,json}

For each data set the bundled estimator is fitted and `FittedEstimator.normalization` estimates the
integral of the estimated density by importance sampling (a 3-dof Student-t proposal at twice the samples'
covariance, mixed half and half with the estimate's own exact sampler above d = 3), with its standard
error. Data: random Gaussian mixtures of the accuracy benchmark's family and multivariate Student-t
(nu = 3) at d = 1..100 and n = 256..131072, and raw real tables bundled with scikit-learn (wine, breast
cancer, diabetes), columns as a user would pass them.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's disco_plug, whatever the installed copy

import torch  # noqa: E402

import disco_plug  # noqa: E402
from disco_plug.bench import git_commit  # noqa: E402
from disco_plug.gmm import random_gmm  # noqa: E402
from disco_plug.targets import StudentT  # noqa: E402

OUT = ROOT / "benchmarks" / "results"
SYNTHETIC = [("GMM", 1, 1024), ("GMM", 2, 256), ("GMM", 2, 131072), ("GMM", 10, 256), ("GMM", 10, 4096),
             ("GMM", 10, 131072), ("GMM", 100, 2048), ("Student-t", 2, 1024), ("Student-t", 10, 4096),
             ("Student-t", 100, 4096)]
REAL = ["wine", "breast_cancer", "diabetes"]


def data_sets(seed: int):
    g = torch.Generator().manual_seed(seed)
    for family, d, n in SYNTHETIC:
        if family == "GMM":
            x = random_gmm(1, d, generator=g, dtype=torch.float64).sample(n, generator=g)[0]
        else:
            x = StudentT(d, 3.0).sample(n, generator=g)
        yield f"{family} d={d} n={n}", x
    import sklearn.datasets as sk

    for name in REAL:
        x = torch.as_tensor(getattr(sk, f"load_{name}")().data, dtype=torch.float64)
        yield f"{name} (scikit-learn, raw columns) d={x.shape[1]} n={x.shape[0]}", x


def main() -> None:
    torch.set_num_threads(2)
    est = disco_plug.load()
    rows, t0 = [], time.perf_counter()
    for name, x in data_sets(2026):
        t = time.perf_counter()
        value, se = est.fit(x).normalization(16384, generator=torch.Generator().manual_seed(1))
        rows.append({"data": name, "normalization": value, "se": se, "seconds": round(time.perf_counter() - t, 1)})
        print(f"{name:55s} {value:.4f} +- {se:.4f}", flush=True)
    report = {"command": "python benchmarks/normalization.py", "commit": git_commit(ROOT),
              "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
              "load": " ".join(f"{v:.2f}" for v in os.getloadavg()), "wall_seconds": time.perf_counter() - t0,
              "rows": rows}
    lines = ["# Normalization benchmark", "", f"Command: `{report['command']}`  ", f"Commit: `{report['commit']}`  ",
             f"Machine: {report['machine']}; load average {report['load']}; wall time {report['wall_seconds']:.0f} s", "",
             "Integral of the estimated density by importance sampling (16384 draws), with its standard error; "
             "the module docstring of benchmarks/normalization.py says how.", "",
             "| data | integral | standard error | within 2 % |", "|---|---|---|---|"]
    for r in rows:
        ok = "yes" if abs(r["normalization"] - 1) <= 0.02 else "no"
        lines.append(f"| {r['data']} | {r['normalization']:.4f} | {r['se']:.4f} | {ok} |")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "normalization.json").write_text(json.dumps(report, indent=1))
    (OUT / "normalization.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
