"""Borgonovo's moment-independent delta from given data (a SALib wrapper).

- :func:`delta_indices`: SALib's ``delta.analyze``; refused for binary or
  few-valued outcomes, where it is meaningless.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from varirec.analysis.estimators._checks import _check_conf_level, _check_count, _check_outcome
from varirec.analysis.estimators._given_data_inputs import _factor_table
from varirec.analysis.estimators._rng import Seed, _generator
from varirec.analysis.estimators._salib_call import _call_salib, _salib_problem
from varirec.analysis.estimators.results import GivenDataResult

__all__ = ["delta_indices"]

_DELTA_MIN_DISTINCT = 11
"""``delta`` needs an outcome with more distinct values than this minus one."""


def delta_indices(
    X: ArrayLike | pd.DataFrame,
    Y: ArrayLike,
    *,
    factor_names: Sequence[str] | None = None,
    num_resamples: int = 100,
    conf_level: float = 0.95,
    seed: Seed = None,
    outcome: str | None = None,
    num_dummies: int = 3,
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
        num_dummies: random columns, independent of ``Y``, estimated in the same call
            (each costs what a factor does); a factor is ``significant`` where its
            interval lies above every dummy's (``dummy_threshold``: their highest
            upper end). 0: no verdict.

    Returns:
        A :class:`~varirec.analysis.estimators.results.GivenDataResult` with index ``"delta"``.

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
    num_dummies = _check_count(num_dummies, "num_dummies", 0, "pass e.g. 3, or 0")
    conf_level = _check_conf_level(conf_level)
    rng, int_seed = _generator(seed)
    notes: list[str] = []

    from SALib.analyze import delta

    # Dummy columns, independent of Y, go through the same call: delta is biased
    # upward (a factor without effect scored 0.06-0.08 at N = 2000), so a factor is
    # significant only where its interval lies above every dummy's.
    dummies = rng.random((N, num_dummies))
    x = np.column_stack([*table.values, *dummies.T])
    salib_seed = int(rng.integers(1, 2**31 - 1))  # SALib ignores a falsy seed
    si = _call_salib(
        delta.analyze,
        notes,
        _salib_problem(D + num_dummies),
        x,
        y,
        num_resamples=num_resamples,
        conf_level=conf_level,
        seed=salib_seed,
        method="delta",
    )
    for j, note in enumerate(si.get("notes", [])[:D]):
        if note:
            notes.append(f"{table.names[j]}: {note}")
    every = np.asarray(si["delta_raw"], dtype=np.float64)
    every_conf = np.asarray(si["delta_raw_conf"], dtype=np.float64)
    estimate, conf = every[:D], every_conf[:D]
    threshold = None
    significant = None
    if num_dummies:
        threshold = float((every[D:] + every_conf[D:]).max())
        significant = estimate - conf > threshold
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
        extra={"delta_balanced": np.asarray(si["delta_balanced"], dtype=np.float64)[:D]},
        significant=significant,
        dummy_threshold=threshold,
    )
