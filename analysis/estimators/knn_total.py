"""Total Sobol' indices and Shapley effects from given data, by nearest neighbours.

- :func:`knn_indices`: first-order and total indices and Shapley effects of factors
  (or groups of factors) from plain random draws, with bootstrap intervals.

Every index is a combination of closed conditional variances
``ev[s] = E[Var(Y | X_s)] / Var(Y)`` over subsets ``s`` of the factors, each
estimated by nearest neighbours in the coordinates of ``s``
(:func:`varirec.analysis.estimators._knn._subset_terms`)::

    S1_i = 1 - ev[{i}]        ST_i = ev[-i] - ev[all]        Sh = W @ ev

``ev[all]`` is the noise share: the part of ``Var(Y)`` no factor explains (episode
noise of a binary success). Subtracting it makes ``ST`` the total effect on the
expected outcome (noise is not an input), so a null factor has ``ST = 0`` also for
a noisy outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import sparse

from varirec.analysis.estimators._bootstrap import _bootstrap_summary, _resample_counts
from varirec.analysis.estimators._checks import (
    _check_conf_level,
    _check_count,
    _check_num_resamples,
    _check_outcome,
)
from varirec.analysis.estimators._given_data_inputs import _factor_table, _outcome_notes
from varirec.analysis.estimators._knn import _knn_coordinates, _subset_terms
from varirec.analysis.estimators._rng import Seed, _generator
from varirec.analysis.estimators.binning import _standardized, default_num_bins
from varirec.analysis.estimators.groups import resolve_groups
from varirec.analysis.estimators.results import KnnResult
from varirec.analysis.estimators.shapley import (
    MAX_SHAPLEY_FACTORS,
    shapley_weights,
    subset_query_counts,
)

__all__ = ["knn_indices"]

logger = logging.getLogger(__name__)

_MIN_SUBSET_QUERIES = 100
"""Fewest query rows behind one subset's closed index in the Shapley sum."""


