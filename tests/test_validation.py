"""Hostile input, one row each: a clear error naming the problem, or a correct result.

The reference for "correct" is the float64 numpy fit of the same points (`ref`); magnitudes are
checked against the exactly scaled reference (p_a(a y) = p(y) / a^d, score_a(a y) = score(y) / a).
Weight files that are truncated, pickled, corrupted or carry a wrong config are refused at load.
"""

import json
import math
import pickle
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import torch

import disco_plug
from disco_plug import checkpoint
from disco_plug.columns import DegenerateSamplesWarning, GridValuedColumnsWarning

D = 2
_rng = np.random.default_rng(11)
X = _rng.normal(size=(256, D)) @ np.array([[1.0, 0.0], [0.6, 0.5]]) + np.array([2.0, -1.0])
Y = X[:16] + 0.3 * _rng.normal(size=(16, D))


def _with(a: np.ndarray, index: tuple[int, ...], value: float) -> np.ndarray:
    a = a.copy()
    a[index] = value
    return a


@dataclass(frozen=True)
class Raises:
    exc: type[Exception]
    match: str


def _as_np(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().to(torch.float64).cpu().numpy()
    return np.asarray(t, dtype=np.float64)


def close(rtol: float, *, kind: type | None = None, dtype: Any = None, scale: float = 1.0,
          shape: tuple[int, ...] = (16,), data: tuple[np.ndarray, np.ndarray] | None = None
          ) -> Callable[[Any, Any], None]:
    """Check a (log p, score) result against the float64 numpy fit of `data` (X, Y if None; the
    result's own input, rounded as it was), scaled by `scale` (the result's data = data * scale), to
    `rtol` relative to the largest reference entry; also its array type and dtype."""

    def check(result, est):
        xs, ys = (X, Y) if data is None else data
        with warnings.catch_warnings():  # the reference of an integer-valued row warns as the row did
            warnings.simplefilter("ignore", GridValuedColumnsWarning)
            reference = est.fit(xs).log_density_and_score(ys)
        lp, s = result
        for out in (lp, s):
            if kind is not None:
                assert isinstance(out, kind), type(out)
            if dtype is not None:
                assert out.dtype == dtype, out.dtype
        assert tuple(lp.shape) == shape and tuple(s.shape) == shape + (D,)
        lp_ref = reference[0] - D * math.log(scale)
        s_ref = reference[1] / scale
        np.testing.assert_allclose(_as_np(lp), lp_ref, rtol=0, atol=rtol * np.abs(lp_ref).max())
        np.testing.assert_allclose(_as_np(s), s_ref, rtol=0, atol=rtol * np.abs(s_ref).max())

    return check


def finite(result, est):
    for out in result:
        assert np.isfinite(_as_np(out)).all()


def fit(samples, queries=Y, warns: type[Warning] | None = None):
    """The row's call; `warns`: the warning the fit must give (filterwarnings=error fails any other)."""
    def call(est):
        if warns is None:
            return est.fit(samples).log_density_and_score(queries)
        with pytest.warns(warns):
            return est.fit(samples).log_density_and_score(queries)
    return call


def _on_column_0(result, est):
    """A fit whose column 1 is degenerate is the density of column 0 alone, with score 0 along column 1."""
    lp, s = result
    ref_lp, ref_s = est.fit(X[:, :1]).log_density_and_score(Y[:, :1])
    np.testing.assert_allclose(lp, ref_lp, rtol=1e-12)
    np.testing.assert_allclose(s[:, 0], ref_s[:, 0], rtol=1e-12)
    assert (s[:, 1] == 0).all()


def _jax(est):
    jnp = pytest.importorskip("jax.numpy")
    lp, s = est.fit(jnp.asarray(X)).log_density_and_score(jnp.asarray(Y))
    for out in (lp, s):
        assert type(out).__module__.startswith("jax") and out.dtype == jnp.zeros(()).dtype, (type(out), out.dtype)
    return np.asarray(lp), np.asarray(s)


def _rounded(dtype) -> tuple[np.ndarray, np.ndarray]:
    """X and Y as the estimator sees them after rounding to a narrow torch dtype."""
    return tuple(torch.tensor(a).to(dtype).double().numpy() for a in (X, Y))


XI, YI = np.round(X * 10), np.round(Y * 10)  # integer-valued


def _duplicated(est):
    doubled = np.r_[X, X[:100]]
    a = est.fit(doubled).log_density_and_score(Y)
    b = est.fit(doubled[::-1]).log_density_and_score(Y)  # the duplicates' order does not matter
    finite(a, None)
    np.testing.assert_allclose(a[1], b[1], rtol=0, atol=2e-5 * np.abs(a[1]).max())  # float32 sum order
    return None


def _grad(est):
    x = torch.tensor(X, requires_grad=True)
    y = torch.tensor(Y, requires_grad=True)
    lp, s = est.fit(x).log_density_and_score(y)
    assert not lp.requires_grad and not s.requires_grad
    return lp, s


def _non_contiguous(est):
    wide = np.zeros((X.shape[0] * 2, 3 * D))
    wide[::2, ::3] = X
    x = torch.from_numpy(wide)[::2, ::3]  # strided view of X
    yt = torch.from_numpy(np.asfortranarray(Y))
    xt = torch.from_numpy(np.ascontiguousarray(X.T)).T  # transposed view
    assert not x.is_contiguous() and not xt.is_contiguous()
    a = est.fit(x).log_density_and_score(yt)
    b = est.fit(xt).log_density_and_score(yt.T.contiguous().T)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    return a


def _single(est):
    lp, s = est.fit(X).log_density_and_score(Y[0])
    assert lp.shape == () and s.shape == (D,)
    return lp[None], s[None]


def _far(est):
    lp, s = est.fit(X).log_density_and_score(Y + 1e6)
    assert (lp < est.fit(X).log_density(Y)).all()  # far out is less likely
    return lp, s


SCALED = 1e30
ROWS = [
    # -- NaN, inf ----------------------------------------------------------------------------------
    pytest.param(fit(_with(X, (3, 1), np.nan)), Raises(ValueError, r"samples contains 1 non-finite value\(s\) "
                 r"\(NaN\), first at index \(3, 1\)"), id="nan-samples"),
    pytest.param(fit(_with(_with(X, (5, 0), np.inf), (9, 1), np.nan)),
                 Raises(ValueError, r"2 non-finite value\(s\) \(NaN and infinite\), first at index \(5, 0\)"),
                 id="nan-and-inf-samples"),
    pytest.param(fit(_with(X, (0, 0), -np.inf)), Raises(ValueError, r"samples .*\(infinite\)"), id="inf-samples"),
    pytest.param(fit(X, _with(Y, (2, 1), np.nan)), Raises(ValueError, r"queries .*\(NaN\), first at index \(2, 1\)"),
                 id="nan-queries"),
    pytest.param(fit(X, np.array([0.0, np.inf])), Raises(ValueError, r"queries .*\(infinite\), first at index \(1,\)"),
                 id="inf-single-query"),
    # -- shapes ------------------------------------------------------------------------------------
    pytest.param(fit(np.zeros((0, D))), Raises(ValueError, r"samples is empty: shape \(0, 2\)"), id="empty-samples"),
    pytest.param(fit(np.zeros((10, 0))), Raises(ValueError, r"samples is empty: shape \(10, 0\)"), id="zero-columns"),
    pytest.param(fit(X, np.zeros((0, D))), Raises(ValueError, r"queries is empty"), id="empty-queries"),
    pytest.param(fit(X[:, 0]), Raises(ValueError, r"1-D shape \(256,\).*reshape\(-1, 1\)"), id="1d-samples"),
    pytest.param(fit(X.reshape(16, 16, D)), Raises(ValueError, r"samples must have shape \(n, d\), got 3-D"),
                 id="3d-samples"),
    pytest.param(fit(X, Y.reshape(4, 4, D)), Raises(ValueError, r"queries must have shape \(m, d\) or a single "
                 r"point \(d,\), got 3-D"), id="3d-queries"),
    pytest.param(fit(np.float64(1.0)), Raises(ValueError, r"got 0-D shape \(\)"), id="0d-samples"),
    pytest.param(fit(X[:1]), Raises(ValueError, r"at least 2 samples.*n=1"), id="n-1"),
    pytest.param(fit(X[:1, :1]), Raises(ValueError, r"at least 2 samples.*n=1"), id="n-1-d-1"),
    pytest.param(fit(_rng.normal(size=(3, 3)), np.zeros((1, 3)), warns=DegenerateSamplesWarning), finite,
                 id="n-equals-d-fits-its-affine-hull"),
    pytest.param(fit(_rng.normal(size=(500, 101)), np.zeros((1, 101))),
                 Raises(ValueError, r"d=101; the model serves d = 1..100"), id="d-over-100"),
    pytest.param(fit(X, np.zeros((4, 3))), Raises(ValueError, r"queries has dimension 3, but the estimator was "
                 r"fitted on d=2"), id="query-dimension-mismatch"),
    # -- degenerate data ---------------------------------------------------------------------------
    pytest.param(fit(np.tile([[1.5, -2.0]], (50, 1))), Raises(ValueError, r"all the same point.*50 points"),
                 id="all-points-equal"),
    pytest.param(fit(np.c_[X[:, 0], np.full(256, 7.0)], warns=DegenerateSamplesWarning), _on_column_0,
                 id="constant-column-warns"),
    pytest.param(fit(np.c_[X[:, 0], 2 * X[:, 0] + 1], warns=DegenerateSamplesWarning), _on_column_0,
                 id="collinear-warns"),
    pytest.param(fit(X * 1e200), Raises(ValueError, r"column 0 has spread .*1.*e\+200.*rescale"),
                 id="spread-1e200"),
    pytest.param(fit(X * 1e-200), Raises(ValueError, r"column 0 has spread .*e-200.*rescale"), id="spread-1e-200"),
    pytest.param(_duplicated, None, id="duplicated-points"),
    # -- dtypes ------------------------------------------------------------------------------------
    pytest.param(fit(XI.astype(np.int64), YI.astype(np.int32), warns=GridValuedColumnsWarning),
                 close(0.0, kind=np.ndarray, dtype=np.float64, data=(XI, YI)), id="int-numpy-is-float64"),
    pytest.param(fit(XI.astype(np.uint16) + 100, YI.astype(np.uint8) + 100, warns=GridValuedColumnsWarning),
                 close(0.0, kind=np.ndarray, dtype=np.float64, data=(XI + 100, YI + 100)), id="uint-numpy"),
    pytest.param(fit(torch.tensor(XI, dtype=torch.int64), torch.tensor(YI, dtype=torch.int16),
                     warns=GridValuedColumnsWarning),
                 close(1e-5, kind=torch.Tensor, dtype=torch.get_default_dtype(), data=(XI, YI)),
                 id="int-torch-is-default-dtype"),
    pytest.param(fit(X > 0), Raises(TypeError, r"real numbers, got dtype bool"), id="bool"),
    pytest.param(fit(X + 1j), Raises(TypeError, r"real numbers, got dtype complex128"), id="complex"),
    pytest.param(fit(np.array([["a", "b"], ["c", "d"]])), Raises(TypeError, r"real numbers, got dtype <U1"),
                 id="strings"),
    pytest.param(fit(None), Raises(TypeError, r"real numbers, got NoneType"), id="none"),
    pytest.param(fit([[1.0, 2.0], [3.0]]), Raises(TypeError, r"array of numbers, got list"), id="ragged-list"),
    pytest.param(fit(X.tolist(), Y.tolist()), close(1e-12, kind=np.ndarray, dtype=np.float64), id="python-lists"),
    # float16/bfloat16: computed in float64 from the rounded input, rounded once on the way out.
    pytest.param(fit(X.astype(np.float16), Y.astype(np.float16)),
                 close(2e-3, kind=np.ndarray, dtype=np.float16, data=_rounded(torch.float16)), id="float16-numpy"),
    pytest.param(fit(torch.tensor(X, dtype=torch.bfloat16), torch.tensor(Y, dtype=torch.bfloat16)),
                 close(1e-2, kind=torch.Tensor, dtype=torch.bfloat16, data=_rounded(torch.bfloat16)),
                 id="bfloat16-torch"),
    pytest.param(fit(torch.tensor(X, dtype=torch.float16), torch.tensor(Y + 1000.0, dtype=torch.float16)),
                 Raises(ValueError, r"overflows torch.float16 \(largest magnitude .*e\+0[5-9]\).*float32 or float64"),
                 id="float16-result-overflow"),
    pytest.param(fit(torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32)),
                 close(1e-5, kind=torch.Tensor, dtype=torch.float32), id="float32-torch"),
    pytest.param(fit(X.astype(np.float32), Y.astype(np.float32)), close(1e-5, kind=np.ndarray, dtype=np.float32),
                 id="float32-numpy"),
    pytest.param(fit(torch.tensor(X), torch.tensor(Y)), close(0.0, kind=torch.Tensor, dtype=torch.float64),
                 id="float64-torch-equals-numpy"),
    # -- magnitudes --------------------------------------------------------------------------------
    pytest.param(fit(X * SCALED, Y * SCALED), close(1e-10, scale=SCALED, dtype=np.float64), id="magnitude-1e30"),
    pytest.param(fit(X / SCALED, Y / SCALED), close(1e-10, scale=1 / SCALED, dtype=np.float64),
                 id="magnitude-1e-30"),
    pytest.param(fit(torch.tensor(X * SCALED, dtype=torch.float32), torch.tensor(Y * SCALED, dtype=torch.float32)),
                 close(1e-5, scale=SCALED, dtype=torch.float32), id="magnitude-1e30-float32"),
    pytest.param(_far, finite, id="far-queries-finite"),
    # -- array kinds, layouts, devices -------------------------------------------------------------
    pytest.param(_non_contiguous, close(0.0, kind=torch.Tensor, dtype=torch.float64), id="non-contiguous"),
    pytest.param(_grad, close(0.0, kind=torch.Tensor, dtype=torch.float64), id="requires-grad"),
    pytest.param(_single, close(0.0, kind=np.ndarray, shape=(1,), data=(X, Y[:1])),
                 id="single-point-query"),
    pytest.param(_jax, close(1e-5), id="jax-in-jax-out"),
    pytest.param(fit(X, torch.zeros(4, D, device="meta")), Raises(ValueError, r"queries are on meta but the "
                 r"estimator was fitted on cpu; move them with .to\('cpu'\)"), id="device-mismatch"),
    pytest.param(fit(torch.zeros(40, D, device="meta")), Raises(ValueError, r"meta device, which holds no values"),
                 id="meta-samples"),
]


