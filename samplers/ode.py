"""The probability-flow ODE (Song et al. 2021), integrated with Heun's second-order method in the
sigma-as-time parametrization of Karras et al. 2022 ("Elucidating the design space of diffusion-based
generative models", Algorithm 1): dx/dsigma = (x - D(x, sigma)) / sigma = -sigma * s(x, sigma).

Deterministic: the map from initial noise to samples is smooth, so no generator is needed.
"""

from __future__ import annotations

from torch import Tensor

from ._common import (Callback, ScoreFn, call_score, check_chains, check_finite, check_sigmas, finish, steps_iter,
                      to_denoised)

__all__ = ["sample_probability_flow"]


def sample_probability_flow(score_fn: ScoreFn, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
                            progress: bool = False) -> Tensor:
    """Probability-flow ODE by Heun's method (Karras et al. 2022, Algorithm 1, deterministic).

    Each step from sigma_i to sigma_{i+1} takes an Euler step with slope -sigma_i s(x, sigma_i), then
    corrects with the average of that slope and the slope at the Euler point; the step to sigma = 0 is
    Euler only (which is exactly the Tweedie denoising step). 2 score calls per step, 1 for the last.

    Parameters
    ----------
    score_fn : score_fn(x, sigma), the score of p * N(0, sigma^2 I).
    x : chains (..., d) from (an approximation of) p_{sigma_0}.
    sigmas : decreasing noise levels, e.g. `get_sigmas_karras(n, sigma_min, sigma_max)`.
    callback, progress : callback(dict(i, x, sigma, sigma_next, score, denoised)) after every step;
        a tqdm bar.

    Example
    -------
    >>> import torch
    >>> from disco_plug.samplers import sample_probability_flow, get_sigmas_karras
    >>> g = torch.Generator().manual_seed(0)
    >>> x = sample_probability_flow(lambda x, s: -x / (1 + s**2), 10 * torch.randn(2000, 2, generator=g),
    ...                             get_sigmas_karras(20, 0.01, 10.0))
    >>> round(float(x.var()), 1)
    1.0
    """
    name = "sample_probability_flow"
    work = check_chains(x, name)
    levels = check_sigmas(sigmas, name)
    for i in steps_iter(len(levels) - 1, progress, name):
        sigma, sigma_next = levels[i], levels[i + 1]
        score = call_score(score_fn, work, sigma, name, i)
        slope = -sigma * score  # (..., d) dx/dsigma
        euler = work + (sigma_next - sigma) * slope
        if sigma_next > 0:
            slope_next = -sigma_next * call_score(score_fn, euler, sigma_next, name, i)
            new = work + (sigma_next - sigma) * 0.5 * (slope + slope_next)
        else:
            new = euler
        check_finite(new, "the chains", name, i, sigma)
        if callback is not None:
            callback({"i": i, "x": new, "sigma": sigma, "sigma_next": sigma_next, "score": score,
                      "denoised": to_denoised(work, sigma, score)})
        work = new
    return finish(work, x)
