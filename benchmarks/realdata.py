"""Real-data benchmark: held-out likelihood and sample quality on bundled real tables, against the usual baselines.

    python benchmarks/realdata.py                      # writes benchmarks/results/realdata.{md,json}
    python benchmarks/realdata.py --tables iris,fair   # a subset (the report lists only these)
    python benchmarks/realdata.py --quick --tables engel,wine --out /tmp/realdata   # tiny settings, a smoke run
    python benchmarks/realdata.py --threads 1          # on a shared machine (2-thread torch slows down badly there)

Tables: 11 real tables bundled with scikit-learn (`load_*`, never `fetch_*`) and statsmodels (CSVs inside the
package), d = 2..30, n = 150..20190, raw numeric columns as a user would pass them (TABLES says which columns
are dropped and why). Per table, 5 seeded random 70/30 splits; on each split every estimator is fitted on the
training part:
- disco_plug: `disco_plug.load().fit(train)`, the bundled estimate as shipped;
- GMM-BIC: scikit-learn GaussianMixture, full covariances, K = 1..10 chosen by BIC, n_init = 2 (K stops
  where the mixture would have more parameters than training points);
- KDE-CV: Gaussian KDE on the data whitened by the training mean and covariance, bandwidth chosen by 5-fold
  GridSearchCV over a log grid (scikit-learn KernelDensity); the whitening's log-det Jacobian is added back;
- flow: zuko's neural spline flow (3 transforms), trained with Adam on the standardized training part, early
  stopping on a 15 % validation split of it, the best validation state kept; the standardization's Jacobian
  is added back;
- Gaussian: the maximum-likelihood Gaussian (full covariance).
Reported: held-out log-likelihood in nats per dimension (mean log-density over held-out points, divided by d),
mean and standard error over splits; energy ratio: squared energy distance of min(2000, held-out size)
generated points to (at most 2000) held-out points, divided by that of as many training points to the same
held-out points (1: as close as fresh data), all columns divided by the training part's standard deviations;
fit time (selection and early stopping included).

Caveat: many of these tables have grid-valued (integer, coded) columns. A density of tied values is singular,
so an estimator that puts spikes on the grid (small KDE bandwidth, a collapsed mixture component) can score
an arbitrarily high held-out likelihood there; the table descriptions say how many columns take at most 20
distinct values.

Protocols: "raw" (the default) fits and scores the columns as recorded. `--dequantize` is the usual protocol for
density estimation on discrete data (Theis, van den Oord & Bethge 2016, section 3.1): every grid-valued column
(disco_plug.columns.grid_columns on the whole table: ties, all gaps multiples of one step) gets uniform noise of
one grid step, U(-step/2, step/2), and every coded column (coded_columns: at most 20 unevenly spaced tied levels,
fair's age bands) has each value spread uniformly over its cell (halfway to the neighbouring levels), drawn once
per split for the training and held-out parts alike, so that every
estimator fits and is scored on the same continuous data; the held-out likelihood is then a lower bound on the
discrete model's log-probability per grid cell, and spikes on grid values no longer pay. Results go to
realdata_dequantized.{md,json}.

Resumable: each (table, split, estimator) result goes to `<out>/realdata_partial.json` as soon as it is done,
and a rerun with the same settings skips finished cells (`--fresh` starts over). One estimator failing (or
warning) never stops the run: the exception text is recorded in that cell, warnings per table and estimator.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
import warnings
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's disco_plug, whatever the installed copy

import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import disco_plug  # noqa: E402
from disco_plug.bench import git_commit  # noqa: E402
from disco_plug.columns import spread_over_cells, tied_columns  # noqa: E402
from disco_plug.samplers import energy_distance  # noqa: E402

OUT = ROOT / "benchmarks" / "results"
ESTIMATORS = ["disco_plug", "GMM-BIC", "KDE-CV", "flow", "Gaussian"]


@dataclass(frozen=True)
class Table:
    """A bundled real table: `load()` gives its raw numeric columns as an (n, d) float64 array."""

    name: str
    source: str  # "scikit-learn" (sklearn.datasets.load_<loader>) or "statsmodels" (statsmodels.datasets.<loader>)
    loader: str
    n: int
    d: int
    drop: tuple[str, ...] = ()  # statsmodels columns left out
    why: str = ""  # why they are left out

    def load(self) -> np.ndarray:
        if self.source == "scikit-learn":
            import sklearn.datasets as sk

            kwargs = {"scaled": False} if self.loader == "diabetes" else {}  # raw columns, not sklearn's scaling
            x = getattr(sk, f"load_{self.loader}")(**kwargs).data  # features only: the target is a separate array
        else:
            import importlib

            frame = importlib.import_module(f"statsmodels.datasets.{self.loader}").load_pandas().data
            x = frame.drop(columns=list(self.drop)).to_numpy(dtype=np.float64)
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.n, self.d):
            raise ValueError(f"{self.name}: expected shape {(self.n, self.d)}, got {x.shape}")
        return x


STAR98_INTERACTIONS = ("PERMINTE_AVYRSEXP", "PERMINTE_AVSAL", "AVYRSEXP_AVSAL", "PERSPEN_PTRATIO", "PERSPEN_PCTAF",
                       "PTRATIO_PCTAF", "PERMINTE_AVYRSEXP_AVSAL", "PERSPEN_PTRATIO_PCTAF")
TABLES = {t.name: t for t in [
    Table("engel", "statsmodels", "engel", 235, 2),  # income, food expenditure (Belgian households, 1857)
    Table("grunfeld", "statsmodels", "grunfeld", 220, 3, ("firm", "year"), "firm name (a string), year (time index)"),
    Table("iris", "scikit-learn", "iris", 150, 4),
    Table("fair", "statsmodels", "fair", 6366, 9),  # affairs survey; 8 of 9 columns are coded on small grids
    Table("diabetes", "scikit-learn", "diabetes", 442, 10),  # scaled=False: raw age, sex, bmi, bp, s1..s6
    Table("randhie", "statsmodels", "randhie", 20190, 10),  # RAND health insurance experiment; 4 binary columns
    Table("anes96", "statsmodels", "anes96", 944, 10, ("logpopul",),
          "logpopul = log(popul + 0.1), a function of popul"),
    Table("macrodata", "statsmodels", "macrodata", 203, 12, ("year", "quarter"), "year, quarter (time index)"),
    Table("wine", "scikit-learn", "wine", 178, 13),
    Table("star98", "statsmodels", "star98", 303, 14, STAR98_INTERACTIONS,
          "8 interaction columns (products of other columns)"),
    Table("breast_cancer", "scikit-learn", "breast_cancer", 569, 30),
]}


@dataclass(frozen=True)
class Config:
    splits: int = 5
    test_fraction: float = 0.3
    seed: int = 2026
    gmm_max_components: int = 10
    gmm_n_init: int = 2
    kde_bandwidths: tuple[float, float, int] = (0.01, 2.0, 16)  # log grid (low, high, points), whitened units
    kde_folds: int = 5
    flow_transforms: int = 3
    flow_hidden: tuple[int, ...] = (64, 64)
    flow_lr: float = 1e-3
    flow_val_fraction: float = 0.15
    flow_max_steps: int = 5000  # Adam steps at most: bounds the CPU cost on the large tables
    flow_check_steps: int = 50  # validation every ceil(this / steps per epoch) epochs ...
    flow_patience: int = 10  # ... and stop after this many checks without improvement
    energy_points: int = 2000
    dequantize: bool = False  # the dequantized protocol (module docstring)


QUICK = Config(splits=1, gmm_max_components=3, gmm_n_init=1, kde_bandwidths=(0.05, 1.0, 5), kde_folds=3,
               flow_max_steps=60, flow_check_steps=20, flow_patience=2, energy_points=300)


# -- data and metrics ------------------------------------------------------------------------------------------

def split(x: np.ndarray, table: str, index: int, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """The index-th seeded random (train, held-out) split, the same whatever other tables run; with
    cfg.dequantize, the grid-valued columns (found on the whole table) get one grid step of uniform noise."""
    rng = np.random.default_rng([cfg.seed, zlib.crc32(table.encode()), index])
    perm = rng.permutation(len(x))
    n_test = int(round(cfg.test_fraction * len(x)))
    if cfg.dequantize:
        x = x.copy()
        noise = np.random.default_rng([cfg.seed, zlib.crc32(table.encode()), index, 1])
        grid, coded = tied_columns(torch.as_tensor(x))
        for j, step in grid.items():
            x[:, j] += (noise.random(len(x)) - 0.5) * step
        for j, levels in coded.items():  # after the grid ones: their noise is unchanged
            x[:, j] = spread_over_cells(torch.as_tensor(x[:, j]), levels, torch.as_tensor(noise.random(len(x)))).numpy()
    return x[perm[n_test:]], x[perm[:n_test]]


def scaled_energy(a: np.ndarray, b: np.ndarray, sd: np.ndarray) -> float:
    """Squared energy distance (disco_plug.samplers.energy_distance, the exact V-statistic) of two (n, d) sets
    after dividing every column by `sd` (the training part's standard deviations), so that all columns count."""
    sd = np.where(sd > 0, sd, 1.0)
    return energy_distance(torch.as_tensor(a / sd), torch.as_tensor(b / sd))


def count_coded_columns(x: np.ndarray, levels: int = 20) -> int:
    """How many columns take at most `levels` distinct values."""
    return sum(len(np.unique(c)) <= levels for c in x.T)


# -- estimators: fit(train, seed, cfg) -> (log_density, sample, info) ------------------------------------------

def fit_disco_plug(train: np.ndarray, seed: int, cfg: Config, variant: str = ""):
    fitted = _load_disco_plug(variant).fit(train)
    fitted.log_density(train[:1])  # anything the fit defers is part of its cost

    def sample(m: int) -> np.ndarray:
        return fitted.sample(m, generator=torch.Generator().manual_seed(seed))

    return fitted.log_density, sample, {}


_ESTIMATOR: dict = {}
# Ablations of the bundled estimate (`--estimators disco_plug,disco_plug[shrunk]`): config overrides.
VARIANTS = {"": {}, "no-shrunk": {"stacked_shrunk_kde_factors": ()},
            "shrunk-only": {"stacked_kde_factors": (), "stacked_shrunk_kde_factors": (1.0, 2.0)},
            "2fold": {"stacking_folds": 2}, "gated": {"blend": "gated"}, "no-cluster": {"cluster_kde_counts": ()}}


def _load_disco_plug(variant: str = ""):
    if variant not in _ESTIMATOR:
        from disco_plug.checkpoint import default_weights_path, load_weights
        from disco_plug.estimator import Estimator

        network, _, meta = load_weights(default_weights_path(), overrides=VARIANTS[variant] or None)
        _ESTIMATOR[variant] = Estimator(network, metadata=meta)
    return _ESTIMATOR[variant]


def fit_gmm(train: np.ndarray, seed: int, cfg: Config):
    from sklearn.mixture import GaussianMixture

    best, bics, errors = None, {}, {}
    for k in range(1, cfg.gmm_max_components + 1):
        if k > 1 and k * (1 + train.shape[1] + train.shape[1] * (train.shape[1] + 1) // 2) >= len(train):
            break  # more parameters than training points: BIC would not pick it, and EM is slow to fail
        try:
            gm = GaussianMixture(k, covariance_type="full", n_init=cfg.gmm_n_init, random_state=seed).fit(train)
        except (ValueError, np.linalg.LinAlgError) as e:  # ill-defined covariance at this K
            errors[k] = _short(e)
            continue
        bics[k] = float(gm.bic(train))
        if best is None or bics[k] < bics[best.n_components]:
            best = gm
    if best is None:
        raise RuntimeError(f"no K fitted: {errors}")

    def sample(m: int) -> np.ndarray:
        return best.sample(m)[0]

    return best.score_samples, sample, {"K": best.n_components, "bic": bics, "errors": errors}


def fit_kde(train: np.ndarray, seed: int, cfg: Config):
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.neighbors import KernelDensity

    mean = train.mean(0)
    chol = np.linalg.cholesky(np.cov(train.T).reshape(train.shape[1], train.shape[1]))
    log_det = float(np.log(np.diag(chol)).sum())  # log |det L|: the whitening z = L^-1 (x - mean) has Jacobian 1/|L|

    def whiten(y: np.ndarray) -> np.ndarray:
        return np.linalg.solve(chol, (y - mean).T).T

    low, high, points = cfg.kde_bandwidths
    grid = np.geomspace(low, high, points)
    search = GridSearchCV(KernelDensity(kernel="gaussian"), {"bandwidth": grid},
                          cv=KFold(cfg.kde_folds, shuffle=True, random_state=seed)).fit(whiten(train))
    kde = search.best_estimator_
    h = float(kde.bandwidth)

    def log_density(y: np.ndarray) -> np.ndarray:
        return kde.score_samples(whiten(y)) - log_det

    def sample(m: int) -> np.ndarray:
        return kde.sample(m, random_state=seed) @ chol.T + mean

    return log_density, sample, {"bandwidth": h, "at_grid_edge": bool(h in (grid[0], grid[-1]))}


def fit_flow(train: np.ndarray, seed: int, cfg: Config):
    import zuko

    torch.manual_seed(seed)
    mean, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    z = torch.as_tensor((train - mean) / sd, dtype=torch.float32)
    perm = torch.randperm(len(z), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(cfg.flow_val_fraction * len(z))))
    val, fit = z[perm[:n_val]], z[perm[n_val:]]
    flow = zuko.flows.NSF(train.shape[1], transforms=cfg.flow_transforms, hidden_features=cfg.flow_hidden)
    opt = torch.optim.Adam(flow.parameters(), lr=cfg.flow_lr)
    batch = 256 if len(fit) <= 4096 else 512
    per_epoch = math.ceil(len(fit) / batch)
    check_every = math.ceil(cfg.flow_check_steps / per_epoch)  # epochs between validation checks
    g = torch.Generator().manual_seed(seed + 1)
    best, best_state, bad, steps, epochs = -math.inf, None, 0, 0, 0
    while steps < cfg.flow_max_steps and bad < cfg.flow_patience:
        order = torch.randperm(len(fit), generator=g)
        for i in range(0, len(fit), batch):
            loss = -flow().log_prob(fit[order[i:i + batch]]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        epochs += 1
        if epochs % check_every == 0 or steps >= cfg.flow_max_steps:
            with torch.no_grad():
                v = float(flow().log_prob(val).mean())
            if v > best:
                best, bad = v, 0
                best_state = {k: t.clone() for k, t in flow.state_dict().items()}
            else:
                bad += 1
    if best_state is None:
        raise RuntimeError("validation log-likelihood never finite")
    flow.load_state_dict(best_state)
    flow = flow.double().eval()
    log_sd = float(np.log(sd).sum())

    def log_density(y: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return flow().log_prob(torch.as_tensor((y - mean) / sd)).numpy() - log_sd

    def sample(m: int) -> np.ndarray:
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(seed + 2)
            return flow().sample((m,)).numpy() * sd + mean

    return log_density, sample, {"steps": steps, "epochs": epochs, "batch": batch, "val_loglik_standardized": best}


def fit_gaussian(train: np.ndarray, seed: int, cfg: Config):
    mean = train.mean(0)
    cov = np.cov(train.T, bias=True).reshape(train.shape[1], train.shape[1])
    chol = np.linalg.cholesky(cov)  # LinAlgError on a singular covariance: recorded as a failure
    log_norm = float(np.log(np.diag(chol)).sum()) + 0.5 * train.shape[1] * math.log(2 * math.pi)

    def log_density(y: np.ndarray) -> np.ndarray:
        r = np.linalg.solve(chol, (y - mean).T)
        return -0.5 * (r * r).sum(0) - log_norm

    def sample(m: int) -> np.ndarray:
        return np.random.default_rng(seed).standard_normal((m, train.shape[1])) @ chol.T + mean

    return log_density, sample, {}


FITS: dict[str, Callable] = {"disco_plug": fit_disco_plug, "GMM-BIC": fit_gmm, "KDE-CV": fit_kde,
                             "flow": fit_flow, "Gaussian": fit_gaussian,
                             **{f"disco_plug[{v}]": (lambda v: lambda tr, seed, cfg: fit_disco_plug(tr, seed, cfg, v))(v)
                                for v in VARIANTS if v}}


# -- one cell: (table, split, estimator) -----------------------------------------------------------------------

def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]


def run_cell(name: str, train: np.ndarray, test: np.ndarray, ref: dict, seed: int, cfg: Config) -> dict:
    """Fit one estimator; its held-out log-likelihood (nats / dim) and energy distance, each caught apart."""
    d = train.shape[1]
    cell: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            t0 = time.perf_counter()
            log_density, sample, info = FITS[name](train, seed, cfg)
            cell["fit_seconds"] = time.perf_counter() - t0
            cell["info"] = info
        except Exception as e:  # noqa: BLE001 -- one estimator's failure must not end the run
            cell["error"] = _short(e)
            cell["traceback"] = traceback.format_exc(limit=4)
        if "error" not in cell:
            try:
                t0 = time.perf_counter()
                lp = np.asarray(log_density(test), dtype=np.float64)
                cell["eval_seconds"] = time.perf_counter() - t0
                bad = int((~np.isfinite(lp)).sum())
                if bad:
                    raise FloatingPointError(f"non-finite log-density at {bad} of {len(lp)} held-out points")
                cell["loglik"] = float(lp.mean()) / d
            except Exception as e:  # noqa: BLE001
                cell["loglik_error"] = _short(e)
            try:
                gen = np.asarray(sample(ref["points"]), dtype=np.float64)
                if not np.isfinite(gen).all():
                    raise FloatingPointError("non-finite samples")
                cell["energy"] = scaled_energy(gen, ref["test_sub"], ref["sd"])
                cell["energy_ratio"] = cell["energy"] / ref["energy"]
            except Exception as e:  # noqa: BLE001
                cell["energy_error"] = _short(e)
    cell["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    return cell


def reference(train: np.ndarray, test: np.ndarray, key: str, cfg: Config) -> dict:
    """The held-out subsample every estimator is compared with, and the training-vs-held-out energy distance."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    m = min(cfg.energy_points, len(test))
    test_sub = test[rng.choice(len(test), m, replace=False)]
    train_sub = train[rng.choice(len(train), m, replace=False)]
    sd = train.std(0)
    return {"points": m, "test_sub": test_sub, "sd": sd, "energy": scaled_energy(train_sub, test_sub, sd)}


# -- checkpoint and report -------------------------------------------------------------------------------------

def load_partial(path: Path, cfg: Config, fresh: bool) -> dict:
    if fresh or not path.exists():
        return {}
    saved = json.loads(path.read_text())
    if {"dequantize": False, **saved.get("config", {})} != json.loads(json.dumps(asdict(cfg))):  # older files lack it
        print(f"{path}: other settings, starting over", flush=True)
        return {}
    return saved["cells"]


def save_partial(path: Path, cfg: Config, cells: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"config": asdict(cfg), "cells": cells}, indent=1))
    os.replace(tmp, path)  # never a half-written checkpoint


def _mean_se(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), (float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan)


def summarize(cells: dict, tables: list[str], cfg: Config, estimators: list[str]) -> dict:
    """Per table and estimator: mean and standard error over splits, or the first failure."""
    out: dict = {}
    for t in tables:
        out[t] = {}
        for est in estimators:
            runs = [cells[f"{t}|{s}|{est}"] for s in range(cfg.splits)]
            row: dict = {}
            for metric in ("loglik", "energy_ratio", "fit_seconds"):
                err = next((c.get("error") or c.get(f"{metric.split('_')[0]}_error") for c in runs
                            if metric not in c), None)
                if err is not None:
                    row[metric] = {"failed": err}
                else:
                    m, se = _mean_se([c[metric] for c in runs])
                    row[metric] = {"mean": m, "se": se}
            out[t][est] = row
    return out


def _short_reason(err: str, width: int = 50) -> str:
    text = err.replace("|", "/").replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def _fmt(cell: dict, digits: int, bold: bool, se: bool = True) -> str:
    if "failed" in cell:
        return f"failed: {_short_reason(cell['failed'])}"
    text = f"{cell['mean']:.{digits}f}"
    if se and not math.isnan(cell["se"]):
        text += f" ± {cell['se']:.{digits}f}"
    return f"**{text}**" if bold else text


def markdown(report: dict) -> str:
    cfg, tables, summary = report["config"], report["tables"], report["summary"]
    estimators = report["estimators"]
    lines = ["# Real-data benchmark: held-out likelihood and sample quality on bundled real tables", "",
             f"Command: `{report['command']}`  ", f"Commit: `{report['commit']}`  ",
             f"Machine: {report['machine']}; load average {report['load']} (at the start: {report['load_start']}); "
             f"wall time {report['wall_seconds']:.0f} s", "",
             f"{cfg['splits']} seeded random {100 - 100 * cfg['test_fraction']:.0f}/{100 * cfg['test_fraction']:.0f} "
             "splits per table; mean ± standard error over splits. Estimators and metrics: the module docstring of "
             "benchmarks/realdata.py. " + (
                 "Dequantized protocol: every grid-valued column has one grid step of uniform noise, the same "
                 "for all estimators, in training and held-out parts." if cfg.get("dequantize") else
                 "Raw columns as a user would pass them; grid-valued columns (at most 20 distinct values) make "
                 "densities singular, so likelihoods on those tables reward spikes (see realdata_dequantized.md)."),
             "", "## Tables", ""]
    for name, t in tables.items():
        dropped = f"; dropped: {t['why']}" if t["why"] else ""
        lines.append(f"- **{name}** ({t['source']}): n = {t['n']}, d = {t['d']}, {t['grid_columns']} grid-valued "
                     f"column(s){dropped}")
    header = "| table | n | d | " + " | ".join(estimators) + " |"
    rule = "|---|---|---|" + "---|" * len(estimators)
    sections = [("Held-out log-likelihood (nats per dimension, higher is better)", "loglik", 3, max),
                ("Energy ratio (generated vs held-out over training vs held-out; 1 is as good as fresh data, "
                 "lower is better)", "energy_ratio", 2, min),
                ("Fit time (seconds, selection and early stopping included)", "fit_seconds", 1, None)]
    for title, metric, digits, best_of in sections:
        lines += ["", f"## {title}", "", header, rule]
        for name, t in tables.items():
            cells = {e: summary[name][e][metric] for e in estimators}
            ok = {e: c["mean"] for e, c in cells.items() if "failed" not in c}
            best = best_of(ok, key=ok.get) if (best_of and ok) else None
            row = " | ".join(_fmt(cells[e], digits, e == best, se=metric != "fit_seconds") for e in estimators)
            lines.append(f"| {name} | {t['n']} | {t['d']} | {row} |")
    noted = [(name, est, w) for name in tables for est, ws in report["warnings"][name].items() for w in ws]
    if noted:
        lines += ["", "## Warnings", "", "Distinct warnings per table and estimator (full text in the JSON).", ""]
        for name, est, w in noted:
            lines.append(f"- {name}, {est}: {_short_reason(w, 160)}")
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tables", default=",".join(TABLES), help="comma-separated subset of: " + ", ".join(TABLES))
    p.add_argument("--splits", type=int, default=None, help="splits per table (default 5; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    p.add_argument("--dequantize", action="store_true", help="the dequantized protocol (module docstring)")
    p.add_argument("--fresh", action="store_true", help="ignore the checkpoint of finished cells")
    p.add_argument("--estimators", default=",".join(ESTIMATORS),
                   help="comma-separated, of: " + ", ".join(FITS) + " (disco_plug[...]: ablations, VARIANTS)")
    p.add_argument("--redo", default="", help="comma-separated estimators whose finished cells are recomputed "
                   "(e.g. disco_plug after a change to it); each cell records the commit it ran at")
    p.add_argument("--threads", type=int, default=2, help="torch and BLAS threads (default 2)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    names = [t.strip() for t in args.tables.split(",") if t.strip()]
    unknown = [t for t in names if t not in TABLES]
    if unknown:
        p.error(f"unknown tables {unknown}; known: {', '.join(TABLES)}")
    cfg = QUICK if args.quick else Config()
    if args.splits is not None:
        cfg = replace(cfg, splits=args.splits)
    cfg = replace(cfg, dequantize=args.dequantize)
    torch.set_num_threads(args.threads)  # on a busy machine, 1: torch's threads slow down badly when cores are shared
    threadpool_limits(args.threads)  # numpy's BLAS, scikit-learn's OpenMP
    stem = ("realdata_quick" if args.quick else "realdata") + ("_dequantized" if args.dequantize else "")
    args.out.mkdir(parents=True, exist_ok=True)
    partial = args.out / f"{stem}_partial.json"
    cells = load_partial(partial, cfg, args.fresh)
    redo = {e.strip() for e in args.redo.split(",") if e.strip()}
    estimators = [e.strip() for e in args.estimators.split(",") if e.strip()]
    if (redo | set(estimators)) - set(FITS):
        p.error(f"unknown estimators: {sorted((redo | set(estimators)) - set(FITS))}; known: {', '.join(FITS)}")
    cells = {k: c for k, c in cells.items() if not (k.split("|")[2] in redo and k.split("|")[0] in names)}
    commit = git_commit(ROOT)
    t_start, load_start = time.perf_counter(), " ".join(f"{v:.2f}" for v in os.getloadavg())
    described, refs = {}, {}
    for name in names:
        table = TABLES[name]
        x = table.load()
        described[name] = {"source": table.source, "n": table.n, "d": table.d, "dropped": list(table.drop),
                           "why": table.why, "grid_columns": count_coded_columns(x)}
        for s in range(cfg.splits):
            train, test = split(x, name, s, cfg)
            ref = reference(train, test, f"{name}|{s}", cfg)
            refs[f"{name}|{s}"] = {"points": ref["points"], "train_vs_test_energy": ref["energy"],
                                   "n_train": len(train), "n_test": len(test)}
            for est in estimators:
                i = list(FITS).index(est)  # seeds do not depend on which estimators run
                key = f"{name}|{s}|{est}"
                if key in cells:
                    continue
                seed = cfg.seed + 1000 * s + 17 * i
                cells[key] = {**run_cell(est, train, test, ref, seed, cfg), "commit": commit}
                c = cells[key]
                shown = c.get("error") or ", ".join([
                    f"{c['loglik']:.3f} nats/dim" if "loglik" in c else c["loglik_error"],
                    f"energy ratio {c['energy_ratio']:.2f}" if "energy_ratio" in c else c["energy_error"],
                    f"{c['fit_seconds']:.1f} s"])
                print(f"{name} split {s} {est}: {shown}", flush=True)
                save_partial(partial, cfg, cells)
    command = " ".join(["python benchmarks/realdata.py", *(sys.argv[1:] if argv is None else argv)])
    shown_cells = {k: c for k, c in cells.items() if k.split("|")[0] in names and int(k.split("|")[1]) < cfg.splits}
    commits = sorted({c.get("commit", "?") for c in shown_cells.values()})
    report = {"command": command, "commit": commit if commits == [commit] else f"{commit} (cells from {', '.join(commits)})",
              "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
              "load": " ".join(f"{v:.2f}" for v in os.getloadavg()), "load_start": load_start,
              "wall_seconds": time.perf_counter() - t_start, "config": asdict(cfg), "tables": described,
              "splits": refs, "estimators": estimators,
              "summary": summarize(cells, names, cfg, estimators),
              "warnings": {t: {e: sorted({w for s in range(cfg.splits) for w in cells[f"{t}|{s}|{e}"]["warnings"]})
                               for e in estimators} for t in names},
              "cells": shown_cells}
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1))
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
