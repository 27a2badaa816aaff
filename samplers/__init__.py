"""Samplers driven by a score function `score_fn(x, sigma)`, the score of p * N(0, sigma^2 I).

Plain functions in the k-diffusion style, on batched chains (..., d), with an explicit
`torch.Generator`, an optional callback and progress bar:

- Langevin family (`langevin.py`): `sample_langevin` (ULA), `sample_mala` (+ BlackJAX-style
  `mala_init` / `mala_step`), `sample_annealed_langevin` (Song & Ermon 2019).
- Reverse SDEs (`sde.py`): `sample_ve_sde`, `sample_vp_sde`, each with an optional Langevin corrector
  (predictor-corrector, Song et al. 2021).
- Probability-flow ODE (`ode.py`): `sample_probability_flow` (Heun, Karras et al. 2022).
- Landau particle method (`landau.py`): `landau_velocity`, the score-form interaction of Carrillo et al. 2020.
- `methods.py`: the table of `FittedEstimator.sample`'s methods (`METHODS`: default steps and a runner each).

Schedules (`get_sigmas_*`), `to_denoised` and `append_dims` are shared; `energy_distance` and
`memorization_ratio` check sample quality. A NaN/inf in a chain raises `NonFiniteSampleError`.
"""

from ._common import (NonFiniteSampleError, append_dims, get_sigmas_geometric, get_sigmas_karras, get_sigmas_vp,
                      to_denoised, vp_scale)
from .diagnostics import energy_distance, memorization_ratio
from .langevin import (MALAInfo, MALAState, mala_init, mala_step, sample_annealed_langevin, sample_langevin,
                       sample_mala)
from .landau import landau_velocity
from .methods import METHODS, SAMPLING_METHODS, SamplingMethod, SamplingProblem
from .ode import sample_probability_flow
from .sde import langevin_corrector, sample_ve_sde, sample_vp_sde

__all__ = ["sample_langevin", "sample_mala", "mala_init", "mala_step", "MALAState", "MALAInfo",
           "sample_annealed_langevin", "sample_ve_sde", "sample_vp_sde", "langevin_corrector",
           "sample_probability_flow", "get_sigmas_geometric", "get_sigmas_karras", "get_sigmas_vp",
           "to_denoised", "append_dims", "vp_scale", "NonFiniteSampleError", "energy_distance",
           "memorization_ratio", "landau_velocity", "METHODS", "SAMPLING_METHODS", "SamplingMethod",
           "SamplingProblem"]
