"""Row and JSON helpers of the result ``to_frame()``/``to_dict()`` methods (private).

- :func:`_row`: one tidy-frame row as a dict.
- :func:`_or_nan`: an optional array, or NaN of the same shape.
- :func:`_jsonable`: a value ``json.dumps`` accepts (arrays to lists, NaN to ``None``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["_jsonable", "_or_nan", "_row"]


def _row(
    factor: str,
    index: str,
    estimate: float,
    low: float,
    high: float,
    conf: float,
    factor_a: str,
    factor_b: str | None,
) -> dict[str, Any]:
    return {
        "factor": factor,
        "index": index,
        "estimate": float(estimate),
        "conf_low": float(low),
        "conf_high": float(high),
        "conf": float(conf),
        "factor_a": factor_a,
        "factor_b": factor_b,
    }


def _or_nan(values: NDArray[np.float64] | None, like: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.full_like(like, np.nan) if values is None else values


def _jsonable(value: Any) -> Any:
    """Plain Python value for ``json.dumps``: arrays to lists, NaN to ``None``."""
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
