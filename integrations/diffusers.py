"""diffusers adapters: a noise-conditional score as the "UNet" of any scheduler loop, and a pipeline for
(batch, d) tabular data.

Everything converts one function, ``score_fn(x, sigma)``: the score of p * N(0, sigma^2 I) at x (the
variance-exploding view of Song et al. 2021, "Score-based generative modeling through SDEs"). A
variance-preserving sample x_t = sqrt(abar) x0 + sqrt(1 - abar) eps is the VE point y = x_t sqrt(1 + sigma^2)
with sigma = sqrt((1 - abar) / abar), and Tweedie's formula gives the denoiser D = y + sigma^2 s(y, sigma),
hence eps = -sigma s, x0 = D and v = (eps - sigma x0) / sqrt(1 + sigma^2). ``ScoreSdeVeScheduler``
takes the score itself, at the sigma its loop passes as the model's timestep.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import torch
from torch import Tensor

from disco_plug.samplers import append_dims, to_denoised

try:
    from diffusers import ScoreSdeVeScheduler
    from diffusers.models.unets.unet_2d import UNet2DOutput
    from diffusers.schedulers.scheduling_utils import SchedulerMixin
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("disco_plug.integrations.diffusers needs diffusers: pip install 'disco_plug[diffusers]'") from err

__all__ = ["SchedulerHook", "TabularPipeline", "add_noise", "sigma_max_for"]

ScoreFn = Callable[[Tensor, float], Tensor]

# The diffusers default of ScoreSdeVeScheduler.sigma_max, chosen for 0-255 images (NCSN++ on CelebA-HQ).
_IMAGE_SIGMA_MAX = 1348.0


def _scalar_sigma(value: float | Tensor) -> float:
    values = torch.as_tensor(value).reshape(-1)
    if values.numel() == 0 or not bool((values == values[0]).all()):
        raise ValueError(f"one noise level per call is supported, got {values.tolist()}")
    return float(values[0])


class _Shifted:
    """score_fn in coordinates centered on `center`: x -> score_fn(x + center, sigma)."""

    def __init__(self, score_fn: ScoreFn, center: Tensor) -> None:
        self.score_fn, self.center = score_fn, center

    def __call__(self, x: Tensor, sigma: float) -> Tensor:
        return self.score_fn(x + self.center.to(x), sigma)


def _fitted_samples(score_fn: ScoreFn) -> Tensor | None:
    """The (n, d) sample set behind a fitted estimator's bound ``score_fn`` (``__self__.samples``, or
    ``__self__.fitted.samples`` as on ``NoisedScore``), None for any other function."""
    owner = getattr(score_fn, "__self__", None)
    for obj in (owner, getattr(owner, "fitted", None)):
        samples = getattr(obj, "samples", None)
        if samples is not None and not callable(samples):
            samples = torch.as_tensor(samples)
            if samples.ndim == 2 and samples.dtype.is_floating_point:
                return samples
    return None


class SchedulerHook:
    """A score function standing in for the UNet of a diffusers scheduler loop.

    ``hook(model_input, t).sample`` is the epsilon, sample (x0) or v prediction that
    ``scheduler.config.prediction_type`` asks for, at the sigma the scheduler itself uses:
    ``scheduler.sigmas[scheduler.step_index]`` for sigma-table schedulers (Euler, Heun, DPM-Solver, ...),
    ``sqrt((1 - abar_t) / abar_t)`` from ``alphas_cumprod`` for DDPM/DDIM. For ``ScoreSdeVeScheduler``
    the hook returns the score at the sigma passed as the timestep, as its pipeline does.

    Parameters:
        score_fn: ``score_fn(x, sigma)``, the score of p * N(0, sigma^2 I) at x (..., d), e.g. the exact
            ``GaussianMixture.score_fn`` or a fitted estimator's noise-conditional ``score_fn``.
        scheduler: the diffusers scheduler whose loop calls the hook.

    Example:
        >>> import torch
        >>> from diffusers import EulerDiscreteScheduler
        >>> from disco_plug.gmm import GaussianMixture
        >>> gmm = GaussianMixture.from_components([1.0], torch.zeros(1, 2), torch.ones(1, 2))
        >>> scheduler = EulerDiscreteScheduler()
        >>> scheduler.set_timesteps(20)
        >>> hook = SchedulerHook(gmm.score_fn, scheduler)
        >>> x = torch.randn(8, 2) * scheduler.init_noise_sigma
        >>> for t in scheduler.timesteps:
        ...     eps = hook(scheduler.scale_model_input(x, t), t).sample
        ...     x = scheduler.step(eps, t, x).prev_sample
        >>> x.shape
        torch.Size([8, 2])
    """

    def __init__(self, score_fn: ScoreFn, scheduler: SchedulerMixin) -> None:
        if not callable(score_fn):
            raise TypeError(f"score_fn must be callable score_fn(x, sigma), got {type(score_fn).__name__}")
        self.score_fn = score_fn
        self.scheduler = scheduler
        self.ve = isinstance(scheduler, ScoreSdeVeScheduler)
        self.prediction_type = "score" if self.ve else scheduler.config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "sample", "v_prediction", "score"):
            raise ValueError(f"unsupported prediction_type {self.prediction_type!r}; "
                             "expected epsilon, sample or v_prediction")
        if not self.ve and not (hasattr(scheduler, "sigmas") or hasattr(scheduler, "alphas_cumprod")):
            raise TypeError(f"{type(scheduler).__name__} has neither a sigma table nor alphas_cumprod")

    def sigma(self, timestep: float | Tensor) -> float:
        """The VE noise level the scheduler uses at this call."""
        s = self.scheduler
        if self.ve:
            return _scalar_sigma(timestep)
        if getattr(s, "sigmas", None) is not None and hasattr(s, "step_index"):
            index = s.step_index
            if index is None:  # schedulers such as DPM-Solver set it only inside their first step()
                index = s.begin_index if getattr(s, "begin_index", None) is not None else s.index_for_timestep(
                    torch.as_tensor(timestep).reshape(-1)[0].to(s.timesteps.device))
            return float(s.sigmas[index])
        t = int(_scalar_sigma(timestep))
        abar = float(s.alphas_cumprod[t])
        return math.sqrt((1.0 - abar) / abar)

    def __call__(self, sample: Tensor, timestep: float | Tensor, *, return_dict: bool = True
                 ) -> UNet2DOutput | tuple[Tensor]:
        sigma = self.sigma(timestep)
        if self.ve:
            out = self.score_fn(sample, sigma)
        else:
            scale = math.sqrt(1.0 + sigma * sigma)
            y = sample * scale  # the VE point behind the scheduler's VP-scaled model input
            score = self.score_fn(y, sigma)
            if self.prediction_type == "epsilon":
                out = -sigma * score
            elif self.prediction_type == "sample":
                out = to_denoised(y, sigma, score)
            else:  # v = alpha_t eps - sigma_t x0 with alpha_t = 1 / scale, sigma_t = sigma / scale
                out = (-sigma * score - sigma * to_denoised(y, sigma, score)) / scale
        if out.shape != sample.shape:
            raise ValueError(f"score_fn returned shape {tuple(out.shape)} for input {tuple(sample.shape)}")
        return UNet2DOutput(sample=out) if return_dict else (out,)


def sigma_max_for(data: Tensor, center: Tensor | None = None, max_points: int = 4096) -> float:
    """The largest Euclidean distance among the data points and ``center`` (default the origin):
    sigma_max for a VE sampler whose prior N(center, sigma_max^2 I) is centered there.

    Technique 1 of Song & Ermon 2020, "Improved techniques for training score-based generative models"
    (sigma_max ~ the largest pairwise distance). At most ``max_points`` evenly spaced points are used.
    """
    x = torch.as_tensor(data)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"data must be (n >= 2, d), got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("data contain NaN or inf")
    x = x[torch.linspace(0, x.shape[0] - 1, min(max_points, x.shape[0])).long()].to(torch.float64)
    origin = x.new_zeros(1, x.shape[1]) if center is None else torch.as_tensor(center).to(x).reshape(1, -1)
    x = torch.cat([x, origin])
    return float(torch.cdist(x, x).max())


def add_noise(scheduler: SchedulerMixin, x0: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
    """Forward-noise x0 (B, ...) at per-sample timesteps (B,) for any scheduler and tensor rank.

    ``ScoreSdeVeScheduler.add_noise`` indexes sigmas with ``[:, None, None, None]`` (wrong for (B, d)
    tensors) and leaves a given noise unscaled; here it is x0 + sigma_t noise. Other schedulers delegate.
    """
    if x0.shape != noise.shape:
        raise ValueError(f"x0 {tuple(x0.shape)} and noise {tuple(noise.shape)} must have the same shape")
    if not isinstance(scheduler, ScoreSdeVeScheduler):
        return scheduler.add_noise(x0, noise, timesteps)
    sigmas = scheduler.discrete_sigmas.to(x0.device)[timesteps.to(x0.device)].to(x0.dtype)  # (B,)
    return x0 + append_dims(sigmas, x0.ndim) * noise


class TabularPipeline:
    """Generate (num_samples, d) tabular points with any diffusers scheduler driven by ``score_fn``.

    Tested with DDPM, DDIM, Euler, Heun, DPM-Solver multistep and SDE-VE (predictor-corrector, Song et
    al. 2021). Pitfalls handled: the pipeline works on its own copy of the scheduler, rebuilt with
    ``clip_sample=False`` (DDPM/DDIM clip x0 to [-1, 1] by default, which destroys data outside that
    box); SDE-VE runs ``set_timesteps`` then ``set_sigmas``, never uses the broken ``add_noise`` (see
    `add_noise`), and refuses the image default ``sigma_max=1348`` unless given a data-scale ``sigma_max``
    (use `sigma_max_for`). Every scheduler starts from noise centered on one point with a finite
    sigma_max, which pulls the sample mean towards that point by about distance * sd / sigma_max (raw
    data far from it come out far off: from the origin, a column with mean 72 and sd 14 comes out at 65
    under DDIM's 50 steps), so sampling runs in coordinates centered on ``center``.

    ``center=None`` (the default) picks it: when ``score_fn`` is a fitted estimator's bound ``score_fn``
    (anything whose ``__self__`` has the fitted ``samples``, or a ``fitted`` with them, as
    ``NoisedScore.score_fn``), the samples' mean, and for SDE-VE ``sigma_max = sigma_max_for(samples,
    center)`` unless ``sigma_max`` is given: ``TabularPipeline(fitted.score_fn, scheduler, dim=d)`` is
    `from_fitted`. A plain score function (an exact mixture's ``score_fn``, a lambda) has no samples to
    center on, so the origin is used: pass ``center`` (e.g. the data mean) for data far from the origin.

    Parameters:
        score_fn: ``score_fn(x, sigma)`` as for `SchedulerHook`.
        scheduler: any of the schedulers above (it is copied, not modified).
        dim: the data dimension d.
        center: (d,) point the noise prior is centered on; None: the fitted samples' mean when
            ``score_fn`` carries them, else the origin; False (or a zero vector): the origin.
        sigma_max: SDE-VE only: the largest noise level (None: as described above).
        clip_sample: keep a scheduler's ``clip_sample=True`` (off by default).

    Example:
        >>> import torch
        >>> from diffusers import DDIMScheduler
        >>> from disco_plug.gmm import GaussianMixture
        >>> mean = torch.tensor([3.5, 71.0])
        >>> gmm = GaussianMixture.from_components([1.0], mean[None], torch.tensor([[1.0, 100.0]]))
        >>> pipe = TabularPipeline(gmm.score_fn, DDIMScheduler(), dim=2, center=mean)  # a plain score_fn
        >>> x = pipe(500, num_inference_steps=50, generator=torch.Generator().manual_seed(0))
        >>> x.shape, bool(((x.mean(0) - mean).abs() < 4 * torch.tensor([1.0, 10.0]) / 500**0.5).all())
        (torch.Size([500, 2]), True)
    """

    def __init__(self, score_fn: ScoreFn, scheduler: SchedulerMixin, dim: int, *,
                 center: Tensor | bool | None = None, sigma_max: float | None = None,
                 clip_sample: bool = False) -> None:
        if not (isinstance(dim, int) and dim >= 1):
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        samples = _fitted_samples(score_fn)
        if samples is not None and samples.shape[1] != dim:
            raise ValueError(f"dim={dim} but score_fn was fitted on d = {samples.shape[1]} samples")
        if center is True:
            raise ValueError("center=True is not a point: pass None (the fitted samples' mean where score_fn "
                             "has them), False (the origin) or a (d,) tensor")
        if center is None and samples is not None:
            center = samples.mean(0)  # (d,)
        elif center is False:
            center = None
        if center is not None:
            center = torch.as_tensor(center)
            if center.shape != (dim,) or not bool(torch.isfinite(center).all()):
                raise ValueError(f"center must be a finite (d = {dim},) tensor, got shape {tuple(center.shape)}")
            score_fn = _Shifted(score_fn, center)
        if sigma_max is None and samples is not None and isinstance(scheduler, ScoreSdeVeScheduler):
            sigma_max = sigma_max_for(samples, center)
        self.center = center
        overrides: dict = {}
        if "clip_sample" in scheduler.config:
            overrides["clip_sample"] = clip_sample
        if isinstance(scheduler, ScoreSdeVeScheduler):
            if sigma_max is None and scheduler.config.sigma_max == _IMAGE_SIGMA_MAX:
                raise ValueError(f"ScoreSdeVeScheduler's default sigma_max={_IMAGE_SIGMA_MAX} is for 0-255 "
                                 "images; pass sigma_max (e.g. sigma_max_for(data)) for tabular data")
            if sigma_max is not None:
                if not sigma_max > scheduler.config.sigma_min:
                    raise ValueError(f"sigma_max {sigma_max} must exceed sigma_min {scheduler.config.sigma_min}")
                overrides["sigma_max"] = float(sigma_max)
        elif sigma_max is not None:
            raise ValueError("sigma_max applies to ScoreSdeVeScheduler only; other schedulers fix it "
                             "through their beta schedule")
        self.scheduler = type(scheduler).from_config(scheduler.config, **overrides)
        self.hook = SchedulerHook(score_fn, self.scheduler)
        self.dim = dim

    @classmethod
    def from_fitted(cls, fitted, scheduler: SchedulerMixin, *, clip_sample: bool = False) -> "TabularPipeline":
        """A pipeline on a fitted estimator's ``score_fn``, centered on its samples' mean, with
        ``sigma_max = sigma_max_for(samples, mean)`` for SDE-VE: the same as
        ``TabularPipeline(fitted.score_fn, scheduler, dim=fitted.dim)``.

        Example:
            >>> import numpy as np, torch, disco_plug
            >>> from diffusers import DDIMScheduler
            >>> fitted = disco_plug.load().fit(np.random.default_rng(0).normal(5.0, 1.0, size=(256, 2)))
            >>> pipe = TabularPipeline.from_fitted(fitted, DDIMScheduler())
            >>> pipe(4, num_inference_steps=5, generator=torch.Generator().manual_seed(0)).shape
            torch.Size([4, 2])
        """
        samples = torch.as_tensor(fitted.samples)
        center = samples.mean(0)
        sigma_max = sigma_max_for(samples, center) if isinstance(scheduler, ScoreSdeVeScheduler) else None
        return cls(fitted.score_fn, scheduler, fitted.dim, center=center, sigma_max=sigma_max,
                   clip_sample=clip_sample)

    @torch.no_grad()
    def __call__(self, num_samples: int, *, num_inference_steps: int = 50,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None, correct_steps: int = 1) -> Tensor:
        """Draw (num_samples, d) points. ``correct_steps`` is the Langevin corrector count of SDE-VE."""
        if num_samples < 1 or num_inference_steps < 1:
            raise ValueError(f"num_samples and num_inference_steps must be >= 1, got "
                             f"{num_samples}, {num_inference_steps}")
        s = self.scheduler
        noise = torch.randn(num_samples, self.dim, generator=generator, dtype=dtype, device=device)
        if self.hook.ve:
            return self._sample_ve(noise, num_inference_steps, generator, correct_steps)
        s.set_timesteps(num_inference_steps, device=device)
        extra = {"generator": generator} if "generator" in inspect.signature(s.step).parameters else {}
        x = noise * s.init_noise_sigma  # (num_samples, d)
        for t in s.timesteps:
            model_output = self.hook(s.scale_model_input(x, t), t).sample
            x = s.step(model_output, t, x, **extra).prev_sample
        return self._uncenter(x)

    def _uncenter(self, x: Tensor) -> Tensor:
        return x if self.center is None else x + self.center.to(x)

    def _sample_ve(self, noise: Tensor, steps: int, generator: torch.Generator | None,
                   correct_steps: int) -> Tensor:
        s = self.scheduler
        s.set_timesteps(steps)
        s.set_sigmas(steps)
        x = noise * s.config.sigma_max
        for i, t in enumerate(s.timesteps):
            sigma = s.sigmas[i].to(x)
            for _ in range(correct_steps):
                x = s.step_correct(self.hook(x, sigma).sample, x, generator=generator).prev_sample
            out = s.step_pred(self.hook(x, sigma).sample, t, x, generator=generator)
            x, mean = out.prev_sample, out.prev_sample_mean
        return self._uncenter(mean)
