"""The DiScoFormer network (Density and Score Transformer, tech report arXiv 2511.05924).

Set-in, points-out: context points attend to each other; query points attend to the context only, so
the per-layer keys and values of the context are computed once (`encode`) and every query costs
O(n) per layer (`query`). No positional encodings: the output is invariant to the order of the
context. Everything runs on whitened points (see whitening.py).

Differences from the report, each to learn faster on small compute:
- The output starts from the Gaussian fit of the whitened context (log p = log N(y; 0, I),
  score = -y) and the heads, zero-initialized, learn the residual.
- Every token also carries Gaussian-KDE features at a few multiples of Scott's bandwidth (one softmax
  attention head with squared-norm features is exactly a KDE, report section 3), and the score head
  has gated skips to those KDE scores, so the network can blend bandwidths per query from step one.
  Context tokens use leave-one-out KDE features so they look like query tokens.
- Further gated skips to mixtures fitted to the context by EM (mixture.py: Gaussian ones chosen by BIC
  and by a looser penalty, and a Student-t one); far from the data the KDE skips, and then the whole
  prediction, hand over to the Student-t mixture (see skip_features), or with config.far_field_skips
  to a gated blend of all the mixtures.
- With config.gate_context_features the gates also read, per context, each estimate's held-out
  log-likelihood gain over the Gaussian fit (context_summary): which estimate suits these data.
- While the heads that read the transformer body are exactly zero (the least-squares start) and nothing
  is being trained, the body adds exactly zero and is skipped (_body_is_inert).
- Context self-attention uses at most `context_keys` context points as keys (a fixed random subset);
  every context point still feeds the queries' cross-attention. Below that size this is exactly full
  self-attention; above it the encoder is O(n * context_keys) instead of O(n^2).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .kde import isotropic_kde, scott_factor
from .mixture import (Mixture, fit_mixture_sets, mixture_log_density_and_score, path_subset, sample_mixture,
                      stack_mixtures)
from .stacking import pool_log_density_and_score, stacking_weights

__all__ = ["DiScoFormer", "ContextCache", "gaussian_fit_log_density"]

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_fit_log_density(y: Tensor) -> Tensor:
    """log N(y; 0, I) for whitened points y (..., d): the network's starting point (its score is -y)."""
    return -0.5 * (y * y).sum(-1) - 0.5 * y.shape[-1] * _LOG_2PI
_ATTN_CHUNK_ELEMENTS = 1 << 26  # query x key scores per attention call (bounds the math kernel)
_SUBSET_SEED = 20251107  # fixed seed of the context-key subset: same data, same estimate


def _optimism(params: Tensor, n: int) -> Tensor:
    """Expected optimism per point of an in-sample log-likelihood with `params` free parameters fitted to
    n points: AICc's p / (n - p - 1) (Hurvich & Tsai 1989), +inf where n <= p + 1."""
    room = n - params - 1
    return torch.where(room > 0, params / room.clamp_min(1e-12), torch.full_like(params, math.inf))


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
    # With config.blend == "stacked": the weights (B, 1 + F + M) of the Gaussian fit, each KDE and each
    # mixture in the stacked density (stacking.py), chosen on the clean context and kept under noise.
    weights: Tensor | None = None


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


