"""Reverse-time SDE samplers (Song et al. 2021, "Score-based generative modeling through stochastic
differential equations"): variance-exploding (VE) and variance-preserving (VP) processes, integrated
with Euler-Maruyama, with an optional Langevin corrector (the predictor-corrector sampler, Algorithm 2).

Both take the VE score convention score_fn(x, sigma) and a decreasing schedule of VE noise levels.
The VP process is the rescaled VE process x_vp = alpha(sigma) x_ve with alpha = 1/sqrt(1 + sigma^2),
so its score is s_vp(x) = s_ve(x / alpha, sigma) / alpha and `get_sigmas_vp` gives Song et al.'s
linear-beta schedule as VE noise levels. A trailing 0 in `sigmas` makes the last step the noise-free
Tweedie denoising step (Song et al.'s "noise removal").
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ._common import (Callback, ScoreFn, call_score, check_chains, check_count, check_finite, check_positive,
                      check_sigmas, finish, randn_like, steps_iter, to_denoised, vp_scale)

__all__ = ["sample_ve_sde", "sample_vp_sde", "langevin_corrector"]

# (score_fn, x, sigma, sigma_next, generator, sampler, step) -> (x_next, ve_score_at_x)
Predictor = Callable[[ScoreFn, Tensor, float, float, "torch.Generator | None", str, int], tuple[Tensor, Tensor]]


def langevin_corrector(score_fn: ScoreFn, x: Tensor, sigma: float, *, steps: int, snr: float,
                       generator: torch.Generator | None, sampler: str = "langevin_corrector",
                       step: int = 0) -> Tensor:
    """Langevin corrector of the predictor-corrector sampler (Song et al. 2021, Algorithm 4): `steps`
    moves x <- x + tau s + sqrt(2 tau) z with tau = 2 (snr ||z|| / ||s||)^2, norms averaged over chains."""
    for _ in range(steps):
        score = call_score(score_fn, x, sigma, sampler, step)
        z = randn_like(x, generator)
        grad_norm = torch.linalg.vector_norm(score.reshape(-1, x.shape[-1]), dim=-1).mean()
        noise_norm = torch.linalg.vector_norm(z.reshape(-1, x.shape[-1]), dim=-1).mean()
        tau = 2 * (snr * noise_norm / grad_norm.clamp_min(torch.finfo(x.dtype).tiny)) ** 2
        x = x + tau * score + torch.sqrt(2 * tau) * z
        check_finite(x, "the chains (corrector)", sampler, step, sigma)
    return x


def _ve_predictor(score_fn: ScoreFn, x: Tensor, sigma: float, sigma_next: float,
                  generator: torch.Generator | None, sampler: str, step: int) -> tuple[Tensor, Tensor]:
    """Euler-Maruyama on the reverse VE SDE dx = -d[sigma^2] s dt + sqrt(d[sigma^2]/dt) dw-bar."""
    score = call_score(score_fn, x, sigma, sampler, step)
    if sigma_next == 0:
        return to_denoised(x, sigma, score), score
    var = sigma**2 - sigma_next**2
    return x + var * score + math.sqrt(var) * randn_like(x, generator), score


def _vp_predictor(score_fn: ScoreFn, x: Tensor, sigma: float, sigma_next: float,
                  generator: torch.Generator | None, sampler: str, step: int) -> tuple[Tensor, Tensor]:
    """Euler-Maruyama on the reverse VP SDE dx = -beta [x/2 + s_vp] dt + sqrt(beta) dw-bar, with the
    step's integrated beta, h = log(1 + sigma^2) - log(1 + sigma_next^2)."""
    alpha = vp_scale(sigma)
    score = call_score(score_fn, x / alpha, sigma, sampler, step)  # VE score at x_ve = x / alpha
    if sigma_next == 0:
        return to_denoised(x / alpha, sigma, score), score
    h = math.log1p(sigma**2) - math.log1p(sigma_next**2)
    return x + h * (0.5 * x + score / alpha) + math.sqrt(h) * randn_like(x, generator), score


