"""Weights files: files of the layout before the transformer became GatedBlend.residual still load."""

import torch
from safetensors.torch import load_file, save_file

from disco_plug.checkpoint import convert_layout, load_weights, read_metadata, save_weights
from disco_plug.blend.gated import GatedBlend
from disco_plug.config import ModelConfig


def test_old_layout_files_are_converted_on_load(tmp_path):
    """A file whose transformer tensors sit at the top level (the layout before `residual`) loads into the
    same network as the current layout, tensor for tensor; gate tensors keep their names."""
    torch.manual_seed(0)
    net = GatedBlend(ModelConfig(blend="gated", width=32, depth=1, heads=4, max_dim=3))
    with torch.no_grad():
        net.residual.score_out.weight.normal_()
        net.gate_base.normal_()
    new = tmp_path / "new.safetensors"
    save_weights(new, net, metadata={"step": "1"})
    tensors = load_file(str(new))
    old_names = {k.replace("model.residual.", "model."): v for k, v in tensors.items()}
    assert any(k == "model.point_embed" for k in old_names) and not any("residual" in k for k in old_names)
    old = tmp_path / "old.safetensors"
    save_file(old_names, str(old), metadata=read_metadata(new))
    loaded, _, _ = load_weights(old)
    for (name, a), (name_b, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert name == name_b
        torch.testing.assert_close(a, b)
    assert convert_layout("gate_base") == "gate_base" and convert_layout("blocks.0.qkv.weight") == "residual.blocks.0.qkv.weight"


def test_loading_leaves_the_global_random_state_alone():
    """load() builds a network whose random initialization the file overwrites: torch's global RNG is
    the same after it (a user's seeded draws do not depend on whether, or which blend, they loaded)."""
    import disco_plug

    for blend in (None, "gated"):
        torch.manual_seed(5)
        disco_plug.load(blend=blend)
        after = torch.rand(3)
        torch.manual_seed(5)
        torch.testing.assert_close(after, torch.rand(3))
