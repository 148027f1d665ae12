"""The keyed draw compiled with numba: the same bits as the numpy path, in one call.

A small numpy batch costs its number of numpy calls (about half a microsecond each), not
its elements: the keyed hash is 18 calls and the normal quantile some 70. Compiled, each
is one loop over the elements. Every kernel is the numpy path's sequence of IEEE-754
operations, element by element and in the same order (numba contracts no ``a * b + c``
into a fused multiply-add without ``fastmath``, which is off), so its values equal the
numpy path's bit for bit; ``tests/test_compiled_draws.py`` checks it.

- :func:`keyed_uniforms` — :meth:`~varirec.sampling.streams.KeyedUniforms.uniforms`;
- :func:`keyed_columns` — :func:`~varirec.sampling.batch_draw.keyed_uniforms` (numpy);
- :func:`ndtri`, :func:`exp`, :func:`log` — :mod:`varirec.sampling.portable` on float64;
- :func:`affine_columns`, :func:`exp_columns`, :func:`gauss_columns` — the inverse CDFs
  of :meth:`~varirec.sampling.batch_draw.ColumnPlan.columns`, in place;
- :func:`gauss_flat` — a normal or truncated normal cfg's ``ppf``, into a new array;
- :func:`plan_columns` — the keyed uniforms and every continuous inverse CDF of a reset's
  first draws in one pass (:meth:`~varirec.sampling.batch_draw.ColumnPlan.draw_columns`).

This module imports numba: it is loaded by :mod:`varirec.sampling.accel` on the first
draw, never by ``import varirec``. Kernels are cached on disk (``cache=True``: next to
this file, else numba's user cache or ``NUMBA_CACHE_DIR``); where no cache directory is
writable they compile in memory, in every process. numba invalidates a cached kernel only
when this file changes, not when a jitted callee in another file does: every function a
kernel calls lives here (``_log1`` repeats ``portable._log_one`` on purpose).

>>> import numpy as np
>>> from varirec.sampling import portable
>>> p = np.array([1e-12, 0.3, 0.975])
>>> out = np.empty(3)
>>> ndtri(p, out)
>>> bool((out == portable._ndtri_np(p)).all())
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from varirec.sampling import constants as k

__all__ = [
    "affine_columns",
    "exp",
    "exp_columns",
    "gauss_columns",
    "gauss_flat",
    "keyed_columns",
    "keyed_uniforms",
    "log",
    "ndtri",
    "plan_columns",
]


def jit(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """``numba.njit(cache=True, **options)``, uncached where no cache directory is
    writable; ``@jit`` or ``@jit(inline="always")``."""
    if fn is None:
        return lambda f: jit(f, **options)
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError:  # no writable cache directory (a read-only install)
        return numba.njit(**options)(fn)


_GOLDEN, _SECOND, _M1, _M2 = (np.uint64(c) for c in (k.GOLDEN, k.SECOND, k.M1, k.M2))
_S11, _S16, _S27, _S30, _S31, _S32 = (np.uint64(s) for s in (11, 16, 27, 30, 31, 32))
_LOW32 = np.uint64(0xFFFFFFFF)
_ZERO = np.uint64(0)
_TO_UNIT, _BELOW_ONE = k.TO_UNIT, k.BELOW_ONE
_LN2_HI, _LN2_LO, _INV_LN2, _SQRT_HALF = k.LN2_HI, k.LN2_LO, k.INV_LN2, k.SQRT_HALF
_P1, _P2, _P3, _P4, _P5 = k.EXP_P
_G1, _G2, _G3, _G4, _G5, _G6, _G7 = k.LG
_A0, _A1, _A2, _A3, _A4, _A5, _A6, _A7 = k.A
_B0, _B1, _B2, _B3, _B4, _B5, _B6, _B7 = k.B
_C0, _C1, _C2, _C3, _C4, _C5, _C6, _C7 = k.C
_D0, _D1, _D2, _D3, _D4, _D5, _D6, _D7 = k.D
_E0, _E1, _E2, _E3, _E4, _E5, _E6, _E7 = k.E
_F0, _F1, _F2, _F3, _F4, _F5, _F6, _F7 = k.F


@jit
def _mix(z: Any) -> Any:
    z ^= z >> _S30
    z *= _M1
    z ^= z >> _S27
    z *= _M2
    return z ^ (z >> _S31)


@jit
def _unit(h: Any) -> float:
    u = (np.float64(h >> _S11) + 0.5) * _TO_UNIT
    return u if u <= _BELOW_ONE else _BELOW_ONE


@jit
def _first(base: Any, env: Any, episode: Any) -> Any:
    word = (np.uint64(env) << _S32) | (np.uint64(episode) & _LOW32)
    return _mix((word * _GOLDEN) ^ base)


@jit
def keyed_uniforms(
    base: np.uint64, env: np.ndarray, ep: np.ndarray, seq: np.ndarray, out: np.ndarray
) -> None:
    """``out[i, c]``: the uniform of ``(base, env[i], ep[i], seq[i], c)``; an ``ep`` or
    ``seq`` of one element keys every row."""
    one_ep, one_seq = ep.shape[0] == 1, seq.shape[0] == 1
    for i in range(out.shape[0]):
        h = _first(base, env[i], ep[0] if one_ep else ep[i])
        shifted = np.uint64(seq[0] if one_seq else seq[i]) << _S16
        for c in range(out.shape[1]):
            extra = shifted | np.uint64(c)
            out[i, c] = _unit(h if extra == _ZERO else _mix(h ^ (extra * _SECOND)))


@jit
def keyed_columns(
    bases: np.ndarray,
    comps: np.ndarray,
    env: np.ndarray,
    ep: np.ndarray,
    seq: np.ndarray,
    with_seq: bool,
    out: np.ndarray,
) -> None:
    """``out[i, c]``: the uniform of ``(bases[c], env[i], ep[i], seq[i, c], comps[c])``;
    ``seq`` is read only ``with_seq``."""
    for i in range(out.shape[0]):
        for c in range(out.shape[1]):
            h = _first(bases[c], env[i], ep[i])
            extra = comps[c]
            if with_seq:
                extra |= np.uint64(seq[i, c]) << _S16
            out[i, c] = _unit(h if extra == _ZERO else _mix(h ^ (extra * _SECOND)))


@jit
def _exp1(x: float) -> float:
    kk = np.floor(x * _INV_LN2 + 0.5)
    hi = x - kk * _LN2_HI
    lo = kk * _LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    return math.ldexp(y, int(kk))


@jit
def _log1(x: float) -> float:
    m, e = math.frexp(x)
    kk = np.float64(e)
    if m < _SQRT_HALF:
        m = m * 2.0
        kk = kk - 1.0
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = ((w * _G6 + _G4) * w + _G2) * w
    r = (((w * _G7 + _G5) * w + _G3) * w + _G1) * z
    r = r + t1
    hfsq = 0.5 * f * f
    r = (r + hfsq) * s + kk * _LN2_LO
    return kk * _LN2_HI - ((hfsq - r) - f)


@jit
def _ndtri1(p: float) -> float:
    q = p - 0.5
    if not abs(q) > 0.425:
        r = 0.180625 - q * q
        a = ((((((_A7 * r + _A6) * r + _A5) * r + _A4) * r + _A3) * r + _A2) * r + _A1) * r + _A0
        b = ((((((_B7 * r + _B6) * r + _B5) * r + _B4) * r + _B3) * r + _B2) * r + _B1) * r + _B0
        return q * a / b
    s = math.sqrt(-_log1(min(p, 1.0 - p)))
    if s > 5.0:
        x = s - 5.0
        a = ((((((_E7 * x + _E6) * x + _E5) * x + _E4) * x + _E3) * x + _E2) * x + _E1) * x + _E0
        b = ((((((_F7 * x + _F6) * x + _F5) * x + _F4) * x + _F3) * x + _F2) * x + _F1) * x + _F0
    else:
        x = s - 1.6
        a = ((((((_C7 * x + _C6) * x + _C5) * x + _C4) * x + _C3) * x + _C2) * x + _C1) * x + _C0
        b = ((((((_D7 * x + _D6) * x + _D5) * x + _D4) * x + _D3) * x + _D2) * x + _D1) * x + _D0
    return math.copysign(a / b, q)


@jit
def ndtri(p: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = portable.ndtri(p[i])`` over 1-D float64 arrays."""
    for i in range(p.shape[0]):
        out[i] = _ndtri1(p[i])


