"""Bootstrap machinery shared by the estimators (private).

- :data:`_CHUNK_ELEMENTS`: the size of one block of resample counts.
- :func:`_resample_counts`: resamples as blocks of multinomial count rows.
- :func:`_bootstrap_summary`: ``Z × SD`` and percentile bounds of resampled values.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray
from scipy.stats import norm

__all__ = ["_CHUNK_ELEMENTS", "_bootstrap_summary", "_resample_counts"]

_CHUNK_ELEMENTS = 1 << 22
"""Elements of one bootstrap count block (4 Mi float64 = 32 MiB)."""


def _resample_counts(
    rng: np.random.Generator, num_rows: int, num_resamples: int
) -> Iterator[NDArray[np.float64]]:
    """Bootstrap resamples as blocks of multinomial count rows.

    Yields float arrays of shape ``(block, num_rows)``; row ``r`` counts how often
    each of the ``num_rows`` rows is drawn in resample ``r`` (rows sum to
    ``num_rows``). A statistic that is a ratio of row sums is then a matrix product
    ``counts @ terms``. Blocks hold at most ``_CHUNK_ELEMENTS`` counts.
    """
    block = max(1, min(num_resamples, _CHUNK_ELEMENTS // max(num_rows, 1)))
    done = 0
    while done < num_resamples:
        size = min(block, num_resamples - done)
        draws = rng.integers(0, num_rows, size=(size, num_rows))
        draws += (np.arange(size) * num_rows)[:, np.newaxis]
        counts = np.bincount(draws.ravel(), minlength=size * num_rows)
        del draws
        yield counts.reshape(size, num_rows).astype(np.float64)
        done += size


def _bootstrap_summary(
    samples: NDArray[np.float64], conf_level: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """``(Z × SD, lower percentile, upper percentile)`` over axis 0 of ``samples``."""
    z = norm.ppf(0.5 + conf_level / 2.0)
    conf = z * samples.std(axis=0, ddof=1)
    low, high = np.quantile(samples, [(1.0 - conf_level) / 2.0, (1.0 + conf_level) / 2.0], axis=0)
    return conf, low, high
