"""Sample-quality diagnostics: energy distance (Szekely & Rizzo 2013) and a memorization ratio."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["energy_distance", "memorization_ratio"]


def _points(x: Tensor, name: str) -> Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be (n, d) with n >= 2, got shape {tuple(x.shape)}")
    return x.to(torch.float64)


def energy_distance(x: Tensor, y: Tensor) -> float:
    """Squared energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| between the empirical distributions of
    two sample sets (n, d) and (m, d) (Szekely & Rizzo 2013; the V-statistic, never negative). For two
    sets from the same distribution it is O(1/n): compare it with two fresh sets of the same size."""
    x, y = _points(x, "x"), _points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def memorization_ratio(generated: Tensor, context: Tensor, fresh: Tensor) -> float:
    """Mean distance from each generated point to its nearest context point, divided by the same for
    fresh target samples (about 1 for a sampler that generalizes, << 1 for one that copies its
    context, as diffusion on a KDE score does at small noise)."""
    g, c, f = _points(generated, "generated"), _points(context, "context"), _points(fresh, "fresh")
    return float(torch.cdist(g, c).min(-1).values.mean() / torch.cdist(f, c).min(-1).values.mean())
