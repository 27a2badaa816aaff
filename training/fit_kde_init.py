"""Reproduce the shipped default weights: the least-squares gates of the KDE and mixture skips on a
fresh network whose mixtures may share their principal axes or be diagonal on the data's axes, with
far-field skips (constant gates on every mixture's tails) and, for the log-density gates of d >= 11,
each context's held-out likelihood gains as gate features; fitted on random GMMs of which a quarter are
axis-aligned, each task's error weighted like the log1p training loss (robust).

    OMP_NUM_THREADS=2 .venv/bin/python training/fit_kde_init.py --stats training/init/far_ctx_stats.safetensors
    # 53 min on 2 cores

writes training/init/kde_ls.safetensors; `python -m disco_plug.export training/init/kde_ls.safetensors`
then ships it (after comparing on the benchmark). The fit before (no far-field skips or context
features, plain weights, 59 min) is `--model '{"mixture_axes": true, "mixture_common_axes": true}'
--plain-weights` (its tasks came from one generator for all d, so it is not redrawn exactly).

--stats FILE keeps the least-squares statistics (the slow part) in FILE after every d, and reuses what
FILE holds: an interrupted fit resumes, and solver changes are compared without drawing the tasks again.
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from disco_plug.checkpoint import read_metadata, save_weights
from disco_plug.config import ModelConfig
from disco_plug.blend.gated import GatedBlend
from disco_plug.train import GateStatistics, TrainConfig, gate_statistics, solve_gates


def save_statistics(path: str, stats: GateStatistics, hours: float) -> None:
    flat = {}
    for d, (acc, lo, hi, tokens) in stats.items():
        flat[f"{d}/lo"], flat[f"{d}/hi"], flat[f"{d}/tokens"] = lo, hi, torch.tensor(tokens)
        for (part, kind), (normal, rhs, const, norm) in acc.items():
            flat[f"{d}/{part}/{kind}/normal"], flat[f"{d}/{part}/{kind}/rhs"] = normal, rhs
            flat[f"{d}/{part}/{kind}/const"] = torch.tensor([const, norm], dtype=torch.float64)
    save_file(flat, path, metadata={"hours": str(hours)})


def load_statistics(path: str) -> tuple[GateStatistics, float]:
    flat = load_file(path)
    stats = {}
    for d in sorted({int(k.split("/")[0]) for k in flat}):
        acc = {(part, kind): [flat[f"{d}/{part}/{kind}/normal"], flat[f"{d}/{part}/{kind}/rhs"],
                              *flat[f"{d}/{part}/{kind}/const"].tolist()]
               for part in ("fit", "check", "tail") for kind in ("score", "logp")}
        stats[d] = (acc, flat[f"{d}/lo"], flat[f"{d}/hi"], int(flat[f"{d}/tokens"]))
    return stats, float(read_metadata(path)["hours"])


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--out", default="training/init/kde_ls.safetensors")
parser.add_argument("--model", default='{"blend": "gated"}',
                    help="ModelConfig fields (JSON) that differ from the defaults")
parser.add_argument("--axis-aligned", type=float, default=0.25, help="TrainConfig.axis_aligned")
parser.add_argument("--small-dim-factor", type=int, default=4, help="more batches for d <= 10 (gate_statistics)")
parser.add_argument("--tail", type=float, default=0.0,
                    help="weight of the tail queries' held-out error in the choice of gates (solve_gates)")
parser.add_argument("--context-heads", default="logp",
                    help="comma-separated heads (score, logp) whose gates may use the context features (solve_gates)")
parser.add_argument("--context-min-dim", type=int, default=11,
                    help="the context features serve the gates of d >= this only (solve_gates)")
parser.add_argument("--plain-weights", action="store_true",
                    help="weigh each task's relative error as is, not divided by 1 + its value at the start")
parser.add_argument("--stats", default="", help="keep (or reuse) the least-squares statistics in this file")
args = parser.parse_args()
torch.manual_seed(0)
start = time.time()
net = GatedBlend(ModelConfig(**json.loads(args.model)))
dims = list(range(1, net.config.max_dim + 1))
stats, hours = {}, 0.0
if args.stats and Path(args.stats).exists():
    stats, hours = load_statistics(args.stats)
    print(f"reusing the statistics of {len(stats)} dimensions in {args.stats} ({hours:.2f} h to draw)", flush=True)


def save(partial: GateStatistics) -> None:
    """Keep the statistics after every dimension: a rerun with the same --stats resumes from there."""
    if args.stats:
        save_statistics(args.stats, partial, hours + (time.time() - start) / 3600)
    print(f"d={max(partial)} done, {(time.time() - start) / 60:.1f} min", flush=True)


# Each d draws its tasks from its own seed (7 * 1000 + d), so a resumed run draws exactly what a whole one would.
stats = gate_statistics(net, TrainConfig(n_max=4096, axis_aligned=args.axis_aligned), 7, dims, batches_per_dim=4,
                        small_dim_factor=args.small_dim_factor, robust=not args.plain_weights, done=stats, on_dim=save)
hours += (time.time() - start) / 3600
chosen = solve_gates(net, stats, dims, tail=args.tail,
                     context_heads=tuple(h for h in args.context_heads.split(",") if h),
                     context_min_dim=args.context_min_dim)
print(json.dumps({d: f"{c['score']} / {c['logp']}" for d, c in chosen.items()}), flush=True)
stats_meta = {"tokens_seen": sum(s[3] for s in stats.values()), "train_hours": hours,
              "hardware": f"1 x CPU process ({torch.get_num_threads()} threads, {os.cpu_count()} cores)",
              "method": "least-squares gate fit (training/fit_kde_init.py), no gradient steps"}
save_weights(args.out, net, metadata={"step": "0", "stats": json.dumps(stats_meta)})