@jit
def exp(x: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = portable.exp(x[i])`` over 1-D float64 arrays."""
    for i in range(x.shape[0]):
        out[i] = _exp1(x[i])


@jit
def log(x: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = portable.log(x[i])`` over 1-D float64 arrays."""
    for i in range(x.shape[0]):
        out[i] = _log1(x[i])


@jit
def affine_columns(x: np.ndarray, low: np.ndarray, span: np.ndarray) -> None:
    """``x[:, j] = low[j] + span[j] * x[:, j]`` in place (uniform columns)."""
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            x[i, j] = x[i, j] * span[j] + low[j]


@jit
def exp_columns(x: np.ndarray, lo: np.ndarray, span: np.ndarray) -> None:
    """``x[:, j] = exp(lo[j] + span[j] * x[:, j])`` in place (log-uniform columns)."""
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            x[i, j] = _exp1(lo[j] + span[j] * x[i, j])


@jit(inline="always")  # a call per element would cost gauss_columns half its speed
def _gauss1(u: float, f: np.ndarray, j: int) -> float:
    """One value of a normal or truncated normal column: ``f[:, j]`` is its ``mean,
    std, low, high, upper, lo_tail, hi_tail, mass, plain``."""
    upper, plain = f[4, j] != 0.0, f[8, j] != 0.0
    if plain:
        q = u
    elif upper:
        q = f[6, j] + u * f[7, j]
    else:
        q = f[5, j] + u * f[7, j]
    z = _ndtri1(q)
    if upper:
        z = -z
    y = f[0, j] + f[1, j] * z
    if not plain:
        y = y if y >= f[2, j] else f[2, j]  # np.maximum, then np.minimum
        y = y if y <= f[3, j] else f[3, j]
    return y


UNIFORM, LOGUNIFORM, GAUSS, CONSTANT = 0, 1, 2, 3
"""The kind codes of :func:`plan_columns`'s ``form[0]``."""


@jit
def plan_columns(
    bases: np.ndarray,
    comps: np.ndarray,
    form: np.ndarray,
    env: np.ndarray,
    ep: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out[i, c]``: the value of column c for ``(env[i], ep[i])``, the first draw of
    the episode (``draw_seq`` 0): :func:`keyed_columns`, then column c's inverse CDF by
    its kind ``form[0, c]``: uniform (``low, span`` in rows 1-2), log-uniform (``lo,
    span``), gauss (the 9 rows of :func:`gauss_columns` from row 1) or constant (row 1)."""
    gauss = form[1:]  # a view: the gauss columns' rows, as gauss_columns reads them
    for i in range(out.shape[0]):
        for c in range(out.shape[1]):
            h = _first(bases[c], env[i], ep[i])
            extra = comps[c]
            u = _unit(h if extra == _ZERO else _mix(h ^ (extra * _SECOND)))
            kind = form[0, c]
            if kind == UNIFORM:
                out[i, c] = u * form[2, c] + form[1, c]
            elif kind == LOGUNIFORM:
                out[i, c] = _exp1(form[1, c] + form[2, c] * u)
            elif kind == GAUSS:
                out[i, c] = _gauss1(u, gauss, c)
            else:
                out[i, c] = form[1, c]


@jit
def gauss_flat(u: np.ndarray, form: np.ndarray, out: np.ndarray) -> None:
    """:func:`gauss_columns` of ``u`` (``(n, width)``) into ``out``, its ``n * width``
    values row by row (the caller's uniforms stay; one pass, no copy of them first)."""
    w = u.shape[1]
    for i in range(u.shape[0]):
        for j in range(w):
            out[i * w + j] = _gauss1(u[i, j], form, j)


@jit
def gauss_columns(x: np.ndarray, form: np.ndarray) -> None:
    """Normal and truncated normal columns in place, as ``ColumnPlan.columns`` computes
    them in numpy: ``form[:, j]`` is column j's ``mean, std, low, high, upper, lo_tail,
    hi_tail, mass, plain`` (:func:`~varirec.sampling.sampler_cfgs.gauss_form`)."""
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            x[i, j] = _gauss1(x[i, j], form, j)
