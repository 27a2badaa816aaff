"""The gated blend with and without its transformer residual (load(residual=False): the ablation)."""

import numpy as np
import pytest

import disco_plug


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


def test_residual_flag_is_checked_and_harmless_for_the_stacked_blend():
    with pytest.raises(ValueError, match="residual must be True or False"):
        disco_plug.load(residual="no")
    x = np.random.default_rng(2).normal(size=(200, 2))
    np.testing.assert_array_equal(disco_plug.load(residual=False).fit(x).log_density(x[:5]),
                                  disco_plug.load().fit(x).log_density(x[:5]))
