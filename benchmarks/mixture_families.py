"""Mixture families benchmark: the EM mixture skip alone (no gates, no KDE), per covariance family.

    python benchmarks/mixture_families.py     # writes benchmarks/results/mixture_families.{md,json}

On random GMMs from the report's family (seed 5; T tasks per row, 256 same-distribution queries each),
whitened as the network sees them: relative score MSE (%) of the BIC-chosen Gaussian mixture with full
covariances and with the common-principal-axes family also tried (mixture.fit_mixtures' frame, in
Whitening.raw_frame), each at the default shrinkage (d + 2 pseudo-points) and 4 x that; also the mean
number of components chosen against the true mean. This is the measurement behind shipping
ModelConfig.mixture_common_axes (issue 3).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from disco_plug.bench import git_commit  # noqa: E402
from disco_plug.gmm import random_gmm  # noqa: E402
from disco_plug.densities.mixture import mixture_log_density_and_score  # noqa: E402
from disco_plug.fit.em import fit_mixtures  # noqa: E402
from disco_plug.fit.whitening import fit_whitening  # noqa: E402

ROWS = [(2, 1024, 32), (5, 1024, 32), (10, 256, 48), (10, 1024, 32), (10, 4096, 16), (20, 1024, 16)]  # (d, n, T)


def run_row(d: int, n: int, tasks: int) -> dict:
    g = torch.Generator().manual_seed(5)
    gmm = random_gmm(tasks, d, generator=g, dtype=torch.float64)
    x, y = gmm.sample(n, generator=g), gmm.sample(256, generator=g)
    true = gmm.score(y)
    w = fit_whitening(x)
    out = {"d": d, "n": n, "tasks": tasks, "true_components": float(torch.isfinite(gmm.log_weights).sum(-1).double().mean())}
    for name, opts in (("full", {}), ("common axes", {"frame": w.raw_frame()})):
        for scale in (1, 4):
            t0 = time.perf_counter()
            mix = fit_mixtures(w.apply(x), (1.0,), prior=scale * (d + 2), **opts)[0]
            score = w.score_back(mixture_log_density_and_score(mix, w.apply(y))[1])
            out[f"{name}, prior x{scale}"] = {
                "rel_score_mse_pct": 100 * float(((score - true) ** 2).sum() / (true**2).sum()),
                "components": float(mix.components.double().mean()), "seconds": time.perf_counter() - t0}
    return out


def main() -> None:
    rows = []
    for d, n, tasks in ROWS:
        rows.append(run_row(d, n, tasks))
        print(json.dumps(rows[-1]), flush=True)
    report = {"command": "python benchmarks/mixture_families.py", "commit": git_commit(),
              "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}", "rows": rows}
    keys = [k for k in rows[0] if "prior" in k]
    lines = ["# Mixture families: the EM mixture skip alone", "",
             f"Command: `{report['command']}` at commit `{report['commit']}`; {report['machine']}.", "",
             "Relative score MSE (%) of the BIC mixture alone on random GMMs (seed 5, 256 queries per task), "
             "mean components chosen in brackets; lower is better.", "",
             "| d | n | tasks | true components | " + " | ".join(keys) + " |", "|---" * (4 + len(keys)) + "|"]
    for r in rows:
        cells = [f"{r[k]['rel_score_mse_pct']:.2f} ({r[k]['components']:.2f})" for k in keys]
        lines.append(f"| {r['d']} | {r['n']} | {r['tasks']} | {r['true_components']:.2f} | " + " | ".join(cells) + " |")
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "mixture_families.json").write_text(json.dumps(report, indent=1))
    (out / "mixture_families.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