def knn_indices(
    X: ArrayLike | pd.DataFrame,
    Y: ArrayLike,
    *,
    factor_names: Sequence[str] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    shapley: bool = True,
    num_neighbours: int = 10,
    max_queries: int = 20_000,
    shapley_budget: int | None = None,
    num_resamples: int = 500,
    conf_level: float = 0.95,
    seed: Seed = None,
    workers: int = -1,
    outcome: str | None = None,
) -> KnnResult:
    """First-order, total and Shapley indices from given data by nearest neighbours.

    For a subset ``s`` of factors, each query row's ``k`` nearest neighbours in the
    coordinates of ``s`` (ranks for continuous factors, exact matches on categorical
    and few-level factors) give ``(y_i - y_k(i))² / 2``, whose mean estimates
    ``E[Var(Y | X_s)]`` plus a bias that grows with the neighbour distance; the
    Gamma-test regression over ``k = 1..num_neighbours`` removes it to first order
    (Devroye et al. 2018; Stefánsson et al. 1997). Nearest neighbours in the given
    data stand in for draws from the conditional law, as in Broto, Bachoc & Depecker
    (2020), so the inputs may be dependent: Shapley effects then still share out
    ``Var(E[Y|X])`` among the factors, and ``S1``/``ST`` keep their closed-index
    meaning.

    First-order, total and the full-set indices use the same ``min(N, max_queries)``
    query rows, so ``ST_i = ev[-i] - ev[all]`` is a paired difference. Shapley
    effects need every subset (``2**D``, ``D <= 12``); the other subsets get query
    rows by Broto et al.'s allocation of ``shapley_budget`` (default ``N``) evenly
    over subset sizes, at least 100 each.

    Intervals: percentile bounds over ``num_resamples`` bootstrap resamples of the
    query rows' terms (neighbours held fixed), ``Var(Y)`` resampled with them.
    ``significant[i]``: the lower bound of ``ST_i`` is above 0.

    Args:
        X: ``(N, D)`` factor values, array or DataFrame (non-numeric columns are
            categorical).
        Y: ``N`` finite outcome values.
        factor_names: ``D`` column names (default: DataFrame columns, else ``x1..xD``).
        groups: factor groups, ``{group name: [column names]}``; a group is one factor
            (e.g. the three components of a camera position). Columns in no group
            stay factors of their own.
        shapley: whether to estimate Shapley effects.
        num_neighbours: neighbours ``k`` per query row (at least 2 for the bias
            correction).
        max_queries: query rows behind ``S1``, ``ST`` and the noise share.
        shapley_budget: query rows spread over the other subsets (default ``N``).
        num_resamples: bootstrap resamples (0: no intervals).
        conf_level: confidence level of the intervals.
        seed: int (0 included), Generator or None: query rows and resamples.
        workers: threads of the neighbour queries (-1: all cores).
        outcome: name of the outcome, recorded in the result.

    Returns:
        A :class:`~varirec.analysis.estimators.results.KnnResult`.

    References:
        Broto, B., Bachoc, F., Depecker, M. (2020). Variance reduction for estimation
        of Shapley effects and adaptation to unknown input distribution. SIAM/ASA
        Journal on Uncertainty Quantification 8(2), 693-716. doi:10.1137/18M1234631

        Devroye, L., Györfi, L., Lugosi, G., Walk, H. (2018). A nearest neighbor
        estimate of the residual variance. Electronic Journal of Statistics 12(1),
        1752-1778. doi:10.1214/18-EJS1438

        Owen, A. B. (2014). Sobol' indices and Shapley value. SIAM/ASA Journal on
        Uncertainty Quantification 2(1), 245-251. doi:10.1137/130936233

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.random((4000, 3))
        >>> Y = X[:, 0] * X[:, 1]  # x1 and x2 interact; x3 does nothing
        >>> res = knn_indices(X, Y, seed=0, num_resamples=100)
        >>> truth = {"ST": [4 / 7, 4 / 7, 0.0], "shapley": [0.5, 0.5, 0.0]}  # exact
        >>> [bool(np.abs(getattr(res, key) - v).max() < 0.03) for key, v in truth.items()]
        [True, True]
        >>> res.significant.tolist()
        [True, True, False]
    """
    y = _check_outcome(Y)
    table = _factor_table(X, factor_names, y.size)
    N = y.size
    k = _check_count(num_neighbours, "num_neighbours", 2, "pass e.g. num_neighbours=10")
    max_queries = _check_count(max_queries, "max_queries", 10, "pass e.g. max_queries=10000")
    budget = (
        N
        if shapley_budget is None
        else _check_count(
            shapley_budget, "shapley_budget", 1, "pass e.g. shapley_budget=20000, or None"
        )
    )
    num_resamples = _check_num_resamples(num_resamples)
    conf_level = _check_conf_level(conf_level)
    rng, int_seed = _generator(seed)
    names, members = resolve_groups(table.names, groups)
    D = len(names)
    if shapley and D > MAX_SHAPLEY_FACTORS:
        raise ValueError(
            f"`shapley=True` needs all 2**D subsets of the factors; D={D} exceeds "
            f"{MAX_SHAPLEY_FACTORS}: group factors (`groups=`) or pass shapley=False"
        )
    yc = _standardized(y)
    notes = _outcome_notes(y)
    coords, exact = _knn_coordinates(table, default_num_bins(N))
    for j, name in enumerate(table.names):
        if exact[j]:
            notes.append(f"{name}: matched exactly on its {np.unique(coords[:, j]).size} levels.")
    cols = [np.array(m, dtype=np.intp) for m in members]
    full = (1 << D) - 1

    def columns(mask: int) -> NDArray[np.intp]:
        return np.concatenate([cols[i] for i in range(D) if (mask >> i) & 1])

    base_rows = _query_rows(rng, N, max_queries)
    plan: dict[int, NDArray[np.intp]] = {full: base_rows}
    for i in range(D):
        plan[1 << i] = base_rows
        if D > 1:
            plan[full & ~(1 << i)] = base_rows
    if shapley and D > 2:
        counts = subset_query_counts(D, budget, N, _MIN_SUBSET_QUERIES)
        for mask in np.flatnonzero(counts):
            if int(mask) not in plan:
                plan[int(mask)] = _query_rows(rng, N, int(counts[mask]))
    masks = sorted(plan)
    parallel = workers != 1 and len(masks) > 4

    def run(mask: int) -> NDArray[np.float64]:
        return _subset_terms(coords, columns(mask), yc, plan[mask], k, 1 if parallel else workers)

    if parallel:
        with ThreadPoolExecutor(max_workers=None if workers < 1 else workers) as pool:
            terms = list(pool.map(run, masks))
    else:
        terms = [run(m) for m in masks]

    position = {m: j for j, m in enumerate(masks)}
    term_matrix, indicator = _term_matrices(N, [plan[m] for m in masks], terms)
    ones = np.ones((1, N))
    ev = _closed_indices(ones, term_matrix, indicator, yc)[0]
    linear = _index_maps(D, position, shapley)
    estimates = {key: ev @ mat for key, mat in linear.items()}
    noise = float(ev[position[full]])
    bounds: dict[str, tuple[NDArray[np.float64], ...]] = {}
    noise_bounds: tuple[float | None, float | None] = (None, None)
    if num_resamples:
        boot = {key: np.empty((num_resamples, D)) for key in linear}
        boot_noise = np.empty(num_resamples)
        start = 0
        for counts_block in _resample_counts(rng, N, num_resamples):
            ev_r = _closed_indices(counts_block, term_matrix, indicator, yc)
            stop = start + counts_block.shape[0]
            for key, mat in linear.items():
                boot[key][start:stop] = ev_r @ mat
            boot_noise[start:stop] = ev_r[:, position[full]]
            start = stop
        bounds = {key: _bootstrap_summary(b, conf_level) for key, b in boot.items()}
        _, lo, hi = _bootstrap_summary(boot_noise[:, np.newaxis], conf_level)
        noise_bounds = (float(np.clip(lo[0], 0, 1)), float(np.clip(hi[0], 0, 1)))
    else:
        notes.append("num_resamples=0: no intervals and no significance verdict.")
    nan = np.full(D, np.nan)

    def interval(key: str) -> tuple[NDArray[np.float64], ...]:
        return bounds.get(key, (nan, nan, nan))

    significant = bounds["ST"][1] > 0.0 if "ST" in bounds else None
    if D == 1:
        notes.append("one factor: its total index is 1 - noise share by definition.")
    sh = estimates.get("Sh")
    logger.debug("knn_indices: N=%d D=%d subsets=%d R=%d", N, D, len(masks), num_resamples)
    return KnnResult(
        method="knn",
        factor_names=tuple(names),
        num_samples=N,
        num_evaluations=N,
        outcome=outcome,
        conf_level=conf_level,
        num_resamples=num_resamples,
        seed=int_seed,
        notes=notes,
        groups={n: list(table.names[c] for c in m) for n, m in zip(names, members, strict=True)},
        S1=estimates["S1"],
        S1_conf=interval("S1")[0],
        S1_conf_low=interval("S1")[1],
        S1_conf_high=interval("S1")[2],
        ST=estimates["ST"],
        ST_conf=interval("ST")[0],
        ST_conf_low=interval("ST")[1],
        ST_conf_high=interval("ST")[2],
        shapley=sh,
        shapley_conf=interval("Sh")[0] if sh is not None else None,
        shapley_conf_low=interval("Sh")[1] if sh is not None else None,
        shapley_conf_high=interval("Sh")[2] if sh is not None else None,
        significant=significant,
        noise_share=float(np.clip(noise, 0.0, 1.0)),
        noise_share_conf_low=noise_bounds[0],
        noise_share_conf_high=noise_bounds[1],
        num_subsets=len(masks),
    )


