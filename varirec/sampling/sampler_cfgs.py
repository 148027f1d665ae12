"""Sampler configurations: frozen, validated, serializable, and self-describing for SALib.

Each cfg knows how to turn uniforms in (0, 1) into values (:meth:`SamplerCfg.ppf`, an
inverse CDF), what it is as a SALib factor (:meth:`SamplerCfg.factor_specs`) and how
to round-trip through JSON (:meth:`SamplerCfg.to_dict`, :func:`cfg_from_dict`).

- Continuous: :class:`UniformCfg`, :class:`LogUniformCfg`, :class:`NormalCfg`,
  :class:`TruncNormalCfg` — scalar or vector (one value per component name).
- Discrete: :class:`IntegerCfg`, :class:`ChoiceCfg` (weighted, any labels),
  :class:`BernoulliCfg`.
- :class:`ConstantCfg`, and :class:`DesignCfg` which replays given rows.

Bad values raise ``ValueError`` at construction, naming the field and the fix.

>>> cfg = UniformCfg(low=0.5, high=2.0)
>>> cfg.build(seed=0).sample(3).shape
(3,)
>>> cfg.factor_specs("cube.mass")[0].dist
'unif'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy import special

from varirec.sampling import portable
from varirec.sampling.accel import kernels
from varirec.sampling.cfg_base import FactorSpec, Param, SamplerCfg, _bad, cfg_from_dict
from varirec.sampling.discrete_cfgs import BernoulliCfg, ChoiceCfg, IntegerCfg
from varirec.sampling.samplers import DesignSampler, Sampler

__all__ = [
    "BernoulliCfg",
    "ChoiceCfg",
    "ConstantCfg",
    "DesignCfg",
    "FactorSpec",
    "IntegerCfg",
    "LogUniformCfg",
    "NormalCfg",
    "SamplerCfg",
    "TruncNormalCfg",
    "UniformCfg",
    "cfg_from_dict",
]


@dataclass(frozen=True, kw_only=True)
class UniformCfg(SamplerCfg):
    """Uniform on ``[low, high]``; vector when ``low``/``high`` are sequences.

    >>> UniformCfg(low=(0, 0, 0), high=(1, 2, 3), names=("x", "y", "z")).shape
    (3,)
    """

    kind: ClassVar[str] = "uniform"
    low: Param = 0.0
    high: Param = 1.0

    def _vector_params(self) -> dict[str, Param]:
        return {"low": self.low, "high": self.high}

    def _validate(self) -> None:
        low, high = self._arrays("low", "high")
        if np.any(low > high):
            raise _bad(type(self).__name__, "low", self.low, f"<= high ({self.high}); swap them")
        with np.errstate(over="ignore"):
            wide = not np.isfinite(high - low).all()
        if wide:  # every draw would be inf
            raise _bad(
                type(self).__name__, "high", self.high,
                f"within a finite float64 span of low ({self.low}); narrow the range",
            )  # fmt: skip

    def ppf(self, u: np.ndarray) -> np.ndarray:
        low, span = self._cached("affine", self._affine)
        out = u * span
        out += low  # low + (high - low) * u, in the same rounding
        return self._shape_out(out)

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        low, high = self._arrays("low", "high")
        return low, high - low

    def factor_specs(self, key: str) -> list[FactorSpec]:
        low, high = self._arrays("low", "high")
        return [
            FactorSpec(c, "unif", (a, b))
            for c, a, b in zip(self._columns(key), low, high, strict=True)
        ]


@dataclass(frozen=True, kw_only=True)
class LogUniformCfg(SamplerCfg):
    """Log-uniform on ``[low, high]`` (``0 < low <= high``): uniform in ``log``."""

    kind: ClassVar[str] = "loguniform"
    low: Param = 1e-3
    high: Param = 1.0

    def _vector_params(self) -> dict[str, Param]:
        return {"low": self.low, "high": self.high}

    def _validate(self) -> None:
        low, high = self._arrays("low", "high")
        name = type(self).__name__
        if np.any(low <= 0):
            raise _bad(name, "low", self.low, "> 0 (a log scale has no zero); use UniformCfg")
        if np.any(low > high):
            raise _bad(name, "low", self.low, f"<= high ({self.high}); swap them")

    def ppf(self, u: np.ndarray) -> np.ndarray:
        lo, span = self._cached("affine", self._affine)
        return self._shape_out(portable.exp(lo + span * u, np))

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``log(low)`` and ``log(high) - log(low)``: the uniform in log space."""
        lo, hi = (np.log(a) for a in self._arrays("low", "high"))
        return lo, hi - lo

    def factor_specs(self, key: str) -> list[FactorSpec]:
        low, high = self._arrays("low", "high")
        return [
            FactorSpec(c, "logunif", (a, b))
            for c, a, b in zip(self._columns(key), low, high, strict=True)
        ]


