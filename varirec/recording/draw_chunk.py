"""DrawChunk: draw rows copied into preallocated columns, turned into Arrow on the writer thread.

A draw for ``n`` envs of a ``k``-component variation is copied, at the moment it is
drawn, into the chunk's columns: one entry per draw event (variation, phase, seq,
time), ``n`` per-env entries (env_id, episode, step, draw_seq, sample_id) and
``n * k`` values (and label codes). Copying a few hundred bytes costs less on the
simulation's hot path than keeping the draw's arrays alive until the flush: kept
arrays cannot be freed and reused, so every later allocation touches cold memory.

:meth:`DrawChunk.to_arrow` expands the per-env columns to one row per component and
builds the ``draws`` table; it runs on the writer's background thread.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import pyarrow as pa

from varirec.arrays import wait
from varirec.sampling.accel import kernels_of
from varirec.sampling.samplers import DrawContext
from varirec.storage.schema import DICT_STRING, PHASES, UTC_TIMESTAMP, draws_schema

__all__ = ["CHUNK_KERNELS", "DrawChunk"]

CHUNK_KERNELS = "varirec.recording.chunk_kernels"
"""The compiled layout of reset blocks (loaded through
:func:`~varirec.sampling.accel.kernels_of`)."""

PHASE_CODE = {p: i for i, p in enumerate(PHASES)}


def _segment_ids(counts: np.ndarray) -> np.ndarray:
    """For segments of the given lengths laid end to end, the segment of each element.

    ``_segment_ids([2, 0, 3]) -> [0, 0, 2, 2, 2]``.
    """
    return np.repeat(np.arange(len(counts)), counts)


def _event_columns(events: list[tuple[Any, ...]], total: int) -> tuple[np.ndarray, ...]:
    """Each row's seq, key code, phase code and time, from the events of
    :attr:`DrawChunk.events` in order (an event's rows are consecutive).

    Slice and broadcast assignments fill them: numpy copies without the GIL there, while
    ``np.repeat`` holds it throughout, and on the writer thread every torch call of the
    simulation's main thread (each one lets the GIL go) then waited for it.
    """
    seq, time = np.empty(total, np.int64), np.empty(total, np.int64)
    key, phase = np.empty(total, np.int32), np.empty(total, np.int32)
    r = 0
    for event in events:
        if len(event) == 6:
            code, phase_code, event_seq, time_us, n, k = event
            end = r + n * k
            key[r:end], phase[r:end], seq[r:end] = code, phase_code, event_seq
        else:  # a reset block: V events of k rows each
            codes, seq0, time_us, k = event
            v = len(codes)
            end = r + v * k
            key[r:end].reshape(v, k)[:] = codes[:, :1]
            phase[r:end].reshape(v, k)[:] = codes[:, 1:2]
            seq[r:end].reshape(v, k)[:] = np.arange(seq0, seq0 + v)[:, None]
        time[r:end] = time_us
        r = end
    return seq, key, phase, time


def _event_meta(events: list[tuple[Any, ...]]) -> np.ndarray:
    """The ``(n_events, 6)`` int64 event table of :attr:`DrawChunk.events`, in order,
    with each reset block expanded to its ``V`` events."""
    parts: list[np.ndarray] = []
    singles: list[tuple[Any, ...]] = []
    for event in events:
        if len(event) == 6:
            singles.append(event)
            continue
        if singles:
            parts.append(np.array(singles, dtype=np.int64))
            singles = []
        codes, seq0, time_us, k = event
        block = np.empty((len(codes), 6), np.int64)
        block[:, :2] = codes
        block[:, 2] = np.arange(seq0, seq0 + len(codes))
        block[:, 3:] = (time_us, k, 1)
        parts.append(block)
    if singles:
        parts.append(np.array(singles, dtype=np.int64))
    return np.concatenate(parts) if parts else np.zeros((0, 6), np.int64)


def _laid_out(
    chunk: DrawChunk, env_id: np.ndarray, episode: np.ndarray, value: np.ndarray
) -> tuple[np.ndarray, ...] | None:
    """A chunk of reset blocks alone laid out by the compiled kernel, which lets the
    GIL go (:mod:`~varirec.recording.chunk_kernels`): ``env_id``, ``episode`` and
    ``value`` filled, and the rows' seq, key code, phase code and time returned as
    :func:`_event_columns` returns them. None (nothing written) without numba, or
    where a block has design rows or values of another shape: the numpy layout then."""
    kern = kernels_of(CHUNK_KERNELS)
    if kern is None or any(
        rows is not None or (values is not None and values.shape != (len(ids), nv))
        for _, _, nv, ids, _, values, rows in chunk._blocks
    ):  # the kernel reads without bounds checks: blocks of another shape take numpy
        return None
    total = chunk.rows
    seq, time = np.empty(total, np.int64), np.empty(total, np.int64)
    key, phase = np.empty(total, np.int32), np.empty(total, np.int32)
    none = np.empty((0, 0))
    for (s, r, _, ids, episodes, values, _), (codes, seq0, time_us, _) in zip(
        chunk._blocks, chunk.events, strict=True
    ):
        kern.lay_out_block(
            s, r, ids, episodes, none if values is None else values, codes, seq0, time_us,
            env_id, episode, value, seq, key, phase, time,
        )  # fmt: skip
    return seq, key, phase, time


class DrawChunk:
    """Up to ``capacity`` draw rows of one recorder, in preallocated columns.

    Args:
        capacity: rows (values) this chunk holds; per-env rows never exceed it.
        keys: the recorder's variation keys (append-only; codes index it).
        labels: the recorder's category labels (append-only; label codes index it).
    """

    __slots__ = (
        "_blocks", "_draw_seq", "_env_id", "_episode", "_label", "_pool", "_sample_id", "_step",
        "_value", "_written", "capacity", "env_rows", "event", "events", "keys", "labels",
        "pending", "rows",
    )  # fmt: skip

    def __init__(
        self,
        capacity: int,
        keys: list[str],
        labels: list[str],
        pool: deque[tuple[np.ndarray, ...]] | None = None,
    ) -> None:
        self.capacity = capacity
        self.keys = keys
        self.labels = labels
        # One tuple per draw event: (key code, phase code, seq, time us, n, k); a reset
        # block's V events as one (codes, seq0, time us, k) entry, expanded in to_arrow.
        self.events: list[tuple[Any, ...]] = []
        # Buffers come back from converted chunks through `pool` (the writer thread
        # copies what it converts): fresh pages cost a fault each on the hot path.
        self._pool = pool
        buffers = None
        if pool:
            try:
                buffers = pool.pop()
            except IndexError:  # another thread took the last one
                buffers = None
        if buffers is None or len(buffers[0]) != capacity:
            buffers = (
                np.empty(capacity, np.int32),
                np.empty(capacity, np.int64),
                np.empty(capacity, np.int64),
                np.empty(capacity, np.int32),
                np.empty(capacity, np.float64),
            )
        # Most draws are at step 0, draw_seq 0: only the env rows written with others are
        # kept (and listed in `_written`); the zeros are filled in on the writer thread.
        # (np.zeros here would clear memory that malloc reused, ~2 ms per chunk.)
        self._env_id, self._episode, self._step, self._draw_seq, self._value = buffers
        self._written: list[tuple[int, int]] = []
        # Reset blocks, copied small (k ids, k episodes, k x V values) and laid out into
        # V * k rows on the writer thread: a third of the bytes on the hot path.
        self._blocks: list[tuple[int, int, int, np.ndarray, np.ndarray, Any, Any]] = []
        self._sample_id: np.ndarray | None = None  # allocated by the first design draw
        self._label: np.ndarray | None = None  # allocated by the first categorical draw
        self.env_rows = 0
        self.rows = 0
        # Values still on their way from a device: (first row, host buffer), filled in
        # on the writer thread once `event` (recorded at the hand-over) has passed.
        self.pending: list[tuple[int, np.ndarray]] = []
        self.event: Any = None

    def __len__(self) -> int:
        return self.rows

    def add(
        self,
        key_code: int,
        context: DrawContext,
        values: np.ndarray,
        env_ids: np.ndarray | None,
        time_us: int,
        label_codes: np.ndarray | None = None,
        pending: bool = False,
    ) -> bool:
        """Copy one draw event in; False (and nothing copied) when it does not fit.

        ``label_codes``: for a categorical draw, each value's index in ``labels``;
        text categories are then stored as their code in ``value``. ``pending``: the
        values are a host buffer that a non-blocking device copy is still filling; they
        are read in :meth:`to_arrow`, after the chunk's ``event``.
        """
        n = len(values)
        size = values.size
        s, r = self.env_rows, self.rows
        if r + size > self.capacity or s + n > self.capacity:
            return False
        self._env_id[s : s + n] = -1 if env_ids is None else env_ids
        self._episode[s : s + n] = -1 if context.episodes is None else context.episodes
        steps, draw_seq = context.steps, context.draw_seq
        if type(steps) is not int or steps or type(draw_seq) is not int or draw_seq:
            self._step[s : s + n] = steps
            self._draw_seq[s : s + n] = draw_seq
            self._written.append((s, n))
        if context.sample_ids is not None:
            if self._sample_id is None:
                self._sample_id = np.full(self.capacity, -1, np.int64)
            self._sample_id[s : s + n] = context.sample_ids
        flat = values.reshape(-1)
        if label_codes is not None:
            if self._label is None:
                self._label = np.full(self.capacity, -1, np.int32)
            self._label[r : r + size] = label_codes
            text = flat.dtype.kind in "USO"
            self._value[r : r + size] = label_codes if text else flat
        elif pending:
            self.pending.append((r, flat))
        else:
            self._value[r : r + size] = flat
        self.events.append(
            (key_code, PHASE_CODE[context.phase], context.seq, time_us, n, size // n if n else 1)
        )
        self.env_rows = s + n
        self.rows = r + size
        return True

    def add_block(
        self,
        events: np.ndarray,
        seq0: int,
        columns: Any,
        env_ids: np.ndarray,
        episodes: np.ndarray,
        sample_ids: np.ndarray | None,
        time_us: int,
        pending: bool = False,
    ) -> bool:
        """Copy the first draws of ``V`` scalar variations for the same ``k`` envs in one
        go (the rows of ``V`` calls of :meth:`add`, at step 0 and draw_seq 0, laid out
        by :meth:`to_arrow`); False (and nothing copied) when they do not fit.

        ``events``: ``(key code, phase code)`` per variation, shape ``(V, 2)`` (kept,
        not copied: the caller never changes it); their ``seq`` run from ``seq0``.
        ``columns``: the values, shape ``(k, V)``; or, with ``pending``, a flat host
        buffer of ``V * k`` values (variation-major) that a non-blocking device copy is
        still filling.
        """
        k, nv = len(env_ids), len(events)
        size = k * nv
        s, r = self.env_rows, self.rows
        if r + size > self.capacity or s + size > self.capacity:
            return False
        if pending:
            self.pending.append((r, columns))
        values = None if pending else columns.copy()
        rows = None if sample_ids is None else sample_ids.copy()
        self._blocks.append((s, r, nv, env_ids.copy(), episodes.copy(), values, rows))
        self.events.append((events, seq0, time_us, k))
        self.env_rows = s + size
        self.rows = r + size
        return True

    def to_arrow(self) -> pa.Table:
        """The rows as a table with the ``draws`` schema."""
        wait(self.event)  # the non-blocking copies of pending values are complete
        total, env_rows = self.rows, self.env_rows
        # Reset blocks alone (the usual chunk): the hot path copied nothing into the
        # pooled buffers, so the rows are laid out in new arrays that Arrow keeps, and
        # the buffers go back to the pool untouched (no copy of every row).
        fresh = all(len(event) == 4 for event in self.events)
        if fresh:
            env_id = np.empty(env_rows, np.int32)
            episode = np.empty(env_rows, np.int64)
            value = np.empty(total, np.float64)
        else:
            env_id, episode, value = self._env_id, self._episode, self._value
        for r, flat in self.pending:
            value[r : r + len(flat)] = flat
        laid = _laid_out(self, env_id, episode, value) if fresh else None
        for s, r, nv, ids, episodes, values, rows in [] if laid else self._blocks:
            size = nv * len(ids)  # variation-major: the rows of nv single draws
            env_id[s : s + size].reshape(nv, -1)[:] = ids
            episode[s : s + size].reshape(nv, -1)[:] = episodes
            if rows is not None:
                if self._sample_id is None:
                    self._sample_id = np.full(self.capacity, -1, np.int64)
                self._sample_id[s : s + size].reshape(nv, -1)[:] = rows
            if values is not None:
                value[r : r + size].reshape(nv, -1)[:] = values.T
        meta = _event_meta(self.events)
        n_ev, k_ev = meta[:, 4], meta[:, 5]
        # The codes are checked here, per event: the dictionary arrays below skip their
        # check of every row, which holds the GIL (see _event_columns).
        if len(meta) and (
            meta[:, :2].min() < 0
            or meta[:, 0].max() >= len(self.keys)
            or meta[:, 1].max() >= len(PHASES)
        ):
            raise ValueError(
                f"draw events name a variation code outside 0..{len(self.keys) - 1} or a "
                f"phase code outside 0..{len(PHASES) - 1}: a recorder bug, please report it"
            )
        if np.all(k_ev == 1):  # scalar variations: one row per env
            src = None
            component = np.zeros(total, dtype=np.int16)
        else:
            k_env = np.repeat(k_ev, n_ev)
            src = _segment_ids(k_env)
            component = (np.arange(total) - (np.cumsum(k_env) - k_env)[src]).astype(np.int16)

        def per_row(column: np.ndarray) -> np.ndarray:
            return column[:env_rows] if src is None else column[:env_rows][src]

        step = np.zeros(env_rows, np.int64)
        draw_seq = np.zeros(env_rows, np.int32)
        for s, n in self._written:
            step[s : s + n] = self._step[s : s + n]
            draw_seq[s : s + n] = self._draw_seq[s : s + n]

        seq, key, phase, time_us = laid or _event_columns(self.events, total)

        label = self._label
        sample_id = self._sample_id
        pooled = self._pool is not None
        if pooled and not fresh:  # the buffers go back to the pool: Arrow must not share
            env_id, episode = env_id[:env_rows].copy(), episode[:env_rows].copy()
            value = value[:total].copy()
        table = pa.Table.from_arrays(
            [
                pa.array(seq),
                pa.DictionaryArray.from_arrays(
                    pa.array(key), pa.array(list(self.keys), pa.string()), safe=False
                ),
                pa.array(component),
                pa.array(per_row(env_id)),
                pa.array(per_row(episode)),
                pa.array(per_row(step)),
                pa.DictionaryArray.from_arrays(
                    pa.array(phase), pa.array(list(PHASES), pa.string()), safe=False
                ),
                pa.array(per_row(draw_seq)),
                pa.array(value[:total]),
                pa.nulls(total, DICT_STRING)
                if label is None
                else pa.DictionaryArray.from_arrays(
                    pa.array(label[:total], mask=label[:total] < 0),
                    pa.array(list(self.labels), pa.string()),
                ),
                pa.nulls(total, pa.int64())
                if sample_id is None
                else pa.array(per_row(sample_id), mask=per_row(sample_id) < 0),
                pa.array(time_us, UTC_TIMESTAMP),
            ],
            schema=draws_schema(),
        )
        if pooled:  # converted once: this chunk's buffers are free for the next chunk
            self._pool.append(  # type: ignore[union-attr]
                (self._env_id, self._episode, self._step, self._draw_seq, self._value)
            )
            self._pool = None
            self.capacity = 0  # nothing more is copied in
        return table
