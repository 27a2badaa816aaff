"""Langevin samplers: unadjusted Langevin (ULA), Metropolis-adjusted Langevin (MALA) and annealed
Langevin dynamics (Song & Ermon 2019).

All take batched chains x of shape (..., d): every leading index is an independent chain. Noise comes
from an explicit `torch.Generator`; a NaN/inf raises `NonFiniteSampleError` naming the sampler and
step. One step-size convention throughout: x <- x + tau * score + sqrt(2 tau) * z.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ._common import (Callback, LogDensityAndScoreFn, ScoreFn, call_score, check_chains, check_count,
                      check_finite, check_positive, check_sigmas, finish, langevin_move, randn_like,
                      steps_iter, to_denoised)

__all__ = ["sample_langevin", "sample_annealed_langevin", "sample_mala", "MALAState", "MALAInfo",
           "mala_init", "mala_step"]

MALA_TARGET_ACCEPTANCE = 0.574  # optimal for MALA as d grows (Roberts & Rosenthal 1998)


def _langevin_steps(score_fn: ScoreFn, x: Tensor, sigma: float, step_size: float, steps: int, *,
                    sampler: str, first_step: int, generator: torch.Generator | None,
                    callback: Callback | None, progress: bool) -> Tensor:
    """`steps` ULA moves at one noise level; the loop ULA and annealed Langevin share."""
    for i in steps_iter(steps, progress, sampler):
        step = first_step + i
        score = call_score(score_fn, x, sigma, sampler, step)
        x = langevin_move(x, score, step_size, generator)
        check_finite(x, "the chains", sampler, step, sigma)
        if callback is not None:
            callback({"i": step, "x": x, "sigma": sigma, "score": score, "step_size": step_size})
    return x


def sample_langevin(score_fn: ScoreFn, x: Tensor, *, step_size: float, steps: int, sigma: float = 0.0,
                    generator: torch.Generator | None = None, callback: Callback | None = None,
                    progress: bool = False) -> Tensor:
    """Unadjusted Langevin algorithm (Roberts & Tweedie 1996): x <- x + tau s(x) + sqrt(2 tau) z.

    Parameters
    ----------
    score_fn : score_fn(x, sigma), the score of p * N(0, sigma^2 I) at x (..., d).
    x : initial chains (..., d); every leading index is a chain.
    step_size : tau > 0. ULA is biased by O(tau); use `sample_mala` for an exact kernel.
    steps : number of moves.
    sigma : the noise level at which the score is queried (0 targets p itself).
    generator, callback, progress : noise source; callback(dict(i, x, sigma, score, step_size)) after
        every step; a tqdm progress bar.

    Returns
    -------
    The chains after `steps` moves, shaped and typed like x.

    Example
    -------
    >>> import torch
    >>> from disco_plug.samplers import sample_langevin
    >>> g = torch.Generator().manual_seed(0)
    >>> x = sample_langevin(lambda x, s: -x, torch.zeros(1000, 2), step_size=0.1, steps=100, generator=g)
    >>> round(float(x.var()), 1)  # ULA on N(0, I) has variance 1 / (1 - tau / 2)
    1.1
    """
    name = "sample_langevin"
    work = check_chains(x, name)
    tau = check_positive(step_size, "step_size", name)
    check_count(steps, "steps", name)
    sigma = float(sigma)
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise ValueError(f"{name}: sigma must be >= 0 and finite, got {sigma}")
    work = _langevin_steps(score_fn, work, sigma, tau, steps, sampler=name, first_step=0, generator=generator,
                           callback=callback, progress=progress)
    return finish(work, x)


def sample_annealed_langevin(score_fn: ScoreFn, x: Tensor, sigmas: Tensor, *, steps_per_sigma: int = 100,
                             step_scale: float = 1.0, generator: torch.Generator | None = None,
                             callback: Callback | None = None, progress: bool = False) -> Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, "Generative modeling by estimating gradients of
    the data distribution", Algorithm 1).

    For each noise level sigma_i (decreasing), `steps_per_sigma` Langevin moves on p_{sigma_i} with
    Song & Ermon's step alpha_i = step_scale * sigma_i^2 (their eps / sigma_L^2), i.e.
    x <- x + alpha_i / 2 * s(x, sigma_i) + sqrt(alpha_i) z. Their CIFAR-10 setting is step_scale = 0.2;
    the default 1.0 equilibrates low-dimensional targets faster and stays stable (alpha_i / 2 is at
    most half the smallest variance sigma_i^2 of p_sigma_i). A trailing 0 in `sigmas` adds the final
    noise-free denoising step x <- x + sigma_L^2 s(x, sigma_L) (Tweedie; Jolicoeur-Martineau et al. 2021).

    x should start roughly from p_{sigma_max}, e.g. mean + sqrt(cov + sigma_max^2) * randn.

    Example
    -------
    >>> import torch
    >>> from disco_plug.samplers import sample_annealed_langevin, get_sigmas_geometric
    >>> sigmas = get_sigmas_geometric(8, 0.1, 5.0)
    >>> g = torch.Generator().manual_seed(0)
    >>> x = sample_annealed_langevin(lambda x, s: -x / (1 + s**2), 5 * torch.randn(4000, 2, generator=g),
    ...                              sigmas, generator=g)
    >>> round(float(x.var()), 1)
    1.0
    """
    name = "sample_annealed_langevin"
    work = check_chains(x, name)
    levels = check_sigmas(sigmas, name, min_len=1)
    denoise = levels[-1] == 0
    levels = levels[:-1] if denoise else levels
    if not levels:
        raise ValueError(f"{name}: sigmas must contain at least one positive noise level")
    check_count(steps_per_sigma, "steps_per_sigma", name)
    scale = check_positive(step_scale, "step_scale", name)
    for i, sigma in enumerate(levels):
        work = _langevin_steps(score_fn, work, sigma, 0.5 * scale * sigma**2, steps_per_sigma, sampler=name,
                               first_step=i * steps_per_sigma, generator=generator, callback=callback,
                               progress=progress)
    if denoise:
        step, sigma = len(levels) * steps_per_sigma, levels[-1]
        score = call_score(score_fn, work, sigma, name, step)
        work = to_denoised(work, sigma, score)
        check_finite(work, "the chains", name, step, sigma)
        if callback is not None:
            callback({"i": step, "x": work, "sigma": 0.0, "score": score, "step_size": 0.0})
    return finish(work, x)