@dataclass(frozen=True, kw_only=True)
class NormalCfg(SamplerCfg):
    """Normal with ``mean`` and standard deviation ``std > 0``."""

    kind: ClassVar[str] = "normal"
    mean: Param = 0.0
    std: Param = 1.0

    def _vector_params(self) -> dict[str, Param]:
        return {"mean": self.mean, "std": self.std}

    def _validate(self) -> None:
        (std,) = self._arrays("std")
        if np.any(std <= 0):
            raise _bad(type(self).__name__, "std", self.std, "> 0; use ConstantCfg for no spread")

    def ppf(self, u: np.ndarray) -> np.ndarray:
        fused = _gauss_compiled(self, u)
        if fused is not None:
            return fused
        mean, std = self._arrays("mean", "std")
        out = portable.ndtri(u, np)
        out *= std
        out += mean  # mean + std * z, in the same rounding
        return self._shape_out(out)

    def factor_specs(self, key: str) -> list[FactorSpec]:
        mean, std = self._arrays("mean", "std")
        return [
            FactorSpec(c, "norm", (m, s))
            for c, m, s in zip(self._columns(key), mean, std, strict=True)
        ]


@dataclass(frozen=True, kw_only=True)
class TruncNormalCfg(SamplerCfg):
    """Normal(``mean``, ``std``) truncated to ``[low, high]``."""

    kind: ClassVar[str] = "truncnormal"
    mean: Param = 0.0
    std: Param = 1.0
    low: Param = -2.0
    high: Param = 2.0

    def _vector_params(self) -> dict[str, Param]:
        return {"mean": self.mean, "std": self.std, "low": self.low, "high": self.high}

    def _validate(self) -> None:
        std, low, high = self._arrays("std", "low", "high")
        name = type(self).__name__
        if np.any(std <= 0):
            raise _bad(name, "std", self.std, "> 0; use ConstantCfg for no spread")
        if np.any(low >= high):
            raise _bad(name, "low", self.low, f"< high ({self.high}); swap them")
        lo_tail, hi_tail = self._tails()
        if np.any(1.0 - lo_tail - hi_tail <= 0):
            raise ValueError(
                f"{name}: [low, high] = [{self.low}, {self.high}] holds no probability mass of "
                f"Normal({self.mean}, {self.std}); move the bounds towards the mean"
            )

    def _tails(self) -> tuple[np.ndarray, np.ndarray]:
        def make() -> tuple[np.ndarray, np.ndarray]:
            mean, std, low, high = self._arrays("mean", "std", "low", "high")
            return special.ndtr((low - mean) / std), special.ndtr(-(high - mean) / std)

        return self._cached("tails", make)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        fused = _gauss_compiled(self, u)
        if fused is not None:
            return fused
        return self._shape_out(gauss_values(u, _gauss_of(self), np))

    def factor_specs(self, key: str) -> list[FactorSpec]:
        cols = self._columns(key)
        mean, std, low, high = self._arrays("mean", "std", "low", "high")
        return [
            FactorSpec(c, "truncnorm", (lo, hi, m, s))
            for c, m, s, lo, hi in zip(cols, mean, std, low, high, strict=True)
        ]


GAUSS_PARAMS = ("mean", "std", "low", "high", "upper", "lo_tail", "hi_tail", "mass", "plain")
"""The per-component parameters of :func:`gauss_params`, in the compiled kernel's order."""


def gauss_form(params: dict[str, np.ndarray]) -> np.ndarray:
    """:func:`gauss_params` as the rows of one float array (the compiled kernel's form)."""
    return np.array([np.asarray(params[n], float) for n in GAUSS_PARAMS])


