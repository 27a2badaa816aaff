"""benchmarks/realdata.py's pieces that a wrong number would hide in: the bundled real tables (shape, finite
numeric raw columns) and the energy distance behind its sample-quality column (closed form in 1-D)."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("statsmodels")
pytest.importorskip("sklearn")

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "realdata.py"
_spec = importlib.util.spec_from_file_location("realdata_bench", _PATH)
realdata = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = realdata  # dataclasses look their module up there
_spec.loader.exec_module(realdata)


@pytest.mark.parametrize("name", list(realdata.TABLES))
def test_every_table_loads_raw_finite_numeric_at_its_stated_shape(name):
    table = realdata.TABLES[name]
    x = table.load()
    assert x.dtype == np.float64 and x.shape == (table.n, table.d)
    assert np.isfinite(x).all()
    assert (x.std(0) > 0).all()  # no constant column slipped in
    if table.loader == "diabetes":  # raw, not scikit-learn's scaled columns: age in years
        assert x[:, 0].max() > 50


def test_the_tables_span_the_sizes_the_benchmark_promises():
    tables = realdata.TABLES.values()
    assert len(tables) >= 8
    assert min(t.d for t in tables) == 2 and max(t.d for t in tables) == 30
    assert min(t.n for t in tables) <= 150 and max(t.n for t in tables) >= 20000
    assert {t.source for t in tables} == {"scikit-learn", "statsmodels"}


def test_splits_are_seeded_disjoint_70_30():
    x = np.arange(200.0)[:, None]
    cfg = realdata.Config()
    train, test = realdata.split(x, "t", 0, cfg)
    assert (len(train), len(test)) == (140, 60)
    assert sorted(np.concatenate([train, test])[:, 0]) == list(x[:, 0])
    assert np.array_equal(realdata.split(x, "t", 0, cfg)[1], test)
    assert not np.array_equal(realdata.split(x, "t", 1, cfg)[1], test)


def _energy_1d_shift(mu: float) -> float:
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| for X ~ N(0, 1), Y ~ N(mu, 1): X - Y ~ N(-mu, 2), X - X' ~ N(0, 2),
    and E|N(m, s^2)| = s sqrt(2/pi) exp(-m^2 / 2s^2) + m (1 - 2 Phi(-m/s))."""
    s = math.sqrt(2.0)
    phi = 0.5 * math.erfc(mu / s / math.sqrt(2.0))  # Phi(-mu/s)
    e_xy = s * math.sqrt(2 / math.pi) * math.exp(-mu**2 / 4) + mu * (1 - 2 * phi)
    return 2 * e_xy - 2 * s * math.sqrt(2 / math.pi)


def test_energy_distance_zero_symmetric_scale_free_and_closed_form_for_a_shift():
    rng = np.random.default_rng(0)
    n = 2000
    x, y = rng.standard_normal((n, 1)), rng.standard_normal((n, 1)) + 1.0
    one = np.ones(1)
    assert abs(realdata.scaled_energy(x, x, one)) < 1e-9
    value = realdata.scaled_energy(x, y, one)
    assert value == pytest.approx(realdata.scaled_energy(y, x, one), abs=1e-12)
    # columns divided by sd: rescaling both sets and passing the scale gives the same number
    assert realdata.scaled_energy(7.0 * x, 7.0 * y, 7.0 * one) == pytest.approx(value, rel=1e-12)
    # the V-statistic is biased up by (E|X-X'| + E|Y-Y'|) / n and its sd is about 1.3 / sqrt(n) here
    # (measured over 30 seeds at n = 1000); 5 sd of slack
    exact = _energy_1d_shift(1.0)
    assert value == pytest.approx(exact + 4 / math.sqrt(math.pi) / n, abs=5 * 1.3 / math.sqrt(n))
    assert realdata.scaled_energy(x, rng.standard_normal((n, 1)), one) < 0.1 * exact  # same law: near 0
