"""Elementary functions that give the same bits in numpy and torch, on any device.

``np.exp``, ``torch.exp``, ``scipy.special.ndtri`` and ``torch.special.ndtri`` disagree in
the last bit for a few percent of inputs (each library vectorizes its own way). The
inverse CDFs of varirec's samplers use these instead: each is a fixed sequence of
IEEE-754 operations that are correctly rounded everywhere (+, -, *, /, sqrt, floor,
frexp, ldexp), so a draw on a CUDA device equals the numpy draw bit for bit.

- :func:`exp` — fdlibm's ``e_exp.c`` (< 1 ulp).
- :func:`log` — fdlibm's ``e_log.c`` (< 1 ulp).
- :func:`sqrt` — rounded to nearest (torch's CPU ``sqrt`` is not, for some inputs).
- :func:`ndtri` — the standard normal quantile, Wichura's AS 241 (PPND16), relative
  error about 1e-16 (Wichura 1988, doi:10.2307/2347330).

Arguments are float64 arrays (numpy or torch); ``xp`` is their module (numpy or torch).

>>> import numpy as np
>>> bool(abs(exp(np.array([1.0]), np)[0] - np.e) <= np.spacing(np.e))
True
>>> round(float(ndtri(np.array([0.975]), np)[0]), 12)
1.95996398454
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from varirec.sampling.accel import kernels
from varirec.sampling.constants import EXP_P as _EXP_P
from varirec.sampling.constants import INV_LN2 as _INV_LN2
from varirec.sampling.constants import LG as _LG
from varirec.sampling.constants import LN2_HI as _LN2_HI
from varirec.sampling.constants import LN2_LO as _LN2_LO
from varirec.sampling.constants import SQRT_HALF as _SQRT_HALF
from varirec.sampling.constants import A as _A
from varirec.sampling.constants import B as _B
from varirec.sampling.constants import C as _C
from varirec.sampling.constants import D as _D
from varirec.sampling.constants import E as _E
from varirec.sampling.constants import F as _F

__all__ = ["exp", "log", "ndtri", "sqrt"]


def _compiled(kernel: Any, x: np.ndarray) -> np.ndarray:
    """``kernel`` (:mod:`varirec.sampling.compiled`) element by element, shaped as ``x``."""
    out = np.empty(x.shape)
    kernel(x.reshape(-1), out.reshape(-1))
    return out


def _frexp(x: Any, xp: Any) -> tuple[Any, Any]:
    m, e = xp.frexp(x)
    return m, e.to(x.dtype) if hasattr(e, "to") else e.astype(x.dtype)


def _ldexp(y: Any, k: Any, xp: Any) -> Any:
    if hasattr(y, "to"):  # torch: y * 2**k, exact for results in the normal range
        return xp.ldexp(y, k)
    return xp.ldexp(y, k.astype("int64"))


def exp(x: Any, xp: Any) -> Any:
    """``e**x`` for float64 ``x`` with results in the normal range."""
    if xp is np:
        x = np.asarray(x)
        kern = kernels() if x.dtype == np.float64 else None
        if kern is not None:
            return _compiled(kern.exp, x)
    k = xp.floor(x * _INV_LN2 + 0.5)
    hi = x - k * _LN2_HI  # exact: _LN2_HI has trailing zero bits
    lo = k * _LN2_LO
    r = hi - lo
    t = r * r
    p1, p2, p3, p4, p5 = _EXP_P
    c = r - t * (p1 + t * (p2 + t * (p3 + t * (p4 + t * p5))))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    return _ldexp(y, k, xp)


def log(x: Any, xp: Any) -> Any:
    """Natural log of positive, normal float64 ``x``."""
    if xp is np:
        x = np.asarray(x)
        if x.dtype == np.float64:  # other dtypes keep their own precision below
            kern = kernels()
            if kern is not None:
                return _compiled(kern.log, x)
            return _log_np(x.reshape(-1)).reshape(x.shape)  # a 0-d x too, as compiled
    m, e = _frexp(x, xp)  # x = m * 2**e, m in [0.5, 1)
    small = m < _SQRT_HALF
    m = xp.where(small, m * 2.0, m)  # m in [sqrt(1/2), sqrt(2))
    k = xp.where(small, e - 1.0, e)
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    g1, g2, g3, g4, g5, g6, g7 = _LG
    t1 = w * (g2 + w * (g4 + w * g6))
    t2 = z * (g1 + w * (g3 + w * (g5 + w * g7)))
    big_r = t2 + t1
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + big_r) + k * _LN2_LO)) - f)


def _poly(c: tuple[float, ...], x: Any) -> Any:
    """Horner: c[0] + c[1] x + ... + c[7] x**7."""
    out = c[7] * x
    out += c[6]
    for a in c[5::-1]:
        out *= x
        out += a
    return out


_SPLIT = 134217729.0  # 2**27 + 1 (Veltkamp's split of a double into two halves)


def _square_residual(x: Any, y: Any) -> Any:
    """``x - y*y``, exactly for ``y*y`` within a factor 2 of ``x`` (Dekker's product)."""
    c = _SPLIT * y
    hi = c - (c - y)
    lo = y - hi
    p = y * y
    err = ((hi * hi - p) + 2.0 * (hi * lo)) + lo * lo
    return (x - p) - err


def sqrt(x: Any, xp: Any) -> Any:
    """The square root of positive ``x``, rounded to nearest everywhere (torch's CPU
    ``sqrt`` is off by one ulp for some inputs): of the library's root and its two
    neighbours, the one whose square is nearest ``x``."""
    y = xp.sqrt(x)
    if xp.__name__ == "numpy" or y.device.type != "cpu":
        return y  # numpy's and CUDA's sqrt are correctly rounded already
    down = xp.nextafter(y, xp.zeros_like(y))
    up = xp.nextafter(y, y * 2.0)
    r, r_down, r_up = (xp.abs(_square_residual(x, c)) for c in (y, down, up))
    best = xp.where(r_down < r, down, y)
    return xp.where(r_up < xp.minimum(r, r_down), up, best)


def ndtri(p: Any, xp: Any) -> Any:
    """The standard normal quantile of ``p`` in (0, 1)."""
    if xp is np:
        p = np.asarray(p)
        if p.dtype == np.float64:  # other dtypes keep their own precision below
            kern = kernels()
            return _ndtri_np(p) if kern is None else _compiled(kern.ndtri, p)
    q = p - 0.5
    r = 0.180625 - q * q
    central = q * _poly(_A, r) / _poly(_B, r)
    tail_p = xp.where(q < 0, p, 1.0 - p)
    tail_p = xp.where(xp.abs(q) <= 0.425, 0.5, tail_p)  # a harmless log in the center
    s = sqrt(-log(tail_p, xp), xp)
    near = s - 1.6
    tail = _poly(_C, near) / _poly(_D, near)
    # p < 1.4e-11 only (a device computes both rather than wait for the host to decide).
    far = s - 5.0
    tail = xp.where(s <= 5.0, tail, _poly(_E, far) / _poly(_F, far))
    tail = xp.where(q < 0, -tail, tail)
    return xp.where(xp.abs(q) <= 0.425, central, tail)


# The numpy path: the same IEEE-754 operations on every element, in the same order, so
# the same bits as above, in fewer numpy calls (a small batch costs its number of calls,
# not of elements): each branch runs only on the elements that take it, and a small
# batch evaluates its four polynomials as one Horner pass over their arguments laid
# end to end, each element with its own polynomial's coefficients.

_MERGED_MAX = 2048
"""Up to this many arguments in all, polynomials share one Horner pass; above it each has
its own (the calls no longer matter, and the coefficient rows would cost memory)."""


def _pack(*polys: tuple[float, ...]) -> tuple[tuple[tuple[float, ...], ...], np.ndarray]:
    """The polynomials, and their coefficients as rows (row i: the x**(7 - i) terms)."""
    return polys, np.array(polys).T[::-1].copy()


_ABCD, _AB, _CD = _pack(_A, _B, _C, _D), _pack(_A, _B), _pack(_C, _D)


def _polys(
    pack: tuple[tuple[tuple[float, ...], ...], np.ndarray], *xs: np.ndarray
) -> list[np.ndarray]:
    """``[_poly(c, x) for c, x in zip(polys, xs)]``: one pass over the arguments laid end
    to end, each with its own polynomial's coefficients, when they are few."""
    polys, rows = pack
    sizes = [x.size for x in xs]
    if sum(sizes) > _MERGED_MAX:
        return [_poly(c, x) for c, x in zip(polys, xs, strict=True)]
    x = np.concatenate(xs)
    c = np.repeat(rows, sizes, axis=1)
    out = c[0] * x
    out += c[1]
    for row in c[2:]:
        out *= x
        out += row
    parts, start = [], 0
    for size in sizes:
        parts.append(out[start : start + size])
        start += size
    return parts


def _log_np(x: np.ndarray) -> np.ndarray:
    m, e = np.frexp(x)
    small = m < _SQRT_HALF
    f = np.ldexp(m, small)  # m * 2 where small (exact)
    k = e.astype(np.float64)
    k -= small  # e - 1 where small (exact)
    f -= 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    g1, g2, g3, g4, g5, g6, g7 = _LG
    t1 = w * g6
    t1 += g4
    t1 *= w
    t1 += g2
    t1 *= w
    r = w * g7
    r += g5
    r *= w
    r += g3
    r *= w
    r += g1
    r *= z
    r += t1  # big_r = t2 + t1
    hfsq = 0.5 * f
    hfsq *= f
    r += hfsq
    r *= s
    r += k * _LN2_LO  # s * (hfsq + big_r) + k * _LN2_LO
    np.subtract(hfsq, r, out=hfsq)
    hfsq -= f
    k *= _LN2_HI
    k -= hfsq
    return k


_SCALAR_MAX = 24
"""Up to this many values, Python floats (the same operations, one value at a time) beat
the ~70 numpy calls of a batch."""


def _log_one(x: float) -> float:
    """:func:`_log_np` of one Python float."""
    m, e = math.frexp(x)
    k = float(e)
    if m < _SQRT_HALF:
        m *= 2.0
        k -= 1.0
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    g1, g2, g3, g4, g5, g6, g7 = _LG
    t1 = (((w * g6 + g4) * w) + g2) * w
    r = (((w * g7 + g5) * w + g3) * w + g1) * z
    r += t1
    hfsq = 0.5 * f * f
    r = (r + hfsq) * s + k * _LN2_LO
    return k * _LN2_HI - ((hfsq - r) - f)


def _ndtri_one(p: float) -> float:
    """:func:`_ndtri_np` of one Python float."""
    q = p - 0.5
    if not abs(q) > 0.425:
        r = 0.180625 - q * q
        return q * _poly(_A, r) / _poly(_B, r)
    s = math.sqrt(-_log_one(min(p, 1.0 - p)))
    if s > 5.0:
        tail = _poly(_E, s - 5.0) / _poly(_F, s - 5.0)
    else:
        tail = _poly(_C, s - 1.6) / _poly(_D, s - 1.6)
    return math.copysign(tail, q)


def _ndtri_np(p: np.ndarray) -> np.ndarray:
    shape = p.shape
    if p.size <= _SCALAR_MAX:
        return np.array([_ndtri_one(x) for x in p.ravel().tolist()]).reshape(shape)
    p = p.ravel()
    q = p - 0.5
    r = q * q
    np.subtract(0.180625, r, out=r)
    tails = np.flatnonzero(np.abs(q) > 0.425)
    s = near = p[:0]
    if tails.size:
        pt = p[tails]
        # where(q < 0, p, 1 - p) is the smaller of the two
        s = np.sqrt(np.negative(_log_np(np.minimum(pt, 1.0 - pt))))
        near = s - 1.6
    if 2 * (r.size + near.size) <= _MERGED_MAX:
        a, b, c, d = _polys(_ABCD, r, r, near, near)
    else:
        (a, b), (c, d) = _polys(_AB, r, r), _polys(_CD, near, near)
    out = q * a
    out /= b
    if tails.size:
        tail = c / d
        far = np.flatnonzero(s > 5.0)
        if far.size:
            f = s[far] - 5.0
            tail[far] = _poly(_E, f) / _poly(_F, f)
        # The tail quantile is positive: q gives its sign (where(q < 0, -tail, tail)).
        out[tails] = np.copysign(tail, q[tails])
    return out.reshape(shape)
