"""Shared math of the samplers: the score convention, sigma schedules, the Langevin move, input checks.

Every sampler speaks one convention: `score_fn(x, sigma) -> Tensor`, the score grad_x log p_sigma(x)
of p_sigma = p * N(0, sigma^2 I) at points x of shape (..., d), with sigma a Python float. The
denoiser D(x, sigma) = x + sigma^2 score (Tweedie's formula) and all schedules are expressed in these
"variance exploding" (VE) noise levels; variance-preserving processes are rescalings of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

__all__ = ["ScoreFn", "LogDensityAndScoreFn", "Callback", "NonFiniteSampleError", "append_dims",
           "to_denoised", "vp_scale", "get_sigmas_geometric", "get_sigmas_karras", "get_sigmas_vp"]

ScoreFn = Callable[[Tensor, float], Tensor]
LogDensityAndScoreFn = Callable[[Tensor, float], tuple[Tensor, Tensor]]
Callback = Callable[[dict[str, Any]], None]


class NonFiniteSampleError(FloatingPointError):
    """A chain or a score evaluation produced NaN or inf; the message names the sampler and step."""


# -- shape and conversion helpers -------------------------------------------------------------------
def append_dims(x: Tensor, target_dims: int) -> Tensor:
    """Append singleton dimensions to x until it has target_dims dimensions (k-diffusion's helper)."""
    missing = target_dims - x.ndim
    if missing < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}, which is fewer")
    return x[(...,) + (None,) * missing]


def to_denoised(x: Tensor, sigma: float | Tensor, score: Tensor) -> Tensor:
    """Tweedie's formula: E[x_0 | x_sigma = x] = x + sigma^2 * score(x, sigma)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return x + append_dims(sigma, x.ndim) ** 2 * score


def vp_scale(sigma: float) -> float:
    """alpha(sigma) = 1 / sqrt(1 + sigma^2): the VP process is x_vp = alpha * x_ve, where x_ve has
    noise level sigma (Song et al. 2021; Karras et al. 2022, section 2)."""
    return 1.0 / math.sqrt(1.0 + sigma * sigma)


# -- schedules ----------------------------------------------------------------------------------------
def _finish_schedule(sigmas: Tensor, append_zero: bool) -> Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)]) if append_zero else sigmas


def _check_range(n: int, sigma_min: float, sigma_max: float) -> None:
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"the number of noise levels must be a positive integer, got {n!r}")
    if not (0 < sigma_min <= sigma_max < math.inf):
        raise ValueError(f"need 0 < sigma_min <= sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}")


def get_sigmas_geometric(n: int, sigma_min: float, sigma_max: float, *, append_zero: bool = True,
                         device: torch.device | str | None = None) -> Tensor:
    """n geometrically spaced noise levels from sigma_max down to sigma_min (Song & Ermon 2019, NCSN),
    float64, optionally followed by a final 0 (a noise-free denoising step)."""
    _check_range(n, sigma_min, sigma_max)
    t = torch.linspace(0, 1, n, dtype=torch.float64, device=device)
    sigmas = torch.exp(math.log(sigma_max) + t * (math.log(sigma_min) - math.log(sigma_max)))
    return _finish_schedule(sigmas, append_zero)


def get_sigmas_karras(n: int, sigma_min: float, sigma_max: float, *, rho: float = 7.0, append_zero: bool = True,
                      device: torch.device | str | None = None) -> Tensor:
    """The noise schedule of Karras et al. 2022 ("Elucidating the design space of diffusion-based
    generative models", eq. 5): uniform in sigma^(1/rho), denser at small sigma."""
    _check_range(n, sigma_min, sigma_max)
    t = torch.linspace(0, 1, n, dtype=torch.float64, device=device)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _finish_schedule((hi + t * (lo - hi)) ** rho, append_zero)


def get_sigmas_vp(n: int, *, beta_min: float = 0.1, beta_max: float = 20.0, eps_t: float = 1e-3,
                  append_zero: bool = True, device: torch.device | str | None = None) -> Tensor:
    """The VP SDE of Song et al. 2021 (linear beta(t) from beta_min to beta_max, t from 1 down to
    eps_t, n uniform times) expressed as equivalent VE noise levels sigma(t) = sqrt(1/alpha_bar(t) - 1)."""
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"the number of noise levels must be a positive integer, got {n!r}")
    if not (0 < beta_min <= beta_max and 0 < eps_t < 1):
        raise ValueError(f"need 0 < beta_min <= beta_max and 0 < eps_t < 1, got {beta_min}, {beta_max}, {eps_t}")
    t = torch.linspace(1, eps_t, n, dtype=torch.float64, device=device)
    log_alpha_bar = -(beta_min * t + 0.5 * (beta_max - beta_min) * t**2)
    return _finish_schedule(torch.sqrt(torch.expm1(-log_alpha_bar)), append_zero)


