"""Input handling of the given-data estimators (private).

- :class:`_FactorTable`, :func:`_factor_table`: ``X`` (array or DataFrame) as
  per-factor float columns, categorical columns as codes; NaN and row mismatches
  refused.
- :func:`_refuse_constant`: refuses a constant outcome.
- :func:`_outcome_notes`: the note added for a binary outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from varirec.analysis.estimators._checks import (
    _check_factor_names,
    _check_numeric,
    _refuse_nonfinite,
)

__all__ = ["_MIN_ROWS", "_FactorTable", "_factor_table", "_outcome_notes", "_refuse_constant"]

_MIN_ROWS = 10


@dataclass(frozen=True)
class _FactorTable:
    names: tuple[str, ...]
    values: list[NDArray[np.float64]]
    """One float array per factor (category codes for categorical factors)."""
    categorical: list[bool]


def _factor_table(
    X: ArrayLike | pd.DataFrame,
    factor_names: Sequence[str] | None,
    num_rows: int,
    numeric_only: str | None = None,
) -> _FactorTable:
    """Normalize ``X`` to per-factor float columns; refuse NaN and row mismatches."""
    if isinstance(X, pd.DataFrame):
        names = _check_factor_names(
            [str(c) for c in X.columns] if factor_names is None else factor_names, X.shape[1]
        )
        values, categorical = [], []
        for name, column in zip(names, (X.iloc[:, j] for j in range(X.shape[1])), strict=True):
            is_numeric = pd.api.types.is_bool_dtype(column) or (
                pd.api.types.is_numeric_dtype(column)
            )
            if is_numeric:
                values.append(column.to_numpy(dtype=np.float64, na_value=np.nan))
                categorical.append(False)
            else:
                if numeric_only is not None:
                    raise TypeError(
                        f"`X` column {name!r} must be numeric for {numeric_only}, got dtype "
                        f'{column.dtype}; use method="binning", which bins categories'
                    )
                codes, _ = pd.factorize(column, use_na_sentinel=True)
                values.append(np.where(codes < 0, np.nan, codes).astype(np.float64))
                categorical.append(True)
        shape = X.shape
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(
                f"`X` must be 2-D (rows × factors), got shape {arr.shape}; "
                "pass one column per factor"
            )
        floats = _check_numeric(arr, "`X`", "pass a DataFrame to use categorical columns")
        names = _check_factor_names(factor_names, arr.shape[1])
        values = list(floats.T.copy())  # one contiguous array per factor
        categorical = [False] * arr.shape[1]
        shape = arr.shape
    if shape[0] != num_rows:
        raise ValueError(
            f"`X` must have one row per value of `Y` ({num_rows}), got {shape[0]} rows; "
            "pass matching rows"
        )
    if shape[1] == 0:
        raise ValueError("`X` must have at least one factor column, got 0; pass the factors")
    if num_rows < _MIN_ROWS:
        raise ValueError(
            f"`Y` must have at least {_MIN_ROWS} rows for given-data indices, got "
            f"{num_rows}; record more episodes"
        )
    for name, col in zip(names, values, strict=True):
        _refuse_nonfinite(col, f"`X` column {name!r}")
    return _FactorTable(names=names, values=values, categorical=categorical)


def _refuse_constant(y: NDArray[np.float64]) -> None:
    if not np.ptp(y) > 0.0:
        raise ValueError(
            f"`Y` must vary, got the constant value {float(y[0]):g} in all {y.size} rows; "
            "sensitivity indices are undefined for a constant outcome"
        )


def _outcome_notes(y: NDArray[np.float64]) -> list[str]:
    if np.unique(y).size == 2:
        return [
            "binary outcome: episode noise caps what factors can explain, so a factor that "
            "matters may still get a small first-order index; read them beside noise_share."
        ]
    return []
