"""Training machinery: the loss falls, the gate least squares picks by its held-out check, checkpoints
resume exactly, torchrun data parallel runs."""

import json
import subprocess
import sys

import torch

from disco_plug.checkpoint import load_weights
from disco_plug.config import ModelConfig
from disco_plug.blend.gated import GatedBlend
from disco_plug.train import (TrainConfig, gate_statistics, lr_at, parse_args, relative_errors, sample_task,
                              solve_gates, train, train_step)

# The plain gated network (the shipped flags off: no context features, no far-field skips, full covariances).
TINY = ModelConfig(blend="gated", width=32, depth=1, heads=4, max_dim=8, mixture_axes=False, mixture_common_axes=False,
                   gate_context_features=False, far_field_skips=False)


def test_loss_falls_on_a_fixed_task():
    cfg = TrainConfig(context_tokens=512, n_min=128, n_max=128, queries=64)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = GatedBlend(TINY)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4)
    task = sample_task(cfg, TINY.max_dim, g)
    losses = [train_step(net, opt, task, cfg, 3e-4)[0].item() for _ in range(60)]
    # Starting from the Gaussian fit, 60 steps on one task must lower its loss (measured with seed 0:
    # 0.692 -> 0.64; a broken gradient path leaves it flat), and the last steps must beat the first.
    assert losses[-1] < 0.95 * losses[0], losses
    assert sum(losses[-10:]) < sum(losses[:10]), losses


def test_tasks_have_exact_whitened_targets():
    cfg = TrainConfig(context_tokens=256, n_min=64, n_max=64, queries=32)
    task = sample_task(cfg, 5, torch.Generator().manual_seed(1))
    x = task["x"].double()
    # Whitened contexts have zero mean and identity covariance (up to the relative ridge 1e-6).
    torch.testing.assert_close(x.mean(1), torch.zeros_like(x.mean(1)), atol=1e-5, rtol=0)
    cov = x.transpose(1, 2) @ (x - x.mean(1, keepdim=True)) / x.shape[1]
    torch.testing.assert_close(cov, torch.eye(task["d"], dtype=torch.float64).expand_as(cov), atol=1e-4, rtol=0)


def _synthetic_statistics(net: GatedBlend, fit_target: torch.Tensor, check_target: torch.Tensor,
                          design: torch.Tensor, check_design: torch.Tensor,
                          tail_target: torch.Tensor | None = None) -> dict:
    """Gate statistics of one d from explicit design matrices (rows: residual components, columns: the
    gate coefficients) and residual targets, in the layout gate_statistics returns."""
    acc = {}
    tail_target = check_target if tail_target is None else tail_target
    for part, f, r in (("fit", design, fit_target), ("check", check_design, check_target),
                       ("tail", check_design, tail_target)):
        for kind in ("score", "logp"):
            acc[(part, kind)] = [f.T @ f, f.T @ r, float(r @ r), float(r @ r)]
    ng = net.num_gate_features
    return {2: (acc, -torch.ones(ng), torch.ones(ng), 0)}


def test_solve_gates_keeps_the_candidate_that_wins_the_held_out_check():
    """The fit batches suggest a KDE gate of 0.5 that the held-out batches do not bear out: there the
    residual is exactly the last mixture's skip. The check must then pick that mixture alone (zero
    held-out error) over every least-squares candidate, which all carry part of the spurious 0.5."""
    net = GatedBlend(TINY)
    ns, ng, nf = net.num_skips, net.num_gate_features, len(TINY.kde_factors)
    k = ns * (ng + 1)
    g = torch.Generator().manual_seed(3)
    design, check_design = (torch.randn(400, k, generator=g, dtype=torch.float64) for _ in range(2))
    last = ns - 1  # coefficient index of the last mixture's constant gate
    stats = _synthetic_statistics(net, design[:, last] + 0.5 * design[:, 0], check_design[:, last],
                                  design, check_design)
    chosen = solve_gates(net, stats, [2])
    assert chosen[2] == {"score": f"mixture {ns - nf - 1} alone", "logp": f"mixture {ns - nf - 1} alone"}
    expected = torch.zeros(ns)
    expected[last] = 1.0
    torch.testing.assert_close(net.gate_base[2].detach(), expected.to(net.gate_base.dtype))
    assert float(net.gate_slope[2].detach().abs().sum()) == 0.0
    # Where the held-out batches agree with the fit, the full least squares wins instead.
    stats = _synthetic_statistics(net, design[:, last] + 0.5 * design[:, 0], check_design[:, last] + 0.5 * check_design[:, 0],
                                  design, check_design)
    assert solve_gates(net, stats, [2])[2]["score"] in ("sloped", "constant")
    assert abs(float(net.gate_base[2, 0].detach()) - 0.5) < 1e-2