def gauss_params(cfg: NormalCfg | TruncNormalCfg) -> dict[str, np.ndarray]:
    """A normal or truncated normal cfg as one form (fresh float and bool arrays, one
    entry per component): the quantile ``q`` of ``u`` is ``u`` where ``plain``, else
    ``hi_tail + u * mass`` where ``upper`` (drawn in the upper tail and negated), else
    ``lo_tail + u * mass``; the value is ``mean + std * z``, clipped to ``[low, high]``
    unless ``plain``. The truncated normal's ppf, in these words."""
    if isinstance(cfg, NormalCfg):  # a subclass too: it has no bounds
        mean, std = (np.array(a, float) for a in cfg._arrays("mean", "std"))
        z, one = np.zeros_like(mean), np.ones_like(mean)
        return {
            "mean": mean, "std": std, "low": z, "high": z, "upper": z > 0,
            "lo_tail": z, "hi_tail": z, "mass": one, "plain": one > 0,
        }  # fmt: skip
    mean, std, low, high = (np.array(a, float) for a in cfg._arrays("mean", "std", "low", "high"))
    lo_tail, hi_tail = (np.array(a, float) for a in cfg._tails())
    return {
        "mean": mean, "std": std, "low": low, "high": high,
        "upper": (low - mean) > 0, "lo_tail": lo_tail, "hi_tail": hi_tail,
        "mass": 1.0 - lo_tail - hi_tail, "plain": low < low,
    }  # fmt: skip


def _gauss_of(cfg: NormalCfg | TruncNormalCfg) -> dict[str, np.ndarray]:
    """:func:`gauss_params` of ``cfg``, computed once."""
    return cfg._cached("gauss", lambda: gauss_params(cfg))


def gauss_values(u: Any, p: dict[str, Any], xp: Any) -> Any:
    """The values of uniforms ``u`` (numpy or torch) under :func:`gauss_params` ``p``
    (arrays of xp): the reference that the compiled ``gauss_columns`` matches bit for bit."""
    # Work in the lighter tail so bounds far from the mean keep their precision.
    q = xp.where(p["upper"], p["hi_tail"] + u * p["mass"], p["lo_tail"] + u * p["mass"])
    q = xp.where(p["plain"], u, q)
    z = portable.ndtri(q, xp)
    z = xp.where(p["upper"], -z, z)
    y = p["mean"] + p["std"] * z
    return xp.where(p["plain"], y, xp.minimum(xp.maximum(y, p["low"]), p["high"]))


_F64 = np.dtype(np.float64)


def _gauss_compiled(cfg: NormalCfg | TruncNormalCfg, u: np.ndarray) -> np.ndarray | None:
    """The ppf in one compiled call (the numpy path's bits), or None: then numpy."""
    kern = kernels()
    if kern is None or type(u) is not np.ndarray or u.dtype is not _F64 or u.ndim != 2:
        return None
    derived = cfg.__dict__.get("_derived")  # the cached form and shape: no call per draw
    try:
        form, vector = derived["gauss_form"], derived["shape"]
    except (KeyError, TypeError):
        form = cfg._cached("gauss_form", lambda: gauss_form(_gauss_of(cfg)))
        vector = cfg.shape
    out = np.empty(u.size)  # flat: a scalar cfg's values need no reshape
    kern.gauss_flat(u, form, out)
    return out.reshape(u.shape) if vector else out


@dataclass(frozen=True, kw_only=True)
class ConstantCfg(SamplerCfg):
    """Always ``value`` (scalar or vector). Not a factor: it has nothing to vary."""

    kind: ClassVar[str] = "constant"
    value: Param = 0.0

    def _vector_params(self) -> dict[str, Param]:
        return {"value": self.value}

    def ppf(self, u: np.ndarray) -> np.ndarray:
        (value,) = self._arrays("value")
        return self._shape_out(np.broadcast_to(value, u.shape).copy())

    def factor_specs(self, key: str) -> list[FactorSpec]:
        return []


