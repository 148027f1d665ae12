"""The draw counters of a driver's variations (``draw_seq``: the how-many-th draw of a
variation in an env's episode), kept for a whole reset batch at once.

Each variation counts its draws in two per-env arrays (count, episode of the count);
here they are the columns of two ``(envs, variations)`` matrices. A batched reset of
the envs' first draws in their episodes (the usual reset) writes nothing to them: it
checks one per-env array (the latest episode in which a variation of the batch drew)
and notes the envs in another; the columns are brought up to date only when they are
read (a variation of the batch drawing alone) or the batch changes.

>>> import numpy as np, varirec as vr
>>> from varirec.recording.episodes import EpisodeTracker
>>> v = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
>>> t = EpisodeTracker(3); v.bind(t); _ = t.begin(np.arange(3))
>>> counters = DrawCounters([v], 3); counters.track([v], counters.rows_of([v]))
>>> first_draws(counters.cols, counters, np.array([0, 2]), np.array([0, 0]))
True
>>> first_draws(counters.cols, counters, np.array([2]), np.array([0]))  # drew already
False
>>> counters.flush(); v._draw_count.tolist(), v._count_episode.tolist()
([1, 0, 1], [0, -1, 0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from varirec.variations.variation import Variation, _changed

__all__ = ["DrawCounters", "first_draws"]


class DrawCounters:
    """The per-env draw counters of a driver's variations, as matrix columns that each
    variation uses as its own arrays, and the batch draws not yet written into them.

    Attributes:
        last: per env, the latest episode in which a variation of the tracked batch drew.
        pending: per env, the episode of its latest batch draw not yet in the columns
            (-1: none).
        cols: the columns of the tracked batch (None: no batch is tracked).
    """

    __slots__ = (
        "cols", "count", "dirty", "episode", "last", "pending", "rows", "variations", "views",
    )  # fmt: skip

    def __init__(self, variations: Sequence[Variation], num_envs: int) -> None:
        vs = list(variations)
        self.variations = vs
        self.count = np.zeros((num_envs, len(vs)), np.int64)
        self.episode = np.full((num_envs, len(vs)), -1, np.int64)
        self.views: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for j, v in enumerate(vs):
            count, episode = self.count[:, j], self.episode[:, j]
            count[:] = v._draw_count
            episode[:] = v._count_episode
            v._draw_count, v._count_episode = count, episode
            v._counter_sync = None
            self.views[v.key] = (count, episode)
        self.rows: dict[tuple[str, ...], np.ndarray] = {}
        self.last = np.full(num_envs, -1, np.int64)
        self.pending = np.full(num_envs, -1, np.int64)
        self.cols: np.ndarray | None = None
        self.dirty = False
        _changed()  # another driver's cached batch of these variations checks them again

    def rows_of(self, variations: Sequence[Variation]) -> np.ndarray | None:
        """The matrix columns of ``variations``, or None if one does not use its column
        (it was bound again, or is not this driver's)."""
        for v in variations:
            view = self.views.get(v.key)
            if view is None or v._count_episode is not view[1] or v._draw_count is not view[0]:
                return None
        keys = tuple(v.key for v in variations)
        rows = self.rows.get(keys)
        if rows is None:
            order = list(self.views)
            rows = self.rows[keys] = np.array([order.index(k) for k in keys], np.int64)
        return rows

    def flush(self) -> None:
        """Write the batch draws not yet written into the columns (count 1, their
        episode: each was the first draw of its episode)."""
        if not self.dirty:
            return
        self.dirty = False
        envs = np.flatnonzero(self.pending >= 0)
        cell = (envs[:, None], self.cols[None, :])  # type: ignore[index]
        self.count[cell] = 1
        self.episode[cell] = self.pending[envs][:, None]
        self.pending[envs] = -1

    def _solo(self, ids: np.ndarray, episodes: np.ndarray) -> None:
        """A variation of the tracked batch draws alone: its column is read next."""
        self.flush()
        self.last[ids] = episodes

    def track(self, members: Sequence[Variation], cols: np.ndarray | None) -> None:
        """Follow the batch draws of ``members`` (columns ``cols``; None: they are not
        all this driver's, and no batch is followed)."""
        self.flush()
        hook = self._solo
        for v in self.variations:
            if v._counter_sync == hook:
                v._counter_sync = None
        self.cols = cols
        if cols is None:
            return
        for v in members:
            v._counter_sync = hook
        # Episodes only grow: an env's members drew in its current episode exactly when
        # the latest of their episodes is the current one.
        self.last[:] = self.episode[:, cols].max(axis=1) if len(cols) else -1


def first_draws(
    cols: Any, counters: DrawCounters | None, ids: np.ndarray, episodes: np.ndarray
) -> bool:
    """Whether every env of ``ids`` draws each variation of the batch with columns
    ``cols`` for the first time in its episode (the usual reset); if so the draws are
    noted (written into the columns when they are read)."""
    if cols is None or counters is None or counters.cols is not cols:
        return False
    last = counters.last
    if (last[ids] == episodes).any():
        return False  # some env draws again in the same episode: count per variation
    last[ids] = episodes
    counters.pending[ids] = episodes
    counters.dirty = True
    return True
