"""Controls of a Sobol (Saltelli) design study: :func:`sobol_controls`.

A shuffled-outcome null is not defined for a Saltelli design: its rows come in blocks
of one base sample (``A, AB_1..AB_D, [BA_1..BA_D], B``), and shuffling outputs across
blocks turns every total index into about 1. The design's own control is a factor the
env never reads (with common random numbers it gets exactly 0). What is computed:

- rank stability of the total index ``ST`` over bootstrap resamples of the base samples
  (the blocks kept whole, as the estimator's own intervals do);
- convergence: ``ST`` and its interval on nested prefixes of the base samples, and the
  episodes needed to resolve every ``ST`` to ``± target`` (the half-width narrows like
  ``c / sqrt(N)``, :func:`~varirec.analysis.controls.budget`; an episode budget is
  base samples × rows per sample × replicates).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from varirec.analysis.controls import Controls, budget
from varirec.analysis.estimators._rng import Seed, _generator
from varirec.analysis.estimators.sobol import sobol_indices
from varirec.analysis.tables.episode_table import episode_table

__all__ = ["sobol_controls"]


def _row_outputs(study: Any) -> np.ndarray:
    """The outcome per design row: the mean of its finished episodes (as analyze does)."""
    table = episode_table(study.dataset, study.runs)
    y, valid = table.outcome(study.outcome)
    sample = pd.to_numeric(table.frame["sample_id"], errors="coerce").to_numpy(float)
    use = valid & np.isfinite(sample) & (sample >= 0)
    rows = sample[use].astype(np.int64)
    num_rows = int(study.design["num_rows"])
    counts = np.bincount(rows, minlength=num_rows)[:num_rows]
    sums = np.bincount(rows, weights=y[use], minlength=num_rows)[:num_rows]
    return sums / counts


def sobol_controls(
    study: Any,
    *,
    num_resamples: int = 100,
    target: float = 0.02,
    conf_level: float = 0.95,
    seed: Seed = 0,
) -> Controls:
    """Rank stability and convergence of the ``ST`` of a Sobol design ``study``.

    Args:
        study: a :class:`~varirec.analysis.study.Study` whose method is ``sobol``.
        num_resamples: bootstrap resamples of the base samples.
        target: the half-width the budget aims at.
        conf_level: interval level.
        seed: resamples (0 is a seed).
    """
    if study.method != "sobol" or not study.design:
        raise ValueError(f"`study` must be a Sobol design study, got method {study.method!r}")
    rng, _ = _generator(seed)
    names = list(study.result.factor_names)
    d = len(names)
    second = bool(study.design["second_order"])
    per = 2 * d + 2 if second else d + 2
    y = _row_outputs(study)
    n = y.size // per
    blocks = y[: n * per].reshape(n, per)
    est = study.result.ST
    rank = (-est).argsort().argsort()
    picks = rng.integers(0, n, size=(num_resamples, n))
    boot = np.stack([  # a loop over resamples; each estimate is vectorized
        sobol_indices(blocks[p].ravel(), d, second_order=second, num_resamples=0).ST
        for p in picks
    ], axis=1)  # fmt: skip
    boot_rank = (-boot).argsort(axis=0).argsort(axis=0)
    rows = []
    for m in sorted({max(8, n // k) for k in (16, 8, 4, 2, 1)}):
        if m > n:
            continue
        r = sobol_indices(blocks[:m].ravel(), d, second_order=second, num_resamples=200,
                          conf_level=conf_level, seed=rng)  # fmt: skip
        rows += [(names[j], m, r.ST[j], r.ST_conf_low[j], r.ST_conf_high[j]) for j in range(d)]
    conv = pd.DataFrame(rows, columns=["factor", "episodes", "estimate", "conf_low", "conf_high"])
    replicates = int(study.design.get("replicates", 1))
    needed, half = [], []
    for j, name in enumerate(names):
        base = budget(conv[conv["factor"] == name], target)
        needed.append(None if base is None else int(np.ceil(base)) * per * replicates)
        half.append((study.result.ST_conf_high[j] - study.result.ST_conf_low[j]) / 2)
    table = pd.DataFrame({
        "factor": names, "estimate": est, "null_low": np.nan, "null_high": np.nan,
        "in_null_band": pd.array([pd.NA] * d, dtype="boolean"), "rank": rank + 1,
        "rank_stability": (boot_rank == rank[:, None]).mean(axis=1),
        "top3_stability": (boot_rank < 3).mean(axis=1),
        "conf_low": study.result.ST_conf_low, "conf_high": study.result.ST_conf_high,
        "half_width": half, "episodes_needed": needed,
    })  # fmt: skip
    table = table.sort_values("estimate", ascending=False).reset_index(drop=True)
    return Controls(table, conv, int(y.size) * replicates, 0, num_resamples, target, conf_level,
                    index="ST", episodes_unit="base samples")  # fmt: skip
