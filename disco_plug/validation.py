"""Input checking and conversion: every public entry point turns user arrays into float64 torch
tensors here and turns results back into the caller's array type, so errors read the same everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["ArraySpec", "as_points", "check_finite"]

_TORCH_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class ArraySpec:
    """How to hand results back: numpy or torch, with which dtype and device, single point or not."""

    kind: str  # "numpy" or "torch"
    dtype: Any
    device: torch.device
    single: bool

    def restore(self, t: Tensor, *, scalar_per_point: bool) -> Any:
        if self.single:
            t = t[0] if scalar_per_point else t.reshape(t.shape[-1])
        if self.kind == "torch":
            return t.to(dtype=self.dtype)
        return t.detach().cpu().numpy().astype(self.dtype, copy=False)


def _to_tensor(x: Any, name: str) -> tuple[Tensor, str, Any, torch.device]:
    if isinstance(x, Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        out_dtype = x.dtype if x.dtype in _TORCH_FLOATS else torch.get_default_dtype()
        return x.detach(), "torch", out_dtype, x.device
    try:
        arr = np.asarray(x)  # numpy, JAX arrays (__array__), lists
    except Exception as exc:  # noqa: BLE001 - report what the user passed
        raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}") from exc
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    out_dtype = arr.dtype if arr.dtype.kind == "f" and arr.dtype.itemsize >= 4 else np.dtype(np.float64)
    if arr.dtype.kind == "f" and arr.dtype.itemsize < 4:
        out_dtype = arr.dtype
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64)), "numpy", out_dtype, torch.device("cpu")


def check_finite(t: Tensor, name: str) -> None:
    """Raise ValueError naming how many entries are NaN or infinite, and the first one."""
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        count = int(bad.sum())
        first = tuple(int(i) for i in bad.nonzero()[0])
        kinds = "NaN" if bool(torch.isnan(t).any()) else "infinite"
        raise ValueError(f"{name} contains {count} non-finite value(s) ({kinds}), first at index {first}")


def as_points(x: Any, name: str, *, max_dim: int, dim: int | None = None,
              allow_single: bool = False) -> tuple[Tensor, ArraySpec]:
    """Validate an (n, d) array of points (or a single point (d,) if allow_single) and return it as a
    float64 tensor on its own device, with the spec to convert results back."""
    t, kind, out_dtype, device = _to_tensor(x, name)
    single = False
    if t.ndim == 1 and allow_single:
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
    t = t.to(torch.float64)
    check_finite(t, name)
    return t, ArraySpec(kind, out_dtype, device, single)
