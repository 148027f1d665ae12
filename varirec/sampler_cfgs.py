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

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from scipy import special

if TYPE_CHECKING:
    from varirec.samplers import Sampler

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

Param = float | tuple[float, ...]
_KINDS: dict[str, type[SamplerCfg]] = {}


@dataclass(frozen=True)
class FactorSpec:
    """One input factor as SALib sees it.

    ``dist`` and ``params`` follow SALib's ``problem["dists"]`` / ``problem["bounds"]``
    (``unif``: low, high; ``logunif``: low, high; ``norm``: mean, sd; ``truncnorm``:
    low, high, mean, sd). Discrete factors are sampled on ``unif`` (0, 1) and mapped to
    ``categories`` through the cfg's :meth:`SamplerCfg.ppf`.
    """

    name: str
    dist: str
    params: tuple[float, ...]
    categories: tuple[Any, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _bad(cls: str, name: str, value: Any, want: str) -> ValueError:
    return ValueError(f"{cls}.{name} must be {want}, got {value!r}")


def _param(cls: str, name: str, value: Any) -> Param:
    """Normalize a scalar-or-vector parameter and check it is finite."""
    if isinstance(value, str):
        raise _bad(cls, name, value, "a number or a sequence of numbers")
    arr = np.asarray(value, dtype=float)
    if arr.ndim > 1 or arr.size == 0:
        raise _bad(cls, name, value, "a number or a non-empty 1-D sequence of numbers")
    if not np.all(np.isfinite(arr)):
        raise _bad(cls, name, value, "finite (no NaN or inf); give a finite bound")
    return float(arr) if arr.ndim == 0 else tuple(float(x) for x in arr)


def _width(cls: str, params: dict[str, Param]) -> int:
    """The common vector length of the parameters (1 when all are scalars)."""
    lengths = {k: len(v) for k, v in params.items() if isinstance(v, tuple)}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"{cls} vector parameters must have the same length, got lengths {lengths}; "
            "give one value per component (or a scalar to share it)"
        )
    return next(iter(lengths.values()), 1)


