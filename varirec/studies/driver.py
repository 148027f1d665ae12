"""Drive a batched env through a recorded study: reset, step, record, repeat.

Contents:

- :class:`StepOutput` — what a batched env's ``step()`` returns: per-env reward,
  terminated, truncated and success arrays.
- :class:`BatchedEnv` — the protocol the driver needs: ``num_envs``,
  ``reset_idx(env_ids, seeds)`` and ``step()``. Variations set the env's parameters
  through their ``apply`` callables; ``reset_idx`` then starts the new episodes from
  those parameters, with the episode noise seeded by ``seeds``.
- :func:`drive_episodes` — step the whole batch, vectorized (no Python loop per env),
  until a :class:`~varirec.studies.design.DesignSchedule` is exhausted and its episodes have
  finished, or until ``num_episodes`` episodes of plain random draws were recorded.

Envs that have nothing left to run are *idle*: their finished episode is recorded,
their next one never starts (they draw nothing and record nothing more), so every
recorded episode of a design study has a design row (``sample_id``).

>>> import varirec as vr
>>> from varirec.envs import make_ishigami_env, ishigami_variations
>>> env = make_ishigami_env(8)
>>> manager = vr.NullRecorderManager(8, variations=ishigami_variations(), seed=0)
>>> drive_episodes(env, manager, num_episodes=20).episodes
20
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from varirec.recording.manager import NullRecorderManager

__all__ = [
    "BatchedEnv",
    "StepOutput",
    "StudyStats",
    "drive_episodes",
    "label_values",
    "require_env",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepOutput:
    """One step of a batch of ``num_envs`` envs (arrays of shape ``(num_envs,)``).

    ``success`` is float: 1.0 / 0.0, or NaN while unknown (the recorder stores the
    value of the episode's last step).
    """

    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    success: np.ndarray


class BatchedEnv(Protocol):
    """What :func:`drive_episodes` needs from an env."""

    num_envs: int

    def reset_idx(self, env_ids: np.ndarray, seeds: np.ndarray) -> None:
        """Start new episodes for ``env_ids`` from their (just applied) parameters."""
        ...

    def step(self) -> StepOutput:
        """Advance every env one step; finished envs stay put until reset."""
        ...


@dataclass(frozen=True)
class StudyStats:
    """What a :func:`drive_episodes` call did."""

    steps: int
    """Batch steps taken."""
    episodes: int
    """Episodes finished and recorded."""
    seconds: float
    """Wall-clock time."""
    complete: bool
    """Whether it stopped because the work was done (False: ``max_steps`` ran out)."""


def require_env(env: Any, what: str) -> None:
    """The built-in envs' ``apply`` callables need the env: say how to pass it."""
    if env is None:
        raise TypeError(
            f"cannot apply {what}: `env` is None; pass the env to the manager's hooks "
            "(manager.reset(env, env_ids), draw_build(env), draw_interval(env))"
        )


def label_values(values: np.ndarray, lookup: Mapping[Any, float]) -> np.ndarray:
    """Categorical draws mapped to numbers: one lookup per distinct label, not per env.

    >>> label_values(np.array(["lab", "outdoor", "lab"]), {"lab": 1.0, "outdoor": 0.25})
    array([1.  , 0.25, 1.  ])
    """
    labels, inverse = np.unique(values, return_inverse=True)
    return np.array([lookup[x.item()] for x in labels])[inverse.reshape(-1)]


def _remaining(manager: NullRecorderManager, num_episodes: int | None, started: int) -> int:
    """Episodes that may still start (a large number for 'no limit')."""
    left = np.iinfo(np.int64).max
    schedule = manager.schedule
    if schedule is not None and not schedule.iterator.cycle:
        left = schedule.remaining
    if num_episodes is not None:
        left = min(left, num_episodes - started)
    return int(left)


def _start(env: BatchedEnv, manager: NullRecorderManager, ids: np.ndarray) -> None:
    # The manager's reset records the seeds, and post-reset sees the reset env.
    manager.reset(env, ids, reset_fn=env.reset_idx)


def drive_episodes(
    env: BatchedEnv,
    manager: NullRecorderManager,
    *,
    num_episodes: int | None = None,
    max_steps: int | None = None,
    build: bool = True,
    progress: Callable[[int], Any] | None = None,
) -> StudyStats:
    """Run episodes on the whole batch until the study is done.

    With a non-cycling :class:`~varirec.studies.design.DesignSchedule` on ``manager``, the
    study is done when every ``(row, replicate)`` pair was handed out and its episode
    finished. Otherwise (plain random draws, or a cycling schedule) give
    ``num_episodes``: exactly that many episodes start and finish in this call. Envs
    with nothing left to run go idle (see the module docstring).

    Per step: ``env.step()``, ``manager.record_step(...)``, the finished episodes are
    recorded and their envs reset (``manager.reset`` then ``env.reset_idx``, or left
    idle), ``manager.draw_interval(env)``, ``manager.record_post_step()``.

    Args:
        env: a :class:`BatchedEnv`.
        manager: the recorder manager (or its null version) holding the variations
            and, for a design study, the schedule.
        num_episodes: episodes to run in this call (required without a finite
            schedule; with one, a further cap).
        max_steps: a safety cap on batch steps; reaching it logs a warning and
            returns ``complete=False``.
        build: draw the build-mode variations first (once per manager; pass False
            when calling again on the same manager).
        progress: called with the number of episodes finished at each step that
            finished some (e.g. a ``tqdm`` bar's ``update``).

    Returns:
        A :class:`StudyStats`.
    """
    finite_schedule = manager.schedule is not None and not manager.schedule.iterator.cycle
    if num_episodes is None and not finite_schedule:
        raise ValueError(
            "`num_episodes` must be given when the manager has no finite DesignSchedule; "
            "pass e.g. num_episodes=10_000"
        )
    if num_episodes is not None and (isinstance(num_episodes, bool) or num_episodes < 0):
        raise ValueError(f"`num_episodes` must be an int >= 0, got {num_episodes!r}")
    if max_steps is not None and max_steps < 0:
        raise ValueError(f"`max_steps` must be >= 0 or None, got {max_steps!r}")
    if env.num_envs != manager.num_envs:
        raise ValueError(
            f"the env has {env.num_envs} envs but the manager tracks {manager.num_envs}; "
            "build both with the same num_envs"
        )
    clock = time.perf_counter()
    tracker = manager.tracker
    if build:
        manager.draw_build(env)
    started = 0
    finished = 0
    # Envs not running an episode (first call, or idle from an earlier call) start here.
    fresh = np.flatnonzero(~tracker.started)[: _remaining(manager, num_episodes, 0)]
    if fresh.size:
        _start(env, manager, fresh)
        started += fresh.size
    steps = 0
    while tracker.started.any():
        if max_steps is not None and steps >= max_steps:
            log.warning(
                "drive_episodes stopped at max_steps=%d with %d episodes still running",
                max_steps,
                int(tracker.started.sum()),
            )
            break
        out = env.step()
        steps += 1
        manager.record_step(
            reward=out.reward,
            terminated=out.terminated,
            truncated=out.truncated,
            success=out.success,
        )
        done = np.flatnonzero((out.terminated | out.truncated) & tracker.started)
        if done.size:
            k = min(done.size, _remaining(manager, num_episodes, started))
            if k < done.size:
                manager.record_pre_reset(done[k:])  # record them; they go idle
            if k:
                _start(env, manager, done[:k])
                started += k
            finished += done.size
            if progress is not None:
                progress(int(done.size))
        manager.draw_interval(env)
        manager.record_post_step()
    seconds = time.perf_counter() - clock
    complete = not tracker.started.any()
    log.info("drive_episodes: %d episodes in %d steps, %.2f s", finished, steps, seconds)
    return StudyStats(steps=steps, episodes=finished, seconds=seconds, complete=complete)
