"""A Gaussian KDE whose kernels take the shape of their point's cluster: `ClusterKernelDensity`.

p(y) = (1 / n) sum_i N(y; c_i, G_{z_i}), with z_i the cluster of point i and G_k one kernel covariance per
cluster. Built from clusters (`from_clusters`; the stacked blend uses k-means clusters, fit.kmeans), each
cluster's kernel is its covariance S_k scaled by h_k^2 / (1 + h_k^2), h_k Scott's rule at the
cluster's own size n_k, on its points shrunk towards their mean by 1 / sqrt(1 + h_k^2), so the cluster keeps
its spread (Silverman 1986, section 6.4.1, cluster by cluster).

A single global kernel is as wide as the data's overall spread; kernels shaped like the local cluster
spread noise along the cluster, not across clusters (the idea of Vincent & Bengio's 2003 manifold Parzen
windows, with the local covariance taken from a cluster instead of a neighbourhood). On scikit-learn's
digits (64 raw pixels) its draws are classified like real digits where the global KDE's are pixel noise
between classes (benchmarks/digits.py).

It is a finite mixture of Gaussians, so it is normalized, its score is the exact gradient of its
log-density, it convolves in closed form (kernels G_k -> M^T G_k M + S) and it samples exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Density, as_covariance
from .kde import kernel_weights

_LOG_2PI = math.log(2.0 * math.pi)
_CHUNK_ELEMENTS = 1 << 22  # query x (centres + clusters x d) numbers evaluated at once

__all__ = ["ClusterKernelDensity", "cluster_means", "cluster_members"]


def cluster_means(x: Tensor, labels: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Means (B, k, d) of the clusters of x (B, n, d) (0 for an empty one) and their sizes (B, k)."""
    b, n, d = x.shape
    counts = x.new_zeros(b, k).scatter_add_(1, labels, x.new_ones(b, n))
    sums = x.new_zeros(b, k, d).scatter_add_(1, labels[..., None].expand(-1, -1, d), x)
    return sums / counts.clamp_min(1.0)[..., None], counts


def cluster_members(labels: Tensor, k: int) -> list[tuple[int, Tensor, Tensor]]:
    """For each cluster j < k with points in some context: (j, indices (B, L_j) of its members, padded where a
    context has fewer, valid (B, L_j) False on the padding); L_j is its largest size over the contexts. One
    stable sort of the labels, whatever k."""
    order = torch.argsort(labels, dim=1, stable=True)  # (B, n): each context's points grouped by cluster
    sizes = torch.zeros(labels.shape[0], k, dtype=torch.long, device=labels.device).scatter_add_(
        1, labels, torch.ones_like(labels))
    starts = torch.cumsum(sizes, 1) - sizes  # (B, k): where each cluster's run begins in `order`
    longest = sizes.max(0).values.tolist()
    out = []
    for j in range(k):
        if longest[j] == 0:
            continue
        offsets = torch.arange(longest[j], device=labels.device)[None]
        valid = offsets < sizes[:, j, None]
        at = (starts[:, j, None] + offsets).clamp_max(labels.shape[1] - 1)
        out.append((j, torch.where(valid, torch.gather(order, 1, at), torch.gather(order, 1, at[:, :1])), valid))
    return out


