"""Benchmarks: `python -m disco_plug.bench accuracy [--quick] [--weights PATH]`.

Accuracy (issue 3): relative score MSE (%) = 100 * sum ||s_hat - s||^2 / sum ||s||^2 pooled over the
queries of fresh seeded tasks, and log-density MSE, for the bundled DiScoFormer, Scott-rule KDE and
best-on-grid KDE (per task, the grid factor that minimizes the error against the true score — or, for
the log-density column, the true log-density: the strongest KDE possible). Two query sets per task:
"same" (drawn from the context's distribution, where samplers ask) and "other" (drawn from an
unrelated random mixture: the report's training setup, which probes the tails).
Results go to benchmarks/results/accuracy.{md,json} with the command and commit that produced them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from .checkpoint import file_sha256, read_metadata
from .estimator import Estimator, load
from .gmm import random_gmm
from .densities.kde import GaussianKDE, kde_at_factors, scott_factor
from .targets import Laplace, StudentT

RESULTS = Path("benchmarks/results")
GRID = torch.exp(torch.linspace(torch.log(torch.tensor(1 / 16)), torch.log(torch.tensor(4.0)), 25))  # x Scott


@dataclass(frozen=True)
class Row:
    name: str
    dim: int
    n: int
    tasks: int = 16
    queries: int = 256
    target: str = "gmm"  # gmm | gmm_diag2 | gmm15 | gmm20 | laplace | student_t
    tta_steps: int = 0
    goal: float | None = None  # relative score MSE target (%) on "same" queries, from the report


ROWS = [
    *[Row(f"GMM d=2 n={n}", 2, n, tasks=8 if n > 4096 else 16, goal=g)
      for n, g in [(256, 14.67), (1024, 8.80), (4096, 7.24), (16384, None)]],
    *[Row(f"GMM d=10 n={n}", 10, n, tasks=8 if n > 4096 else 16, goal=g)
      for n, g in [(256, 7.49), (1024, 4.65), (4096, 3.32), (16384, None)]],
    Row("2-comp diagonal GMM d=100 n=2048", 100, 2048, tasks=8, target="gmm_diag2"),
    *[Row(f"GMM d={d} n=1024", d, 1024, tasks=8 if d >= 20 else 16) for d in (1, 3, 5, 20, 50)],
    Row("Laplace d=2 n=256", 2, 256, target="laplace"),
    Row("Student-t nu=3 d=2 n=256", 2, 256, target="student_t"),
    Row("Student-t nu=3 d=2 n=256 + TTA 4 steps", 2, 256, target="student_t", tta_steps=4),
    Row("GMM 15 components d=2 n=1024", 2, 1024, target="gmm15"),
    Row("GMM 20 components d=2 n=1024", 2, 1024, target="gmm20"),
]
QUICK = ["GMM d=2 n=1024", "GMM d=10 n=1024", "GMM d=2 n=256", "GMM d=10 n=256", "2-comp diagonal GMM d=100 n=2048", "GMM d=2 n=4096",
         "GMM d=1 n=1024", "GMM d=5 n=1024", "GMM d=50 n=1024"]


def _problems(row: Row, seed: int) -> list[tuple[Callable[[Tensor], tuple[Tensor, Tensor]], Tensor, Tensor, Tensor]]:
    """(exact log p & score, context X, same-distribution queries, other-distribution queries) per task."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(row.tasks):
        other = random_gmm(1, row.dim, generator=g, dtype=torch.float64).sample(row.queries, generator=g)[0]
        if row.target in ("laplace", "student_t"):
            dist = Laplace(row.dim) if row.target == "laplace" else StudentT(row.dim, 3.0)
            x, same = dist.sample(row.n, generator=g), dist.sample(row.queries, generator=g)
            exact = dist.log_prob_and_score
        else:
            opts = {"gmm": {}, "gmm_diag2": dict(components=(2, 2), rotate=False),
                    "gmm15": dict(components=(15, 15)), "gmm20": dict(components=(20, 20))}[row.target]
            gmm = random_gmm(1, row.dim, generator=g, dtype=torch.float64, **opts)
            xs = gmm.sample(row.n + row.queries, generator=g)[0]
            x, same = xs[: row.n], xs[row.n:]
            exact = gmm.log_prob_and_score
        out.append((exact, x, same, other))
    return out


