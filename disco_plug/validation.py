"""Input checking and conversion: every public entry point turns user arrays into float64 torch
tensors here and turns results back into the caller's array type, so errors read the same everywhere.

Rules (tested row by row in tests/test_validation.py):
- numpy in gives numpy out, torch in gives torch out (same device), JAX in gives JAX out.
- Float inputs keep their dtype on the way out; integers give numpy float64, torch's default dtype or
  JAX's default float. float16 and bfloat16 are computed in float64 and returned in their own dtype;
  a result that does not fit that dtype (overflow to inf) is an error, never a silent inf.
- NaN/inf, wrong shapes, empty arrays, non-real dtypes, meta tensors, fewer than two points,
  identical points and magnitudes float64 cannot whiten raise an error naming the problem (constant
  and collinear columns, and n <= d, are fitted on their affine hull: disco_plug.columns).
- Tensors that require grad are read through `.detach()`: results carry no graph (use the
  integrations for gradients).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["ArraySpec", "FitOfSamples", "as_points", "check_finite", "check_noise_level", "check_samples"]

_TORCH_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Spread (per-column standard deviation) that the float64 covariance and its eigen-decomposition
# handle: squares and their 1e-10 degeneracy test stay inside float64's normal range.
_MIN_SPREAD, _MAX_SPREAD = 1e-140, 1e140


@dataclass(frozen=True)
class ArraySpec:
    """How to hand results back: numpy, torch or JAX, with which dtype and device, single point or not."""

    kind: str  # "numpy", "torch" or "jax"
    dtype: Any
    device: torch.device
    single: bool

    def restore(self, t: Tensor, *, scalar_per_point: bool, name: str = "the result") -> Any:
        """float64 result (m,) or (m, d) -> the caller's array type and dtype (a point's own shape if
        single). Raises ValueError if a finite result overflows a narrow dtype such as float16."""
        if self.single:
            t = t[0] if scalar_per_point else t.reshape(t.shape[-1])
        if self.kind == "torch":
            out = t.to(dtype=self.dtype)
            _check_fits(bool(torch.isfinite(out).all()), t, name, self.dtype)
            return out
        out = t.detach().cpu().numpy().astype(self.dtype, copy=False)
        _check_fits(bool(np.isfinite(out).all()), t, name, self.dtype)
        if self.kind == "jax":
            import jax.numpy as jnp

            return jnp.asarray(out, dtype=self.dtype)
        return out


class FitOfSamples:
    """n, d and device of a fit, read from its `samples` (n, d) (FittedEstimator, BoundedFit)."""

    samples: Tensor

    @property
    def n(self) -> int:
        return self.samples.shape[0]

    @property
    def dim(self) -> int:
        return self.samples.shape[1]

    @property
    def device(self) -> torch.device:
        return self.samples.device


def _check_fits(cast_finite: bool, full: Tensor, name: str, dtype: Any) -> None:
    if not cast_finite and bool(torch.isfinite(full).all()):
        big = float(full.abs().max())
        raise ValueError(f"{name} overflows {dtype} (largest magnitude {big:.3g}); pass float32 or float64 "
                         f"input to get it")


def _is_jax(x: Any) -> bool:
    return type(x).__module__.split(".")[0] in ("jax", "jaxlib")


def _jax_float() -> Any:
    import jax.numpy as jnp

    return jnp.zeros(()).dtype  # float32 unless jax_enable_x64 is on


def _to_tensor(x: Any, name: str) -> tuple[Tensor, str, Any, torch.device]:
    if isinstance(x, Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        if x.device.type == "meta":
            raise ValueError(f"{name} is a tensor on the meta device, which holds no values")
        out_dtype = x.dtype if x.dtype in _TORCH_FLOATS else torch.get_default_dtype()
        return x.detach(), "torch", out_dtype, x.device
    kind = "jax" if _is_jax(x) else "numpy"
    try:
        arr = np.asarray(x)  # numpy, JAX arrays (__array__), lists, pandas
    except Exception as exc:  # noqa: BLE001 - report what the user passed
        hint = (" (inside jax.jit use disco_plug.integrations.blackjax, which calls the estimator through "
                "a callback)") if "Tracer" in type(x).__name__ else ""
        raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}: {exc}{hint}") from exc
    if arr.dtype.name == "bfloat16":  # ml_dtypes' bfloat16 (JAX): numpy kind "V"
        return torch.from_numpy(arr.astype(np.float64)), kind, arr.dtype, torch.device("cpu")
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        what = f"dtype {arr.dtype}" if arr.dtype != object else f"{type(x).__name__} (dtype object)"
        raise TypeError(f"{name} must be an array of real numbers, got {what}")
    if arr.dtype.kind == "f":
        out_dtype = arr.dtype
    else:
        out_dtype = _jax_float() if kind == "jax" else np.dtype(np.float64)
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64).reshape(arr.shape))  # keeps 0-d 0-d
    return t, kind, out_dtype, torch.device("cpu")


def check_finite(t: Tensor, name: str) -> None:
    """Raise ValueError naming how many entries are NaN or infinite, and the first one, e.g.
    "samples contains 3 non-finite value(s) (NaN), first at index (0, 1)"."""
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        count = int(bad.sum())
        first = tuple(int(i) for i in bad.nonzero()[0])
        nan, inf = bool(torch.isnan(t).any()), bool(torch.isinf(t).any())
        kinds = "NaN and infinite" if nan and inf else "NaN" if nan else "infinite"
        raise ValueError(f"{name} contains {count} non-finite value(s) ({kinds}), first at index {first}")


def as_points(x: Any, name: str, *, max_dim: int, dim: int | None = None, allow_single: bool = False,
              device: torch.device | None = None) -> tuple[Tensor, ArraySpec]:
    """Validate an (n, d) array of points (or a single point (d,) if allow_single) and return it as a
    float64 tensor on its own device, with the spec to convert results back. `dim` and `device`, if
    given, are what the points must match (those of the fitted samples)."""
    if device is not None and isinstance(x, Tensor) and x.device != device:
        raise ValueError(f"{name} are on {x.device} but the estimator was fitted on {device}; "
                         f"move them with .to({str(device)!r})")
    t, kind, out_dtype, on = _to_tensor(x, name)
    single = False
    if t.ndim == 1 and allow_single:
        check_finite(t, name)
        t, single = t[None], True
    if t.ndim != 2:
        hint = " (for 1-D data pass shape (n, 1), e.g. x.reshape(-1, 1))" if t.ndim == 1 else ""
        expect = "(m, d) or a single point (d,)" if allow_single else "(n, d)"
        raise ValueError(f"{name} must have shape {expect}, got {t.ndim}-D shape {tuple(t.shape)}{hint}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
    d = t.shape[1]
    if dim is not None and d != dim:
        raise ValueError(f"{name} has dimension {d}, but the estimator was fitted on d={dim}")
    if not 1 <= d <= max_dim:
        raise ValueError(f"{name} has dimension d={d}; the model serves d = 1..{max_dim}")
    # A contiguous copy: never aliases the caller's array (they may change it later), and a strided or
    # transposed view gives bit-identical results.
    t = t.to(torch.float64, memory_format=torch.contiguous_format, copy=True)
    check_finite(t, name)
    return t, ArraySpec(kind, out_dtype, on, single)


def check_samples(x: Tensor, name: str = "samples") -> None:
    """What fitting a validated float64 sample set (n, d) needs, each failure named: at least two
    points, not all equal, a per-column spread that float64 can square. Constant and collinear columns
    and n <= d are not errors: the fit works on their affine hull (disco_plug.columns)."""
    n, d = x.shape
    if n < 2:
        raise ValueError(f"need at least 2 samples to estimate a density, got n={n}")
    lo, hi = x.amin(0), x.amax(0)
    if bool((lo == hi).all()):
        raise ValueError(f"{name} are all the same point: every one of the {n} points equals "
                         f"{x[0].tolist() if d <= 8 else '...'}; there is no spread to estimate a density from")
    scale = torch.maximum(lo.abs(), hi.abs()).clamp_min(torch.finfo(torch.float64).tiny)
    spread = (x / scale).std(0) * scale  # without squaring magnitudes that float64 cannot square
    for j in range(d):
        s = float(spread[j])
        if lo[j] != hi[j] and not _MIN_SPREAD <= s <= _MAX_SPREAD:
            raise ValueError(f"{name} column {j} has spread (standard deviation) {s:.3g}, outside the "
                             f"range {_MIN_SPREAD:.0e}..{_MAX_SPREAD:.0e} that float64 whitening handles; "
                             f"rescale the data (results scale exactly: p_a(a y) = p(y) / a^d)")


def check_noise_level(sigma: float | Tensor) -> float:
    """sigma as a float, or ValueError unless it is a finite scalar >= 0 (a number or a one-element tensor)."""
    if isinstance(sigma, Tensor):
        if sigma.numel() != 1:
            raise ValueError(f"sigma must be a scalar noise level, got a tensor of shape {tuple(sigma.shape)}")
        sigma = sigma.item()
    sigma = float(sigma)
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a finite noise level >= 0, got {sigma}")
    return sigma