@dataclass(frozen=True, kw_only=True)
class SamplerCfg:
    """Base of every sampler cfg. Subclasses set ``kind`` and implement :meth:`ppf`."""

    kind: ClassVar[str] = ""
    categorical: ClassVar[bool] = False

    names: tuple[str, ...] | None = None
    """Component names of a vector sampler, e.g. ``("x", "y", "z")``; None for scalars
    (and ``("0", "1", ...)`` by default for vectors)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _KINDS[cls.kind] = cls

    def _vector_params(self) -> dict[str, Param]:
        return {}

    def __post_init__(self) -> None:
        name = type(self).__name__
        for key, value in self._vector_params().items():
            object.__setattr__(self, key, _param(name, key, value))
        width = _width(name, self._vector_params())
        if self.names is not None:
            names = (self.names,) if isinstance(self.names, str) else tuple(self.names)
            if any(not isinstance(n, str) or not n for n in names) or len(set(names)) != len(names):
                raise _bad(name, "names", self.names, "distinct non-empty strings")
            if width > 1 and len(names) != width:
                raise ValueError(
                    f"{name}.names has {len(names)} names but the parameters have {width} "
                    "components; give one name per component"
                )
            object.__setattr__(self, "names", names)
        self._validate()

    def _validate(self) -> None:
        """Subclass checks; raise ``ValueError`` naming the field and the fix."""

    @property
    def width(self) -> int:
        """Number of components (1 for a scalar sampler)."""
        return self._cached("width", self._width)

    def _width(self) -> int:
        if self.names is not None:
            return len(self.names)
        return _width(type(self).__name__, self._vector_params())

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one draw: ``()`` for scalars, ``(width,)`` for vectors."""
        return self._cached("shape", self._shape)

    def _shape(self) -> tuple[int, ...]:
        vector = self.names is not None or any(
            isinstance(v, tuple) for v in self._vector_params().values()
        )
        return (self.width,) if vector else ()

    @property
    def component_names(self) -> tuple[str, ...]:
        if self.names is not None:
            return self.names
        return tuple(str(i) for i in range(self.width)) if self.shape else ("",)

    def _columns(self, key: str) -> list[str]:
        return [key] if not self.shape else [f"{key}[{c}]" for c in self.component_names]

    def _cached(self, name: str, make: Any) -> Any:
        """A value derived from the (frozen) fields, computed once: draws stay cheap."""
        cache = self.__dict__.setdefault("_derived", {})
        if name not in cache:
            cache[name] = make()
        return cache[name]

    def _arrays(self, *keys: str) -> list[np.ndarray]:
        """Parameters as arrays broadcast to the component count (cached)."""
        return [
            self._cached(
                k, lambda k=k: np.broadcast_to(np.asarray(getattr(self, k), float), (self.width,))
            )
            for k in keys
        ]

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Values for uniforms ``u`` of shape ``(n, width)``; shape ``(n, *self.shape)``."""
        raise NotImplementedError

    def factor_specs(self, key: str) -> list[FactorSpec]:
        """This sampler as SALib factors, one per component."""
        raise NotImplementedError

    def build(self, seed: int | np.random.Generator | None = None) -> Sampler:
        """A fresh sampler for this cfg (``seed`` feeds its default, unkeyed source)."""
        from varirec.samplers import InverseCdfSampler

        return InverseCdfSampler(self, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable description; :func:`cfg_from_dict` rebuilds it."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def _shape_out(self, values: np.ndarray) -> np.ndarray:
        return values if self.shape else values.reshape(len(values))


def cfg_from_dict(data: dict[str, Any]) -> SamplerCfg:
    """Rebuild a sampler cfg from :meth:`SamplerCfg.to_dict` output.

    >>> cfg_from_dict(NormalCfg(mean=1.0, std=0.1).to_dict())
    NormalCfg(names=None, mean=1.0, std=0.1)
    """
    if not isinstance(data, dict) or "kind" not in data:
        raise ValueError(f"a sampler cfg dict needs a 'kind' key, got {data!r}")
    kind = data["kind"]
    if kind == "design":
        raise ValueError(
            "a design sampler is rebuilt from its run's design (the `design` entry of "
            "run.json), not from its summary dict"
        )
    if kind not in _KINDS:
        raise ValueError(f"unknown sampler kind {kind!r}; known kinds: {sorted(_KINDS)}")
    cls = _KINDS[kind]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known - {"kind"}
    if unknown:
        raise ValueError(
            f"{cls.__name__} has no field(s) {sorted(unknown)}; known: {sorted(known)}"
        )
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "kind"}
    return cls(**kwargs)


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

    def ppf(self, u: np.ndarray) -> np.ndarray:
        low, high = self._arrays("low", "high")
        return self._shape_out(low + (high - low) * u)

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
        lo, hi = (np.log(a) for a in self._arrays("low", "high"))
        return self._shape_out(np.exp(lo + (hi - lo) * u))

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
        mean, std = self._arrays("mean", "std")
        return self._shape_out(mean + std * special.ndtri(u))

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
        mean, std, low, high = self._arrays("mean", "std", "low", "high")
        lo_tail, hi_tail = self._tails()
        # Work in the lighter tail so bounds far from the mean keep their precision.
        upper = (low - mean) > 0
        p = np.where(
            upper, hi_tail + u * (1.0 - lo_tail - hi_tail), lo_tail + u * (1.0 - lo_tail - hi_tail)
        )
        z = np.where(upper, -special.ndtri(p), special.ndtri(p))
        return self._shape_out(np.clip(mean + std * z, low, high))

    def factor_specs(self, key: str) -> list[FactorSpec]:
        cols = self._columns(key)
        mean, std, low, high = self._arrays("mean", "std", "low", "high")
        return [
            FactorSpec(c, "truncnorm", (lo, hi, m, s))
            for c, m, s, lo, hi in zip(cols, mean, std, low, high, strict=True)
        ]


@dataclass(frozen=True, kw_only=True)
class _DiscreteCfg(SamplerCfg):
    """A scalar categorical sampler: codes ``0..K-1`` with probabilities ``probs``."""

    categorical: ClassVar[bool] = True

    @property
    def categories(self) -> tuple[Any, ...]:
        raise NotImplementedError

    @property
    def probs(self) -> tuple[float, ...]:
        return tuple(1.0 / len(self.categories) for _ in self.categories)

    @property
    def labels(self) -> tuple[str, ...]:
        """The categories as strings (the ``label`` column of the dataset)."""
        return tuple(str(c) for c in self.categories)

    def _validate(self) -> None:
        if self.names is not None and len(self.names) != 1:
            raise _bad(type(self).__name__, "names", self.names, "None: this sampler is scalar")

    def codes(self, u: np.ndarray) -> np.ndarray:
        """Category codes for uniforms ``u`` (any shape)."""
        edges = self._cached("edges", lambda: np.cumsum(self.probs)[:-1])
        return np.searchsorted(edges, u, side="right")

    def ppf(self, u: np.ndarray) -> np.ndarray:
        cats = self._cached("cats", lambda: np.asarray(self.categories))
        return cats[self.codes(u)].reshape(len(u))

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Category codes of drawn values (the inverse of the category lookup)."""
        cats = np.asarray(self.categories)
        order = np.argsort(cats, kind="stable")
        pos = np.searchsorted(cats, values, sorter=order)
        return order[np.clip(pos, 0, len(cats) - 1)]

    def factor_specs(self, key: str) -> list[FactorSpec]:
        return [FactorSpec(key, "unif", (0.0, 1.0), tuple(self.categories))]


