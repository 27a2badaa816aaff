"""The README: its generated tables match the benchmark results, its set-up is two commands, and its
example runs."""

import json
import re
from pathlib import Path

import pytest

from disco_plug import readme

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _row(name, ours, scott, best, goal=None, tasks=4):
    def cell(pct, logp):
        return {"rel_score_mse_pct": pct, "score_mse": pct / 100, "logp_mse": logp}

    paired = {"rel_score_mse_pct": {"diff": ours - best, "se": 1.0}, "logp_mse": {"diff": (ours - best) / 10, "se": 0.1}}
    return {"row": {"name": name, "tasks": tasks, "queries": 256, "goal": goal},
            "seconds_ours": 0.4, "seconds_scott_kde": 0.02,
            **{f"ours_minus_best_kde/{c}": paired for c in ("same", "other")},
            **{f"{m}/{c}": cell(v, v / 10) for m, v in (("ours", ours), ("scott", scott), ("best_kde", best))
               for c in ("same", "other")}}


@pytest.fixture
def results(tmp_path):
    report = {"command": "python -m disco_plug.bench accuracy", "commit": "abc123def456", "machine": "x86_64 2 threads",
              "training": {"step": "777", "cost": "777 steps"},
              "rows": [_row("GMM d=2 n=256", 12.5, 43.0, 30.25, goal=14.67), _row("GMM d=10 n=256", 7.0, 65.0, 60.0)]}
    (tmp_path / "accuracy.json").write_text(json.dumps(report))
    (tmp_path / "accuracy.md").write_text("# Accuracy\n")
    (tmp_path / "samplers.md").write_text("# Samplers\n\n## Quality\n\n| a |\n|---|\n| 1 |\n\n"
                                          "## Speed: one step\n\n| method | ms |\n|---|---|\n| cached | 3.5 |\n")
    return tmp_path


def test_blocks_come_from_the_result_files(results):
    text = readme.render(README, results)
    assert "| GMM d=2 n=256 | 12.50 | 43.00 | 30.25 | 14.67 | 1.25 / 3.02 |" in text
    assert "| GMM d=10 n=256 | 7.00 | 65.00 | 60.00 |  | 0.70 / 6.00 |" in text
    assert "training step 777" in text and "`abc123def4`" in text
    # Paired against the oracle KDE: every cell of d=2 is lower (12.5 < 30.25); d=10's 7.0 < 60.0 too.
    assert "disco_plug has the lower error in 8 of 8 cells." in text
    assert "| GMM d=2 n=256 | 100.00 | 5.00 |" in text  # 0.4 s and 0.02 s over 4 tasks, in ms
    assert "| cached | 3.5 |" in text and "| a |" not in text  # speed sections only
    assert "[`benchmarks/results/samplers.md`](benchmarks/results/samplers.md)" in text
    assert readme.render(text, results) == text  # idempotent


def test_losses_to_the_oracle_kde_are_named(results):
    report = json.loads((results / "accuracy.json").read_text())
    report["rows"][1]["ours_minus_best_kde/other"] = {"rel_score_mse_pct": {"diff": 3.0, "se": 1.0},
                                                     "logp_mse": {"diff": 0.5, "se": 1.0}}
    (results / "accuracy.json").write_text(json.dumps(report))
    text = readme.render(README, results)
    assert ("lower error in 6 of 8 cells; the higher one in GMM d=10 n=256 (score other); GMM d=10 n=256 "
            "(log-density other); beyond 2 standard errors in GMM d=10 n=256 (score other).") in text


def test_mcmc_block_is_the_results_table(tmp_path):
    (tmp_path / "mcmc.md").write_text("# MCMC benchmark\n\nCommand: `x`  \nCommit: `abc`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    block = readme.mcmc_block(tmp_path)
    assert block.startswith("From [`benchmarks/results/mcmc.md`]") and "| 1 | 2 |" in block
    assert "# MCMC" not in block and "Commit: `abc`" in block


def test_realdata_block_copies_the_three_tables_of_each_protocol(tmp_path):
    table = "| t | a |\n|---|---|\n| iris | {} |\n"
    (tmp_path / "realdata.md").write_text(
        "# Real data\n\nCommand: `python benchmarks/realdata.py`  \nCommit: `abc`  \n\n## Tables\n\n- iris\n\n"
        "## Held-out log-likelihood (nats)\n\n" + table.format(1) + "\n## Energy ratio (x)\n\n" + table.format(2)
        + "\n## Fit time (s)\n\n" + table.format(3) + "\n## Warnings\n\n- w\n")
    block = readme.realdata_block(tmp_path)
    assert block.startswith("**Raw columns") and "Commit: `abc`" in block
    assert all(f"| iris | {v} |" in block for v in (1, 2, 3)) and "## " not in block and "- w" not in block
    assert "Dequantized" not in block  # its file is absent
    (tmp_path / "realdata_dequantized.md").write_text("Commit: `def`\n\n## Energy ratio\n\n" + table.format(4))
    assert "| iris | 4 |" in readme.realdata_block(tmp_path)


def test_missing_results_and_missing_markers(tmp_path):
    text = readme.render(README, tmp_path)
    assert text.count("No benchmark results yet") == 7  # accuracy, speed, mcmc, realdata, sequential, landau, results
    with pytest.raises(ValueError, match="BEGIN GENERATED: accuracy"):
        readme.render("# no markers\n", tmp_path)


def test_readme_is_up_to_date_with_the_committed_results():
    assert readme.render(README, ROOT / "benchmarks" / "results") == README, \
        "README tables are stale: run python -m disco_plug.readme"


def test_check_mode(results, tmp_path, capsys):
    path = tmp_path / "README.md"
    path.write_text(README)
    assert readme.main(["--readme", str(path), "--results", str(results), "--check"]) == 1
    assert readme.main(["--readme", str(path), "--results", str(results)]) == 0
    assert readme.main(["--readme", str(path), "--results", str(results), "--check"]) == 0
    assert "12.50" in path.read_text()


def test_two_setup_commands_and_the_example_runs():
    setup = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)```", setup, re.DOTALL)[0].strip().splitlines()
    assert [c.split("#")[0].strip() for c in commands] == ["make demo", "make test"]
    example = re.findall(r"```python\n(.*?)```", README, re.DOTALL)[0]
    assert len(example.strip().splitlines()) <= 10
    namespace: dict = {}
    exec(compile(example, "README example", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["log_p"].shape == (5,) and namespace["score"].shape == (5, 2)
    assert namespace["new"].shape == (200, 2) and namespace["kde_score"].shape == (5, 2)
