"""Discrete sampler cfgs: integers, weighted choices over any labels, bernoulli.

Each draws category codes from uniforms (the inverse CDF of its probabilities) and
maps them to its categories; :meth:`encode` goes back from values to codes, and
``labels`` are the categories as strings (the dataset's ``label`` column). As SALib
factors they are ``unif`` on (0, 1) floored into their categories.

>>> ChoiceCfg(choices=("kitchen", "garage"), weights=(0.75, 0.25)).probs
(0.75, 0.25)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from varirec.sampling.cfg_base import FactorSpec, SamplerCfg, _bad

__all__ = ["MAX_INTEGERS", "BernoulliCfg", "ChoiceCfg", "IntegerCfg"]


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


MAX_INTEGERS = 10_000
"""Most integers an :class:`IntegerCfg` spans: its categories are listed in the run's
spec (a range of 10**6 had written 42 MB of ``run.json``)."""


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
        if self.high - self.low >= MAX_INTEGERS:
            raise ValueError(
                f"{name}(low={self.low}, high={self.high}) spans {self.high - self.low + 1} "
                f"integers; an integer variation is categorical (every value is listed in "
                f"the run's spec and analysed as a level), so at most {MAX_INTEGERS}. For a "
                "wide range draw UniformCfg(low, high) and round it in your apply"
            )

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
        name = type(self).__name__
        for field in ("choices", "weights"):
            value = getattr(self, field)
            if isinstance(value, str | bytes):  # a string is a sequence of its letters
                fix = f"choices=({value!r},)" if field == "choices" else "one number per choice"
                raise ValueError(
                    f"{name}.{field} must be a sequence, got the string {value!r} (it would "
                    f"be split into its letters); pass {fix}"
                )
        object.__setattr__(self, "choices", tuple(self.choices))
        if self.weights is not None:
            try:
                weights = tuple(float(w) for w in self.weights)
            except (TypeError, ValueError):
                raise _bad(
                    name, "weights", self.weights, "a sequence of numbers, one per choice"
                ) from None
            object.__setattr__(self, "weights", weights)
        super().__post_init__()

    def _validate(self) -> None:
        super()._validate()
        name = type(self).__name__
        if not self.choices:
            raise _bad(name, "choices", self.choices, "a non-empty sequence; list the options")
        strs = [isinstance(c, str) for c in self.choices]
        nums = [isinstance(c, int | float | np.number) for c in self.choices]
        if not (all(strs) or all(nums)):
            raise _bad(name, "choices", self.choices, "all strings or all numbers")
        if all(nums) and not all(np.isfinite(float(c)) for c in self.choices):
            raise _bad(name, "choices", self.choices, "finite numbers (no NaN or inf)")
        if len(set(self.choices)) != len(self.choices):
            raise _bad(name, "choices", self.choices, "distinct; remove the repeated options")
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
        p = self.p
        if isinstance(p, bool) or not (isinstance(p, int | float) and 0.0 <= p <= 1.0):
            raise _bad(type(self).__name__, "p", p, "a probability in [0, 1] (e.g. p=0.5)")

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
