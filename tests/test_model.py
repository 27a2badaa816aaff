"""The network: skip features, the inert-body shortcut, the context cache."""

import pytest
import torch

from disco_plug.config import ModelConfig
from disco_plug.model import DiScoFormer

SMALL = ModelConfig(width=32, depth=2, heads=4, max_dim=6)


def _net(seed: int) -> DiScoFormer:
    torch.manual_seed(seed)
    net = DiScoFormer(SMALL)
    with torch.no_grad():  # give the gate tables some non-zero values, as a least-squares fit would
        for p in (net.gate_base, net.logp_gate_base, net.gate_slope, net.logp_gate_slope):
            p.normal_(0.0, 0.1)
    return net


def test_inert_body_is_skipped_with_identical_results():
    net = _net(0)
    x, y = torch.randn(2, 80, 3), torch.randn(2, 20, 3)
    full = net(x, y)  # parameters take gradients: the body runs
    with torch.no_grad():
        cache = net.encode(x)
        assert cache.keys == () and len(cache.mixtures) == len(SMALL.mixture_penalties)
        fast = net.query(cache, y)
    for a, b in zip(full, fast):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_trained_heads_make_the_body_run():
    net = _net(1)
    with torch.no_grad():
        net.score_out.weight.normal_(0.0, 0.01)
        cache = net.encode(torch.randn(1, 50, 2))
    assert len(cache.keys) == SMALL.depth


def test_a_layerless_cache_is_refused_by_a_trained_body():
    net = _net(2)
    with torch.no_grad():
        cache = net.encode(torch.randn(1, 50, 2), layers=False)
        net.gate_out.bias.fill_(0.1)
        with pytest.raises(ValueError, match="encode it again"):
            net.query(cache, torch.randn(1, 5, 2))


def test_mixture_skips_are_configurable():
    net = DiScoFormer(ModelConfig(width=32, depth=1, heads=4, max_dim=4, mixture_penalties=()))
    assert net.num_skips == len(net.config.kde_factors)
    with pytest.raises(ValueError, match="mixture_penalties"):
        ModelConfig(mixture_penalties=(0.0,))
