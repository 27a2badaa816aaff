"""The gated blend: the Gaussian fit of the whitened context plus per-query gated skips to its KDEs and EM
mixtures, with the transformer (disco_plug.model.DiScoFormer) as an optional residual on top.

This is `load(blend="gated")`, the earlier estimate, and what `disco_plug.train` trains; the shipped default
is the stacked density (blend/stacked.py). The prediction, in the whitened frame (fit/whitening.py):
- it starts from the Gaussian fit (log p = log N(y; 0, I), score = -y);
- gated skips to Gaussian KDEs at config.kde_factors x Scott's bandwidth and to the EM mixtures of the
  context (fit/em.py: Gaussian ones chosen by BIC and by a looser penalty, and a Student-t one); each gate
  is linear in per-query features (the KDEs' log-density gains, |y|^2 / d, log n, each mixture's gain) and,
  with config.gate_context_features, in one number per skip and context (context_summary). The gates were
  fitted by least squares (train.fit_kde_gates) and their features are clamped to the range of that fit;
- far from the data the KDE skips, and then the whole prediction, hand over to the Student-t mixture (see
  skip_features), with config.far_field_skips to a gated blend of all the mixtures' tails;
- the residual reads the context's tokens by attention and adds gate corrections and free heads; while
  its heads are exactly zero (the shipped weights) and nothing is being trained, it adds exactly zero and
  is skipped (_body_is_inert).
The log-density and the score are separate heads here: not normalized, and the score is not the exact
gradient of the log-density (what the stacked blend fixes).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from ..densities.gaussian import standard_normal_log_density
from ..densities.kde import kernel_density, scott_factor
from ..densities.mixture import Mixture, mixture_log_density_and_score
from ..model import DiScoFormer
from .stacked import context_subset, fit_context_mixtures, held_out_log_densities, kernel_densities

__all__ = ["GatedBlend", "ContextCache", "SkipFeatures", "gaussian_fit_log_density"]

gaussian_fit_log_density = standard_normal_log_density  # log N(y; 0, I): the blend's starting point (score -y)


class ContextCache(NamedTuple):
    """What `encode` keeps of a context: whitened points and each layer's keys and values."""

    points: Tensor  # (B, n, d) whitened context
    keys: tuple[Tensor, ...]  # per layer (B, H, n, hd)
    values: tuple[Tensor, ...]  # per layer (B, H, n, hd)
    mixtures: tuple[Mixture, ...] = ()  # EM fits: config.mixture_penalties, then t_mixture_penalties
    # Gaussian noise N (B, d, d) added to every KDE kernel, as its eigenvalues (B, d) and eigenvectors
    # (B, d, d), optionally with the kernel's scale in that basis (B, d): the KDE skips then estimate
    # p * N(0, N) from clean points (see kernel_density).
    kernel_noise: tuple[Tensor, ...] | None = None
    # With config.gate_context_features: each estimate's (KDE, mixture) held-out log-likelihood gain over
    # the Gaussian fit on this context, per dimension (B, F + M) (DiScoFormer.context_summary).
    summary: Tensor | None = None


class SkipFeatures(NamedTuple):
    """The gated skips at a batch of queries and what their gates depend on. The prediction with all
    gates zero is (base_log_density, base_score); gate j adds g_j times feature j."""

    scalars: Tensor  # (B, m, F + 1) token scalars of the KDE features (embedding input)
    score_kde: Tensor  # (B, m, F, d) KDE scores (embedding input)
    bandwidths: Tensor  # (F,)
    base_score: Tensor  # (B, m, d)
    base_log_density: Tensor  # (B, m)
    score: Tensor  # (B, m, S, d) skip features of the score
    log_density: Tensor  # (B, m, S) skip features of the log-density
    phi: Tensor  # (B, m, G) gate features


