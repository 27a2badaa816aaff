"""Reproduce the shipped default weights: the least-squares gates of the KDE and mixture skips on a
fresh network.

    OMP_NUM_THREADS=2 .venv/bin/python training/fit_kde_init.py   # about 10 min on 2 cores

writes training/init/kde_ls.safetensors; `python -m disco_plug.export training/init/kde_ls.safetensors`
then ships it (after comparing on the benchmark)."""

import torch

from disco_plug.checkpoint import save_weights
from disco_plug.model import DiScoFormer
from disco_plug.train import TrainConfig, fit_kde_gates

torch.manual_seed(0)
net = DiScoFormer()
fit_kde_gates(net, TrainConfig(n_max=4096), torch.Generator().manual_seed(7), batches_per_dim=4)
save_weights("training/init/kde_ls.safetensors", net, metadata={"step": "0"})
