"""Sequential Bayesian updating in Pyro, NumPyro and PyMC: yesterday's posterior draws as today's prior.

Data: statsmodels' Spector & Mazzeo (1980) grade data (32 students; outcome: grade improved; GPA, TUCE,
PSI standardized, plus an intercept), a classic logistic regression whose posterior is skewed at this
sample size. Protocol, for each framework:
1. reference: NUTS on all 32 rows with the N(0, 2.5^2 I) prior, twice (NumPyro, independent seeds):
   its means, sds and skewness, and the Monte Carlo noise (the two runs' difference);
2. stage 1: the framework's NUTS on half of the rows (fixed split) with the same prior, 4000 draws;
3. stage 2: NUTS on the other half with the stage-1 draws as the prior, through
   - the bundled estimator (``EstimatedDistribution`` of the framework's adapter), and
   - the moment-matched Gaussian (the stage-1 draws' mean and covariance, what a user would
     otherwise do; pymc-extras' ``prior_from_idata`` does this);
4. errors against the reference: means and sds in reference sds, the skewness of the most skewed
   coefficient, divergent transitions.
Target (issue 20): errors within max(2 x MC noise, 0.1) reference sds, and no worse than the Gaussian.

Speed: one prior evaluation (log p and score at one point, d = 10, n = 4000 draws) through each
framework against the direct call, median of repeated calls in one run.

Run: python benchmarks/sequential.py [--quick] [--frameworks numpyro,pymc,pyro]
Writes benchmarks/results/sequential.md and sequential.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import disco_plug
from disco_plug.bench import git_commit, median_ms

ROOT = Path(__file__).resolve().parents[1]
PRIOR_SCALE = 2.5
FRAMEWORKS = ("numpyro", "pymc", "pyro")


def spector() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Standardized GPA, TUCE, PSI with an intercept (32, 4), outcome (32,), column names."""
    import statsmodels.api as sm

    data = sm.datasets.spector.load_pandas()
    cols = data.exog.to_numpy(dtype=np.float64)
    cols = (cols - cols.mean(0)) / cols.std(0)
    return np.c_[np.ones(len(cols)), cols], data.endog.to_numpy(dtype=np.float64), ["intercept", *data.exog.columns]


def skewness(x: np.ndarray) -> np.ndarray:
    c = x - x.mean(0)
    return (c**3).mean(0) / (c**2).mean(0) ** 1.5


# --- NumPyro ---------------------------------------------------------------------------------------

def numpyro_nuts(X, y, prior: str, stage1: np.ndarray | None, seed: int, s: dict, fitted=None):
    import jax
    import numpyro
    import numpyro.distributions as nd
    from numpyro.infer import MCMC, NUTS

    from disco_plug.integrations.numpyro import EstimatedDistribution

    d = X.shape[1]
    if prior == "normal":
        p = nd.Normal(0.0, PRIOR_SCALE).expand([d]).to_event(1)
    elif prior == "gaussian":
        p = nd.MultivariateNormal(stage1.mean(0), np.cov(stage1.T))
    else:
        p = EstimatedDistribution(fitted)

    def model():
        b = numpyro.sample("b", p)
        numpyro.sample("y", nd.Bernoulli(logits=X @ b), obs=y)

    mcmc = MCMC(NUTS(model), num_warmup=s["warmup"], num_samples=s["draws"] // s["chains"],
                num_chains=s["chains"], chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(seed))
    return np.asarray(mcmc.get_samples()["b"], dtype=np.float64), int(mcmc.get_extra_fields()["diverging"].sum())


# --- PyMC ------------------------------------------------------------------------------------------

