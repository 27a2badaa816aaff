"""`make demo` (python -m disco_plug.demo): the error table, the PNG, and the table's arithmetic."""

import math

import pytest
import torch

pytest.importorskip("matplotlib")

from disco_plug import demo  # noqa: E402
from disco_plug.densities.kde import GaussianKDE  # noqa: E402


class _Exact:
    """The demo mixture itself behind the fitted-estimator interface: its errors must be zero."""

    def __init__(self, gmm):
        self.gmm = gmm

    def log_density_and_score(self, y):
        return self.gmm.log_prob_and_score(y)


def test_error_table_is_zero_for_the_exact_density_and_matches_kde():
    gmm = demo.demo_mixture(seed=3)
    xs = gmm.sample(300, generator=torch.Generator().manual_seed(0))[0]
    samples, queries = xs[:200], xs[200:]
    rows = demo.error_table(_Exact(gmm), samples, queries, gmm)
    assert [r["method"].split(",")[0] for r in rows] == ["disco_plug (stacked density)", "Gaussian KDE",
                                                         "Gaussian KDE"]
    assert rows[0]["rel_score_mse_pct"] == 0.0 and rows[0]["logp_mse"] == 0.0
    lp, s = GaussianKDE(samples, "scott").log_density_and_score(queries)
    true_lp, true_s = gmm.log_prob_and_score(queries)
    expected = 100 * float(((s - true_s) ** 2).sum() / (true_s**2).sum())
    assert math.isclose(rows[1]["rel_score_mse_pct"], expected, rel_tol=1e-12)
    assert math.isclose(rows[1]["logp_mse"], float(((lp - true_lp) ** 2).mean()), rel_tol=1e-12)
    # The grid holds Scott's factor (1.0 x Scott up to float32 rounding): the oracle is never worse.
    assert rows[2]["rel_score_mse_pct"] <= rows[1]["rel_score_mse_pct"] * (1 + 1e-4)
    assert rows[2]["logp_mse"] <= rows[1]["logp_mse"] * (1 + 1e-4)


def test_make_demo_prints_the_table_and_writes_the_png(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    png = tmp_path / "out" / "density_score.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert str(png.resolve()) in text
    lines = [line for line in text.splitlines() if line.startswith(("disco_plug (", "Gaussian KDE"))]
    assert len(lines) == 3
    for line in lines:
        score_pct, logp_mse, seconds = (float(v) for v in line.split()[-3:])
        assert 0 <= score_pct < 1000 and 0 <= logp_mse and seconds >= 0


def test_demo_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        demo.main(["--n", "2"])
    assert exc.value.code == 2
    assert "--n must be >= 3" in capsys.readouterr().err
