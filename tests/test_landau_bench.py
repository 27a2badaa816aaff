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
