"""Standard errors of the nearest-neighbour indices, from their neighbour pairs (private).

- :func:`linearized_variance`: the variance of linear combinations of the subsets'
  conditional variances divided by ``Var(Y)``, from the per-pair terms behind them.

Every index is ``Σ_s C[s] · E_s / V``: ``E_s`` a weighted mean of ``(y_i - y_j)² / 2``
over neighbour pairs ``(i, j)`` (:func:`varirec.analysis.estimators._knn._subset_pairs`),
``V`` the sample variance of ``Y``. To first order its error is a sum of terms that
each involve one row (``(y_r² - 1) / N`` for ``V``) or two rows (a pair), and two terms
are correlated only when they share a row (rows are independent draws). The variance
of the sum is then the sum, over every ordered couple of terms that share a row, of
the products of their centred values (a dependency-graph, or sandwich, estimate):
``Σ_r ψ_r² - Σ_{i<j} G_ij²``, with ``ψ_r`` the sum of the terms that involve row
``r`` and ``G_ij`` the sum of the terms on the pair ``{i, j}`` (a couple sharing both
rows is counted twice in ``Σ ψ²``). Terms of one row as a query and as a neighbour
of other rows are correlated, which is why a bootstrap or a CLT over query rows
alone understates the spread; the neighbour choice itself is treated as fixed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix

__all__ = ["linearized_variance"]

_CHUNK = 1 << 18
"""Pairs per block when summing the squared pair totals (bounds the memory)."""


def linearized_variance(
    yc: NDArray[np.float64],
    pairs: Sequence[tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]],
    coef: NDArray[np.float64],
    scale: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Variances of ``m`` indices ``Σ_s coef[s, :] · ev_s`` (``ev_s = E_s / V``).

    Args:
        yc: the standardized outcome (mean 0, variance 1), ``N`` rows.
        pairs: per subset ``s``: its query rows ``(n,)``, neighbour rows ``(n, k)`` and
            each pair's centred share of ``ev_s`` ``(n, k)`` (summing to 0).
        coef: ``(len(pairs), m)`` each subset's coefficient in each index.
        scale: ``(m,)`` the part of each index that scales with ``1 / V``
            (``Σ_s coef[s, :] · ev_s``, the constant excluded).

    Returns:
        ``(m,)`` variances (at least 0).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = rng.standard_normal(4000)
        >>> yc = (y - y.mean()) / y.std()
        >>> rows = np.arange(4000)
        >>> nbr = ((rows + 1) % 4000)[:, np.newaxis]  # each row paired with the next
        >>> semi = 0.5 * (yc[rows] - yc[nbr[:, 0]]) ** 2
        >>> shares = ((semi - semi.mean()) / 4000)[:, np.newaxis]
        >>> var = linearized_variance(yc, [(rows, nbr, shares)], np.ones((1, 1)), [semi.mean()])
        >>> bool(0.5 < var[0] * 4000 < 1.5)  # Var((y_i - y_j)²/2 / V) ≈ 1/N for normal Y
        True
    """
    N = yc.size
    coef = np.asarray(coef, dtype=np.float64)
    m = coef.shape[1]
    q_rows, q_cols, q_vals = [], [], []
    keys, k_cols, k_vals = [], [], []
    # Pair keys lo * N + hi: 32-bit ones sort faster where they fit.
    key_type = np.int32 if N * N < 2**31 else np.int64
    for j, (rows, nbr, shares) in enumerate(pairs):
        k = nbr.shape[1]
        q_rows += [rows, nbr.ravel()]
        q_vals += [shares.sum(axis=1), shares.ravel()]
        q_cols.append(np.full(rows.size * (k + 1), j, dtype=np.intp))
        lo = np.minimum(rows[:, np.newaxis], nbr).ravel().astype(key_type)
        hi = np.maximum(rows[:, np.newaxis], nbr).ravel().astype(key_type)
        keys.append(lo * N + hi)
        k_vals.append(shares.ravel())
        k_cols.append(np.full(lo.size, j, dtype=np.intp))
    S = len(pairs)
    A = csr_matrix(
        (np.concatenate(q_vals), (np.concatenate(q_rows), np.concatenate(q_cols))), shape=(N, S)
    )
    psi = np.asarray(A @ coef)
    psi -= np.outer((yc**2 - 1.0) / N, np.asarray(scale, dtype=np.float64))
    total = np.einsum("rm,rm->m", psi, psi)
    _, pair_id = np.unique(np.concatenate(keys), return_inverse=True)
    P = csr_matrix(
        (np.concatenate(k_vals), (pair_id.ravel(), np.concatenate(k_cols))),
        shape=(int(pair_id.max()) + 1, S),
    )
    for start in range(0, P.shape[0], _CHUNK):
        G = np.asarray(P[start : start + _CHUNK] @ coef)
        total -= np.einsum("um,um->m", G, G)
    return np.maximum(total, 0.0).reshape(m)
