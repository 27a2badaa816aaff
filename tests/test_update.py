"""FittedEstimator.update: warm-started refits of an evolving sample set."""

import math

import numpy as np
import pytest
import torch

from disco_plug.gmm import random_gmm, random_rotation


def _moved(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The particles after a small step: a slight rotation, stretch and drift, plus jitter per point."""
    d = x.shape[1]
    a = torch.eye(d, dtype=x.dtype) + 0.1 * (random_rotation(1, d, generator=g, dtype=x.dtype)[0] - torch.eye(d, dtype=x.dtype))
    return x @ (1.05 * a) + 0.2 + 0.05 * torch.randn(x.shape, generator=g, dtype=x.dtype)


@pytest.fixture(scope="module")
def evolving():
    g = torch.Generator().manual_seed(11)
    gmm = random_gmm(1, 4, generator=g, dtype=torch.float64, components=(3, 3))
    x = gmm.sample(1536, generator=g)[0]
    g_move = torch.Generator().manual_seed(12)
    both = _moved(x, g_move)  # the same step for the fitted points and the held-out ones
    return x[:1024], both[:1024], both[1024:]


def test_update_with_the_same_samples_and_no_steps_is_the_fit(estimator, evolving):
    x, _, held = evolving
    fitted = estimator.fit(x)
    again = fitted.update(x, iters=0)
    np.testing.assert_allclose(again.log_density(held).numpy(), fitted.log_density(held).numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(again.score(held).numpy(), fitted.score(held).numpy(), rtol=0, atol=1e-7)


def test_update_follows_moved_particles_about_as_well_as_a_refit(estimator, evolving):
    x, moved, held = evolving
    fitted = estimator.fit(x)
    updated, refit = fitted.update(moved), estimator.fit(moved)
    ll_up, ll_refit = updated.log_density(held), refit.log_density(held)
    ll_stale = fitted.log_density(held)
    diff = ll_refit - ll_up  # paired by held-out point
    se = diff.std() / len(diff) ** 0.5
    d = x.shape[1]
    # The warm start keeps K and the stacking weights: a small, bounded loss against a full refit (0.02
    # nats per dimension) beyond 3 standard errors of the paired difference, far less than not updating.
    assert float(diff.mean()) <= 0.02 * d + 3 * float(se), (float(diff.mean()), float(se))
    assert float((ll_refit - ll_stale).mean()) > 10 * max(float(diff.mean()), 3 * float(se))
    assert updated.n == refit.n and torch.isfinite(updated.score(held)).all()


def test_update_with_a_different_number_of_points(estimator, evolving):
    x, moved, held = evolving
    fitted = estimator.fit(x)
    for m in (300, 1024 + 400):
        new = torch.cat([moved, held])[:m]
        updated = fitted.update(new.numpy())
        assert updated.n == m
        log_p = updated.log_density(held.numpy())
        assert isinstance(log_p, np.ndarray) and np.isfinite(log_p).all()
        assert abs(updated.normalization(4096, generator=torch.Generator().manual_seed(0))[0] - 1.0) < 0.05


def test_update_of_a_noised_fit_stays_noised(estimator, evolving):
    x, moved, held = evolving
    noised = estimator.fit(x).convolved(0.3)
    updated = noised.update(moved)
    assert updated.noise_std == pytest.approx(0.3)
    reference = estimator.fit(moved).convolved(0.3)
    gap = (reference.log_density(held) - updated.log_density(held)).mean()
    assert abs(float(gap)) < 0.02 * x.shape[1]


def test_update_refuses_bad_input_by_name(estimator, evolving):
    x, moved, _ = evolving
    fitted = estimator.fit(x)
    with pytest.raises(ValueError, match="columns"):
        fitted.update(moved[:, :3])
    bad = moved.clone()
    bad[5, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN|nan|finite"):
        fitted.update(bad)
    with pytest.raises(ValueError, match="iters"):
        fitted.update(moved, iters=-1)
    with pytest.raises(ValueError, match="reweigh"):
        fitted.update(moved, reweigh="yes")


def test_reweighed_update_chooses_the_weights_a_fit_would(estimator, evolving):
    """reweigh=True with the same samples and no EM steps: the same mixtures and KDEs, so the held-out
    choice gives the fit's own weights; on moved particles the weights are chosen anew (a simplex vector)
    and the fit is at least as likely on held-out points as a kept-weights update, within 3 paired SE."""
    x, moved, held = evolving
    fitted = estimator.fit(x)
    same = fitted.update(x, iters=0, reweigh=True)
    torch.testing.assert_close(same.density.weights, fitted.density.weights, rtol=0, atol=1e-10)
    kept, reweighed = fitted.update(moved), fitted.update(moved, reweigh=True)
    w = reweighed.density.weights
    assert float(w.min()) >= 0 and abs(float(w.sum()) - 1) < 1e-12
    diff = kept.log_density(held) - reweighed.log_density(held)
    assert float(diff.mean()) <= 3 * float(diff.std()) / len(diff) ** 0.5


def test_update_onto_a_degenerate_set_is_a_full_fit(estimator, evolving):
    x, moved, held = evolving
    flat = moved.clone()
    flat[:, 3] = 1.5  # a column became constant
    with pytest.warns(Warning, match="3"):
        updated = estimator.fit(x).update(flat)
    assert updated.hull is not None and list(updated.hull.dependent) == [3]


def test_update_after_a_stretch_and_drift_is_the_refit(estimator, evolving):
    """Particles that keep their order and move by a stretch and a drift: the fit is exactly equivariant to
    that map (a common scale: the common-axes family lives in the data's own frame, which a per-column
    stretch changes), and update's least-squares motion carries the mixtures to the same place."""
    x, _, held = evolving
    scale = 1.7
    shift = torch.tensor([0.3, -1.0, 0.0, 2.0], dtype=x.dtype)
    moved, held_moved = x * scale + shift, held * scale + shift
    updated = estimator.fit(x).update(moved, iters=0)
    np.testing.assert_allclose(updated.log_density(held_moved).numpy(),
                               estimator.fit(moved).log_density(held_moved).numpy(), rtol=0, atol=1e-6)


def test_update_keeps_the_fitted_covariance_families(estimator):
    """EM steps from a converged fit on the same points leave it where it was: the refinement keeps
    diagonal and common-axes fits in their family (full covariances would move them)."""
    g = torch.Generator().manual_seed(102)
    gmm = random_gmm(1, 10, generator=g, dtype=torch.float64, components=(3, 6))
    x, held = gmm.sample(1024, generator=g)[0], gmm.sample(256, generator=g)[0]
    fitted = estimator.fit(x)
    gap = (fitted.update(x, iters=2).log_density(held) - fitted.log_density(held)).abs().max()
    assert float(gap) < 1e-3


def test_update_reports_grid_valued_columns_as_fit_does(estimator, evolving):
    import disco_plug

    x, moved, _ = evolving
    gridded = moved.clone()
    gridded[:, 1] = torch.round(gridded[:, 1] * 2) / 2  # a 0.5 grid
    with pytest.warns(disco_plug.GridValuedColumnsWarning, match="1"):
        estimator.fit(x).update(gridded)


def test_update_without_mixtures_keeps_the_kdes_and_weights():
    """A config with no EM mixtures: update is the new KDEs and the Gaussian fit with the fit's weights; for
    a rescaled set that is exactly the rescaled density (log p(1.1 y) = log p(y) - d log 1.1)."""
    from disco_plug.blend.gated import GatedBlend
    from disco_plug.config import ModelConfig
    from disco_plug.estimator import Estimator

    est = Estimator(GatedBlend(ModelConfig(mixture_penalties=(), t_mixture_penalties=(), gate_context_features=False),
                               residual=False))
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    fitted = est.fit(x)
    moved = fitted.update(1.1 * x)
    torch.testing.assert_close(moved.density.weights, fitted.density.weights)
    y = torch.randn(5, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(moved.log_density(1.1 * y), fitted.log_density(y) - 2 * math.log(1.1))
    assert torch.isfinite(fitted.update(1.1 * x, reweigh=True).log_density(x[:5])).all()
