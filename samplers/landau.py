"""Particle methods for the spatially homogeneous Landau equation in score form (Carrillo, Hu, Wang & Wu 2020):
dv_i/dt = -(1/n) sum_j A(v_i - v_j) (s(v_i) - s(v_j)), with s the score of the particles' density (exact,
a blob/KDE score, or disco_plug's estimate refreshed by `fitted.update` every step)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["landau_velocity"]


def landau_velocity(v: Tensor, s: Tensor, C: float, chunk: int = 512) -> Tensor:
    """The particles' velocities (n, d): -(1/n) sum_j A(v_i - v_j) (s_i - s_j) with the Maxwell-molecule
    kernel A(z) = C (|z|^2 I - z z^T), for particles v (n, d) and their scores s (n, d), O(n^2) in chunks
    of rows. Momentum and energy are conserved exactly: sum_i u_i = 0 and sum_i v_i . u_i = 0."""
    out = []
    for i in range(0, len(v), chunk):
        z = v[i:i + chunk, None] - v[None]  # (c, n, d)
        ds = s[i:i + chunk, None] - s[None]
        a_ds = (z * z).sum(-1, keepdim=True) * ds - z * (z * ds).sum(-1, keepdim=True)
        out.append(-C * a_ds.mean(1))
    return torch.cat(out)
