"""Success rate along each factor: equal-frequency bins with Beta intervals.

:func:`success_curves` gives one row per (factor, bin): its range, how many episodes
fell into it, how many succeeded, the rate and its Jeffreys interval. A factor with few
levels (an integer, a category) gets one bin per level, drawn as bars.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from varirec.analysis.failures._inputs import Factors, bin_codes, rate_interval

__all__ = ["CURVE_COLUMNS", "default_curve_bins", "success_curves"]

CURVE_COLUMNS = (
    "factor", "bin", "label", "low", "high", "center", "episodes", "successes",
    "rate", "conf_low", "conf_high", "categorical",
)  # fmt: skip


def default_curve_bins(num_episodes: int) -> int:
    """Bins per factor: about ``N / 400`` episodes each (a rate within ±5 %), 4 to 12.

    >>> default_curve_bins(1_000), default_curve_bins(4_000), default_curve_bins(100_000)
    (4, 10, 12)
    """
    return int(np.clip(num_episodes // 400, 4, 12))


def _label(factors: Factors, name: str, low: float, high: float, by_value: bool) -> str:
    if name in factors.labels:
        return factors.labels[name][int(low)]
    if by_value:
        return f"{low:.4g}"
    return f"[{low:.4g}, {high:.4g}]"


def success_curves(
    factors: Factors, success: NDArray[np.bool_], *, num_bins: int, conf_level: float
) -> pd.DataFrame:
    """The success rate in equal-frequency bins of every factor (tidy rows).

    Args:
        factors: the episodes' factor values.
        success: whether each episode succeeded.
        num_bins: bins per continuous factor (fewer levels: one bin per level).
        conf_level: level of the Jeffreys intervals.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(size=(4000, 1))
    >>> f = Factors(["x"], x, {})
    >>> c = success_curves(f, x[:, 0] > np.median(x), num_bins=4, conf_level=0.95)
    >>> c["rate"].round(2).tolist()
    [0.0, 0.0, 1.0, 1.0]
    """
    rows = []
    y = success.astype(float)
    for j, name in enumerate(factors.names):
        x = factors.values[:, j]
        ok = np.isfinite(x)
        codes, edges = bin_codes(x[ok], num_bins)
        by_value = edges.size == np.unique(x[ok]).size and (
            name in factors.labels or edges.size <= num_bins
        )
        m = edges.size if by_value else edges.size - 1
        n = np.bincount(codes, minlength=m).astype(float)
        k = np.bincount(codes, weights=y[ok], minlength=m)
        centers = pd.Series(x[ok]).groupby(codes).median().reindex(range(m)).to_numpy()
        low_ci, high_ci = rate_interval(k, n, conf_level)
        for b in range(m):
            lo, hi = (edges[b], edges[b]) if by_value else (edges[b], edges[b + 1])
            rows.append(
                (name, b, _label(factors, name, lo, hi, by_value), lo, hi, centers[b], int(n[b]),
                 int(k[b]), k[b] / n[b] if n[b] else np.nan, low_ci[b], high_ci[b],
                 by_value)
            )  # fmt: skip
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))
