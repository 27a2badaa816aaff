"""Sampler benchmark: quality on a 2-D Gaussian mixture and the cost of one sampler step.

    python benchmarks/samplers.py            # writes benchmarks/results/samplers.{md,json}
    python benchmarks/samplers.py --quick    # fewer chains and steps, for a smoke run

Quality: the bundled estimator is fitted on n = 2048 samples of a fixed 2-D mixture; every sampler draws
2048 points with (a) the exact score of the mixture, (b) the estimator's noise-conditional score
(NoisedScore, mode "convolved", the default), (c) the same from the noised context X + sigma E (mode
"noised_context"), (d) a Gaussian-KDE score (Scott's bandwidth h, convolved exactly: bandwidth
sqrt(h^2 + sigma^2)). Reported: energy distance to 2048 fresh target samples (and between two fresh
sets, the noise floor), the estimator/exact ratio (target <= 2), and the memorization ratio (mean
nearest-neighbour distance of generated points to the context over that of fresh target points).
Energy distances of 2048 points fluctuate by tens of percent between draws, so every figure is the
mean over `--repeats` repeats, each with its own context, fresh sets and sampler seed.

Speed: one Langevin step (score query + move) for 1024 chains with n = 2048 context points at d = 2 and
d = 10, with the prepared context cached vs fitting the context again every step, and one step at a new
noise level (what a reverse SDE or ODE step pays).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's disco_plug, whatever the installed copy

import torch  # noqa: E402

import disco_plug  # noqa: E402
from disco_plug.bench import git_commit  # noqa: E402
from disco_plug.gmm import GaussianMixture, random_gmm  # noqa: E402
from disco_plug.densities.kde import isotropic_kde, scott_factor  # noqa: E402
from disco_plug.noised import NoisedScore  # noqa: E402
from disco_plug.samplers import (energy_distance, get_sigmas_geometric, get_sigmas_karras,  # noqa: E402
                                 get_sigmas_vp, memorization_ratio, sample_annealed_langevin,
                                 sample_probability_flow, sample_ve_sde, sample_vp_sde, vp_scale)
OUT = ROOT / "benchmarks" / "results"


def target() -> GaussianMixture:
    return GaussianMixture.from_components(
        [0.3, 0.5, 0.2], torch.tensor([[-2.0, 0.0], [1.5, 1.0], [0.0, -2.5]], dtype=torch.float64),
        torch.tensor([[0.3, 0.5], [0.6, 0.2], [0.4, 0.4]], dtype=torch.float64))


def kde_score_fn(context: torch.Tensor):
    n, d = context.shape
    h = scott_factor(n, d) * float(context.std(0).mean())
    ctx = context[None]

    def score_fn(x: torch.Tensor, sigma: float) -> torch.Tensor:
        flat = x.reshape(1, -1, d)
        return isotropic_kde(flat, ctx, math.sqrt(h * h + sigma * sigma))[1].reshape(x.shape)
    return score_fn


def run_sampler(method: str, score_fn, mean, cov, num: int, steps: int, seed: int) -> torch.Tensor:
    """The samplers with the same data-scaled schedules as FittedEstimator.sample."""
    g = torch.Generator().manual_seed(seed)
    evals = torch.linalg.eigvalsh(cov)
    smax, smin = 10 * float(evals[-1].sqrt()), 0.01 * float(evals[0].sqrt())

    def prior(sigma):
        chol = torch.linalg.cholesky(cov + sigma**2 * torch.eye(len(mean), dtype=cov.dtype))
        return mean + torch.randn(num, len(mean), generator=g, dtype=cov.dtype) @ chol.T
    if method == "ode":
        return sample_probability_flow(score_fn, prior(smax), get_sigmas_karras(steps, smin, smax))
    if method == "annealed_langevin":
        return sample_annealed_langevin(score_fn, prior(smax), get_sigmas_geometric(10, smin, smax),
                                        steps_per_sigma=steps // 10, generator=g)
    if method == "vp_sde":
        sig = get_sigmas_vp(steps)
        return sample_vp_sde(score_fn, vp_scale(float(sig[0])) * prior(float(sig[0])), sig, generator=g)
    corrector = 1 if method == "pc" else 0
    return sample_ve_sde(score_fn, prior(smax), get_sigmas_geometric(steps, smin, smax),
                         corrector_steps=corrector, generator=g)


SCORES = ("exact", "DiScoFormer", "noised context", "KDE (Scott)")


def quality(est, num: int, steps: dict[str, int], repeats: int) -> list[dict]:
    """Per method, the mean over repeats of energy distance, memorization and seconds per score."""
    gmm = target()
    runs = []
    for r in range(repeats):
        g = torch.Generator().manual_seed(1000 * r)
        context = gmm.sample(2048, generator=g)[0]
        fresh, fresh2 = gmm.sample(num, generator=g)[0], gmm.sample(num, generator=g)[0]
        fitted = est.fit(context)
        runs.append({"context": context, "fresh": fresh, "floor": energy_distance(fresh, fresh2),
                     "moments": (context.mean(0), torch.cov(context.T)),
                     "scores": {"exact": gmm.score_fn, "DiScoFormer": NoisedScore(fitted).score_fn,
                                "noised context": NoisedScore(fitted, mode="noised_context").score_fn,
                                "KDE (Scott)": kde_score_fn(context)}})
    rows = []
    for method, k in steps.items():
        row: dict = {"method": method, "steps": k, "repeats": repeats,
                     "noise_floor_ed": sum(run["floor"] for run in runs) / repeats}
        for name in SCORES:
            eds, memos, secs = [], [], []
            for r, run in enumerate(runs):
                t = time.perf_counter()
                x = run_sampler(method, run["scores"][name], *run["moments"], num, k, seed=1 + r)
                secs.append(time.perf_counter() - t)
                eds.append(energy_distance(x, run["fresh"]))
                memos.append(memorization_ratio(x, run["context"], run["fresh"]))
            row[f"{name}_ed"], row[f"{name}_ed_each"] = sum(eds) / repeats, eds
            row[f"{name}_memorization"] = sum(memos) / repeats
            row[f"{name}_seconds"] = sum(secs) / repeats
        row["ratio_vs_exact"] = row["DiScoFormer_ed"] / row["exact_ed"]
        row["noised_context_ratio_vs_exact"] = row["noised context_ed"] / row["exact_ed"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def best_of(fn, repeats: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def speed(est, chains: int, n: int, repeats: int) -> list[dict]:
    rows = []
    for d in (2, 10):
        g = torch.Generator().manual_seed(d)
        mix = random_gmm(1, d, generator=g, dtype=torch.float64)
        context = mix.sample(n, generator=g)[0]
        x = mix.sample(chains, generator=g)[0]
        noised = NoisedScore(est.fit(context))
        sigma = 0.1
        levels = iter(torch.linspace(0.1, 1.0, 10 * (repeats + 1)).tolist())

        def move(score):
            return x + 0.01 * score + math.sqrt(0.02) * torch.randn(x.shape, generator=g, dtype=x.dtype)

        def cached_step():
            return move(noised.score_fn(x, sigma))

        def reencode_step():  # what a cache-less sampler does every step: fit the context again
            return move(est.fit(context).convolved(sigma).score(x))

        def new_level_step():  # a reverse SDE / ODE step: a noise level not seen before
            return move(noised.score_fn(x, next(levels)))
        cached, fresh, level = (best_of(f, repeats) for f in (cached_step, reencode_step, new_level_step))
        rows.append({"d": d, "n": n, "chains": chains, "cached_ms": 1e3 * cached, "reencode_ms": 1e3 * fresh,
                     "speedup": fresh / cached, "new_level_ms": 1e3 * level})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer points and steps (smoke run)")
    parser.add_argument("--only", choices=("speed", "quality"), default=None, help="run one part")
    parser.add_argument("--repeats", type=int, default=3, help="independent repeats of the quality runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    training = subprocess.run(["pgrep", "-f", "disco_plug.train"], capture_output=True, text=True).stdout.split()
    est = disco_plug.load()
    num = 512 if args.quick else 2048
    steps = ({"ode": 20, "pc": 30} if args.quick else
             {"ode": 40, "pc": 100, "ve_sde": 200, "vp_sde": 200, "annealed_langevin": 500})
    speed_rows = [] if args.only == "quality" else speed(est, 1024, 2048, 3 if args.quick else 7)
    quality_rows = [] if args.only == "speed" else quality(est, num, steps, 1 if args.quick else args.repeats)
    commit = git_commit(ROOT)
    meta = {"command": " ".join(["python", "benchmarks/samplers.py", *(argv if argv is not None else sys.argv[1:])]),
            "commit": commit, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(), "training_running": bool(training),
            "weights": est.metadata.get("step", "?"), "chains_quality": num, "cpus": os.cpu_count()}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "samplers.json").write_text(json.dumps({"meta": meta, "speed": speed_rows, "quality": quality_rows},
                                                  indent=2))
    lines = ["# Samplers: quality and speed", "",
             f"Command: `{meta['command']}` at commit `{commit}`; torch {meta['torch']}, "
             f"{meta['threads']} threads of {meta['cpus']} CPUs ({meta['machine']}); bundled weights step {meta['weights']}.",
             f"Background training run active during the measurement: {'yes' if training else 'no'}"
             + (" (it competes for the 2 cores; timings are pessimistic)." if training else "."), "",
             "## Quality (2-D 3-component GMM, context n = 2048)", "",
             f"Energy distance (ED) of {num} generated points to {num} fresh target samples (lower is better; the "
             "noise floor is the same between two fresh target sets). Every figure is the mean over "
             f"{quality_rows[0]['repeats'] if quality_rows else 0} repeats (own context, fresh sets and sampler "
             "seed each; the per-repeat values are in samplers.json). Ratio = ED / exact-score ED "
             "(target <= 2). DiScoFormer: the default convolved noise-conditional score; noised context: the "
             "estimator fitted on X + sigma E. Memorization = NN distance to the context of generated / of "
             "fresh points (1 = generalizes, << 1 = copies the context).", "",
             "| method | steps | floor | exact ED | DiScoFormer ED | ratio | noised-context ED | ratio | KDE ED "
             "| memo exact / DiSco / noised / KDE | s per run (exact / DiSco / noised / KDE) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in quality_rows:
        memo = " / ".join(f"{r[f'{name}_memorization']:.2f}" for name in SCORES)
        secs = " / ".join(f"{r[f'{name}_seconds']:.1f}" for name in SCORES)
        lines.append(f"| {r['method']} | {r['steps']} | {r['noise_floor_ed']:.2e} | {r['exact_ed']:.2e} | "
                     f"{r['DiScoFormer_ed']:.2e} | {r['ratio_vs_exact']:.2f} | {r['noised context_ed']:.2e} | "
                     f"{r['noised_context_ratio_vs_exact']:.2f} | {r['KDE (Scott)_ed']:.2e} | {memo} | {secs} |")
    lines += ["", "## Speed: one Langevin step, 1024 chains, n = 2048 context points (best of repeats)", "",
              "Target: <= 100 ms per step with the cached context, and >= 5x faster than fitting the context "
              "again every step. New level: one step at a noise level not seen before (a reverse SDE or ODE "
              "step), which convolves the clean fit's skips in closed form.",
              "", "| d | cached context (ms) | fit again every step (ms) | speed-up | new noise level (ms) |",
              "|---|---|---|---|---|"]
    for r in speed_rows:
        lines.append(f"| {r['d']} | {r['cached_ms']:.1f} | {r['reencode_ms']:.1f} | {r['speedup']:.1f}x | "
                     f"{r['new_level_ms']:.1f} |")
    (OUT / "samplers.md").write_text("\n".join(lines) + "\n")
    print((OUT / "samplers.md").read_text())


if __name__ == "__main__":
    main()