class GatedBlend(nn.Module):
    """The gated blend: whitened context (B, n, d) and whitened queries (B, m, d) to whitened log-density
    (B, m) and score (B, m, d), the Gaussian fit plus gated skips to the KDEs and mixtures of the context,
    plus the transformer (`residual`, a DiScoFormer) on top. See the module docstring."""

    def __init__(self, config: ModelConfig | None = None, *, residual: bool = True) -> None:
        """residual=False: the gates alone, without the transformer (its tensors are not built)."""
        super().__init__()
        c = self.config = config or ModelConfig()
        ns = self.num_skips  # gated skips: one per KDE bandwidth, then one per fitted mixture
        ng = self.num_gate_features
        self.residual = DiScoFormer(c, ns) if residual else None
        # Per-dimension blend weights of the skips (score and log-density), fitted by least squares
        # (train.fit_kde_gates) ...
        self.gate_base = nn.Parameter(torch.zeros(c.max_dim + 1, ns))
        self.logp_gate_base = nn.Parameter(torch.zeros(c.max_dim + 1, ns))
        # ... and their linear dependence on each query's scalar KDE features and on log n
        # (query-adaptive bandwidth selection, also fitted by least squares).
        self.gate_slope = nn.Parameter(torch.zeros(c.max_dim + 1, ng, ns))
        self.logp_gate_slope = nn.Parameter(torch.zeros(c.max_dim + 1, ng, ns))
        # The range of the gate features seen in that fit, per d: the features are clamped to it so a
        # query unlike any of the fit (a far tail point) never extrapolates the linear gates.
        self.gate_feature_lo = nn.Parameter(torch.full((c.max_dim + 1, ng), -1e4))
        self.gate_feature_hi = nn.Parameter(torch.full((c.max_dim + 1, ng), 1e4))

    def __repr__(self) -> str:
        c = self.config
        if self.residual is None:
            body = "no residual"
        else:
            state = "inert: its heads are zero, it is skipped" if self._body_is_inert() else "active"
            body = f"residual DiScoFormer width={c.width} depth={c.depth} heads={c.heads} ({state})"
        return (f"GatedBlend({self.num_skips} gated skips: {len(c.kde_factors)} KDEs, {self.num_mixtures} mixtures"
                f"{', far-field skips' if c.far_field_skips else ''}{', context features' if c.gate_context_features else ''}; "
                f"{body})")

    @property
    def num_skips(self) -> int:
        """Gated skips: one per KDE bandwidth, one per fitted mixture, and with config.far_field_skips
        one per mixture but the reference (far from the data, its difference from the reference)."""
        far = max(self.num_mixtures - 1, 0) if self.config.far_field_skips else 0
        return len(self.config.kde_factors) + self.num_mixtures + far

    @property
    def num_gate_features(self) -> int:
        """What the gate slopes multiply: F + 1 token scalars, log n, one scalar per mixture, and with
        config.gate_context_features one per skip for the whole context (context_summary)."""
        return self.num_query_gate_features + (self.num_estimates if self.config.gate_context_features else 0)

    @property
    def num_query_gate_features(self) -> int:
        """The gate features that vary per query (they come first): F + 1 token scalars, log n, one per mixture."""
        return len(self.config.kde_factors) + 2 + self.num_mixtures

    @property
    def num_estimates(self) -> int:
        """The context's own density estimates: one KDE per bandwidth, then one per fitted mixture."""
        return len(self.config.kde_factors) + self.num_mixtures

    @property
    def num_mixtures(self) -> int:
        """Mixture fits of each context: Gaussian ones, then Student-t ones."""
        return len(self.config.mixture_penalties) + len(self.config.t_mixture_penalties)

    # -- features ---------------------------------------------------------------------------------
    def _bandwidths(self, n_centres: int, d: int, like: Tensor, factors: tuple[float, ...] | None = None) -> Tensor:
        factors_t = torch.tensor(self.config.kde_factors if factors is None else factors, dtype=like.dtype,
                                 device=like.device)
        return factors_t * scott_factor(max(n_centres, 2), d)  # (F,)

    @staticmethod
    def token_scalars(y: Tensor, log_kde: Tensor) -> Tensor:
        """Per-token scalar features (B, L, F + 1): KDE log-density minus the Gaussian fit, per
        dimension, at each bandwidth, and |y|^2 / d."""
        d = y.shape[-1]
        gauss = gaussian_fit_log_density(y)  # (B, L)
        # Both clamped: gates are linear in these, so a far query must not get an unbounded gate.
        return torch.cat([((log_kde - gauss[..., None]) / d).clamp(-20, 20),
                          ((y * y).sum(-1, keepdim=True) / d).clamp(max=20)], dim=-1)

    def gate_features(self, scalars: Tensor, n: int) -> Tensor:
        """What the gate slopes multiply: the token scalars and log(min(n, gate_max_n)) / 10, (B, L, F + 2)."""
        log_n = torch.full_like(scalars[..., :1], math.log(min(n, self.config.gate_max_n)) / 10)
        return torch.cat([scalars, log_n], dim=-1)

    # -- context and queries ----------------------------------------------------------------------
    def encode(self, x: Tensor, *, layers: bool = True, mixtures: tuple[Mixture, ...] | None = None,
               kernel_noise: tuple[Tensor, ...] | None = None, axes: Tensor | None = None,
               frame: Tensor | None = None, summary: Tensor | None = None) -> ContextCache:
        """Encode a whitened context (B, n, d) once: the mixture fits (config.mixture_penalties, then
        config.t_mixture_penalties) and per-layer keys and values of every point (skipped with
        layers=False, or while the body is inert: the gated skips only). `mixtures` reuses the fits of
        an earlier encode of the same x: they depend on x only, not on the network's parameters.

        kernel_noise (eigenvalues (B, d), eigenvectors (B, d, d) of a covariance N) encodes the context
        of x + N(0, N) noise in expectation: every KDE kernel gets N added (`kernel_density`); the
        `mixtures` must then be given, already convolved with N (mixture.convolve_mixture).

        axes (B, d, d): the data's own standardized axes in the whitened frame (Whitening.data_axes); with
        config.mixture_axes the mixture fits also try covariances diagonal on those axes (fit_mixtures).
        frame (B, d, d): the data's own coordinates up to scale (Whitening.raw_frame); with
        config.mixture_common_axes the fits also try components with common principal axes there.
        summary: the context_summary of the clean context, required with kernel_noise when
        config.gate_context_features is on (the gates then keep the clean context's values)."""
        b, n, d = x.shape
        if not 1 <= d <= self.config.max_dim:
            raise ValueError(f"dimension d={d} is outside the model's range 1..{self.config.max_dim}")
        c = self.config
        if mixtures is None:
            if kernel_noise is not None:
                raise ValueError("encode with kernel_noise needs the mixtures, convolved with the same noise")
            mixtures = fit_context_mixtures(x, c, axes, frame, sharp=False)
        need_summary = c.gate_context_features and summary is None
        if kernel_noise is not None and need_summary:
            raise ValueError("encode with kernel_noise needs the clean context's summary (context_summary): "
                             "pass that of the clean encode")
        if need_summary:
            summary = self.context_summary(x, mixtures)
        if not layers or self._body_is_inert():
            return ContextCache(x, (), (), mixtures, kernel_noise, summary)
        key_index = context_subset(n, c.context_keys, x.device)
        centres = x if key_index is None else x[:, key_index]
        idx = torch.arange(n, device=x.device)
        exclude = (idx[:, None] == (idx if key_index is None else key_index)[None])  # leave one out
        bw = self._bandwidths(centres.shape[1] - 1, d, x)
        log_kde, score_kde = kernel_density(x, centres, bw, kernel_noise, exclude=exclude.expand(b, -1, -1))
        keys, values = self.residual.encode(x, self.token_scalars(x, log_kde), score_kde, bw, key_index)
        return ContextCache(x, keys, values, mixtures, kernel_noise, summary)

    @torch.no_grad()
    def context_summary(self, x: Tensor, mixtures: tuple[Mixture, ...]) -> Tensor:
        """Per density estimate (each KDE, then each mixture), its estimated held-out log-likelihood gain
        over the Gaussian fit on the context x (B, n, d), per dimension (B, F + M), clamped to +-20: what
        tells the gates, context by context, which estimate describes these data (e.g. a mixture with
        diagonal components on data that have them, where the KDE is hopeless in high d). The held-out
        estimates are those of held_out_log_densities with AIC's correction, as the gates were fitted."""
        kdes = kernel_densities(x, self.config.kde_factors)
        mean = held_out_log_densities(x, kdes, mixtures, subset=self.config.context_keys,
                                      small_sample=False).mean(1)  # (B, 1 + F + M)
        return ((mean[:, 1:] - mean[:, :1]) / x.shape[-1]).clamp(-20.0, 20.0)

    def skip_features(self, cache: ContextCache, y: Tensor) -> SkipFeatures:
        """The gated skips at whitened queries y (B, m, d): KDE at each bandwidth, then each mixture."""
        b, n, d = cache.points.shape
        bw = self._bandwidths(n, d, y)
        log_kde, score_kde = kernel_density(y, cache.points, bw, cache.kernel_noise)
        scalars = self.token_scalars(y, log_kde)  # (B, m, F + 1): embedding input and gate features
        gauss = gaussian_fit_log_density(y)  # (B, m)
        if not cache.mixtures:
            score_f, log_f = self.kde_residual_features(y, log_kde, score_kde)  # (B, m, F, d), (B, m, F)
            return SkipFeatures(scalars, score_kde, bw, -y, gauss, score_f, log_f, self.gate_features(scalars, n))
        mix = [mixture_log_density_and_score(m, y) for m in cache.mixtures[:-1]]
        ref_log, ref_score, ref_delta = mixture_log_density_and_score(cache.mixtures[-1], y, with_distance=True)
        log_mix = torch.stack([lp for lp, _ in mix] + [ref_log], -1)  # (B, m, M)
        score_mix = torch.stack([sc for _, sc in mix] + [ref_score], -2)  # (B, m, M, d)
        # The reference mixture: the last one (heavy-tailed if configured). Where the context is too
        # sparse for a KDE at bandwidth h (its density far below the mixture's, e.g. a tail query many
        # bandwidths from every point), its score (nearest point - y) / h^2 is meaningless: that KDE skip
        # hands over to the reference, smoothly. Far outside every component of the reference (squared
        # Mahalanobis distance / d well beyond its chi-square range), the whole prediction does: the
        # gates were fitted where there are data, and the mixture's tails are all there is to go on
        # (with config.far_field_skips, a gated blend of every mixture's tails).
        trust = torch.exp(((log_kde - ref_log[..., None]) / d + self.config.kde_handover).clamp(max=0.0))  # (B, m, F) in (0, 1]
        score_kde_t = trust[..., None] * score_kde + (1 - trust[..., None]) * ref_score[..., None, :]
        log_kde_t = trust * log_kde + (1 - trust) * ref_log[..., None]
        score_f, log_f = self.kde_residual_features(y, torch.cat([log_kde_t, log_mix], -1),
                                                    torch.cat([score_kde_t, score_mix], -2))
        phi = [self.gate_features(scalars, n), (log_f[..., -log_mix.shape[-1]:] / d).clamp(-20, 20)]
        if self.config.gate_context_features:
            if cache.summary is None:
                raise ValueError("this context cache has no summary; encode it with this network")
            phi.append(cache.summary.to(y.dtype)[:, None].expand(-1, y.shape[1], -1))
        phi = torch.cat(phi, -1)
        far_from = 2.0 + self.config.far_field_sd * math.sqrt(2.0 / d)  # delta / d of a chi-square_d point far_field_sd sd above its mean, + 1
        near = torch.exp(-(ref_delta / d - far_from).clamp(min=0.0))  # (B, m): 1 inside, -> 0 far away
        base_score = near[..., None] * -y + (1 - near[..., None]) * ref_score
        base_log = near * gauss + (1 - near) * ref_log
        score_f, log_f = near[..., None, None] * score_f, near[..., None] * log_f
        if self.config.far_field_skips and len(mix):
            # Far from the data the other mixtures' tails may be the better guess (a Student-t component
            # that absorbed a neighbouring cluster has tails far too heavy for Gaussian data): their
            # difference from the reference there, as skips of their own gates.
            far = (1 - near)[..., None]  # (B, m, 1)
            score_f = torch.cat([score_f, far[..., None] * (score_mix[..., :-1, :] - ref_score[..., None, :])], -2)
            log_f = torch.cat([log_f, far * (log_mix[..., :-1] - ref_log[..., None]).clamp(-50.0 * d, 50.0 * d)], -1)
        return SkipFeatures(scalars, score_kde, bw, base_score, base_log, score_f, log_f, phi)

    def query(self, cache: ContextCache, y: Tensor) -> tuple[Tensor, Tensor]:
        """Whitened log-density (B, m) and score (B, m, d) at whitened queries y (B, m, d): the per-query
        gated skips plus the transformer body (the stacked blend, config.blend "stacked", does not use
        this network: disco_plug.blend.stacked)."""
        d = y.shape[-1]
        f = self.skip_features(cache, y)
        phi = torch.maximum(torch.minimum(f.phi, self.gate_feature_hi[d]), self.gate_feature_lo[d])
        gates = self.gate_base[d] + phi @ self.gate_slope[d]  # (B, m, S)
        log_gates = self.logp_gate_base[d] + phi @ self.logp_gate_slope[d]
        score = f.base_score + (gates[..., None] * f.score).sum(-2)
        log_p = f.base_log_density + (log_gates * f.log_density).sum(-1)
        if not cache.keys:  # an inert body (see _body_is_inert) adds exactly zero
            if not self._body_is_inert():
                raise ValueError("this context cache was encoded without the transformer layers; encode it again")
            return log_p, score
        log_gate_h, log_head, gate_h, score_head = self.residual.query(cache.keys, cache.values, y, f)
        return log_p + log_gate_h + log_head, score + gate_h + score_head

    def _body_is_inert(self) -> bool:
        """True when every head that reads the transformer body is exactly zero and nothing is being
        trained: the body's output is then multiplied by zero, so encode and query skip it (the result
        is identical). This is the case for the least-squares start (train.fit_kde_gates) at inference;
        while parameters take gradients (training, test-time adaptation) the body always runs."""
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            return False
        return self.residual is None or self.residual.heads_are_zero()

    @staticmethod
    def kde_residual_features(y: Tensor, log_kde: Tensor, score_kde: Tensor) -> tuple[Tensor, Tensor]:
        """What each gate multiplies: a skip's score minus the Gaussian fit's (B, m, F, d) and its
        log-density minus the Gaussian fit's (B, m, F), the latter clamped to +-50 nats per dimension
        so a far query stays finite."""
        d = y.shape[-1]
        log_f = (log_kde - gaussian_fit_log_density(y)[..., None]).clamp(-50.0 * d, 50.0 * d)
        return score_kde + y[:, :, None], log_f

    def forward(self, context: Tensor, queries: Tensor, axes: Tensor | None = None,
                frame: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.query(self.encode(context, axes=axes, frame=frame), queries)
