"""Shapley effects from closed indices over subsets of factors.

- :func:`shapley_weights`: the ``(D, 2**D)`` matrix ``W`` with
  ``Sh = W @ ev``, where ``ev[mask] = E[Var(Y | X_mask)] / Var(Y)`` (``mask`` a
  bitmask over factors, ``ev[0] = 1``).
- :func:`subset_query_counts`: how many rows to query per subset given a budget (the
  allocation of Broto, Bachoc & Depecker 2020).

The estimator that uses them is :func:`varirec.analysis.estimators.knn_total.knn_indices`.

References:
    Owen, A. B. (2014). Sobol' indices and Shapley value. SIAM/ASA Journal on
    Uncertainty Quantification 2(1), 245-251. doi:10.1137/130936233

    Song, E., Nelson, B. L., Staum, J. (2016). Shapley effects for global
    sensitivity analysis: theory and computation. SIAM/ASA Journal on Uncertainty
    Quantification 4(1), 1060-1083. doi:10.1137/15M1048070

    Broto, B., Bachoc, F., Depecker, M. (2020). Variance reduction for estimation of
    Shapley effects and adaptation to unknown input distribution. SIAM/ASA Journal
    on Uncertainty Quantification 8(2), 693-716. doi:10.1137/18M1234631
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

__all__ = ["MAX_SHAPLEY_FACTORS", "shapley_weights", "subset_query_counts"]

MAX_SHAPLEY_FACTORS = 12
"""Exact Shapley effects need all ``2**D`` subsets; above this, group factors."""


def _popcount(masks: NDArray[np.int64]) -> NDArray[np.int64]:
    bits = np.zeros_like(masks)
    m = masks.copy()
    while m.any():
        bits += m & 1
        m >>= 1
    return bits


def shapley_weights(num_factors: int) -> NDArray[np.float64]:
    """``W`` such that the Shapley effects are ``W @ ev`` (``ev`` indexed by bitmask).

    With the cost ``c(s) = E[Var(Y | X_s)] / Var(Y)`` (Song et al. 2016 show it gives
    the same effects as the explained variance), factor ``i``'s effect is
    ``Σ_{s ∌ i} |s|! (D - |s| - 1)! / D! · (c(s) - c(s ∪ {i}))``. The effects sum to
    ``1 - c(all)``: the share of ``Var(Y)`` that the factors explain.

    Example:
        >>> import numpy as np
        >>> ev = np.array([1.0, 0.6, 0.7, 0.0])  # Y = X1 + X2, Var X1 = 0.4, Var X2 = 0.3
        >>> (shapley_weights(2) @ ev).round(3).tolist()
        [0.55, 0.45]
    """
    D = int(num_factors)
    masks = np.arange(1 << D, dtype=np.int64)
    sizes = _popcount(masks)
    W = np.zeros((D, masks.size))
    fact = [math.factorial(n) for n in range(D + 1)]
    for i in range(D):
        bit = 1 << i
        without = masks[(masks & bit) == 0]
        w = np.array([fact[s] * fact[D - s - 1] / fact[D] for s in range(D)])[sizes[without]]
        np.add.at(W[i], without, w)
        np.add.at(W[i], without | bit, -w)
    return W


def subset_query_counts(
    num_factors: int, budget: int, num_rows: int, floor: int
) -> NDArray[np.int64]:
    """Query rows per subset bitmask: ``budget / ((D - 1) C(D, |s|))``, within limits.

    Broto et al. (2020) show that spreading a budget evenly over subset sizes, and
    evenly over the subsets of one size, minimizes the variance of the Shapley
    estimate; a size has as much weight in each effect as any other. The empty and
    full subsets get 0 here (the caller handles them), the others at least ``floor``
    and at most ``num_rows``.

    Example:
        >>> subset_query_counts(3, 6000, 20_000, 50).tolist()
        [0, 1000, 1000, 1000, 1000, 1000, 1000, 0]
    """
    D = int(num_factors)
    masks = np.arange(1 << D, dtype=np.int64)
    sizes = _popcount(masks)
    per_size = np.array([math.comb(D, s) for s in range(D + 1)], dtype=np.float64)
    n = np.ceil(budget / (max(D - 1, 1) * per_size[sizes])).astype(np.int64)
    n = np.clip(n, floor, num_rows)
    n[(sizes == 0) | (sizes == D)] = 0
    return n