def _attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Softmax attention chunked over queries so memory stays bounded for large n and m."""
    b, h, m, _ = q.shape
    chunk = max(1, _ATTN_CHUNK_ELEMENTS // max(1, b * h * k.shape[2]))
    if m <= chunk:
        return F.scaled_dot_product_attention(q, k, v)
    return torch.cat([F.scaled_dot_product_attention(q[:, :, i:i + chunk], k, v)
                      for i in range(0, m, chunk)], dim=2)


def kernel_density(y: Tensor, centres: Tensor, bandwidths: Tensor,
                   noise: tuple[Tensor, ...] | None = None, *,
                   exclude: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Gaussian KDE log-density (B, m, F) and score (B, m, F, d) of centres (B, n, d) at y (B, m, d),
    one kernel N(0, h^2 I + N) per bandwidth h in bandwidths (F,).

    noise: the eigen-decomposition (values (B, d), vectors (B, d, d)) of N, or None for N = 0 (the
    isotropic KDE). A kernel N(0, h^2 I + N) on clean centres is the expectation, over the noise draw,
    of the kernel N(0, h^2 I) on centres + N(0, N) noise: the KDE of a noised sample set without
    drawing the noise. An optional third entry s (B, d) makes the kernel h^2 U diag(s) U^T + N: the
    clean kernel h^2 I of another frame, seen in this one (FittedEstimator.convolved). Per bandwidth the
    points are mapped by U diag(h^2 s + lambda)^(-1/2), where the kernel is the unit isotropic one."""
    b = y.shape[0]
    if noise is None:
        return isotropic_kde(y, centres, bandwidths.expand(b, -1), exclude=exclude)
    evals, evecs, *kernel = (t.to(y.dtype) for t in noise)
    kernel_scale = kernel[0] if kernel else torch.ones_like(evals)  # (B, d)
    logs, scores = [], []
    for h in bandwidths:
        scale = (h * h * kernel_scale + evals).rsqrt()  # (B, d)
        r = evecs * scale[:, None, :]  # (B, d, d): y -> y @ r whitens the kernel
        log_p, score = isotropic_kde(y @ r, centres @ r, 1.0, exclude=exclude)
        logs.append(log_p + torch.log(scale).sum(-1)[:, None])
        scores.append(score @ r.transpose(-1, -2))
    return torch.stack(logs, -1), torch.stack(scores, -2)


class Block(nn.Module):
    """Pre-norm transformer block whose attention takes its keys and values from the context."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.heads = c.heads
        self.norm1 = nn.LayerNorm(c.width)
        self.qkv = nn.Linear(c.width, 3 * c.width)
        self.proj = nn.Linear(c.width, c.width)
        self.norm2 = nn.LayerNorm(c.width)
        self.mlp = nn.Sequential(nn.Linear(c.width, c.mlp_ratio * c.width), nn.GELU(),
                                 nn.Linear(c.mlp_ratio * c.width, c.width))

    def _heads(self, t: Tensor) -> Tensor:
        b, length, w = t.shape
        return t.reshape(b, length, self.heads, w // self.heads).transpose(1, 2)  # (B, H, L, hd)

    def _finish(self, h: Tensor, attn: Tensor) -> Tensor:
        b, _, length, _ = attn.shape
        h = h + self.proj(attn.transpose(1, 2).reshape(b, length, -1))
        return h + self.mlp(self.norm2(h))

    def context(self, h: Tensor, key_index: Tensor | None, update: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """Context tokens (B, n, w): self-attention over the key subset; returns new h, keys, values."""
        q, k, v = (self._heads(t) for t in self.qkv(self.norm1(h)).chunk(3, dim=-1))
        if not update:
            return h, k, v
        ks, vs = (k, v) if key_index is None else (k[:, :, key_index], v[:, :, key_index])
        return self._finish(h, _attend(q, ks, vs)), k, v

    def query(self, h: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Query tokens (B, m, w) attend to the context's keys and values."""
        w = h.shape[-1]
        q = self._heads(F.linear(self.norm1(h), self.qkv.weight[:w], self.qkv.bias[:w]))
        return self._finish(h, _attend(q, k, v))


