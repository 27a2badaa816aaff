"""Bounded columns (disco_plug.support, disco_plug.bounded): fit(samples, bounds=...) is a normalized
density on the box, zero outside it, whose score is its gradient, and whose samples stay inside."""

import math
import pickle
import warnings

import numpy as np
import pytest
import torch

import disco_plug
from disco_plug.bounded import BoundedFit
from disco_plug.columns import DegenerateSamplesWarning
from disco_plug.support import Bounds, Transform
from disco_plug.targets import BetaProduct

BETA = BetaProduct(2)
X = BETA.sample(1024, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def fitted():
    return disco_plug.load().fit(X, bounds=[(0, 1), (0, None)])


# -- parsing -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, name", [((0, None), "log"), ((0.0, math.inf), "log"), ((None, 2), "log(2 - x)"),
                                        ((0, 1), "logit"), ((-1, 3), "interval(-1, 3)"), (None, "identity"),
                                        ((None, None), "identity"), ("logit", "logit")])
def test_pairs_parse_the_scipy_optimize_way(spec, name):
    assert Transform.parse(spec).name == name


@pytest.mark.parametrize("spec, message", [
    ([(1, 0), None], "column '0'.*lower < upper"),
    ([(float("nan"), 1), None], "bad bounds"),
    ([(0, 1)], "1 entries for 2 columns"),
    ({"c": (0, 1)}, "column 'c', which is not one of"),
    ({5: (0, 1)}, "column 5"),
    ("01", "sequence of 2"),
])
def test_bad_bounds_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        Bounds.parse(spec, 2)


def test_no_finite_bound_is_an_ordinary_fit():
    assert Bounds.parse([None, (None, None)], 2) is None
    assert isinstance(disco_plug.load().fit(X, bounds=[None, None]), disco_plug.FittedEstimator)


def test_mapping_by_name_and_index():
    b = Bounds.parse({"p": (0, 1), -1: (0, None)}, 3, names=["p", "q", "r"])
    assert [t.name for t in b.transforms] == ["logit", "identity", "log"]


def test_samples_on_or_outside_a_bound_are_named_by_column_row_and_value():
    x = X.clone()
    x[5, 1] = 0.0
    x[7, 1] = -0.5
    with pytest.raises(ValueError, match=r"column 'b' \(bounds \(0, inf\)\): row 5 is 0, 2 of 1024 rows"):
        disco_plug.load().fit(x, bounds=[(0, 1), (0, None)], names=["a", "b"])


# -- the density ---------------------------------------------------------------------------------------
def test_score_is_the_gradient_of_the_log_density(fitted):
    y = BETA.sample(64, generator=torch.Generator().manual_seed(1)).clamp(1e-3, 0.999)
    log_p, score = fitted.log_density_and_score(y)
    eps = 1e-6
    for j in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[j] = eps
        fd = (fitted.log_density(y + e) - fitted.log_density(y - e)) / (2 * eps)
        assert torch.allclose(score[:, j], fd, rtol=1e-5, atol=1e-5 * float(score[:, j].abs().max()))
    assert bool(torch.isfinite(log_p).all())


def test_zero_outside_the_box_and_vanishing_at_its_edge(fitted):
    outside = torch.tensor([[-0.1, 0.5], [1.0, 0.5], [0.5, -1e-9], [0.5, 0.0]], dtype=torch.float64)
    log_p, score = fitted.log_density_and_score(outside)
    assert bool((log_p == -math.inf).all()) and bool((score == 0).all())
    # approaching the lower bound of column 0 the density falls without bound (Beta(2, 5): like x)
    edge = torch.tensor([[1e-2, 0.3], [1e-4, 0.3], [1e-6, 0.3]], dtype=torch.float64)
    lp = fitted.log_density(edge)
    assert bool((lp[1:] < lp[:-1] - 2).all())


def test_normalized_on_the_box(fitted):
    total, se = fitted.normalization(8192, generator=torch.Generator().manual_seed(2))
    assert abs(total - 1) < 4 * se + 2e-3


def test_held_out_likelihood_beats_the_unbounded_fit():
    # Beta(2, 5) has density going to 0 at 0: an estimate on R leaks mass across the edge
    y = BETA.sample(4000, generator=torch.Generator().manual_seed(3))
    est = disco_plug.load()
    diff = est.fit(X, bounds=[(0, 1)] * 2).log_density(y) - est.fit(X).log_density(y)
    assert float(diff.mean()) > 3 * float(diff.std()) / math.sqrt(len(diff))


def test_equivariant_to_shift_and_scale_of_bounds_and_data():
    est = disco_plug.load()
    y = BETA.sample(50, generator=torch.Generator().manual_seed(4))
    base = est.fit(X, bounds=[(0, 1), (0, 1)]).log_density(y)
    scale, shift = torch.tensor([1e3, 1e-4], dtype=torch.float64), torch.tensor([-7.0, 2.0], dtype=torch.float64)
    bounds = [(float(shift[j]), float(shift[j] + scale[j])) for j in range(2)]
    moved = est.fit(X * scale + shift, bounds=bounds).log_density(y * scale + shift)
    assert torch.allclose(moved, base - torch.log(scale).sum(), atol=1e-6)


# -- samples, updates, the rest of the interface ---------------------------------------------------------
@pytest.mark.parametrize("method, options", [("exact", {}), ("ode", {"steps": 8})])
def test_samples_lie_inside_the_bounds(fitted, method, options):
    s = fitted.sample(500, method=method, generator=torch.Generator().manual_seed(5), **options)
    assert s.shape == (500, 2) and bool(fitted.bounds.inside(s).all())
    if method == "exact":  # and follow the data: means within 5 standard errors
        se = X.std(0) / math.sqrt(500)
        assert bool(((s.mean(0) - X.mean(0)).abs() < 5 * se).all())


def test_numpy_in_numpy_out_and_pickles(fitted):
    f = disco_plug.load().fit(X.numpy(), bounds=[(0, 1), (0, None)])
    assert isinstance(f.log_density(X[:3].numpy()), np.ndarray)
    again = pickle.loads(pickle.dumps(fitted))
    assert torch.equal(again.log_density(X[:5]), fitted.log_density(X[:5]))


def test_update_follows_moved_points_inside_the_bounds(fitted):
    moved = X * 0.9 + 0.02
    up = fitted.update(moved)
    assert isinstance(up, BoundedFit) and up.n == X.shape[0]
    y = BETA.sample(2000, generator=torch.Generator().manual_seed(6)) * 0.9 + 0.02
    fresh = disco_plug.load().fit(moved, bounds=[(0, 1), (0, None)])
    assert abs(float((up.log_density(y) - fresh.log_density(y)).mean())) < 0.05
    with pytest.raises(ValueError, match="row 0"):
        fitted.update(X - X[0])


def test_noised_density_is_refused_with_the_reason(fitted):
    with pytest.raises(ValueError, match="not vanish outside the bounds"):
        fitted.convolved(0.1)
    with pytest.raises(ValueError, match="not vanish outside the bounds"):
        fitted.score_fn(X[:2], 0.1)


def test_a_constant_column_inside_bounds_stays_constant():
    x = torch.cat([X, torch.full((X.shape[0], 1), 0.25, dtype=torch.float64)], 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f = disco_plug.load().fit(x, bounds=[(0, 1), (0, 1), (0, 1)])
    assert any(issubclass(w.category, DegenerateSamplesWarning) for w in caught)
    s = f.sample(100, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(s[:, 2], torch.full((100,), 0.25, dtype=torch.float64))
