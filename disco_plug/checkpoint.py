"""Weights on disk: safetensors only (never pickle), with the model config as JSON in the metadata.

Training checkpoints add the optimizer state (as tensors) and the training config and step (as JSON
metadata), so a run resumes exactly. Shipped weights are listed with their sha256 in
weights/MANIFEST.json and checked at load, so a corrupted or swapped file is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from .config import ModelConfig
from .blend.gated import GatedBlend

__all__ = ["save_weights", "load_weights", "export_weights", "file_sha256", "read_metadata", "WEIGHTS_DIR", "default_weights_path"]

WEIGHTS_DIR = Path(__file__).with_name("weights")
_MODEL_PREFIX = "model."
# Files written before the transformer became the gated blend's `residual` submodule keep its tensors at the
# top level; they are renamed on load (convert_layout).
_RESIDUAL = "residual."
_RESIDUAL_TENSORS = ("point_embed", "kde_embed", "scalar_embed.", "dim_embed.", "blocks.", "norm.", "score_out.",
                     "gate_out.", "logp_out.", "logp_gate_out.")


def convert_layout(name: str) -> str:
    """A network tensor's name in the current layout: the transformer's tensors of files written before
    it became GatedBlend.residual (a DiScoFormer) get the `residual.` prefix; other names are unchanged."""
    if not name.startswith(_RESIDUAL) and any(name == t or name.startswith(t) for t in _RESIDUAL_TENSORS):
        return _RESIDUAL + name
    return name


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_weights_path() -> Path:
    return WEIGHTS_DIR / "default.safetensors"


def save_weights(path: str | Path, network: GatedBlend, *, extra_tensors: dict[str, Tensor] | None = None,
                 metadata: dict[str, str] | None = None) -> None:
    """Write the network (and optional extra tensors, e.g. optimizer state) to a safetensors file.
    The network must have its transformer residual (a file always carries the whole model)."""
    if network.residual is None:
        raise ValueError("this network was built without its transformer residual (load(residual=False), or the "
                         "stacked default, which does not build it): load it with residual=True to save a complete file")
    tensors = {_MODEL_PREFIX + k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
    for k, v in (extra_tensors or {}).items():
        tensors[k] = v.detach().to("cpu").contiguous()
    meta = {"format": "disco_plug", "model_config": network.config.to_json(), **(metadata or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)  # atomic: a crash mid-write never leaves a half checkpoint


def read_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def _expected_sha256(path: Path) -> str | None:
    manifest = WEIGHTS_DIR / "MANIFEST.json"
    if path.parent.resolve() != WEIGHTS_DIR.resolve() or not manifest.exists():
        return None
    return json.loads(manifest.read_text()).get(path.name)


def load_weights(path: str | Path, *, sha256: str | None = None,
                 overrides: dict[str, object] | None = None,
                 residual: bool | None = True) -> tuple[GatedBlend, dict[str, Tensor], dict[str, str]]:
    """Load a network from safetensors; returns (network, other tensors, metadata).

    The file's sha256 is checked against `sha256` if given, else against weights/MANIFEST.json for the
    shipped files. `overrides` replaces config fields that change no tensor shape (e.g. blend).
    residual=False builds the gated blend without its transformer and leaves the file's tensors of it unread;
    None builds it only where the config's blend runs it (blend "gated")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.suffix != ".safetensors":
        raise ValueError(f"weights must be a .safetensors file (pickle formats are refused): {path}")
    expected = sha256 or _expected_sha256(path)
    if expected is not None:
        actual = file_sha256(path)
        if actual != expected:
            raise ValueError(f"weights file {path} is corrupted or not the shipped one: sha256 {actual}, "
                             f"expected {expected}")
    try:
        meta = read_metadata(path)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"weights file {path} is not a readable safetensors file: {exc}") from exc
    if "model_config" not in meta:
        raise ValueError(f"weights file {path} has no model_config in its metadata")
    try:
        config = ModelConfig.from_json(meta["model_config"])
    except json.JSONDecodeError as exc:
        raise ValueError(f"weights file {path} has a model_config that is not valid JSON: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ValueError(f"weights file {path} has an invalid model_config: {exc}") from exc
    if overrides:
        try:
            config = dataclasses.replace(config, **overrides)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid config override {overrides}: {exc}") from exc
    state = {convert_layout(k[len(_MODEL_PREFIX):]): v for k, v in tensors.items() if k.startswith(_MODEL_PREFIX)}
    with torch.device("meta"):  # every tensor is checked against the config, built or not (no memory, no RNG)
        expected = {k: v.shape for k, v in GatedBlend(config).state_dict().items()}
    found = {k: v.shape for k, v in state.items()}
    if found != expected:
        missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        shapes = [f"{k}: {tuple(found[k])} instead of {tuple(expected[k])}" for k in sorted(set(found) & set(expected))
                  if found[k] != expected[k]]
        raise ValueError(f"the tensors in weights file {path} do not match its model_config: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, wrong shapes {shapes[:5]}")
    if residual is None:
        residual = config.blend == "gated"
    with torch.random.fork_rng(devices=[]):  # the initialization is overwritten: leave the global RNG as it was
        network = GatedBlend(config, residual=residual)
    if not residual:
        state = {k: v for k, v in state.items() if not k.startswith(_RESIDUAL)}
    network.load_state_dict(state, strict=True)
    network.eval()
    others = {k: v for k, v in tensors.items() if not k.startswith(_MODEL_PREFIX)}
    return network, others, meta


def export_weights(checkpoint: str | Path, dest: str | Path | None = None, *, note: str = "") -> Path:
    """Copy a training checkpoint's network (no optimizer state) to shipped weights, record the
    training step and config in the metadata, and update weights/MANIFEST.json with its sha256."""
    network, _, meta = load_weights(checkpoint)
    dest = Path(dest) if dest is not None else default_weights_path()
    keep = {k: meta[k] for k in ("step", "train_config", "stats") if k in meta}
    if note:
        keep["note"] = note
    save_weights(dest, network, metadata=keep)
    if dest.parent.resolve() == WEIGHTS_DIR.resolve():
        manifest_path = WEIGHTS_DIR / "MANIFEST.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        manifest[dest.name] = file_sha256(dest)
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return dest