def _query_rows(rng: np.random.Generator, N: int, n: int) -> NDArray[np.intp]:
    if n >= N:
        return np.arange(N, dtype=np.intp)
    return np.sort(rng.choice(N, size=n, replace=False)).astype(np.intp)


def _term_matrices(
    N: int, rows: Sequence[NDArray[np.intp]], terms: Sequence[NDArray[np.float64]]
) -> tuple[sparse.csc_matrix, sparse.csc_matrix]:
    """``(N, S)`` sparse matrices of the per-row terms and of which rows were queried."""
    lengths = [r.size for r in rows]
    r = np.concatenate(rows)
    c = np.repeat(np.arange(len(rows)), lengths)
    t = np.concatenate(terms)
    shape = (N, len(rows))
    values = sparse.csc_matrix((t, (r, c)), shape=shape)
    indicator = sparse.csc_matrix((np.ones(r.size), (r, c)), shape=shape)
    return values, indicator


def _closed_indices(
    counts: NDArray[np.float64],
    term_matrix: sparse.csc_matrix,
    indicator: sparse.csc_matrix,
    y: NDArray[np.float64],
) -> NDArray[np.float64]:
    """``ev[s]`` per count row (one resample, or ones for the data): ``(R, S + 1)``."""
    sums = np.asarray((term_matrix.T @ counts.T).T)
    n = np.asarray((indicator.T @ counts.T).T)
    total = counts.sum(axis=1)
    mean_y = counts @ y / total
    var = counts @ (y * y) / total - mean_y**2
    means = np.divide(sums, n, out=np.full_like(sums, np.nan), where=n > 0)
    # The last column is ev[∅] = 1: every index is then linear in the columns.
    return np.column_stack([means / var[:, np.newaxis], np.ones(counts.shape[0])])


def _index_maps(
    D: int, position: Mapping[int, int], shapley: bool
) -> dict[str, NDArray[np.float64]]:
    """Matrices ``(S + 1, D)`` taking the closed indices to S1, ST and Shapley effects.

    ``position`` maps subset bitmasks to columns of :func:`_closed_indices`; the
    empty subset (``ev = 1``) is its last column.
    """
    S = len(position)
    position = {**position, 0: S}
    S += 1
    full = (1 << D) - 1
    maps: dict[str, NDArray[np.float64]] = {}
    s1 = np.zeros((S, D))
    st = np.zeros((S, D))
    for i in range(D):
        s1[position[1 << i], i] -= 1.0
        s1[position[0], i] += 1.0
        st[position[full & ~(1 << i)], i] += 1.0  # the empty subset when D == 1
        st[position[full], i] -= 1.0
    maps["S1"] = s1
    maps["ST"] = st
    if shapley:
        W = shapley_weights(D)
        sh = np.zeros((S, D))
        for mask, j in position.items():
            sh[j] = W[:, mask]
        if len(position) < (1 << D):
            raise ValueError(f"Shapley effects need all {1 << D} subsets, got {len(position)}")
        maps["Sh"] = sh
    return maps
