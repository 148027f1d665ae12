"""What the runs' records say is missing from the episode table, as notes.

- Episodes that a part held which no file holds any more (deleted or moved): warned of.
- Reset draws lost with a damaged draws part: those factors are emptied, not filled
  with the env's earlier draw.
- Episodes still running when the recorder closed (``episodes_open_at_close``), and
  runs whose ``run.json`` still says ``running``.

None of these episodes is a random share of its run, so each is said, never dropped
in silence.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from varirec.storage import Dataset, DatasetWarning

__all__ = ["gap_notes"]


def gap_notes(
    ds: Dataset, run_ids: list[str], table: pd.DataFrame, factors: list[str]
) -> list[str]:
    """The notes of every gap in ``table`` (the episode table of ``run_ids``, whose lost
    reset-mode ``factors`` are emptied in place)."""
    return (
        _open_at_close(ds, run_ids, table)
        + _lost_episodes(ds, run_ids)
        + _lost_draws(ds, run_ids, table, factors)
    )


def _open_at_close(ds: Dataset, run_ids: list[str], table: pd.DataFrame) -> list[str]:
    """A note per run whose recorder closed with episodes running (``run.json``'s
    ``episodes_open_at_close``): they have no row, and they are not a random share; and
    per run still marked running (killed, or recording still)."""
    notes = []
    counts = table["run_id"].value_counts() if "run_id" in table else pd.Series(dtype=int)
    for run_id in run_ids:
        run = ds.run(run_id)
        if run.status == "running":
            notes.append(
                f"run {run_id!r} says 'running': its process was killed, or still records; "
                "what it had flushed is read (`varirec inspect` shows its writers)"
            )
        running = run.metadata.get("episodes_open_at_close")
        if isinstance(running, int) and not isinstance(running, bool) and running > 0:
            notes.append(
                f"run {run_id!r}: {running} episode(s) were still running when it closed "
                f"(beside {int(counts.get(run_id, 0))} finished) and have no row; where "
                "they are the long ones (an episode that cannot finish), the finished ones "
                "lean the other way (a step limit ends every episode)"
            )
    return notes


def _lost_episodes(ds: Dataset, run_ids: list[str]) -> list[str]:
    """A warning and a note per run whose writers recorded episodes that no file holds
    (parts deleted or moved: the reader names skipped parts itself, not missing ones).
    What is left is seldom a random sample: a part holds the episodes that ended
    first."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        gone = [h for h in ds.health("episodes", run_ids) if h.rows_missing and not h.skipped]
    notes = []
    for h in gone:
        note = (
            f"run {h.run_id!r}: its writers recorded {h.rows_recorded} episode(s), "
            f"{h.rows_readable} are readable; {h.rows_missing} are in no file (parts deleted, "
            "moved or rewritten). The rest is not a random sample of the run (a part holds the "
            "episodes that ended first): restore the parts from a copy, or record again"
        )
        warnings.warn(note, DatasetWarning, stacklevel=3)
        notes.append(note)
    return notes


def _lost_draws(
    ds: Dataset, run_ids: list[str], table: pd.DataFrame, factors: list[str]
) -> list[str]:
    """Empty the reset-mode factors of episodes whose reset draw of that variation was
    lost with a damaged draws part, in place; returns a note per run.

    The as-of rule would give such an episode the env's previous draw: a value it
    never had. In a damaged run, an episode without its own reset row of a variation
    is taken as lost (a reset that skipped the variation, which keeps the env's earlier
    value in an intact run, cannot be told apart there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        # No run.json and no writer count: a lost part cannot be ruled out, so the check
        # runs there too (a killed run keeps its run.json: a reset that skipped a
        # variation keeps the env's earlier value there, as in an intact run).
        suspect = [
            h
            for h in ds.health("draws", run_ids)
            if h.damaged
            or (h.rows_recorded is None and not ds.run(h.run_id).metadata.get("variations"))
        ]
    notes = []
    for health in suspect:
        run = health.run_id
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DatasetWarning)
            specs = ds.run(run).metadata.get("variations") or []
            drawn = ds.draws(
                run, columns=["variation", "env_id", "episode"], filter=pc.field("phase") == "reset"
            ).to_pandas()
        if specs:
            reset = {spec["key"] for spec in specs if spec.get("mode") == "reset"}
        else:  # run.json lost with the part: the variations drawn at resets are those
            reset = set(drawn["variation"].astype(str).unique())
        columns = {n: n.split("[")[0] for n in factors if n.split("[")[0] in reset}
        if not columns:
            continue
        rows = np.flatnonzero((table["run_id"] == run).to_numpy())
        keys = _episode_keys(table["env_id"].to_numpy()[rows], table["episode"].to_numpy()[rows])
        emptied: set[int] = set()
        for key in dict.fromkeys(columns.values()):
            mine = drawn[drawn["variation"] == key]
            lost = rows[~np.isin(keys, _episode_keys(mine["env_id"], mine["episode"]))]
            if not lost.size:
                continue
            emptied.update(lost.tolist())
            for name in [n for n, k in columns.items() if k == key]:
                column = table[name]
                if pd.api.types.is_integer_dtype(column) or pd.api.types.is_bool_dtype(column):
                    table[name] = column.astype(float)  # a missing value needs a float
                table.iloc[lost, table.columns.get_loc(name)] = np.nan
        if emptied:
            why = (
                "lost with a damaged draws part"
                if health.damaged
                else "lost with a draws part, it seems (no run.json or writer sidecar counts "
                "the run's draws to tell)"
            )
            notes.append(
                f"run {run!r}: {len(emptied)} episode(s) lack a reset draw, {why}; those "
                f"factors are left empty (not the env's earlier draw). {health.describe()}"
            )
    return notes


def _episode_keys(env_ids: Any, episodes: Any) -> np.ndarray:
    """One int64 per (env, episode): env ids fit 31 bits, episode indices 32."""
    env = np.asarray(env_ids, dtype=np.int64)
    return (env << 32) | np.asarray(episodes, dtype=np.int64)
