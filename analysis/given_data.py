"""Sensitivity indices from plain random draws (no design), with a dummy-factor test.

Contents:

- :func:`first_order_binning`: first-order Sobol' index by equal-frequency binning
  (bias-corrected correlation ratio), vectorized bootstrap intervals, a dummy-factor
  significance threshold and the outcome's noise share. The default for recorded
  episodes: fast, and meaningful for binary success outcomes.
- :func:`rbd_fast_indices`: first-order index by RBD-FAST (SALib).
- :func:`pawn_indices`: the moment-independent PAWN index (SALib).
- :func:`delta_indices`: Borgonovo's delta (SALib); refused for binary or
  few-valued outcomes, where it is meaningless.
- :func:`given_data_indices`: one entry point, ``method=`` selecting the above.

``X`` is a 2-D numeric array or a :class:`pandas.DataFrame` (one column per factor;
non-numeric columns are categorical, binning only). ``Y`` has one finite value per
row. SALib's analyzers are called with numpy's global RNG state saved and
restored, and with their warnings turned into ``notes`` (and log records).

Dummy factors: ``num_dummies`` random columns, independent of ``Y`` and not in the
data, go through the same estimator. Their estimates sample the estimator's null
distribution at this ``N`` and this outcome, and ``dummy_threshold`` is their
``conf_level`` quantile (Khorashadi Zadeh et al. 2017). A factor is
``significant`` when its lower interval bound exceeds the threshold (its estimate,
for PAWN, which has no interval): a null factor is flagged with probability well
below ``1 - conf_level``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from scipy.stats import rankdata

from analysis.results import (
    _CHUNK_ELEMENTS,
    GivenDataResult,
    Seed,
    _bootstrap_summary,
    _check_conf_level,
    _check_count,
    _check_factor_names,
    _check_num_resamples,
    _check_outcome,
    _generator,
    _global_rng_untouched,
    _resample_counts,
)

__all__ = [
    "default_num_bins",
    "delta_indices",
    "first_order_binning",
    "given_data_indices",
    "pawn_indices",
    "rbd_fast_indices",
]

logger = logging.getLogger(__name__)

GivenDataMethod = Literal["binning", "rbd_fast", "pawn", "delta"]

_MIN_ROWS = 10
_DELTA_MIN_DISTINCT = 11
"""``delta`` needs an outcome with more distinct values than this minus one."""
_NOISE_MAX_FACTORS = 6
"""Above this many significant factors the nearest-neighbour noise share is loose."""


def default_num_bins(num_rows: int) -> int:
    """Equal-frequency bins ``M = min(ceil(N^(2 / (7 + tanh((1500 - N) / 500)))), 48)``.

    The rule of Plischke, Borgonovo & Smith (2013), also used by SALib's ``delta``:
    about ``N^(1/3)`` bins for large ``N`` (28 at N=20,000), fewer for small ``N``.

    Example:
        >>> default_num_bins(1000), default_num_bins(20_000)
        (6, 28)
    """
    exponent = 2.0 / (7.0 + math.tanh((1500.0 - num_rows) / 500.0))
    return int(min(math.ceil(num_rows**exponent), 48))


# --------------------------------------------------------------------------------------
# Binning (correlation ratio)
# --------------------------------------------------------------------------------------


def first_order_binning(
    X: ArrayLike | pd.DataFrame,
    Y: ArrayLike,
    *,
    factor_names: Sequence[str] | None = None,
    num_bins: int | None = None,
    num_resamples: int = 500,
    conf_level: float = 0.95,
    seed: Seed = None,
    num_dummies: int = 200,
    noise_share: bool = True,
    outcome: str | None = None,
) -> GivenDataResult:
    """First-order Sobol' indices from given data by equal-frequency binning.

    Each factor's values are cut into ``M`` bins of (nearly) equal counts (ties
    kept in one bin); a factor with at most ``M`` distinct values (an integer or
    categorical factor, e.g. the scene) is binned by its values instead. With the
    bin means ``ȳ_m`` and counts ``n_m``, ``SS_b = Σ n_m (ȳ_m - ȳ)²`` estimates
    ``N·Var(E[Y|X_i])`` with an upward bias of about ``(M - 1)`` within-bin
    variances, which is removed (Kelley's epsilon²)::

        S1_i = (SS_b - (M - 1) · SS_w / (N - M)) / SS_total

    so a null factor scores about 0 (sometimes slightly below; not clipped) rather
    than ``(M - 1) / N``. Continuous factors lose the within-bin variation of
    ``E[Y|X_i]`` (about ``1/M²`` of a linear effect).

    Intervals: percentile bounds over ``num_resamples`` bootstrap resamples of the
    rows with the bins held fixed; all factors and resamples are one sparse
    product ``bins × counts`` per block of resamples. Rows drawn twice defeat the
    bias correction inside a resample (resampled values sit about ``(M - 1) / N``
    too high), so the resampled values are re-centred on the estimate before the
    quantiles are taken. ``conf`` is ``Z × SD``.

    Dummy threshold: ``num_dummies`` random equal-frequency ``M``-bin factors
    (random permutations of the bin labels, independent of ``Y``) are estimated the
    same way; ``dummy_threshold`` is the ``conf_level`` quantile of their estimates
    and a factor is ``significant`` when ``conf_low > dummy_threshold`` (its
    estimate, if ``num_resamples=0``). Few-level factors have a smaller null spread
    than ``M``-bin dummies, so the rule is conservative for them.

    Noise share (``noise_share=True``): the part of ``Var(Y)`` that the
    significant factors, jointly and with their interactions, do not explain:
    ``E[Var(Y | X_S)] / Var(Y)``, estimated by the nearest-neighbour difference
    estimator ``mean((Y_i - Y_nn(i))²) / 2`` on the rank-transformed significant
    factors, with few-level factors matched exactly (Devroye et al. 2018). For a
    binary outcome ``Y ~ Bernoulli(p(X))`` it estimates
    ``E[p(1 - p)] / Var(Y) = 1 - Var(p(X)) / Var(Y)``, the episode noise no factor
    can remove. Neighbours are not exact matches on continuous factors, so the
    estimate errs high (more noise) when many factors matter; factors that act
    only through interactions (``S1 ≈ 0``) count as noise. Its interval resamples
    the connected components of the nearest-neighbour graph (a cluster bootstrap:
    given ``X``, terms of different components are independent).

    Args:
        X: ``(N, D)`` factor values: numeric array or DataFrame.
        Y: ``N`` outcome values (0/1 success, a rate, a return...); finite.
        factor_names: ``D`` names (default: DataFrame columns, else ``x1..xD``).
        num_bins: ``M`` (default :func:`default_num_bins` of ``N``).
        num_resamples: Bootstrap resamples (0: no intervals).
        conf_level: Confidence level of intervals and threshold quantile.
        seed: An int (``0`` included), a :class:`numpy.random.Generator` or ``None``.
        num_dummies: Dummy factors for the threshold (0: no threshold).
        noise_share: Whether to estimate the noise share.
        outcome: Name of the outcome, recorded in the result.

    Returns:
        A :class:`~analysis.results.GivenDataResult` with index ``"S1_binning"``.

    References:
        Plischke, E., Borgonovo, E., Smith, C. L. (2013). Global sensitivity measures
        from given data. European Journal of Operational Research 226(3), 536-550.
        doi:10.1016/j.ejor.2012.11.047

        Kelley, T. L. (1935). An unbiased correlation ratio measure. Proceedings of
        the National Academy of Sciences 21(9), 554-559. doi:10.1073/pnas.21.9.554

        Khorashadi Zadeh, F., Nossent, J., Sarrazin, F., Pianosi, F., van Griensven,
        A., Wagener, T., Bauwens, W. (2017). Comparison of variance-based and
        moment-independent global sensitivity analysis approaches by application to
        the SWAT model. Environmental Modelling & Software 91, 210-222.
        doi:10.1016/j.envsoft.2017.02.001

        Devroye, L., Györfi, L., Lugosi, G., Walk, H. (2018). A nearest neighbor
        estimate of the residual variance. Electronic Journal of Statistics 12(1),
        1752-1778. doi:10.1214/18-EJS1438

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.random((5000, 3))
        >>> p = 0.2 + 0.6 * X[:, 0]  # success probability; x2, x3 do nothing
        >>> Y = (rng.random(5000) < p).astype(float)
        >>> res = first_order_binning(X, Y, seed=0, num_resamples=200)
        >>> res.significant.tolist()
        [True, False, False]
        >>> round(float(res.estimate[0]), 1), round(res.noise_share, 1)
        (0.1, 0.9)
    """
    y = _check_outcome(Y)
    table = _factor_table(X, factor_names, y.size)
    N, D = y.size, len(table.names)
    M = (
        default_num_bins(N)
        if num_bins is None
        else _check_count(
            num_bins, "num_bins", 2, "pass e.g. num_bins=20 or None for the default rule"
        )
    )
    num_resamples = _check_num_resamples(num_resamples)
    conf_level = _check_conf_level(conf_level)
    num_dummies = _check_count(num_dummies, "num_dummies", 0, "pass e.g. 200, or 0")
    rng, int_seed = _generator(seed)
    yc = _standardized(y)
    notes = _outcome_notes(y)

    labels, sizes, exact = zip(
        *(
            _bin_labels(col, cat, M)
            for col, cat in zip(table.values, table.categorical, strict=True)
        ),
        strict=True,
    )
    sizes_arr = np.asarray(sizes, dtype=np.int_)
    for name, size, is_exact in zip(table.names, sizes, exact, strict=True):
        if size == 1:
            notes.append(f"{name}: constant in the data; its index is 0 by construction.")
        elif is_exact:
            notes.append(f"{name}: binned by its {size} distinct values.")
    bins = _BinIndex.build(labels, sizes_arr, N)

    estimate = bins.s1(np.ones((1, N)), yc)[0]
    conf = low = high = np.full(D, np.nan)
    significant = None
    threshold = None
    dummy_est = None
    if num_dummies:
        dummy_est = _binning_dummies(yc, M, num_dummies, rng)
        threshold = float(np.quantile(dummy_est, conf_level))

    if num_resamples:
        boot = np.empty((num_resamples, D))
        start = 0
        for counts in _resample_counts(rng, N, num_resamples):
            boot[start : start + counts.shape[0]] = bins.s1(counts, yc)
            start += counts.shape[0]
        # Duplicated rows defeat the (M-1)·MS_within correction inside a resample, which
        # shifts resampled values up by about (M-1)/N: re-centre them on the estimate.
        boot += estimate - boot.mean(axis=0)
        conf, low, high = _bootstrap_summary(boot, conf_level)
    else:
        notes.append("num_resamples=0: no confidence intervals were computed.")

    if threshold is not None:
        lower = low if num_resamples else estimate
        significant = lower > threshold

    share = share_low = share_high = None
    if noise_share:
        if significant is not None:
            selected = [j for j in range(D) if significant[j]]
        else:
            selected = list(range(D))
            notes.append("noise_share: no dummies, so all factors were used.")
        if selected:
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
        else:
            share, share_low, share_high = 1.0, 1.0, 1.0
            notes.append("noise_share: no factor is significant, so all variance is noise.")

    logger.debug("first_order_binning: N=%d D=%d M=%d R=%d", N, D, M, num_resamples)
    return GivenDataResult(
        method="binning",
        factor_names=table.names,
        num_samples=N,
        num_evaluations=N,
        outcome=outcome,
        conf_level=conf_level,
        num_resamples=num_resamples,
        seed=int_seed,
        notes=notes,
        index="S1_binning",
        estimate=estimate,
        conf=conf,
        conf_low=low,
        conf_high=high,
        significant=significant,
        dummy_threshold=threshold,
        dummy_estimates=dummy_est,
        noise_share=share,
        noise_share_conf_low=share_low,
        noise_share_conf_high=share_high,
        num_bins=sizes_arr,
    )


@dataclass(frozen=True)
class _BinIndex:
    """Bins of all factors as one sparse ``(2K, N)`` matrix ``[indicator; indicator·y]``.

    Built per outcome; :meth:`s1` evaluates the corrected correlation ratio of all
    factors for a block of count rows (one row per resample, or ones for the data).
    """

    indicator: sparse.csr_matrix
    starts: NDArray[np.intp]
    num_bins_total: int
    num_rows: int

    @classmethod
    def build(
        cls, labels: Sequence[NDArray[np.intp]], sizes: NDArray[np.int_], num_rows: int
    ) -> _BinIndex:
        starts = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.intp)
        cols = np.concatenate([lab + s for lab, s in zip(labels, starts, strict=True)])
        rows = np.tile(np.arange(num_rows), len(labels))
        K = int(sizes.sum())
        ind = sparse.csr_matrix(
            (np.ones(cols.size), (cols, rows)), shape=(K, num_rows), dtype=np.float64
        )
        return cls(indicator=ind, starts=starts, num_bins_total=K, num_rows=num_rows)

    def s1(self, counts: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
        """Corrected correlation ratios, shape ``(len(counts), D)``."""
        n_bins = np.asarray(self.indicator @ counts.T).T  # (R, K)
        s_bins = np.asarray(self.indicator @ (counts * y).T).T
        sy = counts @ y
        sy2 = counts @ (y * y)
        return _corrected_ratio(n_bins, s_bins, sy, sy2, self.starts, self.num_rows)


def _corrected_ratio(
    n_bins: NDArray[np.float64],
    s_bins: NDArray[np.float64],
    sy: NDArray[np.float64],
    sy2: NDArray[np.float64],
    starts: NDArray[np.intp],
    N: int,
) -> NDArray[np.float64]:
    """``(SS_b - (M-1) SS_w / (N-M)) / SS_t`` per row and factor from bin sums."""
    occupied = n_bins > 0
    contrib = np.divide(s_bins * s_bins, n_bins, out=np.zeros_like(s_bins), where=occupied)
    grand = sy * sy / N
    between = np.add.reduceat(contrib, starts, axis=1) - grand[:, np.newaxis]
    total = (sy2 - grand)[:, np.newaxis]
    m_eff = np.add.reduceat(occupied, starts, axis=1).astype(np.float64)
    within = total - between
    ms_within = within / np.maximum(N - m_eff, 1.0)
    corrected = between - (m_eff - 1.0) * ms_within
    return np.divide(
        corrected,
        np.broadcast_to(total, corrected.shape),
        out=np.zeros_like(corrected),
        where=total > 1e-12 * N,
    )


def _binning_dummies(
    y: NDArray[np.float64], M: int, num_dummies: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Estimates of ``num_dummies`` random ``M``-bin equal-frequency factors."""
    N = y.size
    base = (np.arange(N) * M) // N
    out = np.empty(num_dummies)
    block = max(1, _CHUNK_ELEMENTS // N)
    sy, sy2 = np.array([y.sum()]), np.array([(y * y).sum()])
    for d0 in range(0, num_dummies, block):
        k = min(block, num_dummies - d0)
        lab = rng.permuted(np.broadcast_to(base, (k, N)), axis=1)
        lab += (np.arange(k) * M)[:, np.newaxis]
        n_bins = np.bincount(lab.ravel(), minlength=k * M).astype(np.float64)
        s_bins = np.bincount(lab.ravel(), weights=np.tile(y, k), minlength=k * M)
        starts = np.arange(k, dtype=np.intp) * M
        out[d0 : d0 + k] = _corrected_ratio(
            n_bins[np.newaxis], s_bins[np.newaxis], sy, sy2, starts, N
        )[0]
    return out


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


# --------------------------------------------------------------------------------------
# SALib given-data analyzers
# --------------------------------------------------------------------------------------


def rbd_fast_indices(
    X: ArrayLike | pd.DataFrame,
    Y: ArrayLike,
    *,
    factor_names: Sequence[str] | None = None,
    num_harmonics: int = 10,
    num_resamples: int = 100,
    conf_level: float = 0.95,
    seed: Seed = None,
    num_dummies: int = 20,
    outcome: str | None = None,
) -> GivenDataResult:
    """First-order indices by RBD-FAST (SALib ``rbd_fast.analyze``) from given data.

    Rows are reordered along a search curve in each factor (Plischke 2010), the
    output's power spectrum is taken, and the share of the first ``num_harmonics``
    harmonics is the first-order index, bias-corrected (Tissot & Prieur 2012).
    ``conf`` is SALib's ``Z × SD`` over resamples of *half* the rows, so the
    interval ``estimate ± conf`` is conservative (about √2 too wide). Dummy
    factors (uniform random columns) give ``dummy_threshold``; ``significant`` is
    ``conf_low > dummy_threshold``. Only numeric factors.

    Args:
        X: ``(N, D)`` numeric factor values (array or DataFrame).
        Y: ``N`` finite outcome values.
        factor_names: ``D`` names (default: DataFrame columns, else ``x1..xD``).
        num_harmonics: ``M``, the harmonics counted as the factor's signal.
        num_resamples: SALib's bootstrap resamples (>= 2).
        conf_level: Confidence level.
        seed: An int (``0`` included), a :class:`numpy.random.Generator` or ``None``.
        num_dummies: Dummy factors for the threshold (0: none).
        outcome: Name of the outcome, recorded in the result.

    Returns:
        A :class:`~analysis.results.GivenDataResult` with index ``"S1_rbd_fast"``.

    References:
        Tarantola, S., Gatelli, D., Mara, T. A. (2006). Random balance designs for
        the estimation of first order global sensitivity indices. Reliability
        Engineering & System Safety 91(6), 717-727. doi:10.1016/j.ress.2005.06.003

        Plischke, E. (2010). An effective algorithm for computing global
        sensitivity indices (EASI). Reliability Engineering & System Safety 95(4),
        354-360. doi:10.1016/j.ress.2009.11.005

        Tissot, J.-Y., Prieur, C. (2012). Bias correction for the estimation of
        sensitivity indices based on random balance designs. Reliability
        Engineering & System Safety 107, 205-213. doi:10.1016/j.ress.2012.06.010

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.random((2000, 3))
        >>> res = rbd_fast_indices(X, X[:, 0] + 0.5 * X[:, 1], seed=0)
        >>> res.estimate.round(1).tolist(), res.significant.tolist()
        ([0.8, 0.2, 0.0], [True, True, False])
    """
    y = _check_outcome(Y)
    table = _factor_table(X, factor_names, y.size, numeric_only="rbd_fast")
    N, D = y.size, len(table.names)
    num_harmonics = _check_count(num_harmonics, "num_harmonics", 1, "pass e.g. 10")
    if 2 * num_harmonics >= N // 2:
        raise ValueError(
            f"`num_harmonics` must be below N/4 = {N // 4} for N={N} rows, got "
            f"{num_harmonics}; pass fewer harmonics or more rows"
        )
    num_resamples = _check_count(num_resamples, "num_resamples", 2, "pass e.g. 100")
    conf_level = _check_conf_level(conf_level)
    num_dummies = _check_count(num_dummies, "num_dummies", 0, "pass e.g. 20, or 0")
    rng, int_seed = _generator(seed)
    _refuse_constant(y)
    notes = _outcome_notes(y)

    from SALib.analyze import rbd_fast

    x = np.column_stack(table.values)
    si = _call_salib(
        rbd_fast.analyze,
        notes,
        _salib_problem(D),
        x,
        y,
        M=num_harmonics,
        num_resamples=num_resamples,
        conf_level=conf_level,
        seed=rng,
    )
    estimate = np.asarray(si["S1"], dtype=np.float64)
    conf = np.asarray(si["S1_conf"], dtype=np.float64)
    low, high = estimate - conf, estimate + conf
    threshold = dummy_est = significant = None
    if num_dummies:
        dummies = rng.random((N, num_dummies))
        sd = _call_salib(
            rbd_fast.analyze,
            notes,
            _salib_problem(num_dummies),
            dummies,
            y,
            M=num_harmonics,
            num_resamples=2,
            conf_level=conf_level,
            seed=rng,
        )
        dummy_est = np.asarray(sd["S1"], dtype=np.float64)
        threshold = float(np.quantile(dummy_est, conf_level))
        significant = low > threshold
    return GivenDataResult(
        method="rbd_fast",
        factor_names=table.names,
        num_samples=N,
        num_evaluations=N,
        outcome=outcome,
        conf_level=conf_level,
        num_resamples=num_resamples,
        seed=int_seed,
        notes=notes,
        index="S1_rbd_fast",
        estimate=estimate,
        conf=conf,
        conf_low=low,
        conf_high=high,
        significant=significant,
        dummy_threshold=threshold,
        dummy_estimates=dummy_est,
    )


def pawn_indices(
    X: ArrayLike | pd.DataFrame,
    Y: ArrayLike,
    *,
    factor_names: Sequence[str] | None = None,
    num_slices: int = 10,
    seed: Seed = None,
    num_dummies: int = 20,
    conf_level: float = 0.95,
    outcome: str | None = None,
) -> GivenDataResult:
    """The PAWN index (SALib ``pawn.analyze``): how far conditioning moves Y's CDF.

    Each factor's range is cut into ``num_slices`` equal-count slices; in each, the
    Kolmogorov-Smirnov distance between the conditional and the unconditional
    empirical CDF of ``Y`` is taken, and the median over slices is the index
    (``"pawn_median"``; min, mean, max and CV are kept as extra rows). On a binary
    outcome the KS distance is the gap between the slice's and the overall success
    rate. KS distances are positive even for null factors, so dummy factors
    (uniform random columns, ``num_dummies``) give ``dummy_threshold``, the
    ``conf_level`` quantile of their medians; ``significant`` is
    ``estimate > dummy_threshold`` (PAWN has no interval here). ``seed`` only
    draws the dummies; SALib's PAWN is deterministic and is not given a seed (it
    would reseed numpy's global RNG). Only numeric factors.

    Args:
        X: ``(N, D)`` numeric factor values (array or DataFrame).
        Y: ``N`` finite outcome values.
        factor_names: ``D`` names (default: DataFrame columns, else ``x1..xD``).
        num_slices: Conditioning slices per factor.
        seed: An int (``0`` included), a :class:`numpy.random.Generator` or ``None``.
        num_dummies: Dummy factors for the threshold (0: none).
        conf_level: Quantile of the dummy medians used as threshold.
        outcome: Name of the outcome, recorded in the result.

    Returns:
        A :class:`~analysis.results.GivenDataResult` with index ``"pawn_median"``.

    References:
        Pianosi, F., Wagener, T. (2015). A simple and efficient method for global
        sensitivity analysis based on cumulative distribution functions.
        Environmental Modelling & Software 67, 1-11.
        doi:10.1016/j.envsoft.2015.01.004

        Pianosi, F., Wagener, T. (2018). Distribution-based sensitivity analysis
        from a generic input-output sample. Environmental Modelling & Software 108,
        197-207. doi:10.1016/j.envsoft.2018.07.019

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.random((2000, 3))
        >>> res = pawn_indices(X, X[:, 0] + 0.5 * X[:, 1], seed=0)
        >>> [res.factor_names[j] for j in np.argsort(-res.estimate)]
        ['x1', 'x2', 'x3']
    """
    y = _check_outcome(Y)
    table = _factor_table(X, factor_names, y.size, numeric_only="pawn")
    N, D = y.size, len(table.names)
    num_slices = _check_count(num_slices, "num_slices", 2, "pass e.g. 10")
    if 2 * num_slices > N:
        raise ValueError(
            f"`num_slices` must leave at least 2 rows per slice, got {num_slices} slices "
            f"for {N} rows; pass fewer slices"
        )
    num_dummies = _check_count(num_dummies, "num_dummies", 0, "pass e.g. 20, or 0")
    conf_level = _check_conf_level(conf_level)
    rng, int_seed = _generator(seed)
    _refuse_constant(y)
    notes = _outcome_notes(y)

    from SALib.analyze import pawn

    x = np.column_stack(table.values)
    si = _call_salib(pawn.analyze, notes, _salib_problem(D), x, y, S=num_slices, seed=None)
    estimate = np.asarray(si["median"], dtype=np.float64)
    extra = {
        f"pawn_{key.lower()}": np.asarray(si[key], dtype=np.float64)
        for key in ("minimum", "mean", "maximum", "CV")
    }
    threshold = dummy_est = significant = None
    if num_dummies:
        dummies = rng.random((N, num_dummies))
        sd = _call_salib(
            pawn.analyze, notes, _salib_problem(num_dummies), dummies, y, S=num_slices, seed=None
        )
        dummy_est = np.asarray(sd["median"], dtype=np.float64)
        threshold = float(np.quantile(dummy_est, conf_level))
        significant = estimate > threshold
    nan = np.full(D, np.nan)
    return GivenDataResult(
        method="pawn",
        factor_names=table.names,
        num_samples=N,
        num_evaluations=N,
        outcome=outcome,
        conf_level=conf_level,
        num_resamples=0,
        seed=int_seed,
        notes=notes,
        index="pawn_median",
        estimate=estimate,
        conf=nan,
        conf_low=nan,
        conf_high=nan,
        significant=significant,
        dummy_threshold=threshold,
        dummy_estimates=dummy_est,
        extra=extra,
    )


def delta_indices(
    X: ArrayLike | pd.DataFrame,
    Y: ArrayLike,
    *,
    factor_names: Sequence[str] | None = None,
    num_resamples: int = 100,
    conf_level: float = 0.95,
    seed: Seed = None,
    outcome: str | None = None,
) -> GivenDataResult:
    """Borgonovo's moment-independent delta (SALib ``delta.analyze``, method "delta").

    ``delta_i`` is half the expected L1 distance between the density of ``Y`` and
    its density given ``X_i``, estimated by kernel densities within equal-frequency
    classes of ``X_i`` and bias-reduced by bootstrap (Plischke et al. 2013). The
    index is SALib's ``delta_raw``; ``delta_balanced`` is kept as an extra row; the
    interval is ``estimate ± conf``. Slow (minutes for 20,000 rows × 10 factors).

    Refused for a binary or few-valued outcome (at most 10 distinct values): the
    kernel density of a 0/1 outcome is an artefact of the bandwidth, and every
    factor, null ones included, scores about 0.15 there. Use
    :func:`first_order_binning` or :func:`rbd_fast_indices` instead.

    Args:
        X: ``(N, D)`` numeric factor values (array or DataFrame).
        Y: ``N`` finite outcome values, continuous.
        factor_names: ``D`` names (default: DataFrame columns, else ``x1..xD``).
        num_resamples: SALib's bootstrap resamples (>= 2).
        conf_level: Confidence level.
        seed: An int (``0`` included), a :class:`numpy.random.Generator` or ``None``;
            SALib's delta reseeds numpy's global RNG with a value drawn from it, and
            the caller's global state is restored afterwards.
        outcome: Name of the outcome, recorded in the result.

    Returns:
        A :class:`~analysis.results.GivenDataResult` with index ``"delta"``.

    Raises:
        ValueError: ``Y`` has at most 10 distinct values.

    References:
        Borgonovo, E. (2007). A new uncertainty importance measure. Reliability
        Engineering & System Safety 92(6), 771-784. doi:10.1016/j.ress.2006.04.015

        Plischke, E., Borgonovo, E., Smith, C. L. (2013). Global sensitivity measures
        from given data. European Journal of Operational Research 226(3), 536-550.
        doi:10.1016/j.ejor.2012.11.047

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.random((500, 2))
        >>> res = delta_indices(X, X[:, 0] + 0.1 * rng.random(500), num_resamples=10, seed=0)
        >>> bool(res.estimate[0] > res.estimate[1])
        True
        >>> delta_indices(X, (X[:, 0] > 0.5).astype(float))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: `Y` must be continuous for delta, got only 2 distinct values; ...
    """
    y = _check_outcome(Y)
    distinct = np.unique(y).size
    if distinct < _DELTA_MIN_DISTINCT:
        raise ValueError(
            f"`Y` must be continuous for delta, got only {distinct} distinct values; "
            "Borgonovo's delta is meaningless on a binary or few-valued outcome (it scores "
            'every factor, null ones included, near 0.15): use method="binning" or '
            '"rbd_fast" instead'
        )
    table = _factor_table(X, factor_names, y.size, numeric_only="delta")
    N, D = y.size, len(table.names)
    num_resamples = _check_count(num_resamples, "num_resamples", 2, "pass e.g. 100")
    conf_level = _check_conf_level(conf_level)
    rng, int_seed = _generator(seed)
    notes: list[str] = []

    from SALib.analyze import delta

    x = np.column_stack(table.values)
    salib_seed = int(rng.integers(1, 2**31 - 1))  # SALib ignores a falsy seed
    si = _call_salib(
        delta.analyze,
        notes,
        _salib_problem(D),
        x,
        y,
        num_resamples=num_resamples,
        conf_level=conf_level,
        seed=salib_seed,
        method="delta",
    )
    for j, note in enumerate(si.get("notes", [])):
        if note:
            notes.append(f"{table.names[j]}: {note}")
    estimate = np.asarray(si["delta_raw"], dtype=np.float64)
    conf = np.asarray(si["delta_raw_conf"], dtype=np.float64)
    return GivenDataResult(
        method="delta",
        factor_names=table.names,
        num_samples=N,
        num_evaluations=N,
        outcome=outcome,
        conf_level=conf_level,
        num_resamples=num_resamples,
        seed=int_seed,
        notes=notes,
        index="delta",
        estimate=estimate,
        conf=conf,
        conf_low=estimate - conf,
        conf_high=estimate + conf,
        extra={"delta_balanced": np.asarray(si["delta_balanced"], dtype=np.float64)},
    )


_METHODS: dict[str, Callable[..., GivenDataResult]] = {
    "binning": first_order_binning,
    "rbd_fast": rbd_fast_indices,
    "pawn": pawn_indices,
    "delta": delta_indices,
}


def given_data_indices(
    X: ArrayLike | pd.DataFrame,
    Y: ArrayLike,
    *,
    method: GivenDataMethod = "binning",
    **kwargs: Any,
) -> GivenDataResult:
    """Run the given-data estimator ``method`` (keyword arguments are passed on).

    Args:
        X: ``(N, D)`` factor values.
        Y: ``N`` outcome values.
        method: ``"binning"`` (:func:`first_order_binning`, the default),
            ``"rbd_fast"``, ``"pawn"`` or ``"delta"``.
        **kwargs: Keyword arguments of the chosen function.

    Example:
        >>> import numpy as np
        >>> X = np.random.default_rng(0).random((1000, 2))
        >>> given_data_indices(X, X[:, 0], method="pawn", seed=0).index
        'pawn_median'
    """
    try:
        fn = _METHODS[method]
    except KeyError:
        raise ValueError(
            f"`method` must be one of {sorted(_METHODS)}, got {method!r}; "
            'pass e.g. method="binning"'
        ) from None
    return fn(X, Y, **kwargs)


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FactorTable:
    names: tuple[str, ...]
    values: list[NDArray[np.float64]]
    """One float array per factor (category codes for categorical factors)."""
    categorical: list[bool]


def _factor_table(
    X: ArrayLike | pd.DataFrame,
    factor_names: Sequence[str] | None,
    num_rows: int,
    numeric_only: str | None = None,
) -> _FactorTable:
    """Normalize ``X`` to per-factor float columns; refuse NaN and row mismatches."""
    if isinstance(X, pd.DataFrame):
        names = _check_factor_names(
            [str(c) for c in X.columns] if factor_names is None else factor_names, X.shape[1]
        )
        values, categorical = [], []
        for name, column in zip(names, (X.iloc[:, j] for j in range(X.shape[1])), strict=True):
            is_numeric = pd.api.types.is_bool_dtype(column) or (
                pd.api.types.is_numeric_dtype(column)
            )
            if is_numeric:
                values.append(column.to_numpy(dtype=np.float64, na_value=np.nan))
                categorical.append(False)
            else:
                if numeric_only is not None:
                    raise TypeError(
                        f"`X` column {name!r} must be numeric for {numeric_only}, got dtype "
                        f'{column.dtype}; use method="binning", which bins categories'
                    )
                codes, _ = pd.factorize(column, use_na_sentinel=True)
                values.append(np.where(codes < 0, np.nan, codes).astype(np.float64))
                categorical.append(True)
        shape = X.shape
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(
                f"`X` must be 2-D (rows × factors), got shape {arr.shape}; "
                "pass one column per factor"
            )
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise TypeError(
                f"`X` must be numeric, got dtype {arr.dtype}; pass a DataFrame to use "
                "categorical columns"
            )
        names = _check_factor_names(factor_names, arr.shape[1])
        values = [arr[:, j].astype(np.float64) for j in range(arr.shape[1])]
        categorical = [False] * arr.shape[1]
        shape = arr.shape
    if shape[0] != num_rows:
        raise ValueError(
            f"`X` must have one row per value of `Y` ({num_rows}), got {shape[0]} rows; "
            "pass matching rows"
        )
    if shape[1] == 0:
        raise ValueError("`X` must have at least one factor column, got 0; pass the factors")
    if num_rows < _MIN_ROWS:
        raise ValueError(
            f"`Y` must have at least {_MIN_ROWS} rows for given-data indices, got "
            f"{num_rows}; record more episodes"
        )
    for name, col in zip(names, values, strict=True):
        bad = np.flatnonzero(~np.isfinite(col))
        if bad.size:
            raise ValueError(
                f"`X` column {name!r} must be finite, got {bad.size} NaN/inf value(s) at rows "
                f"{bad[:10].tolist()}; drop those rows or fill the values"
            )
    return _FactorTable(names=names, values=values, categorical=categorical)


def _bin_labels(
    values: NDArray[np.float64], categorical: bool, M: int
) -> tuple[NDArray[np.intp], int, bool]:
    """Bin labels ``0..size-1``, ``size`` and whether bins are the distinct values."""
    uniq, inverse = np.unique(values, return_inverse=True)
    if categorical or uniq.size <= M:
        return inverse.astype(np.intp), int(uniq.size), True
    N = values.size
    ranks = rankdata(values, method="min").astype(np.int64) - 1  # ties share a bin
    _, labels = np.unique((ranks * M) // N, return_inverse=True)
    return labels.astype(np.intp), int(labels.max()) + 1, False


def _standardized(y: NDArray[np.float64]) -> NDArray[np.float64]:
    _refuse_constant(y)
    return (y - y.mean()) / y.std()


def _refuse_constant(y: NDArray[np.float64]) -> None:
    if not np.ptp(y) > 0.0:
        raise ValueError(
            f"`Y` must vary, got the constant value {y[0]!r} in all {y.size} rows; "
            "sensitivity indices are undefined for a constant outcome"
        )


def _outcome_notes(y: NDArray[np.float64]) -> list[str]:
    if np.unique(y).size == 2:
        return [
            "binary outcome: episode noise caps what factors can explain; first-order "
            "indices are small, read them beside noise_share."
        ]
    return []


def _salib_problem(num_vars: int) -> dict[str, Any]:
    """A problem with neutral names (SALib refuses some suffixes, e.g. ``_conf``)."""
    return {
        "num_vars": num_vars,
        "names": [f"f{j}" for j in range(num_vars)],
        "bounds": [[0.0, 1.0]] * num_vars,
    }


def _call_salib(fn: Callable[..., Any], notes: list[str], *args: Any, **kwargs: Any) -> Any:
    """Call a SALib analyzer with the global RNG, warning filters and format restored.

    SALib's warnings become notes (and log records) instead of escaping.
    """
    formatwarning = warnings.formatwarning
    try:
        with _global_rng_untouched(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = fn(*args, **kwargs)
    finally:
        warnings.formatwarning = formatwarning
    for message in dict.fromkeys(str(w.message) for w in caught):
        logger.warning("SALib %s: %s", getattr(fn, "__module__", ""), message)
        notes.append(f"SALib: {message}")
    return result
