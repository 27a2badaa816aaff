"""disco_plug.plot: figures build on the Agg backend, panels show what they claim, bad input is named."""

import doctest
import io

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from disco_plug import plot  # noqa: E402
from disco_plug.gmm import GaussianMixture  # noqa: E402
from disco_plug.densities.kde import GaussianKDE  # noqa: E402

GMM = GaussianMixture.from_components([0.3, 0.7], torch.tensor([[-2.0, 0.0], [1.5, 1.0]], dtype=torch.float64),
                                      torch.tensor([[0.5, 0.3], [0.4, 0.8]], dtype=torch.float64))
X = GMM.sample(400, generator=torch.Generator().manual_seed(0))[0]


def _render(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    return buf.getvalue()


def test_docstring_example_runs():
    assert doctest.testmod(plot).failed == 0


def test_evaluate_accepts_every_density_source():
    y = np.array([[0.0, 0.0], [1.0, -1.0]])
    exact = [t.numpy() for t in GMM.log_prob_and_score(torch.as_tensor(y))]
    for source in (GMM, lambda pts: GMM.log_prob_and_score(torch.as_tensor(pts))):
        log_p, score = plot.evaluate_2d(source, y)
        np.testing.assert_allclose(log_p, exact[0])
        np.testing.assert_allclose(score, exact[1])
    with pytest.raises(TypeError, match="cannot evaluate a density"):
        plot.evaluate_2d(object(), y)


def test_density_score_2d_panels_share_the_truths_colour_scale():
    kde = GaussianKDE(X, 0.3)
    fig = plot.density_score_2d(X, kde, truth=GMM, others={"Silverman": GaussianKDE(X, "silverman")},
                                resolution=25, arrows=5)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["DiScoFormer", "KDE (scott)", "Silverman", "exact density"]
    grid = np.stack(np.meshgrid(*(np.linspace(*panels[-1].get_xlim(), 25), np.linspace(*panels[-1].get_ylim(), 25))), -1)
    peak = float(GMM.log_prob(torch.as_tensor(grid.reshape(-1, 2))).exp().max())
    for ax in panels:
        assert ax.images[0].get_clim() == pytest.approx((0.0, peak))
        assert len(ax.collections) == 2  # the score arrows and the sample dots
    assert len(_render(fig)) > 1000


def test_density_score_2d_fits_the_bundled_estimator_by_default():
    fig = plot.density_score_2d(X[:100], resolution=12, arrows=3, kde_bandwidth=None, show_samples=False)
    (ax,) = [a for a in fig.axes if a.get_title()]
    assert ax.get_title() == "DiScoFormer" and len(ax.collections) == 1
    assert np.isfinite(ax.images[0].get_array()).all()


def test_arrows_follow_the_score():
    import matplotlib.figure

    ax = matplotlib.figure.Figure().subplots()
    plot.density_score_panel(ax, GMM, (-4, 4, -3, 4), resolution=10, arrows=4)
    quiver = ax.collections[0]
    offsets = np.asarray(quiver.get_offsets())
    _, score = GMM.log_prob_and_score(torch.as_tensor(offsets))
    uv = np.stack([quiver.U, quiver.V], 1)
    cosine = (uv * score.numpy()).sum(1) / np.linalg.norm(uv, axis=1) / np.linalg.norm(score.numpy(), axis=1)
    np.testing.assert_allclose(cosine, 1.0, atol=1e-9)


def test_marginals_pair_plot_and_image_grid():
    rng = np.random.default_rng(0)
    ref, gen = rng.normal(size=(300, 5)), rng.normal(size=(200, 5))
    fig = plot.marginals({"a": gen, "b": torch.as_tensor(gen + 1)}, ref, dims=[0, 2, 4], columns=2)
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["x[0]", "x[2]", "x[4]"]
    fig = plot.pair_plot(gen, ref, dims=(1, 3, 4), names=list("abcde"))
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 6 and visible[-1].get_xlabel() == "e"
    fig = plot.image_grid({"train": rng.uniform(size=(3, 64)), "new": rng.uniform(size=(12, 64))}, (8, 8), per_row=5)
    assert sum(len(ax.images) for ax in fig.axes) == 3 + 5
    assert len(_render(fig)) > 1000


@pytest.mark.parametrize("call, message", [
    (lambda: plot.density_score_2d(np.zeros((10, 3))), "d=2 columns"),
    (lambda: plot.marginals(np.zeros((5, 2)), np.ones((5, 3))), "d=3 columns"),
    (lambda: plot.marginals(np.zeros((5, 2)), np.ones((5, 2)), dims=[2]), "dims must be indices"),
    (lambda: plot.pair_plot(np.zeros((5, 2)), np.ones((5, 2)), dims=[0]), "at least two"),
    (lambda: plot.pair_plot(np.full((5, 2), np.nan), np.ones((5, 2)), dims=[0, 1]), "NaN or inf"),
    (lambda: plot.image_grid({}, (8, 8)), "rows is empty"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
