"""Episodes a run holds more than once: refused where every number would count them
twice, noted where a design repeats its pairs on purpose.

- :func:`refuse_repeated_episodes` — an ``(env_id, episode)`` seen twice in a run;
- :func:`repeated_pairs` — notes for design pairs ``(sample_id, seed)`` run again.

>>> import pandas as pd
>>> t = pd.DataFrame({"run_id": ["r", "r"], "sample_id": [3, 3], "seed": [7, 7]})
>>> repeated_pairs(t)[0][:46]
"run 'r' holds 1 design pair(s) (sample_id, see"
"""

from __future__ import annotations

import pandas as pd

from varirec.errors import DatasetError
from varirec.storage import Dataset

__all__ = ["refuse_repeated_episodes", "repeated_pairs"]


def refuse_repeated_episodes(ds: Dataset, table: pd.DataFrame) -> None:
    """An episode (run, env, episode) is recorded once: one that is there twice (a part
    copied into the run, or a damaged part put back after ``varirec resume`` recorded
    its episodes again) would count twice in every number, and its draws' as-of join
    would not hold."""
    keys = ["run_id", "env_id", "episode"]
    repeated = table.duplicated(keys, keep=False)
    if not repeated.any():
        return
    first = table.loc[repeated, keys].iloc[0]
    run = first["run_id"]
    count = int(table.loc[repeated & (table["run_id"] == run)].duplicated(keys).sum())
    raise DatasetError(
        f"run {run!r} of {ds.path} holds {count} episode(s) more than once (e.g. env "
        f"{int(first['env_id'])}, episode {int(first['episode'])}): a part copied into the "
        "run, or a damaged part put back after `varirec resume` recorded its episodes "
        f"again; every number would count them twice. Move the extra part(s) out of "
        f"{ds.path}/run_id={run}/episodes (the part names hold the writer's id), "
        "then analyse again"
    )


def repeated_pairs(table: pd.DataFrame) -> list[str]:
    """A note per run whose design pairs (sample_id, seed) ran more than once: a cycling
    schedule runs them again on purpose, a damaged part put back after a resume did not."""
    if "sample_id" not in table or "seed" not in table:
        return []
    design = table[table["sample_id"].notna() & (table["sample_id"] >= 0) & table["seed"].notna()]
    repeated = design.duplicated(["run_id", "sample_id", "seed"])
    return [
        f"run {run!r} holds {count} design pair(s) (sample_id, seed) more than once (a "
        "cycling schedule, or a damaged part put back after a resume recorded its episodes "
        "again): Sobol and Morris average them as replicates, every other method counts "
        "each episode"
        for run, count in design.loc[repeated, "run_id"].value_counts(sort=False).items()
    ]
