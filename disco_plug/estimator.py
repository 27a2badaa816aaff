"""The public estimator: the bundled weights, fitted to a sample set, queried anywhere.

`fit` whitens the samples (fit/whitening.py) and, on first use, fits the estimate in that frame: by default
the stacked density of the samples' own classical estimates (blend/stacked.py, a densities.StackedDensity),
or with `load(blend="gated")` the gated blend with its DiScoFormer residual (blend/gated.py; DiScoFormer,
Density and Score Transformer, tech report arXiv 2511.05924). Queries map back to data space with the
whitening's Jacobian.
"""

from __future__ import annotations

import copy
import math
import warnings
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from .checkpoint import default_weights_path, load_weights
from .columns import (AffineHull, DegenerateSamplesWarning, GridValuedColumnsWarning, describe_coded,
                      describe_grid, find_affine_hull, tied_columns)
from .columns import dequantize as dequantize_columns
from .bounded import BoundedFit
from .blend.stacked import fit_context_mixtures, fit_stacked, has_sharp_copy, mixture_heavy_tails, update_stacked
from .config import ModelConfig
from .densities import KernelDensity, StackedDensity
from .densities.mixture import convolve_mixture
from .fit.whitening import Whitening, fit_whitening
from .support import Bounds
from .blend.gated import ContextCache, GatedBlend
from .threads import load_aware_threads
from .validation import ArraySpec, FitOfSamples, as_points, check_finite, check_noise_level, check_samples

if TYPE_CHECKING:
    from .noised import NoisedScore

__all__ = ["Estimator", "FittedEstimator", "load"]

_QUERY_CHUNK = 4096  # queries per network call: bounded memory for any number of queries


def _warn_ties(grid: dict, coded: dict, names: list[str] | None, stacklevel: int) -> None:
    """One GridValuedColumnsWarning per kind of tied columns found (columns.tied_columns)."""
    if grid:
        warnings.warn(describe_grid(grid, names), GridValuedColumnsWarning, stacklevel=stacklevel + 1)
    if coded:
        warnings.warn(describe_coded(coded, names), GridValuedColumnsWarning, stacklevel=stacklevel + 1)


