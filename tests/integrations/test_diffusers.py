"""diffusers adapters: the scheduler hook's predictions and sigmas, and the tabular pipeline with six
schedulers on the exact mixture of integration_oracle.py moved far from the origin (so clipping to
[-1, 1] or an origin-centered prior would show), and every documented construction on raw data far from
the origin (a fitted score_fn centers the prior on its samples by itself)."""

import doctest

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,  # noqa: E402
                       EulerDiscreteScheduler, HeunDiscreteScheduler, ScoreSdeVeScheduler)
from integration_oracle import ESTIMATOR_SLACK, TARGET, assert_moments, exact_moments, iid_ess  # noqa: E402

import disco_plug.integrations.diffusers as diff_adapters  # noqa: E402
from disco_plug.gmm import GaussianMixture  # noqa: E402
from disco_plug.integrations.diffusers import SchedulerHook, TabularPipeline, add_noise, sigma_max_for  # noqa: E402

# diffusers' Euler, Heun and DPM-Solver schedulers call np.array() on torch tensors, and numpy 2 warns
# that torch's __array__ takes no copy keyword: a DeprecationWarning between those two libraries.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

SHIFT = 6.0
FAR = GaussianMixture(TARGET.log_weights, TARGET.means + SHIFT, TARGET.variances, TARGET.rotation)
N = 2000


def test_docstring_examples():
    assert doctest.testmod(diff_adapters).failed == 0