def _errors(log_p: Tensor, score: Tensor, true_lp: Tensor, true_s: Tensor) -> tuple[float, float, float]:
    """Summed squared score error, summed squared true score, summed squared log-density error."""
    return (float(((score - true_s) ** 2).sum()), float((true_s**2).sum()), float(((log_p - true_lp) ** 2).sum()))


COLUMNS = (("rel_score_mse_pct", "same"), ("rel_score_mse_pct", "other"), ("logp_mse", "same"), ("logp_mse", "other"))
WORSE_BEYOND_SE = 2.0  # a paired difference counts as a loss only beyond this many standard errors


def paired_difference(ours: list[float], best: list[float], scale: float) -> dict[str, float]:
    """The pooled error difference, ours - best, with the standard error of its sum over tasks.

    ours and best hold each task's summed error; the row's figure is sum(errors) / scale. Tasks are
    independent, so the sum of the per-task differences has variance T * var(difference)."""
    diff = torch.tensor(ours, dtype=torch.float64) - torch.tensor(best, dtype=torch.float64)
    se = math.sqrt(len(diff)) * float(diff.std()) / scale if len(diff) > 1 else math.inf
    return {"diff": float(diff.sum()) / scale, "se": se}


def evaluate_row(row: Row, estimator: Estimator, seed: int) -> dict[str, Any]:
    # "method/col" -> per task: summed squared score error, summed squared true score, summed squared
    # log-density error, number of queries
    per_task: dict[str, list[tuple[float, float, float, int]]] = {}
    t_ours = t_kde = 0.0
    for exact, x, same, other in _problems(row, seed):
        fitted = None
        for col, y in (("same", same), ("other", other)):
            true_lp, true_s = exact(y)
            t0 = time.perf_counter()
            if fitted is None:
                fitted = estimator.fit(x)
                if row.tta_steps:
                    fitted = fitted.adapt(row.tta_steps, generator=torch.Generator().manual_seed(seed))
            lp, s = fitted.log_density_and_score(y)
            t_ours += time.perf_counter() - t0
            t0 = time.perf_counter()
            scott = GaussianKDE(x, "scott").log_density_and_score(y)
            t_kde += time.perf_counter() - t0
            grid_lp, grid_s = kde_at_factors(x, y, GRID * scott_factor(row.n, row.dim))  # (m, F), (m, F, d)
            grid_score_err = ((grid_s - true_s[:, None]) ** 2).sum((0, 2))  # (F,)
            grid_lp_err = ((grid_lp - true_lp[:, None]) ** 2).sum(0)
            best = (float(grid_score_err.min()), float((true_s**2).sum()), float(grid_lp_err.min()))
            for method, errs in (("ours", _errors(lp, s, true_lp, true_s)), ("scott", _errors(*scott, true_lp, true_s)),
                                 ("best_kde", best)):
                per_task.setdefault(f"{method}/{col}", []).append((*errs, y.shape[0]))
    result: dict[str, Any] = {"row": asdict(row), "seconds_ours": round(t_ours, 3), "seconds_scott_kde": round(t_kde, 3)}
    sums = {key: [sum(column) for column in zip(*tasks)] for key, tasks in per_task.items()}
    for key, (se, norm, lpe, count) in sums.items():
        result[key] = {"rel_score_mse_pct": 100 * se / norm, "score_mse": se / count / row.dim,
                       "logp_mse": lpe / count}
    for metric, col in COLUMNS:
        _, norm, _, count = sums[f"ours/{col}"]
        scale = norm / 100 if metric == "rel_score_mse_pct" else count
        i = 0 if metric == "rel_score_mse_pct" else 2  # the per-task error column of this metric
        result.setdefault(f"ours_minus_best_kde/{col}", {})[metric] = paired_difference(
            [t[i] for t in per_task[f"ours/{col}"]], [t[i] for t in per_task[f"best_kde/{col}"]], scale)
    return result


