"""The VariationRecorder: every draw of every attached variation, as rows of ``draws``.

On the simulation's hot path the recorder only keeps a reference to each
:class:`~varirec.samplers.SampleEvent` and a timestamp. Turning a buffer of events
into Arrow columns (:meth:`DrawChunk.to_arrow`) is vectorized over all rows and runs
when the buffer is handed to storage — on the writer's background thread.

A draw for ``n`` envs of a ``k``-component variation becomes ``n * k`` rows
``(seq, variation, component, env_id, episode, step, phase, draw_seq, value, label,
sample_id, time)``. Build draws have ``env_id = -1`` and ``episode = -1``.

>>> import varirec as vr
>>> chunks = []
>>> recorder = VariationRecorder(sink=chunks.append)
>>> mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
>>> _ = recorder.attach([mass])
>>> _ = mass.draw(env_ids=[0, 1])
>>> recorder.flush()
>>> chunks[0].to_arrow().column("env_id").to_pylist()
[0, 1]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from varirec.errors import RecorderStateError
from varirec.samplers import DrawContext, SampleEvent
from varirec.storage.schema import draws_schema, episodes_schema

if TYPE_CHECKING:
    from varirec.episodes import EpisodeTracker
    from varirec.variations import Variation

__all__ = ["DrawChunk", "VariationRecorder"]

log = logging.getLogger(__name__)

PHASES = ("build", "reset", "interval", "manual")
RESERVED_KEYS = frozenset(episodes_schema().names) | {"run_id"}
"""Variation keys that would collide with episode columns in the episode table."""
_PHASE_INDEX = {p: i for i, p in enumerate(PHASES)}
_EMPTY = np.zeros(0, dtype=np.int64)


class _Tap:
    """The listener attached to one variation: keeps the event, its key and the time."""

    __slots__ = ("key", "recorder")

    def __init__(self, recorder: VariationRecorder, key: str) -> None:
        self.recorder = recorder
        self.key = key

    def __call__(self, event: SampleEvent) -> None:
        rec = self.recorder
        if event.context is None or event.context.seq < 0:
            event = rec._attribute(self.key, event)
        rec._events.append((self.key, event, time.time_ns() // 1000))
        rec._rows += event.values.size
        if rec._rows >= rec.max_rows:
            rec.flush()


class VariationRecorder:
    """Records the draws of the variations it is attached to.

    Args:
        sink: receives each :class:`DrawChunk` (e.g. ``RunWriter.append`` bound to
            ``"draws"``); None keeps nothing (the chunks are dropped).
        tracker: attributes draws that arrive without a full context (a sampler
            called directly) to the tracker's current episodes.
        max_rows: rows buffered before a chunk is handed to the sink; bounds memory.
    """

    def __init__(
        self,
        sink: Callable[[DrawChunk], None] | None = None,
        *,
        tracker: EpisodeTracker | None = None,
        max_rows: int = 262_144,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"`max_rows` must be >= 1, got {max_rows}")
        self.sink = sink
        self.tracker = tracker
        self.max_rows = int(max_rows)
        self._taps: dict[str, tuple[Variation, _Tap]] = {}
        self._events: list[tuple[str, SampleEvent, int]] = []
        self._rows = 0
        self.rows_recorded = 0

    @property
    def keys(self) -> list[str]:
        """Keys of the attached variations."""
        return list(self._taps)

    def attach(self, variations: Iterable[Variation]) -> VariationRecorder:
        """Listen to every enabled variation (disabled ones are skipped and logged).

        Raises:
            ValueError: a key is already attached (two variations with one key).
            RecorderStateError: a variation already drew: those draws would be missing.
        """
        items = list(variations.values() if hasattr(variations, "values") else variations)
        for v in items:
            if v.key in RESERVED_KEYS:
                raise ValueError(
                    f"variation key {v.key!r} is also an episodes column; rename the variation "
                    f"(e.g. '{v.key}_param'): reserved are {sorted(RESERVED_KEYS)}"
                )
            if v.key in self._taps:
                raise ValueError(
                    f"variation {v.key!r} is already attached to this recorder; keys must be unique"
                )
            if v.num_draws:
                raise RecorderStateError(
                    f"variation {v.key!r} already drew {v.num_draws} time(s) before the recorder "
                    "was attached, so those draws are not recorded; attach the recorder before "
                    "any sampling (right after applying overrides)"
                )
        seen: set[str] = set()
        for v in items:
            if v.key in seen:
                raise ValueError(f"two variations share the key {v.key!r}; keys must be unique")
            seen.add(v.key)
        for v in items:
            if not v.enabled:
                log.info("variation %r is disabled: not recorded", v.key)
                continue
            tap = _Tap(self, v.key)
            v.add_sample_listener(tap)
            self._taps[v.key] = (v, tap)
        return self

    def detach(self) -> None:
        """Stop listening to every attached variation (buffered rows stay until flush)."""
        for v, tap in self._taps.values():
            v.remove_sample_listener(tap)
        self._taps.clear()

    def _attribute(self, key: str, event: SampleEvent) -> SampleEvent:
        """Fill in a missing context from the tracker (draws made outside Variation.draw)."""
        old = event.context or DrawContext(key)
        t = self.tracker
        if t is None:
            return event if event.context is not None else _with(event, DrawContext(key))
        ids = event.env_ids
        ctx = DrawContext(
            key,
            old.phase,
            t.next_seq(),
            None if ids is None else t.episode[ids],
            0 if ids is None else t.step[ids],
            old.draw_seq,
            old.sample_ids,
        )
        return _with(event, ctx)

    def flush(self) -> None:
        """Hand the buffered draws to the sink as one :class:`DrawChunk`."""
        if not self._events:
            return
        chunk = DrawChunk(self._events)
        self.rows_recorded += self._rows
        self._events, self._rows = [], 0
        if self.sink is not None:
            self.sink(chunk)


def _with(event: SampleEvent, context: DrawContext) -> SampleEvent:
    return SampleEvent(event.sampler, event.values, event.env_ids, context)


class DrawChunk:
    """A buffer of draw events; :meth:`to_arrow` turns them into ``draws`` rows."""

    __slots__ = ("events",)

    def __init__(self, events: list[tuple[str, SampleEvent, int]]) -> None:
        self.events = events

    def __len__(self) -> int:
        return sum(e.values.size for _, e, _ in self.events)

    def to_arrow(self) -> pa.Table:
        """The rows of this chunk as a table with the ``draws`` schema."""
        events = self.events
        m = len(events)
        keys: dict[str, int] = {}
        labels: dict[str, int] = {}
        meta = np.empty((m, 6), dtype=np.int64)  # key, phase, seq, time, n, k
        env_parts: list[list[np.ndarray]] = [[], [], [], [], []]  # ids, eps, steps, dseq, sid
        for i, (key, ev, t_us) in enumerate(events):
            ctx = ev.context or DrawContext(key)
            n = len(ev.values)
            ids = ev.env_ids
            meta[i] = (
                keys.setdefault(key, len(keys)),
                _PHASE_INDEX[ctx.phase],
                ctx.seq,
                t_us,
                n,
                ev.values.size // n if n else 1,
            )
            env_parts[0].append(ids if ids is not None and len(ids) == n else np.full(n, -1))
            env_parts[1].append(_fill(ctx.episodes, n, -1))
            env_parts[2].append(_fill(ctx.steps, n, 0))
            env_parts[3].append(_fill(ctx.draw_seq, n, 0))
            env_parts[4].append(_fill(ctx.sample_ids, n, -1))
        n_ev, k_ev = meta[:, 4], meta[:, 5]
        rows_ev = n_ev * k_ev
        total = int(rows_ev.sum())
        out_start = np.cumsum(rows_ev) - rows_ev
        event_of_row = _segment_ids(rows_ev, total)

        # Per-(event, env) columns expand to one row per component.
        if np.all(k_ev == 1):
            src = None
            component = np.zeros(total, dtype=np.int16)
        else:
            num_env_rows = int(n_ev.sum())
            k_env = k_ev[_segment_ids(n_ev, num_env_rows)]
            src = _segment_ids(k_env, total)
            first = np.cumsum(k_env) - k_env
            component = (np.arange(total) - first[src]).astype(np.int16)

        def per_row(parts: list[np.ndarray]) -> np.ndarray:
            flat = np.concatenate(parts) if parts else _EMPTY
            return flat if src is None else flat[src]

        values = np.empty(total, dtype=np.float64)
        label_idx = np.full(total, -1, dtype=np.int32)
        for (_, ev, _), start in zip(events, out_start.tolist(), strict=True):
            cfg = ev.sampler.cfg
            flat = ev.values.reshape(-1)
            stop = start + flat.size
            if cfg.categorical:
                codes = cfg.encode(flat)
                offsets = np.array([labels.setdefault(x, len(labels)) for x in cfg.labels])
                label_idx[start:stop] = offsets[codes]
                values[start:stop] = codes if flat.dtype.kind in "USO" else flat
            else:
                values[start:stop] = flat
        sample_id = per_row(env_parts[4])
        key_col, phase_col, seq_col, time_col = (
            np.take(np.ascontiguousarray(meta[:, j]), event_of_row) for j in range(4)
        )
        return pa.Table.from_arrays(
            [
                pa.array(seq_col),
                _dictionary(key_col, list(keys)),
                pa.array(component),
                pa.array(per_row(env_parts[0]).astype(np.int32)),
                pa.array(per_row(env_parts[1])),
                pa.array(per_row(env_parts[2])),
                _dictionary(phase_col, list(PHASES)),
                pa.array(per_row(env_parts[3]).astype(np.int32)),
                pa.array(values),
                _nullable_dictionary(label_idx, list(labels)),
                _nullable(sample_id),
                pa.array(time_col, pa.timestamp("us", tz="UTC")),
            ],
            schema=draws_schema(),
        )


def _segment_ids(counts: np.ndarray, total: int) -> np.ndarray:
    """For segments of the given lengths laid end to end, the segment of each element.

    ``_segment_ids([2, 0, 3], 5) -> [0, 0, 2, 2, 2]``: a cumulative sum of segment
    starts, much faster than ``np.repeat`` with per-element counts.
    """
    starts = np.cumsum(counts)[:-1]
    marks = np.bincount(starts[starts < total], minlength=total)
    return np.cumsum(marks)


def _fill(x: np.ndarray | int | None, n: int, default: int) -> np.ndarray:
    """A per-row int64 array from an array, a scalar, or None (``default``)."""
    if x is None:
        return np.full(n, default, dtype=np.int64)
    if isinstance(x, np.ndarray) and x.shape == (n,):
        return x
    return np.broadcast_to(np.asarray(x, dtype=np.int64), (n,))


def _nullable(values: np.ndarray) -> pa.Array:
    """int64 values with negatives as nulls (all-null without building a mask)."""
    if not values.size or values.max() < 0:
        return pa.nulls(len(values), pa.int64())
    return pa.array(values, mask=values < 0)


def _nullable_dictionary(indices: np.ndarray, values: list[str]) -> pa.Array:
    """A dictionary-string column with negative indices as nulls."""
    if not values:
        return pa.nulls(len(indices), pa.dictionary(pa.int32(), pa.string()))
    return pa.DictionaryArray.from_arrays(
        pa.array(indices, mask=indices < 0), pa.array(values, pa.string())
    )


def _dictionary(indices: np.ndarray, values: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(
        pa.array(indices.astype(np.int32)), pa.array(values, pa.string())
    )