class Estimator:
    """The bundled estimator (the stacked density by default, or the gated blend with its DiScoFormer
    residual), ready to `fit` any sample set of dimension 1..config.max_dim.

    Example
    -------
    >>> import numpy as np, disco_plug
    >>> est = disco_plug.load()
    >>> fitted = est.fit(np.random.default_rng(0).normal(size=(256, 2)))
    >>> fitted.score(np.zeros((3, 2))).shape
    (3, 2)
    """

    def __init__(self, network: GatedBlend, *, metadata: dict[str, str] | None = None) -> None:
        self.network = network.eval()
        for p in self.network.parameters():
            p.requires_grad_(False)
        self.metadata = dict(metadata or {})
        self._by_device: dict[torch.device, GatedBlend] = {}

    @property
    def config(self) -> ModelConfig:
        return self.network.config

    def __repr__(self) -> str:
        c = self.config
        if c.blend == "stacked":
            parts = ["Gaussian fit", *(f"KDE {f:g}x Scott" for f in c.stacked_kde_factors),
                     *(f"variance-corrected KDE {f:g}x Scott" for f in c.stacked_shrunk_kde_factors),
                     *([f"cluster KDEs on {', '.join(map(str, c.cluster_kde_counts))} k-means clusters (where d and n "
                        f"allow)"] if c.cluster_kde_counts else []),
                     *(f"Gaussian mixture (penalty {p:g})" for p in c.mixture_penalties),
                     *(f"Student-t mixture (penalty {p:g})" for p in c.t_mixture_penalties),
                     *([f"sharp copy of the first Gaussian mixture (prior {c.sharp_mixture_prior_scale:g} x (d + 2))"]
                       if has_sharp_copy(c) else [])]
            return f"Estimator(stacked density of {', '.join(parts)}; d=1..{c.max_dim}; transformer unused, not loaded)"
        return f"Estimator({self.network!r}; d=1..{c.max_dim}, step={self.metadata.get('step', '?')})"

    def _network_on(self, device: torch.device) -> GatedBlend:
        if device == next(self.network.parameters()).device:
            return self.network
        if device not in self._by_device:
            self._by_device[device] = copy.deepcopy(self.network).to(device)
        return self._by_device[device]

    def fit(self, samples: Any, *, bounds: Any = None, dequantize: bool = False,
            generator: torch.Generator | None = None, names: list[str] | None = None) -> "FittedEstimator | BoundedFit":
        """Whiten and encode a sample set X of shape (n, d) (torch tensor, numpy or JAX array, or a
        pandas DataFrame, whose column names are then used in messages).

        Real tables are taken as they are (disco_plug.columns):
        - Constant columns, columns that are exact affine functions of earlier ones, and n <= d put the
          points on an affine subspace, which has no density on R^d. The fit then estimates the density
          of the free columns (those not determined by the columns before them), warns naming every
          other column (DegenerateSamplesWarning), and `sample` keeps those columns the same fixed
          functions of the free ones (constant pixels stay constant). log_density is that density,
          ignoring the other columns of a query; their score entries are 0.
        - Columns with tied values on a grid (integers, 0.1 steps) are reported with their step
          (GridValuedColumnsWarning), and so are coded columns with a few (at most 20) unevenly spaced
          tied values. dequantize=True adds uniform noise of one grid step to each grid column and
          spreads each coded value over its cell (halfway to its neighbouring values), drawn from
          `generator` (a fixed seed, 0, if None), so the fit is of a continuous density.
        bounds: the columns' supports, where known (a positive scale, a proportion): a sequence of one
          (low, high) pair per column, None for an open side or an unbounded column (scipy.optimize's
          convention), or a mapping {column name or index: (low, high)}. Bounded columns are estimated in
          unconstrained coordinates (log for one bound, logit for two, as Stan and PyMC transform
          constrained parameters; disco_plug.support) and the fit is a BoundedFit: a density that is zero
          outside the box and vanishes at its edges, with samples inside it. Samples on or outside a
          bound raise ValueError naming the column, the first such row and its value.
        names: column names for those messages (default: a DataFrame's columns, else indices).

        Raises ValueError for NaN/inf, a wrong shape, d outside 1..max_dim, fewer than two points or all
        points equal."""
        x, spec, names = self._read_samples(samples, names)
        support = Bounds.parse(bounds, x.shape[1], names)  # None when no column has a finite bound
        grid, coded = tied_columns(x)
        if (grid or coded) and dequantize:
            gen = torch.Generator().manual_seed(0) if generator is None else generator
            x = dequantize_columns(x, grid, gen, coded)
        else:
            _warn_ties(grid, coded, names, stacklevel=3)
        if support is not None:
            return BoundedFit.fit(self, x, spec, support, names)
        return self._fit_points(x, spec, names)

    def _fit_points(self, x: Tensor, spec: ArraySpec, names: list[str] | None, stacklevel: int = 3) -> "FittedEstimator":
        """The fit of validated float64 points x (n, d) on R^d, on the free columns if they lie on an
        affine subspace (warned, naming the other columns)."""
        hull = find_affine_hull(x)
        if hull is not None:
            warnings.warn(hull.describe(names), DegenerateSamplesWarning, stacklevel=stacklevel)
        return FittedEstimator(self, x, spec, hull=hull)

    def _read_samples(self, samples: Any, names: list[str] | None,
                      device: torch.device | None = None) -> tuple[Tensor, ArraySpec, list[str] | None]:
        """Validated float64 samples (n, d), their array spec and column names (a DataFrame's by default),
        as `fit` and `FittedEstimator.update` take them."""
        if names is None and hasattr(samples, "columns"):
            names = [str(c) for c in samples.columns]
            samples = samples.to_numpy()
        x, spec = as_points(samples, "samples", max_dim=self.config.max_dim, device=device)
        if names is not None and len(names) != x.shape[1]:
            raise ValueError(f"names has {len(names)} entries for {x.shape[1]} columns")
        check_samples(x, "samples")
        return x, spec, names


