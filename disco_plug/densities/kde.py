"""Gaussian kernel density estimates of log-density and score: the batched isotropic KDE, the
`KernelDensity` density object of a whitened context (kernels with a noise covariance added, for the
convolved estimate), and scipy's `gaussian_kde` as a baseline (`GaussianKDE`), with the bandwidth rules.

Kernels follow scipy.stats.gaussian_kde: the kernel covariance is factor^2 times the data covariance
(Scott 1992 and Silverman 1986 rules for the factor). Internally the data are whitened and an
isotropic kernel of width `factor` is used, which is the same estimator. Score-debiased KDE shifts each
sample by h^2/2 times a score estimate before smoothing (DiScoFormer report, arXiv 2511.05924).
All evaluations are chunked over queries so memory stays bounded for any n and m.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .base import Density, as_covariance

__all__ = ["isotropic_kde", "kernel_density", "scott_factor", "silverman_factor", "GaussianKDE", "KernelDensity",
           "kde_at_factors"]

_LOG_2PI = math.log(2.0 * math.pi)
_CHUNK_ELEMENTS = 1 << 23  # query x context pairs evaluated at once


def scott_factor(n: int, d: int) -> float:
    """Scott's rule n^(-1/(d+4))."""
    return float(n) ** (-1.0 / (d + 4))


def silverman_factor(n: int, d: int) -> float:
    """Silverman's rule (n (d+2) / 4)^(-1/(d+4))."""
    return (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))


def kde_keys(context: Tensor, inv_h2: Tensor, log_weights: Tensor) -> Tensor:
    """The augmented keys (B, F, d + 2, n) of isotropic_kde's logits: [x; 1; -|x|^2 / (2 h^2) + log w] per
    bandwidth, for centres (B, n, d), inverse squared bandwidths (B, F) and log-weights (B, n)."""
    ones = torch.ones_like(context[..., :1])
    ctx_half_sq = 0.5 * (context * context).sum(-1, keepdim=True)  # (B, n, 1)
    return torch.stack([torch.cat([context, ones, log_weights[..., None] - ctx_half_sq * inv_h2[:, j, None, None]], -1)
                        for j in range(inv_h2.shape[1])], 1).transpose(-1, -2)


def isotropic_kde(queries: Tensor, context: Tensor, bandwidth: Tensor | float, *,
                  exclude: Tensor | None = None, log_weights: Tensor | None = None,
                  keys: Tensor | None = None, query_scales: Sequence[float] | None = None) -> tuple[Tensor, Tensor]:
    """Log-density and score of a Gaussian KDE with kernel N(0, h^2 I), batched.

    Parameters
    ----------
    queries : (B, m, d) points at which to evaluate.
    context : (B, n, d) kernel centres.
    bandwidth : h, a float, a (B,) tensor, or a (B, F) tensor for F bandwidths at once.
    exclude : optional (B, m, n) boolean mask of pairs left out (leave-one-out features).
    log_weights : optional (B, n) normalized log-weights of the centres (uniform if omitted).
    keys : optional kde_keys of these centres, bandwidths and weights, computed once for many calls.
    query_scales : optional a_j (F,): bandwidth j is evaluated at a_j y and its result is that of the density
        y -> a_j^d p_j(a_j y), the KDE of the centres / a_j with bandwidth h_j / a_j (a variance-corrected
        KDE of the same centres in the same pass as the plain ones).

    Returns
    -------
    log_p : (B, m) or (B, m, F) and score : (B, m, d) or (B, m, F, d).
    The score is sum_i w_i(y) (x_i - y) / h^2 with w the kernel responsibilities, computed with one
    shared distance matrix for all F bandwidths.
    """
    b, m, d = queries.shape
    n = context.shape[1]
    h = torch.as_tensor(bandwidth, dtype=queries.dtype, device=queries.device)
    multi = h.ndim == 2
    h = h.reshape(b if h.ndim else 1, -1).expand(b, -1)  # (B, F)
    f = h.shape[1]
    inv_h2 = 1.0 / h**2  # (B, F)
    if log_weights is None:
        log_weights = torch.full((b, n), -math.log(n), dtype=queries.dtype, device=queries.device)
    # The kernel logits -|y - x|^2 / (2 h^2) + log w are one matrix product per bandwidth of augmented
    # points, [y / h^2, -|y|^2 / (2 h^2), 1] @ [x; 1; -|x|^2 / (2 h^2) + log w]^T: no (m, n) temporaries.
    if keys is None:
        keys = kde_keys(context, inv_h2, log_weights)  # (B, F, d + 2, n)
    log_norm = -0.5 * d * (_LOG_2PI + 2 * torch.log(h))  # (B, F)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n * f))
    inplace = not (torch.is_grad_enabled()
                   and any(t.requires_grad for t in (queries, context, h, log_weights)))
    logs, scores = [], []
    if query_scales is not None:
        scales = torch.tensor(tuple(query_scales), dtype=queries.dtype, device=queries.device)  # (F,)
        log_norm = log_norm + d * torch.log(scales)
    for start in range(0, m, chunk):
        y = queries[:, start:start + chunk]  # (B, c, d)
        ys = [y] * f if query_scales is None else [y * a for a in query_scales]
        q = torch.stack([torch.cat([ys[j] * inv_h2[:, j, None, None], -0.5 * (ys[j] * ys[j]).sum(-1, keepdim=True) * inv_h2[:, j, None, None],
                                    torch.ones_like(y[..., :1])], -1) for j in range(f)], 1)  # (B, F, c, d + 2)
        logits = q @ keys  # (B, F, c, n)
        drop = None if exclude is None else exclude[:, None, start:start + chunk]  # (B, 1, c, n)
        top, weights = kernel_weights(logits, drop, inplace=inplace)  # unnormalized responsibilities
        total = weights.sum(-1)  # (B, F, c)
        mean = (weights @ context[:, None]) / total[..., None]  # (B, F, c, d)
        if query_scales is None:
            scores.append(((mean - y[:, None]) * inv_h2[:, :, None, None]).transpose(1, 2))  # (B, c, F, d)
        else:  # d/dy of p_j(a_j y): a_j times the score at a_j y
            shifted = mean - torch.stack(ys, 1)
            scores.append((shifted * (inv_h2 * scales)[:, :, None, None]).transpose(1, 2))
        logs.append((top[..., 0] + torch.log(total) + log_norm[..., None]).transpose(1, 2))  # (B, c, F)
    log_p, score = torch.cat(logs, 1), torch.cat(scores, 1)
    if not multi:
        return log_p[..., 0], score[..., 0, :]
    return log_p, score


