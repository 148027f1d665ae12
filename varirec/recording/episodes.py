"""Per-env episode bookkeeping: which episode each env is in, and the run's event clock.

:class:`EpisodeTracker` owns numpy arrays of per-env counters and one run-wide,
monotonically increasing sequence number ``seq`` that stamps every draw and every
episode start and end. The value a variation had during an episode is then the last
draw for that env (or for all envs) with ``seq <= start_seq`` (an *as-of* join).

Lifecycle, for the envs in ``env_ids``:

1. :meth:`EpisodeTracker.finish` — the finished episode's rows (only for envs whose
   episode actually started: the first reset after build finishes nothing, so there
   is no phantom episode);
2. :meth:`EpisodeTracker.begin` — reserve the next episode index, *before* the reset
   draws, so those draws belong to the episode they begin. A retried reset reserves
   again: an index is never reused;
3. reset-mode variations draw;
4. :meth:`EpisodeTracker.start` — stamp ``start_seq`` after the draws.

>>> t = EpisodeTracker(num_envs=2)
>>> t.finish(np.array([0, 1]))["env_id"].tolist()   # first reset: nothing finished
[]
>>> t.begin(np.array([0, 1])).tolist()
[0, 0]
>>> t.start(np.array([0, 1]))
>>> t.advance_steps(); t.finish(np.array([1]))["length"].tolist()
[1]
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from varirec.errors import RecorderStateError
from varirec.sampling.accel import kernels_of

__all__ = ["FINISHED", "FINISHED_BLOCK", "EpisodeTracker", "check_num_envs", "now_us"]

FINISHED = (
    "episode",
    "start_seq",
    "end_seq",
    "length",
    "sample_id",
    "seed",
    "time_start",
    "time_end",
)
"""The finished episodes' int64 columns, in the order of :meth:`EpisodeTracker.finish`'s
dict and of the rows of :meth:`EpisodeTracker.finish_block`'s block."""

FINISHED_BLOCK = "#finished"
"""The key of :meth:`EpisodeTracker.finish_block`'s ``(len(FINISHED), n)`` block in a row."""


