"""benchmarks/landau.py: the particle method runs and tracks the BKW solution on a small case."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "landau.py"
_spec = importlib.util.spec_from_file_location("landau_bench", _PATH)
landau = importlib.util.module_from_spec(_spec)
sys.modules["landau_bench"] = landau
_spec.loader.exec_module(landau)


def test_particle_method_with_updates_runs_and_tracks_the_solution(estimator):
    rows = {r["method"]: r for r in landau.run(2, 256, 4, seed=0, est=estimator)}
    assert set(rows) >= {"exact", "blob", "fit", "update"}
    for name in ("fit", "update"):
        assert math.isfinite(rows[name]["score_error_pct"]) and rows[name]["score_error_pct"] < 50
        assert rows[name]["energy_drift"] < 1e-2
        # the estimate's entropy at its own particles is within 0.1 nats of the BKW entropy (n = 256, d = 2)
        assert 0 <= rows[name]["entropy_error"] < 0.1


def test_long_solve_reports_every_step(estimator):
    out = landau.long_solve(2, 128, 3, seed=1, est=estimator)
    assert len(out["blob"]["errors_pct"]) == len(out["update"]["errors_pct"]) == 3
    assert out["ratio_min"] > 0 and out["update"]["seconds"] > 0
    assert "target case" in landau.markdown({"command": "c", "commit": "x" * 12, "date": "d", "machine": "m",
                                             "steps": 3, "cases": [], "long": out})
