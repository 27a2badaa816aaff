"""Bounded memory for large n and m comes from chunking (queries through the estimator, query x key
blocks in attention, query x centre blocks in the KDE) and from the encoder's context-key subset.
Shrinking every chunk constant must not change any result; the n = 2^17 measurement itself is
benchmarks/scale.py."""

import numpy as np
import pytest
import torch

import disco_plug
from disco_plug import estimator as estimator_module
from disco_plug.densities import kde as kde_module
from disco_plug import model as model_module
from disco_plug.config import ModelConfig
from disco_plug.densities.kde import isotropic_kde
from disco_plug.blend.gated import GatedBlend


def _small_network(context_keys: int) -> GatedBlend:
    """A seeded network with every head switched on (the zero-initialized heads get weights), so that
    each path of the forward pass shows in the output."""
    torch.manual_seed(0)
    net = GatedBlend(ModelConfig(blend="gated", width=32, depth=2, heads=4, max_dim=4, context_keys=context_keys))
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    return net.eval()


def test_kde_chunks_do_not_change_results(monkeypatch):
    g = torch.Generator().manual_seed(0)
    q, c = torch.randn(2, 50, 3, generator=g, dtype=torch.float64), torch.randn(2, 40, 3, generator=g, dtype=torch.float64)
    h = torch.tensor([[0.2, 0.5, 1.5]] * 2, dtype=torch.float64)
    exclude = torch.rand(2, 50, 40, generator=g) < 0.2
    weights = torch.log_softmax(torch.randn(2, 40, generator=g, dtype=torch.float64), -1)
    full = isotropic_kde(q, c, h, exclude=exclude, log_weights=weights)
    monkeypatch.setattr(kde_module, "_CHUNK_ELEMENTS", 7 * 40 * 3)  # 7 queries per block
    chunked = isotropic_kde(q, c, h, exclude=exclude, log_weights=weights)
    for a, b in zip(full, chunked):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_kde_far_queries_stay_finite_and_exact():
    """Kernel weights far below float's range are clamped before the exp (speed); the result must
    still be the exact KDE: a far query's score points to the nearest centre."""
    c = torch.tensor([[[0.0], [1.0]]], dtype=torch.float32)
    q = torch.tensor([[[30.0]]], dtype=torch.float32)
    log_p, score = isotropic_kde(q, c, 0.5)
    torch.testing.assert_close(score, torch.tensor([[[(1.0 - 30.0) / 0.25]]]))
    want = torch.logsumexp(torch.tensor([-0.5 * 30.0**2 / 0.25, -0.5 * 29.0**2 / 0.25], dtype=torch.float64), 0)
    want = want - np.log(2) - 0.5 * np.log(2 * np.pi * 0.25)
    torch.testing.assert_close(log_p.double(), want.reshape(1, 1), rtol=1e-6, atol=0)


@pytest.mark.parametrize("n", [60, 300], ids=["n-below-keys", "n-above-keys"])
def test_network_chunks_do_not_change_results(monkeypatch, n):
    net = _small_network(context_keys=128)
    est = disco_plug.Estimator(net)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = torch.randn(37, 3, generator=g, dtype=torch.float64)
    full = est.fit(x).log_density_and_score(y)
    monkeypatch.setattr(estimator_module, "_QUERY_CHUNK", 5)
    monkeypatch.setattr(model_module, "_ATTN_CHUNK_ELEMENTS", 4 * 3 * 60)  # 1-3 queries per attention call
    monkeypatch.setattr(kde_module, "_CHUNK_ELEMENTS", 4 * n * 2)  # 2 queries per KDE block
    chunked = est.fit(x).log_density_and_score(y)
    for a, b in zip(full, chunked):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(a.abs().max()))


def test_key_subset_is_full_attention_up_to_context_keys():
    """With n <= context_keys every context point is a key: the network equals one with a larger
    key budget. Above it, the encoder attends to a fixed subset (deterministic, but not equal)."""
    g = torch.Generator().manual_seed(2)
    y = torch.randn(1, 20, 3, generator=g)
    small, large = _small_network(context_keys=64), _small_network(context_keys=4096)
    x = torch.randn(1, 64, 3, generator=g)
    for a, b in zip(small(x, y), large(x, y)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    x = torch.randn(1, 200, 3, generator=g)
    a, b = small(x, y), large(x, y)
    assert not torch.allclose(a[1], b[1])
    for u, v in zip(a, small(x, y)):
        assert torch.equal(u, v)


def test_cached_keys_and_values_are_compact():
    """The context cache holds contiguous per-layer keys/values (B, H, n, hd), not views that keep each
    layer's whole qkv projection (three times the size) alive."""
    net = _small_network(context_keys=16)
    cache = net.encode(torch.randn(1, 100, 2))
    for t in cache.keys + cache.values:
        assert t.is_contiguous() and t.shape == (1, 4, 100, 8)
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size()


def test_many_queries_stream_in_chunks(monkeypatch):
    """m >> chunk: every chunk is answered and concatenated in order (the million-query stream of
    benchmarks/scale.py, at a size a test can afford)."""
    est = disco_plug.Estimator(_small_network(context_keys=32))
    x = np.random.default_rng(3).normal(size=(50, 2))
    fitted = est.fit(x)
    y = np.random.default_rng(4).normal(size=(1003, 2))
    calls = []
    query = fitted.network.query
    monkeypatch.setattr(fitted.network, "query", lambda cache, yw: calls.append(yw.shape[1]) or query(cache, yw))
    monkeypatch.setattr(estimator_module, "_QUERY_CHUNK", 100)
    lp, s = fitted.log_density_and_score(y)
    assert calls == [100] * 10 + [3]
    assert lp.shape == (1003,) and s.shape == (1003, 2)
    np.testing.assert_allclose(s[500:510], fitted.score(y[500:510]), rtol=1e-5, atol=1e-6)
