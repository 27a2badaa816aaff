"""The shipped estimate: a stacked density of the context's own classical estimates.

What is blended (all in the whitened frame of the context, disco_plug.fit.whitening):
- the whitened Gaussian fit N(0, I) (densities.Gaussian);
- Gaussian KDEs at config.stacked_kde_factors x Scott's bandwidth, and variance-corrected ones at
  config.stacked_shrunk_kde_factors (Silverman 1986, section 6.4.1: centres shrunk by 1 / sqrt(1 + h^2),
  kernel h / sqrt(1 + h^2), so the density keeps the samples' covariance) (densities.KernelDensity);
- cluster KDEs at each of config.cluster_kde_counts k-means clusters (densities.ClusterKernelDensity):
  each point's kernel is shaped like its cluster's covariance, so a draw stays within its cluster;
- the EM mixtures of the context: Gaussian ones chosen by each of config.mixture_penalties and Student-t
  ones by config.t_mixture_penalties (fit.em; densities.MixtureDensity), and a sharp copy of the first
  Gaussian one refined with a weaker covariance prior (config.sharp_mixture_iters, sharp_mixture_prior_scale).
With which weights: one weight vector per context on the simplex, maximizing the held-out log-likelihood
of the context itself (fit.stacking.stacking_weights): leave-one-out for the KDEs, two-fold cross-validation
for the cluster KDEs (cluster_held_out), AICc-corrected in-sample log-likelihood for the Gaussian fit and the
mixtures (`held_out_log_densities`), or with
config.stacking_folds = 2 two-fold cross-validation. No gates, no per-query weights, nothing trained.
At which noise level: p * N(0, S) is the same weights on every component convolved with S
(StackedDensity.convolve), which is how the samplers' noise-conditional score is computed.
As the context evolves: update_stacked carries each mixture to the new samples and refines it by a few EM
steps, with the same weights (FittedEstimator.update).
The result is a normalized density whose score is its exact gradient (densities.stacked).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..config import ModelConfig
from ..densities import ClusterKernelDensity, Density, Gaussian, KernelDensity, Mixture, MixtureDensity, StackedDensity
from ..densities.cluster_kde import cluster_means, cluster_members
from ..densities.gaussian import standard_normal_log_density
from ..densities.kde import scott_factor
from ..densities.mixture import convolve_mixture, mixture_log_density_and_score, stack_mixtures
from ..fit.em import fit_mixture_sets, path_subset, refine_mixture
from ..fit.kmeans import cluster_covariances, kmeans, nearest_centre
from ..fit.stacking import optimism, stacking_weights
from ..fit.whitening import Whitening

__all__ = ["fit_stacked", "update_stacked", "frame_moves", "held_out_weights", "stacked_density", "kernel_densities",
           "fit_context_mixtures", "held_out_log_densities", "context_subset", "has_sharp_copy",
           "merge_duplicates", "mixture_heavy_tails", "mixture_priors", "cluster_counts", "cluster_kernel_densities"]

_SUBSET_SEED = 20251107  # fixed seed of the held-out subset: same data, same estimate
MOVE_POINTS = 1024  # update_stacked compares the candidate moves of a mixture on at most this many points


def context_subset(n: int, size: int, device: torch.device) -> Tensor | None:
    """A fixed random subset of at most `size` of n context points (None: all of them)."""
    if n <= size:
        return None
    gen = torch.Generator(device="cpu").manual_seed(_SUBSET_SEED)
    return torch.randperm(n, generator=gen)[:size].to(device)


def bandwidths(n: int, d: int, factors: Sequence[float], like: Tensor) -> Tensor:
    """factors x Scott's bandwidth for n centres in d dimensions (F,), in like's dtype."""
    return torch.tensor(tuple(factors), dtype=like.dtype, device=like.device) * scott_factor(max(n, 2), d)


def kernel_densities(x: Tensor, plain: Sequence[float], shrunk: Sequence[float] = ()) -> list[KernelDensity]:
    """KDEs of contexts x (B, n, d): one at each of `plain` x Scott's bandwidth, then a variance-corrected
    one at each of `shrunk` x Scott's (bandwidth h / sqrt(1 + h^2) on centres scaled by 1 / sqrt(1 + h^2))."""
    n, d = x.shape[1], x.shape[2]
    out = [KernelDensity(x, float(h)) for h in bandwidths(n, d, plain, x)]
    wide = bandwidths(n, d, shrunk, x)
    scale = (1.0 + wide * wide).rsqrt()
    for h, s in zip((wide * scale).tolist(), scale.tolist()):
        out.append(KernelDensity(x * s, h, shrunk=True, base=x, scale=s))
    return out


