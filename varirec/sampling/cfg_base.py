"""The base of every sampler cfg: validation helpers, SALib factor specs, the kind registry.

- :class:`SamplerCfg` — frozen, validated, serializable; subclasses give the inverse
  CDF (:meth:`SamplerCfg.ppf`) and the SALib description
  (:meth:`SamplerCfg.factor_specs`).
- :class:`FactorSpec` — one input factor as SALib sees it.
- :func:`cfg_from_dict` — rebuild a cfg from :meth:`SamplerCfg.to_dict` by its kind.

The concrete cfgs live in :mod:`varirec.sampling.sampler_cfgs` (continuous, constant, design)
and :mod:`varirec.sampling.discrete_cfgs` (integer, choice, bernoulli).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from varirec.sampling.samplers import InverseCdfSampler, Sampler

__all__ = ["FactorSpec", "Param", "SamplerCfg", "cfg_from_dict"]

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

    @property
    def bounds(self) -> tuple[float, float] | None:
        """``(low, high)`` of a continuous factor whose quantiles 0 and 1 are its range's
        ends (``unif``, ``logunif``), else None (infinite ends, or a discrete factor)."""
        if self.dist in ("unif", "logunif") and self.categories is None:
            return float(self.params[0]), float(self.params[1])
        return None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _bad(cls: str, name: str, value: Any, want: str) -> ValueError:
    return ValueError(f"{cls}.{name} must be {want}, got {value!r}")


def _param(cls: str, name: str, value: Any) -> Param:
    """Normalize a scalar-or-vector parameter and check it is finite."""
    if isinstance(value, str):
        raise _bad(cls, name, value, "a number or a sequence of numbers")
    items = value if isinstance(value, list | tuple) else (value,)
    if any(isinstance(v, bool | np.bool_) for v in items):  # True would pass as 1.0
        raise _bad(cls, name, value, "a number, not a bool; give the value itself (e.g. 1.0)")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):  # a complex number, an object, a ragged list
        raise _bad(cls, name, value, "a real number or a sequence of real numbers") from None
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

    def _cached(self, name: Any, make: Any) -> Any:
        """A value derived from the (frozen) fields, computed once: draws stay cheap."""
        try:
            return self.__dict__["_derived"][name]
        except KeyError:
            cache = self.__dict__.setdefault("_derived", {})
            value = cache[name] = make()
            return value

    def _arrays(self, *keys: str) -> list[np.ndarray]:
        """Parameters as arrays broadcast to the component count (cached)."""
        try:
            return self.__dict__["_derived"][keys]
        except KeyError:
            arrays = [
                np.broadcast_to(np.asarray(getattr(self, k), float), (self.width,)) for k in keys
            ]
            return self._cached(keys, lambda: arrays)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Values for uniforms ``u`` of shape ``(n, width)``; shape ``(n, *self.shape)``."""
        raise NotImplementedError

    def factor_specs(self, key: str) -> list[FactorSpec]:
        """This sampler as SALib factors, one per component."""
        raise NotImplementedError

    def build(self, seed: int | np.random.Generator | None = None) -> Sampler:
        """A fresh sampler for this cfg (``seed`` feeds its default, unkeyed source)."""
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

    >>> from varirec.sampling.sampler_cfgs import NormalCfg
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
