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
from varirec.storage.schema import draws_schema

if TYPE_CHECKING:
    from varirec.episodes import EpisodeTracker
    from varirec.variations import Variation

__all__ = ["DrawChunk", "VariationRecorder"]

log = logging.getLogger(__name__)

PHASES = ("build", "reset", "interval", "manual")
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
        keys: dict[str, int] = {}
        labels: dict[str, int] = {}
        per_event: list[tuple[int, ...]] = []
        ids_l, eps_l, steps_l, dseq_l, sid_l, val_l, lab_l = [], [], [], [], [], [], []
        k_l = []
        for key, ev, t_us in events:
            ctx = ev.context or DrawContext(key)
            values = ev.values
            n = len(values)
            k = values.size // n if n else 1
            ids = _EMPTY - 1 if ev.env_ids is None else ev.env_ids
            if len(ids) != n:  # one draw for all envs
                ids = np.full(n, -1, dtype=np.int64)
            per_event.append(
                (keys.setdefault(key, len(keys)), _PHASE_INDEX[ctx.phase], ctx.seq, t_us, n, k)
            )
            ids_l.append(ids)
            eps_l.append(_fill(ctx.episodes, n, -1))
            steps_l.append(_fill(ctx.steps, n, 0))
            dseq_l.append(_fill(ctx.draw_seq, n, 0))
            sid_l.append(_fill(ctx.sample_ids, n, -1))
            cfg = ev.sampler.cfg
            flat = values.reshape(-1)
            if cfg.categorical:
                codes = cfg.encode(flat)
                offsets = np.array([labels.setdefault(x, len(labels)) for x in cfg.labels])
                lab_l.append(offsets[codes].astype(np.int32))
                is_text = values.dtype.kind in "USO"
                val_l.append(codes.astype(np.float64) if is_text else flat.astype(np.float64))
            else:
                lab_l.append(np.full(flat.size, -1, dtype=np.int32))
                val_l.append(flat.astype(np.float64, copy=False))
            k_l.append(k)
        meta = np.array(per_event, dtype=np.int64).reshape(-1, 6)
        n_ev, k_ev = meta[:, 4], meta[:, 5]
        rows_ev = n_ev * k_ev
        k_row = np.repeat(k_ev, n_ev)  # components of each (event, env) row
        total = int(rows_ev.sum())
        first = np.cumsum(k_row) - k_row  # first output row of each (event, env) row
        component = np.arange(total, dtype=np.int64) - np.repeat(first, k_row)

        def rows(parts: list[np.ndarray]) -> np.ndarray:
            return np.repeat(np.concatenate(parts) if parts else _EMPTY, k_row)

        label_idx = np.concatenate(lab_l) if lab_l else np.zeros(0, np.int32)
        sample_id = rows(sid_l)
        schema = draws_schema()
        columns = {
            "seq": np.repeat(meta[:, 2], rows_ev),
            "variation": _dictionary(np.repeat(meta[:, 0], rows_ev), list(keys)),
            "component": component.astype(np.int16),
            "env_id": rows(ids_l).astype(np.int32),
            "episode": rows(eps_l),
            "step": rows(steps_l),
            "phase": _dictionary(np.repeat(meta[:, 1], rows_ev), list(PHASES)),
            "draw_seq": rows(dseq_l).astype(np.int32),
            "value": np.concatenate(val_l) if val_l else np.zeros(0),
            "label": pa.DictionaryArray.from_arrays(
                pa.array(label_idx, mask=label_idx < 0), pa.array(list(labels), pa.string())
            ),
            "sample_id": pa.array(sample_id, mask=sample_id < 0),
            "time": pa.array(np.repeat(meta[:, 3], rows_ev), pa.timestamp("us", tz="UTC")),
        }
        arrays = [
            pa.array(columns[f.name], f.type)
            if isinstance(columns[f.name], np.ndarray)
            else columns[f.name]
            for f in schema
        ]
        return pa.Table.from_arrays(arrays, schema=schema)


def _fill(x: np.ndarray | int | None, n: int, default: int) -> np.ndarray:
    """A per-row int64 array from an array, a scalar, or None (``default``)."""
    if x is None:
        return np.full(n, default, dtype=np.int64)
    if isinstance(x, np.ndarray) and x.shape == (n,):
        return x
    return np.broadcast_to(np.asarray(x, dtype=np.int64), (n,))


def _dictionary(indices: np.ndarray, values: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(
        pa.array(indices.astype(np.int32)), pa.array(values, pa.string())
    )
