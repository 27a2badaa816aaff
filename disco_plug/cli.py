"""The `disco-plug` command line: estimate log-density and score, draw new points, run the benchmarks,
train.

    disco-plug estimate samples.csv                      # log p and score at the samples, CSV to stdout
    disco-plug estimate samples.npy --queries grid.csv --out result.npy
    disco-plug sample samples.csv --num 500 --method ode --out new.csv
    disco-plug estimate iris.csv --columns sepal_length,petal_width --dropna   # a table with text columns
    disco-plug bench --quick
    disco-plug train --out runs/main --steps 20000

Mistakes in the input (a missing file, a malformed CSV, a wrong dimension, text columns, missing
values) end with one line `disco-plug: error: ...` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["main", "read_points", "write_table"]

PROG = "disco-plug"
_BENCH_SCRIPTS = ("samplers", "integrations", "scale")  # benchmarks/<name>.py, run when present
_QUERY_CHUNK = 4096


class UserError(Exception):
    """A mistake in what the user passed: reported in one line, exit status 2."""


# -- files ---------------------------------------------------------------------------------------------
# Cells that mean "no value", compared case-insensitively: empty, NA, NaN, null, ?.
MISSING = frozenset({"", "na", "nan", "null", "?"})
_LISTED = 5  # line numbers listed in a message before "..."

ColumnSpec = str | Sequence[str | int] | None  # "a,c", "0,2" or ["a", 2]


@dataclass
class _Table:
    """A file as read, before any column is chosen: a CSV's cells as strings (with their line numbers),
    or a .npy file's values."""

    path: str
    header: list[str] | None
    cells: list[list[str]] | np.ndarray  # CSV: one list of strings per row; .npy: (n, d) floats
    lines: list[int] | None  # CSV: the line number of each row; None for .npy (rows are 0-based indices)

    @property
    def width(self) -> int:
        return len(self.header) if self.header is not None else len(self.cells[0])

    def label(self, j: int) -> str:
        """How messages name column j: its header name, else its 0-based index."""
        return self.header[j] if self.header is not None and self.header[j] else f"column {j}"

    def handle(self, j: int) -> str:
        """What --columns would take for column j: the name where it is one, else the index."""
        names = self.header
        if names is not None and names[j] and "," not in names[j] and names.count(names[j]) == 1:
            return names[j]
        return str(j)

    def where(self, rows: list[int]) -> str:
        """'lines 4, 9, ...' (CSV) or 'rows 3, 8, ... (0-based)' (.npy) for row indices."""
        shown = [str(self.lines[i] if self.lines is not None else i) for i in rows[:_LISTED]]
        more = ", ..." if len(rows) > _LISTED else ""
        unit = "line" if self.lines is not None else "row"
        tail = "" if self.lines is not None else " (0-based)"
        return f"{unit}{'s' if len(rows) > 1 else ''} {', '.join(shown)}{more}{tail}"


def read_points(path: str, name: str = "samples", *, columns: ColumnSpec = None,
                dropna: bool = False) -> tuple[np.ndarray, list[str] | None]:
    """An (n, d) float64 array from a .npy file or a CSV file (comma, semicolon, tab or spaces; an
    optional header line of column names). Returns the array and the header (None if absent).

    columns: the columns to keep, by header name or 0-based index: "a,c", "0,2" or a list such as
    ["a", 2]; None keeps all. Only the kept columns must be numeric. Missing values (empty cells, NA,
    NaN, null, ?; NaN in a .npy array) are refused with their lines, or with ``dropna=True`` the rows
    holding one in a kept column are dropped and their number reported on stderr. The header returned
    is that of the kept columns.
    """
    table = _load(path, name)
    return _points(table, _resolve_columns(table, columns), name, dropna)


def _load(path: str, name: str) -> _Table:
    p = Path(path)
    if path == "-":
        return _parse_csv(sys.stdin.read(), "<stdin>")
    if not p.exists():
        raise UserError(f"{name} file not found: {path}")
    if p.is_dir():
        raise UserError(f"{name} path is a folder, not a file: {path}")
    if p.suffix.lower() == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise UserError(f"cannot read {path} as a .npy array: {exc}") from None
        if arr.dtype.kind not in "iuf":
            raise UserError(f"{path} holds {arr.dtype} values; expected real numbers")
        if arr.ndim == 1:
            raise UserError(f"{path} holds a 1-D array of shape {arr.shape}; save an (n, d) array "
                            "(for 1-D data, shape (n, 1))")
        if arr.ndim != 2:
            raise UserError(f"{path} holds a {arr.ndim}-D array of shape {arr.shape}; expected (n, d)")
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise UserError(f"{path} holds an empty array of shape {arr.shape}")
        return _Table(path, None, arr.astype(np.float64), None)
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text CSV file (use .csv or .npy)") from None
    return _parse_csv(text, path)


