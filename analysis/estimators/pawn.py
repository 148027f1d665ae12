"""The moment-independent PAWN index from given data (a SALib wrapper).

- :func:`pawn_indices`: SALib's ``pawn.analyze`` (median KS distance over slices)
  with dummy factors for a significance threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from varirec.analysis.estimators._checks import _check_conf_level, _check_count, _check_outcome
from varirec.analysis.estimators._given_data_inputs import (
    _factor_table,
    _outcome_notes,
    _refuse_constant,
)
from varirec.analysis.estimators._rng import Seed, _generator
from varirec.analysis.estimators._salib_call import _call_salib, _salib_problem
from varirec.analysis.estimators.results import GivenDataResult

__all__ = ["pawn_indices"]

_EXTRA_KEYS = ("minimum", "mean", "maximum", "CV")
"""SALib's PAWN statistics kept as extra rows besides the median."""


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

    Factors with at most ``num_slices`` distinct values are not estimated (NaN
    estimate, ``significant`` False, and a note): SALib's slices are half-open
    (``q_s <= x < q_{s+1}``), so the top level of such a factor falls in no slice
    and the index would depend on which level is on top. Use
    :func:`first_order_binning` for few-valued factors.

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
        A :class:`~varirec.analysis.estimators.results.GivenDataResult` with index
        ``"pawn_median"``.

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

    # SALib's slices are X_q[s] <= x < X_q[s+1]: on a factor with few distinct values the
    # top level falls in no slice, and the index depends on which level is on top.
    few = [j for j, col in enumerate(table.values) if np.unique(col).size <= num_slices]
    used = [j for j in range(D) if j not in few]
    estimate = np.full(D, np.nan)
    extra = {f"pawn_{key.lower()}": np.full(D, np.nan) for key in _EXTRA_KEYS}
    if used:
        x = np.column_stack([table.values[j] for j in used])
        si = _call_salib(
            pawn.analyze, notes, _salib_problem(len(used)), x, y, S=num_slices, seed=None
        )
        estimate[used] = np.asarray(si["median"], dtype=np.float64)
        for key in _EXTRA_KEYS:
            extra[f"pawn_{key.lower()}"][used] = np.asarray(si[key], dtype=np.float64)
    if few:
        listed = ", ".join(table.names[j] for j in few)
        notes.append(
            f"{listed}: at most num_slices={num_slices} distinct values, so PAWN's slices "
            'would drop the top level; not estimated (NaN). Use method="binning" for '
            "few-valued factors."
        )
    threshold = dummy_est = significant = None
    if num_dummies:
        dummies = rng.random((N, num_dummies))
        sd = _call_salib(
            pawn.analyze, notes, _salib_problem(num_dummies), dummies, y, S=num_slices, seed=None
        )
        dummy_est = np.asarray(sd["median"], dtype=np.float64)
        threshold = float(np.quantile(dummy_est, conf_level))
        significant = np.zeros(D, dtype=np.bool_)
        significant[used] = estimate[used] > threshold
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
        conf=np.full(D, np.nan),
        conf_low=np.full(D, np.nan),
        conf_high=np.full(D, np.nan),
        significant=significant,
        dummy_threshold=threshold,
        dummy_estimates=dummy_est,
        extra=extra,
        not_estimated={
            table.names[j]: f"at most {num_slices} distinct values; use --method binning"
            for j in few
        },
    )
