"""The outcome's noise share: the part of Var(Y) the significant factors leave.

- :func:`_noise_share`: the estimate given the significant factors, its
  cluster-bootstrap interval and plain-language notes (used by
  :func:`analysis.binning.first_order_binning`, which documents the method).
- :func:`_nn_noise_terms`: per-row nearest-neighbour differences and row clusters.
- :func:`_noise_share_resampled`: cluster-bootstrap resamples of the share.

References:
    Devroye, L., Györfi, L., Lugosi, G., Walk, H. (2018). A nearest neighbor
    estimate of the residual variance. Electronic Journal of Statistics 12(1),
    1752-1778. doi:10.1214/18-EJS1438
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from scipy.stats import rankdata

from analysis._bootstrap import _bootstrap_summary, _resample_counts
from analysis._given_data_inputs import _FactorTable

__all__ = ["_NOISE_MAX_FACTORS", "_nn_noise_terms", "_noise_share", "_noise_share_resampled"]

_NOISE_MAX_FACTORS = 6
"""Above this many significant factors the nearest-neighbour noise share is loose."""


def _noise_share(
    table: _FactorTable,
    labels: Sequence[NDArray[np.intp]],
    exact: Sequence[bool],
    significant: NDArray[np.bool_] | None,
    yc: NDArray[np.float64],
    num_resamples: int,
    conf_level: float,
    rng: np.random.Generator,
    notes: list[str],
    reason: str = "no dummies",
) -> tuple[float, float | None, float | None]:
    """``(share, conf_low, conf_high)`` given the significant factors; appends notes.

    Without a verdict (``significant is None``, for the ``reason`` named in the
    note) all factors are used; with no significant factor the share is 1. The
    bounds are ``None`` if ``num_resamples=0``. ``yc`` is the standardized outcome.
    """
    D = len(table.names)
    share_low = share_high = None
    if significant is not None:
        selected = [j for j in range(D) if significant[j]]
    else:
        selected = list(range(D))
        notes.append(f"noise_share: {reason}, so all factors were used.")
    if not selected:
        notes.append("noise_share: no factor is significant, so all variance is noise.")
        bound = 1.0 if num_resamples else None
        return 1.0, bound, bound
    h_noise, clusters = _nn_noise_terms(table, labels, exact, selected, yc)
    share = float(np.mean(h_noise) / np.mean(yc * yc))
    if len(selected) > _NOISE_MAX_FACTORS:
        notes.append(
            f"noise_share uses {len(selected)} factors: nearest neighbours are far "
            "apart, so it is an upper bound."
        )
    if num_resamples:
        samples = _noise_share_resampled(yc, h_noise, clusters, num_resamples, rng)
        _, lo, hi = _bootstrap_summary(samples[:, np.newaxis], conf_level)
        share_low, share_high = float(lo[0]), float(hi[0])
    used = ", ".join(table.names[j] for j in selected)
    notes.append(f"noise_share: nearest-neighbour estimate given [{used}].")
    return share, share_low, share_high


def _nn_noise_terms(
    table: _FactorTable,
    labels: Sequence[NDArray[np.intp]],
    exact: Sequence[bool],
    selected: Sequence[int],
    y: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Per-row ``(y_i - y_nn(i))² / 2`` on the selected factors, and row clusters.

    Clusters are the connected components of the nearest-neighbour graph: given
    ``X``, terms of different clusters are independent, so the noise share is
    bootstrapped over clusters.
    """
    N = y.size
    spacing = 2.0 * math.sqrt(len(selected)) + 1.0  # beyond any continuous distance
    coords = []
    for j in selected:
        if exact[j]:
            coords.append(labels[j] * spacing)
        else:
            coords.append(rankdata(table.values[j]) / N)
    points = np.column_stack(coords).astype(np.float64)
    _, idx = cKDTree(points).query(points, k=2)
    nn = np.where(idx[:, 0] == np.arange(N), idx[:, 1], idx[:, 0])
    graph = sparse.coo_matrix((np.ones(N), (np.arange(N), nn)), shape=(N, N))
    _, clusters = connected_components(graph, directed=True, connection="weak")
    return 0.5 * (y - y[nn]) ** 2, clusters.astype(np.intp)


def _noise_share_resampled(
    y: NDArray[np.float64],
    h: NDArray[np.float64],
    clusters: NDArray[np.intp],
    num_resamples: int,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """Noise shares of ``num_resamples`` cluster-bootstrap resamples."""
    sums = np.column_stack(
        [np.bincount(clusters, weights=w) for w in (np.ones_like(y), y, y * y, h)]
    )
    out = np.empty(num_resamples)
    start = 0
    for counts in _resample_counts(rng, sums.shape[0], num_resamples):
        n, sy, sy2, sh = (counts @ sums).T
        var = sy2 / n - (sy / n) ** 2
        out[start : start + n.size] = np.divide(sh / n, var, out=np.ones_like(var), where=var > 0)
        start += n.size
    return out
