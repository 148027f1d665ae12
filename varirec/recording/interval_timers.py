"""Per-env timers of the interval-mode variations: when each env's next mid-episode
draw of each is due.

A timer is armed when an env's episode starts and again after each draw, for a number
of steps drawn from the variation's ``interval_steps`` range, keyed like episode noise
(by the episode seed where one is set), so a replayed episode draws at the same steps.

>>> import numpy as np, varirec as vr
>>> from varirec.recording.episodes import EpisodeTracker
>>> cfg = vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1), mode="interval",
...                       interval_steps=(2, 4))
>>> gust, t = vr.Variation("gust", cfg), EpisodeTracker(3)
>>> timers = IntervalTimers(vr.VariationSet([gust]), t, seed=0)
>>> _ = t.begin(np.arange(3)); t.start(np.arange(3)); timers.arm(np.arange(3))
>>> bool(((timers.next["gust"] >= 2) & (timers.next["gust"] <= 4)).all())
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from varirec.arrays import ArrayWorld
from varirec.recording.episodes import EpisodeTracker
from varirec.sampling.streams import INTERVAL_TIMER_STREAM, CounterStream
from varirec.variations.variation import Variation, noise_keys
from varirec.variations.variation_set import VariationSet

__all__ = ["IntervalTimers"]


class IntervalTimers:
    """The step at which each interval-mode variation next draws, per env.

    Args:
        variations: the driver's variations; every interval-mode one has a timer (one
            enabled later draws on time too).
        tracker: the episode tracker whose steps, episodes and seeds the timers read.
        seed: the run seed.
    """

    __slots__ = ("_stream", "next", "tracker", "variations")

    def __init__(self, variations: VariationSet, tracker: EpisodeTracker, seed: int) -> None:
        self.variations = variations
        self.tracker = tracker
        self.next = {
            v.key: np.zeros(tracker.num_envs, dtype=np.int64)
            for v in variations.values()
            if v.mode == "interval"
        }
        """Per variation key, each env's step count at which it draws next."""
        self._stream = CounterStream(seed, INTERVAL_TIMER_STREAM)

    def __bool__(self) -> bool:
        """Whether there is any timer (any interval-mode variation)."""
        return bool(self.next)

    def arm(self, ids: np.ndarray) -> None:
        """Start every timer of ``ids`` (their episodes just started)."""
        for key, nxt in self.next.items():
            nxt[ids] = self._steps(self.variations[key], ids)

    def draw_due(self, env: Any, interval: list[Variation], world: ArrayWorld) -> None:
        """Draw each of ``interval`` (the enabled interval-mode variations) for the
        running envs whose timer is due, apply it as the env takes it, and re-arm."""
        t = self.tracker
        step = None  # every env's count, worked out once: a draw takes no step
        for v in interval:
            nxt = self.next.get(v.key)
            if nxt is None:
                continue
            if step is None:
                step = t.step
            due = np.flatnonzero(t.started & (step >= nxt))
            if due.size:
                values = v.draw(env, due, apply=False)
                if v.apply is not None:  # as the env takes them (tensors on its device)
                    v.apply(env, world.env_ids(due), world.values(values))
                at = step[due]
                nxt[due] = at + self._steps(v, due, at)

    def _steps(self, v: Variation, ids: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        """Steps until ``v``'s next draw for ``ids`` (``steps``: their counts, if known)."""
        low, high = v.cfg.interval_steps
        t = self.tracker
        if steps is None:
            steps = t.steps(ids)
        # Timers are episode noise too: keyed by the episode seed where one is set.
        keys, episodes = noise_keys(ids, t.episode[ids], t.seed[ids])
        u = self._stream.uniforms(keys, episodes, 1, steps)
        return low + np.minimum((u[:, 0] * (high - low + 1)).astype(np.int64), high - low)
