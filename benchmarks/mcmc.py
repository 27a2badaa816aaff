"""MCMC benchmark: does the estimated density hold up where MCMC goes (tails, edges, between modes)?

    python benchmarks/mcmc.py            # writes benchmarks/results/mcmc.{md,json}
    python benchmarks/mcmc.py --quick    # fewer chains and steps, for a smoke run

Per target (non-mixture shapes in d = 2..6, disco_plug.targets: curved, funnel-shaped, heavy-tailed,
bounded, two-moded), the bundled estimator is fitted on n exact draws and checked like a user's MCMC run
would see it (the bounded target twice: as is, and with `fit(..., bounds=...)` on the same draws, as a
user who knows the support would fit it):
- global maximum: gradient ascent on the estimated log-density from many starts (half at data points,
  half far out: the data mean plus Student-t draws at 3x the data's spread); reported: the exact
  log-density at the best point found, minus the exact mode's (target: >= -2 nats);
- over-estimation away from the data: points from a broad proposal whose exact log-density is more than
  10 nats below the exact mode; reported: the largest estimate there minus (exact mode - 5) (target: < 0);
- normalization: FittedEstimator.normalization (importance sampling), with its standard error;
- score vs gradient: the largest relative difference between the score and central finite differences of
  the log-density, at data points and at the far points;
- NUTS (BlackJAX, window adaptation) on `disco_plug.integrations.blackjax.logdensity_fn` of the
  estimate, of a Gaussian KDE with scipy's gaussian_kde kernel (Scott's rule), and of the exact density:
  energy distance of the chains' draws to fresh exact draws, divided by the same distance between two
  fresh exact sets (the floor; 1 is perfect); and the same with MALA (BlackJAX, step tuned to an
  acceptance near 0.57 on pilot runs), and Pyro NUTS on `disco_plug.integrations.pyro.potential_fn` (a
  few chains, one after another). Chains start at random data points; each sampler runs three times from
  different starts and keys (the same for the three densities), and the table shows the median ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's disco_plug, whatever the installed copy

import numpy as np  # noqa: E402
import torch  # noqa: E402

import disco_plug  # noqa: E402
from disco_plug.bench import git_commit  # noqa: E402
from disco_plug.densities.kde import GaussianKDE  # noqa: E402
from disco_plug.samplers import energy_distance  # noqa: E402
from disco_plug.targets import Banana, BetaProduct, Bimodal, Funnel, StudentT  # noqa: E402

OUT = ROOT / "benchmarks" / "results"
TARGETS = {"banana d=2": Banana(), "funnel d=3": Funnel(3), "Student-t nu=3 d=5": StudentT(5, 3.0),
           "Beta(2,5) product d=3": BetaProduct(3), "two modes d=6": Bimodal(6),
           "Beta(2,5) product d=3, bounds=(0, 1)": BetaProduct(3)}
# Rows fitted with the options a user who knows the support passes: (the row whose draws and seeds it
# shares, so the two are paired, the fit options)
FIT_OPTIONS = {"Beta(2,5) product d=3, bounds=(0, 1)": ("Beta(2,5) product d=3", {"bounds": [(0.0, 1.0)] * 3})}


class Exact:
    """An exact target as a Density (dim, log_density_and_score) for the adapters."""

    def __init__(self, target) -> None:
        self.target, self.dim = target, target.dim

    def log_density_and_score(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lp, s = self.target.log_prob_and_score(y.to(torch.float64))
        # outside a bounded support: a very low, finite value with a score pointing back to the centre
        far = ~torch.isfinite(lp)
        lp = torch.where(far, torch.full_like(lp, -1e6), lp)
        s = torch.where(far[..., None], -y.to(torch.float64), s)
        return lp.to(y.dtype), s.to(y.dtype)


class KDE:
    """Scipy's gaussian_kde kernel (Scott's rule, the samples' covariance) as a Density for the adapters."""

    def __init__(self, x: torch.Tensor) -> None:
        self.kde, self.dim = GaussianKDE(x, "scott"), x.shape[1]

    def log_density_and_score(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lp, s = self.kde.log_density_and_score(y.to(torch.float64))
        return lp.to(y.dtype), s.to(y.dtype)


def global_maximum(fitted, x: torch.Tensor, g: torch.Generator, starts: int, steps: int) -> torch.Tensor:
    """Gradient ascent (Adam on -log p, lr 0.05 x the data's spread) from `starts` points; the best end point."""
    spread = float(x.std(0).mean())
    half = starts // 2
    near = x[torch.randperm(len(x), generator=g)[:half]]
    t = torch.randn(starts - half, x.shape[1], generator=g, dtype=torch.float64)
    chi = torch._standard_gamma(torch.full((starts - half, 1), 1.5, dtype=torch.float64), generator=g) * 2 / 3
    far = x.mean(0) + 3 * spread * t / chi.sqrt()
    y = torch.cat([near, far]).clone()
    m = torch.zeros_like(y)
    v = torch.zeros_like(y)
    lr = 0.05 * spread
    for i in range(1, steps + 1):
        _, s = fitted.log_density_and_score(y)
        grad = -s
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        y = y - lr * (m / (1 - 0.9**i)) / ((v / (1 - 0.999**i)).sqrt() + 1e-12)
    lp = fitted.log_density(y)
    return y[int(lp.argmax())]


def far_points(target, x: torch.Tensor, g: torch.Generator, num: int) -> torch.Tensor:
    """Points from a broad proposal (uniform on the data's box grown 3x about its centre, and Student-t
    draws at 4x the spread) whose exact log-density is more than 10 nats below the exact mode's."""
    lo, hi = x.amin(0), x.amax(0)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    box = centre + 3 * half * (2 * torch.rand(num, x.shape[1], generator=g, dtype=torch.float64) - 1)
    t = torch.randn(num, x.shape[1], generator=g, dtype=torch.float64)
    chi = torch._standard_gamma(torch.full((num, 1), 1.5, dtype=torch.float64), generator=g) * 2 / 3
    tails = x.mean(0) + 4 * x.std(0) * t / chi.sqrt()
    y = torch.cat([box, tails])
    lp = target.log_prob(y)
    return y[lp < target.mode_log_prob - 10]


def score_gradient_gap(fitted, y: torch.Tensor, eps: float = 1e-5) -> float:
    """Largest |score - finite-difference gradient| / max(|score|, 1e-3 |median score|) over the points
    (those whose differences stay where the estimate is finite: inside a bounded fit's box)."""
    steps = torch.cat([y + eps * e for e in torch.eye(y.shape[1], dtype=y.dtype)]
                      + [y - eps * e for e in torch.eye(y.shape[1], dtype=y.dtype)] + [y])
    y = y[torch.isfinite(fitted.log_density(steps)).reshape(-1, len(y)).all(0)]
    _, s = fitted.log_density_and_score(y)
    fd = torch.stack([(fitted.log_density(y + eps * e) - fitted.log_density(y - eps * e)) / (2 * eps)
                      for e in torch.eye(y.shape[1], dtype=y.dtype)], -1)
    norm = s.norm(dim=-1).clamp_min(1e-3 * float(s.norm(dim=-1).median()))
    return float(((fd - s).norm(dim=-1) / norm).max())


def run_blackjax(density, starts: np.ndarray, method: str, warmup: int, draws: int, seed: int) -> np.ndarray:
    """Chains (C, draws, d) of BlackJAX NUTS (window adaptation on one chain) or MALA (pilot-tuned step)."""
    import blackjax
    import jax
    import jax.numpy as jnp

    from disco_plug.integrations.blackjax import logdensity_fn

    jax.config.update("jax_enable_x64", True)
    logdensity = logdensity_fn(density)
    key = jax.random.key(seed)
    k1, k2, k3 = jax.random.split(key, 3)
    x0 = jnp.asarray(starts)
    if method == "nuts":
        adapt = blackjax.window_adaptation(blackjax.nuts, logdensity)
        (_, params), _ = adapt.run(k1, x0[0], num_steps=warmup)
        kernel = blackjax.nuts(logdensity, **params)
    else:
        step = 0.5 * float(np.mean(np.std(starts, 0))) / x0.shape[1] ** (1 / 3)
        for i in range(8):  # pilot runs: scale the step towards an acceptance of 0.57
            kernel = blackjax.mala(logdensity, step)
            states = jax.vmap(kernel.init)(x0)
            _, infos = _scan(kernel, states, max(warmup // 8, 20), jax.random.fold_in(k1, i))
            acc = float(np.mean(np.asarray(infos.acceptance_rate)))
            step *= math.exp(2.0 * (acc - 0.57))
        kernel = blackjax.mala(logdensity, step)
    states = jax.vmap(kernel.init)(x0)
    positions, _ = _scan(kernel, states, draws, k3)
    return np.asarray(positions).transpose(1, 0, 2)  # (C, draws, d)


def run_pyro_nuts(density, starts: np.ndarray, warmup: int, draws: int, seed: int) -> np.ndarray:
    """Chains (C, draws, d) of Pyro NUTS on `disco_plug.integrations.pyro.potential_fn`, one after another
    (Pyro adapts each chain's step size and diagonal mass matrix in its warm-up)."""
    import pyro
    from pyro.infer import MCMC, NUTS

    from disco_plug.integrations.pyro import potential_fn

    chains = []
    for c, start in enumerate(starts):
        pyro.set_rng_seed(seed + c)
        mcmc = MCMC(NUTS(potential_fn=potential_fn(density)), num_samples=draws, warmup_steps=warmup,
                    initial_params={"x": torch.as_tensor(start, dtype=torch.float64)}, disable_progbar=True)
        mcmc.run()
        chains.append(mcmc.get_samples()["x"].numpy())
    return np.stack(chains)


def _scan(kernel, states, steps: int, key):
    import jax

    def one(state, k):
        keys = jax.random.split(k, state.position.shape[0])
        state, info = jax.vmap(kernel.step)(keys, state)
        return state, (state.position, info)

    _, (positions, infos) = jax.jit(lambda s, k: jax.lax.scan(one, s, jax.random.split(k, steps)))(states, key)
    return positions, infos


def evaluate(name: str, target, args, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = target.sample(args.n, generator=g)
    t0 = time.perf_counter()
    fitted = disco_plug.load().fit(x, **FIT_OPTIONS.get(name, (name, {}))[1])
    fitted.log_density(x[:1])
    fit_s = time.perf_counter() - t0
    result: dict = {"target": name, "dim": target.dim, "n": args.n, "fit_seconds": round(fit_s, 2)}
    best = global_maximum(fitted, x, g, args.starts, args.ascent_steps)
    result["argmax"] = best.tolist()
    result["argmax_exact_minus_mode"] = float(target.log_prob(best[None])[0]) - target.mode_log_prob
    far = far_points(target, x, g, args.far)
    result["far_points"] = len(far)
    if len(far):
        est = fitted.log_density(far)
        over = est - (target.mode_log_prob - 5)
        result["far_max_over"] = float(over.max())
        result["far_fraction_over"] = float((over > 0).double().mean())
        kde = GaussianKDE(x, "scott").log_density(far)
        result["kde_far_max_over"] = float((kde - (target.mode_log_prob - 5)).max())
    norm, se = fitted.normalization(generator=torch.Generator().manual_seed(seed + 1))
    result["normalization"], result["normalization_se"] = norm, se
    probe = torch.cat([x[:200], far[:200]]) if len(far) else x[:200]
    result["score_gradient_gap"] = score_gradient_gap(fitted, probe)
    fresh = target.sample(args.draws_eval, generator=g)
    fresh2 = target.sample(args.draws_eval, generator=g)
    floor = energy_distance(fresh, fresh2)
    result["energy_floor"] = floor
    densities = {"ours": fitted, "kde": KDE(x), "exact": Exact(target)}
    # One MCMC run is one draw of a chaotic outcome (a stuck chain, an adaptation that went astray, and
    # rounding that follows the machine's thread count): each sampler runs `replicates` times from
    # different starts and keys, the same ones for the three densities, and the table shows the median.
    starts = [x[torch.randperm(len(x), generator=g)[: args.chains]].numpy() for _ in range(args.replicates)]
    for method in ("nuts", "mala", "pyro_nuts"):
        for label, density in densities.items():
            t0 = time.perf_counter()
            ratios = []
            for r in range(args.replicates):
                if method == "pyro_nuts":
                    chains = run_pyro_nuts(density, starts[r][: args.pyro_chains], args.warmup // 2, args.steps,
                                           seed + 3 + 1000 * r)
                else:
                    chains = run_blackjax(density, starts[r], method, args.warmup, args.steps, seed + 2 + 1000 * r)
                draws = torch.as_tensor(chains.reshape(-1, target.dim))
                draws = draws[torch.randperm(len(draws), generator=g)[: args.draws_eval]]
                ratios.append(energy_distance(draws, fresh) / floor)
            result[f"{method}/{label}"] = {"energy_ratio": float(np.median(ratios)), "replicates": ratios,
                                           "seconds": round(time.perf_counter() - t0, 1)}
            print(f"  {name} {method} {label}: energy ratios {', '.join(f'{v:.2f}' for v in ratios)} "
                  f"({result[f'{method}/{label}']['seconds']} s)", flush=True)
    return result


def markdown(report: dict) -> str:
    lines = ["# MCMC benchmark: the estimated density where MCMC goes", "",
             f"Command: `{report['command']}`  ", f"Commit: `{report['commit']}`  ",
             f"Machine: {report['machine']}; load average {report['load']}; wall time {report['wall_seconds']:.0f} s", "",
             f"n = {report['args']['n']} exact draws per target; {report['args']['chains']} chains of "
             f"{report['args']['steps']} draws after {report['args']['warmup']} warm-up steps (BlackJAX; Pyro NUTS: "
             f"{report['args']['pyro_chains']} chains, {report['args']['warmup'] // 2} warm-up steps). "
             f"Energy ratios: the median of {report['args'].get('replicates', 1)} runs from different starts and "
             "keys (each run's ratio in the JSON). Targets in the module docstring of benchmarks/mcmc.py.", "",
             "| target | argmax: exact log p - mode (>= -2) | far points | max over (mode - 5) (< 0): ours / Scott KDE "
             "| normalization (SE) | score vs gradient | NUTS energy ratio ours / KDE / exact | MALA ours / KDE / exact "
             "| Pyro NUTS ours / KDE / exact |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["targets"]:
        over = (f"{r['far_max_over']:.1f} / {r['kde_far_max_over']:.1f}" if r["far_points"] else "-")
        nuts = " / ".join(f"{r[f'nuts/{k}']['energy_ratio']:.2f}" for k in ("ours", "kde", "exact"))
        mala = " / ".join(f"{r[f'mala/{k}']['energy_ratio']:.2f}" for k in ("ours", "kde", "exact"))
        pyro_nuts = " / ".join(f"{r[f'pyro_nuts/{k}']['energy_ratio']:.2f}" for k in ("ours", "kde", "exact"))
        lines.append(f"| {r['target']} | {r['argmax_exact_minus_mode']:.2f} | {r['far_points']} | {over} "
                     f"| {r['normalization']:.4f} ({r['normalization_se']:.4f}) | {r['score_gradient_gap']:.1e} "
                     f"| {nuts} | {mala} | {pyro_nuts} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    args.chains, args.warmup, args.steps = (8, 100, 100) if args.quick else (64, 400, 300)
    args.pyro_chains = 2
    args.replicates = 1 if args.quick else 3
    args.starts, args.ascent_steps, args.far, args.draws_eval = (32, 150, 4000, 1000) if args.quick else (64, 300, 20000, 2000)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    rows = []
    order = list(TARGETS)
    for name, target in TARGETS.items():
        print(name, flush=True)
        paired = FIT_OPTIONS.get(name, (name, {}))[0]
        rows.append(evaluate(name, target, args, args.seed + 101 * order.index(paired)))
    report = {"command": "python benchmarks/mcmc.py" + (" --quick" if args.quick else ""), "commit": git_commit(ROOT),
              "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
              "load": " ".join(f"{v:.2f}" for v in os.getloadavg()), "wall_seconds": time.perf_counter() - t0,
              "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "targets": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "mcmc_quick" if args.quick else "mcmc"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1))
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