class FittedEstimator(FitOfSamples):
    """An estimator fitted to one sample set: log-density and score at any query points.

    Queries may be (m, d) or a single point (d,). numpy in gives numpy out, JAX in gives JAX out;
    torch in gives torch out on the input's device and dtype (rules: disco_plug.validation). The
    object pickles (the encoded context is rebuilt on load), so it can cross process boundaries
    (e.g. Pyro's num_chains > 1).
    """

    def __init__(self, estimator: Estimator, samples: Tensor, spec: ArraySpec, *,
                 noise_std: float = 0.0, clean: "FittedEstimator | None" = None,
                 hull: AffineHull | None = None) -> None:
        self.estimator = estimator
        self.samples = samples  # (n, d) float64 on the samples' device
        self._spec = spec
        self.noise_std = noise_std  # estimates p * N(0, noise_std^2 I) (see `convolved`)
        self._clean = clean  # the noise-free fit this one convolves (None when noise_std == 0)
        # Degenerate samples (disco_plug.columns): the density is that of the free columns, fitted by
        # an inner estimator on them; this one lifts its results to all d columns.
        self.hull = hull
        self._free: FittedEstimator | None = None
        if hull is not None:
            self._free = FittedEstimator(estimator, samples[:, hull.free.to(samples.device)], spec)
            self.whitening: Whitening = self._free.whitening
        else:
            self.whitening = fit_whitening(samples[None], estimator.config.whiten_eps, noise_var=noise_std**2)
        self._state: StackedDensity | ContextCache | None = None  # the fitted estimate (`density` / `cache`)
        # Per mixture, the coordinates (in this fit's whitened frame) of its diagonal and common-axes
        # families: the data's standardized axes and raw frame after a fit, those carried along by `update`.
        self._frames: tuple[tuple[Tensor, Tensor], ...] | None = None

    def __repr__(self) -> str:
        noise = f", noise_std={self.noise_std:.4g}" if self.noise_std else ""
        hull = f", density over {len(self.hull.free)} free columns" if self.hull is not None else ""
        return f"FittedEstimator(n={self.n}, d={self.dim}{hull}{noise}, device={self.device})"

    @property
    def network(self) -> GatedBlend:
        return self.estimator._network_on(self.device)

    @property
    def _dtype(self) -> torch.dtype:
        """The network's working precision: float64 for the stacked blend (closed-form densities, so that
        the score matches finite differences of the log-density), float32 for the gated network."""
        return torch.float64 if self.estimator.config.blend == "stacked" else torch.float32

    def _whitened_context(self) -> Tensor:
        return self.whitening.apply(self.samples[None]).to(self._dtype)  # (1, n, d)

    @property
    def _stacked(self) -> bool:
        return self.estimator.config.blend == "stacked"

    def _fitted_state(self) -> StackedDensity | ContextCache:
        """The fitted estimate, computed once on first use: the stacked density (blend "stacked") or the
        gated network's encoded context (blend "gated")."""
        if self._free is not None:
            return self._free._fitted_state()
        if self._state is None:
            with torch.no_grad(), load_aware_threads():
                if self._clean is not None:
                    self._state = self._convolved_state()
                else:
                    # The common-axes family lives in the raw frame (rotation-equivariant); with columns in
                    # units more than 1e4 apart that frame is ill-conditioned, and the family is not fitted.
                    w = self.whitening
                    frame = w.raw_frame() if w.frame_is_well_scaled() else None
                    if self._stacked:
                        self._state = fit_stacked(self._whitened_context(), self.estimator.config,
                                                  axes=w.data_axes(), frame=frame)
                    else:  # EM in float64 from the float64 samples; the network runs in float32
                        x64 = w.apply(self.samples[None])
                        mixtures = fit_context_mixtures(x64, self.estimator.config, w.data_axes(), frame,
                                                        sharp=False)
                        self._state = self.network.encode(x64.to(self._dtype), mixtures=mixtures)
        return self._state

    @property
    def density(self) -> StackedDensity:
        """The stacked estimate (a disco_plug.densities.StackedDensity) in this fit's whitened frame:
        its weights, its components, each a density object that can be queried, convolved and sampled."""
        if not self._stacked:
            raise ValueError("the gated blend is not a density object; its encoded context is `cache`")
        return self._fitted_state()

    @property
    def cache(self) -> ContextCache:
        """The gated network's encoded context (per-layer keys and values), computed once on first use."""
        if self._stacked:
            raise ValueError("the stacked blend does not run the network; its estimate is `density`")
        return self._fitted_state()

    def _convolved_state(self) -> StackedDensity | ContextCache:
        """The clean fit moved to this fit's whitened frame, every kernel convolved with the noise: in that
        frame the noise sigma^2 I is N = sigma^2 A^T A (A this whitening's matrix), and a clean KDE kernel
        h^2 I (h: the clean fit's bandwidth, in its whitened units) is h^2 T^T T, T the map between the two
        frames. Both share the eigenvectors of the samples' covariance C: N = sigma^2 (C + sigma^2)^-1 and
        T^T T = C (C + sigma^2)^-1, so as sigma grows the KDE kernels become the noise alone (a KDE of
        p * N(0, sigma^2 I) is exact in that limit) instead of keeping a bandwidth of the noised frame's
        own size, which over-smoothed p_sigma by a factor 1 + h^2."""
        clean = self._clean
        a0, a = clean.whitening.matrix, self.whitening.matrix  # (1, d, d): y = (x - mean) @ a
        noise_cov = self.noise_std**2 * (a.transpose(-1, -2) @ a)
        noise_cov = 0.5 * (noise_cov + noise_cov.transpose(-1, -2))
        to_frame = torch.linalg.solve(a0, a)  # clean whitened frame -> this one
        if self._stacked:
            return clean.density.convolve(noise_cov, to_frame)
        mixtures = tuple(convolve_mixture(m, to_frame, noise_cov) for m in clean.cache.mixtures)
        kernel = KernelDensity(clean.cache.points, 1.0).convolve(noise_cov, to_frame).kernel  # the clean unit kernel + N
        return self.network.encode(self._whitened_context(), mixtures=mixtures, summary=clean.cache.summary,
                                   kernel_noise=kernel)

    def convolved(self, sigma: float) -> "FittedEstimator":
        """The estimate of p * N(0, sigma^2 I) (the density of X + sigma * noise) from the same samples.

        No noise is drawn: the Gaussian-kernel skips are convolved in closed form (each KDE kernel
        h^2 I gets the noise covariance added; each fitted mixture component too, exactly for Gaussian
        components, see mixture.convolve_mixture), in the whitened frame of the noised distribution. That
        is the expectation, over the noise draw, of those skips fitted on X + sigma * E, so it carries
        none of one draw's sampling error; the mixtures are fitted once, on the clean samples. The
        gates are then evaluated on the convolved skips as usual."""
        sigma = check_noise_level(sigma)
        if self.hull is not None and sigma > 0:
            raise ValueError(self._degenerate("the noised density p * N(0, sigma^2 I)"))
        clean = self if self._clean is None else self._clean
        total = math.hypot(self.noise_std, sigma)
        if total == 0.0:
            return clean
        return FittedEstimator(self.estimator, self.samples, self._spec, noise_std=total, clean=clean)

    def update(self, samples: Any, *, iters: int = 2, reweigh: bool = False) -> "FittedEstimator":
        """The fit of a sample set that evolved from this one (particles that moved a little, draws added
        or removed: any n), warm-started from this fit, for particle methods and sequential Monte Carlo.

        The whitening and every KDE are those of the new samples (they cost no fitting). Each EM mixture
        keeps its number of components and its covariance family, is carried to the new whitened frame by
        the move under which the new samples are likeliest (the density fixed in data space, fixed in the
        whitened frame, or moved by the points' least-squares affine motion when n is unchanged and the
        rows are the same particles: blend.stacked.frame_moves), and takes `iters` EM steps on the new
        samples from there (fit.em.refine_mixture); the stacking weights (which estimate counts how much)
        are kept. With iters=0 an affine motion of the particles gives exactly the fit of the moved set (for
        a shift and a common scale, to which `fit` is equivariant). So it skips the splitting path, the
        model choice and the held-out fits that make up most of `fit`'s cost; call `fit` again when the set has changed
        in kind (new modes, much larger n). Samples are validated as in `fit`; where either set lies on
        an affine subspace, or the gated blend is in use, this is a full `fit` of the new samples.
        A noised fit (`convolved`) updates its clean fit and convolves the result again.

        reweigh=True also chooses the stacking weights again on the new samples (held-out likelihood, as
        `fit` does), at about twice the cost of an update. Where the distribution changes shape, the kept
        weights let the log-density level drift while the score stays accurate: in benchmarks/landau.py's
        d = 3 case (40 steps, n = 1024; /tmp script) the entropy error was 0.050 nats kept and 0.019
        reweighed (a fresh fit every step: 0.017) and the score error 1.89 and 1.49 %; in its d = 2 case
        0.020 and 0.019 nats, but 1.29 and 1.54 % score error."""
        if self._clean is not None:
            return self._clean.update(samples, iters=iters, reweigh=reweigh).convolved(self.noise_std)
        if not isinstance(reweigh, bool):
            raise ValueError(f"reweigh must be True or False, got {reweigh!r}")
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
            raise ValueError(f"iters must be a non-negative integer, got {iters!r}")
        est = self.estimator
        x, spec, names = est._read_samples(samples, None, device=self.device)
        if x.shape[1] != self.dim:
            raise ValueError(f"samples have {x.shape[1]} columns; this fit has {self.dim}: use fit for a new set")
        if self.hull is not None or not self._stacked or find_affine_hull(x) is not None:
            return est.fit(samples)
        _warn_ties(*tied_columns(x), names, stacklevel=3)  # as fit (update has no dequantize)
        new = FittedEstimator(est, x, spec)
        c = est.config
        y_old, y_new = self._whitened_context(), new._whitened_context()  # float64: the stacked blend's dtype
        common = c.mixture_common_axes and self.whitening.frame_is_well_scaled()  # as in `_fitted_state`
        frames = [self._mixture_frames(i) for i in range(len(mixture_heavy_tails(c)))]
        with torch.no_grad(), load_aware_threads():
            updated = update_stacked(self.density, self.whitening, new.whitening, y_old, y_new, frames, c,
                                     iters=iters, common=common, reweigh=reweigh)
        if updated is None:  # no move gives a valid start (cannot happen with the data-space one)
            return est.fit(samples)
        new._state, new._frames = updated
        return new

    def _mixture_frames(self, i: int) -> tuple[Tensor, Tensor]:
        """The coordinates of mixture i's diagonal and common-axes families in this fit's whitened frame."""
        if self._frames is None:
            return self.whitening.data_axes(), self.whitening.raw_frame()
        return self._frames[i]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_state"] = None
        return state

    # -- queries -----------------------------------------------------------------------------------
    def _queries(self, queries: Any) -> tuple[Tensor, ArraySpec]:
        y, spec = as_points(queries, "queries", max_dim=self.estimator.config.max_dim, dim=self.dim,
                            allow_single=True, device=self.device)
        return y, spec

    def _degenerate(self, what: str) -> str:
        return (f"{what} of samples on an affine subspace is not available: columns "
                f"{self.hull.dependent.tolist()} are fixed functions of the others (see the fit's "
                "DegenerateSamplesWarning); draw new points with sample() (any method) or fit the free columns "
                f"{self.hull.free.tolist()} alone")

    def _log_density_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """float64 (m,) and (m, d) for validated float64 queries y (m, d)."""
        if self._free is not None:  # the free columns' density; the others do not enter it
            free = self.hull.free.to(y.device)
            log_p, score_free = self._free._log_density_and_score(y[:, free])
            score = score_free.new_zeros(y.shape)
            score[:, free] = score_free
            return log_p, score
        w = self.whitening
        state = self._fitted_state()
        query = state.log_density_and_score if self._stacked else partial(self.network.query, state)
        logs, scores = [], []
        with torch.no_grad(), load_aware_threads():
            for start in range(0, y.shape[0], _QUERY_CHUNK):
                yw = w.apply(y[None, start:start + _QUERY_CHUNK]).to(self._dtype)
                log_p, score = query(yw)
                logs.append(log_p.to(torch.float64) + w.log_det[:, None])
                scores.append(w.score_back(score.to(torch.float64)))
        log_p, score = torch.cat(logs, 1)[0], torch.cat(scores, 1)[0]
        check_finite(log_p, "estimated log-density")
        check_finite(score, "estimated score")
        return log_p, score

    def log_density_and_score(self, queries: Any) -> tuple[Any, Any]:
        """log p (m,) and grad log p (m, d) at the queries, from one forward pass."""
        y, spec = self._queries(queries)
        log_p, score = self._log_density_and_score(y)
        return spec.restore(log_p, scalar_per_point=True), spec.restore(score, scalar_per_point=False)

    def log_density(self, queries: Any) -> Any:
        """log p at the queries: (m,) for (m, d) queries, a 0-d value for a single point (d,).
        With the stacked blend (the default) a normalized density (`normalization` checks it); with the
        gated blend a log-density head fitted by regression, not normalized by construction."""
        return self.log_density_and_score(queries)[0]

    def score(self, queries: Any) -> Any:
        """grad log p at the queries: (m, d), or (d,) for a single point."""
        return self.log_density_and_score(queries)[1]

    # -- test-time adaptation ----------------------------------------------------------------------
    def adapt(self, steps: int = 4, *, lr: float = 1e-4, max_queries: int = 512,
              generator: torch.Generator | None = None) -> "FittedEstimator":
        """Test-time adaptation (report, section on TTA): with the context fixed, take `steps` Adam
        steps on the label-free consistency loss mean ||S(X, X) - grad_x T(X, X)||^2 between the score
        head S and the gradient of the log-density head T, on a copy of the network.

        Returns a new fitted estimator; this one is unchanged. Uses at most `max_queries` context
        points as queries (a random subset drawn with `generator`)."""
        if not (isinstance(steps, int) and steps >= 0):
            raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if self.noise_std:
            raise ValueError("adapt a noise-free fit and take .convolved(sigma) of the adapted one")
        if self._stacked:
            return FittedEstimator(self.estimator, self.samples, self._spec, hull=self.hull)
        if self._free is not None:
            return FittedEstimator(self._free.adapt(steps, lr=lr, max_queries=max_queries, generator=generator).estimator,
                                   self.samples, self._spec, hull=self.hull)
        network = copy.deepcopy(self.network)
        for p in network.parameters():
            p.requires_grad_(True)
        optimizer = torch.optim.Adam(network.parameters(), lr=lr)
        context = self._whitened_context()
        idx = torch.randperm(self.n, generator=generator)[:max_queries].to(self.device)
        # The consistency loss differentiates a gradient: the math attention kernel supports that.
        with sdpa_kernel(SDPBackend.MATH):
            self._adapt_steps(network, optimizer, context, idx, steps, self.cache)
        adapted = Estimator(network, metadata={**self.estimator.metadata, "adapted_steps": str(steps)})
        return FittedEstimator(adapted, self.samples, self._spec)

    @staticmethod
    def _adapt_steps(network: GatedBlend, optimizer: torch.optim.Optimizer, context: Tensor, idx: Tensor,
                     steps: int, fitted: ContextCache) -> None:
        # The context's mixture fits (and their summary) do not change with the network: the fit's own are reused.
        for _ in range(steps):
            cache = network.encode(context, mixtures=fitted.mixtures, summary=fitted.summary)
            y = context[:, idx].clone().requires_grad_(True)
            log_p, score = network.query(cache, y)
            (grad,) = torch.autograd.grad(log_p.sum(), y, create_graph=True)
            loss = ((score - grad) ** 2).sum(-1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    # -- noise-conditional score and sampling (disco_plug.noised, disco_plug.samplers) -------------------
    @property
    def noised(self) -> "NoisedScore":
        """The noise-conditional view of this fit (one convolved context per noise level, cached)."""
        if getattr(self, "_noised", None) is None:
            from .noised import NoisedScore
            self._noised = NoisedScore(self)
        return self._noised

    def score_fn(self, x: Tensor, sigma: float = 0.0) -> Tensor:
        """Score of p * N(0, sigma^2 I) at x (..., d), the samplers' `score_fn(x, sigma)` convention:
        the estimate of `convolved(sigma)`."""
        if self.hull is not None:
            raise ValueError(self._degenerate("score_fn (the score of p * N(0, sigma^2 I))"))
        return self.noised.score_fn(x, sigma)

    def sample(self, num: int, *, method: str = "exact", steps: int | None = None,
               generator: torch.Generator | None = None, callback: Any = None, progress: bool = False,
               **options: Any) -> Any:
        """Draw `num` new points from the estimated distribution with a score-based sampler.

        method: "exact" (the default: i.i.d. draws from the estimated density itself, a stacked mixture of
        closed-form densities, see disco_plug.blend.stacked; no steps, no score), or a score-based sampler run
        on the estimated score: "pc" (reverse VE SDE + Langevin corrector, Song et al. 2021), "ve_sde",
        "vp_sde", "ode" (probability flow, Heun), "annealed_langevin" (Song & Ermon 2019), "langevin"
        (ULA) or "mala" (both start at random samples). steps: noise levels (SDE/ODE) or Langevin
        steps; None picks a default per method. Extra options go to the sampler function in
        `disco_plug.samplers`. Returns (num, d) in the samples' array type (numpy, torch or JAX).

        Example
        -------
        >>> import numpy as np, torch, disco_plug
        >>> fitted = disco_plug.load().fit(np.random.default_rng(0).normal(size=(256, 2)))
        >>> fitted.sample(8, method="ode", steps=10, generator=torch.Generator().manual_seed(0)).shape
        (8, 2)
        """
        if method == "exact":
            if steps is not None or options or callback is not None:
                raise ValueError("method 'exact' draws i.i.d. points and takes no steps, callback or sampler options")
            x = self._sample_exact(num, generator)
        elif self._free is not None:  # sample the free columns, then lift to the affine subspace
            x = self.hull.lift(self._free.noised.sample(num, method=method, steps=steps, generator=generator,
                                                        callback=callback, progress=progress, **options))
        else:
            x = self.noised.sample(num, method=method, steps=steps, generator=generator, callback=callback,
                                   progress=progress, **options)
        return self._spec.restore(x, scalar_per_point=False)

    def _sample_exact(self, num: int, generator: torch.Generator | None) -> Tensor:
        """num i.i.d. points (num, d) float64 from the stacked density (StackedDensity.sample)."""
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ValueError(f"num must be a positive integer, got {num!r}")
        if not self._stacked:
            raise ValueError(f"method 'exact' needs the stacked blend; this estimator's blend is "
                             f"{self.estimator.config.blend!r}: use a score-based method")
        if self._free is not None:
            return self.hull.lift(self._free._sample_exact(num, generator))
        with torch.no_grad(), load_aware_threads():
            y = self.density.sample(num, generator)  # (1, num, d) whitened
        w = self.whitening
        return (torch.linalg.solve(w.matrix, y, left=False) + w.mean[:, None])[0]

    def normalization(self, num: int = 16384, *, generator: torch.Generator | None = None,
                      defensive: float | None = None) -> tuple[float, float]:
        """Importance-sampling estimate of the integral of the estimated density, with its standard error.

        Proposal: a multivariate Student-t (3 degrees of freedom) at the samples' mean with twice their
        covariance, heavy-tailed so that tails of the estimate heavier than the proposal's would show as
        a large standard error, mixed with weight `defensive` with the estimate's own exact sampler
        (defensive importance sampling, Hesterberg 1995: the weights are then at most 1 / defensive).
        defensive=None uses 0 up to d = 3 and 0.5 above, where a broad proposal alone seldom lands where
        the estimate has its mass (benchmarks/normalization.py with the proposal alone up to d = 10: standard
        errors 0.03-0.18 at d = 10, 0.005-0.01 at d <= 2). The result is close to 1 for a normalized density.
        For samples on an affine subspace (`hull`) the integral is over the free columns."""
        if self._free is not None:
            return self._free.normalization(num, generator=generator, defensive=defensive)
        if isinstance(num, bool) or not isinstance(num, int) or num < 2:
            raise ValueError(f"num must be an integer >= 2, got {num!r}")
        d = self.dim
        alpha = (0.0 if d <= 3 else 0.5) if defensive is None else float(defensive)
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"defensive must be in [0, 1), got {defensive!r}")
        x = self.samples
        mean = x.mean(0)
        chol = torch.linalg.cholesky(2.0 * torch.atleast_2d(torch.cov(x.T)) + 1e-12 * torch.eye(d, dtype=x.dtype))
        nu = 3.0
        own = int(round(alpha * num))
        gen_dev = generator.device if generator is not None else x.device
        z = torch.randn(num - own, d, generator=generator, dtype=x.dtype, device=gen_dev).to(x.device)
        g = 2 * torch._standard_gamma(torch.full((num - own,), nu / 2, dtype=x.dtype), generator=generator) / nu
        draws = mean + (z / g.to(x.device).sqrt()[:, None]) @ chol.T
        if own:
            draws = torch.cat([draws, self._sample_exact(own, generator)])
        log_p, _ = self._log_density_and_score(draws)
        # log density of the multivariate t proposal
        u = torch.linalg.solve_triangular(chol, (draws - mean).T, upper=False).T
        log_t = (math.lgamma((nu + d) / 2) - math.lgamma(nu / 2) - 0.5 * d * math.log(nu * math.pi)
                 - torch.log(torch.diagonal(chol)).sum() - 0.5 * (nu + d) * torch.log1p((u * u).sum(-1) / nu))
        log_q = log_t if not own else torch.logaddexp(math.log1p(-alpha) + log_t, math.log(alpha) + log_p)
        ratio = torch.exp(log_p - log_q)
        return float(ratio.mean()), float(ratio.std() / math.sqrt(num))


def load(path: str | Path | None = None, *, sha256: str | None = None, blend: str | None = None,
         residual: bool | None = None) -> Estimator:
    """Load pretrained DiScoFormer weights (the bundled default if `path` is None), offline.

    Only safetensors files are read; the shipped file's sha256 is checked against the manifest.
    blend: "stacked" or "gated" overrides the file's config (ModelConfig.blend), e.g. for an ablation:
    `load(blend="gated")` is the per-query gated blend the same weights carry.
    residual: whether to build the transformer residual of the gated blend. None (the default) builds it
    for the gated blend only: the stacked blend never runs it, so its tensors (96 % of the file) are not
    read. `load(blend="gated", residual=False)` is the gates alone (with the shipped weights, whose residual
    heads are zero, the same estimate).
    """
    if residual is not None and not isinstance(residual, bool):
        raise ValueError(f"residual must be True, False or None, got {residual!r}")
    overrides = None if blend is None else {"blend": blend}
    network, _, meta = load_weights(default_weights_path() if path is None else path, sha256=sha256,
                                    overrides=overrides, residual=residual)  # None: built for the gated blend only
    return Estimator(network, metadata=meta)