class DiScoFormer(nn.Module):
    """Network mapping a whitened context (B, n, d) and whitened queries (B, m, d) to whitened
    log-density (B, m) and score (B, m, d). See the module docstring for the architecture."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        c = self.config = config or ModelConfig()
        nf = len(c.kde_factors)
        ns = self.num_skips  # gated skips: one per KDE bandwidth, then one per fitted mixture
        ng = self.num_gate_features
        self.point_embed = nn.Parameter(torch.randn(c.max_dim, c.width) * 0.3)
        self.kde_embed = nn.Parameter(torch.randn(nf, c.max_dim, c.width) * 0.3)
        self.scalar_embed = nn.Linear(nf + 1, c.width)
        self.dim_embed = nn.Embedding(c.max_dim + 1, c.width)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.width)
        self.score_out = nn.Linear(c.width, c.max_dim)
        self.gate_out = nn.Linear(c.width, ns)
        self.logp_out = nn.Sequential(nn.Linear(c.width, c.width), nn.GELU(), nn.Linear(c.width, 1))
        # Per-dimension KDE blend weights (score and log-density), fitted by least squares before
        # training (train.fit_kde_gates); registered last so older checkpoints keep their indices.
        self.logp_gate_out = nn.Linear(c.width, ns)
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
        for layer in (self.score_out, self.gate_out, self.logp_out[-1], self.logp_gate_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

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
    @property
    def num_components(self) -> int:
        """Components of the stacked blend: the Gaussian fit, one KDE per stacked_kde_factors, each mixture."""
        return 1 + self.num_stacked_kdes + self.num_mixtures

    @property
    def num_stacked_kdes(self) -> int:
        return len(self.config.stacked_kde_factors) + len(self.config.stacked_shrunk_kde_factors)

    def _stacked_kdes(self, n: int, d: int, like: Tensor) -> tuple[Tensor, list[float]]:
        """The stacked blend's KDE components for n centres in d dimensions: bandwidths (F,) (Scott's
        times stacked_kde_factors, then the variance-corrected h / sqrt(1 + h^2) for each of
        stacked_shrunk_kde_factors) and the scale each puts on the centres (1, or 1 / sqrt(1 + h^2))."""
        c = self.config
        plain = self._bandwidths(n, d, like, c.stacked_kde_factors)
        shrunk = self._bandwidths(n, d, like, c.stacked_shrunk_kde_factors)
        scale = (1.0 + shrunk * shrunk).rsqrt()
        return torch.cat([plain, shrunk * scale]), [1.0] * len(plain) + scale.tolist()

    def _stacked_kde_densities(self, y: Tensor, centres: Tensor, n: int, noise: tuple[Tensor, ...] | None = None,
                               exclude: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Log-densities (B, m, F) and scores (B, m, F, d) of the stacked KDE components at y (B, m, d)."""
        bw, scales = self._stacked_kdes(n, y.shape[-1], y)
        logs, scores = [], []
        start = 0
        while start < len(scales):  # consecutive components sharing their centres in one pass
            stop = start + 1
            while stop < len(scales) and scales[stop] == scales[start]:
                stop += 1
            lp, sc = kernel_density(y, centres * scales[start], bw[start:stop], noise, exclude=exclude)
            logs.append(lp)
            scores.append(sc)
            start = stop
        return torch.cat(logs, -1), torch.cat(scores, -2)

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

    def _embed(self, y: Tensor, scalars: Tensor, score_kde: Tensor, bandwidths: Tensor) -> Tensor:
        """Token embedding from whitened points, their token_scalars (B, L, F + 1) and KDE scores (B, L, F, d)."""
        d = y.shape[-1]
        scaled = score_kde * bandwidths[:, None]  # (B, L, F, d): (kernel mean - y) / h
        h = y @ self.point_embed[:d] + torch.einsum("blfd,fdw->blw", scaled, self.kde_embed[:, :d])
        return h + self.scalar_embed(scalars) + self.dim_embed.weight[d]

    # -- context and queries ----------------------------------------------------------------------
    def encode(self, x: Tensor, *, layers: bool = True, mixtures: tuple[Mixture, ...] | None = None,
               kernel_noise: tuple[Tensor, ...] | None = None, axes: Tensor | None = None,
               frame: Tensor | None = None, summary: Tensor | None = None,
               weights: Tensor | None = None) -> ContextCache:
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
        config.gate_context_features is on (the gates then keep the clean context's values).
        weights: the stacking weights of the clean context, required with kernel_noise when
        config.blend is "stacked" (p * N has the same weights as p)."""
        b, n, d = x.shape
        if not 1 <= d <= self.config.max_dim:
            raise ValueError(f"dimension d={d} is outside the model's range 1..{self.config.max_dim}")
        c = self.config
        if mixtures is None:
            if kernel_noise is not None:
                raise ValueError("encode with kernel_noise needs the mixtures, convolved with the same noise")
            mixtures = self.fit_context_mixtures(x, axes, frame)
        need_summary = c.gate_context_features and c.blend == "gated" and summary is None
        need_weights = c.blend == "stacked" and weights is None
        if kernel_noise is not None and (need_summary or need_weights):
            raise ValueError("encode with kernel_noise needs the clean context's summary (context_summary) "
                             "and stacking weights (stacking_weights): pass those of the clean encode")
        if need_summary:
            summary = self.context_summary(x, mixtures)
        if need_weights:
            held_out = (self.cross_validated_log_densities(x, axes, frame) if c.stacking_folds == 2 else
                        self.held_out_log_densities(x, mixtures, stacked=True))
            weights = stacking_weights(held_out)
        if c.blend == "stacked" or not layers or self._body_is_inert():
            return ContextCache(x, (), (), mixtures, kernel_noise, summary, weights)
        key_index = self._key_subset(n, x.device)
        centres = x if key_index is None else x[:, key_index]
        idx = torch.arange(n, device=x.device)
        exclude = (idx[:, None] == (idx if key_index is None else key_index)[None])  # leave one out
        bw = self._bandwidths(centres.shape[1] - 1, d, x)
        log_kde, score_kde = kernel_density(x, centres, bw, kernel_noise, exclude=exclude.expand(b, -1, -1))
        h = self._embed(x, self.token_scalars(x, log_kde), score_kde, bw)
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            h, k, v = block.context(h, key_index, update=i < len(self.blocks) - 1)
            keys.append(k.contiguous())  # not views into qkv: the queries' attention reads them
            values.append(v.contiguous())  # ~2x faster, and the unused q part is freed
        return ContextCache(x, tuple(keys), tuple(values), mixtures, kernel_noise, summary, weights)

    def fit_context_mixtures(self, x: Tensor, axes: Tensor | None = None,
                             frame: Tensor | None = None) -> tuple[Mixture, ...]:
        """The EM mixtures of whitened contexts x (B, n, d): config.mixture_penalties, then
        config.t_mixture_penalties (see encode for axes and frame)."""
        c, d = self.config, x.shape[-1]
        opts = dict(prior=c.mixture_prior_scale * (d + 2), axes=axes if c.mixture_axes else None,
                    frame=frame if c.mixture_common_axes else None)
        gaussian, heavy = fit_mixture_sets(x, [(c.mixture_penalties, False), (c.t_mixture_penalties, True)], **opts)
        return gaussian + heavy

    @torch.no_grad()
    def cross_validated_log_densities(self, x: Tensor, axes: Tensor | None = None,
                                      frame: Tensor | None = None) -> Tensor:
        """Two-fold cross-validated log-densities (B, 2 h, K) of the stacked blend's components at the
        context points, h = n // 2: the context is split in two halves of h points (by a hash of the
        points, so the split does not depend on their order), every component is fitted on each half
        (the Gaussian fit, the KDEs with the bandwidth rule at h points, the mixtures) and evaluated on
        the other half. The halves are fitted as one batch."""
        b, n, d = x.shape
        h = n // 2
        first = torch.zeros(b, n, dtype=torch.bool, device=x.device)
        first.scatter_(1, path_subset(x, h), True)
        order = torch.argsort((~first).to(torch.int8), dim=1, stable=True)  # fold A's points first
        xs = torch.gather(x, 1, order[..., None].expand(-1, -1, d))
        folds = torch.cat([xs[:, :h], xs[:, h:2 * h]])  # (2B, h, d): fold A of every context, then fold B
        other = torch.cat([xs[:, h:2 * h], xs[:, :h]])  # what each fold's fit is evaluated on
        twice = (lambda t: None if t is None else torch.cat([t, t]))
        mixtures = self.fit_context_mixtures(folds, twice(axes), twice(frame))
        mean = folds.mean(1, keepdim=True)
        centred = folds - mean
        cov = centred.transpose(-1, -2) @ centred / h + 1e-9 * torch.eye(d, dtype=x.dtype, device=x.device)
        gauss = torch.distributions.MultivariateNormal(mean[:, 0], covariance_matrix=cov).log_prob(other.transpose(0, 1)).T
        columns = [gauss[..., None]]
        columns.append(self._stacked_kde_densities(other, folds, h)[0])
        columns += [mixture_log_density_and_score(mix, other)[0][..., None].to(x.dtype) for mix in mixtures]
        held_out = torch.cat(columns, -1)  # (2B, h, K)
        return torch.cat([held_out[:b], held_out[b:]], 1)  # (B, 2 h, K)

    def _key_subset(self, n: int, device: torch.device) -> Tensor | None:
        """The fixed random subset of at most context_keys context points (None: all n of them)."""
        if n <= self.config.context_keys:
            return None
        gen = torch.Generator(device="cpu").manual_seed(_SUBSET_SEED)
        return torch.randperm(n, generator=gen)[: self.config.context_keys].to(device)

    @torch.no_grad()
    def held_out_log_densities(self, x: Tensor, mixtures: tuple[Mixture, ...], *, stacked: bool = False,
                               small_sample: bool = True) -> Tensor:
        """Each of the context's own density estimates (the Gaussian fit, each KDE: the stacked blend's
        with stacked=True, else one at each of config.kde_factors x Scott's bandwidth; each mixture), its
        estimated held-out log-density at the context points (B, s, 1 + F + M), s = min(n, context_keys)
        (a fixed random subset, as for the context keys).

        KDEs: leave-one-out (unbiased for a KDE of n - 1 points). The Gaussian fit (the whitening) and the
        mixtures: in-sample log-density minus the expected optimism per point of a fit with p free
        parameters, p / (n - p - 1) (AICc, Hurvich & Tsai 1989; +inf where n <= p + 1), or with
        small_sample=False Akaike's (1974) p / n, which the gated blend's context features were fitted with.
        AIC's correction is too small at small n / p: with it the looser-penalty mixture took 0.59 of the
        stacking weight at d = 10, n = 256 (score error 16.4 % against 14.8 % with AICc)."""
        b, n, d = x.shape
        idx = self._key_subset(n, x.device)
        idx = torch.arange(n, device=x.device) if idx is None else idx
        sub = x[:, idx]
        optimism = _optimism if small_sample else (lambda p, n_: p / n_)
        gauss = gaussian_fit_log_density(sub) - optimism(torch.tensor(d + d * (d + 1) / 2, dtype=x.dtype), n)  # (B, s)
        exclude = (idx[:, None] == torch.arange(n, device=x.device)[None]).expand(b, -1, -1)
        log_kde = (self._stacked_kde_densities(sub, x, n, exclude=exclude)[0] if stacked else
                   kernel_density(sub, x, self._bandwidths(n, d, x), exclude=exclude)[0])  # (B, s, F)
        columns = [gauss[..., None], log_kde]
        for mix in mixtures:
            if mix.params is None:
                raise ValueError("held-out log-densities need the mixtures' parameter counts (fit_mixtures sets them)")
            log_mix, _ = mixture_log_density_and_score(mix, sub)
            columns.append((log_mix - optimism(mix.params.to(x.dtype), n)[:, None])[..., None])
        return torch.cat(columns, -1)

    @torch.no_grad()
    def context_summary(self, x: Tensor, mixtures: tuple[Mixture, ...]) -> Tensor:
        """Per density estimate (each KDE, then each mixture), its estimated held-out log-likelihood gain
        over the Gaussian fit on the context x (B, n, d), per dimension (B, F + M), clamped to +-20: what
        tells the gates, context by context, which estimate describes these data (e.g. a mixture with
        diagonal components on data that have them, where the KDE is hopeless in high d). The held-out
        estimates are those of held_out_log_densities with AIC's correction, as the gates were fitted."""
        mean = self.held_out_log_densities(x, mixtures, small_sample=False).mean(1)  # (B, 1 + F + M)
        return ((mean[:, 1:] - mean[:, :1]) / x.shape[-1]).clamp(-20.0, 20.0)

    def component_densities(self, cache: ContextCache, y: Tensor) -> tuple[Tensor, Tensor]:
        """The stacked blend's components at whitened queries y (B, m, d): log-densities (B, m, K) and
        scores (B, m, K, d) of the Gaussian fit, a KDE at each of config.stacked_kde_factors and each
        mixture (K = num_components), in the order of cache.weights. Components whose weight is zero in
        every context are not evaluated (log-density -inf, score 0)."""
        b, n, d = cache.points.shape
        k_all = self.num_components
        used = [True] * k_all if cache.weights is None else (cache.weights > 0).any(0).tolist()
        logs = torch.full((*y.shape[:2], k_all), -math.inf, dtype=y.dtype, device=y.device)
        scores = torch.zeros((*y.shape[:2], k_all, d), dtype=y.dtype, device=y.device)
        logs[..., 0], scores[..., 0, :] = gaussian_fit_log_density(y), -y
        f = self.num_stacked_kdes
        if any(used[1:1 + f]):
            logs[..., 1:1 + f], scores[..., 1:1 + f, :] = self._stacked_kde_densities(y, cache.points, n,
                                                                                     cache.kernel_noise)
        slots = [1 + f + k for k in range(len(cache.mixtures)) if used[1 + f + k]]
        if slots:  # every used mixture in one pass: they are stacked as extra contexts, padded to one K
            stacked = stack_mixtures([cache.mixtures[k - 1 - f] for k in slots])
            log_mix, score_mix = mixture_log_density_and_score(stacked, y.repeat(len(slots), 1, 1))
            logs[..., slots] = log_mix.unflatten(0, (len(slots), b)).permute(1, 2, 0)
            scores[..., slots, :] = score_mix.unflatten(0, (len(slots), b)).permute(1, 2, 0, 3)
        return logs, scores

    def sample_stacked(self, cache: ContextCache, num: int, generator: torch.Generator | None = None) -> Tensor:
        """num i.i.d. whitened points (B, num, d), float64, from each context's stacked density: a
        component by its weight, then a draw from it (the Gaussian fit N(0, I); a KDE: a context point,
        shrunk for a variance-corrected one, plus kernel noise, N(0, h^2 I) or the convolved kernel; a mixture: mixture.sample_mixture)."""
        if cache.weights is None:
            raise ValueError("sampling the stacked density needs a cache encoded with blend='stacked'")
        b, n, d = cache.points.shape
        dev, f64 = cache.points.device, torch.float64
        gen_dev = generator.device if generator is not None else dev
        comp = torch.multinomial(cache.weights.to(f64).cpu(), num, replacement=True, generator=generator).to(dev)
        eps = torch.randn(b, num, d, generator=generator, dtype=f64, device=gen_dev).to(dev)  # (B, num, d)
        out = torch.where((comp == 0)[..., None], eps, torch.zeros_like(eps))  # the Gaussian fit N(0, I)
        centres = cache.points.to(f64)
        bandwidths, scales = self._stacked_kdes(n, d, centres)
        for j, (h, shrink) in enumerate(zip(bandwidths.tolist(), scales)):
            pick = torch.randint(0, n, (b, num), generator=generator, device=gen_dev).to(dev)
            kernel = h * eps
            if cache.kernel_noise is not None:  # kernel h^2 U diag(s) U^T + N (kernel_density)
                evals, evecs, *kernel_scale = (t.to(f64) for t in cache.kernel_noise)
                s = kernel_scale[0] if kernel_scale else torch.ones_like(evals)
                kernel = (eps * (h * h * s + evals).sqrt()[:, None]) @ evecs.transpose(-1, -2)
            draw = shrink * torch.gather(centres, 1, pick[..., None].expand(-1, -1, d)) + kernel
            out = torch.where((comp == 1 + j)[..., None], draw, out)
        for k, mix in enumerate(cache.mixtures):
            mask = comp == 1 + len(bandwidths) + k  # (B, num)
            for i, draw in enumerate(sample_mixture(mix, mask.sum(1), generator)):
                out[i, mask[i]] = draw.to(f64)
        return out

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
        trust = torch.exp(((log_kde - ref_log[..., None]) / d + 1.0).clamp(max=0.0))  # (B, m, F) in (0, 1]
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
        far_from = 2.0 + 3.0 * math.sqrt(2.0 / d)  # delta / d of a chi-square_d point 3 sd above its mean, + 1
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
        """Whitened log-density (B, m) and score (B, m, d) at whitened queries y (B, m, d): with
        config.blend "stacked" the stacked density (stacking.py; its score is the exact gradient of its
        log-density), with "gated" the per-query gated skips plus the transformer body."""
        d = y.shape[-1]
        if self.config.blend == "stacked":
            if cache.weights is None:
                raise ValueError("this context cache has no stacking weights; encode it with this network")
            log_p, score = pool_log_density_and_score(cache.weights, *self.component_densities(cache, y))
            return log_p.to(y.dtype), score.to(y.dtype)
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
        h = self._embed(y, f.scalars, f.score_kde, f.bandwidths)
        for block, k, v in zip(self.blocks, cache.keys, cache.values):
            h = block.query(h, k, v)
        h = self.norm(h)
        gate_h = (self.gate_out(h)[..., None] * f.score).sum(-2)
        log_gate_h = (self.logp_gate_out(h) * f.log_density).sum(-1)
        return log_p + log_gate_h + d * self.logp_out(h)[..., 0], score + gate_h + self.score_out(h)[..., :d]

    def _body_is_inert(self) -> bool:
        """True when every head that reads the transformer body is exactly zero and nothing is being
        trained: the body's output is then multiplied by zero, so encode and query skip it (the result
        is identical). This is the case for the least-squares start (train.fit_kde_gates) at inference;
        while parameters take gradients (training, test-time adaptation) the body always runs."""
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            return False
        heads = (self.score_out, self.gate_out, self.logp_gate_out, self.logp_out[-1])
        return not any(bool(p.any()) for layer in heads for p in layer.parameters())

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