# Steps per scheduler: enough that the discretization bias is well below the N = 2000 tolerance
# (checked at N = 20000, where every moment was within 2 standard errors).
CASES = {
    "ddpm": (DDPMScheduler, {}, 1000),
    "ddim": (DDIMScheduler, {}, 200),
    "ddim-v": (DDIMScheduler, {"prediction_type": "v_prediction"}, 200),
    "euler": (EulerDiscreteScheduler, {}, 200),
    "euler-x0": (EulerDiscreteScheduler, {"prediction_type": "sample"}, 200),
    "heun": (HeunDiscreteScheduler, {}, 50),
    "dpm-solver": (DPMSolverMultistepScheduler, {}, 25),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_pipeline_recovers_the_mixture(name):
    make, config, steps = CASES[name]
    mean, _ = exact_moments(FAR)
    pipe = TabularPipeline(FAR.score_fn, make(**config), dim=2, center=mean)
    x = pipe(N, num_inference_steps=steps, generator=torch.Generator().manual_seed(0))
    assert x.shape == (N, 2) and x.dtype == torch.float32
    assert_moments(x[None], iid_ess, gmm=FAR)


def test_sde_ve_pipeline_recovers_the_mixture():
    mean, _ = exact_moments(FAR)
    data = FAR.sample(1000, generator=torch.Generator().manual_seed(1))[0]
    pipe = TabularPipeline(FAR.score_fn, ScoreSdeVeScheduler(), dim=2, center=mean,
                           sigma_max=sigma_max_for(data, center=mean))
    x = pipe(N, num_inference_steps=500, generator=torch.Generator().manual_seed(0))
    assert_moments(x[None], iid_ess, gmm=FAR)


def test_uncentered_prior_biases_far_data():
    """Why `center` exists: an origin-centered prior with finite sigma_max drags the mean (Heun's
    sigma_max is 14.6), far beyond the 4-standard-error tolerance at N = 2000."""
    pipe = TabularPipeline(FAR.score_fn, HeunDiscreteScheduler(), dim=2)
    x = pipe(N, num_inference_steps=50, generator=torch.Generator().manual_seed(0))
    with pytest.raises(AssertionError, match="mean"):
        assert_moments(x[None], iid_ess, gmm=FAR)


def test_pipeline_turns_off_clipping_without_touching_the_scheduler():
    scheduler = DDIMScheduler()
    pipe = TabularPipeline(FAR.score_fn, scheduler, dim=2)
    assert scheduler.config.clip_sample and not pipe.scheduler.config.clip_sample
    clipped = TabularPipeline(FAR.score_fn, scheduler, dim=2, clip_sample=True)
    assert float(clipped(64, num_inference_steps=10).abs().max()) <= 1.0 + 1e-6


def test_sde_ve_refuses_the_image_sigma_max():
    with pytest.raises(ValueError, match="sigma_max"):
        TabularPipeline(FAR.score_fn, ScoreSdeVeScheduler(), dim=2)
    with pytest.raises(ValueError, match="ScoreSdeVeScheduler only"):
        TabularPipeline(FAR.score_fn, DDPMScheduler(), dim=2, sigma_max=10.0)


def test_add_noise_broadcasts_on_tabular_data():
    scheduler = ScoreSdeVeScheduler(sigma_max=10.0)
    x0, noise = torch.zeros(3, 2), torch.ones(3, 2)
    timesteps = torch.tensor([0, 500, 999])
    noisy = add_noise(scheduler, x0, noise, timesteps)
    torch.testing.assert_close(noisy, scheduler.discrete_sigmas[timesteps][:, None].expand(3, 2))
    ddpm = DDPMScheduler()
    torch.testing.assert_close(add_noise(ddpm, x0, noise, timesteps), ddpm.add_noise(x0, noise, timesteps))


def gaussian_tweedie(m, v, y, sigma):
    """E[x0 | y] for x0 ~ N(m, v I), y = x0 + sigma * eps."""
    return m + v / (v + sigma**2) * (y - m)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("make", [DDPMScheduler, EulerDiscreteScheduler])
def test_hook_predictions_match_tweedie(prediction_type, make):
    m, v = 2.0, 0.5
    gauss = GaussianMixture.from_components([1.0], torch.full((1, 2), m, dtype=torch.float64),
                                            torch.full((1, 2), v, dtype=torch.float64))
    scheduler = make(prediction_type=prediction_type)
    scheduler.set_timesteps(10)
    t = scheduler.timesteps[3]
    x_t = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    model_input = scheduler.scale_model_input(x_t, t)
    hook = SchedulerHook(gauss.score_fn, scheduler)
    sigma = hook.sigma(t)
    if make is EulerDiscreteScheduler:
        assert sigma == float(scheduler.sigmas[scheduler.step_index])
    else:
        abar = float(scheduler.alphas_cumprod[int(t)])
        assert sigma == pytest.approx(((1 - abar) / abar) ** 0.5)
    scale = (1 + sigma**2) ** 0.5
    y = model_input * scale
    x0 = gaussian_tweedie(m, v, y, sigma)
    eps = (y - x0) / sigma
    expected = {"epsilon": eps, "sample": x0, "v_prediction": (eps - sigma * x0) / scale}[prediction_type]
    torch.testing.assert_close(hook(model_input, t).sample, expected, rtol=1e-5, atol=1e-5)  # float32 tables
    assert hook(model_input, t, return_dict=False)[0].shape == (5, 2)


def test_hook_reads_dpm_solver_sigma_before_its_first_step():
    scheduler = DPMSolverMultistepScheduler()
    scheduler.set_timesteps(10)
    assert scheduler.step_index is None
    assert SchedulerHook(TARGET.score_fn, scheduler).sigma(scheduler.timesteps[0]) == float(scheduler.sigmas[0])


def test_hook_rejects_mixed_noise_levels_and_bad_outputs():
    hook = SchedulerHook(TARGET.score_fn, ScoreSdeVeScheduler())
    with pytest.raises(ValueError, match="one noise level"):
        hook(torch.zeros(2, 2), torch.tensor([1.0, 2.0]))
    bad = SchedulerHook(lambda x, sigma: x[:, :1], DDPMScheduler())
    with pytest.raises(ValueError, match="returned shape"):
        bad(torch.zeros(2, 2), torch.tensor(10))
    with pytest.raises(ValueError, match="prediction_type"):
        SchedulerHook(TARGET.score_fn, DDPMScheduler(prediction_type="flow"))


def test_pipeline_on_the_bundled_estimator(fitted):
    # Few steps keep the test short; DDIM (first order)
    # because higher-order solvers (Heun, DPM-Solver at 10 steps) amplify the estimator's rare large
    # errors in the tails of p_sigma into outlying samples.
    pipe = TabularPipeline.from_fitted(fitted, DDIMScheduler())
    assert torch.allclose(pipe.center.double(), fitted.samples.mean(0))
    x = pipe(1000, num_inference_steps=12, generator=torch.Generator().manual_seed(0))
    assert_moments(x[None], iid_ess, slack=ESTIMATOR_SLACK)


def test_from_fitted_sets_sigma_max_for_sde_ve(fitted):
    pipe = TabularPipeline.from_fitted(fitted, ScoreSdeVeScheduler())
    expected = sigma_max_for(fitted.samples, fitted.samples.mean(0))
    assert pipe.scheduler.config.sigma_max == pytest.approx(expected)


# -- raw, uncentered data: every documented construction centers the noise prior on the data ----------
def old_faithful_like(n=272, seed=0):
    """(n, 2) float64 draws shaped like Old Faithful (272 eruptions: duration ~3.5 min, waiting ~71 min),
    two clusters of (duration, waiting): far from the origin in the second column, as raw tables are."""
    rng = np.random.default_rng(seed)
    short = rng.random(n)[:, None] < 0.35
    return np.where(short, rng.normal([2.0, 54.5], [0.3, 5.9], size=(n, 2)),
                    rng.normal([4.3, 80.0], [0.4, 5.9], size=(n, 2)))


RAW = old_faithful_like()
RAW_DRAWS = 1000


@pytest.fixture(scope="module")
def raw_fitted(estimator):
    return estimator.fit(RAW)


def assert_mean_matches_the_data(x, data=RAW):
    """The draws' mean within 4 standard errors of the data mean: the estimate's mean is the data's up to
    its own sampling error (sd / sqrt(n)), the draws' mean up to sd / sqrt(m)."""
    data = torch.as_tensor(data)
    mean, sd = data.mean(0), data.std(0)
    tol = 4 * sd * (1 / x.shape[0] + 1 / data.shape[0]) ** 0.5
    err = (x.double().mean(0) - mean).abs()
    assert bool((err <= tol).all()), \
        f"draws' mean {x.mean(0).tolist()} vs data mean {mean.tolist()} (tol {tol.tolist()})"


DOCUMENTED = {
    # README's API table and demos/05_diffusers.ipynb
    "fitted.score_fn": lambda fitted, scheduler: TabularPipeline(fitted.score_fn, scheduler, dim=fitted.dim),
    "from_fitted": lambda fitted, scheduler: TabularPipeline.from_fitted(fitted, scheduler),
    # TabularPipeline's docstring: the noise-conditional view's bound score_fn carries the fit too
    "noised.score_fn": lambda fitted, scheduler: TabularPipeline(fitted.noised.score_fn, scheduler, dim=fitted.dim),
    # TabularPipeline's docstring: a plain score function gets center passed
    "plain score_fn, center=mean": lambda fitted, scheduler: TabularPipeline(
        lambda x, sigma: fitted.score_fn(x, sigma), scheduler, dim=fitted.dim, center=torch.as_tensor(RAW).mean(0)),
}


@pytest.mark.parametrize("make", [DDIMScheduler, EulerDiscreteScheduler])
@pytest.mark.parametrize("construction", sorted(DOCUMENTED))
def test_documented_constructions_keep_the_mean_of_raw_data(raw_fitted, construction, make):
    pipe = DOCUMENTED[construction](raw_fitted, make())
    x = pipe(RAW_DRAWS, num_inference_steps=12, generator=torch.Generator().manual_seed(0))
    assert_mean_matches_the_data(x)


@pytest.mark.parametrize("opt_out", ["false", "zeros"])
def test_center_false_or_zero_opts_out_and_shows_the_origin_bias(raw_fitted, opt_out):
    center = False if opt_out == "false" else torch.zeros(2)
    pipe = TabularPipeline(raw_fitted.score_fn, DDIMScheduler(), dim=2, center=center)
    x = pipe(RAW_DRAWS, num_inference_steps=12, generator=torch.Generator().manual_seed(0))
    with pytest.raises(AssertionError, match="draws' mean"):
        assert_mean_matches_the_data(x)


def test_fitted_score_fn_pipeline_is_from_fitted(raw_fitted):
    for scheduler in (DDIMScheduler(), ScoreSdeVeScheduler()):
        auto = TabularPipeline(raw_fitted.score_fn, scheduler, dim=2)
        explicit = TabularPipeline.from_fitted(raw_fitted, scheduler)
        torch.testing.assert_close(auto.center, raw_fitted.samples.mean(0), rtol=0, atol=0)
        assert auto.scheduler.config == explicit.scheduler.config
    assert auto.scheduler.config.sigma_max == pytest.approx(sigma_max_for(raw_fitted.samples, auto.center))
    draws = [pipe(50, num_inference_steps=5, generator=torch.Generator().manual_seed(0)) for pipe in
             (TabularPipeline(raw_fitted.score_fn, DDIMScheduler(), dim=2),
              TabularPipeline.from_fitted(raw_fitted, DDIMScheduler()))]
    torch.testing.assert_close(draws[0], draws[1], rtol=0, atol=0)


def test_pipeline_checks_dim_and_center_against_the_fit(raw_fitted):
    with pytest.raises(ValueError, match="dim=3 but score_fn was fitted on d = 2"):
        TabularPipeline(raw_fitted.score_fn, DDIMScheduler(), dim=3)
    with pytest.raises(ValueError, match="center=True"):
        TabularPipeline(raw_fitted.score_fn, DDIMScheduler(), dim=2, center=True)
    plain = TabularPipeline(FAR.score_fn, DDIMScheduler(), dim=2)  # an exact mixture carries no samples
    assert plain.center is None
