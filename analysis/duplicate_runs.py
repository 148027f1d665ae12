"""Runs that repeat each other: same seed, same variations, shared episode keys.

Draws are a hash of ``(run seed, variation, env_id, episode, draw_seq)``: two runs
recorded with the same seed and the same variations (running a script twice) draw
identical values for every ``(env_id, episode)`` they share. Pooled, those episodes
count twice and narrow every interval without new information.
:func:`check_duplicate_runs` refuses such a selection unless the caller chose it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from varirec.errors import DuplicateRunsError
from varirec.storage import Dataset

__all__ = ["check_duplicate_runs"]


def _signature(metadata: dict[str, Any]) -> str | None:
    """What decides a run's draws, or None if its seed is unknown (no claim then)."""
    seed = metadata.get("seed")
    if seed is None:
        return None
    variations = [
        (v.get("key"), v.get("mode"), v.get("enabled", True), v.get("sampler"))
        for v in metadata.get("variations", [])
    ]
    design = metadata.get("design")
    design_key = None if not design else {k: design.get(k) for k in ("method", "seed", "num_rows")}
    return json.dumps([seed, variations, design_key], sort_keys=True, default=str)


def _keys(ds: Dataset, run_id: str) -> np.ndarray:
    episodes = ds.episodes(run_id, columns=["env_id", "episode"])
    env = episodes.column("env_id").to_numpy().astype(np.int64)
    episode = episodes.column("episode").to_numpy().astype(np.int64)
    return np.unique((episode << np.int64(24)) | env)


def check_duplicate_runs(ds: Dataset, run_ids: Sequence[str]) -> None:
    """Raise :class:`DuplicateRunsError` if two of ``run_ids`` repeat each other's draws.

    Two runs repeat each other when they have the same seed, the same variations
    (and design) and share ``(env_id, episode)`` keys: those episodes drew identical
    values.
    """
    groups: dict[str, list[str]] = {}
    for run_id in run_ids:
        signature = _signature(ds.run(run_id).metadata)
        if signature is not None:
            groups.setdefault(signature, []).append(run_id)
    for members in groups.values():
        if len(members) < 2:
            continue
        keys = {r: _keys(ds, r) for r in members}
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                shared = np.intersect1d(keys[a], keys[b], assume_unique=True).size
                if shared:
                    seed = ds.run(a).metadata.get("seed")
                    raise DuplicateRunsError(
                        f"runs {a!r} and {b!r} repeat each other: same seed {seed}, same "
                        f"variations, and {shared} shared (env, episode) keys whose draws are "
                        "identical, so pooling them counts those episodes twice. Pick the runs "
                        f"to analyse (runs=[{a!r}] or --runs {a}), record with another seed, "
                        "or pool them anyway with allow_duplicate_runs=True "
                        "(--allow-duplicate-runs)"
                    )