# -- MALA: BlackJAX-style kernel ------------------------------------------------------------------------
class MALAState(NamedTuple):
    """Chain positions (..., d) with their log-density (...) and score (..., d)."""

    position: Tensor
    log_density: Tensor
    score: Tensor


class MALAInfo(NamedTuple):
    """Per-chain diagnostics of one MALA step."""

    acceptance_rate: Tensor  # (...) min(1, Metropolis-Hastings ratio)
    is_accepted: Tensor  # (...) bool


def _evaluate(fn: LogDensityAndScoreFn, x: Tensor, sigma: float, sampler: str, step: int) -> tuple[Tensor, Tensor]:
    out = fn(x, sigma)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ValueError(f"{sampler}: log_density_and_score_fn must return a (log_density, score) pair")
    log_p, score = out
    if tuple(log_p.shape) != tuple(x.shape[:-1]) or score.shape != x.shape:
        raise ValueError(f"{sampler}: for x of shape {tuple(x.shape)} log_density_and_score_fn must return "
                         f"shapes {tuple(x.shape[:-1])} and {tuple(x.shape)}, got {tuple(log_p.shape)} and "
                         f"{tuple(score.shape)}")
    log_p, score = log_p.to(x.dtype), score.to(x.dtype)
    check_finite(log_p, "the log-density", sampler, step, sigma)
    check_finite(score, "the score", sampler, step, sigma)
    return log_p, score


def mala_init(position: Tensor, log_density_and_score_fn: LogDensityAndScoreFn, sigma: float = 0.0) -> MALAState:
    """Initial MALA state: evaluate log p_sigma and its score at the chains (..., d)."""
    work = check_chains(position, "mala_init")
    return MALAState(work, *_evaluate(log_density_and_score_fn, work, float(sigma), "mala_init", 0))


