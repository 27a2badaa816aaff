"""Gaussian and Student-t mixtures fitted to a context by EM, grown by splitting (the mixtures are
densities of disco_plug.densities.mixture; this module only fits them).

One EM iteration for a mixture is two softmax attentions (points over components for the
responsibilities, components over points for the means and covariances): the slot-attention view of
soft clustering (Locatello et al. 2020, "Object-Centric Learning with Slot Attention").

Algorithm (Dempster, Laird & Rubin 1977 for EM; mixture splitting as in Ueda et al. 2000, "SMEM
algorithm for mixture models", and the binary splitting of Linde, Buzo & Gray 1980):
- K = 1 is the Gaussian fit. Growing K -> K + 1 splits one component in two along its principal axis,
  then runs `iters` EM steps. From d = TRIAL_SPLIT_MIN_DIM on, every component is tried: its points (by
  responsibility) are divided at the hyperplane through its mean normal to that axis, the two halves get
  the M-step of that division and one EM step, and the trial with the highest likelihood is kept (greedy
  split selection by trial, as in Verbeek, Vlassis & Kroese 2003, "Efficient greedy learning of Gaussian
  mixture models"). Below that d, the component with the largest weighted principal variance is split at
  mu +- sqrt(lambda) v / 2. The variance rule splits large, well-fitted components while two small clusters
  stay merged in one: on 12 random 10-D GMMs at n = 4096 the BIC mixture found the true K in 4 with it and
  in 8 with trials (mixture score error 1.72 -> 1.22 %), at about twice the fitting time; in 2-D the rule
  does as well as trials.
- Covariances are shrunk towards the pooled within-component covariance with `prior` pseudo-points
  (a conjugate-prior MAP estimate), plus a floor, so small components in high d stay well posed.
- With heavy_tails, components are multivariate Student-t (robust mixture modelling, Peel & McLachlan
  2000, "Robust mixture modelling using the t distribution"): each E-step also gives every point a
  scale weight u = (nu + d) / (nu + delta) (delta its Mahalanobis distance), the M-step weights means
  and scatters by it, and each component's degrees of freedom nu are chosen on a grid by the expected
  log-likelihood, a finite nu paying BIC's price for one parameter (an ECM step, Liu & Rubin 1995). The grid ends with the Gaussian (nu = infinity), so
  Gaussian data keep Gaussian components while heavy-tailed data get tails that decay polynomially.
- The number of components is chosen per context by a penalized likelihood: -2 log L + penalty * p,
  where p counts weights, means, the degrees of freedom of heavy-tailed components and the
  covariances' effective parameters (shrinkage lowers them). penalty = log n is BIC (Schwarz 1978); penalty = 2 is AIC (Akaike 1974).
- Optionally (fit_mixtures' `frame`), a family whose components share their principal axes: covariances
  D diag(v_k) D^T with one orthogonal D per context, fitted in a given frame (Flury 1984, "Common
  principal components in k groups"; mclust's VVE model of Celeux & Govaert 1995). It costs
  d (d - 1) / 2 + K d covariance parameters instead of K d (d + 1) / 2. D minimizes Flury's criterion
  sum_k n_k log det diag(D^T S_k D) by Newton steps on all axis pairs at once, as the quasi-Newton joint
  diagonalization of Ablin, Cardoso & Gramfort 2018 ("Beyond Pham's algorithm for joint
  diagonalization") restricted to rotations.
- The selected mixture gets `final_iters` more EM steps.
- Beyond `path_points` context points, the splitting path and the choice of K run on a subsample of that
  size (chosen by a hash of each point's coordinates, so it does not depend on the order of the points);
  FULL_DATA_ITERS final EM steps and the choice between covariance families see every point. The path
  costs O(path_points) instead of O(n), and at that size K and the starting point are well determined; the
  family test is not (its power grows with n: a restricted family that passes on 16384 points can fail on
  131072, and keeping it left a bias of 0.9 % score error in one benchmark task).

Deterministic and free of random draws: the same set of points gives the same fit in any order.
Everything is batched over B contexts, and fit_mixture_sets fits every kind of component and covariance family
of a context as entries of that batch; memory is O(B n K + B K d^2) (components are chunked to bound it).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ..densities.mixture import (GAUSSIAN_DOF, Mixture, _kernel, _log_const, _pad, _padded, _rows, _scale_weight,
                                 convolve_mixture, mixture_log_weights, precision_form)

__all__ = ["fit_mixture", "fit_mixture_sets", "fit_mixtures", "path_subset", "refine_mixture"]

COMMON_AXES_MAX_DIM = 32  # fit_mixtures' common-axes family above this d costs ~10 s per context (d = 100)
VAR_FLOOR = 1e-4  # covariance floor in whitened units (the context's total covariance is I)
FAMILY_TEST_SD = 3.0  # fit_mixture_sets' likelihood-ratio test of a restricted covariance family
# The heavy-tailed fit's choices of nu. It starts at 3, where a component still has a finite variance: with 1.5
# and 2 also offered, grid-valued real tables (randhie's visit counts, spikes at 0) got nu = 1.5 in every
# component, and draws from the estimate reached 250x the data's range (benchmarks/realdata.py, randhie, 5 splits:
# sample energy ratio 34.7 -> 12.0 raw and 8.7 -> 4.6 dequantized without them, held-out likelihood 0.778 -> 0.767
# and -0.616 -> -0.617 nats/dim, within a standard error; the synthetic accuracy rows changed only for the better).
DOF_GRID = (3.0, 5.0, 8.0, 15.0, 30.0)  # and the Gaussian, GAUSSIAN_DOF, always
PATH_POINTS = 16384  # fit_mixtures' splitting path runs on at most this many points (module docstring)
# EM steps on every point after a subsampled path. Measured on 3 random d = 10 GMMs, n = 131072: the score error
# is 0.049 % with 2, 4 or 12 such steps (and without subsampling); each step costs about 1.2 s there.
FULL_DATA_ITERS = 4
TRIAL_SPLIT_MIN_DIM = 3  # fit_mixtures tries every split from this d on (module docstring)
_HASH = torch.tensor([math.sqrt(p) for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29)], dtype=torch.float64) * 1e4


def _per_context(mask: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """new where the per-context mask (B,) holds, else old, for tensors (B, ...) of any rank."""
    return torch.where(mask.reshape(-1, *([1] * (old.ndim - 1))), new, old)


_EM_CHUNK = 1 << 19  # numbers per (C, k, n, d) intermediate of an E- or M-step: 4 MB in float64, cache-sized
_TRIAL_BATCH = _EM_CHUNK  # _best_split batches trial splits while contexts x points x d stays under this


def _component_chunks(x: Tensor, k: int) -> list[slice]:
    """Slices of the K components, as few as keep (C, n, chunk, d) intermediates under _EM_CHUNK numbers."""
    c, n, d = x.shape
    size = max(1, _EM_CHUNK // max(1, c * n * d))
    return [slice(i, min(i + size, k)) for i in range(0, k, size)]


def _mahalanobis(x: Tensor, means: Tensor, prec_chol: Tensor) -> Tensor:
    """|(x_i - mu_k) @ prec_chol_k|^2 (C, n, K) for points (C, n, d), all components in one batched product."""
    parts = []
    for s in _component_chunks(x, means.shape[1]):
        z = (x[:, None] - means[:, s, None]) @ prec_chol[:, s]  # (C, k, n, d)
        parts.append((z * z).sum(-1))
    return (parts[0] if len(parts) == 1 else torch.cat(parts, 1)).transpose(1, 2)


def _weighted_scatter(x: Tensor, weight: Tensor, means: Tensor) -> Tensor:
    """sum_i weight_ik (x_i - mu_k)(x_i - mu_k)^T (C, K, d, d) for weights (C, n, K)."""
    parts = []
    for s in _component_chunks(x, means.shape[1]):
        diff = x[:, None] - means[:, s, None]  # (C, k, n, d)
        parts.append((weight[:, :, s].transpose(1, 2)[..., None] * diff).transpose(-1, -2) @ diff)
    return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


def _joint(x: Tensor, log_w: Tensor, means: Tensor, cov: Tensor,
           dof: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """log w_k + log p_k(x_i) as (B, n, K), the Mahalanobis distances (B, n, K), the precision
    Cholesky factors and the log norms."""
    d = x.shape[-1]
    prec_chol, log_norm = precision_form(log_w, cov, dof)
    delta = _mahalanobis(x, means, prec_chol)  # (B, n, K)
    return log_norm[:, None] + _kernel(delta, dof[:, None], d), delta, prec_chol, log_norm


class Shrinkage(NamedTuple):
    """What every M-step uses besides the data: the covariance prior's pseudo-points, the variance floor
    added to every covariance (whitened units), and the degrees-of-freedom grid of Student-t components
    (the Gaussian, nu = GAUSSIAN_DOF, is always offered too)."""

    prior: float
    var_floor: float = 1e-4
    dof_grid: tuple[float, ...] = (3.0, 5.0, 8.0, 15.0, 30.0)


class _Family(NamedTuple):
    """Per context of a batch of fits (C,): which kind of mixture it is. fit_mixture_sets fits every kind of
    component (Gaussian, Student-t) and covariance family (full, diagonal, common axes) of a context as
    entries of one batch, so one E- or M-step serves them all."""

    heavy: Tensor  # Student-t components with fitted degrees of freedom
    diagonal: Tensor  # covariances diagonal in the context's coordinates
    common: Tensor  # covariances sharing their principal axes (common_axes)
    prior: Tensor | None = None  # the covariance prior's pseudo-points per context (None: Shrinkage.prior)

    def rows(self, idx: Tensor) -> "_Family":
        return _Family(*(None if t is None else t[idx] for t in self))


def _choose_dof(resp: Tensor, delta: Tensor, d: int, heavy: Tensor, dof_grid: tuple[float, ...]) -> Tensor:
    """Per component, the grid's nu with the largest expected log-likelihood sum_i r_ik log t_nu (B, K),
    a finite nu paying BIC's price of one parameter, log(n_k) / 2: Gaussian unless the tails earn it.
    heavy (B,): the contexts whose components may have finite nu (the others stay Gaussian)."""
    gaussian = torch.full_like(resp[:, 0], GAUSSIAN_DOF)
    if not bool(heavy.any()):
        return gaussian
    rows = heavy.nonzero()[:, 0]  # only those contexts' likelihoods are needed
    resp, delta = resp[rows], delta[rows]
    grid = torch.tensor((*dof_grid, GAUSSIAN_DOF), dtype=resp.dtype, device=resp.device)  # (G,)
    consts = _log_const(grid, d)  # (G,)
    ll = torch.stack([(resp * (consts[j] + (-0.5 * delta if nu >= GAUSSIAN_DOF else
                                            -0.5 * (grid[j] + d) * torch.log1p(delta / grid[j])))).sum(1)
                      for j, nu in enumerate(grid.tolist())], -1)  # (R, K, G): _kernel at each nu
    price = 0.5 * torch.log(resp.sum(1).clamp_min(1.0))  # (R, K)
    ll = ll - torch.where(grid < GAUSSIAN_DOF, 1.0, 0.0) * price[..., None]
    return gaussian.index_copy(0, rows, grid[ll.argmax(-1)])


def common_axes(cov: Tensor, weight: Tensor, axes: Tensor | None = None, iters: int = 20,
                tol: float = 1e-9) -> Tensor:
    """The orthogonal D (B, d, d) that minimizes Flury's common-principal-components criterion
    sum_k w_k sum_i log (D^T C_k D)_ii for covariances cov (B, K, d, d) and weights (B, K) (zero for
    unused components), starting from `axes` (default: the eigenvectors of the weighted mean covariance).

    Each iteration takes one Newton step on every axis pair (i, j) at once, with the pair's own gradient
    g_ij = sum_k 2 w_k M_ij (1 / M_jj - 1 / M_ii) and curvature h_ij = sum_k 2 w_k (M_ii - M_jj)^2 /
    (M_ii M_jj) of the rotated M_k = D^T C_k D (the diagonal-dominant Hessian approximation of Ablin et al.
    2018, for rotations), maps the skew step to a rotation by the Cayley transform and halves it until the
    criterion decreases."""
    b, k, d, _ = cov.shape
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
    w = weight / weight.sum(-1, keepdim=True).clamp_min(1e-30)
    if axes is None:
        axes = torch.linalg.eigh((w[..., None, None] * cov).sum(1))[1]

    def criterion(frame: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        m = frame.transpose(-1, -2)[:, None] @ cov @ frame[:, None]  # (B, K, d, d)
        diag = torch.diagonal(m, dim1=-2, dim2=-1).clamp_min(1e-30)  # (B, K, d)
        return (w * torch.log(diag).sum(-1)).sum(-1), m, diag

    value, m, diag = criterion(axes)
    for _ in range(iters):
        inv = 1.0 / diag
        wk = w[..., None, None]
        grad = (2 * wk * m * (inv[..., None, :] - inv[..., :, None])).sum(1)  # (B, d, d)
        curv = (2 * wk * (diag[..., :, None] - diag[..., None, :]) ** 2 * inv[..., :, None] * inv[..., None, :]).sum(1)
        if float(grad.abs().amax()) < tol:
            break
        # Pairs whose components have nearly equal variances barely change the criterion: damp them.
        step = -grad / (curv + 1e-3 * curv.mean((-1, -2), keepdim=True) + 1e-12)
        step = (0.5 * (step - step.transpose(-1, -2)) * (1 - eye)).clamp(-0.5, 0.5)  # skew, |angle| <= 0.5
        accepted = torch.zeros(b, dtype=torch.bool, device=cov.device)
        new = (value, axes, m, diag)
        for size in (1.0, 0.5, 0.25, 0.1):
            if bool(accepted.all()):
                break
            a = size * step
            trial = axes @ torch.linalg.solve(eye - a / 2, eye + a / 2)  # Cayley: orthogonal for skew a
            t_value, t_m, t_diag = criterion(trial)
            ok = ~accepted & torch.isfinite(t_value) & (t_value < value)
            new = tuple(_per_context(ok, cand, old)
                        for old, cand in zip(new, (t_value, trial, t_m, t_diag)))
            accepted |= ok
        if not bool(accepted.any()):
            break
        value, axes, m, diag = new
    return axes


def _m_step(x: Tensor, resp: Tensor, weight: Tensor, active: Tensor, shrink_to: Shrinkage, family: _Family,
            frame: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """Weights, means, shrunk covariances and their effective covariance parameters per context, from
    the responsibilities resp (B, n, K) and the scale weights (B, n, K) (ones for Gaussians). Diagonal
    contexts (family.diagonal) keep only the covariances' diagonals (d parameters each instead of
    d (d + 1) / 2). With frame (B, d, d), an orthogonal starting point per context, the covariances of
    the common-axes contexts (family.common) share their principal axes (common_axes, fitted from there);
    the frame, updated for those contexts, is returned last (None without one)."""
    b, n, d = x.shape
    prior = shrink_to.prior if family.prior is None else family.prior[:, None].to(x.dtype)  # float or (B, 1)
    counts = resp.sum(1)  # (B, K)
    safe = counts.clamp_min(1e-10)
    ru = resp * weight
    means = (ru.transpose(1, 2) @ x) / ru.sum(1).clamp_min(1e-10)[..., None]  # (B, K, d)
    scatter = _weighted_scatter(x, ru, means)  # (B, K, d, d)
    pooled = scatter.sum(1) / n  # within-component covariance
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    shrink = counts / (counts + prior)  # (B, K): weight of the component's own scatter
    cov = (scatter + (prior if isinstance(prior, float) else prior[..., None, None]) * pooled[:, None]) \
        / (counts + prior)[..., None, None]
    effective = (shrink * active).sum(-1)  # (B,)
    cov_dof = effective * (d * (d + 1) / 2)
    if bool(family.diagonal.any()):
        cov = _per_context(family.diagonal, torch.diag_embed(torch.diagonal(cov, dim1=-2, dim2=-1)), cov)
        cov_dof = torch.where(family.diagonal, effective * d, cov_dof)
    if frame is not None and means.shape[1] > 1 and bool(family.common.any()):
        rows = family.common.nonzero()[:, 0]
        axes = common_axes(cov[rows], ((counts + prior) * active)[rows], frame[rows], iters=4)
        var = torch.diagonal(axes.transpose(-1, -2)[:, None] @ cov[rows] @ axes[:, None], dim1=-2, dim2=-1)
        shared = (axes[:, None] * var[..., None, :]) @ axes.transpose(-1, -2)[:, None]  # (R, K, d, d)
        cov = cov.index_copy(0, rows, 0.5 * (shared + shared.transpose(-1, -2)))
        frame = frame.index_copy(0, rows, axes)
        cov_dof = cov_dof.index_copy(0, rows, d * (d - 1) / 2 + effective[rows] * d)
    cov = cov + shrink_to.var_floor * eye
    log_w = torch.where(active, torch.log(safe / n), torch.full_like(safe, -math.inf))
    return log_w, means, cov, cov_dof, frame


def _em(x: Tensor, log_w: Tensor, means: Tensor, cov: Tensor, dof: Tensor, active: Tensor, shrink_to: Shrinkage,
        iters: int, family: _Family, frame: Tensor | None = None, *,
        loglik: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """`iters` EM steps; returns the parameters, the effective covariance dof, the log-likelihood (B,)
    (None with loglik=False, which saves an E-step) and the common axes (with a starting frame; see _m_step)."""
    d = x.shape[-1]
    cov_dof = torch.zeros_like(log_w[:, 0])
    for _ in range(iters):
        joint, delta, _, _ = _joint(x, log_w, means, cov, dof)
        resp = torch.softmax(joint, dim=-1)
        dof = torch.where(active, _choose_dof(resp, delta, d, family.heavy, shrink_to.dof_grid), dof)
        log_w, means, cov, cov_dof, frame = _m_step(x, resp, _scale_weight(delta, dof[:, None], d), active, shrink_to,
                                                    family, frame)
    if not loglik:
        return log_w, means, cov, dof, cov_dof, None, frame
    joint, _, _, _ = _joint(x, log_w, means, cov, dof)
    return log_w, means, cov, dof, cov_dof, torch.logsumexp(joint, dim=-1).sum(-1), frame


def _tails(dof: Tensor) -> Tensor:
    """Parameters spent on tails: one per heavy-tailed (finite nu) component, (B,)."""
    return (dof < GAUSSIAN_DOF).sum(-1).to(dof.dtype)


def _split(log_w: Tensor, means: Tensor, cov: Tensor, dof: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Split, in every context, the component with the largest weight x principal variance."""
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    lam, v = evals[..., -1], evecs[..., -1]  # (B, K), (B, K, d)
    pick = torch.argmax(log_w + torch.log(lam), dim=-1)  # (B,)
    rows = torch.arange(means.shape[0], device=means.device)
    offset = 0.5 * lam[rows, pick].sqrt()[:, None] * v[rows, pick]  # (B, d); the sign of v is irrelevant
    half = log_w[rows, pick] - math.log(2.0)
    log_w, means = log_w.clone(), means.clone()
    log_w[rows, pick] = half
    new_mean = means[rows, pick] - offset
    means[rows, pick] = means[rows, pick] + offset
    return (torch.cat([log_w, half[:, None]], 1), torch.cat([means, new_mean[:, None]], 1),
            torch.cat([cov, cov[rows, pick][:, None]], 1), torch.cat([dof, dof[rows, pick][:, None]], 1))


