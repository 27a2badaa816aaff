"""ArviZ bridge: stack posterior draws from an ``InferenceData`` into one joint sample on R^D.

A posterior stored by PyMC, NumPyro, Pyro or Stan (``arviz.from_pymc``, ``from_numpyro``, ...) holds
each variable's draws with shape (chain, draw, *event) in the *constrained* space (a scale is positive,
a probability in (0, 1)). A density estimate of yesterday's posterior, used as today's prior, must live
on an unconstrained space: a positive scale is estimated as its log. `from_inference_data` flattens
chains and draws, flattens vector variables (column names keep the variable and its coordinates, e.g.
``beta[x1]``), maps every constrained variable to R by its transform, and records the transforms.
`JointSample.constrain` maps unconstrained points back (in numpy, JAX, PyTensor or torch), and
`JointSample.log_abs_det_jacobian` gives the change-of-variables term, so that

    log p_constrained(x) = log p_z(unconstrain(x)) - log_abs_det_jacobian(unconstrain(x)).

A prior placed on z (``numpyro.sample`` / a PyMC variable) with the model's parameters as deterministic
functions ``constrain(z)`` needs no Jacobian term: the density is on z, where it was estimated.

Transforms: ``"identity"``, ``"log"`` (positive), ``"logit"`` (in (0, 1)), ``("lower", a)``,
``("upper", b)``, ``("interval", a, b)``, or any constraint object with ``lower_bound`` /
``upper_bound`` attributes (``numpyro.distributions.constraints.positive``, torch's
``constraints.unit_interval``, ...). With a PyMC ``model`` the transforms are read from it.

Example:
    >>> import numpy as np, arviz as az
    >>> rng = np.random.default_rng(0)
    >>> idata = az.from_dict(posterior={"mu": rng.normal(size=(2, 100)),
    ...                                 "sigma": rng.lognormal(size=(2, 100)),
    ...                                 "beta": rng.normal(size=(2, 100, 3))})
    >>> joint = from_inference_data(idata, transforms={"sigma": "log"})
    >>> joint.draws.shape, joint.names[:3], joint.names[-1]
    ((200, 5), ['mu', 'sigma', 'beta[0]'], 'beta[2]')
    >>> back = joint.constrain(joint.draws)
    >>> bool(np.allclose(back["sigma"], idata.posterior["sigma"].values.reshape(-1)))
    True
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from disco_plug.support import Transform

__all__ = ["Transform", "Variable", "JointSample", "from_inference_data", "transforms_from_pymc"]


@dataclass(frozen=True)
class Variable:
    """One model variable's place in the joint sample: columns [start, start + size), event shape, transform."""

    name: str
    shape: tuple[int, ...]
    start: int
    transform: Transform
    labels: tuple[str, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def columns(self) -> slice:
        return slice(self.start, self.start + self.size)


@dataclass(frozen=True)
class JointSample:
    """Posterior draws of several variables as one (n, D) sample on R^D, with its bookkeeping.

    Attributes:
        draws: (n, D) float64 unconstrained draws (chains and draws flattened, chain-major).
        variables: each variable's columns, event shape and transform.
    """

    draws: np.ndarray
    variables: tuple[Variable, ...]

    @property
    def names(self) -> list[str]:
        """Column names: the variable, with its coordinates for vector variables (``beta[x1]``)."""
        return [label for v in self.variables for label in v.labels]

    @property
    def transforms(self) -> dict[str, str]:
        return {v.name: v.transform.name for v in self.variables}

    @property
    def dim(self) -> int:
        return self.draws.shape[1]

    def _check(self, z: Any) -> None:
        shape = getattr(getattr(z, "type", None), "shape", None)  # PyTensor: static shape, None where unknown
        if not isinstance(shape, tuple):
            shape = tuple(z.shape)
        if not shape or shape[-1] not in (None, self.dim):
            raise ValueError(f"points must have last dimension D = {self.dim} ({self.names}), "
                             f"got shape {tuple(shape)}")

    def constrain(self, z: Any, xp: Any = np) -> dict[str, Any]:
        """Unconstrained points z (..., D) -> {variable: constrained values (..., *shape)}.

        ``xp`` is the array namespace of z: numpy, ``jax.numpy``, ``pytensor.tensor`` or ``torch``."""
        self._check(z)
        lead = tuple(z.shape[i] for i in range(z.ndim - 1))  # symbolic entries for PyTensor
        out = {}
        for v in self.variables:
            part = v.transform.constrain(z[..., v.columns], xp)
            out[v.name] = part[..., 0] if v.shape == () else part.reshape((*lead, *v.shape))
        return out

    def unconstrain(self, values: Mapping[str, Any], xp: Any = np) -> Any:
        """{variable: constrained values (..., *shape)} -> unconstrained points (..., D) (numpy or JAX)."""
        missing = [v.name for v in self.variables if v.name not in values]
        if missing:
            raise KeyError(f"values are missing the variables {missing}")
        parts = []
        for v in self.variables:
            x = xp.asarray(values[v.name])
            lead = x.shape[: x.ndim - len(v.shape)]
            if tuple(x.shape[len(lead):]) != v.shape:
                raise ValueError(f"variable {v.name!r} must have event shape {v.shape}, got {tuple(x.shape)}")
            parts.append(v.transform.unconstrain(x.reshape(*lead, v.size), xp))
        return xp.concatenate(parts, axis=-1)

    def log_abs_det_jacobian(self, z: Any, xp: Any = np) -> Any:
        """log |det d constrain(z) / dz| (...) of points z (..., D)."""
        self._check(z)
        total = 0.0
        for v in self.variables:
            total = total + v.transform.log_abs_det_jacobian(z[..., v.columns], xp).sum(axis=-1)
        return total


def _labels(name: str, array: Any, event_dims: Sequence[str]) -> tuple[str, ...]:
    if not event_dims:
        return (name,)
    axes = []
    for dim in event_dims:
        coord = array.coords[dim].values if dim in array.coords else np.arange(array.sizes[dim])
        axes.append([str(c) for c in coord])
    return tuple(f"{name}[{','.join(idx)}]" for idx in itertools.product(*axes))


def transforms_from_pymc(model: Any, var_names: Sequence[str] | None = None) -> dict[str, Transform]:
    """The transforms PyMC applies to the free variables of ``model`` (log, logodds, constant intervals)."""
    out = {}
    for rv in model.free_RVs:
        if var_names is not None and rv.name not in var_names:
            continue
        tr = model.rvs_to_transforms.get(rv)
        if tr is None:
            out[rv.name] = Transform()
            continue
        kind = getattr(tr, "name", type(tr).__name__)
        if kind == "log":
            out[rv.name] = Transform(0.0)
        elif kind == "logodds":
            out[rv.name] = Transform(0.0, 1.0)
        elif kind == "interval":
            a, b, lower, upper = tr.get_a_and_b(rv.owner.inputs)
            try:
                lo = float(np.asarray(a.eval())) if lower else -math.inf
                hi = float(np.asarray(b.eval())) if upper else math.inf
            except Exception as err:  # bounds that depend on other variables
                raise ValueError(f"variable {rv.name!r}: its interval bounds are not constants ({err}); "
                                 "pass transforms= explicitly") from None
            out[rv.name] = Transform(lo, hi)
        else:
            raise ValueError(f"variable {rv.name!r}: PyMC transform {kind!r} is not supported "
                             "(supported: log, logodds, interval)")
    return out


def from_inference_data(idata: Any, var_names: Sequence[str] | None = None, *,
                        transforms: Mapping[str, Any] | None = None, model: Any = None,
                        group: str = "posterior") -> JointSample:
    """Stack an ``InferenceData`` group's draws into one unconstrained joint sample.

    Parameters:
        idata: ``arviz.InferenceData`` (or anything with the group as an xarray Dataset attribute).
        var_names: variables to stack, in this order (default: every variable of the group).
        transforms: {variable: transform} for constrained variables (see the module docstring);
            unnamed variables are unconstrained unless ``model`` says otherwise.
        model: a PyMC model whose transforms (log for positive, logodds for (0, 1), constant
            intervals) are used for the variables ``transforms`` does not name.
        group: the InferenceData group, ``"posterior"`` by default.

    Raises:
        KeyError for unknown variables; ValueError for non-finite draws, for draws outside a
        variable's support (naming the variable, the chain and draw, and the value), and for
        non-numeric variables.
    """
    data = getattr(idata, group, None)
    if data is None:
        raise KeyError(f"the InferenceData has no group {group!r}")
    names = list(data.data_vars) if var_names is None else list(var_names)
    unknown = [n for n in names if n not in data.data_vars]
    if unknown:
        raise KeyError(f"unknown variables {unknown}; the {group} group has {list(data.data_vars)}")
    if not names:
        raise ValueError("no variables to stack")
    chosen: dict[str, Transform] = {}
    if model is not None:
        chosen.update(transforms_from_pymc(model, names))
    for name, spec in (transforms or {}).items():
        if name not in names:
            raise KeyError(f"transforms names {name!r}, which is not among the stacked variables {names}")
        chosen[name] = Transform.parse(spec, name)
    columns, variables, start = [], [], 0
    for name in names:
        array = data[name]
        if tuple(array.dims[:2]) != ("chain", "draw"):
            raise ValueError(f"variable {name!r} must have dims (chain, draw, ...), got {array.dims}")
        values = np.asarray(array.values)
        if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.complexfloating):
            raise ValueError(f"variable {name!r} is not real-valued ({values.dtype})")
        values = values.astype(np.float64)
        transform = chosen.get(name, Transform())
        bad = ~np.isfinite(values)
        if not bad.any():
            bad = ~((values > transform.lower) & (values < transform.upper))
            why = f"outside ({transform.lower:g}, {transform.upper:g}), the support of its {transform.name} transform"
        else:
            why = "that are NaN or inf"
        if bad.any():
            chain, draw, *idx = (int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"variable {name!r} has {int(bad.sum())} values {why}; first at chain {chain}, "
                             f"draw {draw}{', index ' + str(tuple(idx)) if idx else ''}: "
                             f"{values[(chain, draw, *idx)].item()!r}")
        shape = tuple(values.shape[2:])
        z = transform.unconstrain(values.reshape(values.shape[0] * values.shape[1], -1))
        columns.append(z)
        variables.append(Variable(name, shape, start, transform, _labels(name, array, array.dims[2:])))
        start += z.shape[1]
    return JointSample(np.concatenate(columns, axis=1), tuple(variables))