def cluster_counts(n: int, d: int, config: ModelConfig) -> list[int]:
    """The numbers of clusters of the cluster KDEs of a context of n points in d dimensions:
    config.cluster_kde_counts with at least config.cluster_kde_min_size points per cluster on average, and
    only k whose kernels stay at least config.cluster_kde_min_width times as wide as the global KDE's. Cutting
    a blob of n points into k cells shrinks the within-cell spread by about k^(-1/d) and Scott's factor grows
    only to (n / k)^(-1/(d + 4)), so a cell's kernel is k^(-4/(d (d + 4))) times the global one: near 1 in
    high dimension, where one global kernel is too wide, but 0.33 for k = 4 at d = 1. Narrower kernels win
    held-out likelihood but not score accuracy. With every k of cluster_kde_counts up to n^(d/(d+4)) cells
    (accuracy benchmark at 63e8c6f, its results file not kept): GMM d = 1 n = 1024 relative score error 6.3 %
    against 3.1 % without cluster KDEs, d = 2 n = 16384 2.3 % against 0.9 %. With min_width 0.9 (k = 16 at
    d = 10; a scratch paired run on the benchmark's 16 tasks): GMM d = 10 n = 256 16.7 % against 15.5 %, paired
    standard error 0.4; with 0.95 (k = 4 only) +0.02, but benchmarks/update.py's d = 10 n = 1024 refits 7.66 %
    against 5.16 % (update.md at 1630806) and the real tables of d = 9, 10 gained at most 0.009 nats per
    dimension: 0.97 leaves d <= 11 without them."""
    top = (1.0 / config.cluster_kde_min_width) ** (d * (d + 4) / 4.0)  # k^(-4/(d(d+4))) >= min_width
    return [k for k in config.cluster_kde_counts if n >= config.cluster_kde_min_size * k and k <= top]


def cluster_kernel_densities(x: Tensor, config: ModelConfig, counts: Sequence[int],
                             labels: Sequence[Tensor | None] | None = None) -> list[ClusterKernelDensity]:
    """The cluster KDEs of contexts x (B, n, d), one per number of clusters in counts (cluster_counts):
    k-means clusters (fit.kmeans, centres found on at most config.mixture_path_points of the points), or the
    given labels (B, n) where one is not None; kernels shaped like the clusters' shrunk covariances."""
    b, n, d = x.shape
    sub = None
    out = []
    for i, k in enumerate(counts):
        k = min(k, n)
        lab = None if labels is None else labels[i]
        if lab is None:
            if sub is None and n > config.mixture_path_points:
                sub = path_subset(x, config.mixture_path_points)
            lab = kmeans(x, k, subset=sub)
        members = cluster_members(lab, k)  # one sort of the labels for the covariances and the density
        cov = cluster_covariances(x, lab, k, prior=config.cluster_kde_prior_scale * (d + 2),
                                  floor=config.mixture_var_floor, members=members)
        out.append(ClusterKernelDensity.from_clusters(x, lab, cov, members=members))
    return out


