"""The episode tracker's reset steps compiled with numba: the numpy path's result, in one call.

A reset of a few dozen envs costs the tracker about ten numpy calls (gathers, scatters,
checks) of a microsecond each after a simulation step has evicted them from the
caches; here each step is one call. Every kernel leaves the arrays as the numpy path
of :class:`~varirec.recording.episodes.EpisodeTracker` does, repeated ids included
(numpy's ``a[ids] = f(a[ids])`` reads every element before it writes one: so do these,
through ``scratch``), and checks before it writes: a refused call changes nothing.
``tests/test_tracker_kernels.py`` runs both paths on the same resets.

A reset's draw kernels (:func:`reset_draws`, :func:`recorded_reset`) also start the
new episodes; :func:`unstart` takes the start back where ``apply`` then fails. A
recorder whose only reset work is the built-in outcome term's (gather the finished
episodes' return, success and flags; clear them for the new ones) has it done in the
same call: :func:`recorded_reset` (:func:`start_outcomes` for the restart).

Loaded through :func:`varirec.sampling.accel.kernels_of` (numba, the ``fast`` extra).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from varirec.sampling import compiled
from varirec.sampling.compiled import jit

__all__ = [
    "begin_first_draws",
    "finish_and_begin",
    "finish_columns",
    "first_draw_keys",
    "first_repeat",
    "recorded_reset",
    "reset_draws",
    "start",
    "start_outcomes",
    "started_among",
    "unstart",
    "warm",
]

EPISODE, BASE, START_SEQ, START_TIME, SAMPLE_ID, SEED = range(6)
"""The columns of the tracker's int64 block (``episodes._INT_ROWS``, in order)."""


@jit
def _in_range(ids: np.ndarray, n: int) -> bool:
    for i in range(ids.shape[0]):  # noqa: SIM110 (a loop numba compiles; no generator)
        if ids[i] < 0 or ids[i] >= n:
            return False
    return True


@jit
def first_repeat(ids: np.ndarray, marks: np.ndarray) -> int:
    """The position in ``ids`` of the first id that came before in it, or -1 where each
    comes once, or -2 where one is out of range (``marks``: a zero byte per env, left
    zero)."""
    if not _in_range(ids, marks.shape[0]):
        return -2
    found, i = -1, 0
    while i < ids.shape[0]:
        if marks[ids[i]]:
            found = i
            break
        marks[ids[i]] = 1
        i += 1
    for j in range(i):
        marks[ids[j]] = 0
    return found


@jit
def started_among(ids: np.ndarray, started: np.ndarray, done: np.ndarray) -> int:
    """The started envs of ``ids`` into ``done`` (in order, repeats kept, as
    ``ids[started[ids]]``); returns how many, or -1 for an id out of range."""
    if not _in_range(ids, started.shape[0]):
        return -1
    m = 0
    for i in range(ids.shape[0]):
        if started[ids[i]]:
            done[m] = ids[i]
            m += 1
    return m


@jit
def finish_and_begin(
    ids: np.ndarray, ints: np.ndarray, started: np.ndarray, scratch: np.ndarray
) -> int:
    """End the started episodes of ``ids`` and reserve the next index of every env of
    ``ids``; returns how many had started, or -1 (nothing changed) if an id is not in
    ``[0, num_envs)``."""
    if not _in_range(ids, started.shape[0]):
        return -1
    finished = 0
    for i in range(ids.shape[0]):
        e = ids[i]
        finished += started[e]
        scratch[i] = ints[e, EPISODE] + 1
    for i in range(ids.shape[0]):
        e = ids[i]
        ints[e, EPISODE] = scratch[i]
        started[e] = False
        ints[e, BASE] = 0
        ints[e, SEED] = -1
    return finished


@jit
def first_draw_keys(
    ids: np.ndarray,
    ints: np.ndarray,
    last: np.ndarray,
    pending: np.ndarray,
    keys: np.ndarray,
) -> int:
    """The keys of a reset batch's draw: ``keys[0]`` and ``keys[1]`` take the episodes
    and design rows of ``ids``; and :func:`~varirec.variations.counters.first_draws`:
    if no env of ``ids`` drew the batch in its episode yet (``last``), note that each
    does now (``last`` and ``pending`` take its episode). Returns ``in_design + 2 *
    first`` (``in_design``: a row is >= 0; ``first`` 0: one had drawn, nothing noted)."""
    in_design = 0
    for i in range(ids.shape[0]):
        e = ids[i]
        keys[0, i] = ints[e, EPISODE]
        keys[1, i] = ints[e, SAMPLE_ID]
        if keys[1, i] >= 0:
            in_design = 1
    for i in range(ids.shape[0]):
        if last[ids[i]] == keys[0, i]:
            return in_design
    for i in range(ids.shape[0]):
        last[ids[i]] = keys[0, i]
        pending[ids[i]] = keys[0, i]
    return in_design + 2


