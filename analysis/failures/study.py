"""Where a policy fails: :func:`failures` on a dataset, :func:`failures_from_frame` on any
table of factors and a 0/1 outcome.

Both return a :class:`FailureAnalysis`: the success rate along every factor
(:mod:`~varirec.analysis.failures.curves`), the failure region in words checked on
held-out episodes (:mod:`~varirec.analysis.failures.rules`), regional sensitivity,
pair interactions and the 2-D success map of the strongest pair
(:mod:`~varirec.analysis.failures.regional`).

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> frame = pd.DataFrame({"a": rng.uniform(size=4000), "b": rng.uniform(size=4000)})
>>> frame["success"] = (rng.uniform(size=4000) < np.where(frame["a"] > 0.7, 0.2, 0.9))
>>> fa = failures_from_frame(frame, "success", seed=0)
>>> fa.rule.factors
['a']
>>> abs(fa.rule.conditions[0].threshold - 0.7) < 0.05
True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from varirec import open_dataset
from varirec.analysis.design_rows import independent_rows, run_designs
from varirec.analysis.duplicate_runs import check_duplicate_runs
from varirec.analysis.estimators._checks import (
    _check_conf_level,
    _check_count,
    _check_num_resamples,
)
from varirec.analysis.estimators._rng import Seed, _generator
from varirec.analysis.failures._inputs import (
    Factors,
    binary_outcome,
    check_conf_level,
    check_threshold,
)
from varirec.analysis.failures.curves import default_curve_bins, success_curves
from varirec.analysis.failures.regional import (
    pair_interactions,
    regional_sensitivity,
    success_map,
)
from varirec.analysis.failures.rules import FailureRule, failure_rules
from varirec.analysis.study_inputs import check_outcome_recorded
from varirec.analysis.tables.episode_table import episode_table
from varirec.errors import DatasetError
from varirec.storage import Dataset

__all__ = ["FailureAnalysis", "failures", "failures_from_frame"]

_MIN_EPISODES = 50


@dataclass
class FailureAnalysis:
    """Where the outcome fails, as tidy tables and one sentence.

    Attributes:
        outcome: the outcome analysed (success = 1).
        num_episodes: episodes behind the tables.
        success_rate: the overall success rate.
        curves: success rate per (factor, bin) with intervals.
        rule: the failure region found and checked on held-out episodes.
        regional: failures vs successes per factor (KS / chi-square).
        interactions: interaction share per pair of factors.
        map_pair: the pair with the strongest interaction (None: fewer than 2 factors).
        success_map: the success rate on that pair's grid.
        conf_level: interval level.
        notes: what was dropped, in words.
    """

    outcome: str
    num_episodes: int
    success_rate: float
    curves: pd.DataFrame
    rule: FailureRule
    regional: pd.DataFrame
    interactions: pd.DataFrame
    map_pair: tuple[str, str] | None
    success_map: pd.DataFrame | None
    conf_level: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Where it fails, in a few plain sentences."""
        lines = [
            f"{self.num_episodes} episodes, success rate {self.success_rate:.1%} ({self.outcome}).",
            f"Failure region: {self.rule.sentence()}.",
        ]
        strong = self.regional[self.regional["p_adjusted"] < 1 - self.conf_level].head(3)
        if len(strong):
            parts = [f"{r.factor} ({r.test} {r.statistic:.2f})" for r in strong.itertuples()]
            lines.append("Failures differ most from successes in " + ", ".join(parts) + ".")
        else:
            lines.append("No factor separates failures from successes (regional sensitivity).")
        if self.map_pair is not None:
            top = self.interactions.iloc[0]
            lines.append(
                f"Strongest interaction: {top.factor_a} × {top.factor_b} "
                f"(share {top.interaction:.3f}, p = {top.p_value:.2g})."
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "num_episodes": self.num_episodes,
            "success_rate": self.success_rate,
            "summary": self.summary(),
            "rule": self.rule.to_dict(),
            "curves": self.curves.to_dict(orient="records"),
            "regional": self.regional.to_dict(orient="records"),
            "interactions": self.interactions.to_dict(orient="records"),
            "map_pair": list(self.map_pair) if self.map_pair else None,
            "success_map": None
            if self.success_map is None
            else self.success_map.to_dict(orient="records"),
            "notes": self.notes,
        }

    def plot_curves(self, factors: Sequence[str] | None = None) -> Any:
        """A grid of success-rate curves (bars for categories); returns the figure."""
        from varirec.analysis.failures.plots import plot_curves

        return plot_curves(self, factors)

    def plot_map(self, ax: Any = None) -> Any:
        """The 2-D success map of :attr:`map_pair`; returns the Axes."""
        from varirec.analysis.failures.plots import plot_map

        return plot_map(self, ax)


