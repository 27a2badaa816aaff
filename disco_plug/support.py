"""Bounded columns: a density on a box (lower_j, upper_j), estimated in unconstrained coordinates.

A column known to be positive, or a proportion in (0, 1), has no density outside its bounds, and an
estimate on R puts mass there and piles it up against the edge (a kernel or a Gaussian component cannot
stop at a boundary). The remedy that Stan, PyMC, NumPyro and Pyro use for constrained parameters
applies: map each bounded column to R by a smooth bijection, estimate the density of the mapped points
z there, and carry it back with the change-of-variables formula

    log p_x(x) = log p_z(z) - sum_j log |f_j'(z_j)|,   z = f^-1(x),

whose score follows by the chain rule (`Bounds.log_density_and_score`). The maps (`Transform`) are
Stan's (Stan Reference Manual, "Constraint transforms"): x = a + exp(z) for a lower bound a, x = b - exp(z)
for an upper bound b, x = a + (b - a) sigmoid(z) for both. The estimate is then exactly zero outside the
box and decays to zero at every finite bound (as fast as p_z decays in z, which is faster than any power of
the distance to the bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["Bounds", "Transform"]


@dataclass(frozen=True)
class Transform:
    """A bijection from R onto (lower, upper), elementwise: identity, shifted exp, scaled sigmoid."""

    lower: float = -math.inf
    upper: float = math.inf

    def __post_init__(self) -> None:
        if not self.lower < self.upper:
            raise ValueError(f"a transform needs lower < upper, got ({self.lower}, {self.upper})")

    @property
    def name(self) -> str:
        lo, hi = math.isfinite(self.lower), math.isfinite(self.upper)
        if not lo and not hi:
            return "identity"
        if lo and not hi:
            return "log" if self.lower == 0 else f"log(x - {self.lower:g})"
        if hi and not lo:
            return f"log({self.upper:g} - x)"
        return "logit" if (self.lower, self.upper) == (0, 1) else f"interval({self.lower:g}, {self.upper:g})"

    def constrain(self, z: Any, xp: Any = np) -> Any:
        """x = f(z): z in R to x in (lower, upper)."""
        lo, hi = math.isfinite(self.lower), math.isfinite(self.upper)
        if lo and hi:
            return self.lower + (self.upper - self.lower) * xp.exp(-xp.logaddexp(z * 0.0, -z))
        if lo:
            return self.lower + xp.exp(z)
        if hi:
            return self.upper - xp.exp(z)
        return z

    def unconstrain(self, x: Any, xp: Any = np) -> Any:
        """z = f^{-1}(x)."""
        lo, hi = math.isfinite(self.lower), math.isfinite(self.upper)
        if lo and hi:
            return xp.log(x - self.lower) - xp.log(self.upper - x)
        if lo:
            return xp.log(x - self.lower)
        if hi:
            return xp.log(self.upper - x)
        return x

    def log_abs_det_jacobian(self, z: Any, xp: Any = np) -> Any:
        """log |f'(z)|, elementwise."""
        lo, hi = math.isfinite(self.lower), math.isfinite(self.upper)
        if lo and hi:
            return math.log(self.upper - self.lower) - xp.logaddexp(z * 0.0, -z) - xp.logaddexp(z * 0.0, z)
        if lo or hi:
            return z
        return z * 0.0

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.lower) or math.isfinite(self.upper)

    def dlog_abs_det_jacobian(self, z: Any, xp: Any = np) -> Any:
        """d/dz log |f'(z)|, elementwise (1 for one bound, -tanh(z / 2) for two, 0 for the identity)."""
        lo, hi = math.isfinite(self.lower), math.isfinite(self.upper)
        if lo and hi:
            return -xp.tanh(0.5 * z)
        return z * 0.0 + (1.0 if lo or hi else 0.0)

    @property
    def direction(self) -> float:
        """The sign of f': -1 for an upper bound alone (x = upper - exp(z)), else +1."""
        return -1.0 if math.isfinite(self.upper) and not math.isfinite(self.lower) else 1.0

    @classmethod
    def parse(cls, spec: Any, variable: str = "?") -> "Transform":
        """A transform from a name, a tuple or a constraint object (see the module docstring)."""
        if isinstance(spec, Transform):
            return spec
        if spec is None or spec == "identity":
            return cls()
        if spec == "log":
            return cls(0.0)
        if spec == "logit":
            return cls(0.0, 1.0)
        if (isinstance(spec, (tuple, list)) and len(spec) == 2 and not isinstance(spec[0], str)
                and all(b is None or isinstance(b, (int, float)) for b in spec)):  # (low, high), scipy.optimize style
            lower, upper = (-math.inf if spec[0] is None else float(spec[0]),
                            math.inf if spec[1] is None else float(spec[1]))
            if math.isnan(lower) or math.isnan(upper) or lower == math.inf or upper == -math.inf:
                raise ValueError(f"{variable}: bad bounds {tuple(spec)!r}")
            try:
                return cls(lower, upper)
            except ValueError as err:
                raise ValueError(f"{variable}: {err}") from None
        if isinstance(spec, tuple) and spec and spec[0] in ("lower", "upper", "interval"):
            try:
                if spec[0] == "lower":
                    (a,) = spec[1:]
                    return cls(float(a))
                if spec[0] == "upper":
                    (b,) = spec[1:]
                    return cls(upper=float(b))
                a, b = spec[1:]
                return cls(float(a), float(b))
            except (TypeError, ValueError) as err:
                raise ValueError(f"variable {variable!r}: bad transform {spec!r} ({err})") from None
        lower, upper = getattr(spec, "lower_bound", None), getattr(spec, "upper_bound", None)
        if (lower is not None or upper is not None) and not isinstance(spec, (str, tuple)):
            return cls(-math.inf if lower is None else float(lower), math.inf if upper is None else float(upper))
        if type(spec).__name__ in ("_Real", "_RealVector", "_IndependentConstraint"):
            base = getattr(spec, "base_constraint", None)
            return cls() if base is None else cls.parse(base, variable)
        raise ValueError(f"variable {variable!r}: unknown transform {spec!r}; use 'identity', 'log', 'logit', "
                         "('lower', a), ('upper', b), ('interval', a, b) or a constraint with lower_bound/upper_bound")