@jit
def begin_first_draws(
    ids: np.ndarray,
    ints: np.ndarray,
    started: np.ndarray,
    last: np.ndarray,
    pending: np.ndarray,
    keys: np.ndarray,
    scratch: np.ndarray,
) -> int:
    """:func:`finish_and_begin`, then :func:`first_draw_keys`, in one call: -1 (nothing
    changed) for an id out of range, else ``4 * finished + first_draw_keys(...)``."""
    finished = finish_and_begin(ids, ints, started, scratch)
    if finished < 0:
        return -1
    return 4 * finished + first_draw_keys(ids, ints, last, pending, keys)


@jit
def finish_columns(
    done: np.ndarray, ints: np.ndarray, started: np.ndarray, clock: int, end_seq: int, now: int,
    out: np.ndarray,
) -> int:  # fmt: skip
    """End the started episodes of ``done`` (each started, as the tracker picked them)
    and write their columns into ``out`` (rows in ``episodes.FINISHED``'s order): their
    counters, ``end_seq``, ``now`` and their length, which becomes the stopped step
    count. Every column is read before a counter is written (an id may come twice).
    Returns -1 (nothing changed) for an id out of range, else 0."""
    if not _in_range(done, started.shape[0]):
        return -1
    for i in range(done.shape[0]):
        e = done[i]
        out[0, i] = ints[e, EPISODE]
        out[1, i] = ints[e, START_SEQ]
        out[2, i] = end_seq
        out[3, i] = clock - ints[e, BASE]
        out[4, i] = ints[e, SAMPLE_ID]
        out[5, i] = ints[e, SEED]
        out[6, i] = ints[e, START_TIME]
        out[7, i] = now
    for i in range(done.shape[0]):
        ints[done[i], BASE] = out[3, i]
        started[done[i]] = False
    return 0


@jit
def start(
    ids: np.ndarray,
    ints: np.ndarray,
    started: np.ndarray,
    clock: int,
    seq: int,
    now: int,
    scratch: np.ndarray,
) -> int:
    """Stamp the start of the reserved episodes of ``ids`` (every env began one);
    returns -1 (nothing changed) if one of them had started already or is out of
    range, else 0."""
    if not _in_range(ids, started.shape[0]):
        return -1
    for i in range(ids.shape[0]):
        if started[ids[i]]:
            return -1
    for i in range(ids.shape[0]):
        scratch[i] = clock - ints[ids[i], BASE]
    for i in range(ids.shape[0]):
        e = ids[i]
        ints[e, BASE] = scratch[i]
        started[e] = True
        ints[e, START_SEQ] = seq
        ints[e, START_TIME] = now
    return 0


@jit
def start_outcomes(
    ids: np.ndarray,
    ints: np.ndarray,
    started: np.ndarray,
    clock: int,
    seq: int,
    now: int,
    scratch: np.ndarray,
    acc: np.ndarray,
    flags: np.ndarray,
) -> int:
    """:func:`start`, then the outcome entries of ``ids`` cleared for their new
    episodes (return 0, success unknown, no flags), as the outcome term's restart."""
    if start(ids, ints, started, clock, seq, now, scratch) != 0:
        return -1
    for i in range(ids.shape[0]):
        e = ids[i]
        acc[0, e] = 0.0
        acc[1, e] = np.nan
        flags[0, e] = False
        flags[1, e] = False
    return 0


@jit
def unstart(
    ids: np.ndarray, ints: np.ndarray, started: np.ndarray, clock: int, scratch: np.ndarray
) -> None:
    """Take back the :func:`start` of ``ids`` (no step since): their episodes are begun
    but not started, as before it (the ``apply`` after a compiled reset raised)."""
    for i in range(ids.shape[0]):
        scratch[i] = clock - ints[ids[i], BASE]  # start's turn of the base, undone
    for i in range(ids.shape[0]):
        ints[ids[i], BASE] = scratch[i]
        started[ids[i]] = False


