"""Argument checks shared by the estimators (private).

Each check returns the normalized value or raises a ``ValueError``/``TypeError``
whose message says what was expected, what was given and what to pass instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "_check_conf_level",
    "_check_count",
    "_check_factor_names",
    "_check_num_resamples",
    "_check_numeric",
    "_check_outcome",
    "_refuse_nonfinite",
]


def _check_conf_level(conf_level: float) -> float:
    # Below one half, the dummy threshold (the level's quantile of the null estimates)
    # falls below the null's median: every factor would read as an effect.
    if not isinstance(conf_level, float | int) or not 0.5 <= float(conf_level) < 1.0:
        raise ValueError(
            f"`conf_level` must be a number from 0.5 up to (not including) 1, got "
            f"{conf_level!r}; pass e.g. conf_level=0.95"
        )
    return float(conf_level)


def _check_count(value: int, name: str, minimum: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}; {hint}")
    return int(value)


def _check_num_resamples(num_resamples: int) -> int:
    value = _check_count(num_resamples, "num_resamples", 0, "pass 0 for no intervals or e.g. 1000")
    if value == 1:
        raise ValueError(
            "`num_resamples` must be 0 (no intervals) or at least 2, got 1; pass e.g. 1000"
        )
    if value > MAX_RESAMPLES:  # a bootstrap's (resamples x episodes) would not fit
        raise ValueError(
            f"`num_resamples` must be at most {MAX_RESAMPLES:,}, got {value:,}; 1000 gives "
            "95 % intervals to about a tenth of their width"
        )
    return value


MAX_RESAMPLES = 1_000_000
"""The most bootstrap resamples an estimator takes."""


def _check_numeric(arr: NDArray[np.generic], label: str, hint: str) -> NDArray[np.float64]:
    """``arr`` as float64; a non-numeric (non-bool) dtype refused with ``hint``."""
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{label} must be numeric, got dtype {arr.dtype}; {hint}")
    return arr.astype(np.float64)


def _refuse_nonfinite(values: NDArray[np.float64], label: str) -> None:
    """Refuse NaN/inf in ``values`` (1-D, or 2-D by row), naming the first rows."""
    finite = np.isfinite(values)
    if finite.ndim > 1:
        finite = finite.all(axis=tuple(range(1, finite.ndim)))
    bad = np.flatnonzero(~finite)
    if bad.size:
        first = ", ".join(str(i) for i in bad[:10])
        more = ", ..." if bad.size > 10 else ""
        raise ValueError(
            f"{label} must be finite, got {bad.size} NaN/inf value(s) at rows [{first}{more}]; "
            "drop or re-run those rows (SALib would silently return zeros)"
        )


def _check_outcome(Y: ArrayLike, name: str = "Y") -> NDArray[np.float64]:
    """``Y`` as a 1-D float array; NaN/inf refused with the first offending rows."""
    arr = np.asarray(Y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"`{name}` must be a 1-D array with one value per row, got shape {arr.shape}; "
            "analyse one outcome at a time"
        )
    values = _check_numeric(arr, f"`{name}`", "encode the outcome as numbers")
    _refuse_nonfinite(values, f"`{name}`")
    return values


def _check_factor_names(factor_names: Sequence[str] | None, num_factors: int) -> tuple[str, ...]:
    if factor_names is None:
        return tuple(f"x{j + 1}" for j in range(num_factors))
    if isinstance(factor_names, str):
        raise TypeError(
            f"`factor_names` must be a sequence of strings, got the string {factor_names!r}; "
            "pass a list such as ['mass', 'friction']"
        )
    names = tuple(str(n) for n in factor_names)
    if len(names) != num_factors:
        raise ValueError(
            f"`factor_names` must have {num_factors} names (one per factor), got {len(names)}; "
            "pass one name per column"
        )
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"`factor_names` must be unique, got duplicates {dupes}; rename them")
    return names
