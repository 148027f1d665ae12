"""Inputs shared by the failure analysis (private): the factor frame, the 0/1 outcome,
equal-frequency bins and Beta (Jeffreys) intervals of a success rate.

- :class:`Factors`: factor values as floats (categories as their codes) with labels.
- :func:`binary_outcome`: the outcome as 0/1, refused with its cause otherwise.
- :func:`bin_codes`: equal-frequency bins of one factor (few levels: one bin each).
- :func:`rate_interval`: the Jeffreys interval of ``k`` successes in ``n``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

# As every estimator's: from 0.5 up to 1 (below one half the rule's one-sided bound turns
# negative, and noise would pass as a region).
from varirec.analysis.estimators._checks import _check_conf_level as check_conf_level

__all__ = ["Factors", "bin_codes", "binary_outcome", "check_conf_level", "rate_interval"]


@dataclass(frozen=True)
class Factors:
    """Factor values of ``N`` episodes.

    Attributes:
        names: factor names, in column order.
        values: ``(N, D)`` floats; a categorical factor holds its category codes.
        labels: per categorical factor, its labels in code order.
    """

    names: list[str]
    values: NDArray[np.float64]
    labels: dict[str, list[str]]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, names: Sequence[str]) -> Factors:
        """Numeric columns as floats; categorical, object, bool-free string columns as codes."""
        cols, labels = [], {}
        for name in names:
            col = frame[name]
            if isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object:
                cat = col if isinstance(col.dtype, pd.CategoricalDtype) else col.astype("category")
                labels[name] = [str(c) for c in cat.cat.categories]
                codes = cat.cat.codes.to_numpy(float)
                cols.append(np.where(codes < 0, np.nan, codes))
            else:
                cols.append(pd.to_numeric(col, errors="coerce").to_numpy(float))
        values = np.column_stack(cols) if cols else np.empty((len(frame), 0))
        return cls(list(names), values, labels)

    def take(self, rows: NDArray[np.bool_] | NDArray[np.int_]) -> Factors:
        """The same factors on a subset of the episodes."""
        return Factors(self.names, self.values[rows], self.labels)

    def describe(self, name: str, value: float) -> str:
        """A value of factor ``name`` in words (a category's label, else 4 digits)."""
        if name in self.labels:
            return self.labels[name][int(value)]
        return f"{value:.4g}"


def binary_outcome(y: NDArray[np.float64], name: str, threshold: float | None) -> NDArray[np.bool_]:
    """Success as booleans: the outcome itself when it is 0/1, else ``y >= threshold``;
    refused where every episode is a success or every one a failure (nothing to tell
    apart: a threshold outside the outcome's range does this)."""
    if threshold is not None:
        success = y >= threshold
    else:
        values = np.unique(y)
        if not np.isin(values, (0.0, 1.0)).all():
            raise ValueError(
                f"outcome {name!r} must be 0/1 (success) for a failure analysis, got values "
                f"such as {values[~np.isin(values, (0.0, 1.0))][:3].tolist()}; pick the success "
                "outcome or give `threshold` (success = outcome >= threshold)"
            )
        success = y == 1.0
    if len(y) and (success.all() or not success.any()):
        what = "a success" if success.all() else "a failure"
        if threshold is None:
            raise ValueError(
                f"every one of the {len(y)} episodes is {what} ({name!r}): a failure analysis "
                "needs failures and successes; record more episodes, or analyse another outcome "
                "with a threshold"
            )
        fix = (
            "leave the threshold out: it is already 0/1"
            if np.isin(y, (0.0, 1.0)).all()
            else f"give a threshold inside it, e.g. its median {np.median(y):.4g} "
            "(success = outcome >= threshold)"
        )
        raise ValueError(
            f"with threshold={threshold:g} every one of the {len(y)} episodes is {what}: "
            f"{name!r} ranges over [{np.min(y):.4g}, {np.max(y):.4g}]; {fix}"
        )
    return success


def check_threshold(threshold: Any) -> float | None:
    """``threshold`` checked: None (a 0/1 outcome), or a finite number."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(
            f"`threshold` must be a number, got {threshold!r} ({type(threshold).__name__}); "
            "e.g. threshold=0.5 (success = outcome >= threshold)"
        )
    if not math.isfinite(threshold):
        raise ValueError(
            f"`threshold` must be a finite number, got {threshold!r}: every episode would be "
            "a failure or every one a success; give a value inside the outcome's range, e.g. "
            "its median (success = outcome >= threshold)"
        )
    return float(threshold)


Bins = tuple[NDArray[np.int_], NDArray[np.float64]]


def bin_codes(x: NDArray[np.float64], num_bins: int) -> Bins:
    """Equal-frequency bins of ``x``: ``(codes, edges)``; at most ``num_bins`` distinct
    values give one bin per value (edges are then the values themselves).

    Ties stay in one bin, so a bin may hold more than ``N / num_bins`` episodes.

    >>> codes, edges = bin_codes(np.arange(10.0), 2)
    >>> codes.tolist(), edges.tolist()
    ([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], [0.0, 4.5, 9.0])
    """
    distinct = np.unique(x)
    if distinct.size <= num_bins:
        return np.searchsorted(distinct, x), distinct
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, num_bins + 1)))
    codes = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
    return codes, edges


def rate_interval(
    successes: NDArray[np.float64] | float, n: NDArray[np.float64] | float, conf_level: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The Jeffreys (Beta(k + ½, n - k + ½)) interval of a success rate, vectorized.

    Brown, Cai & DasGupta (2001), *Interval estimation for a binomial proportion*,
    Statistical Science 16(2), doi:10.1214/ss/1009213286. The bound is 0 (1) when no
    episode failed (succeeded), as they recommend; no episodes give NaN.

    >>> low, high = rate_interval(81, 100, 0.95)
    >>> round(float(low), 3), round(float(high), 3)
    (0.725, 0.877)
    """
    k = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    alpha = 1.0 - conf_level
    with np.errstate(invalid="ignore", divide="ignore"):
        low = stats.beta.ppf(alpha / 2, k + 0.5, n - k + 0.5)
        high = stats.beta.ppf(1 - alpha / 2, k + 0.5, n - k + 0.5)
    low = np.where(k <= 0, 0.0, low)
    high = np.where(k >= n, 1.0, high)
    empty = n <= 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)
