"""Controls that a given-data study carries, computed from its own data: :func:`study_controls`.

- Shuffled-outcome null: the first-order index of every factor recomputed after
  shuffling the outcome (``num_shuffles`` times, the bins held fixed). The band is
  family-wise: its top is the ``conf_level`` quantile of the *largest* shuffled index
  over all factors, so a study with no effect puts every factor inside it with that
  probability.
- Rank stability: the share of bootstrap resamples in which each factor keeps its
  rank (and the share in which it stays in the top three).
- Convergence: each index against the number of episodes (nested subsamples), and
  a budget: the bootstrap half-width narrows like ``c / sqrt(N)``, so resolving an
  index to ``± target`` takes about ``(c / target)²`` episodes.

The index is the bias-corrected binning first-order index (Kelley's correction) with a
mean per bin, computed for all shuffles and resamples at once as one sparse product:
:func:`~varirec.analysis.estimators.binning.first_order_binning` adds a slope within
each bin, which moves an index by about ``1/M²`` of its effect; ranks, null bands and
half-widths do not need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import sparse

from varirec.analysis.estimators._rng import Seed, _generator
from varirec.analysis.estimators.binning import default_num_bins
from varirec.analysis.failures._inputs import Factors, bin_codes

__all__ = ["Controls", "binned_s1", "budget", "study_controls"]


def _bin_matrix(x: NDArray[np.float64], num_bins: int) -> tuple[sparse.csr_matrix, NDArray]:
    """``(B, bins_per_factor)``: the stacked one-hot bin matrix (sum of bins × N)."""
    blocks, sizes = [], []
    n = x.shape[0]
    for j in range(x.shape[1]):
        codes, _ = bin_codes(x[:, j], num_bins)
        m = int(codes.max()) + 1
        blocks.append(sparse.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(m, n)))
        sizes.append(m)
    return sparse.vstack(blocks).tocsr(), np.asarray(sizes)


def _s1(b: sparse.csr_matrix, sizes: NDArray, y: NDArray, w: NDArray) -> NDArray[np.float64]:
    """Kelley-corrected correlation ratio per factor (rows) and column of ``y``/``w``
    (weights: bootstrap counts, or ones)."""
    n = w.sum(axis=0)
    sy, syy = (w * y).sum(axis=0), (w * y * y).sum(axis=0)
    ss_total = syy - sy**2 / n
    counts = np.asarray(b @ w)
    sums = np.asarray(b @ (w * y))
    with np.errstate(invalid="ignore", divide="ignore"):
        between = np.where(counts > 0, sums**2 / np.where(counts > 0, counts, 1.0), 0.0)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    ss_b = np.add.reduceat(between, starts, axis=0) - sy**2 / n
    m = sizes[:, None].astype(float)
    ss_w = ss_total - ss_b
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ss_b - (m - 1.0) * ss_w / (n - m)) / ss_total


def binned_s1(
    x: NDArray[np.float64], y: NDArray[np.float64], num_bins: int | None = None
) -> NDArray:
    """Bias-corrected binning first-order index of each column of ``x`` for outcome ``y``.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(size=(20000, 2))
    >>> y = x[:, 0] + 0.1 * rng.normal(size=20000)
    >>> np.round(binned_s1(x, y), 2).tolist()  # truth: (1/12) / (1/12 + 0.01) = 0.89
    [0.89, -0.0]
    """
    m = default_num_bins(len(y)) if num_bins is None else num_bins
    b, sizes = _bin_matrix(x, m)
    return _s1(b, sizes, y[:, None], np.ones((len(y), 1)))[:, 0]


def budget(convergence: pd.DataFrame, target: float) -> float | None:
    """The size (in the unit of ``convergence["episodes"]``) at which one factor's
    interval half-width reaches ``target``.

    The half-width narrows like ``c / sqrt(N)``; ``c`` is fitted by least squares on
    the two largest nested subsamples (the small ones can have a zero-width interval,
    e.g. a factor that never moved the outcome in 16 samples).

    >>> conv = pd.DataFrame({"episodes": [1000, 4000], "conf_low": [0.0, 0.05],
    ...                      "conf_high": [0.2, 0.15]})
    >>> round(budget(conv, 0.01))
    100000
    """
    c = convergence.sort_values("episodes").tail(2)
    hw = ((c["conf_high"] - c["conf_low"]) / 2).to_numpy(float)
    inv = 1.0 / np.sqrt(c["episodes"].to_numpy(float))
    if not np.isfinite(hw).all() or not len(hw):
        return None
    coef = float(np.dot(hw, inv) / np.dot(inv, inv))
    return (coef / target) ** 2


@dataclass
class Controls:
    """The controls of one study.

    Attributes:
        factors: per factor: ``estimate``, ``null_low``/``null_high`` (the family-wise
            shuffled-outcome band), ``in_null_band``, ``rank``, ``rank_stability``,
            ``top3_stability``, ``half_width`` and ``episodes_needed`` (to resolve
            the index to ``± target``).
        convergence: per (factor, episodes): estimate, conf_low, conf_high.
        num_episodes, num_shuffles, num_resamples, target, conf_level: the settings.
    """

    factors: pd.DataFrame
    convergence: pd.DataFrame
    num_episodes: int
    num_shuffles: int
    num_resamples: int
    target: float
    conf_level: float
    index: str = "S1_binning"
    """The index the controls are about."""
    episodes_unit: str = "episodes"
    """What ``convergence["episodes"]`` counts (``base samples`` for a Sobol design)."""

    @property
    def null_band(self) -> tuple[float, float] | None:
        """The shuffled-outcome band, or None where it is not defined (a Saltelli design:
        its rows are not exchangeable)."""
        low, high = (
            float(self.factors["null_low"].iloc[0]),
            float(self.factors["null_high"].iloc[0]),
        )
        return None if np.isnan(low) or np.isnan(high) else (low, high)

    def to_dict(self) -> dict[str, Any]:
        return {
            "factors": self.factors.to_dict(orient="records"),
            "convergence": self.convergence.to_dict(orient="records"),
            "num_episodes": self.num_episodes,
            "num_shuffles": self.num_shuffles,
            "num_resamples": self.num_resamples,
            "target": self.target,
            "conf_level": self.conf_level,
            "index": self.index,
        }


def _resample_counts(n: int, num: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """``(n, num)`` bootstrap counts: how often each row is drawn in each resample."""
    rows = rng.integers(0, n, size=(num, n)) + (np.arange(num) * n)[:, None]
    return np.bincount(rows.ravel(), minlength=num * n).reshape(num, n).T.astype(float)


def _half_widths(b, sizes, y, rng, num_resamples, conf_level):  # type: ignore[no-untyped-def]
    n = len(y)
    w = _resample_counts(n, num_resamples, rng)
    boot = _s1(b, sizes, y[:, None], w)
    # Rows drawn twice defeat the bias correction inside a resample: re-centre the
    # resamples on the estimate (as first_order_binning does) before the quantiles.
    estimate = _s1(b, sizes, y[:, None], np.ones((n, 1)))
    boot = boot - np.nanmean(boot, axis=1, keepdims=True) + estimate
    alpha = 1.0 - conf_level
    lo, hi = np.nanquantile(boot, [alpha / 2, 1 - alpha / 2], axis=1)
    return boot, lo, hi


def study_controls(
    frame: pd.DataFrame,
    outcome: str,
    factors: Sequence[str],
    *,
    num_shuffles: int = 100,
    num_resamples: int = 100,
    target: float = 0.02,
    conf_level: float = 0.95,
    seed: Seed = 0,
) -> Controls:
    """Shuffled-outcome null band, rank stability and convergence of a given-data study.

    Args:
        frame: one row per episode with the factor and outcome columns (rows with a
            missing value are left out).
        outcome: the outcome column.
        factors: the factor columns.
        num_shuffles: shuffles behind the null band.
        num_resamples: bootstrap resamples behind the rank stability and half-widths.
        target: the half-width the budget estimate aims at.
        conf_level: level of the band and the intervals.
        seed: the shuffles and resamples (0 is a seed).
    """
    rng, _ = _generator(seed)
    f = Factors.from_frame(frame, list(factors))
    y = pd.to_numeric(frame[outcome], errors="coerce").to_numpy(float, na_value=np.nan)
    ok = np.isfinite(y) & np.isfinite(f.values).all(axis=1)
    x, y = f.values[ok], y[ok]
    n = len(y)
    if n < 20:
        raise ValueError(f"controls need at least 20 episodes with values, got {n}")
    b, sizes = _bin_matrix(x, default_num_bins(n))
    estimate = _s1(b, sizes, y[:, None], np.ones((n, 1)))[:, 0]
    shuffled = np.stack([rng.permutation(y) for _ in range(num_shuffles)], axis=1)
    null = _s1(b, sizes, shuffled, np.ones((n, 1)))
    alpha = 1.0 - conf_level
    null_high = float(np.quantile(null.max(axis=0), conf_level))
    null_low = float(np.quantile(null.min(axis=0), alpha))
    boot, lo, hi = _half_widths(b, sizes, y, rng, num_resamples, conf_level)
    rank = (-estimate).argsort().argsort()
    boot_rank = (-boot).argsort(axis=0).argsort(axis=0)
    stability = (boot_rank == rank[:, None]).mean(axis=1)
    top3 = (boot_rank < 3).mean(axis=1)
    half = (hi - lo) / 2
    rows = []
    sizes_n = [n // 16, n // 8, n // 4, n // 2, n]
    order = rng.permutation(n)
    for m in sizes_n:  # nested subsamples: a loop over five sizes
        if m < 20:
            continue
        idx = order[:m]
        bm, sm = _bin_matrix(x[idx], default_num_bins(m))
        est = _s1(bm, sm, y[idx, None], np.ones((m, 1)))[:, 0]
        _, l_, h_ = _half_widths(bm, sm, y[idx], rng, num_resamples, conf_level)
        for j, name in enumerate(f.names):
            rows.append((name, m, est[j], l_[j], h_[j]))
    conv = pd.DataFrame(rows, columns=["factor", "episodes", "estimate", "conf_low", "conf_high"])
    # c = half-width · sqrt(N), fitted over the subsample sizes (least squares on 1/sqrt N)
    needed = []
    for name in f.names:
        size = budget(conv[conv["factor"] == name], target)
        needed.append(None if size is None else int(np.ceil(size)))
    table = pd.DataFrame({
        "factor": f.names, "estimate": estimate, "null_low": null_low, "null_high": null_high,
        "in_null_band": estimate <= null_high, "rank": rank + 1, "rank_stability": stability,
        "top3_stability": top3, "conf_low": lo, "conf_high": hi, "half_width": half,
        "episodes_needed": needed,
    })  # fmt: skip
    table = table.sort_values("estimate", ascending=False).reset_index(drop=True)
    return Controls(table, conv, n, num_shuffles, num_resamples, target, conf_level)
