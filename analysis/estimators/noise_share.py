"""The outcome's noise share: the part of Var(Y) that no factor (nor interaction) explains.

- :func:`_noise_share`: the estimate given the significant factors, its
  cluster-bootstrap interval and plain-language notes (used by
  :func:`varirec.analysis.estimators.binning.first_order_binning`, which documents the method).
- :func:`_nn_noise_terms`: per-row nearest-neighbour differences and row clusters.
- :func:`_noise_share_resampled`: cluster-bootstrap resamples of the share.

References:
    Devroye, L., Györfi, L., Lugosi, G., Walk, H. (2018). A nearest neighbor
    estimate of the residual variance. Electronic Journal of Statistics 12(1),
    1752-1778. doi:10.1214/18-EJS1438

    Stefánsson, A., Končar, N., Jones, A. J. (1997). A note on the Gamma test.
    Neural Computing & Applications 5(3), 131-133. doi:10.1007/BF01413858
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

from varirec.analysis.estimators._bootstrap import _bootstrap_summary, _resample_counts
from varirec.analysis.estimators._given_data_inputs import _FactorTable

__all__ = ["_NOISE_MAX_FACTORS", "_nn_noise_terms", "_noise_share", "_noise_share_resampled"]

_NOISE_MAX_FACTORS = 6
"""Above this many factors the nearest-neighbour noise share is loose."""
_NEIGHBOURS = 10
"""Neighbours behind the Gamma-test extrapolation to distance 0."""


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
    """``(share, conf_low, conf_high)`` given all factors; appends notes.

    The share conditions on every factor, not only the first-order significant ones:
    a factor that acts only through interactions (``S1 = 0``, e.g. ``x2·x3``) is not
    noise. ``significant`` and ``reason`` are kept for the callers' signature; the
    share does not depend on the verdict. The bounds are ``None`` if
    ``num_resamples=0``. ``yc`` is the standardized outcome.
    """
    del significant, reason
    D = len(table.names)
    share_low = share_high = None
    selected = list(range(D))
    if not selected:
        notes.append("noise_share: there are no factors, so all variance is noise.")
        bound = 1.0 if num_resamples else None
        return 1.0, bound, bound
    h_noise, clusters = _nn_noise_terms(table, labels, exact, selected, yc)
    share = float(np.clip(np.mean(h_noise) / np.mean(yc * yc), 0.0, 1.0))
    if len(selected) > _NOISE_MAX_FACTORS:
        notes.append(
            f"noise_share uses {len(selected)} factors: nearest neighbours are far "
            "apart, so its interval is wide."
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
    """Per-row noise terms on the selected factors, and row clusters.

    ``(y_i - y_k(i))² / 2`` for the ``k``-th nearest neighbours, ``k = 1.._NEIGHBOURS``,
    overestimates the noise by about ``c · d_k²`` (``d_k²``: the mean squared distance
    to the ``k``-th neighbour; ``E[Y|X]`` differs between the row and a neighbour that
    is not an exact match). The Gamma test (Stefánsson et al. 1997) regresses the
    ``k`` means on ``d_k²`` and keeps the intercept, the noise at distance 0: a fixed
    linear combination of the ``k`` means, so each row's term is that combination of
    its own ``k`` differences. Clusters are the connected components of the
    nearest-neighbour graph (terms of different clusters are nearly independent given
    ``X``), so the share is bootstrapped over clusters.
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
    k = max(1, min(_NEIGHBOURS, N - 2))
    dist, idx = cKDTree(points).query(points, k=k + 1)
    # Drop each row itself (ties may put it in any column) and keep its k neighbours.
    is_self = idx == np.arange(N)[:, np.newaxis]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    nbr = idx[keep].reshape(N, k)
    d2 = (dist[keep].reshape(N, k) ** 2).mean(axis=0)
    semi = 0.5 * (y[:, np.newaxis] - y[nbr]) ** 2
    weights = np.full(k, 1.0 / k)
    spread = d2 - d2.mean()
    if k > 1 and np.sum(spread**2) > 0:
        weights -= d2.mean() * spread / np.sum(spread**2)
    nn = nbr[:, 0]
    graph = sparse.coo_matrix((np.ones(N), (np.arange(N), nn)), shape=(N, N))
    _, clusters = connected_components(graph, directed=True, connection="weak")
    return semi @ weights, clusters.astype(np.intp)


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
    return np.clip(out, 0.0, 1.0)
