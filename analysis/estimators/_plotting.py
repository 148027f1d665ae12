"""Matplotlib helpers of the result ``plot()`` methods (private).

matplotlib is imported only when a new figure is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["_error_bars", "_new_axes"]


def _new_axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt  # lazy: matplotlib is optional and slow to import

    _, new_ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    return new_ax


def _error_bars(
    est: NDArray[np.float64], low: NDArray[np.float64], high: NDArray[np.float64]
) -> NDArray[np.float64] | None:
    """Asymmetric error bars ``[est - low, high - est]`` (``None`` if no interval)."""
    if np.all(np.isnan(low)) and np.all(np.isnan(high)):
        return None
    lower = np.nan_to_num(np.clip(est - low, 0.0, None))
    upper = np.nan_to_num(np.clip(high - est, 0.0, None))
    return np.vstack([lower, upper])
