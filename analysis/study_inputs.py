"""What a study reads and checks before any estimator runs.

- :func:`pick_outcome`, :func:`check_outcome_values`: the outcome column, refused
  with its real cause when it cannot be analysed (missing, too few, constant).
- :func:`design_run`, :func:`per_row_outputs`: the run holding a design, and the
  outcome per design row (replicates averaged; rows that did not run are an error).
- :func:`complete_factors`: factors with values in enough episodes.
- :func:`checked_groups`, :func:`study_groups`: a user's factor groups, checked
  against the runs' variations before anything is read; the groups of a given-data study.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from varirec.analysis.estimators.groups import declared_groups, vector_groups
from varirec.analysis.tables.episode_table import EpisodeTable
from varirec.errors import DesignError, UnknownNameError
from varirec.storage import Dataset
from varirec.variations.overrides import nearest_names

__all__ = [
    "MIN_EPISODES",
    "check_outcome_recorded",
    "check_outcome_values",
    "checked_groups",
    "complete_factors",
    "design_run",
    "per_row_outputs",
    "pick_outcome",
    "study_groups",
    "variation_columns",
]

MIN_EPISODES = 10
"""Fewest episodes with a finite outcome that a given-data study accepts."""


def pick_outcome(table: EpisodeTable, outcome: str | None) -> str:
    if outcome is not None:
        if outcome not in table.outcomes:
            raise UnknownNameError(
                f"no outcome {outcome!r} in the dataset; {nearest_names(outcome, table.outcomes)}"
            )
        return outcome
    # success, then return, then the rest: the first that varies (a constant length of
    # one-step episodes says nothing), else the first with a value (refused as constant,
    # by name).
    names = dict.fromkeys(("success", "return", *table.outcomes))
    order = [n for n in names if n in table.outcomes]
    recorded = []
    for name in order:
        y, valid = table.outcome(name)
        if valid.any():
            if np.ptp(y[valid]) > 0:
                return name
            recorded.append(name)
    if recorded:
        return recorded[0]
    raise ValueError(
        f"no outcome ({', '.join(table.outcomes)}) has a finite value in any of the "
        f"{len(table)} episode(s); record outcomes with manager.record_step(reward=..., "
        "success=...) before the episodes finish"
    )


_STEP_ARG = {"return": "reward"}  # the record_step array an outcome is summed from


def check_outcome_recorded(table: EpisodeTable, name: str, runs: list[str]) -> None:
    """Refuse an outcome with no finite value in any episode, naming those that have."""
    if table.outcome(name)[1].any():
        return
    column = table.frame[name]
    if column.notna().any() and not (
        pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
    ):  # text (a term's label column): recorded, but not a number to explain
        raise ValueError(
            f"outcome {name!r} holds {column.dtype} values, not numbers (e.g. "
            f"{column.dropna().iloc[0]!r}); pick a numeric outcome (--outcome), or record "
            "this one as numbers (a 0/1 per episode for a label you care about)"
        )
    with_values = [o for o in table.outcomes if o != name and table.outcome(o)[1].any()]
    other = f"; outcomes with values: {', '.join(with_values)}" if with_values else ""
    raise ValueError(
        f"outcome {name!r} has no finite value in any of the {len(table)} episode(s) of "
        f"run(s) {runs} (missing or NaN): record it with manager.record_step("
        f"{_STEP_ARG.get(name, name)}=...), or "
        f"pick another outcome (--outcome){other}"
    )


def check_outcome_values(table: EpisodeTable, name: str, runs: list[str], design: bool) -> None:
    """Refuse degenerate outcome data with its real cause, before any estimator runs."""
    check_outcome_recorded(table, name, runs)
    y, valid = table.outcome(name)
    where = f"run(s) {runs}"
    values = y[valid]
    if values.size < (2 if design else MIN_EPISODES):
        raise ValueError(
            f"only {values.size} episode(s) of {where} have a finite {name!r}; a study needs "
            f"at least {MIN_EPISODES} (hundreds for useful intervals): record more episodes"
        )
    if values.min() == values.max():
        raise ValueError(
            f"outcome {name!r} is {float(values[0]):g} in all {values.size} episode(s) of "
            f"{where}: a constant outcome has nothing to explain, so no factor can have an "
            "effect; widen the variations' ranges so that the outcome changes, or pick "
            "another outcome (--outcome)"
        )


def design_run(ds: Dataset, run_ids: list[str]) -> str | None:
    with_design = [r for r in run_ids if ds.run(r).metadata.get("design")]
    if len(with_design) > 1:
        raise DesignError(
            f"runs {with_design} each hold a design; analyse one at a time (--runs RUN_ID)"
        )
    return with_design[0] if with_design else None


def per_row_outputs(
    table: EpisodeTable, outcome: str, design: dict[str, Any], notes: list[str]
) -> np.ndarray:
    """The outcome per design row: the mean over its finished, valid episodes."""
    y, valid = table.outcome(outcome)
    sample_id = pd.to_numeric(table.frame["sample_id"], errors="coerce").to_numpy(float)
    in_design = np.isfinite(sample_id) & (sample_id >= 0)
    if (~in_design).any():
        notes.append(f"{int((~in_design).sum())} episode(s) outside the design were left out")
    bad = in_design & ~valid
    if bad.any():
        notes.append(f"{int(bad.sum())} design episode(s) with no finite {outcome!r} were left out")
    use = in_design & valid
    rows = sample_id[use].astype(np.int64)
    num_rows = int(design["num_rows"])
    counts = np.bincount(rows, minlength=num_rows)[:num_rows]
    sums = np.bincount(rows, weights=y[use], minlength=num_rows)[:num_rows]
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        ids = missing[:10].tolist()
        more = "..." if missing.size > 10 else ""
        raise DesignError(
            f"{missing.size} of {num_rows} design rows have no finished episode with a finite "
            f"{outcome!r} (sample ids {ids}{more}); "
            "run the study longer, or use a given-data method (--method binning)"
        )
    replicates = design.get("replicates", 1)
    if counts.min() < replicates:
        notes.append(
            f"some design rows have fewer than {replicates} replicates (min {counts.min()})"
        )
    return sums / counts


def complete_factors(table: EpisodeTable, valid: np.ndarray, notes: list[str]) -> list[str]:
    """Factors to analyse: one with no value in over 5 % of the episodes is left out
    (e.g. an interval-mode variation that rarely fired); rarer gaps drop the episodes."""
    keep = []
    for name in table.factors:
        missing = int(table.frame.loc[valid, name].isna().sum())
        if missing > 0.05 * valid.sum():
            notes.append(f"factor {name!r} has no value in {missing} episode(s): left out")
        else:
            if missing:
                notes.append(f"{missing} episode(s) with no value of {name!r} were left out")
            keep.append(name)
    if not keep:
        raise DesignError(
            "no factor has a value in enough episodes to analyse; record the variations "
            "(VariationRecorder / RecorderManager(variations=...)) and finish episodes"
        )
    return keep


def variation_columns(
    ds: Dataset, run_ids: Sequence[str]
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The factor columns of each variation of the runs (from ``run.json``), and the
    variations that are no factor, with the reason (interval mode, disabled)."""
    columns: dict[str, list[str]] = {}
    not_factors: dict[str, str] = {}
    for run_id in run_ids:
        for spec in ds.run(run_id).metadata.get("variations", []):
            key = spec["key"]
            if spec.get("mode") == "interval":
                not_factors.setdefault(key, "an interval-mode variation (episode noise)")
            elif not spec.get("enabled", True):
                not_factors.setdefault(key, "a disabled variation (it drew nothing)")
            else:
                names = [f["name"] for f in spec.get("factors") or []] or [key]
                columns.setdefault(key, names)
    return columns, not_factors


