"""Integration benchmark: the adapters driven by the bundled estimator.

1. Two-stage Bayesian logistic regression on scikit-learn's breast-cancer data (integrations/workflow.py):
   the stage-1 NUTS posterior becomes the stage-2 prior through a density, compared with exact NUTS on
   all the data. Densities: the bundled DiScoFormer estimator, scipy-style Gaussian KDE (Scott) and a
   moment-matched Gaussian (a strong baseline here: logistic-regression posteriors are near Gaussian).
2. Each adapter (Pyro NUTS, BlackJAX MALA, diffusers DDIM/DPM-Solver/DDPM) on the estimator fitted to
   2048 samples of a 2-D Gaussian mixture: moment errors against the exact mixture.
3. Speed: one log-density-and-score call directly and through each adapter.

Run: python benchmarks/integrations.py [--quick]
Writes benchmarks/results/integrations.md and integrations.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import disco_plug
from disco_plug.bench import git_commit, median_ms
from disco_plug.gmm import GaussianMixture
from disco_plug.densities.kde import GaussianKDE

ROOT = Path(__file__).resolve().parents[1]

TARGET = GaussianMixture.from_components(
    [0.4, 0.6], torch.tensor([[-0.6, 0.4], [0.7, -0.3]], dtype=torch.float64),
    torch.tensor([[0.5, 0.6], [0.4, 0.3]], dtype=torch.float64))


class MomentGaussian:
    """N(mean, cov) of the samples: log-density and score in closed form."""

    def __init__(self, x: torch.Tensor) -> None:
        x = x.double()
        self.dim, self.mean = x.shape[1], x.mean(0)
        self.precision = torch.linalg.inv(torch.cov(x.T))

    def log_density_and_score(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = y.double() - self.mean
        score = -c @ self.precision
        return (0.5 * (c * score).sum(-1)).to(y.dtype), score.to(y.dtype)


class KDE:
    """disco_plug.GaussianKDE (scipy's kernel, Scott's factor) with the `dim` of the Density protocol."""

    def __init__(self, x: torch.Tensor) -> None:
        self.kde, self.dim = GaussianKDE(x.double()), x.shape[1]

    def log_density_and_score(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.kde.log_density_and_score(y)


def exact_moments() -> tuple[torch.Tensor, torch.Tensor]:
    w, m, v = TARGET.log_weights.exp()[0], TARGET.means[0], TARGET.variances[0]
    mean = w @ m
    second = (w[:, None, None] * (torch.diag_embed(v) + m[:, :, None] * m[:, None, :])).sum(0)
    return mean, second - mean.outer(mean)


def moment_errors(x: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Largest mean error (in target sds) and covariance error (in sd_i sd_j) of draws (n, 2)."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64).reshape(-1, 2)
    mean, cov = exact_moments()
    sd = cov.diagonal().sqrt()
    return {"mean_err": float(((x.mean(0) - mean) / sd).abs().max()),
            "cov_err": float(((torch.cov(x.T) - cov) / sd.outer(sd)).abs().max()), "draws": x.shape[0]}


def adapters(fitted, quick: bool) -> dict[str, dict]:
    import blackjax
    import jax
    import pyro
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
    from pyro.infer import MCMC, NUTS

    from disco_plug.integrations.blackjax import logdensity_fn
    from disco_plug.integrations.diffusers import TabularPipeline
    from disco_plug.integrations.pyro import potential_fn

    out = {}
    pot = potential_fn(fitted)
    z = {"x": torch.zeros(2)}
    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(potential_fn=pot), num_samples=300 if quick else 1000, warmup_steps=200,
                initial_params=z, disable_progbar=True)
    start = time.perf_counter()
    mcmc.run()
    out["Pyro NUTS (potential_fn)"] = {**moment_errors(mcmc.get_samples()["x"]),
                                       "seconds": time.perf_counter() - start}

    logdensity = logdensity_fn(fitted)
    chains, steps = 8, 300 if quick else 1000
    mala = blackjax.mala(logdensity, step_size=0.3)
    step = jax.vmap(mala.step)

    def one(states, key):
        states, _ = step(jax.random.split(key, chains), states)
        return states, states.position

    states = jax.vmap(mala.init)(jax.random.normal(jax.random.key(0), (chains, 2)))
    start = time.perf_counter()
    _, draws = jax.jit(lambda s, k: jax.lax.scan(one, s, jax.random.split(k, steps)))(states, jax.random.key(1))
    draws = np.asarray(draws)[steps // 5:]
    out[f"BlackJAX MALA ({chains} vmapped chains)"] = {**moment_errors(draws), "seconds": time.perf_counter() - start}

    for scheduler, steps in [(DDIMScheduler(), 20), (DPMSolverMultistepScheduler(), 20), (DDPMScheduler(), 50)]:
        steps = steps // 2 if quick else steps
        pipe = TabularPipeline.from_fitted(fitted, scheduler)
        start = time.perf_counter()
        with warnings.catch_warnings():  # diffusers' np.array(tensor) DeprecationWarning under numpy 2
            warnings.simplefilter("ignore", DeprecationWarning)
            x = pipe(2000, num_inference_steps=steps, generator=torch.Generator().manual_seed(0))
        out[f"diffusers {type(scheduler).__name__}, {steps} steps"] = {
            **moment_errors(x), "seconds": time.perf_counter() - start,
            "outliers (> 5 from the mean)": int(((x.double() - exact_moments()[0]).norm(dim=-1) > 5).sum())}
    return out



def speed(fitted) -> dict[str, dict]:
    """Latency of one log-density-and-score evaluation at one point: the density called directly,
    through Pyro's potential_grad and through a jitted jax.value_and_grad. With the exact mixture the
    density itself is cheap, so the differences are the adapters' own overhead."""
    import jax
    from pyro.ops.integrator import potential_grad

    from disco_plug.integrations._density import GaussianMixtureDensity
    from disco_plug.integrations.blackjax import logdensity_fn
    from disco_plug.integrations.pyro import potential_fn

    out = {}
    for name, density in [("bundled estimator (n = 2048, d = 2)", fitted), ("exact mixture", GaussianMixtureDensity(TARGET))]:
        y = torch.zeros(1, 2, dtype=torch.float32)
        pot, z = potential_fn(density), {"x": torch.zeros(2)}
        value_and_grad = jax.jit(jax.value_and_grad(logdensity_fn(density)))
        origin = jax.numpy.zeros(2)
        out[name] = {"direct": median_ms(lambda: density.log_density_and_score(y)),
                     "pyro potential_grad": median_ms(lambda: potential_grad(pot, z)),
                     "jax value_and_grad (jit)": median_ms(lambda: jax.block_until_ready(value_and_grad(origin)))}
    return out