@dataclass(frozen=True, kw_only=True)
class IntegerCfg(_DiscreteCfg):
    """Integers ``low..high`` inclusive, equally likely."""

    kind: ClassVar[str] = "integer"
    low: int = 0
    high: int = 1

    def _validate(self) -> None:
        super()._validate()
        name = type(self).__name__
        for f in ("low", "high"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise _bad(name, f, v, "an int")
        if self.low > self.high:
            raise _bad(name, "low", self.low, f"<= high ({self.high}); swap them")

    @property
    def categories(self) -> tuple[int, ...]:
        return tuple(range(self.low, self.high + 1))

    def codes(self, u: np.ndarray) -> np.ndarray:
        k = self.high - self.low + 1
        return np.minimum((u * k).astype(np.int64), k - 1)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return (self.codes(u) + self.low).reshape(len(u))

    def encode(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, np.int64) - self.low


@dataclass(frozen=True, kw_only=True)
class ChoiceCfg(_DiscreteCfg):
    """One of ``choices`` (all strings, or all numbers), with optional ``weights``.

    >>> ChoiceCfg(choices=("kitchen", "garage"), weights=(0.75, 0.25)).probs
    (0.75, 0.25)
    """

    kind: ClassVar[str] = "choice"
    choices: tuple[Any, ...] = ()
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        if self.weights is not None:
            object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        super().__post_init__()

    def _validate(self) -> None:
        super()._validate()
        name = type(self).__name__
        if not self.choices:
            raise _bad(name, "choices", self.choices, "a non-empty sequence; list the options")
        if len(set(self.choices)) != len(self.choices):
            raise _bad(name, "choices", self.choices, "distinct; remove the repeated options")
        strs = [isinstance(c, str) for c in self.choices]
        nums = [isinstance(c, int | float | np.number) for c in self.choices]
        if not (all(strs) or all(nums)):
            raise _bad(name, "choices", self.choices, "all strings or all numbers")
        if self.weights is None:
            return
        w = np.asarray(self.weights)
        if len(w) != len(self.choices):
            raise ValueError(
                f"{name}.weights has {len(w)} entries for {len(self.choices)} choices; "
                "give one weight per choice"
            )
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise _bad(name, "weights", self.weights, "finite and >= 0")
        if not math.isclose(float(w.sum()), 1.0, abs_tol=1e-9):
            raise _bad(
                name,
                "weights",
                self.weights,
                f"summing to 1 (they sum to {w.sum():.6g}); normalize them",
            )

    @property
    def categories(self) -> tuple[Any, ...]:
        return self.choices

    @property
    def probs(self) -> tuple[float, ...]:
        return self.weights if self.weights is not None else super().probs


@dataclass(frozen=True, kw_only=True)
class BernoulliCfg(_DiscreteCfg):
    """``True`` with probability ``p``."""

    kind: ClassVar[str] = "bernoulli"
    p: float = 0.5

    def _validate(self) -> None:
        super()._validate()
        if not (isinstance(self.p, int | float) and 0.0 <= self.p <= 1.0):
            raise _bad(type(self).__name__, "p", self.p, "a probability in [0, 1]")

    @property
    def categories(self) -> tuple[bool, bool]:
        return (False, True)

    @property
    def probs(self) -> tuple[float, float]:
        return (1.0 - self.p, float(self.p))

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return (u >= 1.0 - self.p).reshape(len(u))

    def encode(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, bool).astype(np.int64)


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
        values = np.array(self.values)
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
        if self.base is not None and self.values.shape[1:] != self.base.shape:
            raise ValueError(
                f"DesignCfg.values rows have shape {self.values.shape[1:]} but base "
                f"{type(self.base).__name__} draws shape {self.base.shape}; give matching rows"
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
        from varirec.samplers import DesignSampler

        return DesignSampler(self, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        base = None if self.base is None else self.base.to_dict()
        return {
            "kind": self.kind,
            "rows": len(self.values),
            "shape": list(self.shape),
            "base": base,
        }
