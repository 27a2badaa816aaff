"""The report's application: a deterministic particle method for the spatially homogeneous Landau equation
with Maxwell molecules, driven by an estimated score (issue 19 item 6).

Equation and exact solution: disco_plug.targets.LandauBKW (d = 2 from t0 = 0, d = 3 from t0 = 5.5). The
particles follow samplers.landau.landau_velocity, dv_i/dt = -(1/n) sum_j A(v_i - v_j) (s(v_i) - s(v_j)) (the
score form of the equation; momentum and energy are conserved in continuous time), forward Euler with step
DT, where s is the score of the particles' density:
- exact: the BKW score at the current time (the method's floor: only the particle and time errors are left);
- blob: the score of a Gaussian KDE of the particles, Scott's bandwidth (the classical blob method);
- disco_plug fit: `load().fit(particles).score(particles)` at every step;
- disco_plug update: `previous.update(particles).score(particles)` at every step (a fit at t0 only).
Reported per method: relative score error of s against the exact score at the particles (%, pooled over
the steps), the fourth moment's relative error at the end, the entropy error |H_est(t) - H(t)| (nats; mean over
the steps and at the end), and seconds per step (median; the O(n^2) interaction included). H(t) is the BKW
solution's entropy (LandauBKW.entropy); H_est(t) = -mean log p(v_i) over the particles with the method's own
density (the KDE's for the blob method, the estimate's for fit and update, the exact f_t at the particles for
the exact score, which measures the particles alone).

And issue 19's target case, d = 3, n = 2048, 100 steps: the blob and update methods' score error at every
step and the solve's wall time (long_solve).

Run: python benchmarks/landau.py [--quick]    Writes benchmarks/results/landau.md and landau.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's disco_plug, whatever the installed copy

import disco_plug  # noqa: E402
from disco_plug.bench import finish_provenance, provenance, provenance_line
from disco_plug.targets import LandauBKW
from disco_plug.samplers.landau import landau_velocity

ROOT = Path(__file__).resolve().parents[1]
DT = 0.25
METHODS = ("exact", "blob", "fit", "update")


def run(d: int, n: int, steps: int, seed: int, est) -> list[dict]:
    bkw = LandauBKW(d)
    v0 = bkw.sample(bkw.t0, n, torch.Generator().manual_seed(seed))
    t_end = bkw.t0 + steps * DT
    m4_exact = bkw.fourth_moment(t_end)
    fresh = bkw.sample(t_end, n, torch.Generator().manual_seed(seed + 1))  # the n-draw Monte Carlo floor
    rows = [{"method": "exact draws at the end (floor)", "score_error_pct": None,
             "m4_rel_error_pct": 100 * abs(float((fresh * fresh).sum(1).square().mean()) / m4_exact - 1),
             "entropy_error": None, "entropy_error_end": abs(-float(bkw.log_density(t_end, fresh).mean()) - bkw.entropy(t_end)),
             "seconds_per_step": None}]
    for method in METHODS:
        v, previous = v0.clone(), None
        err, norm, times, entropy_err = 0.0, 0.0, [], []
        for step in range(steps):
            t = bkw.t0 + step * DT
            start = time.perf_counter()
            if method == "exact":
                log_p, s = bkw.log_density(t, v), bkw.score(t, v)
            elif method == "blob":
                log_p, s = disco_plug.GaussianKDE(v, "scott").log_density_and_score(v)
            elif method == "fit" or previous is None:
                previous = est.fit(v)
                log_p, s = previous.log_density_and_score(v)
            else:
                previous = previous.update(v)
                log_p, s = previous.log_density_and_score(v)
            velocity = landau_velocity(v, s, bkw.C)
            times.append(time.perf_counter() - start)
            exact = bkw.score(t, v)
            entropy_err.append(abs(-float(log_p.mean()) - bkw.entropy(t)))
            err += float((s - exact).square().sum())
            norm += float(exact.square().sum())
            v = v + DT * velocity
        m4 = float((v * v).sum(1).square().mean())
        rows.append({"method": method, "score_error_pct": 100 * err / norm,
                     "m4_rel_error_pct": 100 * abs(m4 / m4_exact - 1),
                     "entropy_error": statistics.mean(entropy_err), "entropy_error_end": entropy_err[-1],
                     "energy_drift": abs(float((v * v).sum(1).mean() - (v0 * v0).sum(1).mean())),
                     "seconds_per_step": statistics.median(times)})
        print(d, n, rows[-1], flush=True)
    return rows


def long_solve(d: int, n: int, steps: int, seed: int, est) -> dict:
    """Issue 19's target case: the whole solve with the blob score and with `update` every step, the score
    error at every step (not pooled) and the solve's wall time."""
    bkw = LandauBKW(d)
    v0 = bkw.sample(bkw.t0, n, torch.Generator().manual_seed(seed))
    out = {"d": d, "n": n, "steps": steps}
    for method in ("blob", "update"):
        v, previous, errors = v0.clone(), None, []
        start = time.perf_counter()
        for step in range(steps):
            t = bkw.t0 + step * DT
            if method == "blob":
                s = disco_plug.GaussianKDE(v, "scott").score(v)
            else:
                previous = est.fit(v) if previous is None else previous.update(v)
                s = previous.score(v)
            exact = bkw.score(t, v)
            errors.append(100 * float((s - exact).square().sum() / exact.square().sum()))
            v = v + DT * landau_velocity(v, s, bkw.C)
        out[method] = {"seconds": time.perf_counter() - start, "errors_pct": errors}
    ratios = [b / u for b, u in zip(out["blob"]["errors_pct"], out["update"]["errors_pct"])]
    out["ratio_min"], out["ratio_median"] = min(ratios), statistics.median(ratios)
    print(d, n, {k: v for k, v in out.items() if k not in ("blob", "update")}, flush=True)
    return out


