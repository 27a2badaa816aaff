"""The `disco-plug` command line: results agree with the library, user mistakes give one line and
exit status 2, and the bench/train subcommands forward to the right entry points."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from disco_plug import cli

RNG = np.random.default_rng(0)
SAMPLES = RNG.normal(size=(200, 2)) * [1.0, 2.0]
QUERIES = RNG.normal(size=(7, 2))


def run(args, capsys):
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def files(tmp_path):
    np.savetxt(tmp_path / "x.csv", SAMPLES, delimiter=",", header="alpha,beta", comments="")
    np.save(tmp_path / "x.npy", SAMPLES)
    np.savetxt(tmp_path / "q.csv", QUERIES, delimiter=" ")  # whitespace-separated, no header
    return tmp_path


def test_estimate_csv_to_stdout_matches_the_library(files, capsys, estimator):
    code, out, err = run(["estimate", files / "x.csv", "--queries", files / "q.csv"], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "alpha,beta,log_density,score_alpha,score_beta"
    table = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    log_p, score = estimator.fit(SAMPLES).log_density_and_score(QUERIES)
    np.testing.assert_allclose(table[:, :2], QUERIES, rtol=1e-9)
    np.testing.assert_allclose(table[:, 2], log_p, rtol=1e-8, atol=1e-9)  # %.10g round trip
    np.testing.assert_allclose(table[:, 3:], score, rtol=1e-8, atol=1e-9)


def test_estimate_npy_in_and_out_defaults_to_the_samples(files, capsys, estimator):
    out_file = files / "res.npy"
    code, out, err = run(["estimate", files / "x.npy", "--out", out_file], capsys)
    assert code == 0 and out == "" and "wrote log-density and score at 200 points" in err
    result = np.load(out_file)
    log_p, score = estimator.fit(SAMPLES).log_density_and_score(SAMPLES)
    np.testing.assert_array_equal(result, np.concatenate([log_p[:, None], score], 1))


def test_estimate_reads_csv_from_stdin(monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("# a comment line\n" + "\n".join(f"{a};{b}" for a, b in SAMPLES)))
    code, out, _ = run(["estimate", "-", "--quiet"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "x0,x1,log_density,score_x0,score_x1" and len(lines) == 1 + len(SAMPLES)


def test_sample_is_seeded_and_writes_csv(files, capsys):
    args = ["sample", files / "x.csv", "--num", 6, "--method", "ode", "--steps", 3, "--seed", 4, "--quiet"]
    code, out, err = run(args + ["--out", files / "a.csv"], capsys)
    assert code == 0 and out == "" and err == ""
    code, out, _ = run(args, capsys)
    assert code == 0
    assert (files / "a.csv").read_text() == out
    lines = out.splitlines()
    assert lines[0] == "alpha,beta" and len(lines) == 7
    assert np.isfinite(np.array([[float(v) for v in line.split(",")] for line in lines[1:]])).all()


@pytest.mark.parametrize("name, content, args, message", [
    ("missing", None, [], "samples file not found"),
    ("word.csv", "1,2\n3,4\n5,abc\n", [], "line 3, column 2: 'abc' is not a number"),
    ("ragged.csv", "1,2\n3,4,5\n", [], "line 2: 3 columns, but the first row has 2"),
    ("empty.csv", "a,b\n", [], "holds no data rows"),
    ("nan.csv", "1,2\n3,nan\n5,6\n7,1\n", [], "samples contains 1 non-finite value"),
    ("few.csv", "1,2\n3,4\n", [], "need more samples than dimensions"),
    ("ok.csv", "1,2\n3,5\n5,6\n7,1\n", ["--queries", "q3.csv"], "queries have d=3 columns but the samples have d=2"),
    ("ok.csv", "1,2\n3,5\n5,6\n7,1\n", ["--out", "no/such/folder/out.csv"], "folder"),
    ("ok.csv", "1,2\n3,5\n5,6\n7,1\n", ["--out", "out.json"], "--out must end in .csv or .npy"),
    ("ok.csv", "1,2\n3,5\n5,6\n7,1\n", ["--weights", "none.safetensors"], "no weights file at none.safetensors"),
    ("vector.npy", np.arange(5.0), [], "1-D array"),
    ("text.npy", "not numpy", [], "cannot read"),
])
def test_user_mistakes_give_one_line_and_status_2(tmp_path, capsys, monkeypatch, name, content, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "q3.csv").write_text("1,2,3\n")
    if isinstance(content, str):
        (tmp_path / name).write_text(content)
    elif content is not None:
        np.save(tmp_path / name, content)
    code, out, err = run(["estimate", name, *args], capsys)
    assert code == 2 and out == ""
    assert err.startswith("disco-plug: error: ") and message in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_sample_rejects_bad_numbers(files, capsys):
    code, _, err = run(["sample", files / "x.csv", "--num", 0], capsys)
    assert code == 2 and "--num must be a positive integer" in err


def test_help_lists_commands_and_methods(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert all(c in text for c in ("estimate", "sample", "bench", "train"))
    with pytest.raises(SystemExit):
        cli.main(["sample", "--help"])
    assert "annealed_langevin" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["sample", "x.csv"])  # --num is required: argparse's own message, status 2
    assert exc.value.code == 2 and "--num" in capsys.readouterr().err


def test_bench_runs_accuracy_and_present_scripts(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli.subprocess, "run",
                        lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    refreshed = []
    monkeypatch.setattr("disco_plug.readme.main", refreshed.append)
    assert cli.main(["bench", "--quick", "--quiet"]) == 0
    assert calls[0][1:] == ["-m", "disco_plug.bench", "accuracy", "--quick"]
    before = len(refreshed)
    assert before == (1 if (cli._bench_dir().parent / "README.md").is_file() else 0)
    assert cli.main(["bench", "accuracy", "--quiet", "--no-readme"]) == 0
    assert len(refreshed) == before
    bench_dir = cli._bench_dir()
    expected = [n for n in cli._BENCH_SCRIPTS if bench_dir is not None and (bench_dir / f"{n}.py").is_file()]
    assert [Path(c[-1]).stem for c in calls[1:1 + len(expected)]] == expected
    calls.clear()
    monkeypatch.setattr(cli.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 3))
    assert cli.main(["bench", "accuracy", "--quiet"]) == 1
    assert "accuracy (exit 3)" in capsys.readouterr().err
    code, _, err = run(["bench", "speed"], capsys)
    assert code == 2 and "unknown benchmark suite(s) speed" in err


def test_train_forwards_every_option(monkeypatch):
    from disco_plug import train

    seen = []
    monkeypatch.setattr(train, "train", seen.append)
    assert cli.main(["train", "--steps", "3", "--out", "runs/x", "--lr", "0.001"]) == 0
    assert (seen[0].steps, seen[0].out, seen[0].lr) == (3, "runs/x", 0.001)


def test_installed_entry_point():
    exe = shutil.which("disco-plug", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the disco-plug script is not installed in this environment (pip install -e .)")
    result = subprocess.run([exe, "estimate", "missing.csv"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr == "disco-plug: error: samples file not found: missing.csv\n"