@pytest.mark.parametrize("call,expect", ROWS)
def test_hostile_input(estimator, call, expect):
    """expect: Raises(type, message regex), None (the row checks itself), or check(result, estimator)."""
    if isinstance(expect, Raises):
        with pytest.raises(expect.exc, match=expect.match):
            call(estimator)
        return
    result = call(estimator)
    if expect is not None:
        expect(result, estimator)


# -- weight files ----------------------------------------------------------------------------------
def _truncated(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(checkpoint.default_weights_path().read_bytes()[:5000])
    return path


def _pickle_renamed(tmp_path):
    path = tmp_path / "w.safetensors"
    with open(path, "wb") as f:  # a pickle, never unpickled: the safetensors parser refuses its header
        pickle.dump({"model.point_embed": torch.zeros(3)}, f)
    return path


def _torch_save_renamed(tmp_path):
    path = tmp_path / "w.safetensors"
    torch.save({"x": torch.zeros(3)}, path)
    return path


def _with_metadata(tmp_path, **meta):
    from safetensors.torch import load_file, save_file

    src = checkpoint.default_weights_path()
    path = tmp_path / "w.safetensors"
    save_file(load_file(str(src)), str(path), metadata={**checkpoint.read_metadata(src), **meta})
    return path


def _wrong_config(tmp_path):
    config = json.loads(checkpoint.read_metadata(checkpoint.default_weights_path())["model_config"])
    return _with_metadata(tmp_path, model_config=json.dumps({**config, "width": config["width"] // 2}))


@pytest.mark.parametrize(
    "make,match",
    [
        pytest.param(_truncated, r"not a readable safetensors file", id="truncated"),
        pytest.param(_pickle_renamed, r"not a readable safetensors file", id="pickle-renamed-safetensors"),
        pytest.param(_torch_save_renamed, r"not a readable safetensors file", id="torch-save-renamed-safetensors"),
        pytest.param(lambda p: _with_metadata(p, model_config='{"width": '), r"model_config.*not valid JSON",
                     id="model-config-bad-json"),
        pytest.param(lambda p: _with_metadata(p, model_config='{"colour": 1}'), r"unknown model config keys",
                     id="model-config-unknown-key"),
        pytest.param(_wrong_config, r"do not match its model_config", id="model-config-wrong-shapes"),
    ],
)
def test_bad_weight_files_are_refused(tmp_path, make, match):
    with pytest.raises(ValueError, match=match):
        disco_plug.load(make(tmp_path))


def test_shipped_weights_are_checked_against_the_manifest(tmp_path, monkeypatch):
    """A file in the package's weights folder whose bytes changed is refused by its sha256."""
    raw = bytearray(checkpoint.default_weights_path().read_bytes())
    manifest = json.loads((checkpoint.WEIGHTS_DIR / "MANIFEST.json").read_text())
    assert manifest["default.safetensors"] == checkpoint.file_sha256(checkpoint.default_weights_path())
    raw[-10] ^= 0x01  # one bit inside the tensor data: still a readable safetensors file
    (tmp_path / "default.safetensors").write_bytes(bytes(raw))
    (tmp_path / "MANIFEST.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"corrupted or not the shipped one: sha256 [0-9a-f]{64}, expected"):
        disco_plug.load(tmp_path / "default.safetensors")
