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
from scipy.stats import norm

from varirec.analysis.estimators._checks import (
    _check_conf_level,
    _check_count,
    _check_outcome,
)
from varirec.analysis.estimators._given_data_inputs import _factor_table, _outcome_notes
from varirec.analysis.estimators._knn import (
    _bias_power,
    _knn_coordinates,
    _scaled_by_slopes,
    _subset_pairs,
    _tie_breaks,
)
from varirec.analysis.estimators._knn_variance import linearized_variance
from varirec.analysis.estimators._rng import Seed, _generator
from varirec.analysis.estimators.binning import _standardized, default_num_bins
from varirec.analysis.estimators.groups import resolve_groups
from varirec.analysis.estimators.knn_result import KnnResult
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
    intervals: bool = True,
    scale_by_slopes: bool = True,
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
    (Devroye et al. 2018; Stefánsson et al. 1997), in the squared distance; for a 0/1
    outcome, in the distance where it jumps, a success decided by the factors
    (whichever fits a pilot's neighbours better:
    :func:`varirec.analysis.estimators._knn._bias_power`). The rank coordinates are first
    scaled by how fast ``Y`` moves along each (``scale_by_slopes``), which shrinks
    that bias where many factors do little. Nearest neighbours in the given
    data stand in for draws from the conditional law, as in Broto, Bachoc & Depecker
    (2020), so the inputs may be dependent: Shapley effects then still share out
    ``Var(E[Y|X])`` among the factors, and ``S1``/``ST`` keep their closed-index
    meaning.

    First-order, total and the full-set indices use the same ``min(N, max_queries)``
    query rows, so ``ST_i = ev[-i] - ev[all]`` is a paired difference. Shapley
    effects need every subset (``2**D``, ``D <= 12``); the other subsets get query
    rows by Broto et al.'s allocation of ``shapley_budget`` (default ``N``) evenly
    over subset sizes, at least 100 each, drawn at random per subset.

    Intervals: the estimate ± the normal quantile times a linearized standard error.
    Each index is a fixed combination of the subsets' pair terms
    ``(y_i - y_j)² / 2`` divided by the sample variance of ``Y``; to first order its
    error is a sum over rows and pairs of rows, and terms are correlated only when
    they share a row, so the variance is the sum of products of centred terms over
    the couples that share a row
    (:func:`varirec.analysis.estimators._knn_variance.linearized_variance`). The
    neighbour choice is held fixed there, and the Gamma extrapolation may leave a
    bias; how far each index moves when only the nearer half of the neighbours is
    used is added in quadrature (the intervals are then conservative on noisy
    outcomes: standard errors up to 1.5 times the spread over data sets). A row
    bootstrap with fixed neighbours, or a CLT over query rows alone, misses that a
    row's term as a query and its terms as the neighbour of others move together
    (its 95 % intervals covered Ishigami's Shapley effects in 78 % of 40 seeds);
    batch means over 10 disjoint batches gave spreads too noisy to trust (Borehole's
    ``rw`` Shapley effect covered in 70 % of 20 seeds). ``significant[i]``: the
    lower bound of ``ST_i`` is above 0.

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
        intervals: whether to compute intervals (and the significance verdict).
        scale_by_slopes: scale the continuous columns by how fast ``Y`` moves along
            them before searching neighbours
            (:func:`varirec.analysis.estimators._knn._scaled_by_slopes`); less bias in
            many dimensions.
        conf_level: confidence level of the intervals.
        seed: int (0 included), Generator or None: the query rows of the subsets and
            the pilot rows of ``scale_by_slopes``.
        workers: threads of the neighbour queries (-1: all cores).
        outcome: name of the outcome, recorded in the result.

    Returns:
        A :class:`~varirec.analysis.estimators.knn_result.KnnResult`.

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
        >>> res = knn_indices(X, Y, seed=0)
        >>> truth = {"ST": [4 / 7, 4 / 7, 0.0], "shapley": [0.5, 0.5, 0.0]}  # exact
        >>> [bool(np.abs(getattr(res, key) - v).max() < 0.05) for key, v in truth.items()]
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
    if scale_by_slopes:
        coords = _scaled_by_slopes(coords, exact, yc, rng, k, workers)
    ties = _tie_breaks(coords, exact, rng)
    # A 0/1 outcome only: on a smooth one the pilot's choice flipped with the seed below
    # ~2,000 rows (Ishigami's return: d in 3 of 6 seeds at 1,000, its error 0.146
    # against 0.066), and a smooth outcome is what d² assumes.
    power = _bias_power(coords, exact, yc, rng, k, workers) if np.unique(y).size == 2 else 2.0
    if power != 2.0:
        notes.append(
            "the 0/1 outcome jumps between neighbouring draws (a success decided by the "
            "factors): the neighbour bias was extrapolated in the distance, not its square."
        )
    linear = _index_maps(D, shapley)
    options = {
        "shapley": shapley,
        "k": k,
        "workers": workers,
        "intervals": intervals,
        "ties": ties,
        "power": power,
    }
    estimates, errors = _estimate(coords, yc, cols, linear, max_queries, budget, rng, **options)
    z = float(norm.ppf(0.5 + conf_level / 2.0))
    bounds = {
        key: (z * se, estimates[key] - z * se, estimates[key] + z * se)
        for key, se in errors.items()
    }
    if not intervals:
        notes.append("intervals=False: no intervals and no significance verdict.")
    nan = np.full(D, np.nan)

    def interval(key: str) -> tuple[NDArray[np.float64], ...]:
        return bounds.get(key, (nan, nan, nan))

    significant = bounds["ST"][1] > 0.0 if "ST" in bounds else None
    if D == 1:
        notes.append("one factor: its total index is 1 - noise share by definition.")
    sh = estimates.get("Sh")
    noise = float(estimates["noise"][0])
    noise_low = noise_high = None
    if "noise" in bounds:
        noise_low = float(np.clip(bounds["noise"][1][0], 0.0, 1.0))
        noise_high = float(np.clip(bounds["noise"][2][0], 0.0, 1.0))
    logger.debug("knn_indices: N=%d D=%d intervals=%s", N, D, intervals)
    return KnnResult(
        method="knn",
        factor_names=tuple(names),
        num_samples=N,
        num_evaluations=N,
        outcome=outcome,
        conf_level=conf_level,
        num_resamples=0,
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
        noise_share_conf_low=noise_low,
        noise_share_conf_high=noise_high,
        num_subsets=(1 << D) - 1 if shapley else 2 * D + 1,
    )


def _estimate(
    coords: NDArray[np.float64],
    yc: NDArray[np.float64],
    cols: Sequence[NDArray[np.intp]],
    linear: Mapping[str, NDArray[np.float64]],
    max_queries: int,
    budget: int,
    rng: np.random.Generator,
    *,
    shapley: bool,
    k: int,
    workers: int,
    intervals: bool,
    ties: NDArray[np.float64] | None = None,
    power: float = 2.0,
) -> tuple[dict[str, NDArray[np.float64]], dict[str, NDArray[np.float64]]]:
    """Point estimates of every index (and ``"noise"``), and their standard errors.

    ``yc`` is standardized (mean 0, variance 1), so ``ev[s]`` is the mean of the
    subset's terms. The standard errors (empty without ``intervals``) come from
    :func:`varirec.analysis.estimators._knn_variance.linearized_variance`.
    """
    N, D = yc.size, len(cols)
    full = (1 << D) - 1

    # Each Shapley subset draws its own query rows: errors then average out over the
    # many subsets of one size. (Prefixes of one order, shared by nested subsets, made
    # the errors of all subsets alike: Borehole's largest Shapley error went from
    # 0.037 to 0.073 over 20 seeds.)
    def rows(n: int) -> NDArray[np.intp]:
        if n >= N:
            return np.arange(N, dtype=np.intp)
        return np.sort(rng.choice(N, size=n, replace=False)).astype(np.intp)

    base_rows = rows(max_queries)
    plan: dict[int, NDArray[np.intp]] = {full: base_rows}
    for i in range(D):
        plan[1 << i] = base_rows
        if D > 1:
            plan[full & ~(1 << i)] = base_rows
    if shapley and D > 2:
        counts = subset_query_counts(D, budget, N, _MIN_SUBSET_QUERIES)
        for mask in np.flatnonzero(counts):
            plan.setdefault(int(mask), rows(int(counts[mask])))
    masks = sorted(plan)
    parallel = workers != 1 and len(masks) > 4

    def run(mask: int) -> tuple[float, NDArray[np.intp], NDArray[np.float64], float]:
        columns = np.concatenate([cols[i] for i in range(D) if (mask >> i) & 1])
        threads = 1 if parallel else workers
        return _subset_pairs(coords, columns, yc, plan[mask], k, threads, ties, power)

    if parallel:
        with ThreadPoolExecutor(max_workers=None if workers < 1 else workers) as pool:
            found = list(pool.map(run, masks))
    else:
        found = [run(m) for m in masks]
    ev = np.ones(1 << D)  # ev[∅] = 1: the whole variance
    ev[masks] = [f[0] for f in found]
    keys = list(linear)
    out = {key: ev @ linear[key] for key in keys}
    out["noise"] = ev[[full]]
    if not intervals:
        return out, {}
    # Every index is Σ_s coef[s] ev[s] (+ a constant from ev[∅] = 1).
    is_full = (np.array(masks) == full).astype(np.float64)[:, np.newaxis]
    coef = np.hstack([linear[key][masks] for key in keys] + [is_full])
    scale = ev[masks] @ coef
    variance = linearized_variance(
        yc, [(plan[m], f[1], f[2]) for m, f in zip(masks, found, strict=True)], coef, scale
    )
    # The extrapolation to distance 0 is only as good as the line through the
    # neighbours' distances: how far each index moves when only the nearer half of the
    # neighbours is used is added as a bias term. (Less its own noise variance it was
    # too small: Borehole's null total indices were covered in 83 % of 12 seeds.)
    gap = np.array([f[3] for f in found]) @ coef
    variance = variance + gap**2
    sizes = [linear[key].shape[1] for key in keys] + [1]
    se = dict(
        zip([*keys, "noise"], np.split(np.sqrt(variance), np.cumsum(sizes)[:-1]), strict=True)
    )
    return out, se


def _index_maps(D: int, shapley: bool) -> dict[str, NDArray[np.float64]]:
    """Matrices ``(2**D, D)`` taking ``ev`` (indexed by bitmask) to S1, ST and Shapley."""
    full = (1 << D) - 1
    s1 = np.zeros((1 << D, D))
    st = np.zeros((1 << D, D))
    for i in range(D):
        s1[0, i] += 1.0
        s1[1 << i, i] -= 1.0
        st[full & ~(1 << i), i] += 1.0  # the empty subset when D == 1
        st[full, i] -= 1.0
    maps = {"S1": s1, "ST": st}
    if shapley:
        maps["Sh"] = shapley_weights(D).T
    return maps
