"""The episode clock a bound variation reads, the keys of episode noise, and the
change count that tells a driver's cached reset plan when to rebuild.

>>> before = epoch(); _changed(); epoch() == before + 1
True
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = ["EpisodeClock", "epoch", "noise_keys"]

_SEEDED = np.int64(-2)  # the env-key of draws keyed by an episode seed

_EPOCH = [0]
"""Bumped by every change that a driver's cached reset plan depends on (a cfg, an
apply, a binding, a seed, listeners, a set's members): :func:`epoch` tells a cache
when to rebuild, for the price of one read per reset."""


def epoch() -> int:
    """The current change count of all variations (see ``_EPOCH``)."""
    return _EPOCH[0]


def _changed() -> None:
    _EPOCH[0] += 1


class EpisodeClock(Protocol):
    """What a bound variation reads to attribute its draws: the per-env episode state
    and the run's event clock (the recording stage's
    :class:`~varirec.recording.episodes.EpisodeTracker` is one)."""

    num_envs: int
    episode: np.ndarray
    sample_id: np.ndarray
    seed: np.ndarray

    def steps(self, env_ids: np.ndarray | None) -> np.ndarray:
        """Steps taken in the current episodes of ``env_ids`` (None: every env)."""
        ...

    def next_seq(self) -> int: ...

    def take_seqs(self, n: int) -> int:
        """Take ``n`` consecutive event numbers; returns the first."""
        ...

    def begin_unbegun(self, env_ids: np.ndarray) -> None: ...


def noise_keys(
    ids: np.ndarray, episodes: np.ndarray, seeds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Keys of interval draws: the episode seed where one is set, else (env, episode).

    Interval draws are episode noise (a gust). Keyed by the episode seed, every
    episode that shares a seed (common random numbers: the rows of one base sample)
    sees the same noise, so the noise does not masquerade as sensitivity.
    """
    seeded = seeds >= 0
    if not seeded.any():
        return ids, episodes
    return np.where(seeded, _SEEDED, ids), np.where(seeded, seeds, episodes)
