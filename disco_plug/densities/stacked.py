"""A stacked density: a mixture of densities with one weight vector per context.

p(y) = sum_k w_k p_k(y) with w on the simplex (Smyth & Wolpert 1999, "Linearly combining density
estimators via stacking"; disco_plug.fit.stacking chooses the weights). Because every p_k is a
normalized density and the weights are >= 0 and sum to one:
- p is a normalized density, and p * N(0, S) = sum_k w_k (p_k * N(0, S)) is the convolved density with
  the same weights (`convolve`);
- the score is the exact gradient of log p: sum_k r_k(y) grad log p_k(y), r_k(y) = w_k p_k(y) / p(y);
- far from the data p decays like its heaviest-tailed component with nonzero weight, and it has no mode
  away from its components.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .base import Density
from .kde import KernelDensity

__all__ = ["StackedDensity", "pool_log_density_and_score"]


def pool_log_density_and_score(weights: Tensor, log_p: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
    """log sum_k w_k p_k(y) (B, m) and its gradient (B, m, d) from each component's log-density
    (B, m, K) and score (B, m, K, d); weights (B, K) on the simplex (zeros allowed). float64 out."""
    log_w = torch.log(weights.to(torch.float64))[:, None]  # (B, 1, K), -inf where w = 0
    joint = log_w + log_p.to(torch.float64)
    log_pool = torch.logsumexp(joint, -1)  # (B, m)
    resp = torch.softmax(joint, -1)  # (B, m, K): r_k(y)
    return log_pool, (resp[..., None] * score.to(torch.float64)).sum(-2)


class StackedDensity(Density):
    """sum_k w_bk p_bk for a batch of B contexts: weights (B, K) on the simplex, components K densities
    of batch B. Components whose weight is zero in every context are never evaluated."""

    def __init__(self, weights: Tensor, components: Sequence[Density]) -> None:
        if weights.ndim != 2 or weights.shape[1] != len(components):
            raise ValueError(f"weights {tuple(weights.shape)} do not match {len(components)} components")
        self.weights = weights
        self.components = tuple(components)
        self._used = [k for k, u in enumerate((weights > 0).any(0).tolist()) if u]
        self._used_weights = weights[:, self._used]
        # The used components, consecutive ones of one class together (evaluated in one pass).
        self._groups: list[list[int]] = []
        for k in self._used:
            if self._groups and type(self.components[self._groups[-1][-1]]) is type(self.components[k]):
                self._groups[-1].append(k)
            else:
                self._groups.append([k])

    @property
    def batch(self) -> int:
        return self.weights.shape[0]

    @property
    def dim(self) -> int:
        return self.components[0].dim

    def _like(self) -> Tensor:
        return self.components[0]._like()

    def __repr__(self) -> str:
        parts = ", ".join(f"{float(w):.3g} {c!r}" if self.batch == 1 else repr(c)
                          for w, c in zip(self.weights[0], self.components))
        return f"StackedDensity({parts})"

    def _used_log_densities(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Log-densities (B, m, U) and scores (B, m, U, d) of the U used components, in order."""
        parts = [type(self.components[g[0]]).evaluate_together([self.components[k] for k in g], y)
                 for g in self._groups]
        if len(parts) == 1:
            return parts[0]
        return torch.cat([p[0] for p in parts], -1), torch.cat([p[1] for p in parts], -2)

    def component_log_densities(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Each component's log-density (B, m, K) and score (B, m, K, d) at y (B, m, d); unused components
        get -inf and 0. Consecutive components of one class are evaluated together (evaluate_together)."""
        k_all, d = len(self.components), y.shape[-1]
        logs = torch.full((*y.shape[:2], k_all), -math.inf, dtype=y.dtype, device=y.device)
        scores = torch.zeros((*y.shape[:2], k_all, d), dtype=y.dtype, device=y.device)
        logs[..., self._used], scores[..., self._used, :] = self._used_log_densities(y)
        return logs, scores

    def log_density_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """float64, whatever y's dtype (the pool is formed in float64). Only the used components enter
        (an unused one's weight is zero: it adds exactly nothing)."""
        return pool_log_density_and_score(self._used_weights, *self._used_log_densities(y))

    def convolve(self, cov: Tensor | float, matrix: Tensor | None = None) -> "StackedDensity":
        """The same weights on the convolved components; KDEs that shared their centres still do."""
        out: list[Density] = []
        shared: dict[tuple[int, int], KernelDensity] = {}
        for c in self.components:
            if isinstance(c, KernelDensity):
                key = (id(c.centres), id(c.kernel))
                if key not in shared:
                    shared[key] = c.convolve(cov, matrix)
                done = shared[key]
                out.append(KernelDensity(done.centres, c.bandwidth, done.kernel, shrunk=c.shrunk))
            else:
                out.append(c.convolve(cov, matrix))
        return StackedDensity(self.weights, out)

    def _choose(self, num: int, generator: torch.Generator | None) -> Tensor:
        """A component per draw (B, num), by the weights."""
        dev = self._like().device
        return torch.multinomial(self.weights.to(torch.float64).cpu(), num, replacement=True,
                                 generator=generator).to(dev)

    def sample(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """num i.i.d. draws (B, num, d), float64: a component by its weight, then a draw from it (one
        standard normal draw shared by the components that transform one)."""
        dev = self._like().device
        gen_dev = generator.device if generator is not None else dev
        comp = self._choose(num, generator)
        normal = torch.randn(self.batch, num, self.dim, generator=generator, dtype=torch.float64,
                             device=gen_dev).to(dev)
        return self._draw_chosen(comp, normal, torch.ones_like(comp, dtype=torch.bool), generator)

    def draw(self, normal: Tensor, pick: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self._draw_chosen(self._choose(normal.shape[1], generator), normal, pick, generator)

    def _draw_chosen(self, comp: Tensor, normal: Tensor, pick: Tensor,
                     generator: torch.Generator | None) -> Tensor:
        out = torch.zeros_like(normal)
        for k, c in enumerate(self.components):
            mask = pick & (comp == k)
            out = torch.where(mask[..., None], c.draw(normal, mask, generator).to(out.dtype), out)
        return out