def failures_from_frame(
    frame: pd.DataFrame,
    outcome: str,
    *,
    factors: Sequence[str] | None = None,
    threshold: float | None = None,
    num_bins: int | None = None,
    map_bins: int = 5,
    holdout: float = 0.3,
    num_resamples: int = 20,
    conf_level: float = 0.95,
    seed: Seed = 0,
    notes: Sequence[str] = (),
) -> FailureAnalysis:
    """Failure analysis of any table: factor columns and a 0/1 ``outcome`` column.

    Args:
        frame: one row per episode.
        outcome: the outcome column (0/1, or any number with ``threshold``).
        factors: factor columns (default: every other column).
        threshold: success is ``outcome >= threshold`` (default: the outcome is 0/1).
        num_bins: bins per factor of the curves (default :func:`default_curve_bins`).
        map_bins: bins per factor of the interaction search and the 2-D map.
        holdout: share of episodes held out of the rule search.
        num_resamples: bootstrap refits behind the first split's stability.
        conf_level: interval level.
        seed: the random split and resamples (``0`` is a seed).
        notes: notes to carry (e.g. from the episode table).
    """
    if outcome not in frame.columns:
        raise ValueError(f"`outcome` {outcome!r} is not a column; columns: {list(frame.columns)}")
    names = [c for c in frame.columns if c != outcome] if factors is None else list(factors)
    missing = [f for f in names if f not in frame.columns]
    if missing:
        raise ValueError(f"`factors` {missing} are not columns; columns: {list(frame.columns)}")
    if not names:
        raise ValueError("`factors` is empty: a failure analysis needs at least one factor")
    conf_level = check_conf_level(conf_level)
    threshold = check_threshold(threshold)
    num_resamples = _check_num_resamples(num_resamples)
    conf_level = _check_conf_level(conf_level)
    map_bins = _check_count(map_bins, "map_bins", 2, "pass e.g. map_bins=5")
    if num_bins is not None:
        num_bins = _check_count(num_bins, "num_bins", 2, "pass e.g. num_bins=10, or None")
    rng, _ = _generator(seed)
    notes = list(notes)
    y = pd.to_numeric(frame[outcome], errors="coerce").to_numpy(float, na_value=np.nan)
    f = Factors.from_frame(frame, names)
    keep = np.isfinite(y) & np.isfinite(f.values).all(axis=1)
    if (~keep).any():
        notes.append(f"{int((~keep).sum())} episode(s) with a missing outcome or factor left out")
    if not np.isfinite(y).any():
        raise ValueError(
            f"no episode has a finite value of {outcome!r} ({len(y)} episode(s), every one "
            "missing or NaN: never recorded, or recorded as NaN); record it as finite "
            "numbers, or pick an outcome that has them"
        )
    if keep.sum() < _MIN_EPISODES:
        raise ValueError(
            f"only {int(keep.sum())} episode(s) with a finite {outcome!r} and factors; a failure "
            f"analysis needs at least {_MIN_EPISODES} (thousands for narrow intervals)"
        )
    f = f.take(keep)
    success = binary_outcome(y[keep], outcome, threshold)
    n = int(keep.sum())
    bins = default_curve_bins(n) if num_bins is None else int(num_bins)
    if bins < 2:
        raise ValueError(f"`num_bins` must be at least 2, got {num_bins!r}")
    curves = success_curves(f, success, num_bins=bins, conf_level=conf_level)
    rule = failure_rules(f, success, holdout=holdout, num_resamples=num_resamples,
                         conf_level=conf_level, rng=rng)  # fmt: skip
    regional = regional_sensitivity(f, success)
    interactions = pair_interactions(f, success, num_bins=map_bins)
    pair = None
    grid = None
    if len(interactions) and np.isfinite(interactions["interaction"].iloc[0]):
        pair = (str(interactions["factor_a"].iloc[0]), str(interactions["factor_b"].iloc[0]))
        grid = success_map(f, success, pair, num_bins=map_bins, conf_level=conf_level)
    return FailureAnalysis(outcome, n, float(success.mean()), curves, rule, regional,
                           interactions, pair, grid, conf_level, notes)  # fmt: skip