def workflow(est, quick: bool) -> dict[str, dict]:
    from disco_plug.integrations.workflow import two_stage

    settings = dict(stage1_samples=1024 if quick else 2048, num_samples=400 if quick else 1500,
                    warmup_steps=200 if quick else 500)
    results, exact = {}, None
    for name, fit in [("DiScoFormer (bundled)", est.fit), ("Gaussian KDE (Scott)", KDE),
                      ("moment-matched Gaussian", MomentGaussian)]:
        start = time.perf_counter()
        r = two_stage(fit, exact_draws=exact, **settings)
        exact = r.exact_draws  # the other densities reuse the exact run
        results[name] = {
            "names": r.names, "exact_mean": r.exact_mean.tolist(), "exact_sd": r.exact_sd.tolist(),
            "stage2_mean": r.stage2_mean.tolist(), "stage2_sd": r.stage2_sd.tolist(),
            "sd_gap": r.sd_gap.tolist(), "mean_gap": r.mean_gap.tolist(), "sd_noise": r.sd_noise.tolist(),
            "stage2_ess": r.stage2_ess.tolist(), "exact_ess": r.exact_ess.tolist(),
            "seconds": {**r.seconds, "total": time.perf_counter() - start}}
    return {"settings": settings, "densities": results}


def markdown(report: dict) -> str:
    changed = ", ".join(line[3:] for line in report["uncommitted"])
    dirty = f" plus uncommitted changes to {changed}" if changed else ""
    lines = ["# Integrations benchmark", "",
             f"Command: `{report['command']}`  ",
             f"Commit: `{report['commit']}`{dirty}  ",
             f"Date: {report['date']}  ", f"Machine: {report['machine']}  ", f"Versions: {report['versions']}",
             f"Weights: {report['weights']}", "",
             "## Two-stage Bayesian logistic regression (breast cancer)", "",
             "Stage 1: NUTS on half of the data (prior N(0, 2^2 I)); stage 2: the stage-1 draws become the "
             "prior through a density, NUTS on the other half; reference: NUTS on all the data. Features: "
             f"{', '.join(report['workflow']['densities']['DiScoFormer (bundled)']['names'])} (standardized). "
             f"Settings: {report['workflow']['settings']}.", "",
             "sd gap = stage-2 posterior sd / exact posterior sd - 1 (per coefficient); mean gap in exact "
             "sds. MC noise = the standard error of the sd gap from the ESS of both runs.", "",
             "| prior density | sd gap per coefficient | mean abs sd gap | max abs mean gap | MC noise (sd gap) | stage-2 s |",
             "|---|---|---|---|---|---|"]
    for name, r in report["workflow"]["densities"].items():
        gaps = ", ".join(f"{g:+.3f}" for g in r["sd_gap"])
        lines.append(f"| {name} | {gaps} | {np.mean(np.abs(r['sd_gap'])):.3f} | "
                     f"{np.max(np.abs(r['mean_gap'])):.3f} | {np.mean(r['sd_noise']):.3f} | "
                     f"{r['seconds']['stage2']:.1f} |")
    ref = report["workflow"]["densities"]["DiScoFormer (bundled)"]
    lines += ["", "Exact posterior (NUTS, all data): " + ", ".join(
        f"{n} {m:+.3f} ± {s:.3f}" for n, m, s in zip(ref["names"], ref["exact_mean"], ref["exact_sd"])), "",
        "## Adapters on the bundled estimator (2048 samples of a 2-D Gaussian mixture)", "",
        "| adapter | max mean error (sds) | max cov error (sd_i sd_j) | draws | seconds | outliers (> 5 from the mean) |",
        "|---|---|---|---|---|---|"]
    for name, r in report["adapters"].items():
        outliers = r.get("outliers (> 5 from the mean)", "-")
        lines.append(f"| {name} | {r['mean_err']:.3f} | {r['cov_err']:.3f} | {r['draws']} | {r['seconds']:.1f} | "
                     f"{outliers} |")
    lines += ["", "## Speed: one log-density-and-score call through each adapter (median ms)", "",
              "| density | direct call | Pyro potential_grad | JAX value_and_grad (jit) |", "|---|---|---|---|"]
    for name, r in report["speed"].items():
        lines.append(f"| {name} | {r['direct']:.3f} | {r['pyro potential_grad']:.3f} | "
                     f"{r['jax value_and_grad (jit)']:.3f} |")
    lines += ["", "MCMC draws are correlated: the errors include Monte Carlo noise of roughly "
              "1/sqrt(ESS) sds; see tests/integrations for the ESS-derived pass criteria.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small settings (a smoke run)")
    args = parser.parse_args()
    torch.manual_seed(0)
    import blackjax
    import diffusers
    import jax
    import pyro

    est = disco_plug.load()
    fitted = est.fit(TARGET.sample(2048, generator=torch.Generator().manual_seed(11))[0].float())
    report = {
        "command": " ".join(["python", "benchmarks/integrations.py", *sys.argv[1:]]),
        "commit": git_commit(ROOT),
        "uncommitted": subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                      capture_output=True, text=True).stdout.split("\n")[:-1],
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
        "versions": {"torch": torch.__version__, "pyro": pyro.__version__, "jax": jax.__version__,
                     "blackjax": blackjax.__version__, "diffusers": diffusers.__version__},
        "weights": {k: v for k, v in getattr(est, "metadata", {}).items() if len(str(v)) < 200},
        "speed": speed(fitted),
        "adapters": adapters(fitted, args.quick),
        "workflow": workflow(est, args.quick),
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "integrations.json").write_text(json.dumps(report, indent=2))
    (out / "integrations.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
