"""Nearest-neighbour conditional variances from given data (private).

- :func:`_knn_coordinates`: factors as coordinates: ranks scaled to [0, 1] for
  continuous factors, spaced-out level codes (exact matching) for categorical and
  few-level factors.
- :func:`_scaled_by_slopes`: continuous columns scaled by how fast ``Y`` moves along
  them, so that neighbours match where it matters.
- :func:`_bias_power`: whether the neighbour bias grows with the distance squared (a
  smooth outcome) or with the distance (an outcome that jumps, such as a 0/1 rule).
- :func:`_subset_pairs`: ``E[Var(Y | X_s)]`` for one subset ``s`` of the coordinates,
  with the Gamma-test correction of the neighbour bias, and its neighbour pairs.

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
from scipy.optimize import nnls
from scipy.spatial import cKDTree
from scipy.stats import rankdata

from varirec.analysis.estimators._given_data_inputs import _FactorTable

__all__ = [
    "_bias_power",
    "_knn_coordinates",
    "_scaled_by_slopes",
    "_subset_pairs",
    "_tie_breaks",
]


def _knn_coordinates(
    table: _FactorTable, max_levels: int
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """``(N, D)`` coordinates and which columns are matched exactly.

    Continuous columns become their ranks divided by ``N`` (so distances do not depend
    on units or marginal distributions, and dependent inputs keep their copula).
    Categorical columns, and columns with at most ``max_levels`` distinct values,
    become level codes times a spacing larger than any distance between rank
    coordinates: a neighbour then shares the row's levels whenever enough rows do.
    """
    N, D = table.values[0].size, len(table.names)
    spacing = 2.0 * math.sqrt(D) + 1.0
    coords = np.empty((N, D))
    exact = np.zeros(D, dtype=bool)
    for j, (col, cat) in enumerate(zip(table.values, table.categorical, strict=True)):
        uniq, inverse = np.unique(col, return_inverse=True)
        if cat or uniq.size <= max_levels:
            coords[:, j] = inverse * spacing
            exact[j] = True
        else:
            coords[:, j] = rankdata(col) / N
    return coords, exact


def _tie_breaks(
    coords: NDArray[np.float64], exact: NDArray[np.bool_], rng: np.random.Generator
) -> NDArray[np.float64] | None:
    """Offsets that break the ties of the exactly matched columns at random (None where
    there are none): tied points come back from a k-d tree in one fixed order, so every
    query row of a level had the same ~10 neighbours, and a discrete factor's estimate
    rested on ~10 rows a level whatever N (its spread did not shrink with N). The
    offsets are far smaller than any gap between continuous coordinates, so they order
    only what was tied; the distances are measured without them.
    """
    if not exact.any():
        return None
    gaps = [np.diff(np.unique(coords[:, j])) for j in np.flatnonzero(~exact)]
    positive = [g[g > 0].min() for g in gaps if (g > 0).any()]
    amplitude = 1e-3 * min(positive) if positive else 1e-3
    ties = np.zeros_like(coords)
    ties[:, exact] = rng.uniform(0.0, amplitude, (coords.shape[0], int(exact.sum())))
    return ties


NOISY = 0.4
""":func:`_bias_power` keeps ``d²`` where the share of the variance left at distance 0
(``d²``'s intercept) is above this: a noisy 0/1 outcome whose expected value is smooth
(a Bernoulli of a gentle sigmoid of Ishigami: 0.65-0.72; thresholded: 0.11-0.23), where
``d`` fitted as well by chance and overshot (total indices' error 0.029 -> 0.044)."""


def _bias_power(
    coords: NDArray[np.float64],
    exact: NDArray[np.bool_],
    y: NDArray[np.float64],
    rng: np.random.Generator,
    num_neighbours: int,
    workers: int,
    num_pilot: int = 2000,
) -> float:
    """How the neighbour bias grows with the distance ``d``: 2.0 (``d²``) or 1.0 (``d``).

    Where ``E[Y | X]`` is smooth, a neighbour at distance ``d`` differs by about a
    gradient times ``d``, so ``(y_i - y_j)² / 2`` exceeds the conditional variance by
    ``c · d²``. Where it jumps (a 0/1 success decided by a rule on the factors), a pair
    differs only where the boundary lies between them, which happens with probability
    ``∝ d``: extrapolated in ``d²``, the intercept stayed too high, most in many
    dimensions, and total indices of a thresholded Ishigami came out 0.07-0.10 low
    (intervals covered 0-3 of 12 seeds; in ``d``: 7-8 of 8). Over the ``3k`` nearest
    neighbours of ``num_pilot`` rows in all coordinates, ``d`` is kept where its line
    fits the means better, unless they are mostly noise (:data:`NOISY`). Only pairs
    that share the levels of the exactly matched columns count, and ``d`` is measured
    along the continuous ones: a level's step is a jump too, but not one the
    extrapolation crosses.
    :func:`~varirec.analysis.estimators.knn_total.knn_indices` asks it of 0/1 outcomes
    only (on smooth ones the choice flipped with the seed at small ``N``).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.random((4000, 2))
        >>> smooth, jump = x.sum(axis=1), (x.sum(axis=1) > 1.0) * 1.0
        >>> [_bias_power(x, np.zeros(2, bool), y, rng, 10, 1) for y in (smooth, jump)]
        [2.0, 1.0]
    """
    N = coords.shape[0]
    k = max(2, min(3 * num_neighbours, N - 2))
    if N < 4 or exact.all():
        return 2.0
    rows, nbr = _pilot_pairs(coords, rng, k, workers, num_pilot)
    step = coords[nbr] - coords[rows, np.newaxis]
    same = ~(step[:, :, exact] != 0.0).any(axis=2)
    if same.sum(axis=0).min() < 10:
        return 2.0  # too few pairs share their levels to tell
    dist = np.sqrt((step[:, :, ~exact] ** 2).sum(axis=2))
    semi = 0.5 * (y[rows, np.newaxis] - y[nbr]) ** 2
    count = same.sum(axis=0)
    means = np.where(same, semi, 0.0).sum(axis=0) / count
    misfit, left = {}, {}
    for power in (2.0, 1.0):
        line = np.column_stack([np.ones(k), np.where(same, dist**power, 0.0).sum(axis=0) / count])
        coef, *_ = np.linalg.lstsq(line, means, rcond=None)
        misfit[power] = float(np.sum((line @ coef - means) ** 2))
        left[power] = float(coef[0]) / max(float(np.var(y)), 1e-300)
    if left[2.0] > NOISY:  # mostly noise: the bias term is small, and d² is the theory
        return 2.0
    return 1.0 if misfit[1.0] < misfit[2.0] else 2.0


def _subset_pairs(
    coords: NDArray[np.float64],
    columns: Sequence[int],
    y: NDArray[np.float64],
    rows: NDArray[np.intp],
    num_neighbours: int,
    workers: int,
    ties: NDArray[np.float64] | None = None,
    power: float = 2.0,
) -> tuple[float, NDArray[np.intp], NDArray[np.float64], float]:
    """``E[Var(Y | X_s)]`` from the query rows ``rows`` (``s = columns``), and its pairs.

    ``(y_i - y_k(i))² / 2`` over the ``k``-th nearest neighbours in the coordinates
    ``s`` (``k = 1..num_neighbours``, the row itself excluded) overestimates the
    conditional variance by about ``c · d_k^power`` (``d_k^power``: the mean of the
    distances to the ``k``-th neighbour to that power; 2 for a smooth outcome, 1 for
    one that jumps: :func:`_bias_power`), because a neighbour is not an exact match.
    The ``k`` means are regressed on ``d_k^power`` and the intercept kept (the Gamma
    test); that is a fixed linear combination ``w`` of the ``k`` means.

    Returns:
        The estimate ``Σ_k w_k mean_i (y_i - y_k(i))² / 2``; the ``(n, k)``
        neighbour rows; each pair's share of the estimate's error,
        ``w_k ((y_i - y_k(i))² / 2 - mean_i) / n`` (their sum is 0), from which
        :func:`varirec.analysis.estimators._knn_variance.linearized_variance`
        computes the standard errors; and the *gap*: how far the intercept moves
        when only the nearer half of the neighbours is used.
    """
    k = max(1, min(num_neighbours, y.size - 2))
    offsets = None if ties is None else ties[:, columns]
    dist, nbr = _neighbours(coords[:, columns], rows, k, workers, offsets)
    n = rows.size
    d2 = (dist**power).mean(axis=0)
    semi = 0.5 * (y[rows, np.newaxis] - y[nbr]) ** 2
    means = semi.mean(axis=0)
    weights = _gamma_weights(d2)
    gap_weights = -weights
    half = max(2, (k + 1) // 2)
    gap_weights[:half] += _gamma_weights(d2[:half])
    shares = (semi - means) * (weights / n)
    return float(means @ weights), nbr, shares, float(means @ gap_weights)


def _neighbours(
    points: NDArray[np.float64],
    rows: NDArray[np.intp],
    k: int,
    workers: int,
    ties: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """``(n, k)`` distances and rows of the ``k`` nearest neighbours of ``points[rows]``
    (``ties``: offsets that order tied points at random, see :func:`_tie_breaks`; the
    distances are those of ``points``).

    Each row itself is left out, wherever ties put it (a duplicate of the row may come
    first).
    """
    moved = points if ties is None else points + ties
    tree = cKDTree(moved, balanced_tree=False, compact_nodes=False)
    # eps=1: approximate neighbours (within 2x the true distance) are 4x faster in
    # 8-10 dimensions; the correction uses the distances actually found.
    dist, idx = tree.query(moved[rows], k=k + 1, workers=workers, eps=1.0)
    is_self = idx == rows[:, np.newaxis]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    n = rows.size
    nbr = idx[keep].reshape(n, k)
    if ties is not None:
        dist = np.sqrt(((points[nbr] - points[rows, np.newaxis]) ** 2).sum(axis=2))
        return dist, nbr
    return dist[keep].reshape(n, k), nbr


def _pilot_pairs(
    coords: NDArray[np.float64], rng: np.random.Generator, k: int, workers: int, num_pilot: int
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """``num_pilot`` rows drawn at random (all, if fewer) and their ``k`` nearest
    neighbours in all of ``coords``: the pairs a pilot fit reads."""
    rows = rng.choice(coords.shape[0], size=min(num_pilot, coords.shape[0]), replace=False)
    return rows, _neighbours(coords, rows, k, workers)[1]


def _gamma_weights(d2: NDArray[np.float64]) -> NDArray[np.float64]:
    """Weights ``w`` such that ``w @ means`` is the intercept of ``means`` on ``d2``."""
    k = d2.size
    weights = np.full(k, 1.0 / k)
    spread = d2 - d2.mean()
    if k > 1 and np.sum(spread**2) > 1e-12 * max(float(d2.mean()) ** 2, 1e-300):
        weights -= d2.mean() * spread / np.sum(spread**2)
    return weights


def _scaled_by_slopes(
    coords: NDArray[np.float64],
    exact: NDArray[np.bool_],
    y: NDArray[np.float64],
    rng: np.random.Generator,
    num_neighbours: int,
    workers: int,
    num_pilot: int = 2000,
) -> NDArray[np.float64]:
    """``coords`` with each continuous column scaled by how fast ``Y`` changes along it.

    Over the nearest-neighbour pairs of ``num_pilot`` rows in all coordinates,
    ``(y_i - y_j)² / 2`` is regressed (non-negative least squares) on the squared
    differences of each coordinate: the slope ``c_l`` is about half the mean squared
    partial derivative along column ``l``. Scaling column ``l`` by ``sqrt(c_l)`` (at
    least a tenth of the largest) makes a neighbour close where ``Y`` moves and lets
    it differ where ``Y`` does not, so the neighbour bias that the Gamma correction
    must remove shrinks, most in many dimensions (Sobol' G in 10 dimensions at
    20,000 rows: the largest total index's bias fell from -0.071 to -0.020). The
    metric only chooses neighbours: every estimate still conditions on the same
    columns. Columns matched exactly (categorical) are left as they are.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> coords = rng.random((2000, 2))
        >>> y = 10 * coords[:, 0] + 0.1 * coords[:, 1]
        >>> scaled = _scaled_by_slopes(coords, np.zeros(2, bool), y, rng, 10, 1)
        >>> (scaled / coords).max(axis=0).round(2).tolist()  # x2 kept at the floor
        [1.0, 0.1]
    """
    N = coords.shape[0]
    cont = np.flatnonzero(~exact)
    if cont.size < 2 or N < 4:
        return coords
    k = max(1, min(num_neighbours, N - 2))
    rows, nbr = _pilot_pairs(coords, rng, k, workers, num_pilot)
    diff2 = (coords[rows, np.newaxis][:, :, cont] - coords[nbr][:, :, cont]) ** 2
    semi = 0.5 * (y[rows, np.newaxis] - y[nbr]) ** 2
    design = np.column_stack([np.ones(semi.size), diff2.reshape(-1, cont.size)])
    # Slopes are non-negative; the intercept (two columns, +1 and -1) may take any sign.
    coef, _ = nnls(np.column_stack([design, -design[:, :1]]), semi.ravel())
    slopes = coef[1 : 1 + cont.size]
    if not np.isfinite(slopes).all() or slopes.max() <= 0.0:
        return coords
    scale = np.sqrt(np.maximum(slopes / slopes.max(), 0.01))
    out = coords.copy()
    out[:, cont] *= scale
    return out
