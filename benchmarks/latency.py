"""Single-point query latency, as MCMC makes its queries (issue 19 item 4).

For a fitted sample set of n points in d dimensions (a seeded two-cluster Gaussian set), the mean wall time
of one call at one point (d,) in numpy, repeated CALLS times at fresh points:
- disco_plug: `fitted.log_density_and_score(point)` (log p and the score, one pass);
- scipy gaussian_kde (Scott's bandwidth): `kde.logpdf(point)` (log p only; its score would cost more);
and, for scale, one call at a batch of 256 points with disco_plug (the fastest of 3). One run, methods alternating per case,
so the ratio is the comparable figure on a shared machine.

Run: python benchmarks/latency.py    Writes benchmarks/results/latency.md and latency.json.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

import disco_plug
from disco_plug.bench import finish_provenance, provenance, provenance_line

ROOT = Path(__file__).resolve().parents[1]
CASES = ((2, 1000), (6, 3000), (6, 10000), (10, 3000))
CALLS = 300


def per_call(fn, points: np.ndarray) -> float:
    fn(points[0])
    start = time.perf_counter()
    for p in points:
        fn(p)
    return (time.perf_counter() - start) / len(points)


def main(argv: list[str]) -> None:
    from scipy.stats import gaussian_kde

    report = provenance(ROOT, "benchmarks/latency.py", argv)
    est = disco_plug.load()
    report["rows"] = []
    for d, n in CASES:
        rng = np.random.default_rng(d * 100003 + n)
        x = rng.normal(size=(n, d))
        x[: n // 3] += 2.0
        points = rng.normal(size=(CALLS, d))
        fitted, kde = est.fit(x), gaussian_kde(x.T)
        ours = per_call(fitted.log_density_and_score, points)
        scipy_s = per_call(lambda p: kde.logpdf(p[:, None]), points)
        batch = math.inf  # the fastest of 3 calls: one call is at the mercy of the machine's other work
        for _ in range(3):
            start = time.perf_counter()
            fitted.log_density_and_score(rng.normal(size=(256, d)))
            batch = min(batch, time.perf_counter() - start)
        row = {"d": d, "n": n, "ours_ms": 1e3 * ours, "gaussian_kde_ms": 1e3 * scipy_s, "ours_batch256_ms": 1e3 * batch}
        print(row, flush=True)
        report["rows"].append(row)
    finish_provenance(report)
    out = ROOT / "benchmarks" / "results"
    (out / "latency.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = ["# Single-point query latency", "",
             provenance_line(report), "",
             f"Mean ms per call at one point, over {CALLS} calls (module docstring); x: ratio to gaussian_kde.", "",
             "| d | n | disco_plug log p + score (ms) | gaussian_kde log p (ms) | ratio | disco_plug, 256 points in one call (ms) |",
             "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['d']} | {r['n']} | {r['ours_ms']:.2f} | {r['gaussian_kde_ms']:.2f} | "
                     f"{r['ours_ms'] / r['gaussian_kde_ms']:.1f}x | {r['ours_batch256_ms']:.1f} |")
    (out / "latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
