"""What the array-world tests share: a loop of random resets, and the check that two
runs recorded the same tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
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


def assert_same_episodes_and_draws(a: list[pd.DataFrame], b: list[pd.DataFrame]) -> None:
    """The episodes and draws tables of runs ``a`` and ``b`` hold the same rows (over
    10 each)."""
    none = pd.DataFrame({"env_id": [], "step": []})
    assert_same_tables([*a[:2], none], [*b[:2], none], min_rows=-1)
    assert len(a[0]) > 10 and len(a[1]) > 10


def random_resets(
    m: Any,
    arrays: Callable[[Any], Any],
    steps: int = 40,
    seed: int = 0,
    between: Callable[[Any, int], None] | None = None,
) -> None:
    """``steps`` steps of manager ``m`` after a reset of every env: a quarter of the
    envs end each step, at random (by ``seed``), and reset; ``arrays`` makes the env's
    arrays (numpy, a tensor); ``between(m, step)`` runs after each step."""
    n = m.num_envs
    rng = np.random.default_rng(seed)
    m.reset(None, arrays(np.arange(n)))
    for i in range(steps):
        done = rng.random(n) < 0.25
        m.record_step(reward=arrays(rng.random(n)), terminated=arrays(done),
                      success=arrays(done))  # fmt: skip
        if done.any():
            m.reset(None, arrays(np.flatnonzero(done)))
        m.record_post_step()
        if between is not None:
            between(m, i)
