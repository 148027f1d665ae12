"""Analytic test functions with known Sobol' indices, for validating estimators.

Contents:

- :func:`ishigami` / :func:`ishigami_indices`: the Ishigami-Homma function on
  ``[-pi, pi]^3`` and its exact first, second and total indices.
- :func:`sobol_g` / :func:`sobol_g_indices`: Sobol's G function on ``[0, 1]^D`` and
  its exact first, second and total indices.

Only numpy is imported: this module is part of the core package, which runs inside
the simulator process (DESIGN.md).

Index dictionaries use the layout of :class:`varirec.analysis.estimators.results.SobolResult`:
``"S1"``
and ``"ST"`` are arrays of shape ``(D,)``; ``"S2"`` is ``(D, D)`` with the index of
the pair ``(j, k)``, ``j < k``, in the upper triangle and NaN elsewhere;
``"variance"`` is the total variance of the output.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "BOREHOLE_BOUNDS",
    "BOREHOLE_NAMES",
    "BOREHOLE_REFERENCE",
    "borehole",
    "ishigami",
    "ishigami_indices",
    "sobol_g",
    "sobol_g_indices",
]


def _as_matrix(X: ArrayLike, num_columns: int | None, name: str) -> NDArray[np.float64]:
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array of shape (num_points, num_factors), got "
            f"shape {arr.shape}; pass one row per point"
        )
    if num_columns is not None and arr.shape[1] != num_columns:
        raise ValueError(
            f"`{name}` must have {num_columns} columns, got {arr.shape[1]}; "
            "pass one column per factor"
        )
    return arr


def ishigami(X: ArrayLike, a: float = 7.0, b: float = 0.1) -> NDArray[np.float64]:
    """The Ishigami-Homma function ``sin(x1) + a sin(x2)^2 + b x3^4 sin(x1)``.

    Args:
        X: Points of shape ``(num_points, 3)`` (or one point of shape ``(3,)``),
            each coordinate uniform on ``[-pi, pi]``.
        a: Amplitude of the ``x2`` term.
        b: Weight of the ``x1``-``x3`` interaction.

    Returns:
        The outputs, shape ``(num_points,)``.

    References:
        Ishigami, T., Homma, T. (1990). An importance quantification technique in
        uncertainty analysis for computer models. Proceedings of ISUMA '90, 398-403.
        doi:10.1109/ISUMA.1990.151285

    Example:
        >>> import numpy as np
        >>> float(ishigami(np.array([[np.pi / 2, np.pi / 2, 1.0]])).round(3)[0])
        8.1
    """
    x = _as_matrix(X, 3, "X")
    s1 = np.sin(x[:, 0])
    return s1 + a * np.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * s1


def ishigami_indices(a: float = 7.0, b: float = 0.1) -> dict[str, NDArray[np.float64] | float]:
    """Exact Sobol' indices of :func:`ishigami` with inputs uniform on ``[-pi, pi]^3``.

    The partial variances are ``V1 = (1 + b pi^4 / 5)^2 / 2``, ``V2 = a^2 / 8``,
    ``V3 = 0``, ``V13 = 8 b^2 pi^8 / 225`` and ``V = V1 + V2 + V13``.

    Args:
        a: Amplitude of the ``x2`` term.
        b: Weight of the ``x1``-``x3`` interaction.

    Returns:
        ``{"S1": (3,), "ST": (3,), "S2": (3, 3) upper triangle, "variance": float}``.

    References:
        Homma, T., Saltelli, A. (1996). Importance measures in global sensitivity
        analysis of nonlinear models. Reliability Engineering & System Safety 52(1),
        1-17. doi:10.1016/0951-8320(96)00002-6

    Example:
        >>> ind = ishigami_indices(7.0, 0.1)
        >>> ind["S1"].round(4).tolist(), ind["ST"].round(4).tolist()
        ([0.3139, 0.4424, 0.0], [0.5576, 0.4424, 0.2437])
    """
    pi4 = np.pi**4
    v1 = 0.5 * (1.0 + b * pi4 / 5.0) ** 2
    v2 = a**2 / 8.0
    v13 = 8.0 * b**2 * np.pi**8 / 225.0
    variance = v1 + v2 + v13
    s2 = np.full((3, 3), np.nan)
    s2[0, 1], s2[0, 2], s2[1, 2] = 0.0, v13 / variance, 0.0
    return {
        "S1": np.array([v1, v2, 0.0]) / variance,
        "ST": np.array([v1 + v13, v2, v13]) / variance,
        "S2": s2,
        "variance": float(variance),
    }


def _check_g_coefficients(a: ArrayLike) -> NDArray[np.float64]:
    coef = np.asarray(a, dtype=np.float64)
    if coef.ndim != 1 or coef.size == 0:
        raise ValueError(
            f"`a` must be a non-empty 1-D sequence of coefficients, got shape {coef.shape}; "
            "pass one coefficient per factor"
        )
    if np.any(coef < 0) or not np.all(np.isfinite(coef)):
        raise ValueError(
            f"`a` must hold finite coefficients >= 0, got {coef.tolist()}; "
            "small values mean important factors"
        )
    return coef


def sobol_g(X: ArrayLike, a: ArrayLike) -> NDArray[np.float64]:
    """Sobol's G function ``prod_i (|4 x_i - 2| + a_i) / (1 + a_i)``.

    Args:
        X: Points of shape ``(num_points, D)`` (or ``(D,)``), uniform on ``[0, 1]^D``.
        a: ``D`` non-negative coefficients; factor ``i`` matters less as ``a_i`` grows
            (``a_i = 0`` very important, ``a_i = 99`` almost inert).

    Returns:
        The outputs, shape ``(num_points,)``.

    References:
        Saltelli, A., Sobol', I. M. (1995). About the use of rank transformation in
        sensitivity analysis of model output. Reliability Engineering & System
        Safety 50(3), 225-239. doi:10.1016/0951-8320(95)00099-2

    Example:
        >>> float(sobol_g([[0.5, 0.5]], a=[0.0, 1.0])[0])
        0.0
    """
    coef = _check_g_coefficients(a)
    x = _as_matrix(X, coef.size, "X")
    return np.prod((np.abs(4.0 * x - 2.0) + coef) / (1.0 + coef), axis=1)


def sobol_g_indices(a: ArrayLike) -> dict[str, NDArray[np.float64] | float]:
    """Exact Sobol' indices of :func:`sobol_g` with inputs uniform on ``[0, 1]^D``.

    With ``V_i = 1 / (3 (1 + a_i)^2)``, the total variance is
    ``V = prod_i (1 + V_i) - 1``, ``S1_i = V_i / V``, ``S2_ij = V_i V_j / V`` and
    ``ST_i = V_i prod_{j != i} (1 + V_j) / V``.

    Args:
        a: ``D`` non-negative coefficients.

    Returns:
        ``{"S1": (D,), "ST": (D,), "S2": (D, D) upper triangle, "variance": float}``.

    References:
        Saltelli, A., Annoni, P., Azzini, I., Campolongo, F., Ratto, M., Tarantola, S.
        (2010). Variance based sensitivity analysis of model output. Design and
        estimator for the total sensitivity index. Computer Physics Communications
        181(2), 259-270. doi:10.1016/j.cpc.2009.09.018

    Example:
        >>> sobol_g_indices([0.0, 1.0, 9.0])["S1"].round(3).tolist()
        [0.742, 0.185, 0.007]
    """
    coef = _check_g_coefficients(a)
    partial = 1.0 / (3.0 * (1.0 + coef) ** 2)
    variance = float(np.prod(1.0 + partial) - 1.0)
    total = partial * np.prod(1.0 + partial) / (1.0 + partial) / variance
    s2 = np.full((coef.size, coef.size), np.nan)
    upper = np.triu_indices(coef.size, k=1)
    s2[upper] = (np.outer(partial, partial) / variance)[upper]
    return {"S1": partial / variance, "ST": total, "S2": s2, "variance": variance}


BOREHOLE_NAMES: tuple[str, ...] = ("rw", "r", "Tu", "Hu", "Tl", "Hl", "L", "Kw")
"""The Borehole inputs: well radius, radius of influence, transmissivities and heads
of the upper and lower aquifers, borehole length, hydraulic conductivity."""
BOREHOLE_BOUNDS: tuple[tuple[float, float], ...] = (
    (0.05, 0.15),
    (100.0, 50_000.0),
    (63_070.0, 115_600.0),
    (990.0, 1_110.0),
    (63.1, 116.0),
    (700.0, 820.0),
    (1_120.0, 1_680.0),
    (9_855.0, 12_045.0),
)
"""Uniform ranges of the inputs (the all-uniform variant of Morris et al. 1993)."""


def borehole(X: ArrayLike) -> NDArray[np.float64]:
    """The Borehole function: water flow through a borehole, in m³/year.

    ``2π Tu (Hu - Hl) / (ln(r/rw) (1 + 2 L Tu / (ln(r/rw) rw² Kw) + Tu / Tl))``.

    Args:
        X: Points of shape ``(num_points, 8)``, columns in the order of
            :data:`BOREHOLE_NAMES`, each uniform on its :data:`BOREHOLE_BOUNDS` range.

    Returns:
        The outputs, shape ``(num_points,)``.

    References:
        Morris, M. D., Mitchell, T. J., Ylvisaker, D. (1993). Bayesian design and
        analysis of computer experiments: use of derivatives in surface prediction.
        Technometrics 35(3), 243-255. doi:10.1080/00401706.1993.10485320

    Example:
        >>> mid = [[(lo + hi) / 2 for lo, hi in BOREHOLE_BOUNDS]]
        >>> round(float(borehole(mid)[0]), 1)
        70.9
    """
    x = _as_matrix(X, 8, "X")
    rw, r, tu, hu, tl, hl, length, kw = x.T
    log_ratio = np.log(r / rw)
    return (
        2.0
        * np.pi
        * tu
        * (hu - hl)
        / (log_ratio * (1.0 + 2.0 * length * tu / (log_ratio * rw**2 * kw) + tu / tl))
    )


BOREHOLE_REFERENCE: dict[str, tuple[float, ...]] = {
    "S1": (0.829, -0.0005, -0.0005, 0.0407, -0.0005, 0.0406, 0.0384, 0.009),
    "ST": (0.8679, 0.0, 0.0, 0.0541, 0.0, 0.0541, 0.0522, 0.0127),
    "shapley": (0.8486, 0.0, 0.0, 0.0477, 0.0, 0.0476, 0.0455, 0.0111),
}
"""Reference indices of :func:`borehole` on :data:`BOREHOLE_BOUNDS`, by brute force:
every closed index over 2^22 pick-freeze pairs (``benchmarks/borehole_reference.py
--log2n 22 --seed 0``); Monte Carlo standard errors at most 0.0006 (S1: 0.0005).
Null inputs of S1 read -0.0005 (their Monte Carlo error); their truth is 0."""
