"""Adapters that plug a fitted DiScoFormer estimator (or any density with ``log_density_and_score`` /
any ``score_fn(x, sigma)``) into Pyro, NumPyro, PyMC, BlackJAX, emcee and diffusers.

Each adapter lives in its own module and imports its framework only when that module is imported, so
``import disco_plug`` needs only torch and numpy:

- ``disco_plug.integrations.pyro``: ``potential_fn`` (HMC/NUTS), ``EstimatedDistribution`` (``pyro.sample``
  prior or likelihood factor), ``LangevinKernel`` (ULA/MALA).
- ``disco_plug.integrations.blackjax``: ``logdensity_fn`` (MALA/HMC/NUTS, window adaptation),
  ``grad_estimator`` (SGLD/SGHMC).
- ``disco_plug.integrations.numpyro``: ``EstimatedDistribution`` (``numpyro.sample`` prior under jit/vmap/grad),
  ``potential_fn`` (``NUTS(potential_fn=...)``).
- ``disco_plug.integrations.pymc``: ``EstimatedDistribution`` (a PyMC vector variable backed by a PyTensor Op
  whose gradient is the score head), ``prior_from_idata``.
- ``disco_plug.integrations.arviz``: ``from_inference_data`` (posterior draws -> one unconstrained joint sample,
  transforms recorded).
- ``disco_plug.integrations.emcee``: ``log_prob_fn`` (``EnsembleSampler``, vectorized or not).
- ``disco_plug.integrations.diffusers``: ``SchedulerHook`` (a UNet stand-in), ``TabularPipeline``.

The names below are also reachable here, imported on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Density": "_density", "GaussianMixtureDensity": "_density",
    "potential_fn": "pyro", "EstimatedDistribution": "pyro", "LangevinKernel": "pyro",
    "logdensity_fn": "blackjax", "grad_estimator": "blackjax",
    "SchedulerHook": "diffusers", "TabularPipeline": "diffusers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
