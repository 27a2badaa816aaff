"""New points from a large sample set: fit + `fitted.sample(2048)` with the default method (issue 19's sampling
target: n = 30000, d = 7 within 10 s on 2 cores; it took about 350 s with the score-based sampler that was the
default then).

Cases: a seeded 7-D Gaussian mixture (disco_plug.random_gmm) at n = 30000, and statsmodels' randhie table (20190
rows, 10 numeric columns, raw) as a real one. Against scikit-learn's GaussianMixture (full covariance, K by BIC
over 1..10, fit + sample) in the same run. Wall seconds of one run each.

Run: python benchmarks/sample_speed.py    Writes benchmarks/results/sample_speed.md and sample_speed.json.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's disco_plug

import disco_plug  # noqa: E402
from disco_plug.bench import finish_provenance, provenance, provenance_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DRAWS = 2048


def cases() -> list[tuple[str, np.ndarray]]:
    g = torch.Generator().manual_seed(0)
    gmm = disco_plug.random_gmm(1, 7, generator=g, dtype=torch.float64)
    out = [("7-D Gaussian mixture", gmm.sample(30000, generator=g)[0].numpy())]
    import statsmodels.api as sm

    table = sm.datasets.randhie.load_pandas().data
    out.append(("randhie (statsmodels, raw)", table.select_dtypes("number").to_numpy(dtype=np.float64)))
    return out


def gmm_bic(x: np.ndarray) -> float:
    from sklearn.mixture import GaussianMixture

    start = time.perf_counter()
    best = min((GaussianMixture(k, covariance_type="full", n_init=2, random_state=0).fit(x) for k in range(1, 11)),
               key=lambda m: m.bic(x))
    best.sample(DRAWS)
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    report = provenance(ROOT, "benchmarks/sample_speed.py", argv)
    est = disco_plug.load()
    report["rows"] = []
    for name, x in cases():
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # grid-valued columns of the real table: reported by fit, not here
            fitted = est.fit(x)
            fitted.density  # the fit itself happens on first use
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        draws = fitted.sample(DRAWS, generator=torch.Generator().manual_seed(1))
        sample_s = time.perf_counter() - start
        row = {"case": name, "n": x.shape[0], "d": x.shape[1], "fit_s": fit_s, "sample_s": sample_s,
               "finite": bool(np.isfinite(draws).all()), "gmm_bic_s": gmm_bic(x)}
        print(row, flush=True)
        report["rows"].append(row)
    finish_provenance(report)
    out = ROOT / "benchmarks" / "results"
    (out / "sample_speed.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = ["# Fit + sample(2048) on large sample sets", "",
             provenance_line(report), "",
             "Default method (exact draws from the stacked density); one run each; module docstring.", "",
             "| case | n | d | fit (s) | sample 2048 (s) | total (s) | GMM-BIC fit + sample (s) |", "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['case']} | {r['n']} | {r['d']} | {r['fit_s']:.2f} | {r['sample_s']:.3f} | "
                     f"{r['fit_s'] + r['sample_s']:.2f} | {r['gmm_bic_s']:.2f} |")
    (out / "sample_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
