"""Fill the README's accuracy and speed tables from benchmark results, so the README never holds a
hand-typed figure.

    python -m disco_plug.readme            # rewrite the generated blocks of README.md in place
    python -m disco_plug.readme --check    # exit 1 if README.md is out of date with the results

Each generated block sits between `<!-- BEGIN GENERATED: name -->` and `<!-- END GENERATED: name -->`.
Sources (benchmarks/results/): accuracy.json (or accuracy_quick.json) from `python -m disco_plug.bench
accuracy`, and the "Speed"/"time" sections of samplers.md, scale.md and integrations.md when present.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from .bench import COLUMNS, WORSE_BEYOND_SE, _fmt, verdict_against_best_kde

__all__ = ["accuracy_block", "speed_block", "mcmc_block", "realdata_block", "sequential_block", "landau_block",
           "results_block",
           "render", "main"]

ROOT = Path(__file__).resolve().parents[1]
_SPEED_SOURCES = ("samplers", "scale", "integrations")
_SPEED_HEADING = re.compile(r"speed|time|throughput|latency|memory", re.IGNORECASE)
_NO_RESULTS = ("_No benchmark results yet: run `make bench` (or `disco-plug bench`), then "
               "`python -m disco_plug.readme`._")


def _load_accuracy(results: Path) -> tuple[dict[str, Any] | None, str]:
    for stem in ("accuracy", "accuracy_quick"):
        path = results / f"{stem}.json"
        if path.is_file():
            return json.loads(path.read_text()), stem
    return None, ""


def _provenance(report: dict[str, Any], stem: str) -> str:
    training = report.get("training", {})
    return (f"Generated from [`benchmarks/results/{stem}.md`](benchmarks/results/{stem}.md): "
            f"`{report.get('command', '?')}` at commit `{str(report.get('commit', '?'))[:10]}`, weights at "
            f"training step {training.get('step', '?')} ({training.get('cost', 'cost unknown')}), "
            f"on {report.get('machine', 'an unrecorded machine')}.")


def accuracy_block(results: Path) -> str:
    """Relative score MSE (%) and log-density MSE per benchmark row: disco_plug (the bundled estimate), Scott KDE, oracle KDE."""
    report, stem = _load_accuracy(results)
    if report is None:
        return _NO_RESULTS
    lines = [_provenance(report, stem), "",
             "Relative score MSE in % (100 = predicting a zero score; lower is better) and log-density MSE, at "
             "query points drawn from the same distribution as the samples. *Oracle KDE* picks, per task, the "
             "bandwidth on a grid that minimizes the error against the true values: a bound no real KDE reaches.",
             "", "| data set | disco_plug | Scott KDE | oracle KDE | report (DiScoFormer) | log-density MSE: "
             "disco_plug / oracle KDE |", "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        ours, scott, best = (r[f"{m}/same"] for m in ("ours", "scott", "best_kde"))
        goal = r["row"].get("goal")
        lines.append(f"| {r['row']['name']} | {_fmt(ours['rel_score_mse_pct'])} | {_fmt(scott['rel_score_mse_pct'])} "
                     f"| {_fmt(best['rel_score_mse_pct'])} | {'' if goal is None else _fmt(goal)} "
                     f"| {_fmt(ours['logp_mse'])} / {_fmt(best['logp_mse'])} |")
    if all("ours_minus_best_kde/same" in r for r in report["rows"]):
        lines += ["", _against_best_kde(report["rows"])]
    return "\n".join(lines)


def _against_best_kde(rows: list[dict[str, Any]]) -> str:
    """One sentence: in how many (row, column) cells ours beats the oracle KDE, and where it does not."""
    worse, significant = [], []
    for r in rows:
        w, s = verdict_against_best_kde(r)
        worse += [f"{r['row']['name']} ({c})" for c in w]
        significant += [f"{r['row']['name']} ({c})" for c in s]
    cells = len(rows) * len(COLUMNS)
    text = (f"Against the oracle KDE, paired by task, in all four columns of the results file (score and "
            f"log-density, at same-distribution and at tail queries): disco_plug has the lower error in "
            f"{cells - len(worse)} of {cells} cells")
    if not worse:
        return text + "."
    text += f"; the higher one in {'; '.join(worse)}"
    if not significant:
        return text + f", none beyond {WORSE_BEYOND_SE:g} standard errors of the paired difference."
    return text + f"; beyond {WORSE_BEYOND_SE:g} standard errors in {'; '.join(significant)}."


def _sections(markdown: str) -> list[tuple[str, str]]:
    """(heading, body) for every `## ` section of a markdown file."""
    out: list[tuple[str, list[str]]] = []
    for line in markdown.splitlines():
        if line.startswith("## "):
            out.append((line[3:].strip(), []))
        elif out:
            out[-1][1].append(line)
    return [(h, "\n".join(body).strip()) for h, body in out]


def speed_block(results: Path) -> str:
    """Fit-and-query time against Scott KDE (from the accuracy run) and the speed sections of the
    sampler, scale and integration benchmarks, copied from their result files; first the table of
    speed.md (benchmarks/speed.py: against gaussian_kde and GaussianMixture-BIC, quiet and loaded) and of
    update.md (benchmarks/update.py: warm-started updates of an evolving sample set) and latency.md
    (benchmarks/latency.py: single-point queries)."""
    parts = []
    for stem in ("speed", "update", "latency"):  # benchmarks/speed.py, update.py (fitted.update), latency.py
        if (results / f"{stem}.md").is_file():
            parts += [_whole_file(results, (stem,)), ""]
    report, stem = _load_accuracy(results)
    if report is not None:
        parts += [f"Wall time per task (fit on n samples, then 2 x {report['rows'][0]['row']['queries']} queries), "
                  f"from [`{stem}.md`](benchmarks/results/{stem}.md), {report.get('machine', '')}:", "",
                  "| data set | disco_plug (ms) | Scott KDE (ms) |", "|---|---|---|"]
        for r in report["rows"]:
            tasks = r["row"]["tasks"]
            parts.append(f"| {r['row']['name']} | {_fmt(1000 * r['seconds_ours'] / tasks)} "
                         f"| {_fmt(1000 * r['seconds_scott_kde'] / tasks)} |")
    for name in _SPEED_SOURCES:
        path = results / f"{name}.md"
        if not path.is_file():
            continue
        for heading, body in _sections(path.read_text()):
            if _SPEED_HEADING.search(heading):
                parts += ["", f"**{heading}** (from [`{name}.md`](benchmarks/results/{name}.md))", "", body]
    return "\n".join(parts).strip() if parts else _NO_RESULTS


def results_block(results: Path) -> str:
    """Links to every result file present."""
    files = sorted(results.glob("*.md")) if results.is_dir() else []
    if not files:
        return _NO_RESULTS
    return "\n".join(f"- [`benchmarks/results/{p.name}`](benchmarks/results/{p.name})" for p in files)


def _whole_file(results: Path, stems: tuple[str, ...]) -> str:
    """The first present result file of stems, without its headings, with a link to it."""
    for stem in stems:
        path = results / f"{stem}.md"
        if path.is_file():
            body = [line for line in path.read_text().splitlines() if not line.startswith("#")]
            text = "\n".join(body).strip()
            return f"From [`benchmarks/results/{stem}.md`](benchmarks/results/{stem}.md):\n\n{text}"
    return _NO_RESULTS


def mcmc_block(results: Path) -> str:
    """The table of mcmc.md (benchmarks/mcmc.py), with the lines that say how it was made."""
    return _whole_file(results, ("mcmc", "mcmc_quick"))


def sequential_block(results: Path) -> str:
    """The tables of sequential.md (benchmarks/sequential.py): two-stage updating in Pyro, NumPyro, PyMC."""
    return _whole_file(results, ("sequential",))


_REALDATA = (("realdata", "Raw columns, as a user passes them"),
             ("realdata_dequantized", "Dequantized: one grid step of uniform noise on every grid-valued column, "
                                      "the same for every estimator"))
_REALDATA_SECTIONS = ("Held-out log-likelihood", "Energy ratio", "Fit time")


def landau_block(results: Path) -> str:
    """The table of landau.md (benchmarks/landau.py): the Landau particle method driven by estimated scores."""
    return _whole_file(results, ("landau",))


def realdata_block(results: Path) -> str:
    """The likelihood, sample-quality and fit-time tables of realdata.md and realdata_dequantized.md
    (benchmarks/realdata.py), each with the command and commit that made it."""
    parts = []
    for stem, title in _REALDATA:
        path = results / f"{stem}.md"
        if not path.is_file():
            continue
        text = path.read_text()
        made = [line.rstrip() for line in text.splitlines() if line.startswith(("Command:", "Commit:"))]
        parts += [f"**{title}** (from [`benchmarks/results/{stem}.md`](benchmarks/results/{stem}.md); "
                  f"{' '.join(m.strip() for m in made)})"]
        for heading, body in _sections(text):
            if heading.startswith(_REALDATA_SECTIONS):
                parts += ["", f"*{heading}*", "", body]
        parts.append("")
    return "\n".join(parts).strip() if parts else _NO_RESULTS


BLOCKS = {"accuracy": accuracy_block, "speed": speed_block, "mcmc": mcmc_block, "realdata": realdata_block,
          "sequential": sequential_block, "landau": landau_block, "results": results_block}


def render(readme: str, results: Path) -> str:
    """The README text with every generated block refilled from `results`."""
    for name, build in BLOCKS.items():
        pattern = re.compile(rf"(<!-- BEGIN GENERATED: {name} -->\n).*?(<!-- END GENERATED: {name} -->)", re.DOTALL)
        if not pattern.search(readme):
            raise ValueError(f"README has no '<!-- BEGIN GENERATED: {name} -->' ... "
                             f"'<!-- END GENERATED: {name} -->' block")
        body = build(results)
        readme = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), readme)
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m disco_plug.readme", description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", default=str(ROOT / "README.md"), help="README file (default: the checkout's)")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"), help="benchmark results folder")
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if the README is out of date")
    args = parser.parse_args(argv)
    path = Path(args.readme)
    if not path.is_file():
        parser.error(f"README not found: {path}")
    old = path.read_text()
    try:
        new = render(old, Path(args.results))
    except ValueError as exc:
        parser.error(str(exc))
    if args.check:
        if new != old:
            print(f"{path} is out of date with {args.results}: run python -m disco_plug.readme", file=sys.stderr)
            return 1
        return 0
    if new != old:
        path.write_text(new)
        print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
