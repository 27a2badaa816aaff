"""Stacking weights: the mixing weights of fixed densities that maximize their held-out likelihood.

The shipped estimate is sum_k w_k p_k(y) (disco_plug.densities.stacked) with weights w on the simplex
chosen once per context by maximizing the held-out log-likelihood of the context itself (Smyth & Wolpert
1999, "Linearly combining density estimators via stacking"; the weights are the maximum-likelihood mixing
weights of fixed components, found by EM).

The held-out log-likelihood of each component is estimated without refitting (disco_plug.blend.stacked):
leave-one-out for the KDEs (exact for a KDE of n - 1 points), and in-sample minus the expected optimism
of a fit with p free parameters for the Gaussian fit and the EM mixtures (`optimism`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["stacking_weights", "optimism", "MIN_WEIGHT"]

MIN_WEIGHT = 1e-3  # weights below this are set to zero (and the rest renormalized): fewer components to evaluate
_EM_ITERS = 300
_EM_TOL = 1e-9  # stop when the mean held-out log-likelihood gains less than this per iteration


def optimism(params: Tensor, n: int) -> Tensor:
    """Expected optimism per point of an in-sample log-likelihood with `params` free parameters fitted to
    n points: AICc's p / (n - p - 1) (Hurvich & Tsai 1989), +inf where n <= p + 1."""
    room = n - params - 1
    return torch.where(room > 0, params / room.clamp_min(1e-12), torch.full_like(params, math.inf))


def stacking_weights(held_out: Tensor, *, min_weight: float = MIN_WEIGHT) -> Tensor:
    """Maximum-likelihood mixing weights (B, K) of K fixed densities from their held-out log-densities
    (B, s, K) at s context points: EM on the weights alone, w_k <- mean_i r_ik with r_ik the posterior of
    component k for point i (each step raises the held-out likelihood; the objective is concave in w).

    Weights below min_weight are dropped and the others renormalized. A component whose held-out
    log-density is not finite at some point gets weight zero (it cannot explain that point)."""
    if held_out.ndim != 3:
        raise ValueError(f"held_out must be (B, s, K), got shape {tuple(held_out.shape)}")
    lp = held_out.to(torch.float64)
    usable = torch.isfinite(lp).all(1)  # (B, K)
    if not bool(usable.any(-1).all()):
        raise ValueError("no component has a finite held-out log-density at every context point")
    lp = torch.where(usable[:, None], lp, torch.zeros_like(lp))
    log_w = torch.where(usable, 0.0, -torch.inf)
    log_w = log_w - torch.logsumexp(log_w, -1, keepdim=True)  # (B, K)
    last = torch.full(lp.shape[:1], -torch.inf, dtype=lp.dtype, device=lp.device)
    for _ in range(_EM_ITERS):
        joint = lp + log_w[:, None]  # (B, s, K)
        total = torch.logsumexp(joint, -1, keepdim=True)  # (B, s, 1)
        log_w = torch.logsumexp(joint - total, 1) - torch.log(torch.tensor(float(lp.shape[1]), dtype=lp.dtype))
        objective = total.mean((1, 2))
        if bool((objective - last < _EM_TOL).all()):
            break
        last = objective
    w = log_w.exp()
    w = torch.where(w >= min_weight, w, torch.zeros_like(w))
    return w / w.sum(-1, keepdim=True)