def failures(
    dataset: str | os.PathLike[str] | Dataset,
    *,
    runs: str | Sequence[str] | None = None,
    outcome: str = "success",
    allow_duplicate_runs: bool = False,
    **options: Any,
) -> FailureAnalysis:
    """Where the policy fails, from the episodes of ``runs`` of a recorded dataset.

    Works on any run, designed or plain random draws (every recorded episode is one
    row; of a design run, the independent draws only: each base sample's A and B rows,
    or each trajectory's first, one replicate each). Runs that repeat each other's
    draws (two policies recorded with one seed) are refused as
    :func:`~varirec.analysis.study.analyze` refuses them, unless
    ``allow_duplicate_runs``: pooled, they mix the policies and count each condition
    twice. ``options`` go to :func:`failures_from_frame` (``threshold``, ``num_bins``,
    ``holdout``, ``seed``, ...).

    Raises:
        UnknownNameError: an unknown run or outcome.
        DuplicateRunsError: runs that repeat each other, not allowed.
        ValueError: an outcome that is not 0/1 (give ``threshold``), too few episodes.
    """
    check_threshold(options.get("threshold"))  # before the dataset is read
    ds = dataset if isinstance(dataset, Dataset) else open_dataset(dataset)
    selected = ds.run_ids() if runs is None else [runs] if isinstance(runs, str) else runs
    if not allow_duplicate_runs:
        check_duplicate_runs(ds, list(selected))  # an unknown run id fails there, named
    table = episode_table(ds, runs)
    check_outcome_recorded(table, outcome, list(selected))  # an unknown one fails, named
    if not table.factors:
        damage = ds.damage_note("draws", list(selected))
        if damage is not None:
            raise DatasetError(f"no factor to explain the failures with: {damage}")
        if len(table) < _MIN_EPISODES:  # with so few episodes every factor may be constant
            raise ValueError(
                f"only {len(table)} episode(s) in run(s) {list(selected)}; a failure "
                f"analysis needs at least {_MIN_EPISODES} (thousands for narrow intervals)"
            )
        raise ValueError(
            f"no factor varies over the {len(table)} episode(s) of run(s) {list(selected)} "
            "(constant, build- or interval-mode variations only): nothing to explain the "
            "failures with; vary a reset-mode variation across episodes"
        )
    frame = table.frame[[*table.factors, outcome]]
    notes = list(table.notes)
    designs = run_designs(ds, list(selected))
    if designs:  # the rows of a base sample repeat values: tests would count them as many
        alone = independent_rows(table.frame, designs)
        designed = table.frame["run_id"].isin(list(designs)).to_numpy()
        read, of = int((alone & designed).sum()), int(designed.sum())
        if alone.sum() < _MIN_EPISODES:
            raise ValueError(
                f"design run(s) {sorted(designs)} hold {read} independent draws among their "
                f"{of} episodes (each base sample's A and B rows, or each trajectory's first: "
                f"the other rows repeat their values); a failure analysis needs at least "
                f"{_MIN_EPISODES}: record more base samples (n=), or plain random draws "
                "(method='random')"
            )
        frame = frame[alone]
        notes.append(
            f"design run(s) {sorted(designs)}: {read} of their {of} episodes read, the "
            "independent draws (each base sample's A and B rows, or each trajectory's "
            "first; one replicate each): the others repeat their values"
        )
    return failures_from_frame(frame, outcome, factors=table.factors, notes=notes, **options)
