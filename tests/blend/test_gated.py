"""The gated blend (disco_plug.blend.gated.GatedBlend) and its transformer residual (disco_plug.model):
skip features, the inert-body shortcut, the context cache, and load(residual=False), the ablation."""

import math

import numpy as np
import pytest
import torch

import disco_plug
from disco_plug.blend.gated import GatedBlend
from disco_plug.config import ModelConfig
from disco_plug.densities.kde import kernel_density

SMALL = ModelConfig(blend="gated", width=32, depth=2, heads=4, max_dim=6)
# The shipped flags off: the plain gated network (full-covariance mixtures, no context features, no far-field skips).
PLAIN = dict(mixture_axes=False, mixture_common_axes=False, gate_context_features=False, far_field_skips=False)


def _net(seed: int) -> GatedBlend:
    torch.manual_seed(seed)
    net = GatedBlend(SMALL)
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
        assert cache.keys == () and len(cache.mixtures) == net.num_mixtures
        fast = net.query(cache, y)
    for a, b in zip(full, fast):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_trained_heads_make_the_body_run():
    net = _net(1)
    with torch.no_grad():
        net.residual.score_out.weight.normal_(0.0, 0.01)
        cache = net.encode(torch.randn(1, 50, 2))
    assert len(cache.keys) == SMALL.depth


def test_a_layerless_cache_is_refused_by_a_trained_body():
    net = _net(2)
    with torch.no_grad():
        cache = net.encode(torch.randn(1, 50, 2), layers=False)
        net.residual.gate_out.bias.fill_(0.1)
        with pytest.raises(ValueError, match="encode it again"):
            net.query(cache, torch.randn(1, 5, 2))


def test_mixture_skips_are_configurable():
    net = GatedBlend(ModelConfig(blend="gated", width=32, depth=1, heads=4, max_dim=4, mixture_penalties=(),
                                  t_mixture_penalties=(), gate_context_features=False))
    assert net.num_skips == len(net.config.kde_factors)
    with torch.no_grad():
        log_p, score = net(torch.randn(1, 40, 2), torch.randn(1, 5, 2))  # KDE skips only
    assert torch.isfinite(log_p).all() and torch.isfinite(score).all()
    with pytest.raises(ValueError, match="t_mixture_penalties"):
        ModelConfig(t_mixture_penalties=(0.0,))