class ClusterKernelDensity(Density):
    """(1 / n) sum_i N(y; centres_i, kernels_{labels_i}) for a batch of B contexts: centres (B, n, d), labels
    (B, n) in 0..K-1, kernels (B, K, d, d) symmetric positive definite (rows of unused clusters: any SPD).

    Evaluated as one KDE pass whatever K: with P_k = G_k^-1, the kernel logit of centre i at y is
    y . v_i - |y|^2_{P_k} / 2 + const_i with v_i = P_{z_i} c_i, so the query-centre part is one matrix
    product y V^T (as for an isotropic KDE) and the clusters enter through |y|^2_{P_k} (m K d^2 work)."""

    def __init__(self, centres: Tensor, labels: Tensor, kernels: Tensor, *,
                 members: list[tuple[int, Tensor, Tensor]] | None = None) -> None:
        """members: cluster_members(labels, K), where the caller has it (a convolved copy shares it). What every
        evaluation needs (the kernels' factors, P_{z_i} c_i) is computed on first use: a cluster KDE the
        stacking gives no weight costs only its construction."""
        self.centres, self.labels, self.kernels = centres, labels, kernels
        self._n = centres.shape[1]
        self._members = cluster_members(labels, kernels.shape[1]) if members is None else members
        self._ready: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    def _prepared(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(L_k (B, K, d, d) with G_k = L_k L_k^T, A_k = L_k^-T, v_i = P_{z_i} c_i (B, n, d), const_i (B, n))."""
        if self._ready is None:
            b, n, d = self.centres.shape
            chol = torch.linalg.cholesky(self.kernels)
            eye = torch.eye(d, dtype=chol.dtype, device=chol.device).expand_as(chol)
            maps = torch.linalg.solve_triangular(chol, eye, upper=False).transpose(-1, -2)  # |y A_k|^2 = y^T P_k y
            precision = maps @ maps.transpose(-1, -2)  # (B, K, d, d)
            centres = self.centres.to(precision.dtype)
            v = torch.zeros_like(centres)
            for k, idx, valid in self._members:  # n d^2 work in all
                own = torch.gather(centres, 1, idx[..., None].expand(-1, -1, d)) @ precision[:, k]  # (B, L, d)
                v.scatter_add_(1, idx[..., None].expand(-1, -1, d), torch.where(valid[..., None], own, 0.0))
            log_det = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (B, K): log |L_k|
            const = (-0.5 * (v * centres).sum(-1) - torch.gather(log_det, 1, self.labels)
                     - 0.5 * d * _LOG_2PI - math.log(n))
            self._ready = (chol, maps, v, const)
        return self._ready

    @classmethod
    def from_clusters(cls, x: Tensor, labels: Tensor, cov: Tensor, *,
                      members: list[tuple[int, Tensor, Tensor]] | None = None) -> "ClusterKernelDensity":
        """The cluster KDE of points x (B, n, d) with clusters labels (B, n) whose kernels are shaped like
        cov (B, K, d, d): kernel r cov on the members shrunk towards their mean by sqrt(1 - r), with
        r = h^2 / (1 + h^2) and h Scott's rule at the cluster's size (module docstring). members:
        cluster_members(labels, K), where the caller has it."""
        d = x.shape[-1]
        means, counts = cluster_means(x, labels, cov.shape[1])  # members' means (B, K, d), sizes (B, K)
        h = counts.clamp_min(2.0) ** (-1.0 / (d + 4))  # Scott's rule at each cluster's size
        ratio = h * h / (1.0 + h * h)  # the variance-corrected kernel: ratio cov on centres shrunk by sqrt(1 - ratio)
        shrink = (1.0 - ratio).sqrt()  # (B, K)
        own_mean = torch.gather(means, 1, labels[..., None].expand(-1, -1, d))
        own_shrink = torch.gather(shrink, 1, labels)[..., None]
        centres = own_mean + own_shrink * (x - own_mean)
        kernels = ratio[..., None, None] * cov
        return cls(centres, labels, 0.5 * (kernels + kernels.transpose(-1, -2)), members=members)

    @property
    def batch(self) -> int:
        return self.centres.shape[0]

    @property
    def dim(self) -> int:
        return self.centres.shape[-1]

    @property
    def clusters(self) -> int:
        """The number of clusters with points in some context."""
        return len(self._members)

    def _like(self) -> Tensor:
        return self.centres

    def __repr__(self) -> str:
        return f"ClusterKernelDensity(n={self._n}, d={self.dim}, {self.clusters} clusters)"

    def log_density_and_score(self, y: Tensor, *, exclude: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """exclude (B, m, n): pairs left out (a leave-one-out KDE at the context points)."""
        return self._evaluate(y, exclude, True)

    def log_density(self, y: Tensor) -> Tensor:
        """log p alone (half the m K d^2 work of log_density_and_score)."""
        return self._evaluate(y, None, False)[0]

    def _evaluate(self, y: Tensor, exclude: Tensor | None, with_score: bool) -> tuple[Tensor, Tensor | None]:
        b, m, d = y.shape
        k = self.kernels.shape[1]
        _, maps, v, const = (t.to(y.dtype) for t in self._prepared())
        chunk = max(1, _CHUNK_ELEMENTS // max(1, self._n + k * d))
        inplace = not (torch.is_grad_enabled() and y.requires_grad)
        logs, scores = [], []
        for start in range(0, m, chunk):
            q = y[:, start:start + chunk]  # (B, c, d)
            u = torch.einsum("bcd,bkde->bcke", q, maps)  # (B, c, K, d): y A_k
            half_sq = 0.5 * (u * u).sum(-1)  # (B, c, K): |y|^2_{P_k} / 2
            labels = self.labels[:, None].expand(-1, q.shape[1], -1)  # (B, c, n)
            logits = q @ v.transpose(-1, -2) + const[:, None] - torch.gather(half_sq, 2, labels)
            drop = None if exclude is None else exclude[:, start:start + chunk]
            top, weights = kernel_weights(logits, drop, inplace=inplace)
            total = weights.sum(-1, keepdim=True)  # (B, c, 1)
            logs.append(top[..., 0] + torch.log(total[..., 0]))
            if with_score:
                resp = weights / total
                per_cluster = resp.new_zeros(b, q.shape[1], k).scatter_add_(2, labels, resp)  # (B, c, K)
                py = torch.einsum("bcke,bkde->bckd", u, maps)  # (B, c, K, d): P_k y
                scores.append(resp @ v - (per_cluster[..., None] * py).sum(-2))
        return torch.cat(logs, 1), (torch.cat(scores, 1) if with_score else None)

    def convolve(self, cov: Tensor | float, matrix: Tensor | None = None) -> "ClusterKernelDensity":
        """Centres c @ M and kernels M^T G_k M + cov (exact)."""
        noise = as_covariance(cov, self.centres)
        if matrix is None:
            centres, kernels = self.centres, self.kernels + noise[:, None]
        else:
            m = matrix.to(self.kernels.dtype)
            centres = self.centres @ m
            kernels = m.transpose(-1, -2)[:, None] @ self.kernels @ m[:, None] + noise[:, None]
        return ClusterKernelDensity(centres, self.labels, 0.5 * (kernels + kernels.transpose(-1, -2)),
                                    members=self._members)

    def draw(self, normal: Tensor, pick: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A centre drawn uniformly plus its cluster's kernel applied to the normal draw (at the picked
        positions; the others are left at their centre)."""
        b, num, d = normal.shape
        dev = normal.device
        gen_dev = generator.device if generator is not None else dev
        index = torch.randint(0, self._n, (b, num), generator=generator, device=gen_dev).to(dev)
        out = torch.gather(self.centres.to(normal.dtype), 1, index[..., None].expand(-1, -1, d))
        if not bool(pick.any()):  # a component of weight 0 in a blend's draw: nothing to prepare
            return out
        k = self.kernels.shape[1]
        key = (torch.gather(self.labels, 1, index) + k * torch.arange(b, device=dev)[:, None])[pick]  # context, cluster
        chol = self._prepared()[0].to(normal.dtype).reshape(b * k, d, d)
        rows = normal[pick]  # (P, d)
        noise = torch.zeros_like(rows)
        for j in key.unique().tolist():  # the drawn clusters only: num d^2 work in all
            mine = key == j
            noise[mine] = rows[mine] @ chol[j].transpose(-1, -2)
        out[pick] = out[pick] + noise
        return out
