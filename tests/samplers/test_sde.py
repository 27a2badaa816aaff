import pytest
import torch
from gmm_oracle import N, SIGMA_MAX, TARGET, prior

from disco_plug.samplers import (NonFiniteSampleError, get_sigmas_geometric, get_sigmas_karras, get_sigmas_vp,
                                 sample_ve_sde, sample_vp_sde, to_denoised, vp_scale)


@pytest.mark.parametrize("corrector_steps", [0, 1])
def test_ve_sde_reproduces_target(matches_target, corrector_steps):
    g = torch.Generator().manual_seed(10 + corrector_steps)
    sigmas = get_sigmas_geometric(200, 0.01, SIGMA_MAX)
    matches_target(sample_ve_sde(TARGET.score_fn, prior(SIGMA_MAX, N, g), sigmas,
                                 corrector_steps=corrector_steps, generator=g))


@pytest.mark.parametrize("corrector_steps", [0, 1])
def test_vp_sde_reproduces_target(matches_target, corrector_steps):
    g = torch.Generator().manual_seed(20 + corrector_steps)
    sigmas = get_sigmas_vp(200)
    x0 = vp_scale(float(sigmas[0])) * prior(float(sigmas[0]), N, g)
    matches_target(sample_vp_sde(TARGET.score_fn, x0, sigmas, corrector_steps=corrector_steps, generator=g))


def test_callback_sees_every_step_and_a_consistent_denoiser():
    seen = []
    sigmas = get_sigmas_geometric(5, 0.1, 3.0)
    sample_ve_sde(TARGET.score_fn, torch.zeros(8, 2, dtype=torch.float64), sigmas,
                  generator=torch.Generator().manual_seed(0), callback=seen.append)
    assert [info["i"] for info in seen] == list(range(5))
    assert [info["sigma_next"] for info in seen] == sigmas[1:].tolist()
    last = seen[-1]
    assert torch.allclose(last["x"], last["denoised"])  # the final step to sigma = 0 is the denoiser


def test_schedules():
    geo = get_sigmas_geometric(4, 0.1, 10.0)
    assert geo.shape == (5,) and geo[-1] == 0
    assert torch.allclose(geo[:4], torch.logspace(1, -1, 4, dtype=torch.float64))
    kar = get_sigmas_karras(10, 0.01, 80.0, append_zero=False)
    assert kar[0] == pytest.approx(80.0) and kar[-1] == pytest.approx(0.01) and bool((kar.diff() < 0).all())
    vp = get_sigmas_vp(50, append_zero=False)
    log_alpha_bar = -(0.1 + 0.5 * 19.9)  # t = 1
    assert vp[0] == pytest.approx((1 / torch.tensor(log_alpha_bar).exp() - 1).sqrt().item())
    assert bool((vp.diff() < 0).all()) and vp[-1] < 0.02
    with pytest.raises(ValueError, match="sigma_min <= sigma_max"):
        get_sigmas_geometric(4, 1.0, 0.5)


def test_to_denoised_is_the_posterior_mean_for_a_gaussian():
    # x0 ~ N(0, 1), x = x0 + sigma z: E[x0 | x] = x / (1 + sigma^2); the score is -x / (1 + sigma^2).
    x, sigma = torch.randn(10, 3, dtype=torch.float64), 0.7
    assert torch.allclose(to_denoised(x, sigma, -x / (1 + sigma**2)), x / (1 + sigma**2))


def test_nan_score_raises_naming_sampler_and_step():
    def score(x, sigma):
        return torch.full_like(x, float("nan")) if sigma < 1.0 else -x
    with pytest.raises(NonFiniteSampleError, match=r"sample_vp_sde: the score.*step 2"):
        sample_vp_sde(score, torch.zeros(4, 2), torch.tensor([4.0, 2.0, 0.5, 0.0]))
    # with a corrector, level 0.5 is first visited by the corrector that ends step 1
    with pytest.raises(NonFiniteSampleError, match=r"sample_ve_sde: the score.*step 1 \(sigma=0.5\)"):
        sample_ve_sde(score, torch.zeros(4, 2), torch.tensor([4.0, 2.0, 0.5, 0.0]), corrector_steps=1)


def test_bad_schedule_and_generator_raise():
    with pytest.raises(ValueError, match="at least 2 entries"):
        sample_ve_sde(TARGET.score_fn, torch.zeros(2, 2), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="only the last may be 0"):
        sample_ve_sde(TARGET.score_fn, torch.zeros(2, 2), torch.tensor([1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="snr must be positive"):
        sample_ve_sde(TARGET.score_fn, torch.zeros(2, 2), torch.tensor([1.0, 0.0]), snr=0.0)
    if torch.cuda.is_available():  # pragma: no cover - CPU CI
        with pytest.raises(ValueError, match="generator is on"):
            sample_ve_sde(TARGET.score_fn, torch.zeros(2, 2, device="cuda"), torch.tensor([1.0, 0.5]),
                          generator=torch.Generator())
