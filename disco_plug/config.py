"""Model configuration: a frozen dataclass stored as JSON in the safetensors metadata."""

from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, fields

__all__ = ["ModelConfig", "BLENDS"]

BLENDS = ("stacked", "gated")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the DiScoFormer network.

    max_dim: largest data dimension served (inputs use the first d rows of the embedding).
    width, depth, heads, mlp_ratio: transformer size (report default: 128, 4, 8, 4).
    kde_factors: multiples of Scott's bandwidth (in whitened units) of the KDE features and of the
        gated KDE score skip; the network starts from the Gaussian fit and blends these in.
    context_keys: at most this many context points serve as keys in the context self-attention; every
        context point still feeds the queries' cross-attention (sub-quadratic encoder for large n).
    whiten_eps: ridge added to the covariance eigenvalues, relative to their mean.
    gate_max_n: the KDE gates depend on log n up to this n and stay fixed beyond it (no extrapolation
        past the sizes they were fitted on); the KDE features themselves keep sharpening with n.
    mixture_penalties: one gated skip per entry, a Gaussian mixture fitted to the context by EM whose
        number of components minimizes -2 log L + penalty * log n * parameters (1.0 is BIC; see
        disco_plug/fit/em.py); empty for none.
    t_mixture_penalties: the same for mixtures of Student-t components with fitted degrees of freedom
        (heavy tails where the data have them, Gaussian components where they do not). The last mixture
        is the reference that KDE skips hand over to far from the data.
    mixture_prior_scale: the mixtures' covariances are shrunk towards the pooled one with
        mixture_prior_scale * (d + 2) pseudo-points (mixture.fit_mixtures' prior).
    sharp_mixture_iters, sharp_mixture_prior_scale: the stacked density (not the gated blend) also has a
        "sharp" copy of the first Gaussian mixture (mixture_penalties[0]): the same components refined by
        sharp_mixture_iters EM steps whose covariances are shrunk with only sharp_mixture_prior_scale *
        (d + 2) pseudo-points (0 steps: no sharp mixture). The pooled prior puts a floor of about
        prior / n_k of the pooled variance under every component: on real tables with tied or spiky
        columns (a value shared by most rows, a sub-population constant in one column) it widens narrow
        components many times over, and the sharp copy keeps them narrow; the stacking weights choose.
    mixture_axes: the mixture fits also try covariances diagonal on the data's own axes (d >= 3; see
        mixture.fit_mixtures).
    mixture_common_axes: the mixture fits also try components that share their principal axes in the
        data's own frame (Flury's common principal components; 2 <= d <= 32; see mixture.fit_mixtures).
    mixture_max_components, mixture_split_iters, mixture_final_iters, mixture_patience, mixture_path_points,
        mixture_full_data_iters, mixture_trial_split_min_dim, mixture_common_axes_max_dim, mixture_var_floor,
        mixture_dof_grid, mixture_family_test_sd: the EM fit's rules (disco_plug.fit.em.fit_mixture_sets, where
        each is described and measured): the largest K, EM steps per split and after the choice of K, splits
        without improvement before K stops growing, the subsample size of the splitting path and the EM
        steps on every point after it, the d from which every split is tried, the largest d of the
        common-axes family, the covariance floor, the Student-t grid of nu, and the likelihood-ratio test of
        the restricted covariance families.
    gate_context_features: the gates also depend on one number per skip and context, its estimated
        held-out log-likelihood gain over the Gaussian fit (DiScoFormer.context_summary); needs mixtures.
    far_field_skips: far outside every component of the reference mixture, where the prediction is that
        mixture's, the other mixtures get gates too (their difference from the reference there).
    far_field_sd, kde_handover: the gated blend's handovers to the reference mixture (GatedBlend.skip_features):
        the whole prediction from a squared Mahalanobis distance per dimension of 2 + far_field_sd sqrt(2 / d)
        (a chi-square point that many sd above its mean, plus one), a KDE skip where its log-density is more
        than kde_handover nats per dimension below the mixture's.
    blend: how the estimates are combined. "stacked" (the default): a mixture of the densities of the
        Gaussian fit, a KDE at each of stacked_kde_factors and each fitted mixture, with per-context
        weights on the simplex chosen by held-out likelihood (disco_plug/blend/stacked.py): a normalized density whose
        score is its exact gradient; the transformer body and the gates are not used. "gated": the
        per-query least-squares gates of every skip plus the transformer body (the earlier estimate and
        what `disco_plug.train` trains; its log-density and score are separate heads).
    stacked_kde_factors: multiples of Scott's bandwidth of the stacked blend's KDE components. Smaller
        bandwidths win held-out likelihood but not score accuracy: with 0.25 and 0.5 also offered, the
        stacked score error on GMM d=2, n=1024 was 9.4 % instead of 4.1 % (the likelihood-optimal
        bandwidth is smaller than the score-optimal one).
    stacked_shrunk_kde_factors: the same for variance-corrected KDEs (Silverman 1986, "Density Estimation",
        section 6.4.1, the shrunk smoothed bootstrap): with h = factor x Scott in the whitened frame, kernels
        of width h / sqrt(1 + h^2) on the points shrunk towards their mean by 1 / sqrt(1 + h^2), so that
        the density has the samples' own covariance instead of (1 + h^2) times it. In high dimension,
        where Scott's h is near 1, an ordinary KDE's draws are spread 1.4x too wide.
    cluster_kde_counts, cluster_kde_min_size, cluster_kde_min_width, cluster_kde_prior_scale: the stacked
        blend's cluster KDEs (densities.cluster_kde): one per k in cluster_kde_counts with n >=
        cluster_kde_min_size * k and kernels at least cluster_kde_min_width times as wide as the global KDE's
        (blend.stacked.cluster_counts: none below d = 12, k = 4 at d = 12..17, all four from d = 26), on the
        context's k-means clusters (fit.kmeans), each kernel h^2 / (1 + h^2) times its cluster's covariance
        (shrunk towards the pooled within-cluster covariance with cluster_kde_prior_scale * (d + 2)
        pseudo-points), h Scott's rule at the cluster's size, on the cluster's points shrunk towards their
        mean. One global kernel spreads every draw across the clusters; these keep it within its cluster
        (benchmarks/digits.py). () disables them.
    stacking_min_weight: stacking weights below this are set to zero and the rest renormalized (fewer
        components to evaluate; fit.stacking.stacking_weights).
    stacking_folds: how the stacking weights see held-out data: 2 fits every component on each half of the
        context and scores it on the other half (two-fold cross-validation; the mixtures are fitted twice
        more, as one batch of two half-size contexts); 0 (the default) uses the full fits with leave-one-out
        KDEs and AICc-corrected in-sample log-densities (no extra fits). Measured on the accuracy benchmark's
        tasks, 2 against 0: score error GMM d=2 n=256 13.97 / 14.99 %, d=10 n=256 14.18 / 14.76, d=50
        n=1024 15.42 / 18.22, but d=10 n=1024 3.23 / 3.09 with tail queries 23.06 / 14.18 and Student-t
        d=2 3.38 / 2.94, at about twice the fit time: half-size fits favour the smoother components.
    The defaults are the shipped model: `ModelConfig()` equals the config in the bundled weights' metadata
    (tests/test_config.py checks it), so `python -m disco_plug.train` builds the model that ships (with
    blend="gated", the blend it trains).
    """

    max_dim: int = 100
    width: int = 128
    depth: int = 4
    heads: int = 8
    mlp_ratio: int = 4
    kde_factors: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    context_keys: int = 1024
    whiten_eps: float = 1e-6
    gate_max_n: int = 4096  # the gates' log n feature is capped here: the largest n of their fit
    mixture_penalties: tuple[float, ...] = (1.0, 0.3)
    t_mixture_penalties: tuple[float, ...] = (1.0,)
    mixture_prior_scale: float = 1.0
    sharp_mixture_iters: int = 12
    sharp_mixture_prior_scale: float = 0.01
    mixture_axes: bool = True
    mixture_common_axes: bool = True
    mixture_max_components: int = 10
    mixture_split_iters: int = 8
    mixture_final_iters: int = 12
    mixture_patience: int = 2
    mixture_path_points: int = 16384
    mixture_full_data_iters: int = 4
    mixture_trial_split_min_dim: int = 3
    mixture_common_axes_max_dim: int = 32
    mixture_var_floor: float = 1e-4
    mixture_dof_grid: tuple[float, ...] = (3.0, 5.0, 8.0, 15.0, 30.0)
    mixture_family_test_sd: float = 3.0
    gate_context_features: bool = True
    far_field_skips: bool = True
    far_field_sd: float = 3.0
    kde_handover: float = 1.0
    blend: str = "stacked"
    stacked_kde_factors: tuple[float, ...] = (1.0, 2.0)
    stacked_shrunk_kde_factors: tuple[float, ...] = (1.0,)
    cluster_kde_counts: tuple[int, ...] = (4, 16, 64, 256)
    cluster_kde_min_size: int = 4
    cluster_kde_min_width: float = 0.97
    cluster_kde_prior_scale: float = 1.0
    stacking_min_weight: float = 1e-3
    stacking_folds: int = 0

    def __post_init__(self) -> None:
        if self.stacking_folds not in (0, 2):
            raise ValueError(f"stacking_folds must be 0 or 2, got {self.stacking_folds!r}")
        if self.blend not in BLENDS:
            raise ValueError(f"unknown blend {self.blend!r}; choose one of {', '.join(BLENDS)}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be divisible by heads {self.heads}")
        if not (self.max_dim >= 1 and self.depth >= 1 and self.context_keys >= 2 and self.mixture_prior_scale > 0):
            raise ValueError(f"invalid model config {self}")
        if self.gate_context_features and not (self.mixture_penalties or self.t_mixture_penalties):
            raise ValueError("gate_context_features needs at least one mixture (the KDE-only skips have no summary): "
                             "set gate_context_features=False with mixture_penalties=() and t_mixture_penalties=()")
        if isinstance(self.sharp_mixture_iters, bool) or not isinstance(self.sharp_mixture_iters, int) \
                or self.sharp_mixture_iters < 0:
            raise ValueError(f"sharp_mixture_iters must be a non-negative integer, got {self.sharp_mixture_iters!r}")
        counts = ("mixture_max_components", "mixture_split_iters", "mixture_final_iters", "mixture_patience",
                  "mixture_path_points", "mixture_full_data_iters", "mixture_trial_split_min_dim",
                  "mixture_common_axes_max_dim")
        for name in counts:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "mixture_final_iters" else 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (self.mixture_var_floor > 0 and self.mixture_family_test_sd >= 0 and 0 <= self.stacking_min_weight < 1
                and self.far_field_sd >= 0):
            raise ValueError(f"invalid model config {self}")
        object.__setattr__(self, "mixture_dof_grid", tuple(float(v) for v in self.mixture_dof_grid))
        if not all(v > 2 for v in self.mixture_dof_grid):
            raise ValueError(f"mixture_dof_grid must hold degrees of freedom > 2, got {self.mixture_dof_grid}")
        for name in ("kde_factors", "stacked_kde_factors", "stacked_shrunk_kde_factors"):
            object.__setattr__(self, name, tuple(float(f) for f in getattr(self, name)))
        counts = tuple(self.cluster_kde_counts)
        counts_ok = all(isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 2 for k in counts) \
            and all(a < b for a, b in zip(counts, counts[1:]))
        size_ok = isinstance(self.cluster_kde_min_size, int) and not isinstance(self.cluster_kde_min_size, bool) \
            and self.cluster_kde_min_size >= 1
        if not (counts_ok and size_ok and self.cluster_kde_prior_scale > 0 and 0 < self.cluster_kde_min_width <= 1):
            raise ValueError(f"cluster_kde_counts must be increasing integers >= 2, cluster_kde_min_size a positive "
                             f"integer, cluster_kde_min_width in (0, 1] and cluster_kde_prior_scale positive, got "
                             f"{self.cluster_kde_counts!r}, {self.cluster_kde_min_size!r}, "
                             f"{self.cluster_kde_min_width!r}, {self.cluster_kde_prior_scale!r}")
        object.__setattr__(self, "cluster_kde_counts", tuple(int(k) for k in counts))
        if not self.sharp_mixture_prior_scale > 0:
            raise ValueError(f"sharp_mixture_prior_scale must be positive, got {self.sharp_mixture_prior_scale!r}")
        for name in ("mixture_penalties", "t_mixture_penalties"):
            penalties = tuple(float(p) for p in getattr(self, name))
            object.__setattr__(self, name, penalties)
            if not all(p > 0 for p in penalties):
                raise ValueError(f"{name} must be positive, got {penalties}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        return cls(**raw)