# -- input checks ---------------------------------------------------------------------------------------
def check_chains(x: Tensor, sampler: str) -> Tensor:
    """Validate the initial chains (..., d) and return a working copy in float32 or wider."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{sampler}: x must be a torch.Tensor of shape (..., d), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{sampler}: x must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim < 1 or x.numel() == 0:
        raise ValueError(f"{sampler}: x must be a non-empty tensor of shape (..., d), got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{sampler}: the initial x contains NaN or inf")
    return x.detach().to(torch.promote_types(x.dtype, torch.float32)).clone()


def check_sigmas(sigmas: Tensor | Iterable[float], sampler: str, *, min_len: int = 2) -> list[float]:
    """A non-increasing 1-D schedule of finite noise levels, positive except for an optional final 0."""
    s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu() if not isinstance(sigmas, Tensor) \
        else sigmas.detach().to("cpu", torch.float64)
    if s.ndim != 1 or s.numel() < min_len:
        raise ValueError(f"{sampler}: sigmas must be a 1-D schedule with at least {min_len} entries, "
                         f"got shape {tuple(s.shape)}")
    if not bool(torch.isfinite(s).all()):
        raise ValueError(f"{sampler}: sigmas contain NaN or inf")
    if bool((s[:-1] <= 0).any()) or bool(s[-1] < 0):
        raise ValueError(f"{sampler}: sigmas must be positive (only the last may be 0), got {s.tolist()[:8]}...")
    if bool((s[1:] > s[:-1]).any()):
        raise ValueError(f"{sampler}: sigmas must be non-increasing (from sigma_max down to sigma_min)")
    return s.tolist()


def check_positive(value: float, name: str, sampler: str) -> float:
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{sampler}: {name} must be positive and finite, got {value}")
    return value


def check_count(value: int, name: str, sampler: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{sampler}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_finite(t: Tensor, what: str, sampler: str, step: int, sigma: float) -> None:
    """Raise NonFiniteSampleError if t has NaN/inf, naming the sampler, the step and how many chains."""
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        rows = bad.reshape(-1, t.shape[-1]).any(-1) if t.ndim >= 1 else bad.reshape(1)
        raise NonFiniteSampleError(
            f"{sampler}: {what} became NaN/inf at step {step} (sigma={sigma:.4g}) in {int(rows.sum())} of "
            f"{rows.numel()} chains; the step size may be too large for this score, or the score function "
            f"returned non-finite values")


# -- score calls and noise ------------------------------------------------------------------------------
def call_score(score_fn: ScoreFn, x: Tensor, sigma: float, sampler: str, step: int) -> Tensor:
    """score_fn(x, sigma) checked for shape and finiteness, in x's dtype."""
    score = score_fn(x, sigma)
    if not isinstance(score, Tensor) or score.shape != x.shape:
        got = tuple(score.shape) if isinstance(score, Tensor) else type(score).__name__
        raise ValueError(f"{sampler}: score_fn must return a tensor shaped like x {tuple(x.shape)}, got {got}")
    score = score.to(x.dtype)
    check_finite(score, "the score", sampler, step, sigma)
    return score


def randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like x, drawn from `generator` (on x's device)."""
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"the generator is on {generator.device} but the chains are on {x.device}; "
                         f"create it with torch.Generator(device={str(x.device)!r})")
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def langevin_move(x: Tensor, score: Tensor, step_size: float | Tensor, generator: torch.Generator | None) -> Tensor:
    """One unadjusted Langevin move x + tau * score + sqrt(2 tau) * z (Roberts & Tweedie 1996)."""
    tau = torch.as_tensor(step_size, dtype=x.dtype, device=x.device)
    return x + tau * score + torch.sqrt(2 * tau) * randn_like(x, generator)


def steps_iter(n: int, progress: bool, sampler: str) -> Iterable[int]:
    """range(n), wrapped in a tqdm progress bar if asked (tqdm is the optional `progress` extra)."""
    if not progress:
        return range(n)
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("progress=True needs tqdm: pip install 'disco_plug[progress]'") from exc
    return tqdm(range(n), desc=sampler, leave=False)


def finish(x: Tensor, like: Tensor) -> Tensor:
    """Return the chains in the caller's dtype."""
    return x.to(like.dtype)