def _split(line: str) -> list[str]:
    for sep in (",", ";", "\t"):
        if sep in line:
            return [c.strip() for c in next(csv.reader([line], delimiter=sep))]
    return line.split()


def _kind(cell: str) -> str:
    """'missing', 'number' or 'text'."""
    if cell.strip().lower() in MISSING:
        return "missing"
    try:
        float(cell)
    except ValueError:
        return "text"
    return "number"


def _has_header(rows: list[list[str]]) -> bool:
    """The first line names the columns if it has text cells and either no numbers or, under at least
    one of its text cells, a number or a missing value on the next line (a text column has text there)."""
    kinds = [_kind(c) for c in rows[0]]
    text = [j for j, k in enumerate(kinds) if k == "text"]
    if not text:
        return False
    if "number" not in kinds or len(rows) == 1:
        return True
    return any(j < len(rows[1]) and _kind(rows[1][j]) != "text" for j in text)


def _parse_csv(text: str, path: str) -> _Table:
    rows: list[list[str]] = []
    lines: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        rows.append(_split(line))
        lines.append(lineno)
    header = None
    if rows and _has_header(rows):
        header = rows.pop(0)
        lines.pop(0)
    if not rows:
        raise UserError(f"{path} holds no data rows")
    width = len(header) if header is not None else len(rows[0])
    for cells, lineno in zip(rows, lines):
        if len(cells) != width:
            raise UserError(f"{path}, line {lineno}: {len(cells)} columns, but the first row has {width}")
    return _Table(path, header, rows, lines)


def _resolve_columns(table: _Table, columns: ColumnSpec) -> list[int]:
    """0-based indices of the chosen columns (all of them for None)."""
    if columns is None:
        return list(range(table.width))
    items = [c.strip() for c in columns.split(",")] if isinstance(columns, str) else list(columns)
    chosen, unknown = [], []
    for item in items:
        if isinstance(item, str) and table.header is not None and item in table.header:
            chosen.append(table.header.index(item))
        elif isinstance(item, (int, np.integer)) or (isinstance(item, str) and item.isdigit()):
            if 0 <= int(item) < table.width:
                chosen.append(int(item))
            else:
                unknown.append(str(item))
        else:
            unknown.append(repr(item) if isinstance(item, str) else str(item))
    if not items or unknown:
        if table.header is not None:
            available = f"its columns are {', '.join(table.header)} (indices 0-{table.width - 1})"
        else:
            kind = "a .npy array" if table.lines is None else "no header line"
            available = f"it has {kind} and {table.width} columns: choose 0-based indices 0-{table.width - 1}"
        what = f"no column {', '.join(unknown)}" if unknown else "no columns chosen"
        raise UserError(f"--columns: {table.path} has {what}; {available}")
    twice = sorted({j for j in chosen if chosen.count(j) > 1})
    if twice:
        raise UserError(f"--columns chooses {', '.join(table.label(j) for j in twice)} more than once")
    return chosen


def _points(table: _Table, chosen: list[int], name: str, dropna: bool) -> tuple[np.ndarray, list[str] | None]:
    """The chosen columns as floats, after the checks for text and missing values."""
    header = None if table.header is None else [table.header[j] for j in chosen]
    if table.lines is None:  # .npy: numbers already; NaN is the missing value
        values = table.cells[:, chosen]  # (n, k)
    else:
        values = np.empty((len(table.cells), len(chosen)))  # (n, k)
        first_text: dict[int, tuple[str, int]] = {}  # column -> (its first text cell, row)
        for i, row in enumerate(table.cells):
            for k, j in enumerate(chosen):
                try:
                    values[i, k] = float(row[j])  # 'nan' and 'NaN' parse, as missing values
                except ValueError:
                    values[i, k] = np.nan
                    if row[j].strip().lower() not in MISSING and j not in first_text:
                        first_text[j] = (row[j], i)
        if first_text:
            raise UserError(_text_message(table, chosen, first_text))
    missing = np.isnan(values).any(1)  # (n,)
    rows = np.flatnonzero(missing).tolist()
    if rows and not dropna:
        raise UserError(f"{table.path}: missing values (empty, NA, NaN, null or ?) in {len(rows)} "
                        f"row{'s' if len(rows) > 1 else ''}, {table.where(rows)}; pass --dropna to drop "
                        f"{'those rows' if len(rows) > 1 else 'that row'}")
    if rows:
        print(f"{PROG}: dropped {len(rows)} of {len(values)} {name} rows with missing values "
              f"({table.where(rows)})", file=sys.stderr)
        values = values[~missing]
        if len(values) == 0:
            raise UserError(f"{table.path} holds no data rows without missing values")
    return values, header