def test_solve_gates_weighs_the_tail_queries_when_asked():
    """In-distribution held-out queries favour the last mixture alone, tail queries the fitted blend
    (KDE gate 0.5): with tail=0 the check keeps the mixture; with the tail error weighted 10x, the blend."""
    net = GatedBlend(TINY)
    ns, nf = net.num_skips, len(TINY.kde_factors)
    k = ns * (net.num_gate_features + 1)
    g = torch.Generator().manual_seed(4)
    design, check_design = (torch.randn(400, k, generator=g, dtype=torch.float64) for _ in range(2))
    last = ns - 1
    args = (design[:, last] + 0.5 * design[:, 0], check_design[:, last], design, check_design,
            check_design[:, last] + 0.5 * check_design[:, 0])
    assert solve_gates(net, _synthetic_statistics(net, *args), [2])[2]["score"] == f"mixture {ns - nf - 1} alone"
    assert solve_gates(net, _synthetic_statistics(net, *args), [2], tail=10.0)[2]["score"] in ("sloped", "constant")


def test_gate_fit_beats_the_gaussian_fit_on_fresh_tasks():
    """The least-squares gates, fitted on a few tasks, lower the in-distribution score error of fresh
    tasks below that of the network they start from (zero gates: the Gaussian fit of the context)."""
    torch.manual_seed(0)
    net = GatedBlend(TINY)
    cfg = TrainConfig(context_tokens=2048, n_min=256, n_max=512, queries=64)
    fresh = [sample_task(cfg, TINY.max_dim, torch.Generator().manual_seed(100 + i), dim=2) for i in range(4)]

    def error() -> float:
        with torch.no_grad():
            return sum(float(relative_errors(t, *net(t["x"], t["y"]))[0].mean()) for t in fresh)

    before = error()
    solve_gates(net, gate_statistics(net, cfg, torch.Generator().manual_seed(7), [2], batches_per_dim=2), [2])
    after = error()
    # Measured (seed 7 for the fit, 100..103 for the fresh tasks): summed error 1.95 -> 0.43.
    assert after < 0.8 * before, (before, after)


def test_lr_schedule_warmup_stable_decay():
    cfg = TrainConfig(steps=1000, warmup=100, decay_steps=200, lr=1.0)
    assert lr_at(cfg, 0) == 0.01 and lr_at(cfg, 500) == 1.0
    assert abs(lr_at(cfg, 1000) - 0.1) < 1e-12


def test_resume_continues_from_checkpoint(tmp_path):
    common = ["--out", str(tmp_path), "--model", TINY.to_json(), "--context-tokens", "256", "--n-min", "32",
              "--n-max", "64", "--queries", "16", "--ckpt-every", "2", "--log-every", "1"]
    train(parse_args(common + ["--steps", "2"]))
    _, extra, meta = load_weights(tmp_path / "checkpoint.safetensors")
    assert meta["step"] == "2" and any(k.startswith("optim.") for k in extra)
    train(parse_args(common + ["--steps", "4"]))
    _, _, meta = load_weights(tmp_path / "checkpoint.safetensors")
    assert meta["step"] == "4"
    assert json.loads(meta["stats"])["tokens_seen"] > 0


def test_torchrun_two_cpu_processes(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "disco_plug.train", "--out", str(tmp_path), "--steps", "3", "--model", TINY.to_json(),
           "--context-tokens", "256", "--n-min", "32", "--n-max", "64", "--queries", "16", "--log-every", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1",
                                                                                "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, _, meta = load_weights(tmp_path / "checkpoint.safetensors")
    assert meta["step"] == "3"
    assert json.loads(meta["stats"])["hardware"].startswith("2 x CPU")


def test_query_weights_give_the_losses_they_document():
    """sum(w * error) is the mean relative error over tasks (fit: in-distribution plus tail_weight times
    tail), or the batch's pooled one (check, tail); robust divides each relative error e by 1 + e0, e0
    its value at the start, so a task that starts 100x off weighs about as much as one that starts right."""
    from disco_plug.train import query_weights

    g = torch.Generator().manual_seed(8)
    target = torch.rand(3, 10, generator=g, dtype=torch.float64) + 0.5
    start = torch.rand(3, 10, generator=g, dtype=torch.float64) * torch.tensor([[0.1], [1.0], [300.0]], dtype=torch.float64)
    t = 6
    rel = lambda e, sl: e[:, sl].sum(-1) / target[:, sl].sum(-1)  # noqa: E731
    inn, tail = slice(0, t), slice(t, None)
    fit = (query_weights("fit", target, start, t, 0.5, False) * start).sum()
    torch.testing.assert_close(fit, (rel(start, inn) + 0.5 * rel(start, tail)).mean())
    robust = (query_weights("fit", target, start, t, 0.5, True) * start).sum()
    e_in, e_tail = rel(start, inn), rel(start, tail)
    torch.testing.assert_close(robust, (e_in / (1 + e_in) + 0.5 * e_tail / (1 + e_tail)).mean())
    pooled = start[:, tail].sum() / target[:, tail].sum()
    torch.testing.assert_close((query_weights("tail", target, start, t, 0.5, False) * start).sum(), pooled)
    torch.testing.assert_close((query_weights("tail", target, start, t, 0.5, True) * start).sum(), pooled / (1 + pooled))
    assert float(query_weights("check", target, start, t, 0.5, True)[:, tail].abs().sum()) == 0.0