def pymc_nuts(X, y, prior: str, stage1: np.ndarray | None, seed: int, s: dict, fitted=None):
    import pymc as pm

    from disco_plug.integrations.pymc import EstimatedDistribution

    d = X.shape[1]
    with pm.Model():
        if prior == "normal":
            b = pm.Normal("b", 0.0, PRIOR_SCALE, shape=d)
        elif prior == "gaussian":
            b = pm.MvNormal("b", stage1.mean(0), np.cov(stage1.T))
        else:
            b = EstimatedDistribution("b", None, fitted=fitted)
        pm.Bernoulli("y", logit_p=pm.math.dot(X, b), observed=y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = pm.sample(s["draws"] // s["chains"], tune=s["warmup"], chains=s["chains"], cores=1,
                              random_seed=seed, progressbar=False, compute_convergence_checks=False)
    draws = idata.posterior["b"].values.reshape(-1, d)
    return draws.astype(np.float64), int(idata.sample_stats["diverging"].values.sum())


# --- Pyro ------------------------------------------------------------------------------------------

def pyro_nuts(X, y, prior: str, stage1: np.ndarray | None, seed: int, s: dict, fitted=None):
    import pyro
    import pyro.distributions as pd
    from pyro.infer import MCMC, NUTS

    from disco_plug.integrations.pyro import EstimatedDistribution

    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    d = X.shape[1]
    if prior == "normal":
        p = pd.Normal(torch.zeros(d, dtype=torch.float64), PRIOR_SCALE).to_event(1)
    elif prior == "gaussian":
        s1 = torch.as_tensor(stage1)
        p = pd.MultivariateNormal(s1.mean(0), torch.cov(s1.T))
    else:
        p = EstimatedDistribution(fitted)

    def model():
        b = pyro.sample("b", p)
        pyro.sample("y", pd.Bernoulli(logits=Xt.to(b.dtype) @ b).to_event(1), obs=yt.to(b.dtype))

    draws, divergences = [], 0
    for chain in range(s["chains"]):  # one process: chains one after the other
        pyro.set_rng_seed(seed + chain)
        mcmc = MCMC(NUTS(model), num_samples=s["draws"] // s["chains"], warmup_steps=s["warmup"],
                    disable_progbar=True)
        mcmc.run()
        draws.append(mcmc.get_samples()["b"].numpy())
        divergences += len(mcmc.diagnostics()["divergences"]["chain 0"])
    return np.concatenate(draws).astype(np.float64), divergences


RUNNERS = {"numpyro": numpyro_nuts, "pymc": pymc_nuts, "pyro": pyro_nuts}


def summary(draws: np.ndarray) -> dict:
    return {"mean": draws.mean(0).tolist(), "sd": draws.std(0, ddof=1).tolist(), "skew": skewness(draws).tolist()}


def errors(stage2: dict, ref: dict, key: int) -> dict:
    m, s, rm, rs = (np.array(v) for v in (stage2["mean"], stage2["sd"], ref["mean"], ref["sd"]))
    return {"mean_err": (np.abs(m - rm) / rs).tolist(), "sd_err": (np.abs(s - rs) / rs).tolist(),
            "key_skew": stage2["skew"][key], "skew_err": abs(stage2["skew"][key] - ref["skew"][key])}


def sequential(frameworks: list[str], s: dict, est) -> dict:
    import jax

    X, y, names = spector()
    split = np.random.default_rng(0).permutation(len(y))
    a, b = split[: len(y) // 2], split[len(y) // 2:]
    runs = [numpyro_nuts(X, y, "normal", None, seed, s["reference"]) for seed in (101, 202)]
    ref_runs = [r[0] for r in runs]
    refs = [{**summary(r), "divergences": div} for r, div in runs]
    ref = summary(np.concatenate(ref_runs))
    noise = {"mean": (np.abs(np.subtract(refs[0]["mean"], refs[1]["mean"])) / ref["sd"]).tolist(),
             "sd": (np.abs(np.subtract(refs[0]["sd"], refs[1]["sd"])) / ref["sd"]).tolist()}
    key = int(np.argmax(np.abs(ref["skew"])))
    out = {"names": names, "split": {"stage1_rows": sorted(a.tolist()), "stage2_rows": sorted(b.tolist())},
           "reference": ref, "reference_runs": refs, "noise": noise, "key": names[key], "frameworks": {}}
    for fw in frameworks:
        run = RUNNERS[fw]
        start = time.perf_counter()
        stage1, div1 = run(X[a], y[a], "normal", None, 1, s["stage1"])
        t1 = time.perf_counter() - start
        row = {"stage1": {**summary(stage1), "divergences": div1, "seconds": t1}, "priors": {}}
        fitted = est.fit(stage1)
        for prior in ("estimate", "gaussian"):
            start = time.perf_counter()
            draws, div = run(X[b], y[b], prior, stage1, 2, s["stage2"], fitted=fitted)
            row["priors"][prior] = {**summary(draws), **errors(summary(draws), ref, key), "divergences": div,
                                    "seconds": time.perf_counter() - start}
            print(fw, prior, {k: np.round(v, 3) for k, v in row["priors"][prior].items() if k != "skew"},
                  flush=True)
        out["frameworks"][fw] = row
        jax.clear_caches()
    return out



def speed(est, frameworks: list[str]) -> dict:
    """Median ms of one log p + score evaluation at one point (d = 10, n = 4000) per framework. Every
    call gets a new point (a sampler never asks twice in a row), so no cache answers it."""
    import jax
    import jax.numpy as jnp

    draws = np.random.default_rng(1).standard_t(5, size=(4000, 10))
    fitted = est.fit(draws)
    points = np.random.default_rng(2).normal(size=(4096, 10))
    counter = iter(range(10**9))

    def point() -> np.ndarray:
        return points[next(counter) % len(points)]

    out = {"direct (numpy in)": median_ms(lambda: fitted.log_density_and_score(point()[None]))}
    out["direct (torch in)"] = median_ms(lambda: fitted.log_density_and_score(torch.from_numpy(point()[None])))
    if "numpyro" in frameworks:
        from disco_plug.integrations.numpyro import EstimatedDistribution

        vg = jax.jit(jax.value_and_grad(EstimatedDistribution(fitted).log_prob))
        out["numpyro value_and_grad (jit)"] = median_ms(
            lambda: jax.block_until_ready(vg(jnp.asarray(point(), dtype=jnp.float32))))
    if "pymc" in frameworks:
        import pymc as pm

        from disco_plug.integrations.pymc import EstimatedDistribution as PmDist

        with pm.Model() as model:
            PmDist("x", None, fitted=fitted)
        fn = model.logp_dlogp_function(ravel_inputs=True)
        fn.set_extra_values({})
        out["pymc logp_dlogp_function"] = median_ms(lambda: fn(point()))
    if "pyro" in frameworks:
        from pyro.ops.integrator import potential_grad

        from disco_plug.integrations.pyro import potential_fn

        pot = potential_fn(fitted)
        out["pyro potential_grad"] = median_ms(lambda: potential_grad(pot, {"x": torch.from_numpy(point())}))
    from disco_plug.integrations.emcee import log_prob_fn

    lp = log_prob_fn(fitted)
    out["emcee log_prob_fn (log p only)"] = median_ms(lambda: lp(point()))
    return out


def markdown(report: dict) -> str:
    seq = report["sequential"]
    names = seq["names"]
    lines = ["# Sequential updating benchmark (Pyro, NumPyro, PyMC)", "",
             f"Command: `{report['command']}`  ", f"Commit: `{report['commit']}`  ",
             f"Date: {report['date']}  ", f"Machine: {report['machine']}  ", f"Versions: {report['versions']}", "",
             "Data: statsmodels' Spector & Mazzeo grade data (n = 32; logistic regression on standardized "
             f"{', '.join(names[1:])} with an intercept, prior N(0, {PRIOR_SCALE}^2 I)). Stage 1: NUTS on 16 "
             "rows; stage 2: NUTS on the other 16 with the stage-1 draws as the prior. Reference: NUTS on all "
             "32 rows (NumPyro, two runs). Errors in reference sds; MC noise = the two reference runs' "
             f"difference. Settings: {report['settings']}.", "",
             "Reference posterior: " + ", ".join(
                 f"{n} {m:+.3f} ± {s:.3f} (skew {k:+.2f})" for n, m, s, k in
                 zip(names, seq["reference"]["mean"], seq["reference"]["sd"], seq["reference"]["skew"])) + "  ",
             f"Divergences in the two reference runs: {[r.get('divergences', '-') for r in seq['reference_runs']]}. "
             f"Key marginal (largest |skew|): {seq['key']}. MC noise of the reference, means: "
             + ", ".join(f"{v:.3f}" for v in seq["noise"]["mean"]) + "; sds: "
             + ", ".join(f"{v:.3f}" for v in seq["noise"]["sd"]) + ".", "",
             "| framework | stage-2 prior | max mean error | max sd error | tolerance (max) | key skew (ref) "
             "| divergences | stage-2 s |", "|---|---|---|---|---|---|---|---|"]
    tol_mean = np.maximum(2 * np.array(seq["noise"]["mean"]), 0.1)
    tol_sd = np.maximum(2 * np.array(seq["noise"]["sd"]), 0.1)
    key = names.index(seq["key"])
    for fw, row in seq["frameworks"].items():
        s1 = row["stage1"]
        for prior, r in row["priors"].items():
            label = "DiScoFormer estimate" if prior == "estimate" else "moment-matched Gaussian"
            ok = all(np.array(r["mean_err"]) <= tol_mean) and all(np.array(r["sd_err"]) <= tol_sd)
            lines.append(f"| {fw} | {label} | {max(r['mean_err']):.3f} | {max(r['sd_err']):.3f} | "
                         f"{max(tol_mean.max(), tol_sd.max()):.3f}{' ✓' if ok else ' ✗'} | "
                         f"{r['key_skew']:+.2f} ({seq['reference']['skew'][key]:+.2f}) | {r['divergences']} | "
                         f"{r['seconds']:.1f} |")
        lines.append(f"| {fw} | (stage 1, 16 rows) | skew of {seq['key']}: {s1['skew'][key]:+.2f} | | | | "
                     f"{s1['divergences']} | {s1['seconds']:.1f} |")
    lines += ["", "## One prior evaluation (log p and score at one point, d = 10, n = 4000 draws; median ms)", "",
              "| call | ms | ratio to the direct call |", "|---|---|---|"]
    direct = report["speed"]["direct (numpy in)"]
    for name, ms in report["speed"].items():
        lines.append(f"| {name} | {ms:.3f} | {ms / direct:.2f} |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small settings (a smoke run)")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    args = parser.parse_args()
    frameworks = [f for f in args.frameworks.split(",") if f]
    unknown = sorted(set(frameworks) - set(FRAMEWORKS))
    if unknown:
        parser.error(f"unknown frameworks {unknown}; choose from {FRAMEWORKS}")
    torch.set_num_threads(1)  # one point per call: a second intra-op thread only adds synchronization
    if args.quick:
        settings = {"reference": {"warmup": 300, "draws": 4000, "chains": 4},
                    "stage1": {"warmup": 300, "draws": 1000, "chains": 2},
                    "stage2": {"warmup": 200, "draws": 400, "chains": 2}}
    else:
        settings = {"reference": {"warmup": 1000, "draws": 40000, "chains": 8},
                    "stage1": {"warmup": 1000, "draws": 4000, "chains": 4},
                    "stage2": {"warmup": 800, "draws": 2000, "chains": 2}}
    import jax

    versions = {"torch": torch.__version__, "jax": jax.__version__}
    for name in ("numpyro", "pymc", "pyro", "arviz"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    est = disco_plug.load()
    report = {"command": " ".join(["python", "benchmarks/sequential.py", *sys.argv[1:]]),
              "commit": git_commit(ROOT),
              "uncommitted": subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                            capture_output=True, text=True).stdout.split("\n")[:-1],
              "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average at start "
                         f"{os.getloadavg()[0]:.2f}, torch threads {torch.get_num_threads()}",
              "versions": versions, "settings": settings}
    report["speed"] = speed(est, frameworks)
    report["sequential"] = sequential(frameworks, settings, est)
    report["machine"] += f", load average at end {os.getloadavg()[0]:.2f}"
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sequential.json").write_text(json.dumps(report, indent=2))
    (out / "sequential.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
