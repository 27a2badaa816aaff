"""Reproduce the shipped default weights: the least-squares gates of the KDE and mixture skips on a
fresh network.

    OMP_NUM_THREADS=2 .venv/bin/python training/fit_kde_init.py   # 14 min on 2 cores

writes training/init/kde_ls.safetensors; `python -m disco_plug.export training/init/kde_ls.safetensors`
then ships it (after comparing on the benchmark)."""

import json
import os
import time

import torch

from disco_plug.checkpoint import save_weights
from disco_plug.model import DiScoFormer
from disco_plug.train import TrainConfig, fit_kde_gates

torch.manual_seed(0)
start = time.time()
net = DiScoFormer()
tokens = fit_kde_gates(net, TrainConfig(n_max=4096), torch.Generator().manual_seed(7), batches_per_dim=4)
stats = {"tokens_seen": tokens, "train_hours": (time.time() - start) / 3600,
         "hardware": f"1 x CPU process ({torch.get_num_threads()} threads, {os.cpu_count()} cores)",
         "method": "least-squares gate fit (training/fit_kde_init.py), no gradient steps"}
save_weights("training/init/kde_ls.safetensors", net, metadata={"step": "0", "stats": json.dumps(stats)})
