"""What the columns of a real sample set are: constant, exact affine functions of other columns, or
recorded on a grid, found before a fit so that every such table is fitted and nothing is refused.

Degenerate sets (constant columns, exactly collinear columns, n <= d) have no density on R^d: their
points lie on an affine subspace (the affine hull). `find_affine_hull` picks, column by column in the
table's own order, the columns that are not an exact affine function of the columns kept before them
(greedy pivoted Cholesky of the correlation matrix, so the test is scale-free); the estimate is then a
density over those *free* columns, and every other column is a fixed affine function of them
(a constant, or e.g. total = a + b). Samples are lifted back: constant columns stay constant, totals
stay totals.

Grid-valued columns (integers, 0.1 steps, prices in whole units) make ties; a density of tied values
is singular (each repeated point's density grows without bound as an estimate sharpens), so they are
found and reported (`grid_columns`), and `dequantize` adds one grid step of uniform noise (seeded),
the usual remedy for density work on discrete data (Theis, van den Oord & Bethge 2016, "A note on
the evaluation of generative models", section 3.1). Coded columns with a few unevenly spaced levels
(age bands 17.5, 22, 27, ...; a count whose top class is 5.5) are not a grid but tie the same way: they are
found by `coded_columns`, and `dequantize` spreads each level uniformly over its cell (from the midpoint
to the level below to the midpoint to the level above; the outer cells as wide as their neighbours' gap),
which for a grid whose levels are all present is the grid step's noise.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["AffineHull", "DegenerateSamplesWarning", "GridValuedColumnsWarning", "coded_columns", "dequantize",
           "find_affine_hull", "grid_columns", "level_cells", "spread_over_cells", "tied_columns"]

# A column whose variance left after regressing it on the kept columns is below this fraction of its
# own variance is called an exact affine function of them (its residual standard deviation is below
# 1e-5 of its own: rounding of a computed total, not a measured column).
DEPENDENT_RESIDUAL = 1e-10
_GRID_TOL = 1e-6  # relative tolerance of "a difference is an integer number of grid steps"
CODED_LEVELS = 20  # a tied column with at most this many distinct values and no common step is "coded"


class DegenerateSamplesWarning(UserWarning):
    """The samples lie on an affine subspace (constant or exactly collinear columns, or n <= d): the
    estimate is a density over the free columns, the others being fixed affine functions of them."""


class GridValuedColumnsWarning(UserWarning):
    """Some columns take values on a grid with ties; see `fit(..., dequantize=True)`."""


class AffineHull(NamedTuple):
    """x[:, dependent] = offset + x[:, free] @ coef exactly (to 1e-5 of each column's spread)."""

    free: Tensor  # (r,) long, increasing
    dependent: Tensor  # (d - r,) long, increasing
    offset: Tensor  # (d - r,) float64
    coef: Tensor  # (r, d - r) float64
    constant: Tensor  # (d - r,) bool: the dependent column is constant (its coef column is zero)

    @property
    def dim(self) -> int:
        return len(self.free) + len(self.dependent)

    def lift(self, z: Tensor) -> Tensor:
        """Points (m, r) on the free columns -> (m, d) on the hull."""
        out = z.new_empty(z.shape[0], self.dim)
        out[:, self.free] = z
        out[:, self.dependent] = self.offset.to(z) + z @ self.coef.to(z)
        return out

    def describe(self, names: list[str] | None = None) -> str:
        """One sentence naming every constant and dependent column (by `names` if given)."""
        name = (lambda j: repr(names[j])) if names is not None else (lambda j: str(j))
        consts = [f"{name(int(j))} (= {float(v):.6g})"
                  for j, v, c in zip(self.dependent, self.offset, self.constant) if c]
        deps = []
        for k, (j, c) in enumerate(zip(self.dependent, self.constant)):
            if not c:
                parents = [name(int(self.free[i])) for i in (self.coef[:, k].abs() > 1e-12).nonzero().flatten()]
                shown = ", ".join(parents[:6]) + (f" and {len(parents) - 6} more" if len(parents) > 6 else "")
                deps.append(f"{name(int(j))} (of {shown})")
        parts = []
        if consts:
            parts.append(f"constant column{'s' if len(consts) > 1 else ''} {_listed(consts)}")
        if deps:
            parts.append(f"column{'s' if len(deps) > 1 else ''} {_listed(deps)} "
                         f"{'are exact affine functions' if len(deps) > 1 else 'is an exact affine function'} "
                         "of other columns")
        return (f"the samples lie on a {len(self.free)}-dimensional affine subspace of R^{self.dim}: "
                f"{'; '.join(parts)}. The estimate is a density over the {len(self.free)} free columns "
                f"(log-density and score ignore the others, whose score entries are 0), and samples "
                f"keep the others fixed functions of them; drop those columns to silence this warning")


def _listed(items: list[str], limit: int = 12) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def find_affine_hull(x: Tensor, tol: float = DEPENDENT_RESIDUAL) -> AffineHull | None:
    """The affine subspace that the points x (n, d) (float64, n >= 2, not all equal) lie on, or None
    when they span R^d. Columns are taken in order: column j is free unless its residual variance
    after regressing it on the free columns before it is below `tol` of its variance (constant
    columns are always dependent). Scale-free: only standardized columns are factorized."""
    n, d = x.shape
    mean = x.mean(0)
    sd = (x - mean).std(0, correction=0)
    z = (x - mean) / torch.where(sd > 0, sd, torch.ones_like(sd))
    corr = z.T @ z / n
    free: list[int] = []
    chol = x.new_zeros(d, d)  # rows of L for the free columns, L L^T = corr[free][:, free]
    for j in range(d):
        if not sd[j] > 0 or len(free) >= n - 1:
            continue
        k = len(free)
        if k:
            row = torch.linalg.solve_triangular(chol[:k, :k], corr[free, j][:, None], upper=False)[:, 0]
            resid = corr[j, j] - row @ row
        else:
            row, resid = x.new_zeros(0), corr[j, j]
        if resid > tol * corr[j, j]:
            chol[k, :k], chol[k, k] = row, resid.sqrt()
            free.append(j)
    if len(free) == d:
        return None
    dep = [j for j in range(d) if j not in free]
    f, g = torch.tensor(free, dtype=torch.long), torch.tensor(dep, dtype=torch.long)
    # Least squares of the standardized dependent columns on the free ones, then back to raw units.
    coef_z = torch.linalg.lstsq(z[:, f], z[:, g]).solution  # (r, d - r)
    coef = coef_z * sd[g][None, :] / sd[f][:, None]
    constant = ~(sd[g] > 0)
    coef[:, constant] = 0.0
    offset = mean[g] - mean[f] @ coef
    offset[constant] = x[0, g][constant]  # the exact constant, not a mean with rounding
    return AffineHull(f, g, offset, coef, constant)


def tied_columns(x: Tensor, max_levels: int = CODED_LEVELS) -> tuple[dict[int, float], dict[int, Tensor]]:
    """(grid_columns(x), coded_columns(x, max_levels)) from one pass over the columns' distinct values."""
    grid: dict[int, float] = {}
    coded: dict[int, Tensor] = {}
    n = x.shape[0]
    for j in range(x.shape[1]):
        u = torch.unique(x[:, j])
        if not 2 <= len(u) < n:
            continue
        gaps = torch.diff(u)
        step = gaps.min()
        ratio = gaps / step
        if bool(((ratio - ratio.round()).abs() <= _GRID_TOL * ratio.round().clamp_min(1.0)).all()):
            grid[j] = float(step)
        elif len(u) <= max_levels and n >= 2 * len(u):
            coded[j] = u
    return grid, coded


def grid_columns(x: Tensor) -> dict[int, float]:
    """Columns of x (n, d) that take tied values on a grid: {column: grid step}. A column is
    grid-valued when it has fewer distinct values than rows (ties) and at least two, and every
    difference between distinct values is an integer multiple of the smallest one (within 1e-6
    relative), e.g. integers (step 1), prices to the cent (0.01), a 0/1 indicator (1)."""
    return tied_columns(x)[0]


def coded_columns(x: Tensor, max_levels: int = CODED_LEVELS) -> dict[int, Tensor]:
    """Columns of x (n, d) that take a few unevenly spaced levels with ties, not a grid (grid_columns):
    {column: its sorted distinct values}. A column is coded when it has 2..max_levels distinct values,
    at least two rows per value on average, and its gaps are not multiples of one step."""
    return tied_columns(x, max_levels)[1]


def level_cells(levels: Tensor) -> tuple[Tensor, Tensor]:
    """Each level's cell (low, high): from the midpoint to the level below to the midpoint to the level
    above; the outer cells reach as far out as their inner half."""
    mid = 0.5 * (levels[1:] + levels[:-1])
    low = torch.cat([levels[:1] - (mid[:1] - levels[:1]), mid])
    high = torch.cat([mid, levels[-1:] + (levels[-1:] - mid[-1:])])
    return low, high


def spread_over_cells(column: Tensor, levels: Tensor, u: Tensor) -> Tensor:
    """Each value of a coded column (one of `levels`, sorted) moved to low + u (high - low) of its cell
    (level_cells), for uniform draws u in [0, 1) of the column's length."""
    low, high = level_cells(levels)
    at = torch.searchsorted(levels, column.contiguous())
    return low[at] + u * (high[at] - low[at])


def dequantize(x: Tensor, steps: dict[int, float], generator: torch.Generator,
               levels: dict[int, Tensor] | None = None) -> Tensor:
    """x with uniform noise of one grid step, U(-step/2, step/2), added to each grid column, and each
    coded column's values (levels: coded_columns) spread uniformly over their cells (module docstring);
    the draws come from `generator`, grid columns first."""
    out = x.clone()
    for j, step in steps.items():
        u = torch.rand(x.shape[0], generator=generator, dtype=x.dtype, device=generator.device).to(x.device)
        out[:, j] += (u - 0.5) * step
    for j, values in (levels or {}).items():
        u = torch.rand(x.shape[0], generator=generator, dtype=x.dtype, device=generator.device).to(x.device)
        out[:, j] = spread_over_cells(x[:, j], values.to(x), u)
    return out


def _columns_take(cols: list[str]) -> str:
    """'column a takes' / 'columns a, b take': the subject of the tied-column warnings."""
    return f"column{'s' if len(cols) > 1 else ''} {_listed(cols)} take{'' if len(cols) > 1 else 's'} "


def describe_coded(levels: dict[int, Tensor], names: list[str] | None = None) -> str:
    cols = [f"{repr(names[j]) if names is not None else j} ({len(v)} levels)" for j, v in levels.items()]
    return (_columns_take(cols) + "a few unevenly spaced coded values with ties: the density of tied values is "
            "singular; for density work pass dequantize=True (spreads each value uniformly over its cell, "
            "halfway to its neighbours, seeded)")


def describe_grid(steps: dict[int, float], names: list[str] | None = None) -> str:
    cols = [f"{repr(names[j]) if names is not None else j} (step {s:.6g})" for j, s in steps.items()]
    return (_columns_take(cols) + "tied values on a grid: the density of tied values is singular (the estimate puts spikes "
            "at repeated points); for density work pass dequantize=True (adds one grid step of seeded "
            "uniform noise), and round samples to the grid if you need grid values")