def markdown(report: dict) -> str:
    lines = ["# Landau equation (Maxwell molecules), BKW solution: particle method driven by estimated scores", "",
             provenance_line(report), "",
             f"Forward Euler, step {DT}, {report['steps']} steps from t0 (module docstring). Score error: relative "
             "score MSE against the exact BKW score at the particles, pooled over the steps; M4: relative error of "
             "the fourth moment E|v|^4 at the end; entropy error: |H_est(t) - H(t)| in nats, mean over the steps / "
             "at the end (the floor row: n fresh exact draws).", "",
             "| d | n | method | score error (%) | M4 error (%) | entropy error, mean / end (nats) | seconds per step |",
             "|---|---|---|---|---|---|---|"]
    fmt = lambda x, f: "" if x is None else format(x, f)
    for case in report["cases"]:
        for r in case["rows"]:
            ent = f"{fmt(r.get('entropy_error'), '.4f')} / {fmt(r.get('entropy_error_end'), '.4f')}".strip(" /")
            lines.append(f"| {case['d']} | {case['n']} | {r['method']} | {fmt(r['score_error_pct'], '.2f')} | "
                         f"{fmt(r['m4_rel_error_pct'], '.2f')} | {ent} | {fmt(r['seconds_per_step'], '.3f')} |")
    long = report.get("long")
    if long:
        lines += ["", f"Issue 19's target case: d = {long['d']}, n = {long['n']}, {long['steps']} steps, the score error at "
                  "every step (target: the blob's at least 2x ours at every step, the solve within 2 minutes).", "",
                  "| method | score error, min / median / max over the steps (%) | solve (s) |", "|---|---|---|"]
        for method in ("blob", "update"):
            e = long[method]["errors_pct"]
            lines.append(f"| {method} | {min(e):.2f} / {statistics.median(e):.2f} / {max(e):.2f} | "
                         f"{long[method]['seconds']:.1f} |")
        lines += ["", f"Blob error / update error per step: min {long['ratio_min']:.2f}, median {long['ratio_median']:.1f}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    report = provenance(ROOT, "benchmarks/landau.py", argv)
    report["steps"] = steps = 8 if quick else 40
    cases = ((2, 512),) if quick else ((2, 1024), (3, 1024), (2, 2048))
    est = disco_plug.load()
    report["cases"] = [{"d": d, "n": n, "rows": run(d, n, steps, seed=7 + d, est=est)} for d, n in cases]
    if not quick:
        report["long"] = long_solve(3, 2048, 100, seed=10, est=est)
    finish_provenance(report)
    out = ROOT / "benchmarks" / "results"
    name = "landau_quick" if quick else "landau"
    (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main(sys.argv[1:])
