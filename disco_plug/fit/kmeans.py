"""k-means clusters of a batch of contexts and their shrunk covariances (for densities.cluster_kde).

Farthest-first seeding (Gonzalez 1985; the deterministic, greedy form of k-means++'s D^2 sampling, Arthur &
Vassilvitskii 2007): the point nearest the mean, then each next centre the point farthest from the centres so
far; then Lloyd's iterations; batched over contexts. No random draws: the same set of points gives the same
clusters whatever their order, and points rounded to float32 give the clusters of the float64 points (a
seeding from random draws, even ones hashed from the points, changed with the rounding; tests/test_validation.py).

Each cluster's covariance is its members' scatter shrunk towards the pooled within-cluster covariance with
`prior` pseudo-points (the conjugate Wishart prior's posterior mean, as fit.em does for mixture components),
plus a floor times the identity so that a cluster of one point, or of points equal in some column, still has
a positive definite covariance.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..densities.cluster_kde import cluster_means

__all__ = ["kmeans", "cluster_covariances", "cluster_members"]



def cluster_members(labels: Tensor, k: int) -> list[tuple[int, Tensor, Tensor]]:
    """For each cluster j < k with points in some context: (j, indices (B, L_j) of its members, padded where a
    context has fewer, valid (B, L_j) False on the padding); L_j is its largest size over the contexts."""
    out = []
    for j in range(k):
        mine = labels == j
        sizes = mine.sum(1, keepdim=True)
        count = int(sizes.max())
        if count == 0:
            continue
        idx = torch.argsort((~mine).to(torch.int8), dim=1, stable=True)[:, :count]  # members first
        out.append((j, idx, torch.arange(count, device=labels.device)[None] < sizes))
    return out


def mixture_clusters(mix: Mixture, x: Tensor) -> Tensor:
    """The most probable component (B, n) of each point of x (B, n, d) under Gaussian mixtures `mix`."""
    d = x.shape[-1]
    z = torch.einsum("bnkd,bkde->bnke", x.to(mix.means.dtype)[:, :, None] - mix.means[:, None], mix.prec_chol)
    joint = mix.log_norm[:, None] + _kernel((z * z).sum(-1), mix.dof[:, None], d)  # (B, n, K)
    return joint.argmax(-1)


_CHUNK = 1 << 21  # point x centre distances computed at once


def _nearest(x: Tensor, centres: Tensor) -> Tensor:
    """Index (B, n) of the nearest of centres (B, K, d) to each point of x (B, n, d)."""
    b, n, _ = x.shape
    step = max(1, _CHUNK // max(1, b * centres.shape[1]))
    half_sq = 0.5 * (centres * centres).sum(-1)[:, None]  # |x - c|^2 / 2 = |x|^2 / 2 - x.c + |c|^2 / 2
    return torch.cat([(half_sq - x[:, i:i + step] @ centres.transpose(-1, -2)).argmin(-1)
                      for i in range(0, n, step)], 1)


@torch.no_grad()
def kmeans(x: Tensor, k: int, *, iters: int = 20, subset: Tensor | None = None) -> Tensor:
    """Cluster labels (B, n) in 0..k-1 of points x (B, n, d): farthest-first seeding (module docstring), then
    `iters` Lloyd steps (fewer if the labels stop changing). A cluster that loses every point keeps its
    centre. subset (B, s): indices of the points the centres are found on (every point is then given its
    nearest centre)."""
    if subset is not None:
        part = torch.gather(x, 1, subset[..., None].expand(-1, -1, x.shape[-1]))
        found = kmeans(part, k, iters=iters)
        return _nearest(x, cluster_means(part, found, k)[0])
    b, n, d = x.shape
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= n, got k={k} for n={n}")
    rows = torch.arange(b, device=x.device)
    centre = x.mean(1, keepdim=True)
    centres = x[rows, ((x - centre) ** 2).sum(-1).argmin(-1)][:, None]  # (B, 1, d): the point nearest the mean
    dist = ((x - centres) ** 2).sum(-1)  # (B, n): squared distance to the nearest centre so far
    for _ in range(1, k):
        new = x[rows, dist.argmax(-1)][:, None]
        centres = torch.cat([centres, new], 1)
        dist = torch.minimum(dist, ((x - new) ** 2).sum(-1))
    labels = _nearest(x, centres)
    for _ in range(iters):
        means, counts = cluster_means(x, labels, k)
        centres = torch.where(counts[..., None] > 0, means, centres)
        new_labels = _nearest(x, centres)
        if bool((new_labels == labels).all()):
            break
        labels = new_labels
    return labels


def cluster_covariances(x: Tensor, labels: Tensor, k: int, *, prior: float, floor: float) -> Tensor:
    """Covariances (B, k, d, d) of the clusters of x (B, n, d): (S_k + prior P) / (n_k + prior) + floor I,
    with S_k the members' scatter about their mean and P the pooled within-cluster covariance sum_k S_k / n."""
    b, n, d = x.shape
    means, counts = cluster_means(x, labels, k)
    centred = x - torch.gather(means, 1, labels[..., None].expand(-1, -1, d))  # each point minus its own mean
    scatter = x.new_zeros(b, k, d, d)
    for j, idx, valid in cluster_members(labels, k):  # n d^2 work in all, whatever k
        rows = torch.gather(centred, 1, idx[..., None].expand(-1, -1, d)) * valid[..., None]
        scatter[:, j] = rows.transpose(-1, -2) @ rows
    pooled = scatter.sum(1) / n  # (B, d, d)
    cov = (scatter + prior * pooled[:, None]) / (counts + prior)[..., None, None]
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    return 0.5 * (cov + cov.transpose(-1, -2)) + floor * eye
