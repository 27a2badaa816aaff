"""Evolving sample sets: `fitted.update` (warm start) against a fresh `fit` at every step (issue 19 item 3).

Particles x_0 ~ a seeded random GMM (disco_plug.gmm.random_gmm, 3-6 components) follow the linear flow
dx/dt = -(x - c) B with B = 0.5 I + a skew part (contraction and rotation), so x_t = c + (x_0 - c) E_t with
E_t = expm(-B t): the exact density of the particles at every time is known (the GMM pushed through that
affine map), and so is its score, s_t(y) = s_0(c + (y - c) E_t^-1) E_t^-T. At each of STEPS steps of size DT
the particles' score is estimated at the particles themselves (what a particle method needs) in two ways:
- fit: `load().fit(x_t).score(x_t)`;
- update: `previous.update(x_t).score(x_t)`, starting from the fit at t = 0;
and compared with the exact score (relative score MSE, %, pooled over the steps) and timed (median per step).
One run, both methods alternating step by step, so the ratio is the comparable figure on a shared machine.

Run: python benchmarks/update.py    Writes benchmarks/results/update.md and update.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

import disco_plug
from disco_plug.bench import finish_provenance, provenance, provenance_line
from disco_plug.gmm import random_gmm

ROOT = Path(__file__).resolve().parents[1]
CASES = ((2, 1024), (2, 4096), (10, 1024), (10, 4096), (3, 16384))
STEPS, DT = 10, 0.1


def flow(d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    skew = torch.randn(d, d, generator=g, dtype=torch.float64)
    b = 0.5 * torch.eye(d, dtype=torch.float64) + 0.5 * (skew - skew.T)
    return b, torch.randn(d, generator=g, dtype=torch.float64)


def run_case(est, d: int, n: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    gmm = random_gmm(1, d, generator=g, dtype=torch.float64, components=(3, 6))
    x0 = gmm.sample(n, generator=g)[0]
    b, c = flow(d, seed)
    previous = est.fit(x0)
    err = {"fit": [0.0, 0.0], "update": [0.0, 0.0]}  # sum ||s_hat - s||^2, sum ||s||^2
    times = {"fit": [], "update": []}
    for step in range(1, STEPS + 1):
        e = torch.linalg.matrix_exp(-b * DT * step)
        x = c + (x0 - c) @ e
        exact = gmm.score((c + (x - c) @ torch.linalg.inv(e))[None])[0] @ torch.linalg.inv(e).T
        for method in ("fit", "update"):
            t = time.perf_counter()
            fitted = est.fit(x) if method == "fit" else previous.update(x)
            s = fitted.score(x)
            times[method].append(time.perf_counter() - t)
            if method == "update":
                previous = fitted
            err[method][0] += float(((s - exact) ** 2).sum())
            err[method][1] += float((exact ** 2).sum())
    out = {"d": d, "n": n, "seed": seed}
    for method in ("fit", "update"):
        out[f"{method}_s"] = statistics.median(times[method])
        out[f"{method}_score_mse_pct"] = 100 * err[method][0] / err[method][1]
    out["speedup"] = out["fit_s"] / out["update_s"]
    return out


def markdown(report: dict) -> str:
    lines = ["# Evolving sample sets: update vs fit", "",
             provenance_line(report), "",
             f"{STEPS} steps of a linear flow (module docstring); per step, the score at every particle. Median "
             "seconds per step; relative score MSE against the exact score, pooled over the steps.", "",
             "| d | n | fit (s) | update (s) | speed-up | score MSE fit (%) | score MSE update (%) |",
             "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['d']} | {r['n']} | {r['fit_s']:.3f} | {r['update_s']:.3f} | {r['speedup']:.1f}x | "
                     f"{r['fit_score_mse_pct']:.2f} | {r['update_score_mse_pct']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    report = provenance(ROOT, "benchmarks/update.py", argv)
    est = disco_plug.load()
    start = time.perf_counter()
    report["rows"] = []
    for i, (d, n) in enumerate(CASES):
        row = run_case(est, d, n, seed=100 + i)
        print(row, flush=True)
        report["rows"].append(row)
    report["wall_s"] = time.perf_counter() - start
    finish_provenance(report)
    out = ROOT / "benchmarks" / "results"
    (out / "update.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "update.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main(sys.argv[1:])
