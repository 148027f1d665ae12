"""Which episodes of a design run are independent draws, and which base sample each
belongs to.

The rows of one Sobol base sample (``A``, ``AB_1``..``AB_D``, ``B``) share all but one
factor's value, and a Morris trajectory's rows all but the one it steps; replicates
repeat a row's values. Tests and intervals that take episodes as independent draws
(a paired bootstrap, McNemar, KS between failures and successes) read such a run as
far more evidence than it holds: on a Sobol design of pure noise, the failure
analysis's per-factor test named an inert factor in half the runs. They read the
independent rows (:func:`independent_rows`: ``A`` and ``B`` of each base sample, each
trajectory's first row; one replicate each), or resample whole base samples
(:func:`base_samples`).

>>> import pandas as pd
>>> frame = pd.DataFrame({"run_id": "r", "sample_id": [0, 1, 2, 3, 4, 5, 0], "seed": [7] * 6 + [8]})
>>> designs = {"r": {"method": "sobol", "group_size": 3}}  # D = 1: A, AB_1, B
>>> independent_rows(frame, designs).tolist()
[True, False, True, True, False, True, False]
>>> base_samples(frame, designs).tolist()
[0, 0, 0, 1, 1, 1, 0]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from varirec.storage import Dataset

__all__ = ["base_samples", "independent_rows", "run_designs"]


def run_designs(ds: Dataset, run_ids: list[str]) -> dict[str, Mapping[str, Any]]:
    """The design (``run.json``'s ``design``) of each of ``run_ids`` that has one."""
    found = {r: ds.run(r).metadata.get("design") for r in run_ids}
    return {r: d for r, d in found.items() if d}


def _runs(frame: pd.DataFrame, designs: Mapping[str, Mapping[str, Any]]) -> np.ndarray:
    """Each row's run id: its ``run_id`` column, else the one design's run (a frame of
    one run)."""
    if "run_id" in frame:
        return frame["run_id"].to_numpy()
    if len(designs) > 1:
        raise ValueError("a frame of several design runs needs a `run_id` column")
    return np.full(len(frame), next(iter(designs), None), dtype=object)


def _position(frame: pd.DataFrame, design: Mapping[str, Any]) -> np.ndarray:
    rows = pd.to_numeric(frame["sample_id"], errors="coerce").to_numpy(float, na_value=-1)
    return np.where(rows >= 0, rows % int(design["group_size"]), -1).astype(np.int64)


def independent_rows(frame: pd.DataFrame, designs: Mapping[str, Mapping[str, Any]]) -> np.ndarray:
    """A mask of the episodes that are independent draws: every episode of a run
    without a design; of a design run, the ``A`` and ``B`` rows of each base sample
    (Sobol) or each trajectory's first row (Morris), the first replicate of each
    (lowest ``seed``). Rows without a ``sample_id`` are left out of a design run."""
    keep = np.ones(len(frame), bool)
    runs = _runs(frame, designs)
    for run, design in designs.items():
        mine = runs == run
        if not mine.any():
            continue
        part = frame[mine]
        pos = _position(part, design)
        size = int(design["group_size"])
        ends = (pos == 0) | (pos == size - 1) if design["method"] == "sobol" else pos == 0
        # one replicate per design row: the lowest seed
        order = np.lexsort((part["seed"].to_numpy(), part["sample_id"].to_numpy()))
        first = np.zeros(len(part), bool)
        ids = part["sample_id"].to_numpy()[order]
        first[order] = np.r_[True, ids[1:] != ids[:-1]] if len(ids) else first[order]
        keep[mine] = ends & first
    return keep


def base_samples(frame: pd.DataFrame, designs: Mapping[str, Mapping[str, Any]]) -> np.ndarray:
    """Each episode's cluster, as an int code: its base sample (Sobol) or trajectory
    (Morris) in a design run, replicates included; itself elsewhere."""
    runs = _runs(frame, designs)
    keys = np.arange(len(frame), dtype=np.int64) + 1  # alone: positive, never a base's
    for run, design in designs.items():
        mine = runs == run
        rows = pd.to_numeric(frame.loc[mine, "sample_id"], errors="coerce").to_numpy(float)
        keys[mine] = np.where(
            np.isfinite(rows), -(rows // int(design["group_size"])) - 1, keys[mine]
        ).astype(np.int64)
    labels = pd.Series(runs).astype(str) + ":" + pd.Series(keys).astype(str)
    codes, _ = pd.factorize(labels)
    return codes.astype(np.int64)
