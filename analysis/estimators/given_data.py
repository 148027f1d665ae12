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
- :func:`default_num_bins`: the default number of bins of the binning estimator.

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
below ``1 - conf_level``. Binning without resamples gives no verdict (``None``);
PAWN does not estimate factors with at most ``num_slices`` distinct values (NaN).

The estimators live in :mod:`varirec.analysis.estimators.binning`,
:mod:`varirec.analysis.estimators.rbd_fast`,
:mod:`varirec.analysis.estimators.pawn` and :mod:`varirec.analysis.estimators.delta`; they are
re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import pandas as pd
from numpy.typing import ArrayLike

from varirec.analysis.estimators.binning import default_num_bins, first_order_binning
from varirec.analysis.estimators.delta import delta_indices
from varirec.analysis.estimators.pawn import pawn_indices
from varirec.analysis.estimators.rbd_fast import rbd_fast_indices
from varirec.analysis.estimators.results import GivenDataResult

__all__ = [
    "default_num_bins",
    "delta_indices",
    "first_order_binning",
    "given_data_indices",
    "pawn_indices",
    "rbd_fast_indices",
]

GivenDataMethod = Literal["binning", "rbd_fast", "pawn", "delta"]

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
