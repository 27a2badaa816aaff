"""Noise-conditional score and log-density from one fitted DiScoFormer, and the high-level `sample`.

Score-based samplers need the score of p_sigma = p * N(0, sigma^2 I) at every noise level sigma. Two
ways to get it from one fitted estimator (DiScoFormer report, arXiv 2511.05924, uses the second):

- "convolved" (the default): `FittedEstimator.convolved(sigma)`. The estimator's skips are Gaussian
  kernels and Gaussian (or Student-t) mixture components fitted to the clean samples; each gets the
  noise covariance added in closed form. That is the expectation, over the noise draw, of the same
  skips fitted on X + sigma * E, so it carries no single draw's sampling error, and a new noise level
  costs a few d x d factorizations instead of new mixture fits.
- "noised_context": the estimator fitted on the noised sample set X + sigma * E, E one fixed noise draw
  (moment-matched, so the noised set has exactly the mean and covariance of p_sigma).

`NoisedScore` keeps one fitted context per noise level in a small LRU cache: samplers visit the levels
in order, so a sampling run prepares each level once and every further step at that level only runs
the queries.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from disco_plug.samplers.methods import METHODS, SAMPLING_METHODS, SamplingProblem

from .densities.kde import scott_factor
from .validation import check_noise_level

if TYPE_CHECKING:  # pragma: no cover
    from .estimator import FittedEstimator

__all__ = ["NoisedScore", "SAMPLING_METHODS", "NOISE_MODES"]

_NOISE_SEED = 0  # the default fixed noise draw
NOISE_MODES = ("convolved", "noised_context")
_SIGMA_MAX_SCALE = 10.0  # sigma_max = this * the largest standard deviation of the samples
_SIGMA_MIN_SCALE = 0.01  # sigma_min = this * the smallest standard deviation


class NoisedScore:
    """`score_fn(x, sigma)` and `log_density_fn(x, sigma)` of p * N(0, sigma^2 I) from a fitted
    estimator, with one prepared context per noise level (cached, LRU).

    Parameters
    ----------
    fitted : a `FittedEstimator` (its context X is the sample set; sigma = 0 uses it as is).
    mode : "convolved" (default) or "noised_context"; see the module docstring.
    generator : draws the fixed context noise E (n, d) of mode "noised_context"; a default seed if
        None, so results repeat. Unused by "convolved", which draws nothing.
    cache_size : noise levels kept prepared at once (each holds its whitened context and convolved
        mixtures, plus per-layer keys and values where the body runs). Samplers revisit only the latest
        level or two, so a few suffice.

    Example
    -------
    >>> import numpy as np, torch, disco_plug
    >>> from disco_plug.noised import NoisedScore
    >>> fitted = disco_plug.load().fit(np.random.default_rng(0).normal(size=(256, 2)))
    >>> noised = NoisedScore(fitted)
    >>> noised.score_fn(torch.zeros(4, 3, 2), 0.5).shape
    torch.Size([4, 3, 2])
    """

    def __init__(self, fitted: "FittedEstimator", *, mode: str = "convolved",
                 generator: torch.Generator | None = None, cache_size: int = 8) -> None:
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1:
            raise ValueError(f"cache_size must be a positive integer, got {cache_size!r}")
        if mode not in NOISE_MODES:
            raise ValueError(f"unknown noise mode {mode!r}; choose one of {', '.join(NOISE_MODES)}")
        self.fitted = fitted
        self.mode = mode
        self.cache_size = cache_size
        self.noise: Tensor | None = None  # (n, d), mode "noised_context" only, fixed for the object's life
        if mode == "noised_context":
            samples = fitted.samples  # (n, d) float64
            if generator is None:
                generator = torch.Generator(device="cpu").manual_seed(_NOISE_SEED)
            noise = torch.randn(samples.shape, generator=generator, dtype=torch.float64, device=generator.device)
            self.noise = _moment_matched(noise.to(samples.device), samples)
        self._levels: OrderedDict[float, FittedEstimator] = OrderedDict()
        self.encodes = 0  # how many noise levels have been prepared (a diagnostic, and tested)

    @property
    def dim(self) -> int:
        return self.fitted.dim

    def fitted_at(self, sigma: float) -> "FittedEstimator":
        """The estimate of p * N(0, sigma^2 I) (the fit itself at sigma = 0), from the cache if present:
        `fitted.convolved(sigma)`, or the estimator fitted on X + sigma * E in mode "noised_context"."""
        sigma = check_noise_level(sigma)
        if sigma == 0.0:
            return self.fitted
        level = self._levels.get(sigma)
        if level is None:
            if self.noise is None:
                level = self.fitted.convolved(sigma)
            else:
                level = self.fitted.estimator.fit(self.fitted.samples + sigma * self.noise)
            self.encodes += 1
            self._levels[sigma] = level
            while len(self._levels) > self.cache_size:
                self._levels.popitem(last=False)
        else:
            self._levels.move_to_end(sigma)
        return level

    def log_density_and_score_fn(self, x: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
        """log p_sigma (...) and its score (..., d) at x (..., d), in x's dtype and device: a normalized
        density and its exact gradient with the stacked blend (the default), separate heads with the
        gated one."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (..., d), got {type(x).__name__}")
        if x.ndim < 1 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (..., {self.dim}), got {tuple(x.shape)}")
        lead = x.shape[:-1]
        log_p, score = self.fitted_at(sigma).log_density_and_score(x.reshape(-1, self.dim))
        return log_p.reshape(lead), score.reshape(x.shape)

    def score_fn(self, x: Tensor, sigma: float) -> Tensor:
        """The score of p * N(0, sigma^2 I) at x (..., d): the samplers' `score_fn` convention."""
        return self.log_density_and_score_fn(x, sigma)[1]

    def log_density_fn(self, x: Tensor, sigma: float) -> Tensor:
        """log p_sigma at x (..., d), shape (...)."""
        return self.log_density_and_score_fn(x, sigma)[0]

    # -- high-level sampling -----------------------------------------------------------------------------
    def sample(self, num: int, *, method: str = "pc", steps: int | None = None,
               generator: torch.Generator | None = None, callback: Callable[[dict[str, Any]], None] | None = None,
               progress: bool = False, **options: Any) -> Tensor:
        """`num` new points (num, d) float64 from the estimated distribution; see `FittedEstimator.sample`."""
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ValueError(f"num must be a positive integer, got {num!r}")
        if method not in SAMPLING_METHODS:
            raise ValueError(f"unknown sampling method {method!r}; choose one of {', '.join(SAMPLING_METHODS)}")
        steps = METHODS[method].default_steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        x = self.fitted.samples  # (n, d)
        mean, cov = x.mean(0), torch.cov(x.T).reshape(self.dim, self.dim)
        evals = torch.linalg.eigvalsh(cov)
        sigma_max = _SIGMA_MAX_SCALE * float(evals[-1].sqrt())
        sigma_min = _SIGMA_MIN_SCALE * float(evals[0].sqrt())

        def prior(sigma: float) -> Tensor:  # moment-matched p_sigma: N(mean, cov + sigma^2 I)
            eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
            chol = torch.linalg.cholesky(cov + sigma**2 * eye)
            return mean + _randn(num, self.dim, generator, x) @ chol.T

        def starts() -> Tensor:  # chains start at random context points
            idx = torch.randint(0, self.fitted.n, (num,), generator=generator, device=_gen_device(generator, x))
            return x[idx.to(x.device)]

        # The Langevin step: a tenth of Scott's squared bandwidth along the narrowest direction.
        problem = SamplingProblem(self.score_fn, self.log_density_and_score_fn, prior, starts, sigma_min, sigma_max,
                                  0.1 * scott_factor(self.fitted.n, self.dim) ** 2 * float(evals[0]),
                                  generator=generator, callback=callback, progress=progress)
        return METHODS[method].run(problem, steps, **options)


def _moment_matched(noise: Tensor, samples: Tensor) -> Tensor:
    """Noise (n, d) with mean 0, empirical covariance I (1/n convention, as the whitening) and zero
    empirical correlation with the samples: centre, project out the centred samples, re-whiten."""
    n, d = samples.shape
    e = noise - noise.mean(0)
    if n <= 2 * d + 1:  # too few points to decorrelate and whiten; keep the centred draw
        return e
    q, _ = torch.linalg.qr(samples - samples.mean(0))  # (n, d) orthonormal basis of centred samples
    e = e - q @ (q.T @ e)
    evals, evecs = torch.linalg.eigh(e.T @ e / n)
    return e @ ((evecs * evals.rsqrt()) @ evecs.T)


def _gen_device(generator: torch.Generator | None, like: Tensor) -> torch.device:
    return generator.device if generator is not None else like.device


def _randn(num: int, d: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
    z = torch.randn(num, d, generator=generator, dtype=like.dtype, device=_gen_device(generator, like))
    return z.to(like.device)