def check_num_envs(num_envs: object) -> int:
    """``num_envs`` as an int, or a ValueError naming it (bools are not counts).

    >>> check_num_envs(4096)
    4096
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
        raise ValueError(f"`num_envs` must be a positive int, got {num_envs!r}")
    if num_envs > MAX_ENVS:  # env ids are int32 on disk
        raise ValueError(
            f"`num_envs` must be at most {MAX_ENVS:,} (env ids are 32-bit in the dataset), "
            f"got {num_envs:,}; split the envs over several managers or runs"
        )
    return int(num_envs)


MAX_ENVS = 2**31 - 1
"""The most envs one tracker counts: ``env_id`` is an int32 column."""


def now_us() -> int:
    """UTC wall-clock time in integer microseconds since the epoch."""
    return time.time_ns() // 1000


def _kernels() -> Any:
    return kernels_of("varirec.recording.tracker_kernels")


_INT_ROWS = {
    "episode": -1,
    "step_base": 0,
    "start_seq": -1,
    "start_time": 0,
    "sample_id": -1,
    "seed": -1,
}
"""The tracker's int64 counters (columns of one env-major block, in this order) and their
start value."""


class EpisodeTracker:
    """Per-env episode counters for a batch of ``num_envs`` envs.

    Attributes (numpy arrays of length ``num_envs``):
        episode: the current (or reserved) episode index, -1 before the first reset.
        started: whether the current episode has started (``start`` was called).
        step: steps taken in the current episode (worked out when read: a read-only
            copy; :meth:`steps` for some envs).
        start_seq, start_time: when the current episode started.
        sample_id: the design row of the current episode (-1 outside a design).
        seed: the reset seed of the current episode (-1 when unknown).
    """

    def __init__(self, num_envs: int) -> None:
        check_num_envs(num_envs)
        self.num_envs = int(num_envs)
        # The int64 counters are columns of one env-major block: a reset reads and
        # writes an env's six counters in one cache line (a simulation step has evicted
        # them: six rows cost six misses per env), and a finished batch's columns come
        # out of one gather. No step reads a counter of every env.
        self._ints = np.empty((num_envs, len(_INT_ROWS)), dtype=np.int64)
        self._ints[:] = np.array(list(_INT_ROWS.values()))
        self.episode, self._base, self.start_seq, self.start_time, self.sample_id, self.seed = (
            self._ints.T
        )
        # A step touches no per-env array: a running episode's step count is `_clock -
        # _base` (its start, moved back by steps counted for it alone); a stopped one's
        # is `_base` itself.
        self._clock = 0
        self.started = np.zeros(num_envs, dtype=bool)
        self.seq = 0
        self.episodes_finished = 0
        self._scratch = np.empty(num_envs, dtype=np.int64)  # the compiled steps' reads
        self._marks = np.zeros(num_envs, dtype=np.uint8)  # first_repeat's, left zero
        self.before_read: Any = None
        """Called before a variation reads the counters to draw, while a reset's
        bookkeeping waits (a prefetched GPU reset settles itself); None otherwise."""

    def ids(self, env_ids: Any = None) -> np.ndarray:
        """Normalize ``env_ids`` (None: all envs) to an int64 array, checking the range."""
        if env_ids is None:
            return np.arange(self.num_envs, dtype=np.int64)
        ids = np.asarray(env_ids)
        kind = ids.dtype.kind  # dtype checks only: this runs at every reset
        if kind == "b":
            if ids.shape != (self.num_envs,):
                raise ValueError(
                    f"a boolean env mask must have shape ({self.num_envs},), got {ids.shape}; "
                    f"pass one bool per env (length {self.num_envs}), or the int ids of the "
                    "envs (np.flatnonzero(mask))"
                )
            return np.flatnonzero(ids)
        if kind not in "iu":
            if not ids.size:  # [] is float64 to numpy: no envs
                return np.zeros(0, dtype=np.int64)
            raise TypeError(
                f"`env_ids` must be integers or a bool mask, got {ids.dtype} "
                f"{ids.reshape(-1)[:5].tolist()}; pass int ids (e.g. np.array([0, 3])) or a "
                f"bool mask of shape ({self.num_envs},)"
            )
        if ids.ndim > 1 and ids.shape[1:] != (1,) * (ids.ndim - 1):  # a (k, 1) column is ids
            raise ValueError(
                f"`env_ids` must be one-dimensional, got shape {ids.shape}; pass the ids as "
                "a flat array (ids.reshape(-1)), or a bool mask of shape "
                f"({self.num_envs},)"
            )
        ids = ids.astype(np.int64, copy=False).reshape(-1)
        # One pass: a negative id read as uint64 is past every env.
        if ids.size and ids.view(np.uint64).max() >= self.num_envs:
            bad = ids[(ids < 0) | (ids >= self.num_envs)][:5].tolist()
            raise ValueError(f"`env_ids` must be in [0, {self.num_envs}), got {bad}")
        self.check_unique(ids)
        return ids

    def check_unique(self, ids: np.ndarray) -> None:
        """Raise ValueError where an env comes twice in ``ids`` (int64): its episode
        would end twice, and its rows be written twice. An id out of range passes here
        (the range check names it).

        >>> try:
        ...     EpisodeTracker(4).check_unique(np.array([2, 0, 2]))
        ... except ValueError as e:
        ...     print(str(e).split(";")[0])
        `env_ids` must name each env once, got env 2 2 times (at positions [0, 2])
        """
        if len(ids) < 2:
            return
        kern = _kernels()
        if kern is not None and ids.dtype == np.int64:
            if kern.first_repeat(ids, self._marks) < 0:
                return
        elif (ids[1:] > ids[:-1]).all():  # sorted (as nonzero gives them): no repeat
            return
        values, counts = np.unique(ids, return_counts=True)
        if counts.max() < 2:
            return
        j = int(np.argmax(counts > 1))
        env = int(values[j])
        where = np.flatnonzero(ids == env)[:5].tolist()
        raise ValueError(
            f"`env_ids` must name each env once, got env {env} {int(counts[j])} times (at "
            f"positions {where}); pass each env once (np.unique(env_ids), or env_ids.unique() "
            "for a tensor). An int array of 0 and 1 is read "
            f"as env ids: pass a mask as bool (shape ({self.num_envs},))"
        )

    @property
    def step(self) -> np.ndarray:
        """Steps taken in the current episode, per env (a copy: write through the
        tracker's methods)."""
        return self.steps(None)

    def steps(self, env_ids: np.ndarray | None) -> np.ndarray:
        """Steps taken in the current episodes of ``env_ids`` (None: every env)."""
        if env_ids is None:
            base, running = self._base, self.started
        else:
            base, running = self._base[env_ids], self.started[env_ids]
        return np.where(running, self._clock - base, base)

    def next_seq(self) -> int:
        """Take the next event sequence number."""
        self.seq += 1
        return self.seq

    def take_seqs(self, n: int) -> int:
        """Take ``n`` consecutive sequence numbers; returns the first."""
        first = self.seq + 1
        self.seq += n
        return first

    def begin(self, env_ids: np.ndarray) -> np.ndarray:
        """Reserve the next episode index for ``env_ids``; returns the new indices.

        The new episodes' seeds are unknown (-1) until a schedule or a reset sets them:
        a seed belongs to one episode, never to the next.
        """
        self.episode[env_ids] += 1
        self.started[env_ids] = False
        self._base[env_ids] = 0
        self.seed[env_ids] = -1
        return self.episode[env_ids]

    def finish_and_begin(self, env_ids: np.ndarray) -> None:
        """:meth:`finish` without columns, then :meth:`begin`, in fewer passes: a reset
        that records nothing (the finished episodes' stopped step counts and flags are
        overwritten by the new episodes' at once)."""
        kern = _kernels()
        if kern is not None and env_ids.dtype == np.int64:
            finished = kern.finish_and_begin(env_ids, self._ints, self.started, self._scratch)
            if finished >= 0:  # else an id out of range: numpy refuses it below
                self.episodes_finished += finished
                self.seq += 1
                return
        self.episodes_finished += int(np.count_nonzero(self.started[env_ids]))
        self.seq += 1  # the finished episodes' end, as finish takes it
        self.begin(env_ids)

    def begin_unbegun(self, env_ids: np.ndarray) -> None:
        """Begin episode 0 for envs that never began one (a first reset without pre-reset)."""
        fresh = env_ids[self.episode[env_ids] < 0]
        if fresh.size:
            self.begin(fresh)

    def start(self, env_ids: np.ndarray, *, begun: bool = False) -> None:
        """Stamp the start of the reserved episodes of ``env_ids`` (after the reset draws);
        ``begun``: every env of ``env_ids`` began an episode (no env is still at -1)."""
        if not begun:
            self.begin_unbegun(env_ids)
        kern = _kernels()
        if kern is not None and env_ids.dtype == np.int64:
            seq = self.seq + 1
            if kern.start(env_ids, self._ints, self.started, self._clock, seq, now_us(),
                          self._scratch) == 0:  # fmt: skip
                self.seq = seq
                return
        again = env_ids[self.started[env_ids]]
        if again.size:
            raise RecorderStateError(
                f"envs {again[:8].tolist()} were reset again without finishing their episode; "
                "call record_pre_reset(env_ids) before resetting them"
            )
        self._base[env_ids] = self._clock - self._base[env_ids]  # counts on from here
        self.started[env_ids] = True
        self.start_seq[env_ids] = self.next_seq()
        self.start_time[env_ids] = now_us()

    def advance_steps(self, env_ids: np.ndarray | None = None) -> None:
        """Count one step for the running episodes (of ``env_ids``, default all)."""
        if env_ids is None:
            self._clock += 1
        else:
            self._base[env_ids] -= self.started[env_ids]

    def finish_block(
        self,
        done: np.ndarray,
        now: int | None = None,
        out: np.ndarray | None = None,
        env_out: np.ndarray | None = None,
    ) -> dict[str, np.ndarray] | None:
        """:meth:`finish` of ``done`` (started envs, as the caller picked them), its
        columns kept as one int64 block under :data:`FINISHED_BLOCK` (rows in
        :data:`FINISHED`'s order) beside ``env_id``: eight column views cost more than
        the compiled finish on a simulation's hot path, so a recorder splits the block
        where it writes (:class:`~varirec.recording.episode_chunk.EpisodeChunk`). None
        (nothing done) where the kernels are off: call :meth:`finish`. ``now``: the
        end's time (default now); ``out``: where the block goes (``(len(FINISHED),
        len(done))`` int64), ``env_out``: where ``env_id`` goes (``len(done)`` int32;
        default new arrays)."""
        kern = _kernels()
        if kern is None or done.dtype != np.int64:
            return None
        if out is None:
            out = np.empty((len(FINISHED), len(done)), np.int64)
        if kern.finish_columns(done, self._ints, self.started, self._clock, self.seq + 1,
                               now_us() if now is None else now, out) != 0:  # fmt: skip
            return None  # an id out of range: finish refuses it
        self.seq += 1
        self.episodes_finished += len(done)
        if env_out is None:
            return {"env_id": done.astype(np.int32), FINISHED_BLOCK: out}
        np.copyto(env_out, done, casting="unsafe")
        return {"env_id": env_out, FINISHED_BLOCK: out}

    def finish(
        self,
        env_ids: np.ndarray,
        *,
        columns: bool = True,
        started: bool = False,
        now: int | None = None,
    ) -> dict[str, np.ndarray]:
        """End the started episodes among ``env_ids``; returns their episode columns
        (none with ``columns=False``: nothing records them).

        Envs whose episode never started (the first reset after build, or a retried
        reset) are skipped: they finished nothing. ``started``: the caller picked
        ``env_ids`` among the started envs (no need to look again); ``now``: the end's
        time (default now).
        """
        done = env_ids if started else env_ids[self.started[env_ids]]
        found = self.finish_block(done, now) if columns else None
        if found is not None:
            block = found.pop(FINISHED_BLOCK)
            return {**found, **dict(zip(FINISHED, block, strict=True))}
        self.started[done] = False  # first: an id out of range changes nothing
        end_seq = self.next_seq()
        self.episodes_finished += len(done)
        if not columns:
            self._base[done] = self._clock - self._base[done]  # stopped: the count itself
            return {}
        episode, base, start_seq, time_start, sample_id, seed = self._ints.take(done, axis=0).T
        length = self._clock - base
        self._base[done] = length
        return {
            "env_id": done.astype(np.int32),
            "episode": episode,
            "start_seq": start_seq,
            "end_seq": np.full(len(done), end_seq, dtype=np.int64),
            "length": length,
            "sample_id": sample_id,
            "seed": seed,
            "time_start": time_start,
            "time_end": np.full(len(done), now_us() if now is None else now, dtype=np.int64),
        }
