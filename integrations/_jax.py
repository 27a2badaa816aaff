"""The JAX bridge shared by the BlackJAX and NumPyro adapters: a density's two heads as one JAX function.

The torch density runs on the host through ``jax.pure_callback`` (vectorized with
``vmap_method="expand_dims"``, so a vmapped batch of chains is one torch call). A ``jax.custom_vjp``
makes ``jax.value_and_grad`` — what every gradient kernel calls (MALA, HMC, NUTS of Hoffman & Gelman
2014) — cost one host call that returns both heads: the log-density head is the value and the score
head is the gradient. Works under ``jit``, ``lax.scan`` and ``vmap``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ._density import Density, evaluate

try:
    import jax
    import jax.numpy as jnp
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("the JAX adapters need jax: pip install 'disco_plug[jax]'") from err

__all__ = ["host_call", "flat_log_density", "host_sample"]


def host_call(density: Density) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """(log p (...), score (..., d)) of flat positions (..., d): one torch call per evaluation."""
    d = density.dim

    def host(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_p, score = evaluate(density, torch.from_numpy(np.array(y)))  # copy: JAX buffers are read-only
        return log_p.numpy(), score.numpy()

    def call(y: jax.Array) -> tuple[jax.Array, jax.Array]:
        if y.shape[-1:] != (d,):
            raise ValueError(f"position must ravel to d = {d} numbers, got shape {y.shape}")
        if not jnp.issubdtype(y.dtype, jnp.floating):
            raise TypeError(f"position must be floating point, got {y.dtype}")
        shapes = (jax.ShapeDtypeStruct(y.shape[:-1], y.dtype), jax.ShapeDtypeStruct(y.shape, y.dtype))
        return jax.pure_callback(host, shapes, y, vmap_method="expand_dims")

    return call


def flat_log_density(density: Density) -> Callable[[jax.Array], jax.Array]:
    """log p of positions (..., d) -> (...), differentiable with the score head as its gradient."""
    call = host_call(density)

    @jax.custom_vjp
    def log_p(y: jax.Array) -> jax.Array:
        return call(y)[0]

    def forward(y: jax.Array) -> tuple[jax.Array, jax.Array]:
        return call(y)

    def backward(score: jax.Array, g: jax.Array) -> tuple[jax.Array]:
        return (g[..., None] * score,)

    log_p.defvjp(forward, backward)
    return log_p


def _key_seed(key: jax.Array) -> jax.Array:
    """A uint32 array that determines the key (typed or raw), for seeding the host sampler."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def host_sample(draw: Callable[[int, torch.Generator], np.ndarray], d: int
                ) -> Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]:
    """A JAX sampler (key, shape, dtype) -> draws (*shape, d) from ``draw(count, generator)`` on the host.

    The torch generator is seeded from the key's bits, so equal keys give equal draws, under ``jit``
    and ``vmap`` too (a vmapped call draws once per key)."""

    def host(bits: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        seed = int.from_bytes(np.ascontiguousarray(bits, dtype=np.uint32).tobytes(), "little") % (2**63)
        count = int(np.prod(shape, dtype=np.int64))
        draws = np.asarray(draw(count, torch.Generator().manual_seed(seed)), dtype=dtype)
        return draws.reshape(*shape, d)

    def sample(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
        out = jax.ShapeDtypeStruct((*shape, d), dtype)
        return jax.pure_callback(lambda bits: host(bits, shape, np.dtype(dtype)), out, _key_seed(key),
                                 vmap_method="sequential")

    return sample
