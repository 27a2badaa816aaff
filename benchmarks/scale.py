"""Scale benchmark: time, peak memory and accuracy against the number of samples n.

For n = 2^12 .. 2^17 samples of random d = 10 Gaussian mixtures (disco_plug.random_gmm, the training
family), fit and answer 1024 queries with
- ours: the bundled DiScoFormer estimator (fit = whiten + encode; the encoder's self-attention uses at
  most config.context_keys context points as keys, every point feeds the queries),
- scipy: scipy.stats.gaussian_kde (Scott's factor) fitted and evaluated with logpdf,
- sklearn: sklearn.neighbors.KernelDensity(bandwidth="scott") fitted and evaluated with score_samples.
Each (method, n) runs in a fresh subprocess, so its peak resident memory (ru_maxrss) is its own.
Time = fit + 1024 queries of the first task (the library's own calls); accuracy = relative score MSE
(%) = sum ||s_hat - s||^2 / sum ||s||^2 against the exact mixture score, pooled over the tasks.

The KDE libraries return no score. Their score is the exact gradient of the same kernel estimate,
computed with disco_plug's KDE (scipy: disco_plug.GaussianKDE with scipy's kernel covariance
factor^2 * Cov(ddof=1); sklearn: disco_plug.densities.kde.isotropic_kde with sklearn's isotropic bandwidth); the
table reports the largest log-density difference to the library's own logpdf/score_samples as a
check that it is the same estimator. That score computation is not included in the KDEs' time.

A last measurement streams 2^20 (about a million) queries through one fit (n = 1024) and compares its
peak memory with 2^14 queries: beyond the O(m) inputs and outputs, memory stays flat (queries are
answered in chunks).

Run: python benchmarks/scale.py [--tasks 3] [--max-log2n 17] [--threads 2]
Writes benchmarks/results/scale.md and scale.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from disco_plug.bench import git_commit

ROOT = Path(__file__).resolve().parents[1]
D, QUERIES, SEED = 10, 1024, 20251122
TARGET_S, TARGET_GIB = 60.0, 8.0
WEIGHTS = None  # the bundled weights unless --weights


# -- worker side (one fresh process per measurement) ---------------------------------------------
def _tasks(n: int, tasks: int, queries: int):
    import torch

    from disco_plug.gmm import random_gmm

    g = torch.Generator().manual_seed(SEED)
    for _ in range(tasks):  # the same mixtures for every n and method
        gmm = random_gmm(1, D, generator=g, dtype=torch.float64)
        x = gmm.sample(n, generator=torch.Generator().manual_seed(int(torch.randint(2**31, (1,), generator=g))))[0]
        y = gmm.sample(queries, generator=torch.Generator().manual_seed(int(torch.randint(2**31, (1,), generator=g))))[0]
        yield gmm, x, y


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _run_method(method: str, x, y):
    """((wall s, CPU s), library log-density (m,), score (m, d), |library - same-kernel| log-density)."""
    import numpy as np
    import torch

    if method == "ours":
        import disco_plug

        est = _run_method.estimator = getattr(_run_method, "estimator", None) or disco_plug.load(WEIGHTS)
        t, c = time.perf_counter(), time.process_time()
        log_p, score = est.fit(x).log_density_and_score(y)
        return (time.perf_counter() - t, time.process_time() - c), log_p, score, 0.0
    xn, yn = x.numpy(), y.numpy()
    if method == "scipy":
        from scipy.stats import gaussian_kde

        from disco_plug.densities.kde import GaussianKDE

        t, c = time.perf_counter(), time.process_time()
        kde = gaussian_kde(xn.T)
        log_p = kde.logpdf(yn.T)
        seconds = (time.perf_counter() - t, time.process_time() - c)
        same, score = GaussianKDE(x, float(kde.factor)).log_density_and_score(y)
    elif method == "sklearn":
        from sklearn.neighbors import KernelDensity

        from disco_plug.densities.kde import isotropic_kde

        t, c = time.perf_counter(), time.process_time()
        kde = KernelDensity(bandwidth="scott").fit(xn)
        log_p = kde.score_samples(yn)
        seconds = (time.perf_counter() - t, time.process_time() - c)
        same, score = isotropic_kde(y[None], x[None], float(kde.bandwidth_))
        same, score = same[0], score[0]
    else:
        raise ValueError(method)
    check = float(np.abs(np.asarray(log_p) - same.numpy()).max())
    return seconds, torch.as_tensor(np.asarray(log_p)), score, check


def worker(method: str, n: int, tasks: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    err = norm = 0.0
    seconds, cpu, checks = [], [], []
    base = None
    for gmm, x, y in _tasks(n, tasks, QUERIES):
        if base is None:
            base = _rss_mib()
        (s, c), _, score, check = _run_method(method, x, y)
        seconds.append(s)
        cpu.append(c)
        checks.append(check)
        true = gmm.score(y)
        err += float(((torch.as_tensor(score, dtype=torch.float64) - true) ** 2).sum())
        norm += float((true**2).sum())
    return {"method": method, "n": n, "tasks": tasks, "seconds_first": seconds[0], "seconds_all": seconds,
            "cpu_seconds_first": cpu[0], "cpu_seconds_all": cpu, "peak_rss_mib": _rss_mib(), "rss_before_fit_mib": base,
            "score_rel_mse_pct": 100.0 * err / norm, "same_kernel_logpdf_diff": max(checks)}


def stream_worker(n: int, m: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    gmm, x, _ = next(_tasks(n, 1, 1))  # the first task's mixture
    y = gmm.sample(m, generator=torch.Generator().manual_seed(1))[0]
    import disco_plug

    est = disco_plug.load(WEIGHTS)
    base = _rss_mib()
    t, c = time.perf_counter(), time.process_time()
    log_p, score = est.fit(x).log_density_and_score(y)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    io_mib = (y.numel() + log_p.numel() + score.numel()) * 8 / 2**20
    return {"n": n, "m": m, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_mib": _rss_mib(), "rss_before_fit_mib": base,
            "inputs_outputs_mib": io_mib, "finite": bool(torch.isfinite(score).all() and torch.isfinite(log_p).all())}


# -- driver side -------------------------------------------------------------------------------------
def _spawn(args: list[str], threads: int, timeout: float, weights: str | None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t = time.perf_counter()
    extra = ["--threads", str(threads)] + (["--weights", weights] if weights else [])
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *extra, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout)[-2000:], "args": args, "wall_s": time.perf_counter() - t}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = time.perf_counter() - t
    out["load_avg_after"] = os.getloadavg()[0]
    return out


def _training_active() -> str:
    proc = subprocess.run(["pgrep", "-af", "disco_plug.train"], capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if "pgrep" not in ln]
    return "; ".join(lines)


def _markdown(meta: dict, rows: list[dict], stream: list[dict]) -> str:
    out = ["# Scale: time, peak memory and accuracy against n", ""]
    out.append(f"Command: `{meta['command']}` at commit `{meta['commit']}` ({meta['date']}); torch "
               f"{meta['torch']}, {meta['threads']} threads on {meta['cpus']} CPUs ({meta['machine']}), "
               f"{meta['mem_gib']:.0f} GiB RAM; weights {meta['weights']}, training step {meta['weights_step']}"
               f"{'; uncommitted changes in tracked files' if meta['dirty'] else ''}.")
    busy = meta["training_active"]
    out.append(f"Background training run active during the measurement: {'yes (`' + busy + '`)' if busy else 'no'}. "
               f"1-minute load average before: {meta['load_before']:.1f}, after: {meta['load_after']:.1f} "
               f"(a load above {meta['cpus']} means the cores were shared and wall times are pessimistic; "
               f"CPU seconds are less affected).")
    out.append("")
    out.append(f"d = {D}, {QUERIES} queries, {meta['tasks']} random GMM tasks per n (time and memory from the first, "
               f"accuracy pooled). Target for ours at n = 2^17: at most {TARGET_S:.0f} s and {TARGET_GIB:.0f} GiB peak.")
    out.append("")
    out.append("| method | n | fit + 1024 queries (s) | CPU s | peak RSS (MiB) | peak RSS before fit (MiB) | "
               "score rel. MSE (%) | same-kernel check |")
    out.append("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            out.append(f"| {r['args'][1]} | {r['args'][2]} | error: {r['error'].splitlines()[-1][:80]} | | | | | |")
            continue
        check = "-" if r["method"] == "ours" else f"{r['same_kernel_logpdf_diff']:.1e}"
        out.append(f"| {r['method']} | {r['n']} | {r['seconds_first']:.1f} | {r['cpu_seconds_first']:.1f} | "
                   f"{r['peak_rss_mib']:.0f} | {r['rss_before_fit_mib']:.0f} | {r['score_rel_mse_pct']:.2f} | {check} |")
    out.append("")
    out.append("Score of the KDE rows: exact gradient of the same kernel estimate (disco_plug.GaussianKDE with "
               "scipy's factor; disco_plug.densities.kde.isotropic_kde with sklearn's bandwidth); the check column is the "
               "largest |library log-density - same-kernel log-density|. sklearn's Scott bandwidth is isotropic "
               "on the raw data, scipy's follows the data covariance.")
    ours = [r for r in rows if r.get("method") == "ours"]
    if ours:
        big = max(ours, key=lambda r: r["n"])
        ok = big["seconds_first"] <= TARGET_S and big["peak_rss_mib"] <= TARGET_GIB * 1024
        out.append("")
        out.append(f"Ours at n = {big['n']}: {big['seconds_first']:.1f} s wall ({big['cpu_seconds_first']:.1f} CPU s), "
                   f"peak {big['peak_rss_mib'] / 1024:.2f} GiB: {'within' if ok else 'OUTSIDE'} the target.")
        errs = [r["score_rel_mse_pct"] for r in sorted(ours, key=lambda r: r["n"])]
        mono = all(b <= a for a, b in zip(errs, errs[1:]))
        out.append(f"Accuracy against n (ours): {' -> '.join(f'{e:.2f}' for e in errs)} %: "
                   f"{'improves at every step' if mono else 'not monotone'}.")
        kdes = [r for r in rows if r.get("n") == big["n"] and r.get("method") in ("scipy", "sklearn")]
        if kdes:
            best = min(kdes, key=lambda r: r["score_rel_mse_pct"])
            verdict = "beats" if big["score_rel_mse_pct"] < best["score_rel_mse_pct"] else "does NOT beat"
            out.append(f"At n = {big['n']} ours ({big['score_rel_mse_pct']:.2f} %) {verdict} the best KDE here "
                       f"({best['method']}, {best['score_rel_mse_pct']:.2f} %) with weights of training step "
                       f"{meta['weights_step']}.")
    if stream:
        out.append("")
        out.append(f"## Streaming queries through one fit (n = {stream[0].get('n', '?')}, chunks of 4096 queries)")
        out.append("")
        out.append("| queries m | time (s) | CPU s | peak RSS (MiB) | peak RSS before fit (MiB) | inputs + outputs (MiB) | finite |")
        out.append("|---|---|---|---|---|---|---|")
        for r in stream:
            if "error" in r:
                out.append(f"| {r['args']} | error | | | | | |")
                continue
            out.append(f"| {r['m']} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['peak_rss_mib']:.0f} | {r['rss_before_fit_mib']:.0f} | "
                       f"{r['inputs_outputs_mib']:.0f} | {r['finite']} |")
        ok = [r for r in stream if "error" not in r]
        if len(ok) == 2:
            q = ok[1]["m"] * D * 8 / 2**20
            r = ok[1]["m"] * (D + 1) * 8 / 2**20
            out.append("")
            out.append(f"Peak RSS is a high-water mark that includes drawing the queries. From {ok[0]['m']} to "
                       f"{ok[1]['m']} queries it grows by {ok[1]['peak_rss_mib'] - ok[0]['peak_rss_mib']:.0f} MiB, "
                       f"which is O(m) data: the float64 queries ({q:.0f} MiB) and the mixture sampler's "
                       f"temporaries, the validated copy of the queries ({q:.0f} MiB), and the results ({r:.0f} MiB) "
                       f"held as chunk pieces and once concatenated. The network's working memory is set by the "
                       f"chunk of 4096 queries and does not grow with m.")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--min-log2n", type=int, default=12)
    parser.add_argument("--max-log2n", type=int, default=17)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default="ours,scipy,sklearn")
    parser.add_argument("--stream-log2m", type=int, default=20, help="0 skips the streaming check")
    parser.add_argument("--stream-n", type=int, default=1024)
    parser.add_argument("--weights", default=None, help="a .safetensors file instead of the bundled weights")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale"))
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global WEIGHTS
    WEIGHTS = args.weights
    if args.worker:
        kind, *rest = args.worker
        if kind == "fit":
            result = worker(rest[0], int(rest[1]), int(rest[2]), args.threads)
        else:
            result = stream_worker(int(rest[0]), int(rest[1]), args.threads)
        print(json.dumps(result))
        return

    import torch  # only for the metadata

    from disco_plug.checkpoint import default_weights_path, read_metadata

    meta = {
        "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:]),
        "commit": git_commit(ROOT),
        "dirty": bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                     capture_output=True, text=True).stdout.strip()),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__, "threads": args.threads, "cpus": os.cpu_count(), "machine": platform.machine(),
        "mem_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "weights": args.weights or "bundled",
        "weights_step": read_metadata(args.weights or default_weights_path()).get("step", "?"),
        "tasks": args.tasks, "training_active": _training_active(), "load_before": os.getloadavg()[0],
    }
    rows = []
    for log2n in range(args.min_log2n, args.max_log2n + 1):
        for method in args.methods.split(","):
            r = _spawn(["--worker", "fit", method, str(2**log2n), str(args.tasks)], args.threads, 3600, args.weights)
            rows.append(r)
            print(json.dumps(r), flush=True)
    stream = []
    if args.stream_log2m:
        for log2m in (14, args.stream_log2m):
            r = _spawn(["--worker", "stream", str(args.stream_n), str(2**log2m)], args.threads, 3600, args.weights)
            stream.append(r)
            print(json.dumps(r), flush=True)
    meta["load_after"] = os.getloadavg()[0]
    meta["training_active_after"] = _training_active()
    meta["training_active"] = meta["training_active"] or meta["training_active_after"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows, "stream": stream}, indent=1) + "\n")
    out.with_suffix(".md").write_text(_markdown(meta, rows, stream))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
