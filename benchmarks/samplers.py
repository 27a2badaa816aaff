"""Sampler benchmark: quality on a 2-D Gaussian mixture and the cost of one sampler step.

    python benchmarks/samplers.py            # writes benchmarks/results/samplers.{md,json}
    python benchmarks/samplers.py --quick    # fewer chains and steps, for a smoke run

Quality: the bundled estimator is fitted on n = 2048 samples of a fixed 2-D mixture; every sampler draws
2048 points with (a) the exact score of the mixture, (b) the estimator's noise-conditional score
(NoisedScore), (c) a Gaussian-KDE score (Scott's bandwidth h, convolved exactly: bandwidth
sqrt(h^2 + sigma^2)). Reported: energy distance to 2048 fresh target samples (and between two fresh
sets, the noise floor), the estimator/exact ratio (target <= 2), and the memorization ratio (mean
nearest-neighbour distance of generated points to the context over that of fresh target points).

Speed: one Langevin step (score query + move) for 1024 chains with n = 2048 context points at d = 2 and
d = 10, with the encoded context cached vs re-encoding the context every step.
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
from disco_plug.kde import isotropic_kde, scott_factor  # noqa: E402
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


def quality(est, num: int, steps: dict[str, int]) -> list[dict]:
    gmm = target()
    g = torch.Generator().manual_seed(0)
    context = gmm.sample(2048, generator=g)[0]
    fresh, fresh2 = gmm.sample(num, generator=g)[0], gmm.sample(num, generator=g)[0]
    mean, cov = context.mean(0), torch.cov(context.T)
    floor = energy_distance(fresh, fresh2)
    scores = {"exact": gmm.score_fn, "DiScoFormer": NoisedScore(est.fit(context)).score_fn,
              "KDE (Scott)": kde_score_fn(context)}
    rows = []
    for method, k in steps.items():
        row = {"method": method, "steps": k, "noise_floor_ed": floor}
        for name, fn in scores.items():
            t = time.perf_counter()
            x = run_sampler(method, fn, mean, cov, num, k, seed=1)
            row[f"{name}_seconds"] = time.perf_counter() - t
            row[f"{name}_ed"] = energy_distance(x, fresh)
            row[f"{name}_memorization"] = memorization_ratio(x, context, fresh)
        row["ratio_vs_exact"] = row["DiScoFormer_ed"] / row["exact_ed"]
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

        def cached_step():
            return x + 0.01 * noised.score_fn(x, sigma) + math.sqrt(0.02) * torch.randn(x.shape, generator=g,
                                                                                      dtype=x.dtype)

        def reencode_step():
            fitted = est.fit(context + sigma * noised.noise)  # what a cache-less sampler does every step
            return x + 0.01 * fitted.score(x) + math.sqrt(0.02) * torch.randn(x.shape, generator=g, dtype=x.dtype)
        cached, fresh = best_of(cached_step, repeats), best_of(reencode_step, repeats)
        rows.append({"d": d, "n": n, "chains": chains, "cached_ms": 1e3 * cached, "reencode_ms": 1e3 * fresh,
                     "speedup": fresh / cached})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer points and steps (smoke run)")
    parser.add_argument("--only", choices=("speed", "quality"), default=None, help="run one part")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    training = subprocess.run(["pgrep", "-f", "disco_plug.train"], capture_output=True, text=True).stdout.split()
    est = disco_plug.load()
    num = 512 if args.quick else 2048
    steps = ({"ode": 20, "pc": 30} if args.quick else
             {"ode": 40, "pc": 100, "ve_sde": 200, "vp_sde": 200, "annealed_langevin": 500})
    speed_rows = [] if args.only == "quality" else speed(est, 1024, 2048, 3 if args.quick else 7)
    quality_rows = [] if args.only == "speed" else quality(est, num, steps)
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
             f"Energy distance of {num} generated points to {num} fresh target samples (lower is better; the "
             "noise floor is the same between two fresh target sets). Ratio = DiScoFormer / exact (target <= 2). "
             "Memorization = NN distance to the context of generated / of fresh points (1 = generalizes, "
             "<< 1 = copies the context).", "",
             "| method | steps | floor | exact ED | DiScoFormer ED | ratio | KDE ED | memo exact | memo DiScoFormer "
             "| memo KDE | s (exact / DiSco / KDE) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in quality_rows:
        lines.append(f"| {r['method']} | {r['steps']} | {r['noise_floor_ed']:.2e} | {r['exact_ed']:.2e} | "
                     f"{r['DiScoFormer_ed']:.2e} | {r['ratio_vs_exact']:.2f} | {r['KDE (Scott)_ed']:.2e} | "
                     f"{r['exact_memorization']:.2f} | {r['DiScoFormer_memorization']:.2f} | "
                     f"{r['KDE (Scott)_memorization']:.2f} | {r['exact_seconds']:.1f} / "
                     f"{r['DiScoFormer_seconds']:.1f} / {r['KDE (Scott)_seconds']:.1f} |")
    lines += ["", "## Speed: one Langevin step, 1024 chains, n = 2048 context points (best of repeats)", "",
              "Target: <= 100 ms per step with the cached context, and >= 5x faster than re-encoding every step.",
              "", "| d | cached context (ms) | re-encode every step (ms) | speed-up |", "|---|---|---|---|"]
    for r in speed_rows:
        lines.append(f"| {r['d']} | {r['cached_ms']:.1f} | {r['reencode_ms']:.1f} | {r['speedup']:.1f}x |")
    lines += ["", "Steps that change sigma (reverse SDE, ODE) need one encode per noise level by construction; "
              "the cache serves repeated queries at a level (Langevin, MALA, annealed Langevin's inner loop, "
              "the corrector, Heun's second evaluation reused by the next step)."]
    (OUT / "samplers.md").write_text("\n".join(lines) + "\n")
    print((OUT / "samplers.md").read_text())


if __name__ == "__main__":
    main()
