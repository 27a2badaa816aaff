"""Mixture fits on a subsampled splitting path against fits on every point, at n = 131072.

    python benchmarks/path_subsample.py     # writes benchmarks/results/path_subsample.{md,json}; ~7 min on 2 cores

disco_plug.fit.em.fit_mixtures chooses the number of components on an order-free hashed subsample of
PATH_POINTS points when a context is larger, then takes FULL_DATA_ITERS EM steps on every point. This script
measures what that costs in accuracy and saves in time: the bundled estimator's relative score MSE (%) and
fit + 1024 query time per task on random d = 10 GMMs of the report's family (seed 77), with the default and
with path_points=None (every point on the whole path).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from disco_plug.fit import em as mixture  # noqa: E402
from disco_plug.bench import git_commit  # noqa: E402
from disco_plug.estimator import load  # noqa: E402
from disco_plug.gmm import random_gmm  # noqa: E402

D, N, QUERIES, TASKS, SEED = 10, 131072, 1024, 6, 77


def run(path_points: int | None) -> list[dict[str, float]]:
    estimator = load()
    defaults = mixture.fit_mixtures.__kwdefaults__
    saved = defaults["path_points"]
    defaults["path_points"] = path_points  # what DiScoFormer.encode's fit_mixtures calls will use
    try:
        g = torch.Generator().manual_seed(SEED)
        out = []
        for _ in range(TASKS):
            gmm = random_gmm(1, D, generator=g, dtype=torch.float64)
            x, y = gmm.sample(N, generator=g)[0], gmm.sample(QUERIES, generator=g)[0]
            start = time.perf_counter()
            score = estimator.fit(x).score(y)
            seconds = time.perf_counter() - start
            true = gmm.score(y)
            out.append({"err": float(((score - true) ** 2).sum()), "norm": float((true**2).sum()), "seconds": seconds})
        return out
    finally:
        defaults["path_points"] = saved


def main() -> None:
    variants = {f"path on {mixture.PATH_POINTS} hashed points + {mixture.FULL_DATA_ITERS} EM steps on all (default)":
                mixture.PATH_POINTS, "path on every point": None}
    results = {name: run(p) for name, p in variants.items()}
    report = {"command": "python benchmarks/path_subsample.py", "commit": git_commit(),
              "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
              "d": D, "n": N, "queries": QUERIES, "tasks": TASKS, "seed": SEED, "results": results}
    names = list(results)
    lines = ["# Mixture path on a subsample vs every point", "",
             f"Command: `{report['command']}` at commit `{report['commit']}`; {report['machine']}.", "",
             f"d = {D}, n = {N}, {QUERIES} same-distribution queries, {TASKS} random GMMs (seed {SEED}); bundled weights. "
             "Relative score MSE (%) per task and pooled; fit + queries wall time (s).", "",
             "| task | " + " | ".join(f"{k}: error (%) | time (s)" for k in names) + " |",
             "|---|" + "---|---|" * len(names)]
    for t in range(TASKS):
        lines.append(f"| {t} | " + " | ".join(f"{100 * results[k][t]['err'] / results[k][t]['norm']:.3f} | "
                                             f"{results[k][t]['seconds']:.1f}" for k in names) + " |")
    lines.append("| pooled / mean | " + " | ".join(
        f"{100 * sum(r['err'] for r in results[k]) / sum(r['norm'] for r in results[k]):.3f} | "
        f"{sum(r['seconds'] for r in results[k]) / TASKS:.1f}" for k in names) + " |")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "path_subsample.json").write_text(json.dumps(report, indent=1))
    (out / "path_subsample.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
