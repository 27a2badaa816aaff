"""The `disco-plug` command line: estimate log-density and score, draw new points, run the benchmarks,
train.

    disco-plug estimate samples.csv                      # log p and score at the samples, CSV to stdout
    disco-plug estimate samples.npy --queries grid.csv --out result.npy
    disco-plug sample samples.csv --num 500 --method ode --out new.csv
    disco-plug bench --quick
    disco-plug train --out runs/main --steps 20000

Mistakes in the input (a missing file, a malformed CSV, a wrong dimension, NaN) end with one line
`disco-plug: error: ...` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import subprocess
import sys
from pathlib import Path
import numpy as np

__all__ = ["main", "read_points", "write_table"]

PROG = "disco-plug"
_BENCH_SCRIPTS = ("samplers", "integrations", "scale")  # benchmarks/<name>.py, run when present
_QUERY_CHUNK = 4096


class UserError(Exception):
    """A mistake in what the user passed: reported in one line, exit status 2."""


# -- files ---------------------------------------------------------------------------------------------
def read_points(path: str, name: str = "samples") -> tuple[np.ndarray, list[str] | None]:
    """An (n, d) float64 array from a .npy file or a CSV file (comma, semicolon, tab or spaces; an
    optional header line of column names). Returns the array and the header (None if absent)."""
    p = Path(path)
    if path == "-":
        return _parse_csv(sys.stdin.read(), "<stdin>", name)
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
        return arr.astype(np.float64), None
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text CSV file (use .csv or .npy)") from None
    return _parse_csv(text, path, name)


def _split(line: str) -> list[str]:
    for sep in (",", ";", "\t"):
        if sep in line:
            return [c.strip() for c in next(csv.reader([line], delimiter=sep))]
    return line.split()


def _parse_csv(text: str, path: str, name: str) -> tuple[np.ndarray, list[str] | None]:
    rows: list[list[float]] = []
    header = None
    width = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = _split(line)
        values = []
        for col, cell in enumerate(cells, 1):
            try:
                values.append(float(cell))
            except ValueError:
                if not rows and header is None and width is None:
                    values = None  # a header line
                    break
                raise UserError(f"{path}, line {lineno}, column {col}: {cell!r} is not a number") from None
        if values is None:
            header, width = cells, len(cells)
            continue
        if width is None:
            width = len(values)
        elif len(values) != width:
            raise UserError(f"{path}, line {lineno}: {len(values)} columns, but the first row has {width}")
        rows.append(values)
    if not rows:
        raise UserError(f"{path} holds no data rows")
    return np.asarray(rows, dtype=np.float64), header


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


def _load_fitted(args: argparse.Namespace):
    import disco_plug

    samples, header = read_points(args.samples, "samples")
    estimator = disco_plug.load(args.weights)
    fitted = estimator.fit(samples)
    if args.adapt:
        import torch

        fitted = fitted.adapt(args.adapt, generator=torch.Generator().manual_seed(args.seed))
    return fitted, samples, header


# -- subcommands ---------------------------------------------------------------------------------------
def cmd_estimate(args: argparse.Namespace) -> int:
    _check_out(args.out)
    fitted, samples, header = _load_fitted(args)
    if args.queries is None:
        queries = samples
    else:
        queries, qheader = read_points(args.queries, "queries")
        header = qheader or header
        if queries.shape[1] != samples.shape[1]:
            raise UserError(f"queries have d={queries.shape[1]} columns but the samples have "
                            f"d={samples.shape[1]}; both files need the same columns")
    d = samples.shape[1]
    names = header if header is not None and len(header) == d else [f"x{i}" for i in range(d)]
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
    fitted, samples, header = _load_fitted(args)
    d = samples.shape[1]
    names = header if header is not None and len(header) == d else [f"x{i}" for i in range(d)]
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
