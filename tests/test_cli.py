"""The `disco-plug` command line: results agree with the library, user mistakes give one line and
exit status 2, and the bench/train subcommands forward to the right entry points."""

import re
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
    ("word.csv", "1,2\n3,4\n5,abc\n", [], "word.csv: 1 non-numeric column: column 1 ('abc' on line 3)"),
    ("ragged.csv", "1,2\n3,4,5\n", [], "line 2: 3 columns, but the first row has 2"),
    ("empty.csv", "a,b\n", [], "holds no data rows"),
    ("nan.csv", "1,2\n3,nan\n5,6\n7,1\n", [], "missing values (empty, NA, NaN, null or ?) in 1 row, line 2"),
    ("inf.csv", "1,2\n3,inf\n5,6\n7,1\n", [], "samples contains 1 non-finite value"),
    ("one.csv", "1,2\n", [], "need at least 2 samples"),
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


# -- real CSVs: --columns, non-numeric columns, missing values (issue 22) ------------------------------
IRIS_NAMES = ["sepal_length", "sepal_width", "species", "petal_width", "date"]
IRIS_NUMBERS = RNG.normal([5.8, 3.0, 1.2], [0.8, 0.4, 0.7], size=(60, 3))  # sepal_length, sepal_width, petal_width
SPECIES = ["setosa", "versicolor", "virginica"]


def iris_like(path, header=True, blanks=None):
    """A CSV shaped like an exported data frame: numeric columns, a text label and a date; `blanks`
    maps (row, column) to a cell that replaces the number there."""
    lines = [",".join(IRIS_NAMES)] if header else []
    for i, (a, b, c) in enumerate(IRIS_NUMBERS):
        cells = [repr(float(a)), repr(float(b)), SPECIES[i % 3], repr(float(c)), f"2024-01-{i % 28 + 1:02d}"]
        for (row, col), cell in (blanks or {}).items():
            if row == i:
                cells[col] = cell
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def table_of(out):
    lines = out.splitlines()
    return lines[0].split(","), np.array([[float(v) for v in line.split(",")] for line in lines[1:]])


