"""The VariationRecorder: every draw of every attached variation, as rows of ``draws``.

On the simulation's hot path each draw is copied into preallocated columns of a
:class:`~varirec.recording.draw_chunk.DrawChunk` (a few slice assignments). A full chunk goes
to storage, where :meth:`DrawChunk.to_arrow` builds the Arrow table on the writer's
background thread.

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
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from varirec.arrays import host_async, is_tensor, record_event, to_host
from varirec.errors import RecorderStateError
from varirec.recording.draw_chunk import CHUNK_KERNELS, PHASE_CODE, DrawChunk
from varirec.sampling.accel import kernels_of
from varirec.sampling.samplers import DrawContext, SampleEvent
from varirec.storage.schema import episodes_schema
from varirec.storage.shutdown import hand_over

if TYPE_CHECKING:
    from varirec.recording.episodes import EpisodeTracker
    from varirec.variations.batch import ResetBatch
    from varirec.variations.variation import Variation

__all__ = ["DrawChunk", "VariationRecorder"]

log = logging.getLogger(__name__)

RESERVED_KEYS = frozenset(episodes_schema().names) | {"run_id"}
"""Variation keys that would collide with episode columns in the episode table."""


class _Tap:
    """The listener attached to one variation: copies each draw into the recorder's chunk."""

    __slots__ = ("_cfg", "_offsets", "code", "key", "recorder")

    def __init__(self, recorder: VariationRecorder, key: str, code: int) -> None:
        self.recorder = recorder
        self.key = key
        self.code = code
        self._cfg: Any = None
        self._offsets = np.zeros(0, np.int32)

    def _label_codes(self, cfg: Any, values: np.ndarray) -> np.ndarray:
        if cfg is not self._cfg:  # a new cfg (apply_cfg): map its labels once
            labels = self.recorder._label_index
            self._offsets = np.array(
                [labels.setdefault(x, len(labels)) for x in cfg.labels], dtype=np.int32
            )
            self.recorder.labels[:] = list(labels)
            self._cfg = cfg
        return self._offsets[cfg.encode(values.reshape(-1))]

    def __call__(self, event: SampleEvent) -> None:
        context = event.context
        if context is None or context.seq < 0:  # drawn outside Variation.draw
            context = self.recorder._attribute(self.key, event)
        values = to_host(event.values, self.key)
        self.record(context, values, event.env_ids, event.sampler.cfg, time.time_ns() // 1000)

    def record(
        self,
        context: DrawContext,
        values: np.ndarray,
        env_ids: Any,
        cfg: Any,
        now: int,
        pending: bool = False,
    ) -> None:
        """Copy one draw's rows into the recorder's chunk (a full chunk goes to storage);
        ``pending``: ``values`` is still being filled by a non-blocking device copy."""
        rec = self.recorder
        if not len(values):
            return
        size = values.size
        codes = self._label_codes(cfg, values) if cfg.categorical else None
        if rec._chunk.add(self.code, context, values, env_ids, now, codes, pending):
            return
        rec.flush()  # the chunk is full: hand it over, start a new one
        if size <= rec.max_rows:
            rec._chunk.add(self.code, context, values, env_ids, now, codes, pending)
        else:  # one draw larger than a chunk: hand it over alone (kept until accepted)
            rec._chunk = rec._new_chunk(size)
            rec._chunk.add(self.code, context, values, env_ids, now, codes, pending)
            rec.flush()


class VariationRecorder:
    """Records the draws of the variations it is attached to.

    Args:
        sink: receives each full :class:`DrawChunk` (e.g. ``RunWriter.append`` bound to
            ``"draws"``); None keeps nothing (the chunks are dropped).
        tracker: attributes draws that arrive without a full context (a sampler
            called directly) to the tracker's current episodes.
        max_rows: rows per chunk, handed to the sink when full; bounds memory.
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
        self.key_list: list[str] = []  # append-only: chunks index it by code
        self.labels: list[str] = []  # append-only: chunks index it by label code
        self._label_index: dict[str, int] = {}
        # Buffers of converted chunks, reused (at most two sets: a few MB each).
        self._pool: deque[tuple[np.ndarray, ...]] = deque(maxlen=2)
        self._chunk = self._new_chunk(self.max_rows)
        self.rows_recorded = 0
        self.device: Any = None
        """The device that batches came from (None: the host)."""
        self._block: tuple[Any, frozenset[Any], np.ndarray] | None = None

    def _new_chunk(self, capacity: int) -> DrawChunk:
        if capacity != self.max_rows:  # a one-off oversized chunk
            return DrawChunk(capacity, self.key_list, self.labels)
        return DrawChunk(capacity, self.key_list, self.labels, self._pool)

    @property
    def keys(self) -> list[str]:
        """Keys of the attached variations."""
        return list(self._taps)

    def attach(self, variations: Iterable[Variation]) -> VariationRecorder:
        """Listen to every variation, disabled ones too: a disabled variation draws
        nothing (so nothing is recorded) until it is enabled, and then its draws are
        recorded like any other's.

        Raises:
            ValueError: a key is already attached, shared by two variations, or the
                name of an episodes column.
            RecorderStateError: a variation already drew: those draws would be missing.
        """
        items = list(variations.values() if hasattr(variations, "values") else variations)
        seen: set[str] = set()
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
            if v.key in seen:
                raise ValueError(f"two variations share the key {v.key!r}; keys must be unique")
            seen.add(v.key)
            if v.num_draws:
                raise RecorderStateError(
                    f"variation {v.key!r} already drew {v.num_draws} time(s) before the recorder "
                    "was attached, so those draws are not recorded: attach the recorder before "
                    "any sampling (right after applying overrides), and give each run (each "
                    "run_study, each policy) a fresh set of variations, e.g. from a function "
                    "that makes them"
                )
        for v in items:
            if v.key not in self.key_list:
                self.key_list.append(v.key)
            tap = _Tap(self, v.key, self.key_list.index(v.key))
            v.add_sample_listener(tap)
            self._taps[v.key] = (v, tap)
        return self

    def detach(self) -> None:
        """Stop listening to every attached variation (buffered rows stay until flush)."""
        for v, tap in self._taps.values():
            v.remove_sample_listener(tap)
        self._taps.clear()

    def record_batch(self, batch: ResetBatch) -> None:
        """Record every draw of one reset batch (one call for all its variations); the
        batch then skips this recorder when it tells each variation's listeners."""
        now = time.time_ns() // 1000 if batch.time is None else batch.time
        device = batch.world.device
        if device is not None:
            self.device = device
        if self._record_block(batch, now):
            return
        fed = []
        for j, v in enumerate(batch.variations):
            entry = self._taps.get(v.key)
            if entry is None or entry[0] is not v:
                continue
            tap = entry[1]
            cfg = v.sampler.cfg
            values = batch.host[j] if batch.host is not None else batch.values[j]
            if is_tensor(values) and not cfg.categorical:
                # No wait for the device: read on the writer thread after the chunk's event.
                tap.record(batch.contexts[j], host_async(values), batch.ids, cfg, now, True)
            else:  # numpy, or categories mapped to label codes here (one host copy)
                tap.record(batch.contexts[j], batch.host_values(j), batch.ids, cfg, now)
            fed.append(tap)
        if fed:
            batch.fed = batch.fed | frozenset(fed)

    def _block_taps(self, batch: ResetBatch) -> tuple[frozenset[Any], np.ndarray] | None:
        """This recorder's taps of a driver's batch, and each one's (key code, phase
        code), when it records every variation; kept per reset group (a new group
        comes with any change to the variations, attaching a recorder included)."""
        group = batch.group
        cached = self._block
        if cached is not None and cached[0] is group:
            return None if not cached[1] else (cached[1], cached[2])
        taps, events = [], []
        for v in batch.variations:
            entry = self._taps.get(v.key)
            if entry is None or entry[0] is not v:
                taps, events = [], []
                break
            taps.append(entry[1])
            events.append((entry[1].code, PHASE_CODE[v.mode]))
        if taps:  # compiled here, not on the writer thread while it holds the GIL
            kernels_of(CHUNK_KERNELS)
        codes = np.array(events, dtype=np.int64).reshape(-1, 2)  # shared by the chunks
        codes.flags.writeable = False
        fed = frozenset(taps)  # the batch's fed set, the same one each reset
        self._block = (group, fed, codes)
        return (fed, codes) if fed else None

    def _record_block(self, batch: ResetBatch, now: int) -> bool:
        """The usual reset, in one copy: the first draws of scalar float variations
        (their values side by side in the batch's matrix) all recorded here."""
        lazy, matrix = batch._lazy, batch._matrix
        if lazy is None or matrix is None or batch.group is None:
            return False
        if matrix.shape[1] != len(batch.variations):  # a vector variation
            return False
        found = self._block_taps(batch)
        if found is None:
            return False
        fed, events = found
        seq0, episodes, rows, in_design = lazy
        pending = is_tensor(matrix)
        # No wait for the device: read on the writer thread after the chunk's event.
        columns = host_async(matrix.T.contiguous()).reshape(-1) if pending else matrix
        args = (events, seq0, columns, batch.ids, episodes, rows if in_design else None, now)
        if not self._chunk.add_block(*args, pending):
            if len(matrix) * len(events) > self.max_rows:
                return False  # larger than a chunk: one draw at a time
            self.flush()
            if not self._chunk.add_block(*args, pending):
                return False
        batch.fed = fed if not batch.fed else batch.fed | fed
        return True

    def _attribute(self, key: str, event: SampleEvent) -> DrawContext:
        """A context for a draw made outside Variation.draw, from the tracker if any."""
        old = event.context or DrawContext(key)
        t = self.tracker
        ids = event.env_ids
        if t is None:
            return old
        settle = t.before_read
        if settle is not None:  # a reset whose bookkeeping waits: it goes first
            settle()
        return DrawContext(
            key,
            old.phase,
            t.next_seq(),
            None if ids is None else t.episode[ids],
            0 if ids is None else t.steps(ids),
            old.draw_seq,
            old.sample_ids,
        )

    def _send(self, chunk: DrawChunk) -> None:
        if chunk.pending:  # after every copy into the chunk (again on a retried hand-over)
            chunk.event = record_event(self.device)
        if self.sink is not None:
            self.sink(chunk)

    def _sent(self) -> None:
        self.rows_recorded += len(self._chunk)
        self._chunk = self._new_chunk(self.max_rows)

    def flush(self) -> None:
        """Hand the buffered draws to the sink as one :class:`DrawChunk`.

        The chunk leaves the recorder only once the sink accepted it: a Ctrl-C or
        SIGTERM while the sink waits (e.g. for queue space) leaves it here, to be
        handed over by the next flush (see :func:`~varirec.storage.shutdown.hand_over`).
        """
        if self._chunk.rows:
            hand_over(self._send, self._chunk, self._sent)
