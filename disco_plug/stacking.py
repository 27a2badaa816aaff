"""Stacked density estimation: the shipped estimate is a mixture of the context's own density estimates.

p(y) = sum_k w_k p_k(y), with p_k the whitened Gaussian fit, the Gaussian KDEs at a few bandwidths and
the EM mixtures fitted to the context (model.py names them), and weights w on the simplex chosen once per
context by maximizing the held-out log-likelihood of the context itself (Smyth & Wolpert 1999, "Linearly
combining density estimators via stacking"; the weights are the maximum-likelihood mixing weights of
fixed components, found by EM). Because every p_k is a normalized density and the weights are >= 0 and
sum to one:
- p is a normalized density by construction, and p * N(0, S) = sum_k w_k (p_k * N(0, S)) is the
  convolved estimate with the same weights;
- the score is the exact gradient of log p: sum_k r_k(y) grad log p_k(y), r_k(y) = w_k p_k(y) / p(y);
- far from the data p decays like its heaviest-tailed component with nonzero weight, and it has no mode
  away from its components (each is centred on the data).

The held-out log-likelihood of each component is estimated without refitting: leave-one-out for the KDEs
(exact for a KDE of n - 1 points), and in-sample minus the fit's free parameters / n for the Gaussian fit
and the EM mixtures (Akaike's 1974 bias correction, applied per point).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["stacking_weights", "pool_log_density_and_score", "MIN_WEIGHT"]

MIN_WEIGHT = 1e-3  # weights below this are set to zero (and the rest renormalized): fewer components to evaluate
_EM_ITERS = 300
_EM_TOL = 1e-9  # stop when the mean held-out log-likelihood gains less than this per iteration


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


def pool_log_density_and_score(weights: Tensor, log_p: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
    """log sum_k w_k p_k(y) (B, m) and its gradient (B, m, d) from each component's log-density
    (B, m, K) and score (B, m, K, d); weights (B, K) on the simplex (zeros allowed). float64 out."""
    log_w = torch.log(weights.to(torch.float64))[:, None]  # (B, 1, K), -inf where w = 0
    joint = log_w + log_p.to(torch.float64)
    log_pool = torch.logsumexp(joint, -1)  # (B, m)
    resp = torch.softmax(joint, -1)  # (B, m, K): r_k(y)
    return log_pool, (resp[..., None] * score.to(torch.float64)).sum(-2)
