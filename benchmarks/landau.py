"""The report's application: a deterministic particle method for the spatially homogeneous Landau equation
with Maxwell molecules, driven by an estimated score (issue 19 item 6).

Equation: df/dt = div_v int A(v - w) (f(w) grad f(v) - f(v) grad f(w)) dw, A(z) = C (|z|^2 I - z z^T), whose
BKW solution is known in closed form (Bobylev; Carrillo, Hu, Wang & Wu 2020, "A particle method for the
homogeneous Landau equation", J. Comput. Phys. X): with K(t) = 1 - c exp(-lambda t),
- d = 2: C = 1/16, lambda = 1/8, c = 1/2, f = N(0, K I)(v) ((2K - 1) / K + (1 - K) / (2 K^2) |v|^2), from t0 = 0;
- d = 3: C = 1/24, lambda = 1/6, c = 1, f = N(0, K I)(v) ((5K - 3) / (2K) + (1 - K) / (2 K^2) |v|^2), from
  t0 = 5.5 (where 5K - 3 >= 0).
(tests/test_landau_bench.py checks by autograd that these solve the equation.) The particles follow
dv_i/dt = -(1/n) sum_j A(v_i - v_j) (s(v_i) - s(v_j)) (the score form of the equation; it conserves
momentum and energy exactly), forward Euler with step DT, where s is the score of the particles' density:
- exact: the BKW score at the current time (the method's floor: only the particle and time errors are left);
- blob: the score of a Gaussian KDE of the particles, Scott's bandwidth (the classical blob method);
- disco_plug fit: `load().fit(particles).score(particles)` at every step;
- disco_plug update: `previous.update(particles).score(particles)` at every step (a fit at t0 only).
Reported per method: relative score error of s against the exact score at the particles (%, pooled over
the steps), the fourth moment's relative error at the end, and seconds per step (median; the O(n^2)
interaction included).

Run: python benchmarks/landau.py [--quick]    Writes benchmarks/results/landau.md and landau.json.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

import disco_plug
from disco_plug.bench import finish_provenance, provenance

ROOT = Path(__file__).resolve().parents[1]
DT = 0.25
METHODS = ("exact", "blob", "fit", "update")


class BKW:
    """The BKW solution in d = 2 or 3: density, score, fourth moment and exact draws at time t."""

    def __init__(self, d: int) -> None:
        if d not in (2, 3):
            raise ValueError(f"the BKW solution is given here for d = 2 or 3, got {d}")
        self.d = d
        self.C, self.rate, self.c, self.t0 = (1 / 16, 1 / 8, 0.5, 0.0) if d == 2 else (1 / 24, 1 / 6, 1.0, 5.5)

    def K(self, t: float) -> float:
        return 1.0 - self.c * math.exp(-self.rate * t)

    def _weights(self, t: float) -> tuple[float, float]:
        """f = a N(0, K I) + b |v|^2 N(0, K I) / (d K): the weights a, b (a + b = 1)."""
        K, d = self.K(t), self.d
        b = d * (1 - K) / (2 * K)
        return 1.0 - b, b

    def log_density(self, t: float, v: torch.Tensor) -> torch.Tensor:
        K, d = self.K(t), self.d
        a, b = self._weights(t)
        r2 = (v * v).sum(-1)
        return -0.5 * d * math.log(2 * math.pi * K) - r2 / (2 * K) + torch.log(a + b * r2 / (d * K))

    def score(self, t: float, v: torch.Tensor) -> torch.Tensor:
        K, d = self.K(t), self.d
        a, b = self._weights(t)
        r2 = (v * v).sum(-1, keepdim=True)
        return -v / K + (2 * b / (d * K)) * v / (a + b * r2 / (d * K))

    def fourth_moment(self, t: float) -> float:
        K, d = self.K(t), self.d
        a, b = self._weights(t)
        m4, m6 = d * (d + 2) * K**2, d * (d + 2) * (d + 4) * K**3  # E|v|^4, E|v|^6 under N(0, K I)
        return a * m4 + b * m6 / (d * K)

    def sample(self, t: float, n: int, generator: torch.Generator) -> torch.Tensor:
        K, d = self.K(t), self.d
        a, _ = self._weights(t)
        direction = torch.randn(n, d, generator=generator, dtype=torch.float64)
        direction = direction / direction.norm(dim=1, keepdim=True)
        chi_d = torch.randn(n, d, generator=generator, dtype=torch.float64).square().sum(1)
        chi_d2 = chi_d + torch.randn(n, 2, generator=generator, dtype=torch.float64).square().sum(1)
        gaussian = torch.rand(n, generator=generator, dtype=torch.float64) < a
        r2 = K * torch.where(gaussian, chi_d, chi_d2)  # |v|^2 N(0, K I) / (d K) has |v|^2 ~ K chi2(d + 2)
        return direction * r2.sqrt()[:, None]


def landau_velocity(v: torch.Tensor, s: torch.Tensor, C: float, chunk: int = 512) -> torch.Tensor:
    """-(1/n) sum_j A(v_i - v_j) (s_i - s_j), A(z) = C (|z|^2 I - z z^T), in chunks of rows."""
    out = []
    for i in range(0, len(v), chunk):
        z = v[i:i + chunk, None] - v[None]  # (c, n, d)
        ds = s[i:i + chunk, None] - s[None]
        a_ds = (z * z).sum(-1, keepdim=True) * ds - z * (z * ds).sum(-1, keepdim=True)
        out.append(-C * a_ds.mean(1))
    return torch.cat(out)


def run(d: int, n: int, steps: int, seed: int, est) -> list[dict]:
    bkw = BKW(d)
    v0 = bkw.sample(bkw.t0, n, torch.Generator().manual_seed(seed))
    t_end = bkw.t0 + steps * DT
    m4_exact = bkw.fourth_moment(t_end)
    fresh = bkw.sample(t_end, n, torch.Generator().manual_seed(seed + 1))  # the n-draw Monte Carlo floor
    rows = [{"method": "exact draws at the end (floor)", "score_error_pct": None,
             "m4_rel_error_pct": 100 * abs(float((fresh * fresh).sum(1).square().mean()) / m4_exact - 1),
             "seconds_per_step": None}]
    for method in METHODS:
        v, previous = v0.clone(), None
        err, norm, times = 0.0, 0.0, []
        for step in range(steps):
            t = bkw.t0 + step * DT
            start = time.perf_counter()
            if method == "exact":
                s = bkw.score(t, v)
            elif method == "blob":
                s = disco_plug.GaussianKDE(v, "scott").score(v)
            elif method == "fit" or previous is None:
                previous = est.fit(v)
                s = previous.score(v)
            else:
                previous = previous.update(v)
                s = previous.score(v)
            velocity = landau_velocity(v, s, bkw.C)
            times.append(time.perf_counter() - start)
            exact = bkw.score(t, v)
            err += float((s - exact).square().sum())
            norm += float(exact.square().sum())
            v = v + DT * velocity
        m4 = float((v * v).sum(1).square().mean())
        rows.append({"method": method, "score_error_pct": 100 * err / norm,
                     "m4_rel_error_pct": 100 * abs(m4 / m4_exact - 1),
                     "energy_drift": abs(float((v * v).sum(1).mean() - (v0 * v0).sum(1).mean())),
                     "seconds_per_step": statistics.median(times)})
        print(d, n, rows[-1], flush=True)
    return rows


def markdown(report: dict) -> str:
    lines = ["# Landau equation (Maxwell molecules), BKW solution: particle method driven by estimated scores", "",
             f"`{report['command']}` at commit `{report['commit'][:12]}`, {report['date']}; {report['machine']}.", "",
             f"Forward Euler, step {DT}, {report['steps']} steps from t0 (module docstring). Score error: relative "
             "score MSE against the exact BKW score at the particles, pooled over the steps; M4: relative error of "
             "the fourth moment E|v|^4 at the end (the floor row: n fresh exact draws).", "",
             "| d | n | method | score error (%) | M4 error (%) | seconds per step |", "|---|---|---|---|---|---|"]
    fmt = lambda x, f: "" if x is None else format(x, f)
    for case in report["cases"]:
        for r in case["rows"]:
            lines.append(f"| {case['d']} | {case['n']} | {r['method']} | {fmt(r['score_error_pct'], '.2f')} | "
                         f"{fmt(r['m4_rel_error_pct'], '.2f')} | {fmt(r['seconds_per_step'], '.3f')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    report = provenance(ROOT, "benchmarks/landau.py", argv)
    report["steps"] = steps = 8 if quick else 40
    cases = ((2, 512),) if quick else ((2, 1024), (3, 1024), (2, 2048))
    est = disco_plug.load()
    report["cases"] = [{"d": d, "n": n, "rows": run(d, n, steps, seed=7 + d, est=est)} for d, n in cases]
    finish_provenance(report)
    out = ROOT / "benchmarks" / "results"
    name = "landau_quick" if quick else "landau"
    (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main(sys.argv[1:])
