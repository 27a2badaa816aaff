"""Real tables at the door (disco_plug.columns): constant, collinear and grid-valued columns and n <= d
are fitted, reported by name, and kept by the samples."""

import math
import pickle
import warnings

import numpy as np
import pytest
import torch

from disco_plug.columns import (DegenerateSamplesWarning, GridValuedColumnsWarning, coded_columns, dequantize,
                                find_affine_hull, grid_columns, level_cells)

_rng = np.random.default_rng(3)
BASE = _rng.normal(size=(400, 3)) @ np.array([[1.0, 0.3, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
# columns: 0, 1, a constant, 2, a total 3 x0 - x1 + 5
DEGENERATE = np.c_[BASE[:, :2], np.full(400, 7.25), BASE[:, 2], 3 * BASE[:, 0] - BASE[:, 1] + 5]


def _t(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def _fit_quiet(est, x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateSamplesWarning)
        warnings.simplefilter("ignore", GridValuedColumnsWarning)
        return est.fit(x, **kw)


# -- the affine hull ---------------------------------------------------------------------------------
def test_full_rank_samples_have_no_hull():
    assert find_affine_hull(_t(BASE)) is None


def test_hull_finds_the_constant_and_the_total_and_lifts_the_samples_back():
    hull = find_affine_hull(_t(DEGENERATE))
    assert hull.free.tolist() == [0, 1, 3] and hull.dependent.tolist() == [2, 4]
    assert hull.constant.tolist() == [True, False]
    np.testing.assert_allclose(hull.coef[:, 1], [3.0, -1.0, 0.0], atol=1e-10)
    assert float(hull.offset[0]) == 7.25  # the exact constant, not a rounded mean
    np.testing.assert_allclose(float(hull.offset[1]), 5.0, atol=1e-10)
    lifted = hull.lift(_t(DEGENERATE[:, [0, 1, 3]]))
    np.testing.assert_allclose(lifted.numpy(), DEGENERATE, rtol=0, atol=1e-12 * np.abs(DEGENERATE).max())


@pytest.mark.parametrize("seed", range(4))
def test_hull_is_scale_free(seed):
    """Column scales from 1e-6 to 1e6 find the same free and dependent columns."""
    scales = 10.0 ** np.random.default_rng(seed).uniform(-6, 6, size=DEGENERATE.shape[1])
    hull = find_affine_hull(_t(DEGENERATE * scales + 1e3 * scales))
    assert hull.free.tolist() == [0, 1, 3] and hull.dependent.tolist() == [2, 4]


def test_fewer_points_than_dimensions_span_n_minus_1_free_columns():
    x = _rng.normal(size=(6, 20))
    hull = find_affine_hull(_t(x))
    assert hull.free.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(hull.lift(_t(x[:, :5])).numpy(), x, atol=1e-10)


def test_nearly_but_not_exactly_collinear_columns_stay_free():
    """A column with 1e-4 of its spread left after the regression is a measured column, not a total."""
    x = np.c_[BASE, BASE[:, 0] + 1e-4 * _rng.normal(size=400)]
    assert find_affine_hull(_t(x)) is None


# -- the estimator on a degenerate set ----------------------------------------------------------------
@pytest.fixture(scope="module")
def degenerate_fit(estimator):
    with pytest.warns(DegenerateSamplesWarning) as record:
        fitted = estimator.fit(DEGENERATE, names=["a", "b", "const", "c", "total"])
    return fitted, str(record[0].message)


def test_the_warning_names_every_degenerate_column(degenerate_fit):
    _, message = degenerate_fit
    assert "3-dimensional affine subspace of R^5" in message
    assert "constant column 'const' (= 7.25)" in message
    assert "'total' (of 'a', 'b') is an exact affine function" in message


def test_degenerate_log_density_is_the_free_columns_density(estimator, degenerate_fit):
    fitted, _ = degenerate_fit
    free = estimator.fit(DEGENERATE[:, [0, 1, 3]])
    q = DEGENERATE[:50] + 0.1 * _rng.normal(size=(50, 5))  # off the subspace too: other columns ignored
    lp, s = fitted.log_density_and_score(q)
    lp_ref, s_ref = free.log_density_and_score(q[:, [0, 1, 3]])
    np.testing.assert_allclose(lp, lp_ref, rtol=1e-12)
    np.testing.assert_allclose(s[:, [0, 1, 3]], s_ref, rtol=1e-12)
    assert (s[:, [2, 4]] == 0).all()


def test_degenerate_samples_keep_the_constant_and_the_total(degenerate_fit):
    fitted, _ = degenerate_fit
    for method, kw in (("exact", {}), ("ode", {"steps": 8})):
        x = fitted.sample(64, method=method, generator=torch.Generator().manual_seed(0), **kw)
        assert x.shape == (64, 5) and np.isfinite(x).all()
        assert (x[:, 2] == 7.25).all()
        np.testing.assert_allclose(x[:, 4], 3 * x[:, 0] - x[:, 1] + 5, atol=1e-9)


def test_degenerate_fit_is_normalized_over_its_free_columns(degenerate_fit):
    fitted, _ = degenerate_fit
    total, se = fitted.normalization(8192, generator=torch.Generator().manual_seed(1))
    assert abs(total - 1.0) < 5 * se + 0.01, (total, se)


def test_degenerate_fit_pickles_and_refuses_the_noised_density_by_name(degenerate_fit):
    fitted, _ = degenerate_fit
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.log_density(DEGENERATE[:5]), fitted.log_density(DEGENERATE[:5]))
    assert "density over 3 free columns" in repr(fitted)
    with pytest.raises(ValueError, match=r"affine subspace.*columns \[2, 4\].*sample\(\)"):
        fitted.convolved(0.5)
    with pytest.raises(ValueError, match=r"score_fn.*columns \[2, 4\]"):
        fitted.score_fn(torch.zeros(3, 5), 0.5)


def test_n_at_most_d_fits_and_samples(estimator):
    x = _rng.normal(size=(8, 12)) * 10.0 ** _rng.uniform(-3, 3, size=12)
    with pytest.warns(DegenerateSamplesWarning, match="7-dimensional affine subspace of R\\^12"):
        fitted = estimator.fit(x)
    lp, s = fitted.log_density_and_score(x)
    assert np.isfinite(lp).all() and np.isfinite(s).all()
    new = fitted.sample(16, generator=torch.Generator().manual_seed(0))
    hull = fitted.hull
    np.testing.assert_allclose(new, hull.lift(_t(new[:, hull.free])).numpy(), rtol=1e-9, atol=0)


# -- grid-valued columns --------------------------------------------------------------------------------
@pytest.mark.parametrize("column, step", [
    (np.round(_rng.normal(size=500) * 3), 1.0),
    (np.round(_rng.normal(size=500) * 30) / 10, 0.1),  # 0.1 steps, not exact in binary
    (1e4 + np.round(_rng.normal(size=500) * 300) / 100, 0.01),  # prices to the cent
    (_rng.integers(0, 2, size=500).astype(float), 1.0),  # an indicator
    (np.round(_rng.normal(size=500)) * 2.5e-7, 2.5e-7),
])
def test_grid_columns_are_found_with_their_step(column, step):
    found = grid_columns(_t(np.c_[_rng.normal(size=500), column]))
    assert list(found) == [1]
    np.testing.assert_allclose(found[1], step, rtol=1e-6)


def test_continuous_and_duplicated_continuous_columns_are_not_grids():
    x = _rng.normal(size=(300, 2))
    assert grid_columns(_t(x)) == {} and grid_columns(_t(np.r_[x, x])) == {}


def test_grid_warning_and_dequantize(estimator):
    x = np.c_[_rng.normal(size=600), np.round(_rng.gamma(3.0, 2.0, size=600))]
    with pytest.warns(GridValuedColumnsWarning, match=r"column 'count' \(step 1\).*dequantize=True"):
        estimator.fit(x, names=["level", "count"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # dequantized: nothing to warn about
        a = estimator.fit(x, dequantize=True)
        b = estimator.fit(x, dequantize=True)
        c = estimator.fit(x, dequantize=True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.samples, b.samples) and not torch.equal(a.samples, c.samples)  # seeded, by default 0
    noise = a.samples.numpy() - x
    assert (noise[:, 0] == 0).all() and np.abs(noise[:, 1]).max() <= 0.5
    # one grid step of uniform noise: its spread is 1 / sqrt(12) up to sampling error
    assert abs(noise[:, 1].std() - 1 / math.sqrt(12)) < 4 * (1 / math.sqrt(12)) / math.sqrt(2 * 600)


# -- coded columns: a few unevenly spaced levels ----------------------------------------------------------
AGE_BANDS = np.array([17.5, 22.0, 27.0, 32.0, 37.0, 42.0])  # as statsmodels' fair table records age


def test_coded_columns_are_found_and_grids_and_continuous_columns_are_not():
    x = np.c_[_rng.normal(size=600), AGE_BANDS[_rng.integers(0, 6, size=600)], np.round(_rng.normal(size=600) * 3),
              np.round(_rng.normal(size=600) * 1e3)]  # the last: ties, but ~ 3000 levels
    found = coded_columns(_t(x))
    assert list(found) == [1] and found[1].tolist() == AGE_BANDS.tolist()
    assert list(grid_columns(_t(x))) == [2, 3]
    assert coded_columns(_t(AGE_BANDS[:, None])) == {}  # six rows, six values: no ties


def test_level_cells_tile_the_range_halfway_between_levels():
    low, high = level_cells(torch.tensor(AGE_BANDS))
    assert low.tolist() == [15.25, 19.75, 24.5, 29.5, 34.5, 39.5]
    assert high.tolist() == [19.75, 24.5, 29.5, 34.5, 39.5, 44.5]
    # an evenly spaced, complete set of levels gets one step's cells, as a grid column does
    low, high = level_cells(torch.arange(5.0, dtype=torch.float64))
    assert torch.equal(high - low, torch.ones(5, dtype=torch.float64)) and low[0] == -0.5


def test_coded_warning_and_dequantize_spread_each_value_over_its_cell(estimator):
    x = np.c_[_rng.normal(size=3000), AGE_BANDS[_rng.integers(0, 6, size=3000)]]
    with pytest.warns(GridValuedColumnsWarning, match=r"column 'age' \(6 levels\).*dequantize=True"):
        estimator.fit(x, names=["z", "age"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted = estimator.fit(x, dequantize=True)
    y = fitted.samples.numpy()
    assert (y[:, 0] == x[:, 0]).all()
    low, high = (t.numpy() for t in level_cells(torch.tensor(AGE_BANDS)))
    at = np.searchsorted(AGE_BANDS, x[:, 1])
    assert ((y[:, 1] >= low[at]) & (y[:, 1] <= high[at])).all()
    # uniform within its cell: the position in the cell has mean 1/2 and spread 1 / sqrt(12)
    pos = (y[:, 1] - low[at]) / (high[at] - low[at])
    assert abs(pos.mean() - 0.5) < 4 / math.sqrt(12 * 3000) and abs(pos.std() - 1 / math.sqrt(12)) < 0.01
    again = dequantize(_t(x), {}, torch.Generator().manual_seed(0), coded_columns(_t(x)))
    assert torch.equal(again, fitted.samples)  # the fit's draws: generator seed 0 by default


# -- a real table: scikit-learn's 8x8 digits, raw ---------------------------------------------------------
def test_raw_digits_fit_and_sample_with_their_constant_pixels(estimator):
    sklearn = pytest.importorskip("sklearn.datasets")
    x = sklearn.load_digits().data[:1500]
    with pytest.warns(DegenerateSamplesWarning, match=r"constant columns 0 \(= 0\), 32 \(= 0\), 39 \(= 0\)"):
        with pytest.warns(GridValuedColumnsWarning, match=r"step 1"):
            fitted = estimator.fit(x)
    new = fitted.sample(200, generator=torch.Generator().manual_seed(0))
    assert new.shape == (200, 64) and np.isfinite(new).all()
    assert (new[:, [0, 32, 39]] == 0).all()
    assert np.isfinite(fitted.log_density(x[:100])).all()