def test_far_queries_follow_the_reference_mixture():
    """Far outside every component, the prediction is the last (reference) mixture's, whatever the gates."""
    from disco_plug.densities.mixture import mixture_log_density_and_score

    net = _net(3)
    x = torch.randn(1, 200, 2)
    far = torch.tensor([[[40.0, -25.0], [-60.0, 3.0]]])
    with torch.no_grad():
        cache = net.encode(x)
        log_p, score = net.query(cache, far)
    ref_log, ref_score = mixture_log_density_and_score(cache.mixtures[-1], far)
    torch.testing.assert_close(score, ref_score, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(log_p, ref_log, atol=1e-3, rtol=1e-5)


def test_kernel_density_with_noise_is_the_kde_with_the_wider_kernel():
    """kernel_density with noise N is the KDE with kernel N(0, h^2 I + N), computed here directly, and
    with N = 0 it is the isotropic KDE."""
    g = torch.Generator().manual_seed(0)
    centres, y = torch.randn(1, 30, 3, generator=g, dtype=torch.float64), torch.randn(1, 5, 3, generator=g, dtype=torch.float64)
    a = torch.randn(3, 3, generator=g, dtype=torch.float64)
    noise = (a @ a.T)[None]
    bw = torch.tensor([0.2, 0.7], dtype=torch.float64)
    log_p, score = kernel_density(y, centres, bw, torch.linalg.eigh(noise))
    for j, h in enumerate(bw):
        kernel = torch.distributions.MultivariateNormal(centres[0], covariance_matrix=h * h * torch.eye(3, dtype=torch.float64) + noise[0])
        q = y[0].clone().requires_grad_(True)
        direct = torch.logsumexp(kernel.log_prob(q[:, None]), -1) - math.log(30)
        (grad,) = torch.autograd.grad(direct.sum(), q)
        torch.testing.assert_close(log_p[0, :, j], direct.detach())
        torch.testing.assert_close(score[0, :, j], grad)
    zero = torch.linalg.eigh(torch.zeros_like(noise))
    for a, b in zip(kernel_density(y, centres, bw, zero), kernel_density(y, centres, bw)):
        torch.testing.assert_close(a, b)


def test_mixture_axes_and_prior_come_from_the_config():
    """The shipped config ignores the data axes and frame; mixture_axes=True and mixture_common_axes=True let
    the fits use them, and the
    shrinkage prior follows mixture_prior_scale."""
    from disco_plug.gmm import random_gmm
    from disco_plug.fit.whitening import fit_whitening
    g = torch.Generator().manual_seed(2)
    x = random_gmm(1, 6, generator=g, dtype=torch.float64, components=(2, 2), rotate=False).sample(600, generator=g)
    w = fit_whitening(x)
    xw, axes = w.apply(x).float(), w.data_axes()
    y = xw[:, :20]
    outs = {}
    for name, extra in (("plain", {}), ("axes", {"mixture_axes": True}), ("prior", {"mixture_prior_scale": 4.0}),
                        ("common", {"mixture_common_axes": True})):
        torch.manual_seed(0)
        net = GatedBlend(ModelConfig(blend="gated", width=32, depth=2, heads=4, max_dim=6, **{**PLAIN, **extra}))
        with torch.no_grad():
            outs[name] = net.skip_features(net.encode(xw, axes=axes, frame=w.raw_frame()), y).log_density
            if name == "plain":
                no_axes = net.skip_features(net.encode(xw), y).log_density
    torch.testing.assert_close(outs["plain"], no_axes)
    assert not any(torch.allclose(outs["plain"], outs[name]) for name in ("axes", "prior", "common"))


def test_context_summary_estimates_each_skips_held_out_gain():
    """context_summary's numbers are held-out log-likelihood gains over the Gaussian fit, per dimension:
    on two-component diagonal data the mixtures' (AIC-corrected in-sample) and the KDEs' (leave-one-out)
    agree with the same gains measured on fresh points from the same distribution, within the standard
    error of the 4000 fresh points plus the estimates' own error at n = 800; and the mixtures' gain beats
    every KDE's there."""
    from disco_plug.gmm import random_gmm
    from disco_plug.densities.mixture import mixture_log_density_and_score
    from disco_plug.fit.whitening import fit_whitening
    from disco_plug.blend.gated import gaussian_fit_log_density

    g = torch.Generator().manual_seed(5)
    d, n = 6, 800
    gmm = random_gmm(1, d, generator=g, dtype=torch.float64, components=(2, 2), rotate=False)
    x, fresh = gmm.sample(n, generator=g), gmm.sample(4000, generator=g)
    w = fit_whitening(x)
    xw, fw = w.apply(x).float(), w.apply(fresh).float()
    net = GatedBlend(ModelConfig(blend="gated", width=32, depth=1, heads=4, max_dim=d, gate_context_features=True))
    with torch.no_grad():
        cache = net.encode(xw)
        bw = net._bandwidths(n, d, xw)
        log_kde, _ = kernel_density(fw, xw, bw)
        skips = [log_kde[0, :, j] for j in range(len(bw))]
        skips += [mixture_log_density_and_score(m, fw)[0][0] for m in cache.mixtures]
    gains = torch.stack([s - gaussian_fit_log_density(fw)[0] for s in skips], -1)  # (4000, S) per fresh point
    fresh_mean = gains.mean(0) / d
    tol = 3 * gains.std(0) / math.sqrt(4000) / d + 3 * gains.std(0) / math.sqrt(n) / d
    assert cache.summary.shape == (1, net.num_estimates)
    assert ((cache.summary[0] - fresh_mean).abs() <= tol).all(), (cache.summary[0], fresh_mean, tol)
    nf = len(bw)
    assert cache.summary[0, nf:].min() > cache.summary[0, :nf].max()


def test_context_features_reach_the_gates_and_survive_convolution():
    """With gate_context_features the gate features gain one constant column per skip (the summary),
    a noised encode must be given the clean summary, and the config refuses the flag without mixtures."""
    net = GatedBlend(ModelConfig(blend="gated", width=32, depth=1, heads=4, max_dim=4, **{**PLAIN, "gate_context_features": True}))
    plain = GatedBlend(ModelConfig(blend="gated", width=32, depth=1, heads=4, max_dim=4, **PLAIN))
    assert net.num_gate_features == plain.num_gate_features + net.num_estimates
    x, y = torch.randn(2, 120, 3), torch.randn(2, 9, 3)
    with torch.no_grad():
        cache = net.encode(x)
        phi = net.skip_features(cache, y).phi
        assert phi.shape[-1] == net.num_gate_features
        torch.testing.assert_close(phi[..., -net.num_estimates:], cache.summary[:, None].expand(-1, 9, -1))
        assert plain.encode(x).summary is None
        noise = torch.linalg.eigh(0.1 * torch.eye(3).expand(2, 3, 3))
        with pytest.raises(ValueError, match="summary"):
            net.encode(x, mixtures=cache.mixtures, kernel_noise=noise)
        noised = net.encode(x, mixtures=cache.mixtures, kernel_noise=noise, summary=cache.summary)
        assert noised.summary is cache.summary
    with pytest.raises(ValueError, match="gate_context_features"):
        ModelConfig(gate_context_features=True, mixture_penalties=(), t_mixture_penalties=())


def test_far_field_skips_hand_the_far_queries_to_another_mixture():
    """With far_field_skips, a far query's prediction is the reference mixture's plus the far skips'
    gates times (mixture j - reference): with the first far gate at 1 and every other gate 0 it is the
    first mixture's there, while near the data the far skips add nothing."""
    from disco_plug.densities.mixture import mixture_log_density_and_score

    net = GatedBlend(ModelConfig(blend="gated", width=32, depth=1, heads=4, max_dim=4, far_field_skips=True))
    nf, nm = len(net.config.kde_factors), net.num_mixtures
    assert net.num_skips == nf + 2 * nm - 1
    with torch.no_grad():
        net.gate_base[2, nf + nm] = 1.0
        net.logp_gate_base[2, nf + nm] = 1.0
        x = torch.randn(1, 300, 2)
        cache = net.encode(x)
        far = torch.tensor([[[40.0, -25.0], [-60.0, 3.0]]])
        log_p, score = net.query(cache, far)
        first_log, first_score = mixture_log_density_and_score(cache.mixtures[0], far)
        torch.testing.assert_close(score, first_score, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(log_p, first_log, atol=1e-3, rtol=1e-5)
        inside = x[:, :20]
        features = net.skip_features(cache, inside)
        assert float(features.score[..., nf + nm:, :].abs().max()) < 1e-6


def test_residual_false_is_the_gates_alone():
    """Without the residual there are no transformer tensors, repr says so, and with the shipped weights
    (whose residual heads are zero) the estimate is the same to the last bit; a trained residual would
    be the only difference."""
    x = np.random.default_rng(0).normal(size=(300, 3)) @ np.diag([1.0, 2.0, 0.5])
    y = np.random.default_rng(1).normal(size=(20, 3)) * 2
    full = disco_plug.load(blend="gated")
    bare = disco_plug.load(blend="gated", residual=False)
    assert bare.network.residual is None and "no residual" in repr(bare)
    assert "residual DiScoFormer" in repr(full)
    assert not any(name.startswith("residual.") for name, _ in bare.network.named_parameters())
    a, b = full.fit(x).log_density_and_score(y), bare.fit(x).log_density_and_score(y)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_the_stacked_default_does_not_build_the_transformer():
    """load() (the stacked blend) never runs the transformer, so it does not build it: no residual tensors,
    and repr says so; load(blend="gated") builds it."""
    est = disco_plug.load()
    assert est.network.residual is None and "transformer unused, not loaded" in repr(est)
    assert disco_plug.load(blend="gated").network.residual is not None


def test_residual_flag_is_checked_and_harmless_for_the_stacked_blend():
    with pytest.raises(ValueError, match="residual must be True, False or None"):
        disco_plug.load(residual="no")
    x = np.random.default_rng(2).normal(size=(200, 2))
    np.testing.assert_array_equal(disco_plug.load(residual=False).fit(x).log_density(x[:5]),
                                  disco_plug.load().fit(x).log_density(x[:5]))
