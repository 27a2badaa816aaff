"""DiScoFormer (Density and Score Transformer, tech report arXiv 2511.05924): the transformer that reads a
sample set as a context, here the optional residual of the gated blend (disco_plug.blend.gated).

Set-in, points-out: context points attend to each other; query points attend to the context only, so
the per-layer keys and values of the context are computed once (`encode`) and every query costs
O(n) per layer (`query`). No positional encodings: the output is invariant to the order of the
context. Everything runs on whitened points (disco_plug/fit/whitening.py).

Differences from the report, each to learn faster on small compute:
- It is a residual: the gated blend's prediction is the start, and the heads, zero-initialized, add to
  it: corrections to the blend's gates (gate_out, logp_gate_out) and free log-density and score terms.
- Every token also carries the blend's Gaussian-KDE features at a few multiples of Scott's bandwidth
  (one softmax attention head with squared-norm features is exactly a KDE, report section 3). Context
  tokens use leave-one-out KDE features so they look like query tokens.
- Context self-attention uses at most `context_keys` context points as keys (a fixed random subset);
  every context point still feeds the queries' cross-attention. Below that size this is exactly full
  self-attention; above it the encoder is O(n * context_keys) instead of O(n^2).
The shipped weights have never taken a gradient step: their heads are zero and the residual is skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig

if TYPE_CHECKING:
    from .blend.gated import SkipFeatures

__all__ = ["DiScoFormer"]

_ATTN_CHUNK_ELEMENTS = 1 << 26  # query x key scores per attention call (bounds the math kernel)


def _attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Softmax attention chunked over queries so memory stays bounded for large n and m."""
    b, h, m, _ = q.shape
    chunk = max(1, _ATTN_CHUNK_ELEMENTS // max(1, b * h * k.shape[2]))
    if m <= chunk:
        return F.scaled_dot_product_attention(q, k, v)
    return torch.cat([F.scaled_dot_product_attention(q[:, :, i:i + chunk], k, v)
                      for i in range(0, m, chunk)], dim=2)


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
    """The transformer residual for `skips` gated skips: token embeddings, config.depth blocks, and
    zero-initialized heads (score_out, gate_out, logp_out, logp_gate_out)."""

    def __init__(self, c: ModelConfig, skips: int) -> None:
        super().__init__()
        nf = len(c.kde_factors)
        self.point_embed = nn.Parameter(torch.randn(c.max_dim, c.width) * 0.3)
        self.kde_embed = nn.Parameter(torch.randn(nf, c.max_dim, c.width) * 0.3)
        self.scalar_embed = nn.Linear(nf + 1, c.width)
        self.dim_embed = nn.Embedding(c.max_dim + 1, c.width)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.width)
        self.score_out = nn.Linear(c.width, c.max_dim)
        self.gate_out = nn.Linear(c.width, skips)
        self.logp_out = nn.Sequential(nn.Linear(c.width, c.width), nn.GELU(), nn.Linear(c.width, 1))
        self.logp_gate_out = nn.Linear(c.width, skips)
        for layer in self.heads:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def heads(self) -> tuple[nn.Linear, ...]:
        return (self.score_out, self.gate_out, self.logp_out[-1], self.logp_gate_out)

    def heads_are_zero(self) -> bool:
        """Every head exactly zero: the residual then adds exactly zero."""
        return not any(bool(p.any()) for layer in self.heads for p in layer.parameters())

    def embed(self, y: Tensor, scalars: Tensor, score_kde: Tensor, bandwidths: Tensor) -> Tensor:
        """Token embedding from whitened points, their token scalars (B, L, F + 1) and KDE scores (B, L, F, d)."""
        d = y.shape[-1]
        scaled = score_kde * bandwidths[:, None]  # (B, L, F, d): (kernel mean - y) / h
        h = y @ self.point_embed[:d] + torch.einsum("blfd,fdw->blw", scaled, self.kde_embed[:, :d])
        return h + self.scalar_embed(scalars) + self.dim_embed.weight[d]

    def encode(self, x: Tensor, scalars: Tensor, score_kde: Tensor, bandwidths: Tensor,
               key_index: Tensor | None) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """Per-layer keys and values (B, H, n, hd) of the context tokens x (B, n, d) with their KDE features;
        self-attention over the key subset key_index (None: all points)."""
        h = self.embed(x, scalars, score_kde, bandwidths)
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            h, k, v = block.context(h, key_index, update=i < len(self.blocks) - 1)
            keys.append(k.contiguous())  # not views into qkv: the queries' attention reads them
            values.append(v.contiguous())  # ~2x faster, and the unused q part is freed
        return tuple(keys), tuple(values)

    def query(self, keys: tuple[Tensor, ...], values: tuple[Tensor, ...], y: Tensor,
              f: "SkipFeatures") -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The residual at queries y (B, m, d) with the blend's skip features f: the gate corrections'
        log-density (B, m) and free log-density head (B, m), then the gate corrections' score (B, m, d)
        and free score head (B, m, d)."""
        d = y.shape[-1]
        h = self.embed(y, f.scalars, f.score_kde, f.bandwidths)
        for block, k, v in zip(self.blocks, keys, values):
            h = block.query(h, k, v)
        h = self.norm(h)
        gate_h = (self.gate_out(h)[..., None] * f.score).sum(-2)
        log_gate_h = (self.logp_gate_out(h) * f.log_density).sum(-1)
        return log_gate_h, d * self.logp_out(h)[..., 0], gate_h, self.score_out(h)[..., :d]
