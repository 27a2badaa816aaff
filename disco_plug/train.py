"""Train DiScoFormer on random Gaussian mixtures (tech report arXiv 2511.05924, section on training).

Reads top to bottom: a config, the task sampler, the loss, the loop, the checkpoint. Each step draws
fresh mixtures from the report's meta-distribution, a context of n points and queries, and regresses
the exact whitened log-density and score. Resumable: the checkpoint (safetensors, never pickle) holds
the model, the AdamW state, the step and the RNG state, and a rerun with the same --out continues.

    python -m disco_plug.train --out runs/main --steps 20000
    torchrun --nproc_per_node 2 -m disco_plug.train --out runs/ddp   # data parallel (gloo on CPU, NCCL on GPU)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import Tensor

from .checkpoint import convert_layout, load_weights, save_weights
from .config import ModelConfig
from .gmm import random_gmm
from .blend.gated import GatedBlend
from .fit.whitening import fit_whitening


@dataclass
class TrainConfig:
    out: str = "runs/main"
    steps: int = 20000  # total steps; the LR decays linearly to 10% over the last `decay_steps`
    decay_steps: int = 2000
    warmup: int = 200
    lr: float = 3e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    context_tokens: int = 4096  # B * n per process and step: B = context_tokens // n
    n_min: int = 64
    n_max: int = 1024
    queries: int = 128
    axis_aligned: float = 0.0  # fraction of tasks whose mixtures are not rotated (diagonal on the data's axes)
    logp_weight: float = 0.25
    tail_weight: float = 0.5  # weight of the queries drawn from an unrelated mixture (the tails)
    seed: int = 0
    log_every: int = 50
    ckpt_every: int = 200
    init: str = ""  # optional weights file to start from
    kde_init: int = 1  # fresh runs start from the least-squares KDE blend (fit_kde_gates)
    model: str = ""  # optional ModelConfig JSON (default: ModelConfig(blend="gated"))


# -- tasks -------------------------------------------------------------------------------------------
def sample_dim(g: torch.Generator) -> int:
    """Half the tasks in d = 1..10, 30% in 11..30, 20% in 31..100: every d is served, small d most."""
    u = torch.rand((), generator=g).item()
    lo, hi = (1, 10) if u < 0.5 else (11, 30) if u < 0.8 else (31, 100)
    return int(torch.randint(lo, hi + 1, (), generator=g))


def sample_task(cfg: TrainConfig, max_dim: int, g: torch.Generator, dim: int | None = None) -> dict[str, Tensor | int]:
    """A batch of mixtures with a context, queries and exact whitened targets (d drawn unless given)."""
    d = dim if dim is not None else min(sample_dim(g), max_dim)
    n = int(math.exp(math.log(cfg.n_min) + (math.log(cfg.n_max) - math.log(cfg.n_min)) * torch.rand((), generator=g)))
    n = max(n, d + 2)
    b = max(1, cfg.context_tokens // n)
    # Most mixtures get a random rotation (the report's meta-distribution); a fraction keep their
    # components diagonal on the data's own axes, like the report's d = 100 experiment and data sets whose
    # features are independent within each cluster.
    rotate = cfg.axis_aligned <= 0 or bool(torch.rand((), generator=g) >= cfg.axis_aligned)
    for attempt in range(5):
        gmm = random_gmm(b, d, generator=g, dtype=torch.float64, rotate=rotate)
        x = gmm.sample(n, generator=g)  # (B, n, d)
        try:
            w = fit_whitening(x)
            break
        except ValueError:  # n close to d and a thin component: numerically singular, draw the batch again
            if attempt == 4:
                raise
    m_in, m_noise = cfg.queries // 2, cfg.queries // 4
    m_tail = cfg.queries - m_in - m_noise
    same = gmm.sample(m_in + m_noise, generator=g)
    noise_scale = 0.1 + 0.9 * torch.rand(b, 1, 1, generator=g, dtype=torch.float64)
    same[:, m_in:] += noise_scale * x.std(1, keepdim=True) * torch.randn(b, m_noise, d, generator=g, dtype=torch.float64)
    tail = random_gmm(b, d, generator=g, dtype=torch.float64).sample(m_tail, generator=g)
    y = torch.cat([same, tail], 1)  # (B, m, d)
    log_p, score = gmm.log_prob_and_score(y)
    inv = torch.linalg.inv(w.matrix)
    return dict(x=w.apply(x).float(), y=w.apply(y).float(), log_p=(log_p - w.log_det[:, None]).float(),
                score=(score @ inv.transpose(-1, -2)).float(), tail_from=m_in + m_noise, d=d, n=n,
                axes=w.data_axes(), frame=w.raw_frame())


# -- loss --------------------------------------------------------------------------------------------
def relative_errors(task: dict, log_p: Tensor, score: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-task relative score MSE and relative log-density MSE (over the target's spread), computed
    separately on in-distribution queries and on tail queries; each (B,)."""
    t = task["tail_from"]
    err_s = ((score - task["score"]) ** 2).sum(-1)  # (B, m)
    norm_s = (task["score"] ** 2).sum(-1)
    err_l = (log_p - task["log_p"]) ** 2
    spread = (task["log_p"] - task["log_p"].mean(-1, keepdim=True)) ** 2 + 1e-3
    rel = lambda e, s, sl: e[:, sl].sum(-1) / s[:, sl].sum(-1).clamp_min(1e-6)  # noqa: E731
    inn, tail = slice(0, t), slice(t, None)
    return rel(err_s, norm_s, inn), rel(err_s, norm_s, tail), rel(err_l, spread, inn), rel(err_l, spread, tail)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Warmup, then constant, then linear decay to 10% (warmup-stable-decay: extendable across sessions)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    decay_from = cfg.steps - cfg.decay_steps
    if step < decay_from:
        return cfg.lr
    return cfg.lr * (1.0 - 0.9 * min(1.0, (step - decay_from) / max(1, cfg.decay_steps)))


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, task: dict, cfg: TrainConfig,
               lr: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One AdamW step with gradient clipping; returns the loss and its parts (detached)."""
    log_p, score = model(task["x"], task["y"], task.get("axes"), task.get("frame"))
    s_in, s_tail, l_in, l_tail = relative_errors(task, log_p, score)
    # log1p of each task's relative error: equal to it when small, but one task with a huge error
    # (a far tail query, an early log-density blow-up at d = 100) can no longer dominate the step.
    parts = s_in + cfg.tail_weight * s_tail + cfg.logp_weight * (l_in + cfg.tail_weight * l_tail)
    loss = torch.log1p(parts).mean()
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return loss.detach(), s_in.detach(), s_tail.detach(), l_in.detach()


def gate_pool_width(d: int) -> int:
    """fit_kde_gates solves the gates of d on the statistics of d - w .. d + w: they change slowly with
    d, and above d = 10 one d alone has few tasks (B = 4096 // n contexts of up to 100-D points)."""
    return 0 if d <= 10 else max(1, d // 12)


def gate_ridge(d: int) -> float:
    """fit_kde_gates' ridge, relative to each column's scale. Above d = 5 the skip features are nearly
    collinear (KDE skips hand over to the mixture where the KDE sees no data, which in high d is almost
    everywhere) and 1e-2 held up better on the benchmark's d = 10..100 rows; 1e-4 on d = 2."""
    return 1e-4 if d <= 5 else 1e-2


def query_weights(part: str, target: Tensor, start_err: Tensor, tail_from: int, tail_weight: float,
                  robust: bool) -> Tensor:
    """Per-query weights (B, m) of the gate least squares, so that sum(w * squared error) is: for part
    "fit", the training loss's mean over the batch's tasks of the relative error on in-distribution
    queries plus tail_weight times that on the tail queries (from tail_from on); for "check" and
    "tail", the batch's pooled relative error on those queries alone, as the benchmark scores a row.
    target: each query's squared target (B, m) (the relative errors' denominators); start_err: the
    zero-gate prediction's squared error (B, m).

    Every batch weighs the same, whatever its n: a batch has B = context_tokens // n tasks, so
    per-task weights would let the smallest n (64 tasks at n = 64, one at n = 4096) decide the gates for
    every n. robust: each relative error is also divided by 1 + its value at the start, the first-order
    form of the training loss's log1p, d log1p(e) = de / (1 + e)."""
    w = torch.zeros_like(target)
    if part == "fit":
        slices = ((slice(0, tail_from), 1.0), (slice(tail_from, None), tail_weight))
        for sl, weight in slices:
            norm = target[:, sl].sum(-1, keepdim=True).clamp_min(1e-6)
            start = 1.0 + start_err[:, sl].sum(-1, keepdim=True) / norm if robust else 1.0
            w[:, sl] = weight / (norm * start * w.shape[0])
        return w
    keep = slice(0, tail_from) if part == "check" else slice(tail_from, None)
    norm = target[:, keep].sum().clamp_min(1e-6)
    w[:, keep] = 1.0 / (norm * (1.0 + start_err[:, keep].sum() / norm if robust else 1.0))
    return w


@torch.no_grad()
def _gate_statistics(net: GatedBlend, cfg: TrainConfig, g: torch.Generator, d: int,
                     batches: int, robust: bool = False) -> tuple[dict, Tensor, Tensor, int]:
    """Normal equations of the gate least squares on fresh tasks of dimension d: (part, kind) ->
    [normal matrix, rhs, summed squared residual, summed squared target], with the range (lo, hi) of the
    gate features and the tokens read. The "fit" part is weighted like the training loss; the held-out
    batches give "check" (each batch's pooled relative error on in-distribution queries, as the
    benchmark scores its "same" column) and "tail" (the same on the queries from an unrelated mixture:
    its "other" column). Every batch weighs the same in each part.

    robust: each task's (fit) or batch's (check, tail) relative error is also divided by 1 + the relative
    error of the zero-gate prediction, the first-order form of the training loss's log1p around the start:
    at high d and n close to d the whitening's own log-density error is hundreds of times the target's
    spread, and without this those few tasks decide the log-density gates of every other."""
    ns, ng = net.num_skips, net.num_gate_features
    k = ns * (ng + 1)  # unknowns per d: a constant and ng slopes for each of the ns gates
    stats = {(part, kind): [torch.zeros(k, k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64), 0.0, 0.0]
             for part in ("fit", "check", "tail") for kind in ("score", "logp")}
    tokens = 0
    for batch in range(batches + max(1, batches // 2)):
        held_out = batch >= batches
        task = sample_task(cfg, net.config.max_dim, g, dim=d)
        y = task["y"]
        tokens += task["x"].shape[0] * (task["x"].shape[1] + y.shape[1])
        f = net.skip_features(net.encode(task["x"], layers=False, axes=task.get("axes"), frame=task.get("frame")),
                              y)
        log_p, score = f.base_log_density, f.base_score  # a fresh network's prediction (zero gates)
        if not held_out:
            flat = f.phi.reshape(-1, ng)
            lo = torch.minimum(lo, flat.min(0).values) if batch else flat.min(0).values
            hi = torch.maximum(hi, flat.max(0).values) if batch else flat.max(0).values
        phi = torch.cat([torch.ones_like(f.phi[..., :1]), f.phi], dim=-1)  # (B, m, ng + 1)
        # gate j's coefficient p multiplies phi_p * feature_j: flatten (p, j) into k columns
        score_f = (phi[..., :, None, None] * f.score[..., None, :, :]).flatten(2, 3)  # (B, m, k, d)
        log_f = (phi[..., :, None] * f.log_density[..., None, :]).flatten(2, 3)  # (B, m, k)
        t = task["tail_from"]
        for kind, feat, resid, target in (
                ("score", score_f, task["score"] - score, (task["score"] ** 2).sum(-1)),
                ("logp", log_f[..., None], (task["log_p"] - log_p)[..., None],
                 (task["log_p"] - task["log_p"].mean(-1, keepdim=True)) ** 2 + 1e-3)):
            f64, r64, t64 = feat.double(), resid.double(), target.double()
            for part in ("check", "tail") if held_out else ("fit",):
                w = query_weights(part, t64, (r64 * r64).sum(-1), t, cfg.tail_weight, robust)
                acc = stats[(part, kind)]
                acc[0] += torch.einsum("bm,bmik,bmjk->ij", w, f64, f64)
                acc[1] += torch.einsum("bm,bmik,bmk->i", w, f64, r64)
                acc[2] += float(torch.einsum("bm,bmk,bmk->", w, r64, r64))
                acc[3] += float((w * t64).sum())
    return stats, lo, hi, tokens


GateStatistics = dict[int, tuple[dict, Tensor, Tensor, int]]


@torch.no_grad()
def gate_statistics(net: GatedBlend, cfg: TrainConfig, g: torch.Generator | int, dims: list[int],
                    batches_per_dim: int = 4, small_dim_factor: int = 2, robust: bool = False,
                    done: GateStatistics | None = None,
                    on_dim: Callable[[GateStatistics], None] | None = None) -> GateStatistics:
    """The least-squares statistics (_gate_statistics) that solve_gates needs for `dims`: d -> (normal
    equations, feature lo, feature hi, tokens), for every d in dims and its pooling neighbours
    (gate_pool_width). d <= 10 gets small_dim_factor times more batches: its tasks are cheap, and
    the report's headline rows (d = 2 and 10) are there.

    g: one generator for all d in turn, or an integer seed: each d then draws from its own generator
    (seed * 1000 + d), so an interrupted run resumes exactly: `done` holds the d already computed (kept,
    not redrawn) and on_dim(stats so far) is called after each new d (e.g. to save them)."""
    need = sorted({e for d in dims for e in range(max(1, d - gate_pool_width(d)),
                                                   min(net.config.max_dim, d + gate_pool_width(d)) + 1)})
    stats = dict(done or {})
    for e in need:
        if e in stats:
            continue
        gen = torch.Generator().manual_seed(g * 1000 + e) if isinstance(g, int) else g
        stats[e] = _gate_statistics(net, cfg, gen, e, batches_per_dim * (small_dim_factor if e <= 10 else 1), robust)
        if on_dim is not None:
            on_dim(stats)
    return stats


def _gate_candidates(normal: Tensor, rhs: Tensor, ns: int, nf: int, nm: int, lam: float,
                     n_features: int | None = None) -> dict[str, Tensor]:
    """Coefficient vectors (ng + 1 rows of ns gates, flattened) that the held-out check chooses among:
    the ridge least squares on every column ("sloped"), on the constants only ("constant"), the same two
    on the mixture gates only (KDE gates zero), and each mixture alone (its gate 1, the rest 0). nf: the
    number of KDE skips, which come first; nm: the number of mixture skips, next. n_features: slopes on
    the first this many gate features only (the others' coefficients stay zero); default all. Skips
    after the mixtures (far-field ones) get constant gates only."""
    k = normal.shape[0]
    a = normal + lam * torch.diag(normal.diagonal().clamp_min(1e-30))
    column = torch.arange(k)
    gate = column % ns  # coefficient p * ns + j belongs to gate j
    usable = column < ns * (1 + (k // ns - 1 if n_features is None else n_features))
    # The far-field skips (config.far_field_skips, after the KDE and mixture skips) get constant gates:
    # far from the data the query features are clamped extrapolations, and slopes on them moved the
    # far field of heavy-tailed data towards Gaussian tails (Student-t d = 2 score error 6.3 -> 11.1 %).
    usable &= (gate < nf + nm) | (column < ns)
    subsets = {"sloped": usable, "constant": column < ns,
               "mixtures sloped": usable & (gate >= nf), "mixtures constant": (column < ns) & (gate >= nf)}
    out = {}
    for name, keep in subsets.items():
        if not keep.any():
            continue
        c = torch.zeros_like(rhs)
        idx = keep.nonzero()[:, 0]
        c[idx] = torch.linalg.solve(a[idx][:, idx], rhs[idx])
        out[name] = c
    for j in range(nf, nf + nm):
        c = torch.zeros_like(rhs)
        c[j] = 1.0
        out[f"mixture {j - nf} alone"] = c
    return out


@torch.no_grad()
def solve_gates(net: GatedBlend, stats: GateStatistics, dims: list[int], ridge: float | None = None,
                tail: float = 0.0, context_heads: tuple[str, ...] = ("logp",),
                context_min_dim: int = 1) -> dict[int, dict[str, str]]:
    """Set the gate tables of every d in dims from the statistics of d and its neighbours: per d and
    head, the candidate of _gate_candidates with the lowest held-out error, relative (over the summed
    squared targets) on in-distribution queries plus `tail` times the same on the tail queries.
    context_heads: the heads ("score", "logp") whose gates may use the context features
    (config.gate_context_features), for d >= context_min_dim; the others' slopes on them stay zero.
    Returns d -> {head: chosen candidate}."""
    ns, ng, nf = net.num_skips, net.num_gate_features, len(net.config.kde_factors)
    chosen = {}
    for d in dims:
        window = [stats[e] for e in range(d - gate_pool_width(d), d + gate_pool_width(d) + 1) if e in stats]
        chosen[d] = {}
        for kind, base, slope in (("score", net.gate_base, net.gate_slope),
                                  ("logp", net.logp_gate_base, net.logp_gate_slope)):
            normal, rhs = (sum(w[0][("fit", kind)][i] for w in window) for i in (0, 1))
            # Marquardt-style ridge: relative to each column's own scale, so it is scale-invariant.
            cands = _gate_candidates(normal, rhs, ns, nf, net.num_mixtures, gate_ridge(d) if ridge is None else ridge,
                                     None if kind in context_heads and d >= context_min_dim else net.num_query_gate_features)
            check = {name: 0.0 for name in cands}
            for part, weight in (("check", 1.0), ("tail", tail)):
                if weight == 0:
                    continue
                c_normal, c_rhs, c_const, c_norm = (sum(w[0][(part, kind)][i] for w in window) for i in range(4))
                for name, c in cands.items():
                    check[name] += weight * float(c @ c_normal @ c - 2 * c @ c_rhs + c_const) / c_norm
            best = min(check, key=check.__getitem__)
            chosen[d][kind] = best
            coef = cands[best].reshape(ng + 1, ns).to(base.dtype)
            base[d] = coef[0]
            slope[d] = coef[1:]
        net.gate_feature_lo[d] = torch.stack([w[1] for w in window]).amin(0).to(net.gate_feature_lo.dtype)
        net.gate_feature_hi[d] = torch.stack([w[2] for w in window]).amax(0).to(net.gate_feature_hi.dtype)
    return chosen


@torch.no_grad()
def fit_kde_gates(net: GatedBlend, cfg: TrainConfig, g: torch.Generator, batches_per_dim: int = 4,
                  ridge: float | None = None, dims: range | None = None, small_dim_factor: int = 2) -> int:
    """Start from the best blend of the gated skips instead of from the Gaussian fit: for every d (all
    of 1..max_dim unless `dims` is given), weighted least squares for the gate tables of a fresh
    network (zero-initialized heads, so its prediction is the Gaussian fit plus the skips).

    The score is base + sum_j g_j f_j, linear in g, where f_j are the KDE scores at each bandwidth and
    the fitted mixtures' scores relative to the Gaussian fit; Scott-rule KDE is the point g = e_Scott
    (report section 3: attention can be exactly a KDE). The gates may also depend linearly on each
    query's scalar features and log n (slopes): S (G + 1) unknowns, one solve per d and head, on the
    statistics of d and its neighbours (gate_pool_width). Held-out batches then decide, per d and head,
    among that fit, constant gates, the same on the mixture gates only, and each mixture alone
    (solve_gates). The range of the gate features over the fit batches is stored too: queries clamp
    their features to it. ridge: the relative ridge (default gate_ridge(d)).

    Returns the number of points (context + queries) the fit read, its training cost in tokens."""
    dims = list(dims or range(1, net.config.max_dim + 1))
    stats = gate_statistics(net, cfg, g, dims, batches_per_dim, small_dim_factor)
    solve_gates(net, stats, dims, ridge)
    return sum(s[3] for s in stats.values())


# -- checkpoint --------------------------------------------------------------------------------------
def save_checkpoint(path: Path, net: GatedBlend, opt: torch.optim.Optimizer, step: int, cfg: TrainConfig,
                    g: torch.Generator, stats: dict) -> None:
    extra = {"rng": g.get_state()}
    names = [name for name, _ in net.named_parameters()]  # optimizer state keyed by parameter name
    for i, state in opt.state_dict()["state"].items():
        for k, v in state.items():
            extra[f"optim.{names[i]}.{k}"] = torch.as_tensor(v)
    meta = {"step": str(step), "train_config": json.dumps(asdict(cfg)), "stats": json.dumps(stats)}
    save_weights(path, net, extra_tensors=extra, metadata=meta)


def load_checkpoint(path: Path, net: GatedBlend, opt: torch.optim.Optimizer,
                    g: torch.Generator) -> tuple[int, dict]:
    loaded, extra, meta = load_weights(path)
    net.load_state_dict(loaded.state_dict())
    state = opt.state_dict()
    index = {name: i for i, (name, _) in enumerate(net.named_parameters())}
    for key, v in extra.items():
        if key.startswith("optim."):
            param, name = key[len("optim."):].rsplit(".", 1)
            state["state"].setdefault(index[convert_layout(param)], {})[name] = v
    opt.load_state_dict(state)
    g.set_state(extra["rng"])
    return int(meta["step"]), json.loads(meta.get("stats", "{}"))


# -- loop --------------------------------------------------------------------------------------------
def train(cfg: TrainConfig) -> Path:
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    rank, world = 0, 1
    device = torch.device("cpu")
    if distributed:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        rank, world = dist.get_rank(), dist.get_world_size()
        if backend == "nccl":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    out = Path(cfg.out)
    ckpt = out / "checkpoint.safetensors"
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    # Training fits the gated blend's gates and transformer body; the stacked blend has no trained part.
    net = GatedBlend(ModelConfig.from_json(cfg.model) if cfg.model else ModelConfig(blend="gated"))
    if net.config.blend != "gated":
        raise ValueError(f"training needs a model config with blend 'gated' (got {net.config.blend!r}): "
                         "the stacked blend has no trained parameters")
    if cfg.init:
        net.load_state_dict(load_weights(cfg.init)[0].state_dict())
    elif cfg.kde_init and not ckpt.exists():
        fit_kde_gates(net, cfg, torch.Generator().manual_seed(cfg.seed + 7))
    # The least-squares gate tables stay as fitted: Adam's ~lr-sized steps on slopes that multiply
    # features up to 20 destabilized the first runs.
    for table in (net.gate_base, net.gate_slope, net.logp_gate_base, net.logp_gate_slope, net.gate_feature_lo,
                  net.gate_feature_hi):
        table.requires_grad_(False)
    net.to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    step, cost = load_checkpoint(ckpt, net, opt, g) if ckpt.exists() else (0, {})
    # Training cost, cumulative over resumed runs: tokens are context + query points seen by all ranks.
    cost = {"tokens_seen": cost.get("tokens_seen", 0), "train_hours": cost.get("train_hours", 0.0),
            "hardware": f"{world} x {'GPU ' + torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU process'}"}
    if step and rank == 0:
        print(json.dumps({"resumed_from": step, **cost}), flush=True)
    model = torch.nn.parallel.DistributedDataParallel(net) if distributed else net
    t0, window, last_save = time.time(), [], time.time()
    while step < cfg.steps:
        task = sample_task(cfg, net.config.max_dim, g)
        task = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in task.items()}
        loss, s_in, s_tail, l_in = train_step(model, opt, task, cfg, lr_at(cfg, step))
        step += 1
        cost["tokens_seen"] += (task["x"].numel() + task["y"].numel()) // task["d"] * world
        window.append([loss.item(), s_in.mean().item(), s_tail.mean().item(), l_in.mean().item()])
        if rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps):
            avg = torch.tensor(window).mean(0).tolist()
            stats = {"step": step, "loss": round(avg[0], 4), "score_rel_in": round(avg[1], 4),
                     "score_rel_tail": round(avg[2], 4), "logp_rel_in": round(avg[3], 4),
                     "lr": lr_at(cfg, step), "steps_per_s": round(len(window) / (time.time() - t0), 3)}
            print(json.dumps(stats), flush=True)
            t0, window = time.time(), []
        if rank == 0 and (step % cfg.ckpt_every == 0 or step == cfg.steps):
            cost["train_hours"] = round(cost["train_hours"] + (time.time() - last_save) / 3600, 4)
            last_save = time.time()
            save_checkpoint(ckpt, net, opt, step, cfg, g, cost)
    if distributed:
        dist.barrier()
        # Release DDP's reducer (it holds the process group) before tearing the group down: a rank that
        # exits with gloo threads still attached can abort ("terminate called without an active exception").
        del model
        gc.collect()
        dist.destroy_process_group()
    return ckpt


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    for f in fields(TrainConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    return TrainConfig(**vars(parser.parse_args(argv)))


if __name__ == "__main__":
    train(parse_args())