def kernel_weights(logits: Tensor, drop: Tensor | None, *, inplace: bool) -> tuple[Tensor, Tensor]:
    """The shift `top` (..., 1) and exp(logits - top) of kernel logits (..., n), pairs in drop (broadcast to
    logits) left out: logsumexp and the responsibilities from one exp (the exp dominates a KDE's cost). The
    shift cancels exactly, so no gradient flows through it. exp is ~25x slower where its result is subnormal
    or zero: it is clamped there (weights below exp(floor) ~ 1e-38 next to the top weight 1 change no sum), and
    the left-out pairs are zeroed again. inplace overwrites logits (not where autograd needs them)."""
    floor = math.log(torch.finfo(logits.dtype).tiny) + 1.0  # exp stays in its fast, normal range
    if drop is not None:
        logits = logits.masked_fill_(drop, -math.inf) if inplace else logits.masked_fill(drop, -math.inf)
    top = logits.detach().amax(-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    if inplace:
        weights = logits.sub_(top).clamp_min_(floor).exp_()
        if drop is not None:
            weights.masked_fill_(drop, 0.0)
    else:  # autograd needs exp's output unchanged
        weights = (logits - top).clamp_min(floor).exp()
        if drop is not None:
            weights = weights.masked_fill(drop, 0.0)
    return top, weights


_CACHE_NUMBERS = 1 << 22  # prepared keys or maps are kept per KDE group only up to this size (32 MB in float64)


def _kept(cache: dict | None, exclude: Tensor | None, centres: Tensor, f: int) -> dict | None:
    """The cache to use for a KDE group of f bandwidths: None where there is none, for leave-one-out calls, and
    where the prepared tensors would be large (at large n they cost little to rebuild next to the kernel sums,
    and a sampler keeps a fit per noise level)."""
    if cache is None or exclude is not None or centres.numel() * (f + 1) > _CACHE_NUMBERS:
        return None
    return cache


def kernel_density(y: Tensor, centres: Tensor, bandwidths: Tensor,
                   noise: tuple[Tensor, ...] | None = None, *,
                   exclude: Tensor | None = None, cache: dict | None = None) -> tuple[Tensor, Tensor]:
    """Gaussian KDE log-density (B, m, F) and score (B, m, F, d) of centres (B, n, d) at y (B, m, d),
    one kernel N(0, h^2 I + N) per bandwidth h in bandwidths (F,).

    noise: the eigen-decomposition (values (B, d), vectors (B, d, d)) of N, or None for N = 0 (the
    isotropic KDE). A kernel N(0, h^2 I + N) on clean centres is the expectation, over the noise draw,
    of the kernel N(0, h^2 I) on centres + N(0, N) noise: the KDE of a noised sample set without
    drawing the noise. An optional third entry s (B, d) makes the kernel h^2 U diag(s) U^T + N: the
    clean kernel h^2 I of another frame, seen in this one (KernelDensity.convolve). Per bandwidth the
    points are mapped by U diag(h^2 s + lambda)^(-1/2), where the kernel is the unit isotropic one.

    cache: a dict kept by the caller for these centres, bandwidths and noise (KernelDensity keeps one):
    what does not depend on y (the augmented keys, the kernel maps) is computed on the first call only."""
    b = y.shape[0]
    if noise is None:
        return _cached_isotropic(y, centres, bandwidths.expand(b, -1), exclude, cache)
    cache = _kept(cache, exclude, centres, len(bandwidths))
    if cache is None or "maps" not in cache:
        evals, evecs, *kernel = (t.to(y.dtype) for t in noise)
        kernel_scale = kernel[0] if kernel else torch.ones_like(evals)  # (B, d)
        maps = []
        for h in bandwidths:
            scale = (h * h * kernel_scale + evals).rsqrt()  # (B, d)
            r = evecs * scale[:, None, :]  # (B, d, d): y -> y @ r whitens the kernel
            maps.append((r, centres @ r, torch.log(scale).sum(-1)[:, None]))
        if cache is not None:
            cache["maps"] = maps
    else:
        maps = cache["maps"]
    logs, scores = [], []
    for r, mapped, log_scale in maps:
        log_p, score = isotropic_kde(y @ r, mapped, 1.0, exclude=exclude)
        logs.append(log_p + log_scale)
        scores.append(score @ r.transpose(-1, -2))
    return torch.stack(logs, -1), torch.stack(scores, -2)


class KernelDensity(Density):
    """A Gaussian KDE of a batch of contexts as a `Density`: equal weights on centres (B, n, d), kernel
    h^2 U diag(s) U^T + U diag(lambda) U^T, which is h^2 I when `kernel` is None; kernel = (lambda (B, d),
    U (B, d, d), s (B, d)) is what `convolve` makes of it (the clean kernel seen in another frame, plus
    the noise).

    A variance-corrected KDE (Silverman 1986, section 6.4.1) is one whose centres were shrunk towards
    their mean; `shrunk` says so (for its repr and for sampling it is just another set of centres)."""

    def __init__(self, centres: Tensor, bandwidth: float, kernel: tuple[Tensor, Tensor, Tensor] | None = None,
                 *, shrunk: bool = False, base: Tensor | None = None, scale: float = 1.0) -> None:
        """base, scale: centres = scale * base, where base are other KDEs' centres (a variance-corrected KDE
        of the same points): KDEs of one base are evaluated in one pass (evaluate_together)."""
        self.centres = centres
        self.bandwidth = float(bandwidth)
        self.kernel = kernel
        self.shrunk = shrunk
        self.base = centres if base is None else base
        self.scale = float(scale)
        self._prepared: dict = {}  # what evaluate_together computes once per group of bandwidths (kernel_density)

    @property
    def batch(self) -> int:
        return self.centres.shape[0]

    @property
    def dim(self) -> int:
        return self.centres.shape[-1]

    def _like(self) -> Tensor:
        return self.centres

    def __repr__(self) -> str:
        kind = "variance-corrected " if self.shrunk else ""
        noise = ", convolved" if self.kernel is not None else ""
        return f"KernelDensity({kind}n={self.centres.shape[1]}, d={self.dim}, h={self.bandwidth:.4g}{noise})"

    def log_density_and_score(self, y: Tensor, *, exclude: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """exclude (B, m, n): pairs left out (a leave-one-out KDE at the context points)."""
        log_p, score = KernelDensity.evaluate_together([self], y, exclude=exclude)
        return log_p[..., 0], score[..., 0, :]

    def convolve(self, cov: Tensor | float, matrix: Tensor | None = None) -> "KernelDensity":
        """Centres c @ M and kernel M^T K M + cov: the KDE of the moved and noised points, in
        expectation over the noise. The kernel's two parts are kept in the noise's eigenbasis, exact
        when they share it (as the whitened frames of a set and of its noised distribution do)."""
        noise = as_covariance(cov, self.centres)
        eye = torch.eye(self.dim, dtype=noise.dtype, device=noise.device).expand_as(noise)
        m = eye if matrix is None else matrix.to(noise.dtype)
        if self.kernel is None:
            base, extra = m.transpose(-1, -2) @ m, noise
        else:
            lam, vec, s = self.kernel
            base = m.transpose(-1, -2) @ (vec * s[:, None]) @ vec.transpose(-1, -2) @ m
            extra = m.transpose(-1, -2) @ (vec * lam[:, None]) @ vec.transpose(-1, -2) @ m + noise
        evals, evecs = torch.linalg.eigh(extra)
        scale = torch.diagonal(evecs.transpose(-1, -2) @ base @ evecs, dim1=-2, dim2=-1)
        return KernelDensity(self.centres @ m, self.bandwidth, (evals.clamp_min(0.0), evecs, scale.clamp_min(0.0)),
                             shrunk=self.shrunk)

    def draw(self, normal: Tensor, pick: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A centre drawn uniformly plus the kernel applied to the normal draw."""
        b, num, d = normal.shape
        dev = normal.device
        gen_dev = generator.device if generator is not None else dev
        index = torch.randint(0, self.centres.shape[1], (b, num), generator=generator, device=gen_dev).to(dev)
        h = self.bandwidth
        kernel = h * normal
        if self.kernel is not None:
            evals, evecs, s = (t.to(normal.dtype) for t in self.kernel)
            kernel = (normal * (h * h * s + evals).sqrt()[:, None]) @ evecs.transpose(-1, -2)
        centres = self.centres.to(normal.dtype)
        return torch.gather(centres, 1, index[..., None].expand(-1, -1, d)) + kernel

    @classmethod
    def evaluate_together(cls, densities: Sequence[Density], y: Tensor, *,
                          exclude: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Consecutive KDEs in one pass where they can share one distance matrix (isotropic_kde): KDEs of
        one base of centres (plain ones and variance-corrected ones, those at scaled queries), or, once
        convolved, KDEs of the same centres and kernel noise."""
        logs, scores = [], []
        start = 0
        while start < len(densities):
            first = densities[start]
            stop = start + 1
            if first.kernel is None:
                while stop < len(densities) and densities[stop].kernel is None and densities[stop].base is first.base:
                    stop += 1
            else:
                while (stop < len(densities) and densities[stop].centres is first.centres
                       and densities[stop].kernel is first.kernel):
                    stop += 1
            members = densities[start:stop]
            group = tuple((k.bandwidth, k.scale) for k in members)
            cache = first._prepared.setdefault((group, y.dtype, y.device), {})  # per group, on its first KDE
            if first.kernel is None and any(k.scale != 1.0 for k in members):
                # p(y) = a^d KDE_base(a y; h a), a = 1 / scale: the scaled centres' KDE at the base's points
                lp, sc = _kde_of_base(y, first.base.to(y.dtype), members, exclude, cache)
            else:
                bw = torch.tensor([k.bandwidth for k in members], dtype=y.dtype, device=y.device)
                centres = first.centres if first.kernel is not None else first.base
                lp, sc = kernel_density(y, centres.to(y.dtype), bw, first.kernel, exclude=exclude, cache=cache)
            logs.append(lp)
            scores.append(sc)
            start = stop
        return torch.cat(logs, -1), torch.cat(scores, -2)


def _kde_of_base(y: Tensor, base: Tensor, members: Sequence[KernelDensity], exclude: Tensor | None,
                 cache: dict) -> tuple[Tensor, Tensor]:
    """KDEs with centres scale_j * base and bandwidths h_j at y, as isotropic KDEs of base with bandwidths
    h_j / scale_j at y / scale_j (one distance matrix for all of them)."""
    bw = torch.tensor([k.bandwidth / k.scale for k in members], dtype=y.dtype, device=y.device).expand(y.shape[0], -1)
    return _cached_isotropic(y, base, bw, exclude, cache, [1.0 / k.scale for k in members])


def _cached_isotropic(y: Tensor, centres: Tensor, h: Tensor, exclude: Tensor | None, cache: dict | None,
                      query_scales: Sequence[float] | None = None) -> tuple[Tensor, Tensor]:
    """isotropic_kde of equal-weight centres at bandwidths h (B, F), with the augmented keys taken from (or
    put in) `cache` where _kept allows it."""
    cache = _kept(cache, exclude, centres, h.shape[1])
    if cache is None:
        return isotropic_kde(y, centres, h, exclude=exclude, query_scales=query_scales)
    if "keys" not in cache:
        b, n = centres.shape[:2]
        uniform = torch.full((b, n), -math.log(n), dtype=y.dtype, device=y.device)
        cache["keys"] = kde_keys(centres, 1.0 / h**2, uniform)
    return isotropic_kde(y, centres, h, keys=cache["keys"], query_scales=query_scales)


class GaussianKDE:
    """Gaussian KDE with scipy.stats.gaussian_kde's kernel (covariance factor^2 * data covariance,
    ddof = 1), returning log-density and score.

    Parameters
    ----------
    data : (n, d) tensor of samples.
    bandwidth : "scott", "silverman", or a float factor.

    Example
    -------
    >>> import torch
    >>> kde = GaussianKDE(torch.randn(500, 2, dtype=torch.float64), bandwidth="scott")
    >>> kde.log_density(torch.zeros(3, 2, dtype=torch.float64)).shape
    torch.Size([3])
    """

    def __init__(self, data: Tensor, bandwidth: str | float = "scott") -> None:
        if data.ndim != 2:
            raise ValueError(f"data must be (n, d), got shape {tuple(data.shape)}")
        n, d = data.shape
        if n <= d:
            raise ValueError(f"KDE needs more samples than dimensions to estimate a covariance (n={n}, d={d})")
        if isinstance(bandwidth, str):
            rules = {"scott": scott_factor, "silverman": silverman_factor}
            if bandwidth not in rules:
                raise ValueError(f"bandwidth must be 'scott', 'silverman' or a positive float, got {bandwidth!r}")
            factor = rules[bandwidth](n, d)
        else:
            factor = float(bandwidth)
            if not factor > 0 or not math.isfinite(factor):
                raise ValueError(f"bandwidth factor must be positive and finite, got {bandwidth}")
        self.data, self.factor = data, factor
        mean = data.mean(0)
        cov = torch.cov(data.T.to(torch.float64)).reshape(d, d)
        evals, evecs = torch.linalg.eigh(cov)
        if not bool(evals.min() > evals.max() * 1e-12):
            raise ValueError("data covariance is singular: the samples lie in a lower-dimensional subspace")
        self._whiten = (evecs * evals.rsqrt()) @ evecs.T  # (d, d) symmetric inverse square root
        self._log_det = float(-0.5 * torch.log(evals).sum())
        self._mean = mean.to(torch.float64)
        self._context = ((data.to(torch.float64) - self._mean) @ self._whiten)[None]

    def log_density_and_score(self, queries: Tensor) -> tuple[Tensor, Tensor]:
        y = ((queries.to(torch.float64) - self._mean) @ self._whiten)[None]
        log_p, score_w = isotropic_kde(y, self._context, self.factor)
        log_p = (log_p[0] + self._log_det).to(queries.dtype)
        return log_p, (score_w[0] @ self._whiten).to(queries.dtype)

    def log_density(self, queries: Tensor) -> Tensor:
        return self.log_density_and_score(queries)[0]

    def score(self, queries: Tensor) -> Tensor:
        return self.log_density_and_score(queries)[1]

    @classmethod
    def debiased(cls, data: Tensor, data_score: Tensor, bandwidth: str | float = "scott") -> "GaussianKDE":
        """Score-debiased KDE: move each sample by h^2/2 * score (kernel covariance H = h^2 Cov)
        before smoothing, which cancels the O(h^2) smoothing bias (report, section on applications)."""
        base = cls(data, bandwidth)
        cov = torch.linalg.inv(base._whiten @ base._whiten)  # data covariance
        shifted = data.to(torch.float64) + 0.5 * base.factor**2 * data_score.to(torch.float64) @ cov
        return cls(shifted.to(data.dtype), base.factor)


def kde_at_factors(data: Tensor, queries: Tensor, factors: Tensor) -> tuple[Tensor, Tensor]:
    """scipy-style Gaussian KDE of `data` (n, d) at `queries` (m, d) for F bandwidth factors at once:
    log p (m, F) and score (m, F, d), sharing one distance matrix (used for best-on-grid bandwidths)."""
    base = GaussianKDE(data, 1.0)
    y = ((queries.to(torch.float64) - base._mean) @ base._whiten)[None]
    log_p, score_w = isotropic_kde(y, base._context, factors.to(torch.float64)[None])
    return log_p[0] + base._log_det, score_w[0] @ base._whiten