def fit_context_mixtures(x: Tensor, config: ModelConfig, axes: Tensor | None = None,
                         frame: Tensor | None = None, *, sharp: bool = True) -> tuple[Mixture, ...]:
    """The EM mixtures of whitened contexts x (B, n, d): config.mixture_penalties, then
    config.t_mixture_penalties, then (with sharp; the gated blend has no gates for it) the sharp copy of the
    first Gaussian mixture (config.sharp_mixture_iters; each one's covariance prior: mixture_priors). axes (B, d, d), the data's
    standardized axes in the whitened frame, enable the diagonal family with config.mixture_axes; frame, the
    data's own coordinates up to scale, the common-axes family with config.mixture_common_axes
    (fit.em.fit_mixtures)."""
    c, d = config, x.shape[-1]
    opts = dict(prior=c.mixture_prior_scale * (d + 2), axes=axes if c.mixture_axes else None,
                frame=frame if c.mixture_common_axes else None, iters=c.mixture_split_iters,
                final_iters=c.mixture_final_iters, patience=c.mixture_patience, path_points=c.mixture_path_points,
                full_data_iters=c.mixture_full_data_iters, trial_split_min_dim=c.mixture_trial_split_min_dim,
                common_axes_max_dim=c.mixture_common_axes_max_dim, var_floor=c.mixture_var_floor,
                dof_grid=c.mixture_dof_grid, family_test_sd=c.mixture_family_test_sd)
    gaussian, heavy = fit_mixture_sets(x, [(c.mixture_penalties, False), (c.t_mixture_penalties, True)],
                                       c.mixture_max_components, **opts)
    if not (sharp and has_sharp_copy(c)):
        return gaussian + heavy
    # The sharp copy: the first Gaussian mixture's components, refined with a weak covariance prior. A
    # splitting path of its own gained more on tied real tables (fair, dequantized: +0.31 nats/dim against
    # +0.21) but cost +22 % fit time at d = 10, n = 1024 and +50 % at d = 100 (the refit: +7 % and +10 %).
    sharp_copy = refine_mixture(gaussian[0], x, c.sharp_mixture_iters, prior=c.sharp_mixture_prior_scale * (d + 2),
                                heavy_tails=False, var_floor=c.mixture_var_floor, dof_grid=c.mixture_dof_grid,
                                axes=opts["axes"], frame=opts["frame"], recount=True)
    return gaussian + heavy + (sharp_copy,)


def has_sharp_copy(config: ModelConfig) -> bool:
    """Whether the stacked density has the sharp copy of the first Gaussian mixture (fit_context_mixtures)."""
    return bool(config.mixture_penalties and config.sharp_mixture_iters)


def mixture_priors(config: ModelConfig, d: int, sharp: bool = True) -> list[float]:
    """The covariance prior's pseudo-points of each mixture of fit_context_mixtures, in its order."""
    c = config
    regular = [c.mixture_prior_scale * (d + 2)] * (len(c.mixture_penalties) + len(c.t_mixture_penalties))
    return regular + [c.sharp_mixture_prior_scale * (d + 2)] * int(sharp and has_sharp_copy(c))


def mixture_heavy_tails(config: ModelConfig, sharp: bool = True) -> list[bool]:
    """Whether each mixture of fit_context_mixtures has Student-t components, in its order."""
    c = config
    return ([False] * len(c.mixture_penalties) + [True] * len(c.t_mixture_penalties)
            + [False] * int(sharp and has_sharp_copy(c)))


def stacked_components(x: Tensor, mixtures: Sequence[Mixture], config: ModelConfig,
                       clustered: Sequence[ClusterKernelDensity] = ()) -> list[Density]:
    """The blended densities of contexts x, in the order of the weights: Gaussian fit, KDEs, cluster KDEs,
    mixtures."""
    b, _, d = x.shape
    return [Gaussian.standard(b, d, x),
            *kernel_densities(x, config.stacked_kde_factors, config.stacked_shrunk_kde_factors),
            *clustered, *(MixtureDensity(m) for m in mixtures)]