def _reverse_sde(predictor: Predictor, scale: Callable[[float], float], sampler: str, score_fn: ScoreFn,
                 x: Tensor, sigmas: Tensor, corrector_steps: int, snr: float,
                 generator: torch.Generator | None, callback: Callback | None, progress: bool) -> Tensor:
    """The predictor-corrector loop shared by the VE and VP samplers; `scale(sigma)` maps VE to
    sampler coordinates (x = scale * x_ve)."""
    work = check_chains(x, sampler)
    levels = check_sigmas(sigmas, sampler)
    check_count(corrector_steps, "corrector_steps", sampler, minimum=0)
    snr = check_positive(snr, "snr", sampler)
    for i in steps_iter(len(levels) - 1, progress, sampler):
        sigma, sigma_next = levels[i], levels[i + 1]
        x_prev = work
        work, score = predictor(score_fn, work, sigma, sigma_next, generator, sampler, i)
        check_finite(work, "the chains", sampler, i, sigma)
        if corrector_steps and sigma_next > 0:
            a = scale(sigma_next)
            work = a * langevin_corrector(score_fn, work / a, sigma_next, steps=corrector_steps, snr=snr,
                                          generator=generator, sampler=sampler, step=i)
        if callback is not None:
            x_ve = x_prev / scale(sigma)
            callback({"i": i, "x": work, "sigma": sigma, "sigma_next": sigma_next, "score": score,
                      "denoised": to_denoised(x_ve, sigma, score)})
    return finish(work, x)


def sample_ve_sde(score_fn: ScoreFn, x: Tensor, sigmas: Tensor, *, corrector_steps: int = 0, snr: float = 0.16,
                  generator: torch.Generator | None = None, callback: Callback | None = None,
                  progress: bool = False) -> Tensor:
    """Reverse-time VE SDE by Euler-Maruyama, with an optional Langevin corrector (Song et al. 2021).

    Step i: x <- x + (sigma_i^2 - sigma_{i+1}^2) s(x, sigma_i) + sqrt(sigma_i^2 - sigma_{i+1}^2) z, then
    `corrector_steps` Langevin moves at sigma_{i+1} with signal-to-noise ratio `snr`.

    Parameters
    ----------
    score_fn : score_fn(x, sigma), the score of p * N(0, sigma^2 I).
    x : chains (..., d) drawn from (an approximation of) p_{sigma_0}, e.g. sigma_0 * randn for
        centred data of scale << sigma_0.
    sigmas : decreasing noise levels, e.g. `get_sigmas_geometric(n, sigma_min, sigma_max)`; a trailing
        0 makes the last step the noise-free denoising step.
    corrector_steps, snr : the corrector (0 = predictor only; Song et al. use 1 step, snr 0.16).
    generator, callback, progress : noise source; callback(dict(i, x, sigma, sigma_next, score,
        denoised)) after every step; a tqdm bar.

    Example
    -------
    >>> import torch
    >>> from disco_plug.samplers import sample_ve_sde, get_sigmas_geometric
    >>> g = torch.Generator().manual_seed(0)
    >>> sigmas = get_sigmas_geometric(500, 0.01, 10.0)
    >>> x = sample_ve_sde(lambda x, s: -x / (1 + s**2), 10 * torch.randn(2000, 2, generator=g), sigmas,
    ...                   generator=g)
    >>> round(float(x.var()), 1)
    1.0
    """
    return _reverse_sde(_ve_predictor, lambda s: 1.0, "sample_ve_sde", score_fn, x, sigmas, corrector_steps, snr,
                        generator, callback, progress)


def sample_vp_sde(score_fn: ScoreFn, x: Tensor, sigmas: Tensor, *, corrector_steps: int = 0, snr: float = 0.16,
                  generator: torch.Generator | None = None, callback: Callback | None = None,
                  progress: bool = False) -> Tensor:
    """Reverse-time VP SDE (the continuous DDPM, Song et al. 2021) by Euler-Maruyama, with an optional
    Langevin corrector.

    The chains live in VP coordinates x_vp = x_ve / sqrt(1 + sigma^2): start them from
    alpha(sigma_0) * p_{sigma_0}, which is about N(0, I) for `get_sigmas_vp` schedules and data of
    moderate scale. The output is in data coordinates (alpha = 1 at sigma = 0). Other arguments as in
    `sample_ve_sde`.

    Example
    -------
    >>> import torch
    >>> from disco_plug.samplers import sample_vp_sde, get_sigmas_vp
    >>> g = torch.Generator().manual_seed(0)
    >>> x = sample_vp_sde(lambda x, s: -x / (1 + s**2), torch.randn(2000, 2, generator=g), get_sigmas_vp(500),
    ...                   generator=g)
    >>> round(float(x.var()), 1)
    1.0
    """
    return _reverse_sde(_vp_predictor, vp_scale, "sample_vp_sde", score_fn, x, sigmas, corrector_steps, snr,
                        generator, callback, progress)
