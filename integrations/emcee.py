"""emcee adapter: an estimated density as the ``log_prob_fn`` of ``emcee.EnsembleSampler``.

emcee's affine-invariant ensemble sampler (Goodman & Weare 2010, "Ensemble samplers with affine
invariance"; Foreman-Mackey et al. 2013) needs only log p, no gradient. With ``vectorize=True`` it
passes all walkers at once, (nwalkers, d), which is one torch call here.

Example:
    >>> import numpy as np, emcee, torch
    >>> from disco_plug.gmm import GaussianMixture
    >>> gmm = GaussianMixture.from_components([1.0], torch.zeros(1, 2), torch.ones(1, 2))
    >>> sampler = emcee.EnsembleSampler(8, 2, log_prob_fn(gmm), vectorize=True)
    >>> _ = sampler.run_mcmc(np.random.default_rng(0).normal(size=(8, 2)), 20)
    >>> sampler.get_chain().shape
    (20, 8, 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ._density import Density, as_density, evaluate

__all__ = ["LogProbFn", "log_prob_fn"]


@dataclass(frozen=True)
class LogProbFn:
    """theta (d,) -> float, or (nwalkers, d) -> (nwalkers,): the estimated log-density. Picklable
    (emcee's ``pool=`` ships it to worker processes) when the density is."""

    density: Density
    log_prior: Callable[[np.ndarray], Any] | None = None

    def __call__(self, theta: Any) -> Any:
        theta = np.asarray(theta, dtype=np.float64)
        log_p = evaluate(self.density, torch.from_numpy(theta.copy()))[0].numpy()
        if self.log_prior is not None:
            log_p = log_p + np.asarray(self.log_prior(theta), dtype=np.float64)
        return float(log_p) if theta.ndim == 1 else log_p


def log_prob_fn(density: Density, log_prior: Callable[[np.ndarray], Any] | None = None) -> LogProbFn:
    """The density's log-density head as emcee's ``log_prob_fn`` (``vectorize=True`` or not).

    Parameters:
        density: a fitted estimator (``disco_plug.load().fit(X)``), any `Density`, or a GaussianMixture.
        log_prior: optional extra term theta -> log factor (e.g. a likelihood), added to log p;
            it receives what emcee passes, (d,) or (nwalkers, d).
    """
    return LogProbFn(as_density(density), log_prior)