@dataclass(frozen=True, kw_only=True, eq=False)
class DesignCfg(SamplerCfg):
    """Replays ``values`` (shape ``(rows, *shape)``) by design row (``sample_id``).

    The row of each draw comes from the draw context's ``sample_ids``; without them
    rows are handed out in order, cycling. ``base`` is the cfg the design was built
    from: it gives the factor specs and the category labels.

    >>> d = DesignCfg(values=np.array([1.0, 2.0, 3.0]), base=UniformCfg(low=0, high=4))
    >>> d.build().sample(4).tolist()
    [1.0, 2.0, 3.0, 1.0]
    """

    kind: ClassVar[str] = "design"
    values: np.ndarray = field(default_factory=lambda: np.empty(0))
    base: SamplerCfg | None = None

    def __post_init__(self) -> None:
        try:
            values = np.array(self.values)
        except ValueError as exc:  # ragged rows
            raise ValueError(
                f"DesignCfg.values must be rows of one shape, got {type(self.values).__name__} "
                f"that numpy cannot make an array of ({exc}); give one row per design point"
            ) from None
        values.setflags(write=False)
        object.__setattr__(self, "values", values)
        if self.base is not None and not isinstance(self.base, SamplerCfg):
            raise _bad("DesignCfg", "base", self.base, "a SamplerCfg or None")
        if self.base is not None and self.names is None and self.base.names is not None:
            object.__setattr__(self, "names", self.base.names)
        super().__post_init__()

    def _validate(self) -> None:
        if len(self.values) == 0:
            raise _bad("DesignCfg", "values", self.values, "at least one row")
        if self.values.dtype.kind in "fc" and not np.isfinite(self.values).all():
            rows = np.flatnonzero(~np.isfinite(self.values).reshape(len(self.values), -1).all(1))
            raise ValueError(
                f"DesignCfg.values must be finite, got NaN or inf in row(s) {rows[:5].tolist()} "
                "of the design; fill them, or drop those rows"
            )
        if self.base is not None and self.values.shape[1:] != self.base.shape:
            raise ValueError(
                f"DesignCfg.values rows have shape {self.values.shape[1:]} but base "
                f"{type(self.base).__name__} draws shape {self.base.shape}; give matching rows"
            )
        if self.base is None and self.values.ndim > 2:
            raise _bad("DesignCfg", "values", self.values.shape, "1-d or 2-d (rows, components)")
        self._check_in_base()

    def _check_in_base(self) -> None:
        """Every value one the base could draw (its choices; within its bounds): a design
        row outside it would be recorded with a label or range it does not have."""
        base, v = self.base, self.values
        numeric = v.dtype.kind in "biuf"
        if isinstance(base, ChoiceCfg):
            choices = np.asarray(base.choices)
            same_kind = numeric == (choices.dtype.kind in "biuf")
            bad = np.ones(v.shape, bool) if not same_kind else ~np.isin(v, choices)
            want = f"one of the base's choices {list(base.choices)[:8]}"
        elif not numeric:
            bad, want = np.ones(v.shape, bool), "numbers"
        elif isinstance(base, BernoulliCfg):
            bad, want = ~np.isin(v, (0, 1)), "0 or 1 (False or True), as the base draws"
        elif isinstance(base, IntegerCfg | UniformCfg | LogUniformCfg | TruncNormalCfg):
            low, high = (
                np.broadcast_to(np.asarray(x, float), base.shape) for x in (base.low, base.high)
            )
            tol = 1e-9 * np.maximum(1.0, np.abs(high - low))  # an inverse CDF's last ulp
            bad = (v < low - tol) | (v > high + tol)
            want = "within the base's [low, high]"
            if isinstance(base, IntegerCfg):
                bad |= v != np.round(v)
                want += " and integers"
        else:
            return
        if bad.any():
            rows = np.flatnonzero(bad.reshape(len(v), -1).any(1))
            raise ValueError(
                f"DesignCfg.values must be {want}, got {v[rows[0]].tolist()!r} in row(s) "
                f"{rows[:5].tolist()} (base {type(base).__name__ if base else None}); give the "
                "values the base distribution draws"
            )

    @property
    def categorical(self) -> bool:  # type: ignore[override]
        return self.base is not None and self.base.categorical

    @property
    def width(self) -> int:
        return int(np.prod(self.values.shape[1:], dtype=int))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape[1:])

    @property
    def labels(self) -> tuple[str, ...]:
        return self.base.labels if self.base is not None else ()  # type: ignore[attr-defined]

    def encode(self, values: np.ndarray) -> np.ndarray:
        return self.base.encode(values)  # type: ignore[union-attr]

    def factor_specs(self, key: str) -> list[FactorSpec]:
        return self.base.factor_specs(key) if self.base is not None else []

    def build(self, seed: int | np.random.Generator | None = None) -> Sampler:
        return DesignSampler(self, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        base = None if self.base is None else self.base.to_dict()
        return {
            "kind": self.kind,
            "rows": len(self.values),
            "shape": list(self.shape),
            "base": base,
        }