def test_columns_by_name_or_index_fit_those_columns_and_ignore_text_columns(tmp_path, capsys, estimator):
    path = iris_like(tmp_path / "iris.csv")
    outputs = []
    for columns in ("sepal_length,petal_width", "0,3", "sepal_length,3"):
        code, out, err = run(["estimate", path, "--columns", columns], capsys)
        assert code == 0 and err == ""
        outputs.append(out)
    assert outputs[0] == outputs[1] == outputs[2]
    names, table = table_of(outputs[0])
    assert names == ["sepal_length", "petal_width", "log_density", "score_sepal_length", "score_petal_width"]
    chosen = IRIS_NUMBERS[:, [0, 2]]
    log_p, score = estimator.fit(chosen).log_density_and_score(chosen)
    np.testing.assert_allclose(table[:, :2], chosen, rtol=1e-9)
    np.testing.assert_allclose(table[:, 2], log_p, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(table[:, 3:], score, rtol=1e-8, atol=1e-9)


def test_columns_by_index_name_headerless_and_npy_output_by_their_index(tmp_path, capsys):
    np.save(tmp_path / "x.npy", IRIS_NUMBERS)
    for path in (iris_like(tmp_path / "noheader.csv", header=False), tmp_path / "x.npy"):
        columns = "0,3" if path.suffix == ".csv" else "0,2"
        code, out, err = run(["sample", path, "--columns", columns, "--num", 5, "--quiet"], capsys)
        assert code == 0 and err == ""
        assert out.splitlines()[0] == ("x0,x3" if path.suffix == ".csv" else "x0,x2")


@pytest.mark.parametrize("columns, message", [
    ("sepal_length,petals", "--columns: iris.csv has no column 'petals'; its columns are sepal_length, "
                            "sepal_width, species, petal_width, date (indices 0-4)"),
    ("0,5,Species", "--columns: iris.csv has no column 5, 'Species'; its columns are sepal_length, "
                    "sepal_width, species, petal_width, date (indices 0-4)"),
    ("0,sepal_length", "--columns chooses sepal_length more than once"),
])
def test_unknown_columns_give_one_line_listing_the_column_names(tmp_path, capsys, monkeypatch, columns, message):
    monkeypatch.chdir(tmp_path)
    iris_like(tmp_path / "iris.csv")
    code, out, err = run(["estimate", "iris.csv", "--columns", columns], capsys)
    assert code == 2 and out == ""
    assert err == f"disco-plug: error: {message}\n"


def test_unknown_columns_of_headerless_files_list_the_indices(tmp_path, capsys):
    np.save(tmp_path / "x.npy", IRIS_NUMBERS)
    code, _, err = run(["estimate", tmp_path / "x.npy", "--columns", "sepal_length"], capsys)
    assert code == 2 and err == (f"disco-plug: error: --columns: {tmp_path / 'x.npy'} has no column "
                                 "'sepal_length'; it has a .npy array and 3 columns: choose 0-based indices 0-2\n")
    code, _, err = run(["estimate", iris_like(tmp_path / "n.csv", header=False), "--columns", "0,7"], capsys)
    assert code == 2 and err == (f"disco-plug: error: --columns: {tmp_path / 'n.csv'} has no column 7; "
                                 "it has no header line and 5 columns: choose 0-based indices 0-4\n")


def test_non_numeric_columns_are_all_named_with_an_example_and_its_line(tmp_path, capsys):
    path = iris_like(tmp_path / "iris.csv", blanks={(4, 1): "3,1"})  # a decimal comma, quoted by nothing
    path.write_text(path.read_text().replace(",3,1,", ',"3,1",'))
    code, out, err = run(["estimate", path], capsys)
    assert code == 2 and out == ""
    assert err == (f"disco-plug: error: {path}: 3 non-numeric columns: sepal_width ('3,1' on line 6); "
                   "species ('setosa' on line 2); date ('2024-01-01' on line 2); choose numeric columns with "
                   "--columns, e.g. --columns sepal_length,petal_width\n")


def test_non_numeric_columns_of_a_headerless_file_are_named_by_index(tmp_path, capsys):
    path = iris_like(tmp_path / "iris.csv", header=False)
    code, _, err = run(["estimate", path, "--columns", "0,1,2"], capsys)  # only the chosen ones are listed
    assert code == 2 and err == (f"disco-plug: error: {path}: 1 non-numeric column: column 2 ('setosa' on "
                                 "line 1); choose numeric columns with --columns, e.g. --columns 0,1,3\n")


@pytest.mark.parametrize("cell", ["", "NA", "NaN", "nan", "null", "?"])
def test_missing_values_are_refused_with_their_lines(tmp_path, capsys, cell):
    path = iris_like(tmp_path / "iris.csv", blanks={(1, 0): cell, (4, 3): cell})
    code, out, err = run(["estimate", path, "--columns", "0,1,3"], capsys)
    assert code == 2 and out == ""
    assert err == (f"disco-plug: error: {path}: missing values (empty, NA, NaN, null or ?) in 2 rows, "
                   "lines 3, 6; pass --dropna to drop those rows\n")


def test_many_missing_values_list_the_first_lines_and_the_count(tmp_path, capsys):
    path = iris_like(tmp_path / "iris.csv", blanks={(i, 1): "NA" for i in range(0, 40, 5)})
    code, _, err = run(["estimate", path, "--columns", "0,1"], capsys)
    assert code == 2 and err == (f"disco-plug: error: {path}: missing values (empty, NA, NaN, null or ?) in 8 "
                                 "rows, lines 2, 7, 12, 17, 22, ...; pass --dropna to drop those rows\n")


def test_dropna_drops_rows_missing_a_chosen_value_and_reports_how_many(tmp_path, capsys, estimator):
    # rows 1 and 4 miss a chosen value; row 7 misses only sepal_width, which is not chosen, and stays
    path = iris_like(tmp_path / "iris.csv", blanks={(1, 0): "", (4, 3): "NA", (7, 1): "?"})
    code, out, err = run(["estimate", path, "--columns", "sepal_length,petal_width", "--dropna"], capsys)
    assert code == 0
    assert err == "disco-plug: dropped 2 of 60 samples rows with missing values (lines 3, 6)\n"
    kept = np.delete(IRIS_NUMBERS[:, [0, 2]], [1, 4], axis=0)
    _, table = table_of(out)
    np.testing.assert_allclose(table[:, :2], kept, rtol=1e-9)
    np.testing.assert_allclose(table[:, 2], estimator.fit(kept).log_density(kept), rtol=1e-8, atol=1e-9)


def test_dropna_on_npy_drops_nan_rows_and_without_it_names_the_rows(tmp_path, capsys):
    x = IRIS_NUMBERS.copy()
    x[[2, 9], 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    code, _, err = run(["estimate", tmp_path / "x.npy"], capsys)
    assert code == 2 and err == (f"disco-plug: error: {tmp_path / 'x.npy'}: missing values (empty, NA, NaN, "
                                 "null or ?) in 2 rows, rows 2, 9 (0-based); pass --dropna to drop those rows\n")
    code, out, err = run(["sample", tmp_path / "x.npy", "--dropna", "--num", 3, "--quiet"], capsys)
    assert code == 0 and err == "disco-plug: dropped 2 of 60 samples rows with missing values (rows 2, 9 (0-based))\n"


def test_queries_take_the_chosen_columns_from_their_header(tmp_path, capsys, estimator):
    samples = iris_like(tmp_path / "iris.csv")
    queries = tmp_path / "q.csv"  # other column order, an extra text column
    rows = "".join(f"{float(c)!r},x,{float(a)!r}\n" for a, c in QUERIES)
    queries.write_text("petal_width,label,sepal_length\n" + rows)
    code, out, _ = run(["estimate", samples, "--columns", "sepal_length,petal_width", "--queries", queries], capsys)
    assert code == 0
    names, table = table_of(out)
    assert names[:2] == ["sepal_length", "petal_width"]
    np.testing.assert_allclose(table[:, :2], QUERIES, rtol=1e-9)
    expected = estimator.fit(IRIS_NUMBERS[:, [0, 2]]).log_density(QUERIES)
    np.testing.assert_allclose(table[:, 2], expected, rtol=1e-8, atol=1e-9)


def test_queries_without_those_names_need_the_chosen_width(tmp_path, capsys):
    samples = iris_like(tmp_path / "iris.csv")
    np.savetxt(tmp_path / "q2.csv", QUERIES, delimiter=",")
    code, out, _ = run(["estimate", samples, "--columns", "0,3", "--queries", tmp_path / "q2.csv"], capsys)
    assert code == 0 and out.splitlines()[0].startswith("sepal_length,petal_width,")
    np.savetxt(tmp_path / "q3.csv", RNG.normal(size=(4, 3)), delimiter=",")
    code, _, err = run(["estimate", samples, "--columns", "0,3", "--queries", tmp_path / "q3.csv"], capsys)
    assert code == 2 and err == ("disco-plug: error: queries have d=3 columns but --columns chose d=2 of the "
                                 "samples (sepal_length, petal_width); give the queries a header line with "
                                 "those names, or exactly 2 columns\n")


def test_read_points_keeps_its_signature_and_takes_columns_and_dropna(tmp_path, capsys):
    path = str(iris_like(tmp_path / "iris.csv", blanks={(0, 3): "NA"}))
    x, header = cli.read_points(path, "samples", columns=["sepal_length", 3], dropna=True)
    assert header == ["sepal_length", "petal_width"] and x.shape == (59, 2)
    np.testing.assert_array_equal(x, IRIS_NUMBERS[1:, [0, 2]])
    assert "dropped 1 of 60 samples rows" in capsys.readouterr().err
    np.savetxt(tmp_path / "plain.csv", SAMPLES, delimiter=",", header="alpha,beta", comments="")
    x, header = cli.read_points(str(tmp_path / "plain.csv"))
    assert header == ["alpha", "beta"] and x.shape == SAMPLES.shape


def test_degenerate_and_grid_valued_tables_fit_with_one_warning_line_each(tmp_path, capsys):
    """A constant column and an integer column: fitted, each reported once as `disco-plug: warning:`;
    --dequantize removes the grid report (and the ties), the constant column is still named."""
    rng = np.random.default_rng(0)
    rows = np.c_[rng.normal(size=60), np.full(60, 3.0), np.round(rng.normal(size=60) * 4)]
    path = tmp_path / "t.csv"
    path.write_text("level,batch,count\n" + "\n".join(",".join(f"{v:g}" for v in r) for r in rows) + "\n")
    code, out, err = run(["estimate", path, "--quiet"], capsys)
    lines = err.splitlines()
    assert code == 0 and len(out.splitlines()) == 61 and len(lines) == 2, err
    assert lines[0].startswith("disco-plug: warning: column 'count' (step 1) takes tied values on a grid")
    assert "pass --dequantize" in lines[0] and "dequantize=True" not in lines[0]  # the command line's option
    assert lines[1].startswith("disco-plug: warning: the samples lie on a 2-dimensional affine subspace")
    assert "constant column 'batch' (= 3)" in lines[1]
    code, out, err = run(["estimate", path, "--quiet", "--dequantize"], capsys)
    assert code == 0 and len(err.splitlines()) == 1 and "constant column 'batch'" in err
    new = run(["sample", path, "--num", 5, "--quiet"], capsys)[1].splitlines()
    assert new[0] == "level,batch,count" and all(line.split(",")[1] == "3" for line in new[1:])


def test_bounds_by_name_and_index_match_the_library_and_bad_ones_give_one_line(tmp_path, capsys, estimator):
    x = np.c_[RNG.beta(2, 5, size=300), RNG.lognormal(size=300)]
    np.savetxt(tmp_path / "b.csv", x, delimiter=",", header="rate,sigma", comments="")
    q = np.array([[0.2, 1.0], [1.5, 1.0], [0.3, -1.0]])
    np.savetxt(tmp_path / "q.csv", q, delimiter=",", header="rate,sigma", comments="")
    outs = [run(["estimate", tmp_path / "b.csv", "--queries", tmp_path / "q.csv", "--bounds", spec], capsys)
            for spec in ("rate:0:1,sigma:0:", "0:0:1,1:0:")]
    assert all(code == 0 and err == "" for code, _, err in outs) and outs[0][1] == outs[1][1]
    _, table = table_of(outs[0][1])
    log_p, score = estimator.fit(x, bounds=[(0, 1), (0, None)]).log_density_and_score(q)
    np.testing.assert_allclose(table[:, 2], log_p, rtol=1e-8)
    assert np.isinf(table[1:, 2]).all() and (table[1:, 3:] == 0).all()
    np.testing.assert_allclose(table[:, 3:], score, rtol=1e-8, atol=1e-12)
    for spec, message in (("rate:0", "is not COL:LOW:HIGH"), ("speed:0:1", "column 'speed'; the columns are rate, sigma"),
                          ("rate:a:1", "must be numbers or empty"), ("sigma:1:", r"row \d+ is")):
        code, _, err = run(["estimate", tmp_path / "b.csv", "--bounds", spec], capsys)
        assert code == 2 and re.search(message, err), err
        assert len(err.strip().splitlines()) == 1