def held_out_log_densities(x: Tensor, kdes: Sequence[KernelDensity], mixtures: Sequence[Mixture], *,
                           subset: int, small_sample: bool = True) -> Tensor:
    """Estimated held-out log-densities (B, s, 1 + F + M) at s = min(n, subset) context points (a fixed
    random subset) of the Gaussian fit, each KDE in kdes (of the centres x) and each mixture.

    KDEs: leave-one-out (unbiased for a KDE of n - 1 points). The Gaussian fit (the whitening) and the
    mixtures: in-sample log-density minus the expected optimism per point of a fit with p free
    parameters, p / (n - p - 1) (AICc, Hurvich & Tsai 1989), or with small_sample=False Akaike's (1974)
    p / n, which the gated blend's context features were fitted with. AIC's correction is too small at
    small n / p: with it the looser-penalty mixture took 0.59 of the stacking weight at d = 10, n = 256
    (score error 16.4 % against 14.8 % with AICc)."""
    b, n, d = x.shape
    idx = context_subset(n, subset, x.device)
    idx = torch.arange(n, device=x.device) if idx is None else idx
    sub = x[:, idx]
    penalty = optimism if small_sample else (lambda p, n_: p / n_)
    gauss = standard_normal_log_density(sub) - penalty(torch.tensor(d + d * (d + 1) / 2, dtype=x.dtype), n)
    exclude = (idx[:, None] == torch.arange(n, device=x.device)[None]).expand(b, -1, -1)
    columns = [gauss[..., None], KernelDensity.evaluate_together(kdes, sub, exclude=exclude)[0]]
    for mix in mixtures:
        if mix.params is None:
            raise ValueError("held-out log-densities need the mixtures' parameter counts (fit_mixtures sets them)")
        log_mix, _ = mixture_log_density_and_score(mix, sub)
        columns.append((log_mix - penalty(mix.params.to(x.dtype), n)[:, None])[..., None])
    return torch.cat(columns, -1)