def mala_step(generator: torch.Generator | None, state: MALAState, log_density_and_score_fn: LogDensityAndScoreFn,
              step_size: float | Tensor, sigma: float = 0.0, *, step: int = 0) -> tuple[MALAState, MALAInfo]:
    """One Metropolis-adjusted Langevin step (Roberts & Tweedie 1996; Besag 1994) on every chain.

    Proposal y = x + tau s(x) + sqrt(2 tau) z, accepted with probability
    min(1, p(y) q(x | y) / (p(x) q(y | x))), q(y | x) = N(y; x + tau s(x), 2 tau I). `step` only labels
    error messages. The kernel is exact for the log-density even if the score is only approximate.
    """
    x, log_p, score = state
    tau = torch.as_tensor(step_size, dtype=x.dtype, device=x.device)
    z = randn_like(x, generator)
    y = x + tau * score + torch.sqrt(2 * tau) * z
    check_finite(y, "the proposals", "mala_step", step, sigma)
    log_p_y, score_y = _evaluate(log_density_and_score_fn, y, sigma, "mala_step", step)
    back = x - y - tau * score_y  # residual of the reverse move x | y
    log_ratio = log_p_y - log_p - (back * back).sum(-1) / (4 * tau) + 0.5 * (z * z).sum(-1)
    u = torch.rand(log_ratio.shape, generator=generator, dtype=x.dtype, device=x.device)
    accept = torch.log(u) < log_ratio
    keep = accept[..., None]
    new = MALAState(torch.where(keep, y, x), torch.where(accept, log_p_y, log_p), torch.where(keep, score_y, score))
    return new, MALAInfo(torch.exp(log_ratio.clamp(max=0.0)), accept)


def sample_mala(log_density_and_score_fn: LogDensityAndScoreFn, x: Tensor, *, step_size: float, steps: int,
                sigma: float = 0.0, adapt_steps: int = 0, target_acceptance: float = MALA_TARGET_ACCEPTANCE,
                generator: torch.Generator | None = None, callback: Callback | None = None,
                progress: bool = False) -> Tensor:
    """Metropolis-adjusted Langevin algorithm (Roberts & Tweedie 1996) on batched chains.

    Parameters
    ----------
    log_density_and_score_fn : fn(x, sigma) -> (log p_sigma(x) (...), score (..., d)); the log-density
        may be unnormalized. The Metropolis test uses the log-density, the proposal uses the score.
    x : initial chains (..., d).
    step_size : tau; the initial value when adapt_steps > 0.
    steps : total steps, including the first `adapt_steps`, during which log tau follows a Robbins-Monro
        recursion towards `target_acceptance` (mean over chains); tau is frozen afterwards.
    sigma, generator, callback, progress : as in `sample_langevin`; the callback dict also carries
        "acceptance_rate" (mean over chains) and "step_size".

    Example
    -------
    >>> import torch
    >>> from disco_plug.samplers import sample_mala
    >>> fn = lambda x, s: (-0.5 * (x * x).sum(-1), -x)
    >>> g = torch.Generator().manual_seed(0)
    >>> x = sample_mala(fn, torch.zeros(1000, 2), step_size=1.0, steps=300, generator=g)
    >>> round(float(x.var()), 1)
    1.0
    """
    name = "sample_mala"
    tau = check_positive(step_size, "step_size", name)
    check_count(steps, "steps", name)
    check_count(adapt_steps, "adapt_steps", name, minimum=0)
    if not 0 < target_acceptance < 1:
        raise ValueError(f"{name}: target_acceptance must be in (0, 1), got {target_acceptance}")
    state = mala_init(x, log_density_and_score_fn, sigma)
    for i in steps_iter(steps, progress, name):
        state, info = mala_step(generator, state, log_density_and_score_fn, tau, float(sigma), step=i)
        rate = float(info.acceptance_rate.mean())
        if callback is not None:
            callback({"i": i, "x": state.position, "sigma": float(sigma), "score": state.score,
                      "acceptance_rate": rate, "step_size": tau})
        if i < adapt_steps:
            tau *= math.exp(2.0 * (rate - target_acceptance) / math.sqrt(i + 1))
    return finish(state.position, x)
