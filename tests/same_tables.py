"""A check the array-world tests share: two runs recorded the same tables."""

from __future__ import annotations

import pandas as pd

KEYS = (["env_id", "episode"], ["seq", "component", "env_id"], ["env_id", "step"])
"""The row keys of the episodes, draws and steps tables, in that order."""


def assert_same_tables(a: list[pd.DataFrame], b: list[pd.DataFrame], min_rows: int) -> None:
    """Runs ``a`` and ``b`` (their episodes, draws and steps tables, as pandas) hold the
    same rows, times aside and in any order; each table of ``a`` has over ``min_rows``."""
    for x, y, by in zip(a, b, KEYS, strict=True):
        x, y = (t.drop(columns=[c for c in t if c.startswith("time")]) for t in (x, y))
        assert len(x) > min_rows
        pd.testing.assert_frame_equal(
            x.sort_values(by).reset_index(drop=True), y.sort_values(by).reset_index(drop=True)
        )
