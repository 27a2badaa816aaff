"""k-means clusters of a batch of contexts and their shrunk covariances (for densities.cluster_kde).

Farthest-first seeding (Gonzalez 1985; the deterministic, greedy form of k-means++'s D^2 sampling, Arthur &
Vassilvitskii 2007): the point nearest the mean, then each next centre the point farthest from the centres so
far; then Lloyd's iterations; batched over contexts. No random draws: the same set of points gives the same
clusters whatever their order, and points rounded to float32 give the clusters of the float64 points unless a
point lies within rounding of a tie (a seeding from random draws, even ones hashed from the points, changed with
the rounding: tests/test_validation.py's float32 rows).

Each cluster's covariance is its members' scatter shrunk towards the pooled within-cluster covariance with
`prior` pseudo-points (the conjugate Wishart prior's posterior mean, as fit.em does for mixture components),
plus a floor times the identity so that a cluster of one point, or of points equal in some column, still has
a positive definite covariance.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..densities.cluster_kde import cluster_means, cluster_members

__all__ = ["kmeans", "nearest_centre", "cluster_covariances"]

_CHUNK = 1 << 21  # point x centre distances computed at once


def nearest_centre(x: Tensor, centres: Tensor) -> Tensor:
    """Index (B, n) of the nearest of centres (B, K, d) to each point of x (B, n, d)."""
    b, n, _ = x.shape
    step = max(1, _CHUNK // max(1, b * centres.shape[1]))
    half_sq = 0.5 * (centres * centres).sum(-1)[:, None]  # |x - c|^2 / 2 = |x|^2 / 2 - x.c + |c|^2 / 2
    return torch.cat([(half_sq - x[:, i:i + step] @ centres.transpose(-1, -2)).argmin(-1)
                      for i in range(0, n, step)], 1)


def _lloyd(x: Tensor, centres: Tensor, iters: int) -> tuple[Tensor, Tensor]:
    """Lloyd's iterations from centres (B, k, d): the labels (B, n) and the final centres; a cluster that loses
    every point keeps its centre."""
    labels = nearest_centre(x, centres)
    for _ in range(iters):
        means, counts = cluster_means(x, labels, centres.shape[1])
        centres = torch.where(counts[..., None] > 0, means, centres)
        new_labels = nearest_centre(x, centres)
        if bool((new_labels == labels).all()):
            break
        labels = new_labels
    return labels, centres


@torch.no_grad()
def kmeans(x: Tensor, k: int, *, iters: int = 20, subset: Tensor | None = None) -> Tensor:
    """Cluster labels (B, n) in 0..k-1 of points x (B, n, d): farthest-first seeding (module docstring), then
    `iters` Lloyd steps (fewer if the labels stop changing). A cluster that loses every point keeps its
    centre. subset (B, s): indices of the points the centres are found on (every point is then given its
    nearest centre)."""
    part = x if subset is None else torch.gather(x, 1, subset[..., None].expand(-1, -1, x.shape[-1]))
    b, n, d = part.shape
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= n, got k={k} for n={n}")
    rows = torch.arange(b, device=x.device)
    centre = part.mean(1, keepdim=True)
    centres = part[rows, ((part - centre) ** 2).sum(-1).argmin(-1)][:, None]  # (B, 1, d): the point nearest the mean
    dist = ((part - centres) ** 2).sum(-1)  # (B, n): squared distance to the nearest centre so far
    for _ in range(1, k):
        new = part[rows, dist.argmax(-1)][:, None]
        centres = torch.cat([centres, new], 1)
        dist = torch.minimum(dist, ((part - new) ** 2).sum(-1))
    labels, centres = _lloyd(part, centres, iters)
    return labels if subset is None else nearest_centre(x, centres)


def cluster_covariances(x: Tensor, labels: Tensor, k: int, *, prior: float, floor: float,
                        members: list[tuple[int, Tensor, Tensor]] | None = None) -> Tensor:
    """Covariances (B, k, d, d) of the clusters of x (B, n, d): (S_k + prior P) / (n_k + prior) + floor I,
    with S_k the members' scatter about their mean and P the pooled within-cluster covariance sum_k S_k / n.
    members: cluster_members(labels, k), where the caller has it."""
    b, n, d = x.shape
    means, counts = cluster_means(x, labels, k)
    centred = x - torch.gather(means, 1, labels[..., None].expand(-1, -1, d))  # each point minus its own mean
    scatter = x.new_zeros(b, k, d, d)
    for j, idx, valid in cluster_members(labels, k) if members is None else members:  # n d^2 work in all
        rows = torch.gather(centred, 1, idx[..., None].expand(-1, -1, d)) * valid[..., None]
        scatter[:, j] = rows.transpose(-1, -2) @ rows
    pooled = scatter.sum(1) / n  # (B, d, d)
    cov = (scatter + prior * pooled[:, None]) / (counts + prior)[..., None, None]
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    return 0.5 * (cov + cov.transpose(-1, -2)) + floor * eye