def _text_message(table: _Table, chosen: list[int], first_text: dict[int, tuple[str, int]]) -> str:
    """One message naming every chosen column that holds text, with its first text cell and line."""
    bad = sorted(first_text, key=chosen.index)
    listed = "; ".join(f"{table.label(j)} ({first_text[j][0]!r} on line {table.lines[first_text[j][1]]})"
                       for j in bad)
    numeric = [j for j in range(table.width) if all(_kind(row[j]) != "text" for row in table.cells)]
    hint = (f"choose numeric columns with --columns, e.g. --columns {','.join(table.handle(j) for j in numeric)}"
            if numeric else "no column of the file is all numbers")
    return f"{table.path}: {len(bad)} non-numeric column{'s' if len(bad) > 1 else ''}: {listed}; {hint}"


def write_table(path: str | None, columns: list[str], table: np.ndarray) -> None:
    """Write (m, k) values with column names to a .npy file (values only) or CSV (stdout if path is None)."""
    if path is not None and Path(path).suffix.lower() == ".npy":
        np.save(path, table)
        return
    buf = io.StringIO()
    buf.write(",".join(columns) + "\n")
    np.savetxt(buf, table, delimiter=",", fmt="%.10g")
    if path is None:
        sys.stdout.write(buf.getvalue())
    else:
        Path(path).write_text(buf.getvalue())


def _check_out(path: str | None) -> None:
    if path is None:
        return
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: folder {parent} does not exist")
    if Path(path).suffix.lower() not in (".csv", ".npy", ".txt", ".tsv", ""):
        raise UserError(f"--out must end in .csv or .npy, got {path}")


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _column_names(table: _Table, chosen: list[int]) -> list[str]:
    """Output names of the chosen columns: the header's, else x<index> (x0, x3 for --columns 0,3)."""
    return [table.header[j] if table.header is not None and table.header[j] else f"x{j}" for j in chosen]


def _load_fitted(args: argparse.Namespace):
    import torch

    import disco_plug

    table = _load(args.samples, "samples")
    chosen = _resolve_columns(table, args.columns)
    samples, _ = _points(table, chosen, "samples", args.dropna)
    estimator = disco_plug.load(args.weights)
    names = _column_names(table, chosen)
    # What fit reports about the table (constant, collinear or grid-valued columns) is one notice line
    # each on stderr, `disco-plug: warning: ...`, never a Python warning with a source line.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        fitted = estimator.fit(samples, bounds=_parse_bounds(args.bounds, names, samples.shape[1]),
                               dequantize=args.dequantize, generator=torch.Generator().manual_seed(args.seed),
                               names=names)
    for w in caught:
        # The library's advice in the command line's terms: `fit(dequantize=True)` is --dequantize here.
        print(f"{PROG}: warning: {str(w.message).replace('pass dequantize=True', 'pass --dequantize')}", file=sys.stderr)
    if args.adapt:
        fitted = fitted.adapt(args.adapt, generator=torch.Generator().manual_seed(args.seed))
    return fitted, samples, names


def _parse_bounds(text: str | None, names: list[str] | None, d: int) -> dict | None:
    """--bounds "COL:LOW:HIGH,..." -> fit's {column: (low, high)} (an empty LOW or HIGH is an open side;
    COL a header name, else a 0-based index)."""
    if text is None:
        return None
    out: dict = {}
    for entry in text.split(","):
        parts = entry.strip().rsplit(":", 2)
        if len(parts) != 3 or not parts[0]:
            raise UserError(f"--bounds entry {entry.strip()!r} is not COL:LOW:HIGH (e.g. rate:0:1 or sigma:0:)")
        col, low, high = parts
        key: int | str = col
        if not (names and col in names):
            try:
                key = int(col)
            except ValueError:
                known = f"the columns are {', '.join(names)}" if names else f"there are {d} columns, 0..{d - 1}"
                raise UserError(f"--bounds names column {col!r}; {known}") from None
        try:
            out[key] = (float(low) if low.strip() else None, float(high) if high.strip() else None)
        except ValueError:
            raise UserError(f"--bounds entry {entry.strip()!r}: LOW and HIGH must be numbers or empty") from None
    return out


