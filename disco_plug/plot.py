"""Plots for density-and-score estimates: heat maps with score arrows (2-D), marginals and pair plots
(any d), and image grids (e.g. generated 8x8 digits).

matplotlib is the optional `plot` extra and is imported inside each function, so `import disco_plug`
never needs it; every function returns a `matplotlib.figure.Figure` built without pyplot's global state
(works with the Agg backend, in notebooks and in scripts: `fig.savefig("out.png")`).

Density sources (`density_score_2d`, `density_score_panel`) may be a fitted estimator, a
`GaussianKDE`, a `GaussianMixture` (the exact density), anything with `log_density_and_score(y)` for a
float64 torch tensor y (m, 2), or a plain callable taking a numpy array (m, 2) and returning
(log p (m,), score (m, 2)).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["density_score_2d", "density_score_panel", "marginals", "pair_plot", "image_grid", "evaluate_2d"]

DensitySource = Any  # see the module docstring
_REFERENCE_COLOR = "0.55"
_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _figure(figsize: tuple[float, float]) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _points(x: Any, name: str, dim: int | None = None) -> np.ndarray:
    arr = _numpy(x)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"{name} must be an (n, d) array, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} must have d={dim} columns, got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def evaluate_2d(source: DensitySource, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log p (m,) and score (m, d) of any density source (see the module docstring) as numpy float64."""
    if hasattr(source, "log_prob_and_score"):  # GaussianMixture
        log_p, score = source.log_prob_and_score(torch.as_tensor(points, dtype=torch.float64))
    elif hasattr(source, "log_density_and_score"):
        log_p, score = source.log_density_and_score(torch.as_tensor(points, dtype=torch.float64))
    elif callable(source):
        log_p, score = source(points)
    else:
        raise TypeError(f"cannot evaluate a density from {type(source).__name__}: pass a fitted estimator, "
                        "a GaussianKDE, a GaussianMixture or a callable returning (log p, score)")
    log_p, score = _numpy(log_p).reshape(-1), _numpy(score).reshape(points.shape)
    return log_p, score


def _extent(samples: np.ndarray, padding: float) -> tuple[float, float, float, float]:
    lo, hi = np.quantile(samples, 0.005, axis=0), np.quantile(samples, 0.995, axis=0)
    pad = padding * (hi - lo)
    return float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1])


def density_score_panel(ax: "Axes", source: DensitySource, extent: Sequence[float], *, resolution: int = 100,
                        arrows: int = 17, vmax: float | None = None, samples: Any = None, title: str | None = None,
                        cmap: str = "magma") -> float:
    """Draw one density heat map (p = exp log p) with the score field as arrows on `ax`.

    Arrows point along the score; their length grows with |score| and saturates at the 90th percentile
    of |score| over the panel (so the field near the modes stays readable next to the steep tails).
    Returns the largest density on the grid (to share a colour scale between panels via `vmax`).
    """
    x0, x1, y0, y1 = (float(v) for v in extent)
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    log_p, _ = evaluate_2d(source, np.stack([gx.ravel(), gy.ravel()], 1))
    dens = np.exp(log_p).reshape(resolution, resolution)
    top = float(dens.max())
    ax.imshow(dens, origin="lower", extent=(x0, x1, y0, y1), aspect="auto", cmap=cmap, vmin=0.0,
              vmax=top if vmax is None else vmax, interpolation="bilinear")
    ax_, ay_ = np.meshgrid(np.linspace(x0, x1, arrows + 2)[1:-1], np.linspace(y0, y1, arrows + 2)[1:-1])
    _, score = evaluate_2d(source, np.stack([ax_.ravel(), ay_.ravel()], 1))
    norm = np.linalg.norm(score, axis=1)
    cap = max(float(np.quantile(norm, 0.9)), 1e-12)
    length = np.minimum(norm, cap) / cap
    unit = score / np.maximum(norm, 1e-12)[:, None]
    cell = min((x1 - x0), (y1 - y0)) / (arrows + 1)
    u, v = unit[:, 0] * length * 0.9 * cell, unit[:, 1] * length * 0.9 * cell
    ax.quiver(ax_.ravel(), ay_.ravel(), u, v, angles="xy", scale_units="xy", scale=1.0, color="white",
              width=0.004, alpha=0.85)
    if samples is not None:
        pts = _points(samples, "samples", dim=2)
        ax.scatter(pts[:, 0], pts[:, 1], s=2, c="cyan", alpha=0.35, linewidths=0)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    if title:
        ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return top