def verdict_against_best_kde(row_result: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The columns (e.g. "log-density other") where ours has a larger error than the best KDE, and those
    among them where the paired difference exceeds WORSE_BEYOND_SE standard errors."""
    worse, significant = [], []
    for metric, col in COLUMNS:
        d = row_result[f"ours_minus_best_kde/{col}"][metric]
        name = f"{'score' if metric == 'rel_score_mse_pct' else 'log-density'} {col}"
        if d["diff"] > 0:
            worse.append(name)
            if d["diff"] > WORSE_BEYOND_SE * d["se"]:
                significant.append(name)
    return worse, significant


def median_ms(fn: Callable[[], Any], repeats: int = 100) -> float:
    """Median milliseconds of fn() over repeats calls, after one warm-up call (benchmark scripts' latency)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return 1e3 * times[len(times) // 2]


def git_commit(cwd: str | Path | None = None) -> str:
    """The checked-out commit, recorded in every results file ("unknown" outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(root: str | Path, script: str, argv: list[str]) -> dict[str, Any]:
    """What every results file records of how it was made: command, commit, uncommitted tracked changes,
    date, and the machine with its load average at the start (`finish_provenance` adds the end's)."""
    changes = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                             capture_output=True, text=True).stdout.split("\n")[:-1]
    return {"command": " ".join(["python", script, *argv]), "commit": git_commit(root), "uncommitted": changes,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average at start "
                       f"{os.getloadavg()[0]:.2f}, torch threads {torch.get_num_threads()}"}


def finish_provenance(report: dict[str, Any]) -> None:
    report["machine"] += f", load average at end {os.getloadavg()[0]:.2f}"


def provenance_line(report: dict[str, Any]) -> str:
    """The results file's line saying how it was made (from `provenance` and `finish_provenance`)."""
    return f"`{report['command']}` at commit `{report['commit'][:12]}`, {report['date']}; {report['machine']}."


def _fmt(v: float) -> str:
    return f"{v:.2f}" if abs(v) < 1000 else f"{v:.3g}"


def accuracy_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Accuracy benchmark", "",
        f"Command: `{report['command']}`  ", f"Commit: `{report['commit']}`  ",
        f"Weights: `{report['weights']}` (sha256 `{report['weights_sha256'][:16]}…`), "
        f"training step {report['training'].get('step', '?')}  ",
        f"Training cost: {report['training'].get('cost', 'unknown')}  ",
        f"Machine: {report['machine']}; benchmark wall time {report['wall_seconds']:.0f} s", "",
        "Relative score MSE in % (100 = predicting zero); lower is better. *same*: queries from the context's "
        "distribution; *other*: queries from an unrelated random GMM (tails). Best KDE picks, per task, the "
        "bandwidth on a 25-point grid (1/16 to 4 x Scott) that minimizes the error against the true score.", "",
        "| row | ours same | Scott same | best KDE same | report target | ours other | Scott other | best KDE other "
        "| ours ≤ best KDE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        o, s, b = (r[f"{m}/same"]["rel_score_mse_pct"] for m in ("ours", "scott", "best_kde"))
        oo, so, bo = (r[f"{m}/other"]["rel_score_mse_pct"] for m in ("ours", "scott", "best_kde"))
        goal = r["row"]["goal"]
        goal_txt = "" if goal is None else f"≤ {goal} ({'met' if o <= goal else 'missed'})"
        ok = "yes" if o <= b and oo <= bo else ("same only" if o <= b else ("other only" if oo <= bo else "no"))
        lines.append(f"| {r['row']['name']} | {_fmt(o)} | {_fmt(s)} | {_fmt(b)} | {goal_txt} | {_fmt(oo)} | {_fmt(so)} "
                     f"| {_fmt(bo)} | {ok} |")
    lines += ["", "Log-density MSE (same queries / other queries); best KDE picks the bandwidth by log-density error.", "",
              "| row | ours | Scott | best KDE | best KDE / ours (score MSE) | best KDE / ours (log-density MSE) |",
              "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        o, s, b = (r[f"{m}/same"] for m in ("ours", "scott", "best_kde"))
        oo, so, bo = (r[f"{m}/other"] for m in ("ours", "scott", "best_kde"))
        lines.append(f"| {r['row']['name']} | {_fmt(o['logp_mse'])} / {_fmt(oo['logp_mse'])} | {_fmt(s['logp_mse'])} / "
                     f"{_fmt(so['logp_mse'])} | {_fmt(b['logp_mse'])} / {_fmt(bo['logp_mse'])} | "
                     f"{b['score_mse'] / o['score_mse']:.2f}x | {b['logp_mse'] / o['logp_mse']:.2f}x |")
    lines += ["", "Ours against the best KDE, paired by task: the row's error difference (ours - best KDE; negative: ours "
              "is better) ± one standard error of the difference summed over the row's tasks (relative score MSE in "
              f"percentage points, log-density MSE in its units). A difference beyond {WORSE_BEYOND_SE:g} standard "
              "errors counts as a loss.", "",
              "| row | score same | score other | log-density same | log-density other | verdict |",
              "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        cells = []
        for metric, col in COLUMNS:
            d = r[f"ours_minus_best_kde/{col}"][metric]
            cells.append(f"{d['diff']:+.3g} ± {d['se']:.2g}")
        worse, significant = verdict_against_best_kde(r)
        verdict = ("better on all four" if not worse else
                   f"worse beyond {WORSE_BEYOND_SE:g} SE: {', '.join(significant)}" if significant else
                   f"larger error within {WORSE_BEYOND_SE:g} SE: {', '.join(worse)}")
        lines.append(f"| {r['row']['name']} | {' | '.join(cells)} | {verdict} |")
    return "\n".join(lines) + "\n"


def run_accuracy(weights: str | None, quick: bool, out_dir: Path, seed: int = 2026,
                 only: str = "", blend: str | None = None) -> dict[str, Any]:
    estimator = load(weights, blend=blend)
    path = weights or str(Path(__file__).with_name("weights") / "default.safetensors")
    meta = read_metadata(path)
    stats = json.loads(meta.get("stats", "{}"))
    cost = (f"{meta.get('step', '?')} steps, {stats.get('tokens_seen', 0):.3g} tokens (context + query points), "
            f"{stats.get('train_hours', 0):.2f} h on {stats.get('hardware', 'unknown')}"
            + (f"; {stats['method']}" if "method" in stats else "")) if stats else "unknown"
    rows = [r for r in ROWS if (not quick or r.name in QUICK) and (not only or any(o in r.name for o in only.split(",")))]
    t0 = time.time()
    results = []
    for row in rows:
        results.append(evaluate_row(row, estimator, seed + zlib.crc32(row.name.encode()) % 10_000))
        r = results[-1]
        print(f"{row.name:45s} ours {r['ours/same']['rel_score_mse_pct']:7.2f}  scott {r['scott/same']['rel_score_mse_pct']:7.2f}"
              f"  best {r['best_kde/same']['rel_score_mse_pct']:7.2f} | other: ours {r['ours/other']['rel_score_mse_pct']:7.2f}"
              f" best {r['best_kde/other']['rel_score_mse_pct']:7.2f}", flush=True)
    command = ("python -m disco_plug.bench accuracy" + (" --quick" if quick else "")
               + (f" --weights {weights}" if weights else "") + (f" --rows {only!r}" if only else "")
               + (f" --blend {blend}" if blend else ""))
    report = {"command": command, "commit": git_commit(), "weights": path, "weights_sha256": file_sha256(path),
              "training": {"step": meta.get("step"), "cost": cost}, "seed": seed,
              "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
              "wall_seconds": time.time() - t0, "rows": results}
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = ("accuracy_quick" if quick else "accuracy") + (f"_{blend}" if blend else "")
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=1))
    (out_dir / f"{stem}.md").write_text(accuracy_markdown(report))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m disco_plug.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", choices=["accuracy"], help="which benchmark to run")
    parser.add_argument("--weights", default=None, help="weights file (default: the bundled weights)")
    parser.add_argument("--quick", action="store_true", help="a subset of rows, for comparing checkpoints")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    parser.add_argument("--rows", default="", help="comma-separated substrings: run only the matching rows")
    parser.add_argument("--blend", default=None, choices=["stacked", "gated"],
                        help="override the weights' blend (results go to accuracy_<blend>.{md,json})")
    args = parser.parse_args(argv)
    run_accuracy(args.weights, args.quick, Path(args.out), only=args.rows, blend=args.blend)


if __name__ == "__main__":
    main()
