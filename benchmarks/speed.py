"""Fit-and-query speed: disco_plug against scipy's gaussian_kde and scikit-learn's GaussianMixture with BIC,
on a quiet machine and with a CPU-bound process on every core (issue 19).

Task: fit on n points in d dimensions (a seeded mixture of a shifted Gaussian cluster, a Student-t (3) cluster
and a rotated Gaussian one), then log-density (and for disco_plug the score) at 512 new points.
- disco_plug: `load().fit(x)`, then `log_density_and_score(queries)`; the library picks its threads for the
  load (disco_plug.threads).
- scipy gaussian_kde (Scott's bandwidth): construct, then `logpdf(queries)`.
- GaussianMixture-BIC: scikit-learn GaussianMixture, full covariances, K = 1..10 (fixed seed, one init), the K
  of lowest BIC, then `score_samples(queries)`: what a user who wants a fitted mixture would run.
Each cell is the median wall time of `--repeats` runs (1 where a single run exceeds 20 s). "Loaded": one busy
Python process per core (os.sched_getaffinity) for the duration of the cell. Ratios are within one run, the
only figures comparable across runs on a shared machine.

Run: python benchmarks/speed.py [--repeats 3] [--large]   (--large adds d = 10, n = 131072)
Writes benchmarks/results/speed.md and speed.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import disco_plug
from disco_plug.bench import finish_provenance, provenance, provenance_line

ROOT = Path(__file__).resolve().parents[1]
QUERIES = 512
CASES = ((2, 1024), (10, 1024), (100, 2048))
LARGE = ((10, 131072),)
TARGETS_S = {(2, 1024): 0.040, (10, 1024): 0.150, (100, 2048): 0.400, (10, 131072): 5.0}  # issue 19
METHODS = ("disco_plug", "gaussian_kde", "gmm_bic")


def data(d: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / np.sqrt(d)
    x[: n // 3] += 3.0
    x[n // 3: n // 2] = rng.standard_t(3, size=(n // 2 - n // 3, d))
    return x, rng.normal(size=(QUERIES, d))


def run_once(method: str, x: np.ndarray, q: np.ndarray, est) -> None:
    if method == "disco_plug":
        est.fit(x).log_density_and_score(q)
    elif method == "gaussian_kde":
        from scipy.stats import gaussian_kde
        gaussian_kde(x.T).logpdf(q.T)
    else:
        from sklearn.mixture import GaussianMixture
        fits = [GaussianMixture(k, covariance_type="full", random_state=0, reg_covar=1e-6).fit(x) for k in range(1, 11)]
        min(fits, key=lambda g: g.bic(x)).score_samples(q)


def timed(method: str, x: np.ndarray, q: np.ndarray, est, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_once(method, x, q, est)
        times.append(time.perf_counter() - start)
        if times[-1] > 20.0:
            break
    return float(np.median(times))


def _burn() -> None:
    i = 0
    while True:
        i += 1


class Loaded:
    """One busy process per core for the duration of a with-block."""

    def __enter__(self) -> "Loaded":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.procs = [mp.Process(target=_burn, daemon=True) for _ in range(cores)]
        for p in self.procs:
            p.start()
        time.sleep(1.0)  # let the kernel see them as runnable
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join()


def markdown(report: dict) -> str:
    lines = ["# Fit + 512 queries: wall time", "",
             provenance_line(report), "",
             "Median seconds per task (fit on n points, then 512 queries); x: ratio to disco_plug in the same "
             "condition; loaded: one busy process per core.", "",
             "| d | n | issue 19 target (s) | disco_plug quiet | gaussian_kde quiet | GMM-BIC quiet "
             "| disco_plug loaded (x quiet) | GMM-BIC loaded (x quiet) |", "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        qu, lo = r["quiet"], r["loaded"]
        ours = qu["disco_plug"]
        lines.append(f"| {r['d']} | {r['n']} | {r['target_s']:g} | {ours:.3f} "
                     f"| {qu['gaussian_kde']:.3f} ({qu['gaussian_kde'] / ours:.2g}x) "
                     f"| {qu['gmm_bic']:.3f} ({qu['gmm_bic'] / ours:.2g}x) "
                     f"| {lo['disco_plug']:.3f} ({lo['disco_plug'] / ours:.2g}x) "
                     f"| {lo['gmm_bic']:.3f} ({lo['gmm_bic'] / qu['gmm_bic']:.2g}x) |")
    lines += ["", "Targets (issue 19): the fit + 512 queries within the target column on 2 quiet cores, never slower "
              "than GMM-BIC, and at most 3x the quiet time when loaded."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large", action="store_true", help="add d = 10, n = 131072")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)  # GMM convergence notes at small K
    est = disco_plug.load()
    report = provenance(ROOT, "benchmarks/speed.py", sys.argv[1:] if argv is None else argv)
    report["rows"] = []
    for d, n in CASES + (LARGE if args.large else ()):
        x, q = data(d, n)
        for m in METHODS:  # warm-up: imports and first-call costs are not part of a task
            run_once(m, x[:256], q, est)
        row = {"d": d, "n": n, "target_s": TARGETS_S[(d, n)], "quiet": {}, "loaded": {}}
        for m in METHODS:
            row["quiet"][m] = timed(m, x, q, est, args.repeats)
        with Loaded():
            for m in ("disco_plug", "gmm_bic"):
                row["loaded"][m] = timed(m, x, q, est, args.repeats)
        report["rows"].append(row)
        print(row, flush=True)
    finish_provenance(report)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps(report, indent=2))
    (out / "speed.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