def density_score_2d(samples: Any, fitted: DensitySource | None = None, *, truth: DensitySource | None = None,
                     kde_bandwidth: str | float | None = "scott", others: Mapping[str, DensitySource] | None = None,
                     resolution: int = 100, arrows: int = 17, padding: float = 0.15, show_samples: bool = True,
                     max_points: int = 600, panel_size: float = 3.6) -> "Figure":
    """Side-by-side heat maps of the estimated density with the score field as arrows, for 2-D data:
    DiScoFormer, a Gaussian KDE (`kde_bandwidth`, scipy-style factor or rule; None to omit), any
    `others`, and the exact density `truth` when known. All panels share one colour scale.

    Parameters
    ----------
    samples : (n, 2) sample set (numpy or torch); a random subset of `max_points` is drawn as dots.
    fitted : the estimator fitted on `samples`; None fits the bundled weights.

    Example
    -------
    >>> import numpy as np, disco_plug.plot as dplot
    >>> x = np.random.default_rng(0).normal(size=(256, 2))
    >>> fig = dplot.density_score_2d(x, resolution=20, arrows=5)
    >>> [ax.get_title() for ax in fig.axes if ax.get_title()]  # the last axes is the colour bar
    ['DiScoFormer', 'KDE (scott)']
    """
    pts = _points(samples, "samples", dim=2)
    panels: dict[str, DensitySource] = {}
    if fitted is None:
        from .estimator import load

        fitted = load().fit(pts)
    panels["DiScoFormer"] = fitted
    if kde_bandwidth is not None:
        from .densities.kde import GaussianKDE

        panels[f"KDE ({kde_bandwidth})"] = GaussianKDE(torch.as_tensor(pts), kde_bandwidth)
    panels.update(others or {})
    if truth is not None:
        panels["exact density"] = truth
    extent = _extent(pts, padding)
    shown = pts[np.random.default_rng(0).permutation(len(pts))[:max_points]] if show_samples else None
    fig = _figure((panel_size * len(panels), panel_size))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    # First pass finds the common colour scale (the reference panel's peak if the truth is known).
    peaks = [density_score_panel(ax, src, extent, resolution=resolution, arrows=arrows, samples=shown, title=name)
             for ax, (name, src) in zip(axes, panels.items())]
    vmax = peaks[-1] if truth is not None else peaks[0]
    for ax in axes:
        for image in ax.images:
            image.set_clim(0.0, vmax)
    fig.colorbar(axes[-1].images[0], ax=list(axes), shrink=0.8, label="density p(x)")
    return fig


def _named(generated: Any) -> dict[str, np.ndarray]:
    if isinstance(generated, Mapping):
        return {str(k): _numpy(v) for k, v in generated.items()}
    return {"generated": _numpy(generated)}


