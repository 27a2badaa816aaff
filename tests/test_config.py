"""ModelConfig: its defaults are the shipped model, and it survives the weights' metadata."""

import dataclasses
import json

import pytest

from disco_plug.checkpoint import default_weights_path, read_metadata
from disco_plug.config import ModelConfig


def test_defaults_are_the_shipped_model():
    """Every field the bundled weights' metadata sets has its default value there: ModelConfig() is the
    model that ships (fields the file does not carry take their defaults when it loads)."""
    shipped = json.loads(read_metadata(default_weights_path())["model_config"])
    defaults = json.loads(ModelConfig().to_json())
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