def cluster_held_out(x: Tensor, clustered: Sequence[ClusterKernelDensity], idx: Tensor,
                     config: ModelConfig) -> Tensor:
    """Two-fold cross-validated log-densities (B, s, C) of cluster KDEs at the context points x[:, idx]: the
    context is split in two halves (two_folds: by a hash of the points), each half clustered into half as
    many clusters (the same cluster sizes) and its cluster KDE evaluated at the other half's points. A
    leave-one-out value would not do: a cluster's kernel shape and (where the kernel is wide) its centre
    were fitted with the left-out point, and with many small clusters that optimism is large. The estimate
    is of a cluster KDE of n / 2 points, next to the KDEs' leave-one-out ones of n - 1: it is pessimistic,
    so the stacking gives the cluster KDEs at most their due."""
    b, _, d = x.shape
    first, folds = two_folds(x)
    sub, in_a = x[:, idx], first[:, idx]  # (B, s, d), (B, s)
    # Fold A's fit (rows :B of the batch) is evaluated at the subset's points outside A, fold B's at those in A:
    # each context's points sorted so that those come first, padded to the longest list.
    outside = torch.argsort(in_a.to(torch.int8), dim=1, stable=True)  # (B, s): points outside A first
    inside = torch.argsort((~in_a).to(torch.int8), dim=1, stable=True)
    m = int(max(int((~in_a).sum(1).max()), int(in_a.sum(1).max())))
    order = torch.cat([outside[:, :m], inside[:, :m]])  # (2B, m)
    queries = torch.gather(sub.repeat(2, 1, 1), 1, order[..., None].expand(-1, -1, d))
    counts = [max(1, c.kernels.shape[1] // 2) for c in clustered]
    columns = []
    for fit in cluster_kernel_densities(folds, config, counts):
        log_p = fit.log_density(queries)  # (2B, m)
        by_a = torch.zeros_like(in_a, dtype=log_p.dtype).scatter_(1, order[:b], log_p[:b])
        by_b = torch.zeros_like(in_a, dtype=log_p.dtype).scatter_(1, order[b:], log_p[b:])
        columns.append(torch.where(in_a, by_b, by_a))
    return torch.stack(columns, -1)


def two_folds(x: Tensor) -> tuple[Tensor, Tensor]:
    """The two halves of contexts x (B, n, d), h = n // 2 points each, chosen by a hash of the points
    (path_subset), so the split does not depend on their order: the mask (B, n) of fold A's points and the
    folds (2B, h, d), fold A of every context, then fold B (where n is odd, the point of largest hash is in
    neither)."""
    b, n, d = x.shape
    h = n // 2
    order = path_subset(x, 2 * h, ordered=True)  # fold A: the h smallest hashes; fold B: the next h
    first = torch.zeros(b, n, dtype=torch.bool, device=x.device)
    first.scatter_(1, order[:, :h], True)
    xs = torch.gather(x, 1, order[..., None].expand(-1, -1, d))
    return first, torch.cat([xs[:, :h], xs[:, h:]])


def cross_validated_log_densities(x: Tensor, config: ModelConfig, axes: Tensor | None = None,
                                  frame: Tensor | None = None) -> Tensor:
    """Two-fold cross-validated log-densities (B, 2 h, K) of the blended densities at the context points,
    h = n // 2: the context is split in two halves (by a hash of the points, so the split does not depend
    on their order), every component is fitted on each half (the Gaussian fit, the KDEs with the
    bandwidth rule at h points, the mixtures) and evaluated on the other half, both halves as one batch."""
    b, n, d = x.shape
    _, folds = two_folds(x)  # (2B, h, d): fold A of every context, then fold B
    h = folds.shape[1]
    other = torch.cat([folds[b:], folds[:b]])  # what each fold's fit is evaluated on
    twice = (lambda t: None if t is None else torch.cat([t, t]))
    mixtures = fit_context_mixtures(folds, config, twice(axes), twice(frame))
    mean = folds.mean(1, keepdim=True)
    centred = folds - mean
    cov = centred.transpose(-1, -2) @ centred / h + 1e-9 * torch.eye(d, dtype=x.dtype, device=x.device)
    gauss = torch.distributions.MultivariateNormal(mean[:, 0], covariance_matrix=cov).log_prob(other.transpose(0, 1)).T
    kdes = kernel_densities(folds, config.stacked_kde_factors, config.stacked_shrunk_kde_factors)
    columns = [gauss[..., None], KernelDensity.evaluate_together(kdes, other)[0]]
    halves = [max(1, k // 2) for k in cluster_counts(n, d, config)]  # the same cluster sizes (cluster_held_out)
    columns += [c.log_density(other)[..., None] for c in cluster_kernel_densities(folds, config, halves)]
    columns += [mixture_log_density_and_score(mix, other)[0][..., None].to(x.dtype) for mix in mixtures]
    held_out = torch.cat(columns, -1)  # (2B, h, K)
    return torch.cat([held_out[:b], held_out[b:]], 1)  # (B, 2 h, K)


def stacked_density(x: Tensor, mixtures: Sequence[Mixture], weights: Tensor, config: ModelConfig,
                    clustered: Sequence[ClusterKernelDensity] = ()) -> StackedDensity:
    """The stacked density of contexts x with these cluster KDEs, mixtures and weights (B, 1 + F + C + M)."""
    return StackedDensity(weights, stacked_components(x, mixtures, config, clustered))


@torch.no_grad()
def fit_stacked(x: Tensor, config: ModelConfig, axes: Tensor | None = None,
                frame: Tensor | None = None) -> StackedDensity:
    """The stacked estimate of whitened contexts x (B, n, d): fit the mixtures, weigh every component by
    held-out likelihood (module docstring)."""
    if not 1 <= x.shape[-1] <= config.max_dim:
        raise ValueError(f"dimension d={x.shape[-1]} is outside the model's range 1..{config.max_dim}")
    mixtures = fit_context_mixtures(x, config, axes, frame)
    clustered = cluster_kernel_densities(x, config, cluster_counts(x.shape[1], x.shape[2], config))
    if config.stacking_folds == 2:
        weights = stacking_weights(cross_validated_log_densities(x, config, axes, frame),
                                   min_weight=config.stacking_min_weight)
    else:
        weights = held_out_weights(x, mixtures, config, clustered)
    return stacked_density(x, mixtures, merge_duplicates(weights, mixtures), config, clustered)


def merge_duplicates(weights: Tensor, mixtures: Sequence[Mixture], rtol: float = 1e-10) -> Tensor:
    """The stacking weights (B, K), the mixtures' columns last, with each context's identical mixtures (the same
    components to rtol, e.g. every kind's K = 1 fit on Gaussian data) merged into the first of them: the density
    is the same, and the others get weight 0, so queries and updates skip them."""
    weights = weights.clone()
    off = weights.shape[1] - len(mixtures)
    for j, later in enumerate(mixtures):
        for i in range(j):
            first = mixtures[i]
            if first.means.shape != later.means.shape:
                continue
            same = torch.ones(weights.shape[0], dtype=torch.bool, device=weights.device)
            for a, b in zip(first[:4], later[:4]):
                close = (a == b) | ((a - b).abs() <= rtol * b.abs())  # equal infinities are the same
                same &= close.reshape(close.shape[0], -1).all(-1)
            moved = torch.where(same, weights[:, off + j], torch.zeros_like(weights[:, off + j]))
            weights[:, off + i] += moved
            weights[:, off + j] -= moved
    return weights


def held_out_weights(x: Tensor, mixtures: Sequence[Mixture], config: ModelConfig,
                     clustered: Sequence[ClusterKernelDensity] = ()) -> Tensor:
    """The stacking weights (B, 1 + F + C + M) of the blended densities of contexts x with these cluster KDEs
    and mixtures, from their held-out log-densities (leave-one-out KDEs, two-fold cross-validated cluster KDEs,
    AICc-corrected parametric fits)."""
    kdes = kernel_densities(x, config.stacked_kde_factors, config.stacked_shrunk_kde_factors)
    held_out = held_out_log_densities(x, kdes, mixtures, subset=config.context_keys)
    if clustered:  # their columns go after the KDEs', as the components do
        idx = context_subset(x.shape[1], config.context_keys, x.device)
        idx = torch.arange(x.shape[1], device=x.device) if idx is None else idx
        f = 1 + len(kdes)
        held_out = torch.cat([held_out[..., :f], cluster_held_out(x, clustered, idx, config), held_out[..., f:]], -1)
    return stacking_weights(held_out, min_weight=config.stacking_min_weight)


def frame_moves(old: Whitening, new: Whitening, y_old: Tensor, y_new: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Candidate maps y_new ~ y_old @ linear + shift between two fits' whitened frames, for carrying a
    fitted mixture from one to the other (FittedEstimator.update): the density fixed in the data's own
    space (the same x in both frames), the density fixed in the whitened frame (it moves with the samples'
    mean and covariance), and, for sets of the same size, the least-squares affine motion of the points,
    row by row (particles that keep their order; exact for an affine flow)."""
    eye = torch.eye(y_old.shape[-1], dtype=y_old.dtype, device=y_old.device)[None]
    moves = [(torch.linalg.solve(old.matrix, new.matrix), ((old.mean - new.mean)[:, None] @ new.matrix)),
             (eye, torch.zeros_like(y_new[:, :1]))]
    if y_old.shape == y_new.shape:  # both sets are centred in their frames: no shift
        linear = torch.linalg.lstsq(y_old, y_new).solution
        if bool(torch.isfinite(linear).all()) and float(torch.linalg.svdvals(linear).min()) > 1e-6:
            moves.append((linear, torch.zeros_like(y_new[:, :1])))
    return moves


def update_stacked(density: StackedDensity, old: Whitening, new: Whitening, y_old: Tensor, y_new: Tensor,
                   frames: Sequence[tuple[Tensor, Tensor]], config: ModelConfig, *, iters: int,
                   common: bool, reweigh: bool = False) -> tuple[StackedDensity, tuple[tuple[Tensor, Tensor], ...]] | None:
    """The stacked estimate of a context that evolved from y_old (whitened by `old`) to y_new (whitened by
    `new`), warm-started from `density` (FittedEstimator.update): new KDEs; cluster KDEs as carried_clusters
    makes them; each mixture keeps K and its
    covariance family (coordinates `frames`, per mixture: the diagonal family's axes and the common-axes
    frame, in the old whitened frame), is carried by whichever of frame_moves makes y_new likeliest and
    takes `iters` EM steps there (fit.em.refine_mixture); the weights are kept, or with reweigh chosen
    again by held-out likelihood on the new samples (as `fit_stacked` does, with the refined mixtures).
    Without reweigh, mixtures of weight 0 (merge_duplicates' duplicates, those the stacking dropped) are not
    evaluated by the density, so they are only carried, fixed in data space, not refined.
    Returns the new density and the families' coordinates in the new frame, or None if no move gives a
    valid start."""
    c, d = config, y_new.shape[-1]
    clustered = carried_clusters(density, y_new, c, reweigh)
    every = [comp.mixture for comp in density.components if isinstance(comp, MixtureDensity)]
    moves = frame_moves(old, new, y_old, y_new)
    # Without reweigh, a mixture of weight 0 in every context (a duplicate merged away, or one the stacking
    # dropped) is never evaluated: it is only carried to the new frame (fixed in data space), not refined.
    off = density.weights.shape[1] - len(every)
    live = [i for i in range(len(every)) if reweigh or bool((density.weights[:, off + i] > 0).any())]
    idle = {}
    fixed, fixed_shift = moves[0]  # the density fixed in data space
    for i in sorted(set(range(len(every))) - set(live)):
        carried = convolve_mixture(every[i], fixed, torch.zeros_like(fixed))
        idle[i] = (carried._replace(means=carried.means + fixed_shift),
                   tuple(torch.linalg.solve(fixed, m) for m in frames[i]))
    all_heavy, all_priors = mixture_heavy_tails(c), mixture_priors(c, d)
    mixtures, heavy, priors = [every[i] for i in live], [all_heavy[i] for i in live], [all_priors[i] for i in live]
    frames = [frames[i] for i in live]
    # The moves are compared on at most MOVE_POINTS of the new points (a hash subset, as the EM path's): the
    # mean log-likelihood of a few thousand points separates them, and it is most of an update's cost at n = 4096.
    judge = y_new if y_new.shape[1] <= MOVE_POINTS else torch.gather(
        y_new, 1, path_subset(y_new, MOVE_POINTS)[..., None].expand(-1, -1, d))
    if not every:  # a config without mixtures
        weights = held_out_weights(y_new, [], c, clustered) if reweigh else density.weights
        return stacked_density(y_new, [], weights, c, clustered), ()
    if not mixtures:  # every mixture idle
        return (stacked_density(y_new, [idle[i][0] for i in range(len(every))], density.weights, c, clustered),
                tuple(idle[i][1] for i in range(len(every))))
    # Each move carries every mixture at once (the mixtures stacked as contexts of one Mixture) and is
    # judged by one evaluation: per mixture, the mean log-likelihood of the judged points.
    k, b = len(mixtures), y_new.shape[0]
    together = stack_mixtures(mixtures)
    judged = judge.repeat(k, 1, 1)
    best: list[tuple[float, Mixture, Tensor] | None] = [None] * k
    for linear, shift in moves:
        try:
            moved = convolve_mixture(together, linear.repeat(k, 1, 1), torch.zeros_like(linear).repeat(k, 1, 1))
        except torch.linalg.LinAlgError:
            continue
        moved = moved._replace(means=moved.means + shift.repeat(k, 1, 1))
        fits = mixture_log_density_and_score(moved, judged)[0].reshape(k, -1).mean(-1).tolist()
        for i, fit in enumerate(fits):
            if math.isfinite(fit) and (best[i] is None or fit > best[i][0]):
                rows = slice(i * b, (i + 1) * b)
                own = mixtures[i].means.shape[1]  # the mixture's own K (the stack pads to the largest)
                best[i] = (fit, Mixture(*(t[rows, :own] for t in moved[:4]), mixtures[i].params), linear)
    if any(choice is None for choice in best):
        return None
    starts = [choice[1] for choice in best]
    # The family's coordinates move with the mixture: z = y_old @ m = (y_new - shift) @ linear^-1 @ m.
    carried_frames = [tuple(torch.linalg.solve(choice[2], m) for m in coords) for choice, coords in zip(best, frames)]
    # Every mixture's EM steps in one batch: the mixtures as contexts of one Mixture (padded to one K).
    stacked = stack_mixtures(starts)
    heavy_rows = torch.tensor(heavy, device=y_new.device).repeat_interleave(y_new.shape[0])
    axes = torch.cat([f[0] for f in carried_frames]) if c.mixture_axes else None
    frame = torch.cat([f[1] for f in carried_frames]) if common else None
    prior_rows = torch.tensor(priors, dtype=y_new.dtype, device=y_new.device).repeat_interleave(y_new.shape[0])
    out = refine_mixture(stacked, y_new.repeat(k, 1, 1), iters, prior=prior_rows,
                         heavy_tails=heavy_rows, var_floor=c.mixture_var_floor, dof_grid=c.mixture_dof_grid,
                         axes=axes, frame=frame)
    refined = [Mixture(*(t[i * b:(i + 1) * b, :m.means.shape[1]] for t in out[:4]), m.params)
               for i, m in enumerate(starts)]
    if reweigh:  # every mixture was live
        weights = merge_duplicates(held_out_weights(y_new, refined, c, clustered), refined)
        return stacked_density(y_new, refined, weights, c, clustered), tuple(carried_frames)
    fresh = dict(zip(live, zip(refined, carried_frames)))
    parts = [fresh[i] if i in fresh else idle[i] for i in range(len(every))]
    return stacked_density(y_new, [p[0] for p in parts], density.weights, c, clustered), tuple(p[1] for p in parts)


def carried_clusters(density: StackedDensity, y_new: Tensor, config: ModelConfig,
                     reweigh: bool) -> list[ClusterKernelDensity]:
    """The cluster KDEs of an updated context y_new (update_stacked), with kernels and centres computed again on
    the new points. Without reweigh each keeps its number of clusters (the weights' columns stay) and, where
    the old clusters still hold (a set of the same size whose points, at least 90 % of them, are still nearest
    their own cluster's new mean: particles that moved a little and kept their order), its points' clusters; a
    set that does not is clustered again. A cluster KDE of weight 0 in every context is kept as it was (it is
    never evaluated). With reweigh the numbers of clusters are those of a fresh fit (cluster_counts)."""
    old = {pos: comp for pos, comp in enumerate(density.components) if isinstance(comp, ClusterKernelDensity)}
    b, n, d = y_new.shape

    def kept(comp: ClusterKernelDensity) -> Tensor | None:  # the old labels, where they still hold
        if comp.labels.shape[1] != n:
            return None
        k = comp.kernels.shape[1]
        agree = nearest_centre(y_new, cluster_means(y_new, comp.labels, k)[0]) == comp.labels
        return comp.labels if bool((agree.to(y_new.dtype).mean(1) >= 0.9).all()) else None

    if reweigh:
        by_count = {comp.kernels.shape[1]: comp for comp in old.values()}
        counts = cluster_counts(n, d, config)
        labels = [kept(by_count[k]) if k in by_count else None for k in counts]
        return cluster_kernel_densities(y_new, config, counts, labels)
    out = []
    for pos, comp in old.items():
        if not bool((density.weights[:, pos] > 0).any()):
            out.append(comp)
            continue
        out += cluster_kernel_densities(y_new, config, [comp.kernels.shape[1]], [kept(comp)])
    return out