def path_subset(x: Tensor, size: int, *, ordered: bool = False) -> Tensor:
    """(B, size) indices of a pseudo-random subset of each context x (B, n, d) that depends on the set of
    points, not their order: the points whose coordinate hash, the fractional part of sum_j x_j c_j with
    large irrational c_j, is smallest (with ordered, smallest hash first)."""
    d = x.shape[-1]
    c = _HASH.to(x.device).repeat(d // len(_HASH) + 1)[:d] * torch.arange(1, d + 1, dtype=torch.float64,
                                                                       device=x.device).sqrt()
    z = (x.to(torch.float64) * c).sum(-1)  # (B, n)
    h = z - torch.floor(z)  # in [0, 1) also for negative z (torch.frac keeps the sign)
    return torch.topk(h, size, dim=-1, largest=False, sorted=ordered).indices


def _best_split(x: Tensor, log_w: Tensor, means: Tensor, cov: Tensor, dof: Tensor, shrink_to: Shrinkage,
                family: _Family, frame: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The K + 1 components after the split, tried on every component, that gives each context the highest
    likelihood. A trial split divides component j's points (by responsibility) at the hyperplane through
    its mean normal to its principal axis, takes the M-step of that division (two tight clusters merged in
    one become two components at once) and one EM step. The trials are batched: those of a block of
    components j, for every context, are one batch of contexts (as many as keep B n d per trial under
    _TRIAL_BATCH numbers); ties go to the smallest j."""
    b, k = log_w.shape
    n, d = x.shape[1], x.shape[2]
    joint, _, _, _ = _joint(x, log_w, means, cov, dof)
    resp = torch.softmax(joint, -1)  # (B, n, K)
    axis = torch.linalg.eigh(cov)[1][..., -1]  # (B, K, d) principal axes
    block = max(1, _TRIAL_BATCH // (b * n * d))
    states, lls = [], []
    for j0 in range(0, k, block):
        js = torch.arange(j0, min(j0 + block, k), device=x.device)
        g = len(js)
        side = (((x[:, None] - means[:, js, None]) * axis[:, js, None]).sum(-1) > 0).to(x.dtype)  # (B, g, n)
        own = resp[..., js].transpose(1, 2)  # (B, g, n): the split components' responsibilities
        replace = (torch.arange(k, device=x.device) == js[:, None])[None, :, None, :]  # trial j replaces column j
        r = torch.where(replace, (own * side)[..., None], resp[:, None])  # (B, g, n, K)
        r = torch.cat([r, (own * (1 - side))[..., None]], -1).reshape(b * g, n, k + 1)
        rows = torch.arange(b, device=x.device).repeat_interleave(g)  # row b g + i: context b, component js[i]
        xs, fam = x[rows], family.rows(rows)
        active = torch.ones(b * g, k + 1, dtype=torch.bool, device=x.device)
        ones = torch.ones(b * g, n, k + 1, dtype=x.dtype, device=x.device)
        trial_w, trial_mu, trial_cov, _, trial_frame = _m_step(xs, r, ones, active, shrink_to, fam,
                                                               None if frame is None else frame[rows])
        trial_dof = torch.cat([dof[rows], dof[:, js].reshape(b * g, 1)], 1)
        out = _em(xs, trial_w, trial_mu, trial_cov, trial_dof, active, shrink_to, 1, fam, trial_frame)
        states.append([t.reshape(b, g, *t.shape[1:]) for t in out[:4]])
        lls.append(out[5].reshape(b, g))
    best = torch.cat(lls, 1).nan_to_num(nan=-math.inf).argmax(-1)  # (B,): argmax gives the first maximum
    ids = torch.arange(b, device=x.device)
    return tuple(torch.cat(parts, 1)[ids, best] for parts in zip(*states))


def fit_mixtures(x: Tensor, penalties: tuple[float, ...] = (1.0,), max_components: int = 10, *,
                 heavy_tails: bool = False, **options) -> tuple[Mixture, ...]:
    """Fit mixtures to each context x (B, n, d) by EM with splitting (module docstring), one per
    model-choice penalty; the splitting path is shared, only the choice of K differs. Gaussian
    components, or with heavy_tails Student-t ones with fitted degrees of freedom; the other options are
    those of fit_mixture_sets."""
    return fit_mixture_sets(x, [(tuple(penalties), heavy_tails)], max_components, **options)[0]


def fit_mixture_sets(x: Tensor, kinds: list[tuple[tuple[float, ...], bool]], max_components: int = 10, *,
                     iters: int = 8, final_iters: int = 12, prior: float | None = None, patience: int = 2,
                     axes: Tensor | None = None, frame: Tensor | None = None,
                     path_points: int | None = PATH_POINTS, full_data_iters: int = FULL_DATA_ITERS,
                     trial_split_min_dim: int = TRIAL_SPLIT_MIN_DIM, common_axes_max_dim: int = COMMON_AXES_MAX_DIM,
                     var_floor: float = VAR_FLOOR, dof_grid: tuple[float, ...] = DOF_GRID,
                     family_test_sd: float = FAMILY_TEST_SD) -> list[tuple[Mixture, ...]]:
    """Per kind (penalties, heavy_tails) in kinds, the mixtures of fit_mixtures for each penalty. Every kind
    and covariance family of every context is fitted as one entry of a single batch: one E- or M-step
    serves them all (on a d = 10, n = 1024 context the six fits of the shipped config took 0.8 s one after
    another).

    penalties: per-parameter penalty of the model choice in units of log n: 1.0 is BIC (Schwarz 1978),
        about 2 / log n is AIC (Akaike 1974).
    max_components: largest K tried; also at most n // (d + 1), so every component has data.
    heavy_tails: Student-t components with fitted degrees of freedom (Gaussian ones if False).
    prior: covariance shrinkage pseudo-points (default d + 2). On random GMMs 4 (d + 2) fits better: mixture
        score error at d = 10, n = 256 / 1024 / 4096 of 17.7 / 5.9 / 2.0 % against 23.9 / 7.2 / 2.3 % at d + 2
        (and 18.1 / 6.2 % at 8 (d + 2)).
    patience: a fit stops growing K once its kind's smallest penalty's criterion has not improved for this
        many splits in a row (the criterion rarely recovers after that; it saves most of the work on data
        with few components). Each fit stops on its own, so a context's fit does not depend on the other
        contexts of its batch.
    axes: (B, d, d) or None. If given, a family with covariances diagonal in the coordinates z = x @ axes
        is fitted too (e.g. the data's own standardized axes when x is whitened; Celeux & Govaert 1995's
        diagonal family, as in mclust and scikit-learn). Diagonal components cost d parameters instead of
        d (d + 1) / 2, which pays off in high dimension when the data's axes are independent within each
        component. Ignored for d <= 2.
    frame: (B, d, d) or None. If given, a family whose components share their principal axes (module
        docstring) is fitted too, in the coordinates z = x @ frame. The family is equivariant to rotations
        of z, not to other linear maps, so the frame matters: Whitening.raw_frame gives the data's own
        coordinates up to one scale, where rotated data keep a common orientation that whitening would
        break. Ignored for d = 1 and above COMMON_AXES_MAX_DIM.
    path_points: above this many points per context, K is chosen on a subsample of this size and only the
        final EM steps use every point (module docstring); None: always every point. full_data_iters: at
        most this many of those final steps see every point.
    trial_split_min_dim: from this d on every split is tried (module docstring); common_axes_max_dim: the
        largest d of the common-axes family; var_floor: added to every covariance (whitened units); dof_grid:
        the Student-t components' choices of nu (the Gaussian is always offered); family_test_sd: a
        restricted covariance family is kept unless the full one's deviance gain exceeds the chi-square
        mean of its extra parameters by this many standard deviations.
    Each context and penalty keeps the full family unless a restricted one passes a likelihood-ratio test
    against it (see below); among those that pass, the better penalized likelihood wins.
    Computed in float64 without gradients; returns float64 tensors."""
    x64 = x.detach().to(torch.float64)
    b, n, d = x64.shape
    if path_points is not None and path_points < 1:
        raise ValueError(f"path_points must be positive or None, got {path_points}")
    kinds = [(tuple(float(p) for p in pens), bool(heavy)) for pens, heavy in kinds]
    fitted = [(pens, heavy) for pens, heavy in kinds if pens]
    if not fitted:
        return [() for _ in kinds]
    path = path_subset(x64, path_points) if path_points is not None and n > path_points else None
    families = [(None, "full")]  # (coordinates z = x @ matrix, family), each fitted in its own coordinates
    if axes is not None and d > 2:  # at d <= 2 a diagonal saves at most one parameter per component
        families.append((axes.to(x64), "diagonal"))
    if frame is not None and 1 < d <= common_axes_max_dim:
        families.append((frame.to(x64), "common"))
    penalties = tuple(dict.fromkeys(p for pens, _ in fitted for p in pens))  # every penalty, each once
    blocks = [(kind, fam) for kind in range(len(fitted)) for fam in range(len(families))]  # B rows each
    z = torch.cat([x64 if families[f][0] is None else x64 @ families[f][0] for _, f in blocks])
    flag = lambda test: torch.tensor([test(k, f) for k, f in blocks], device=x64.device).repeat_interleave(b)
    family = _Family(flag(lambda k, f: fitted[k][1]), flag(lambda k, f: families[f][1] == "diagonal"),
                     flag(lambda k, f: families[f][1] == "common"))
    own = torch.tensor([[p in fitted[k][0] for p in penalties] for k, _ in blocks],
                       device=x64.device).repeat_interleave(b, 0)  # (C, P): the penalties each fit is chosen by
    with torch.no_grad():
        shrink_to = Shrinkage(float(d + 2) if prior is None else float(prior), float(var_floor), tuple(dof_grid))
        fits, deviance, params = _fit_family(z, penalties, own, family, max_components, iters, final_iters,
                                             shrink_to, patience, path=None if path is None else path.repeat(len(blocks), 1),
                                             full_data_iters=full_data_iters, trial_split_min_dim=trial_split_min_dim)
    rows = lambda block: slice(block * b, (block + 1) * b)
    pens = [float(p) * math.log(max(n, 2)) for p in penalties]
    out = {}
    for kind, (kind_pens, _) in enumerate(fitted):
        chosen = []
        for p in kind_pens:
            j = penalties.index(p)
            full = kind * len(families)
            best, best_crit = _rows(fits[j], rows(full)), (deviance[rows(full), j] + pens[j] * params[rows(full), j])
            for f in range(1, len(families)):
                block, matrix = full + f, families[f][0]
                r_fit, r_dev, r_par = _rows(fits[j], rows(block)), deviance[rows(block), j], params[rows(block), j]
                # Deviances in the x coordinates: log L_x = log L_z + n log|det matrix|.
                r_dev = r_dev - 2.0 * n * torch.linalg.slogdet(matrix)[1]
                r_fit = convolve_mixture(r_fit, torch.linalg.inv(matrix), torch.zeros_like(matrix))
                # The family is a likelihood-ratio test, not the K penalty: the restricted family is kept
                # unless the full one's deviance gain over it exceeds the chi-square mean of its extra
                # parameters by 3 sd. BIC's log n per parameter would keep diagonal covariances on rotated
                # data with moderate correlations, whose scores they get badly wrong (the score needs the
                # precision matrix).
                extra = params[rows(full), j] - r_par
                gain = r_dev - deviance[rows(full), j]
                passes = gain < extra + family_test_sd * torch.sqrt(2.0 * extra.abs().clamp_min(1.0))  # (B,)
                crit = r_dev + pens[j] * r_par
                use = passes & (crit < best_crit)
                best = Mixture(*(_per_context(use, bb, a) for a, bb in zip(_padded(best, r_fit), _padded(r_fit, best))))
                best_crit = torch.where(use, crit, best_crit)
            chosen.append(best)
        out[(kind_pens, fitted[kind][1])] = tuple(chosen)
    return [out[(pens, heavy)] if pens else () for pens, heavy in kinds]


def _fit_family(x64: Tensor, penalties: tuple[float, ...], own: Tensor, family: _Family, max_components: int,
                iters: int, final_iters: int, shrink_to: Shrinkage, patience: int, *,
                path: Tensor | None = None, full_data_iters: int = FULL_DATA_ITERS,
                trial_split_min_dim: int = TRIAL_SPLIT_MIN_DIM) -> tuple[tuple[Mixture, ...], Tensor, Tensor]:
    """The splitting path of every context of a batch x64 (C, n, d), each of its own kind (family): per
    penalty the mixtures of the chosen K, and the deviances -2 log L and parameter counts (C, P) of those
    choices; own (C, P) marks the penalties each context is chosen by (the others are not finished, and
    their entries are not to be used). A context stops growing K when the criterion of its smallest own
    penalty has not improved for `patience` splits in a row. With path (C, m) indices, the splitting
    path and the choice of K use those points only; the final EM steps (1 to FULL_DATA_ITERS) and the
    returned deviances, which choose the family, use every point."""
    full = x64
    if path is not None:
        x64 = torch.gather(x64, 1, path[..., None].expand(-1, -1, x64.shape[-1]))
    b, n, d = x64.shape
    pens = torch.tensor([float(p) * math.log(max(n, 2)) for p in penalties], dtype=x64.dtype, device=x64.device)
    k_max = max(1, min(int(max_components), n // (d + 1)))
    heavy = bool(family.heavy.any())
    ones = torch.ones(b, n, 1, dtype=x64.dtype, device=x64.device)
    active = torch.ones(b, 1, dtype=torch.bool, device=x64.device)
    log_w, means, cov, fit_dof, _ = _m_step(x64, ones, ones, active, shrink_to, family)
    dof = torch.full_like(log_w, GAUSSIAN_DOF)
    _, _, _, _, _, loglik, _ = _em(x64, log_w, means, cov, dof, active, shrink_to, 0, family)
    cov_dof = fit_dof  # one Gaussian component is the fit itself: no EM step
    if heavy and iters:  # one Student-t component gets its EM steps
        t = family.heavy.nonzero()[:, 0]
        t_fit = _em(x64[t], log_w[t], means[t], cov[t], dof[t], active[t], shrink_to, iters, family.rows(t))
        log_w, means, cov, dof, cov_dof, loglik = (a.index_copy(0, t, a_t) for a, a_t in
                                                   zip((log_w, means, cov, dof, cov_dof, loglik), t_fit[:6]))
    # The common axes start as the principal axes of the one-component fit; each split starts from the last.
    frame = torch.linalg.eigh(cov[:, 0])[1] if bool(family.common.any()) else None
    state = (log_w, means, cov, dof)
    fills = (-math.inf, 0.0, 1.0, GAUSSIAN_DOF)
    start = [_pad(t, k_max, f) for t, f in zip(state, fills)] + [frame]
    deviance = (-2 * loglik)[:, None].repeat(1, len(penalties))  # (C, P)
    params = (d + _tails(dof) + cov_dof)[:, None].repeat(1, len(penalties))
    crits = deviance + pens * params
    bests = [[None if t is None else t.clone() for t in start] for _ in penalties]
    stale_on = torch.where(own, pens, math.inf).argmin(1)  # (C,): the smallest own penalty
    stale = torch.zeros(b, dtype=torch.long, device=x64.device)  # K steps since the stale_on choice improved
    ids, xs, fam = torch.arange(b, device=x64.device), x64, family  # the contexts still growing K
    for k in range(2, k_max + 1):
        live = stale[ids] < patience
        if not bool(live.any()):
            break  # no context's penalized likelihood improved for `patience` splits in a row
        if not bool(live.all()):  # contexts that stopped leave the batch
            ids, xs, fam = ids[live], xs[live], fam.rows(live)
            log_w, means, cov, dof = log_w[live], means[live], cov[live], dof[live]
            frame = None if frame is None else frame[live]
        if d >= trial_split_min_dim:
            log_w, means, cov, dof = _best_split(xs, log_w, means, cov, dof, shrink_to, fam, frame)
        else:
            log_w, means, cov, dof = _split(log_w, means, cov, dof)
        active = torch.ones(len(ids), k, dtype=torch.bool, device=x64.device)
        log_w, means, cov, dof, cov_dof, loglik, frame = _em(xs, log_w, means, cov, dof, active, shrink_to, iters,
                                                             fam, frame)
        padded = [_pad(t, k_max, f) for t, f in zip((log_w, means, cov, dof), fills)] + [frame]
        p = k - 1 + k * d + _tails(dof) + cov_dof  # (L,) for the L live contexts
        c = -2 * loglik[:, None] + pens * p[:, None]  # (L, P)
        better = c < crits[ids]
        stale[ids] = torch.where(better.gather(1, stale_on[ids, None])[:, 0], 0, stale[ids] + 1)
        crits[ids] = torch.where(better, c, crits[ids])
        deviance[ids] = torch.where(better, -2 * loglik[:, None], deviance[ids])
        params[ids] = torch.where(better, p[:, None], params[ids])
        for j in range(len(penalties)):
            for i, t in enumerate(padded):
                if t is not None:
                    bests[j][i][ids] = _per_context(better[:, j], t, bests[j][i][ids])
    # The final EM steps of every penalty's choice, as one batch (all are padded to k_max components).
    final = final_iters if k_max > 1 or heavy else 0
    if path is not None:  # the path saw a subsample; it converged there, so a few steps on every point
        final = max(1, min(final, full_data_iters))
    rows = [own[:, j].nonzero()[:, 0] for j in range(len(penalties))]  # the (context, penalty) pairs in use
    log_w, means, cov, dof, frame = (None if bests[0][i] is None else
                                     torch.cat([best[i][r] for best, r in zip(bests, rows)]) for i in range(5))
    which = torch.cat(rows)
    if final:
        log_w, means, cov, dof, _, loglik, _ = _em(full[which], log_w, means, cov, dof, torch.isfinite(log_w), shrink_to,
                                                   final, family.rows(which), frame)
        if path is not None:  # compare families on every point (fit_mixture_sets' likelihood-ratio test)
            deviance = deviance.clone()
            for j, part in enumerate((-2 * loglik).split([len(r) for r in rows])):
                deviance[rows[j], j] = part
    _, _, prec_chol, log_norm = _joint(x64[which, :1], log_w, means, cov, dof)
    out, start = [], 0
    for j, r in enumerate(rows):
        s = slice(start, start + len(r))
        start += len(r)
        fill = [t.clone() for t in (bests[j][0], bests[j][1], bests[j][1].new_zeros(bests[j][2].shape), bests[j][3])]
        for t, part in zip(fill, (log_norm[s], means[s], prec_chol[s], dof[s])):
            t[r] = part
        out.append(Mixture(*fill, params[:, j]))
    return tuple(out), deviance, params


def refine_mixture(mix: Mixture, x: Tensor, iters: int, *, prior: float | Tensor, heavy_tails: bool | Tensor,
                   var_floor: float = VAR_FLOOR, dof_grid: tuple[float, ...] = DOF_GRID,
                   axes: Tensor | None = None, frame: Tensor | None = None, recount: bool = False) -> Mixture:
    """A warm-started refit of fitted mixtures mix (B, K) to points x (B, n, d) that moved or changed in
    number: `iters` EM steps from mix's components, with the same K (no splitting path, no model
    choice) and the shrinkage prior of the fit (fit_mixture_sets' prior: a number, or one per context (B,)).
    heavy_tails (a bool, or one per
    context (B,)): the components' degrees of freedom are chosen again on DOF_GRID at every step (else they
    stay Gaussian).

    The covariance family of the fit is kept where it can be read off the components: with axes (B, d, d)
    (the coordinates of fit_mixture_sets' diagonal family), covariances diagonal there stay diagonal; with
    frame (B, d, d) (those of its common-axes family), covariances sharing their principal axes there keep
    shared axes (refined from those); every other mixture is refined with full covariances. Returns
    float64 mixtures with mix's parameter counts (K does not change), or with recount (and iters >= 1) the
    counts of the last M-step, whose shrinkage follows this prior (a weaker prior leaves more effective
    covariance parameters; the stacking's AICc correction needs them)."""
    if iters < 0:
        raise ValueError(f"iters must be non-negative, got {iters}")
    x64 = x.detach().to(torch.float64)
    b, n, d = x64.shape
    mix = Mixture(*(None if t is None else t.to(torch.float64) for t in mix))
    active = torch.isfinite(mix.log_norm)
    eye = torch.eye(d, dtype=x64.dtype, device=x64.device).expand(b, d, d)

    def in_coords(m: Tensor) -> tuple[Mixture, Tensor]:  # mix and its covariances (B, K, d, d) in z = x @ m
        z = convolve_mixture(mix, m, torch.zeros_like(m))
        precision = z.prec_chol @ z.prec_chol.transpose(-1, -2)
        precision = torch.where(active[..., None, None], precision, eye[:, None])  # unused slots: any valid one
        return z, torch.cholesky_inverse(torch.linalg.cholesky(precision))

    def diagonal_in(cov: Tensor) -> Tensor:  # (B,): every used covariance diagonal
        off = cov - torch.diag_embed(torch.diagonal(cov, dim1=-2, dim2=-1))
        small = off.abs().amax((-1, -2)) <= 1e-7 * torch.diagonal(cov, dim1=-2, dim2=-1).amax(-1)
        return (small | ~active).all(-1)

    none = torch.zeros(b, dtype=torch.bool, device=x64.device)
    diagonal = diagonal_in(in_coords(axes.to(x64))[1]) if axes is not None and d > 1 else none
    common, shared = none, eye
    if frame is not None and d > 1:
        cov = in_coords(frame.to(x64))[1]
        # The eigenvectors of a generic combination of covariances with common axes diagonalize each one.
        slot = torch.arange(1, cov.shape[1] + 1, dtype=cov.dtype, device=cov.device).sqrt()
        shared = torch.linalg.eigh((cov * (slot * active)[..., None, None]).sum(1))[1]
        turned = shared.transpose(-1, -2)[:, None] @ cov @ shared[:, None]
        common = diagonal_in(turned) & ~diagonal & (active.sum(-1) > 1)
    coords = eye
    if axes is not None:
        coords = torch.where(diagonal[:, None, None], axes.to(x64), coords)
    if frame is not None:
        coords = torch.where(common[:, None, None], frame.to(x64), coords)
    z, cov = in_coords(coords)
    per_context = torch.is_tensor(prior)
    family = _Family(none | heavy_tails, diagonal, common,
                     prior.to(x64).expand(b) if per_context else None)
    shrink_to = Shrinkage(1.0 if per_context else float(prior), float(var_floor), tuple(dof_grid))
    log_w, means, cov, dof, cov_dof, _, _ = _em(x64 @ coords, mixture_log_weights(z), z.means, cov, z.dof, active,
                                                shrink_to, iters, family,
                                                shared if bool(common.any()) else None, loglik=False)
    _, _, prec_chol, log_norm = _joint(x64[:, :1], log_w, means, cov, dof)
    params = mix.params
    if recount and iters:
        k = active.sum(-1).to(x64.dtype)
        params = k - 1 + k * d + _tails(torch.where(active, dof, GAUSSIAN_DOF)) + cov_dof
    back = torch.linalg.inv(coords)
    return convolve_mixture(Mixture(log_norm, means, prec_chol, dof, params), back, torch.zeros_like(back))


def fit_mixture(x: Tensor, max_components: int = 10, *, penalty: float = 1.0, **kwargs) -> Mixture:
    """One mixture per context (`fit_mixtures` with a single penalty, default BIC)."""
    return fit_mixtures(x, (penalty,), max_components, **kwargs)[0]