@dataclass(frozen=True)
class Bounds:
    """One `Transform` per column of a sample set, with the columns' names for messages."""

    transforms: tuple[Transform, ...]
    names: tuple[str, ...]

    @classmethod
    def parse(cls, spec: Any, dim: int, names: Sequence[str] | None = None) -> "Bounds | None":
        """Bounds from `fit(..., bounds=spec)`; None when no column has a finite bound.

        spec: a sequence of `dim` entries, or a mapping {column name or index: entry} (other columns
        unbounded). An entry is a (low, high) pair with None (or -inf / inf) for an open side, as in
        scipy.optimize; None for an unbounded column; or what `Transform.parse` reads ("log", "logit",
        ("lower", a), ("interval", a, b), a torch/NumPyro constraint with lower_bound / upper_bound)."""
        labels = tuple(str(n) for n in names) if names is not None else tuple(str(j) for j in range(dim))
        if spec is None:
            return None
        entries: list[Any] = [None] * dim
        if isinstance(spec, Mapping):
            for key, entry in spec.items():
                if isinstance(key, str) and key in labels:
                    j = labels.index(key)
                elif isinstance(key, (int, np.integer)) and not isinstance(key, bool) and -dim <= key < dim:
                    j = int(key) % dim
                else:
                    raise ValueError(f"bounds names column {key!r}, which is not one of the samples' {dim} columns "
                                     f"({', '.join(labels[:12])}{', ...' if dim > 12 else ''})")
                entries[j] = entry
        elif isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence):
            raise ValueError(f"bounds must be a sequence of {dim} (low, high) pairs or a mapping "
                             f"{{column: (low, high)}}, got {type(spec).__name__}")
        else:
            if len(spec) != dim:
                raise ValueError(f"bounds has {len(spec)} entries for {dim} columns; give one (low, high) pair "
                                 "per column (None for an unbounded one) or a mapping {column: (low, high)}")
            entries = list(spec)
        transforms = tuple(Transform.parse(e, f"bounds of column {labels[j]!r}") for j, e in enumerate(entries))
        if not any(t.bounded for t in transforms):
            return None
        return cls(transforms, labels)

    @property
    def dim(self) -> int:
        return len(self.transforms)

    def _columns(self) -> list[int]:
        return [j for j, t in enumerate(self.transforms) if t.bounded]

    def inside(self, x: Tensor) -> Tensor:
        """(m,) bool: every coordinate of the point strictly inside its bounds."""
        ok = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        for j in self._columns():
            t = self.transforms[j]
            ok &= (x[:, j] > t.lower) & (x[:, j] < t.upper)
        return ok

    def check(self, x: Tensor, what: str = "samples") -> None:
        """Raise ValueError naming every column with values on or outside its (open) bounds: its first
        such row and value, and how many."""
        bad = []
        for j in self._columns():
            t = self.transforms[j]
            out = ~((x[:, j] > t.lower) & (x[:, j] < t.upper))
            if bool(out.any()):
                i = int(out.nonzero()[0])
                bad.append(f"column {self.names[j]!r} (bounds ({t.lower:g}, {t.upper:g})): row {i} is "
                           f"{float(x[i, j]):.6g}, {int(out.sum())} of {x.shape[0]} rows on or outside")
        if bad:
            raise ValueError(f"{what} must lie strictly inside their bounds (the density is zero on a bound): "
                             + "; ".join(bad))

    def unconstrain(self, x: Tensor) -> Tensor:
        """z = f^-1(x) column by column, for x inside the bounds."""
        z = x.clone()
        for j in self._columns():
            z[:, j] = self.transforms[j].unconstrain(x[:, j], torch)
        return z

    def constrain(self, z: Tensor) -> Tensor:
        """x = f(z) column by column."""
        x = z.clone()
        for j in self._columns():
            x[:, j] = self.transforms[j].constrain(z[:, j], torch)
        return x

    def log_density_and_score(self, log_p_z: Tensor, score_z: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """The density of z carried to x = f(z): log p_x = log p_z - sum_j log|f_j'(z_j)| and, by the chain
        rule, d log p_x / dx_j = (s_j - d/dz_j log|f_j'(z_j)|) / f_j'(z_j)."""
        log_p, score = log_p_z.clone(), score_z.clone()
        for j in self._columns():
            t = self.transforms[j]
            log_jac = t.log_abs_det_jacobian(z[:, j], torch)
            log_p -= log_jac
            score[:, j] = t.direction * (score_z[:, j] - t.dlog_abs_det_jacobian(z[:, j], torch)) * torch.exp(-log_jac)
        return log_p, score

    def describe(self) -> str:
        return ", ".join(f"{self.names[j]}: ({self.transforms[j].lower:g}, {self.transforms[j].upper:g})"
                         for j in self._columns())
