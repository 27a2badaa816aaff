"""The accuracy benchmark's paired comparison with the oracle KDE: the difference, its standard error,
and which columns count as losses."""

import math

import torch

from disco_plug import bench


def test_paired_difference_is_the_pooled_difference_with_its_standard_error():
    ours, best = [1.0, 4.0, 2.0, 9.0], [2.0, 1.0, 2.0, 3.0]
    out = bench.paired_difference(ours, best, scale=8.0)
    diff = torch.tensor(ours) - torch.tensor(best)  # -1, 3, 0, 6
    assert math.isclose(out["diff"], 8.0 / 8.0)
    sd = math.sqrt(sum((x - 2.0) ** 2 for x in diff.tolist()) / 3)  # sample sd of the differences
    assert math.isclose(out["se"], 2.0 * sd / 8.0)
    assert bench.paired_difference([1.0], [0.5], 1.0)["se"] == math.inf  # one task: no error bar


def _row(diffs):
    return {f"ours_minus_best_kde/{col}": {metric: {"diff": d, "se": se} for (metric, c), (d, se)
                                          in zip(bench.COLUMNS, diffs) if c == col}
            for col in ("same", "other")}


def test_verdict_separates_larger_errors_from_significant_ones():
    row = _row([(-5.0, 1.0), (3.0, 1.0), (-0.1, 0.01), (0.5, 1.0)])
    worse, significant = bench.verdict_against_best_kde(row)
    assert worse == ["score other", "log-density other"]
    assert significant == ["score other"]  # 3 sd; the log-density one is half an sd
    assert bench.verdict_against_best_kde(_row([(-1.0, 1.0)] * 4)) == ([], [])


def test_markdown_reports_the_paired_table():
    cell = {"rel_score_mse_pct": 10.0, "score_mse": 0.1, "logp_mse": 1.0}
    row = {"row": {"name": "GMM d=2 n=256", "goal": None},
           **{f"{m}/{c}": cell for m in ("ours", "scott", "best_kde") for c in ("same", "other")},
           **_row([(-5.0, 1.0), (3.0, 1.0), (-0.1, 0.01), (0.5, 1.0)])}
    report = {"command": "c", "commit": "x", "weights": "w", "weights_sha256": "0" * 64, "training": {},
              "machine": "m", "wall_seconds": 1.0, "rows": [row]}
    text = bench.accuracy_markdown(report)
    assert "| GMM d=2 n=256 | -5 ± 1 | +3 ± 1 | -0.1 ± 0.01 | +0.5 ± 1 | worse beyond 2 SE: score other |" in text