def _read_queries(args: argparse.Namespace, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """The queries with the samples' columns: with --columns, those of a header holding the chosen
    names, else the file as it is, which must then have as many columns as were chosen."""
    table = _load(args.queries, "queries")
    d = len(names)
    chosen = list(range(table.width))
    if args.columns is not None and table.header is not None and all(n in table.header for n in names):
        chosen = [table.header.index(n) for n in names]
    elif table.width != d:
        if args.columns is not None:
            raise UserError(f"queries have d={table.width} columns but --columns chose d={d} of the samples "
                            f"({', '.join(names)}); give the queries a header line with those names, or "
                            f"exactly {d} columns")
        raise UserError(f"queries have d={table.width} columns but the samples have d={d}; both files "
                        "need the same columns")
    queries, header = _points(table, chosen, "queries", args.dropna)
    return queries, header if header is not None and all(header) else names


# -- subcommands ---------------------------------------------------------------------------------------
def cmd_estimate(args: argparse.Namespace) -> int:
    _check_out(args.out)
    fitted, queries, names = _load_fitted(args)  # the queries default to the samples
    if args.queries is not None:
        queries, names = _read_queries(args, names)
    chunks = range(0, len(queries), _QUERY_CHUNK)
    if _progress(args) and len(chunks) > 1:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="estimate", unit="chunk", file=sys.stderr)
    log_p = np.empty(len(queries))
    score = np.empty_like(queries)
    for start in chunks:
        lp, s = fitted.log_density_and_score(queries[start:start + _QUERY_CHUNK])
        log_p[start:start + _QUERY_CHUNK], score[start:start + _QUERY_CHUNK] = lp, s
    if args.out is not None and Path(args.out).suffix.lower() == ".npy":
        write_table(args.out, [], np.concatenate([log_p[:, None], score], 1))
    else:
        columns = [*names, "log_density", *(f"score_{c}" for c in names)]
        write_table(args.out, columns, np.concatenate([queries, log_p[:, None], score], 1))
    if args.out is not None and not args.quiet:
        print(f"wrote log-density and score at {len(queries)} points to {args.out}", file=sys.stderr)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    _check_out(args.out)
    if args.num < 1:
        raise UserError(f"--num must be a positive integer, got {args.num}")
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be a positive integer, got {args.steps}")
    fitted, _, names = _load_fitted(args)
    new = fitted.sample(args.num, method=args.method, steps=args.steps,
                        generator=torch.Generator().manual_seed(args.seed), progress=_progress(args))
    write_table(args.out, names, np.asarray(new, dtype=np.float64))
    if args.out is not None and not args.quiet:
        print(f"wrote {args.num} new points ({args.method}) to {args.out}", file=sys.stderr)
    return 0


def _bench_dir() -> Path | None:
    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (root / "benchmarks").is_dir():
            return root / "benchmarks"
    return None


