"""Worked example: sequential Bayesian logistic regression with a posterior known only through samples.

Stage 1 runs NUTS (Hoffman & Gelman 2014) on half of scikit-learn's bundled breast-cancer data.
Stage 2 turns the stage-1 posterior draws into the prior through a density estimator
(`EstimatedDistribution`: log-density head as log_prob, score head as its gradient) and runs NUTS on the
other half. If the estimator is faithful, stage 2 matches NUTS on all the data with the original prior,
since p(beta | A, B) is proportional to p(B | beta) p(beta | A). Pyro's ``Empirical`` cannot serve as
that prior: it has no usable log_prob.

Example:
    >>> import torch
    >>> from disco_plug.integrations._density import GaussianMixtureDensity
    >>> from disco_plug.integrations.workflow import breast_cancer
    >>> X, y, names = breast_cancer(("mean radius", "mean texture"))
    >>> X.shape, names
    (torch.Size([569, 3]), ['intercept', 'mean radius', 'mean texture'])
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from ._density import Density
from .pyro import EstimatedDistribution

try:
    import pyro
    import pyro.distributions as dist
    from pyro.infer import MCMC, NUTS
    from pyro.infer.autoguide.initialization import init_to_sample
    from pyro.ops.stats import effective_sample_size
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("the workflow needs pyro-ppl: pip install 'disco_plug[pyro]'") from err

__all__ = ["FEATURES", "breast_cancer", "logistic_model", "nuts", "TwoStageResult", "two_stage"]

FEATURES = ("mean radius", "mean texture", "mean smoothness", "mean symmetry")


def breast_cancer(features: Sequence[str] = FEATURES) -> tuple[Tensor, Tensor, list[str]]:
    """Standardized features with an intercept column (569, k + 1), labels (569,) and column names."""
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError as err:
        raise ImportError("the breast-cancer data ship with scikit-learn: pip install scikit-learn") from err
    data = load_breast_cancer()
    names = list(data.feature_names)
    missing = [f for f in features if f not in names]
    if missing:
        raise ValueError(f"unknown features {missing}; choose from {names}")
    cols = torch.as_tensor(data.data[:, [names.index(f) for f in features]], dtype=torch.float32)
    cols = (cols - cols.mean(0)) / cols.std(0)
    X = torch.cat([torch.ones(cols.shape[0], 1), cols], 1)
    return X, torch.as_tensor(data.target, dtype=torch.float32), ["intercept", *features]


def logistic_model(X: Tensor, y: Tensor, prior: dist.Distribution) -> None:
    """beta ~ prior (an event of size k + 1); y_i ~ Bernoulli(sigmoid(x_i . beta))."""
    beta = pyro.sample("beta", prior)
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Bernoulli(logits=X @ beta), obs=y)


def nuts(X: Tensor, y: Tensor, prior: dist.Distribution, *, num_samples: int, warmup_steps: int,
         seed: int, init_strategy: Callable | None = None) -> Tensor:
    """NUTS draws (num_samples, k + 1) of beta."""
    pyro.set_rng_seed(seed)
    kernel = NUTS(logistic_model, init_strategy=init_strategy) if init_strategy else NUTS(logistic_model)
    mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, disable_progbar=True)
    mcmc.run(X, y, prior)
    return mcmc.get_samples()["beta"]


@dataclass
class TwoStageResult:
    """Posterior summaries of the exact (all data) and the two-stage runs, per coefficient."""

    names: list[str]
    exact_mean: Tensor
    exact_sd: Tensor
    exact_ess: Tensor
    stage2_mean: Tensor
    stage2_sd: Tensor
    stage2_ess: Tensor
    exact_draws: Tensor  # (num_samples, k + 1), reusable through two_stage(exact_draws=...)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def sd_gap(self) -> Tensor:
        """Relative gap in posterior standard deviations, stage2_sd / exact_sd - 1."""
        return self.stage2_sd / self.exact_sd - 1

    @property
    def mean_gap(self) -> Tensor:
        """Gap in posterior means in units of the exact posterior sd."""
        return (self.stage2_mean - self.exact_mean) / self.exact_sd

    @property
    def sd_noise(self) -> Tensor:
        """Monte Carlo standard error of sd_gap: sqrt(1 / (2 ESS_stage2) + 1 / (2 ESS_exact))."""
        return (0.5 / self.stage2_ess + 0.5 / self.exact_ess).sqrt()

    @property
    def mean_noise(self) -> Tensor:
        """Monte Carlo standard error of mean_gap (stage-2 sd taken equal to the exact one)."""
        return (1 / self.stage2_ess + 1 / self.exact_ess).sqrt()


def _summary(draws: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return draws.mean(0), draws.std(0), effective_sample_size(draws[None].double(), 0, 1).float()


def two_stage(fit: Callable[[Tensor], Density], *, features: Sequence[str] = FEATURES,
              stage1_samples: int = 2048, num_samples: int = 1000, warmup_steps: int = 300,
              prior_scale: float = 2.0, seed: int = 0, exact_draws: Tensor | None = None) -> TwoStageResult:
    """Run the two-stage workflow and exact NUTS on all the data; return both summaries.

    Parameters:
        fit: samples (n, d) -> density, e.g. ``disco_plug.load().fit`` (the estimator under test).
        features: breast-cancer columns (standardized); an intercept is added.
        stage1_samples: NUTS draws of the stage-1 posterior, the estimator's context.
        num_samples, warmup_steps: NUTS settings of stage 2 and of the exact run.
        prior_scale: sd of the N(0, prior_scale^2 I) prior of stage 1 and of the exact run.
        seed: splits the data into halves and seeds the three NUTS runs.
        exact_draws: reuse draws of the exact run (e.g. to compare several estimators).
    """
    X, y, names = breast_cancer(features)
    half = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(seed))
    a, b = half[: X.shape[0] // 2], half[X.shape[0] // 2:]
    prior = dist.Normal(torch.zeros(X.shape[1]), prior_scale).to_event(1)
    seconds = {}
    start = time.perf_counter()
    if exact_draws is None:
        exact_draws = nuts(X, y, prior, num_samples=num_samples, warmup_steps=warmup_steps, seed=seed + 1)
    seconds["exact"] = time.perf_counter() - start
    start = time.perf_counter()
    stage1 = nuts(X[a], y[a], prior, num_samples=stage1_samples, warmup_steps=warmup_steps, seed=seed + 2)
    seconds["stage1"] = time.perf_counter() - start
    start = time.perf_counter()
    learned = EstimatedDistribution(fit(stage1), samples=stage1)
    stage2 = nuts(X[b], y[b], learned, num_samples=num_samples, warmup_steps=warmup_steps, seed=seed + 3,
                  init_strategy=init_to_sample)
    seconds["stage2"] = time.perf_counter() - start
    return TwoStageResult(names, *_summary(exact_draws), *_summary(stage2), exact_draws, seconds)