def checked_groups(
    ds: Dataset,
    run_ids: Sequence[str],
    groups: Mapping[str, Sequence[str]],
    *,
    vectors: bool = False,
) -> dict[str, list[str]]:
    """``groups`` checked against the runs' variations before anything is read, in
    factor columns (:func:`~varirec.analysis.estimators.groups.declared_groups`).

    Raises:
        ValueError: a member that is no factor (interval mode, disabled), an empty
            group, a column in two groups.
        UnknownNameError: a member that is no variation of the runs.
    """
    if not isinstance(groups, Mapping):
        raise TypeError(
            f"`groups` must be a mapping of group name to variations, got "
            f"{type(groups).__name__}; e.g. {{'grip': ['gripper.force', 'gripper.width']}}"
        )
    columns, not_factors = variation_columns(ds, run_ids)
    for group, members in groups.items():
        for member in [] if isinstance(members, str) else members:
            if member in not_factors and member not in columns:
                raise ValueError(
                    f"group {group!r} names {member!r}, {not_factors[member]}: it is not a "
                    "factor of the episode table; leave it out of the group"
                )
    if not columns:  # runs without variation specs: the episode table checks the names
        return {str(g): list(m) for g, m in groups.items()}
    return declared_groups(groups, columns, vectors=vectors)


def study_groups(
    groups: Mapping[str, Sequence[str]] | str, factors: list[str], notes: list[str]
) -> Mapping[str, Sequence[str]] | None:
    """The factor groups of a given-data study (see :func:`analyze`); members the
    episode table dropped (constant, or too often missing) are left out with a note."""
    if groups == "vectors":
        return vector_groups(factors)
    if groups == "none":
        return None
    if isinstance(groups, str):
        raise ValueError(
            f'`groups` must be "vectors", "none" or a mapping, got {groups!r}; '
            'pass e.g. groups={"cam": ["cam[x]", "cam[y]"]}'
        )
    out: dict[str, list[str]] = {}
    for group, members in groups.items():
        kept = [m for m in members if m in factors]
        gone = [m for m in members if m not in factors]
        if gone and kept:
            notes.append(f"group {group!r}: {', '.join(gone)} left out (no factor here)")
        elif gone:
            notes.append(f"group {group!r} left out: none of its variations is a factor here")
        if kept or not gone:
            out[group] = kept
    return out
