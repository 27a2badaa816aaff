"""Reproduce the shipped default weights: the least-squares gates of the KDE and mixture skips on a
fresh network.

    OMP_NUM_THREADS=2 .venv/bin/python training/fit_kde_init.py   # 14 min on 2 cores

writes training/init/kde_ls.safetensors; `python -m disco_plug.export training/init/kde_ls.safetensors`
then ships it (after comparing on the benchmark). Variants (issue 3's notes), e.g. the mixtures with
4 (d + 2) shrinkage pseudo-points and the diagonal family, on a quarter of axis-aligned tasks (32 min):

    .venv/bin/python training/fit_kde_init.py --out training/init/axes.safetensors --axis-aligned 0.25 \
        --model '{"mixture_prior_scale": 4.0, "mixture_axes": true}'
"""

import argparse
import json
import os
import time

import torch

from disco_plug.checkpoint import save_weights
from disco_plug.config import ModelConfig
from disco_plug.model import DiScoFormer
from disco_plug.train import TrainConfig, fit_kde_gates

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--out", default="training/init/kde_ls.safetensors")
parser.add_argument("--model", default="{}", help="ModelConfig fields (JSON) that differ from the defaults")
parser.add_argument("--axis-aligned", type=float, default=0.0, help="TrainConfig.axis_aligned")
args = parser.parse_args()
torch.manual_seed(0)
start = time.time()
net = DiScoFormer(ModelConfig(**json.loads(args.model)))
tokens = fit_kde_gates(net, TrainConfig(n_max=4096, axis_aligned=args.axis_aligned), torch.Generator().manual_seed(7),
                       batches_per_dim=4)
stats = {"tokens_seen": tokens, "train_hours": (time.time() - start) / 3600,
         "hardware": f"1 x CPU process ({torch.get_num_threads()} threads, {os.cpu_count()} cores)",
         "method": "least-squares gate fit (training/fit_kde_init.py), no gradient steps"}
save_weights(args.out, net, metadata={"step": "0", "stats": json.dumps(stats)})