def _with_draw_kernels(stamp: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """:func:`reset_draws` and :func:`recorded_reset`, compiled. They call a kernel of
    another file (:func:`~varirec.sampling.compiled.plan_columns`), which numba's
    on-disk cache does not follow: the cache key of a closure includes its cells, so
    ``stamp``, a hash of that file, makes an edit there compile them again."""

    def reset_draws(
        ids: np.ndarray, ints: np.ndarray, started: np.ndarray, clock: int, start_seq: int,
        now: int, last: np.ndarray, pending: np.ndarray, keys: np.ndarray,
        scratch: np.ndarray, bases: np.ndarray, comps: np.ndarray, form: np.ndarray,
        out: np.ndarray,
    ) -> int:  # fmt: skip
        """:func:`begin_first_draws`, then, for first draws, every value of a
        continuous plan into ``out`` (:func:`~varirec.sampling.compiled.plan_columns`
        of the episodes in ``keys[0]``) and the episodes' start (:func:`start`, at
        ``start_seq``; :func:`unstart` takes it back); returns what
        :func:`begin_first_draws` does."""
        if len(stamp) == 0:  # never: reads the cell that keys the cache
            return -2
        code = begin_first_draws(ids, ints, started, last, pending, keys, scratch)
        if code >= 0 and code & 2:
            compiled.plan_columns(bases, comps, form, ids, keys[0], out)
            start(ids, ints, started, clock, start_seq, now, scratch)
        return code

    def recorded_reset(
        ids: np.ndarray, ints: np.ndarray, started: np.ndarray, clock: int, end_seq: int,
        now: int, acc: np.ndarray, flags: np.ndarray, block: np.ndarray, floats: np.ndarray,
        last: np.ndarray, pending: np.ndarray, keys: np.ndarray, scratch: np.ndarray,
        bases: np.ndarray, comps: np.ndarray, form: np.ndarray, out: np.ndarray,
        num_draws: int,
    ) -> int:  # fmt: skip
        """A recorded reset: the started envs of ``ids`` (:func:`started_among`), their
        tracker columns (:func:`finish_columns`), return and success (``acc``'s rows),
        terminated and truncated (``flags``') into the rows of ``block``
        (``episode_chunk.RECORDED_ROWS``: env, the 8 tracker columns, then the floats
        through ``floats``, ``block`` viewed as float64, then the flags as 0 or 1),
        then :func:`reset_draws` and, for first draws, the outcome entries' restart
        (:func:`start_outcomes`; the start's seq follows the end's, if any, and the
        ``num_draws`` draws'); columns ``[:m]`` are the ``m`` finished episodes.
        Returns ``4 * m + (reset_draws' code & 3)``, or -1 (nothing changed) for an
        id out of range."""
        if len(stamp) == 0:
            return -2
        done = block[0]
        m = started_among(ids, started, done)
        if m < 0:
            return -1
        for i in range(m):
            e = done[i]
            floats[9, i] = acc[0, e]
            floats[10, i] = acc[1, e]
            block[11, i] = flags[0, e]
            block[12, i] = flags[1, e]
        finish_columns(done[:m], ints, started, clock, end_seq, now, block[1:9])
        code = begin_first_draws(ids, ints, started, last, pending, keys, scratch)
        if code & 2:
            compiled.plan_columns(bases, comps, form, ids, keys[0], out)
            seq = (end_seq if m > 0 else end_seq - 1) + num_draws + 1
            start_outcomes(ids, ints, started, clock, seq, now, scratch, acc, flags)
        return 4 * m + (code & 3)

    return jit(reset_draws), jit(recorded_reset)


reset_draws, recorded_reset = _with_draw_kernels(
    hashlib.sha256(Path(compiled.__file__).read_bytes()).hexdigest()
)


def _layouts(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``(rows, 2)`` int64 block as a new array (C order) and as a
    :class:`~varirec.recording.block_pool.BlockPool` hands it out (columns of a wider
    buffer): two types to numba."""
    return np.zeros((rows, 2), np.int64), np.zeros((rows, 4), np.int64)[:, 1:3]


def warm() -> None:
    """Compile the kernels for the arrays a reset passes (env ids contiguous and
    writable, as the env's ``flatnonzero`` gives them; strided or read-only ids are
    other types to numba, compiled on first use and cached like these)."""
    ids, scratch = np.zeros(2, np.int64), np.zeros(4, np.int64)
    ints, started = np.zeros((2, 6), np.int64), np.zeros(2, bool)
    last, pending, keys = np.full(2, -9), np.zeros(2, np.int64), np.zeros((2, 2), np.int64)
    acc, flags = np.zeros((2, 2)), np.zeros((2, 2), bool)
    finish_and_begin(ids, ints, started, scratch)
    start(ids, ints, started, 0, 1, 2, scratch)
    start_outcomes(ids, ints, np.zeros(2, bool), 0, 1, 2, scratch, acc, flags)
    first_draw_keys(ids, ints, last, pending, keys)
    begin_first_draws(ids, ints, started, last, pending, keys, scratch)
    for block in _layouts(8):  # a new array, and a pool's block (strided)
        finish_columns(ids, ints, started, 0, 1, 2, block)
    started_among(ids, started, scratch)
    first_repeat(ids, np.zeros(2, np.uint8))
    u, form = np.zeros(3, np.uint64), np.zeros((10, 3))
    reset_draws(ids, ints, started, 0, 1, 2, last, pending, keys, scratch, u, u, form,
                np.zeros((2, 3)))  # fmt: skip
    unstart(ids, ints, started, 0, scratch)
    for block in _layouts(13):
        recorded_reset(ids, ints, started, 0, 1, 2, acc, flags, block, block.view(np.float64),
                       last, pending, keys, scratch, u, u, form, np.zeros((2, 3)), 3)  # fmt: skip