def marginals(generated: Any, reference: Any, *, dims: Sequence[int] | None = None, bins: int = 40,
              columns: int = 4, names: Sequence[str] | None = None, panel_size: float = 2.4) -> "Figure":
    """1-D marginal histograms of generated samples (an (m, d) array, or a dict name -> array for
    several samplers) against reference samples (n, d), one panel per dimension in `dims`
    (default: the first 16)."""
    ref = _points(reference, "reference")
    d = ref.shape[1]
    sets = {k: _points(v, f"generated[{k!r}]", dim=d) for k, v in _named(generated).items()}
    dims = list(range(min(d, 16))) if dims is None else [int(i) for i in dims]
    if any(not 0 <= i < d for i in dims) or not dims:
        raise ValueError(f"dims must be indices in 0..{d - 1}, got {dims}")
    cols = min(columns, len(dims))
    rows = -(-len(dims) // cols)
    fig = _figure((panel_size * cols, panel_size * 0.8 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax, i in zip(axes, dims):
        lo = min(ref[:, i].min(), *(v[:, i].min() for v in sets.values()))
        hi = max(ref[:, i].max(), *(v[:, i].max() for v in sets.values()))
        edges = np.linspace(lo, hi + 1e-12, bins + 1)
        ax.hist(ref[:, i], bins=edges, density=True, color=_REFERENCE_COLOR, alpha=0.5, label="reference")
        for color, (name, v) in zip(_COLORS, sets.items()):
            ax.hist(v[:, i], bins=edges, density=True, histtype="step", color=color, linewidth=1.4, label=name)
        ax.set_title(names[i] if names is not None else f"x[{i}]", fontsize=9)
        ax.set_yticks([])
        ax.tick_params(labelsize=7)
    for ax in axes[len(dims):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, frameon=False)
    return fig


def pair_plot(generated: Any, reference: Any, *, dims: Sequence[int] = (0, 1, 2), max_points: int = 800,
              names: Sequence[str] | None = None, panel_size: float = 2.2, seed: int = 0) -> "Figure":
    """Pair plot of the chosen `dims`: scatter plots below the diagonal (reference grey, generated in
    colour), histograms on the diagonal. `generated` is an (m, d) array or a dict name -> array."""
    ref = _points(reference, "reference")
    d = ref.shape[1]
    sets = {k: _points(v, f"generated[{k!r}]", dim=d) for k, v in _named(generated).items()}
    dims = [int(i) for i in dims]
    if any(not 0 <= i < d for i in dims) or len(dims) < 2:
        raise ValueError(f"dims must be at least two indices in 0..{d - 1}, got {dims}")
    rng = np.random.default_rng(seed)

    def subset(a: np.ndarray) -> np.ndarray:
        return a[rng.permutation(len(a))[:max_points]]

    ref_s, sets_s = subset(ref), {k: subset(v) for k, v in sets.items()}
    k = len(dims)
    fig = _figure((panel_size * k, panel_size * k))
    axes = fig.subplots(k, k, squeeze=False)
    for r, i in enumerate(dims):
        for c, j in enumerate(dims):
            ax = axes[r, c]
            if c > r:
                ax.set_visible(False)
                continue
            if r == c:
                edges = np.linspace(min(ref[:, i].min(), *(v[:, i].min() for v in sets.values())),
                                    max(ref[:, i].max(), *(v[:, i].max() for v in sets.values())) + 1e-12, 31)
                ax.hist(ref[:, i], bins=edges, density=True, color=_REFERENCE_COLOR, alpha=0.5)
                for color, v in zip(_COLORS, sets.values()):
                    ax.hist(v[:, i], bins=edges, density=True, histtype="step", color=color, linewidth=1.3)
                ax.set_yticks([])
            else:
                ax.scatter(ref_s[:, j], ref_s[:, i], s=3, c=_REFERENCE_COLOR, alpha=0.5, linewidths=0,
                           label="reference")
                for color, (name, v) in zip(_COLORS, sets_s.items()):
                    ax.scatter(v[:, j], v[:, i], s=3, c=color, alpha=0.6, linewidths=0, label=name)
            label = (lambda t: names[t] if names is not None else f"x[{t}]")
            if r == k - 1:
                ax.set_xlabel(label(j), fontsize=8)
            if c == 0 and r > 0:
                ax.set_ylabel(label(i), fontsize=8)
            ax.tick_params(labelsize=7)
    handles, labels = axes[1, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=8, frameon=False, markerscale=3)
    return fig


def image_grid(rows: Mapping[str, Any], image_shape: tuple[int, int], *, per_row: int = 10,
               cmap: str = "gray_r", panel_size: float = 0.9, vmin: float | None = None,
               vmax: float | None = None) -> "Figure":
    """One row of images per entry of `rows` (name -> (k, h*w) array), e.g. training digits, samples
    from the estimator's score and samples from a KDE score. Shows the first `per_row` of each."""
    if not rows:
        raise ValueError("rows is empty: pass a dict name -> (k, h*w) array")
    h, w = image_shape
    sets = {k: _points(v, f"rows[{k!r}]", dim=h * w) for k, v in rows.items()}
    lo = min(float(v.min()) for v in sets.values()) if vmin is None else vmin
    hi = max(float(v.max()) for v in sets.values()) if vmax is None else vmax
    fig = _figure((panel_size * per_row + 1.5, panel_size * len(sets)))
    axes = fig.subplots(len(sets), per_row, squeeze=False)
    for r, (name, v) in enumerate(sets.items()):
        for c in range(per_row):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(v):
                ax.imshow(v[c].reshape(h, w), cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            else:
                ax.set_visible(False)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    return fig

