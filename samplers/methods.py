"""The sampling methods of `FittedEstimator.sample` as data: each name, its default number of steps, and
how it runs from a `SamplingProblem` (score functions, a prior draw, chain starts, the noise range).

The table only calls the samplers of this package; it knows nothing of the estimator, which builds the
problem (disco_plug.noised.NoisedScore.sample) and picks a row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._common import get_sigmas_geometric, get_sigmas_karras, get_sigmas_vp, vp_scale
from .langevin import sample_annealed_langevin, sample_langevin, sample_mala
from .ode import sample_probability_flow
from .sde import sample_ve_sde, sample_vp_sde

__all__ = ["SamplingProblem", "SamplingMethod", "METHODS", "SAMPLING_METHODS"]

ANNEALED_LEVELS = 10  # noise levels of annealed Langevin (at most `steps`)


@dataclass(frozen=True)
class SamplingProblem:
    """What every method needs: the score of p * N(0, sigma^2 I) (`score_fn(x, sigma)`), its log-density
    with the score (`log_density_and_score_fn(x, sigma)`, for MALA's accept step), `prior(sigma)`: draws
    from a Gaussian approximation of p * N(0, sigma^2 I) (the reverse processes' start), `starts()`: chain
    starting points for the plain Langevin methods, the noise range, and the Langevin step size."""

    score_fn: Callable[[Tensor, float], Tensor]
    log_density_and_score_fn: Callable[[Tensor, float], tuple[Tensor, Tensor]]
    prior: Callable[[float], Tensor]
    starts: Callable[[], Tensor]
    sigma_min: float
    sigma_max: float
    step_size: float
    generator: torch.Generator | None = None
    callback: Callable[[dict[str, Any]], None] | None = None
    progress: bool = False

    @property
    def common(self) -> dict[str, Any]:
        return dict(callback=self.callback, progress=self.progress)


def _langevin(p: SamplingProblem, steps: int, **options: Any) -> Tensor:
    start = p.starts()
    tau = options.pop("step_size", p.step_size)
    return sample_langevin(p.score_fn, start, step_size=tau, steps=steps, generator=p.generator, **p.common, **options)


def _mala(p: SamplingProblem, steps: int, **options: Any) -> Tensor:
    start = p.starts()
    tau = options.pop("step_size", p.step_size)
    options.setdefault("adapt_steps", steps // 2)
    return sample_mala(p.log_density_and_score_fn, start, step_size=tau, steps=steps, generator=p.generator,
                       **p.common, **options)


def _annealed(p: SamplingProblem, steps: int, **options: Any) -> Tensor:
    levels = max(1, min(ANNEALED_LEVELS, steps))
    sigmas = get_sigmas_geometric(levels, p.sigma_min, p.sigma_max)
    return sample_annealed_langevin(p.score_fn, p.prior(p.sigma_max), sigmas, steps_per_sigma=max(1, steps // levels),
                                    generator=p.generator, **p.common, **options)


def _ode(p: SamplingProblem, steps: int, **options: Any) -> Tensor:
    sigmas = get_sigmas_karras(steps, p.sigma_min, p.sigma_max)
    return sample_probability_flow(p.score_fn, p.prior(p.sigma_max), sigmas, **p.common, **options)


def _vp_sde(p: SamplingProblem, steps: int, **options: Any) -> Tensor:
    sigmas = get_sigmas_vp(steps)
    s0 = float(sigmas[0])
    return sample_vp_sde(p.score_fn, vp_scale(s0) * p.prior(s0), sigmas, generator=p.generator, **p.common, **options)


def _ve_sde(p: SamplingProblem, steps: int, **options: Any) -> Tensor:
    sigmas = get_sigmas_geometric(steps, p.sigma_min, p.sigma_max)
    return sample_ve_sde(p.score_fn, p.prior(p.sigma_max), sigmas, generator=p.generator, **p.common, **options)


def _pc(p: SamplingProblem, steps: int, **options: Any) -> Tensor:
    options.setdefault("corrector_steps", 1)
    return _ve_sde(p, steps, **options)


@dataclass(frozen=True)
class SamplingMethod:
    """A row of the table: the default number of steps (noise levels or Langevin steps) and the runner."""

    default_steps: int
    run: Callable[..., Tensor]
    description: str


METHODS: dict[str, SamplingMethod] = {
    "pc": SamplingMethod(100, _pc, "reverse VE SDE + one Langevin corrector step per level (Song et al. 2021)"),
    "ve_sde": SamplingMethod(200, _ve_sde, "reverse VE SDE, Euler-Maruyama (Song et al. 2021)"),
    "vp_sde": SamplingMethod(200, _vp_sde, "reverse VP SDE (Song et al. 2021)"),
    "ode": SamplingMethod(40, _ode, "probability-flow ODE, Heun (Karras et al. 2022)"),
    "annealed_langevin": SamplingMethod(1000, _annealed, "annealed Langevin dynamics (Song & Ermon 2019)"),
    "langevin": SamplingMethod(1000, _langevin, "unadjusted Langevin from random samples"),
    "mala": SamplingMethod(1000, _mala, "Metropolis-adjusted Langevin from random samples, step adapted"),
}
SAMPLING_METHODS = tuple(METHODS)
