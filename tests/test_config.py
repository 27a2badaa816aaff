"""ModelConfig: its defaults are the shipped model, and it survives the weights' metadata."""

import dataclasses
import json

import pytest

from disco_plug.checkpoint import default_weights_path, read_metadata
from disco_plug.config import ModelConfig


def test_defaults_are_the_shipped_model():
    """The bundled weights' metadata carries every ModelConfig field (every number that changes the
    output), each at its default value: ModelConfig() is the model that ships."""
    shipped = json.loads(read_metadata(default_weights_path())["model_config"])
    defaults = json.loads(ModelConfig().to_json())
    assert set(shipped) == set(defaults), sorted(set(shipped) ^ set(defaults))
    differ = {k: (v, defaults[k]) for k, v in shipped.items() if defaults[k] != v}
    assert not differ, f"shipped value vs default: {differ}"
    assert ModelConfig.from_json(json.dumps(shipped)) == ModelConfig()


def test_round_trip_and_clear_errors():
    c = dataclasses.replace(ModelConfig(), width=64, kde_factors=(0.5, 1.0))
    assert ModelConfig.from_json(c.to_json()) == c
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_json('{"widht": 3}')
    with pytest.raises(ValueError, match="gate_context_features=False"):
        ModelConfig(mixture_penalties=(), t_mixture_penalties=())
    with pytest.raises(ValueError, match="unknown blend"):
        ModelConfig(blend="average")
    with pytest.raises(ValueError, match="mixture_patience must be a positive integer"):
        ModelConfig(mixture_patience=0)
    with pytest.raises(ValueError, match="mixture_dof_grid"):
        ModelConfig(mixture_dof_grid=(1.5, 3.0))


def test_the_em_rules_in_the_config_reach_the_fit():
    """mixture_max_components caps every fitted mixture's K, and mixture_dof_grid is the Student-t
    mixture's only choice of nu besides the Gaussian (two separated clusters, one of them t-distributed)."""
    import torch

    from disco_plug.blend.stacked import fit_context_mixtures
    from disco_plug.densities.mixture import GAUSSIAN_DOF

    g = torch.Generator().manual_seed(0)
    t = torch.distributions.StudentT(3.0)
    x = torch.cat([torch.randn(300, 2, generator=g, dtype=torch.float64) - 4,
                   t.sample((300, 2)).double() + 4])[None]
    x = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)
    fitted = fit_context_mixtures(x, ModelConfig())
    assert max(int(m.components[0]) for m in fitted) >= 2
    capped = fit_context_mixtures(x, ModelConfig(mixture_max_components=1))
    assert all(int(m.components[0]) == 1 for m in capped)
    heavy = fit_context_mixtures(x, ModelConfig(mixture_dof_grid=(7.0,)))[len(ModelConfig().mixture_penalties)]
    used = heavy.dof[0][torch.isfinite(heavy.log_norm[0])]
    assert set(used.tolist()) <= {7.0, GAUSSIAN_DOF} and 7.0 in used.tolist()
