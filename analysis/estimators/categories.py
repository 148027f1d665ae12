"""Per-category effects of categorical factors: the outcome's mean in each category.

- :func:`category_effects`: for each categorical (or few-level) factor and each of its
  labels, the number of rows, the outcome's mean with a confidence interval (Wilson
  for a binary outcome, Student's ``t`` otherwise) and its difference from the
  overall mean. Labels are the recorded labels, never codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import norm
from scipy.stats import t as t_dist

from varirec.analysis.estimators._checks import _check_conf_level, _check_outcome

__all__ = ["CATEGORY_COLUMNS", "category_effects"]

CATEGORY_COLUMNS: tuple[str, ...] = (
    "factor",
    "category",
    "n",
    "mean",
    "conf_low",
    "conf_high",
    "difference",
)
"""Columns of :func:`category_effects`' frame, in order."""


def category_effects(
    X: pd.DataFrame,
    Y: ArrayLike,
    *,
    factors: Sequence[str] | None = None,
    max_levels: int = 20,
    conf_level: float = 0.95,
) -> pd.DataFrame:
    """The outcome's mean per label of each categorical factor, with intervals.

    Args:
        X: one column per factor; non-numeric (labels, pandas ``Categorical``) columns
            and numeric columns with at most ``max_levels`` distinct values count.
        Y: one finite outcome per row (0/1 success gives success rates).
        factors: the columns to report (default: every qualifying column).
        max_levels: most distinct values of a numeric column reported per value.
        conf_level: confidence level of the intervals.

    Returns:
        A frame with the columns of :data:`CATEGORY_COLUMNS`, categories in the order
        of a ``Categorical``'s categories (else sorted). ``frame.attrs`` says how the
        intervals were made: ``binary`` (a 0/1 outcome: means are success rates) and
        ``interval`` (``"Wilson"`` or ``"Student t"``).

    Example:
        >>> import pandas as pd
        >>> X = pd.DataFrame({"scene": ["lab", "lab", "garage", "garage"] * 50})
        >>> frame = category_effects(X, [1, 1, 0, 1] * 50)
        >>> frame[["category", "n", "mean"]].to_dict("records")
        [{'category': 'garage', 'n': 100, 'mean': 0.5}, {'category': 'lab', 'n': 100, 'mean': 1.0}]
    """
    y = _check_outcome(Y)
    conf_level = _check_conf_level(conf_level)
    if not isinstance(X, pd.DataFrame):
        raise TypeError(
            f"`X` must be a pandas DataFrame (labels per column), got {type(X).__name__}; "
            "pass e.g. the episode table's frame"
        )
    if len(X) != y.size:
        raise ValueError(f"`X` must have one row per value of `Y` ({y.size}), got {len(X)}")
    binary = np.isin(y, (0.0, 1.0)).all()
    names = list(X.columns) if factors is None else list(factors)
    rows: list[dict[str, object]] = []
    overall = float(y.mean())
    for name in names:
        col = X[name]
        if pd.api.types.is_numeric_dtype(col) and col.nunique() > max_levels:
            continue
        codes, labels = pd.factorize(col, sort=True)
        counts = np.bincount(codes[codes >= 0], minlength=len(labels)).astype(float)
        sums = np.bincount(codes[codes >= 0], weights=y[codes >= 0], minlength=len(labels))
        sq = np.bincount(codes[codes >= 0], weights=y[codes >= 0] ** 2, minlength=len(labels))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums / counts
            if binary:
                low, high = _wilson(mean, counts, conf_level)
            else:
                var = (sq - counts * mean**2) / (counts - 1)
                half = t_dist.ppf(0.5 + conf_level / 2, np.maximum(counts - 1, 1)) * np.sqrt(
                    var / counts
                )
                low, high = mean - half, mean + half
        for j, label in enumerate(labels):
            if counts[j] == 0:
                continue
            rows.append(
                {
                    "factor": name,
                    "category": str(label),
                    "n": int(counts[j]),
                    "mean": float(mean[j]),
                    "conf_low": float(low[j]),
                    "conf_high": float(high[j]),
                    "difference": float(mean[j] - overall),
                }
            )
    frame = pd.DataFrame(rows, columns=list(CATEGORY_COLUMNS))
    # How the intervals were made, for whoever shows them (reports, the CLI).
    frame.attrs.update(binary=bool(binary), interval="Wilson" if binary else "Student t")
    return frame


def _wilson(p: np.ndarray, n: np.ndarray, conf_level: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of proportions ``p`` out of ``n`` trials."""
    z = norm.ppf(0.5 + conf_level / 2)
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return centre - half, centre + half