def cmd_bench(args: argparse.Namespace) -> int:
    suites = args.suites or ["all"]
    known = ["all", "accuracy", *_BENCH_SCRIPTS]
    unknown = [s for s in suites if s not in known]
    if unknown:
        raise UserError(f"unknown benchmark suite(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    bench_dir = _bench_dir()
    wanted = ["accuracy", *_BENCH_SCRIPTS] if "all" in suites else suites
    env = {**os.environ}
    failed = []
    for suite in wanted:
        if suite == "accuracy":
            cmd = [sys.executable, "-m", "disco_plug.bench", "accuracy", *(["--quick"] if args.quick else []),
                   *(["--weights", args.weights] if args.weights else [])]
        else:
            script = bench_dir / f"{suite}.py" if bench_dir is not None else None
            if script is None or not script.is_file():
                if "all" in suites:
                    continue  # that suite is not part of this checkout
                raise UserError(f"benchmark script benchmarks/{suite}.py not found (run from the repository root)")
            cmd = [sys.executable, str(script)]
        if not args.quiet:
            print(f"== {suite}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        rc = subprocess.run(cmd, env=env, cwd=bench_dir.parent if bench_dir is not None else None).returncode
        if rc:
            failed.append(f"{suite} (exit {rc})")
    if failed:
        print(f"{PROG}: error: benchmark(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    if args.readme and bench_dir is not None and (bench_dir.parent / "README.md").is_file():
        from . import readme  # refresh the README's generated tables from the new results

        readme.main(["--readme", str(bench_dir.parent / "README.md"), "--results", str(bench_dir / "results")])
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from . import train

    cfg = train.parse_args(args.train_args)
    train.train(cfg)
    return 0


# -- parser --------------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("samples", help="sample set X: an (n, d) .npy file, or a CSV with one point per row "
                                   "(optional header line); '-' reads CSV from stdin")
    p.add_argument("--weights", default=None, help="weights file (default: the bundled weights)")
    p.add_argument("--adapt", type=int, default=0, metavar="STEPS",
                   help="test-time adaptation steps before querying (default 0). Acts on the gated blend only: "
                   "the default stacked estimate's score is the exact gradient of its log-density, so there is "
                   "nothing to adapt and the estimate is unchanged")
    p.add_argument("--seed", type=int, default=0, help="random seed (sampling, adaptation)")
    p.add_argument("--columns", default=None, metavar="COLS",
                   help="columns of SAMPLES to use, by header name or 0-based index, comma separated "
                   "(e.g. sepal_length,petal_width or 0,3; default all). Only these must be numeric; "
                   "--queries files take the same names from their header, or have exactly these columns")
    p.add_argument("--dropna", action="store_true",
                   help="drop rows with a missing value (empty, NA, NaN, null, ?) in the columns used, and "
                   "report how many on stderr (default: refuse them, with their line numbers)")
    p.add_argument("--dequantize", action="store_true",
                   help="add one grid step of uniform noise (drawn with --seed) to columns recorded on a grid "
                   "(integers, 0.1 steps), so that tied values do not make the density singular (without it, such "
                   "columns are named in a warning on stderr)")
    p.add_argument("--bounds", default=None, metavar="COL:LOW:HIGH,...",
                   help="known supports of columns (a proportion, a positive scale), e.g. rate:0:1,sigma:0: "
                   "(an empty side is open; COL a header name or 0-based index). Those columns are estimated "
                   "in log/logit coordinates: the density is zero outside the bounds (log p = -inf there) and "
                   "samples stay inside; samples on or outside a bound are refused")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or status lines")


def build_parser() -> argparse.ArgumentParser:
    from .noised import SAMPLING_METHODS

    parser = argparse.ArgumentParser(
        prog=PROG, description="A pretrained DiScoFormer (arXiv 2511.05924): log-density and score of the "
        "distribution behind a sample set, and new points from it, without training.",
        epilog="Run 'disco-plug COMMAND --help' for the options of a command.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("estimate", help="log-density and score at query points",
                       description="Fit the bundled estimator on SAMPLES and write log p and grad log p at "
                       "the queries (default: at the samples). CSV output has the query coordinates, "
                       "log_density and score_<column>; .npy output is an (m, 1 + d) array "
                       "[log_density, score...].")
    _common(p)
    p.add_argument("--queries", default=None, help="query points (.npy or CSV, same columns as SAMPLES)")
    p.add_argument("--out", default=None, help="output .csv or .npy file (default: CSV to stdout)")
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("sample", help="new points from the estimated distribution",
                       description="Fit the bundled estimator on SAMPLES and draw NUM new points: exact draws "
                       "from the estimated density (default), or a score-based sampler driven by the estimated "
                       "noise-conditional score.")
    _common(p)
    p.add_argument("--num", type=int, required=True, help="number of new points")
    p.add_argument("--method", default="exact", choices=("exact", *SAMPLING_METHODS),
                   help="sampler (default exact: i.i.d. draws from the estimated density; pc: reverse VE SDE "
                   "with a Langevin corrector)")
    p.add_argument("--steps", type=int, default=None, help="noise levels or Langevin steps (default per method)")
    p.add_argument("--out", default=None, help="output .csv or .npy file (default: CSV to stdout)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("bench", help="run the benchmark suites",
                       description="Run benchmark suites; results go to benchmarks/results/*.md and *.json. "
                       "'all' (default) runs the accuracy suite and every benchmarks/<suite>.py present.")
    p.add_argument("suites", nargs="*", metavar="SUITE",
                   help=f"any of: all, accuracy, {', '.join(_BENCH_SCRIPTS)}")
    p.add_argument("--quick", action="store_true", help="accuracy suite: a subset of rows")
    p.add_argument("--weights", default=None, help="accuracy suite: weights file")
    p.add_argument("--no-readme", dest="readme", action="store_false",
                   help="do not refresh the README's generated tables afterwards (python -m disco_plug.readme)")
    p.add_argument("-q", "--quiet", action="store_true", help="no status lines")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("train", help="train DiScoFormer on random Gaussian mixtures", add_help=False,
                       description="Forwards every option to python -m disco_plug.train "
                       "(disco-plug train --help lists them).")
    p.add_argument("train_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if argv[:1] == ["train"]:  # everything after `train` belongs to the training parser, --help included
        args = argparse.Namespace(func=cmd_train, train_args=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UserError, ValueError, TypeError, FileNotFoundError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover - `python -m disco_plug.cli`
    sys.exit(main())
