"""Recorder terms: stateful pieces that the :class:`~varirec.recording.manager.RecorderManager`
calls at each lifecycle hook (the mjlab / Isaac Lab shape).

- :class:`RecorderTerm` — the base users subclass; :class:`RecorderTermCfg` builds one.
- :class:`OutcomeTerm` — built in: return, success, terminated, truncated of each
  finished episode (length, seqs, times, seed and design row come from the tracker).
- :class:`VariationsTerm` — built in: every variation draw, to the ``draws`` table.
- :class:`StepsTerm` — optional: chosen per-step arrays (reward, action, ...) to a
  ``steps`` table, one row per (env, step).

A term adds columns to the ``episodes`` table by declaring them in
:meth:`RecorderTerm.columns` and returning their values from
:meth:`RecorderTerm.record_pre_reset`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import pyarrow as pa

from varirec import arrays
from varirec.arrays import (
    ArrayWorld,
    cpu_view,
    device_async,
    host_async,
    is_tensor,
    record_event,
    to_host,
    wait,
)
from varirec.recording.device_outcomes import DeviceOutcomes
from varirec.recording.episodes import EpisodeTracker
from varirec.recording.recorder import VariationRecorder
from varirec.storage.shutdown import hand_over
from varirec.variations import VariationSet

__all__ = [
    "OUTCOME_NAMES",
    "OutcomeTerm",
    "RecorderTerm",
    "RecorderTermCfg",
    "StepsTerm",
    "TermHost",
    "VariationsTerm",
]


class TermHost(Protocol):
    """What a term may use of the manager that runs it (a
    :class:`~varirec.recording.manager.RecorderManager`)."""

    num_envs: int
    env: Any
    tracker: EpisodeTracker
    variations: VariationSet

    def sink(self, table: str) -> Callable[[Any], None]: ...


@dataclass(kw_only=True)
class RecorderTermCfg:
    """How to build a term: its class and the parameters it reads from ``cfg.params``."""

    term: type[RecorderTerm]
    """A :class:`RecorderTerm` subclass (terms are stateful: no plain functions)."""
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (isinstance(self.term, type) and issubclass(self.term, RecorderTerm)):
            raise TypeError(
                f"RecorderTermCfg.term must be a RecorderTerm subclass, got {self.term!r}; "
                "wrap a function in a class with the hooks you need"
            )


class RecorderTerm:
    """Base of recorder terms. Override the hooks you need; each is a no-op here.

    Attributes:
        cfg: the term's :class:`RecorderTermCfg`.
        manager: the manager running it (its ``tracker``, ``env`` and ``num_envs``).
    """

    def __init__(self, cfg: RecorderTermCfg, manager: TermHost) -> None:
        self.cfg = cfg
        self.manager = manager

    @property
    def env(self) -> Any:
        return self.manager.env

    def columns(self) -> Mapping[str, pa.DataType]:
        """Columns this term adds to ``episodes`` (name -> Arrow type)."""
        return {}

    def check_step(self, data: Mapping[str, Any]) -> None:
        """Refuse a step's ``data`` before any term records it or the step is counted:
        raise an error that names what is wrong and the fix. A term whose
        :meth:`record_step` can refuse its input checks it here."""

    def record_step(self, data: Mapping[str, np.ndarray]) -> None:
        """A step was taken; ``data`` holds per-env arrays (``reward``, ``terminated``,
        ...), given before any env that finished in this step is reset; every term's
        :meth:`check_step` passed."""

    def record_pre_reset(self, env_ids: np.ndarray) -> Mapping[str, np.ndarray] | None:
        """The episodes of ``env_ids`` just finished and are still intact (reward,
        flags, length, and this term's own state). Return this term's columns for
        them, aligned with ``env_ids``. Called only for envs whose episode started."""
        return None

    def record_post_reset(self, env_ids: np.ndarray) -> None:
        """``env_ids`` were reset: their new episode's draws are made and applied."""

    def record_post_step(self) -> None:
        """End of a step, after any resets in it (fresh episodes' first state)."""

    def flush(self) -> None:
        """Hand buffered rows to storage."""

    def copy_out(self) -> None:
        """Start the copies of the rows :meth:`record_pre_reset` returned that are still
        on a device (a term that gathers them there copies them once per hand-over, not
        per reset); the episodes go to storage right after, read once the copies ran."""

    def close(self) -> None:
        """The run ends: flush and release resources."""


_OUTCOMES = (
    ("reward", "buif", "numbers", "pass it as floats (.astype(float))", True),
    ("terminated", "bui", "bools (or 0/1 integers)", "pass it as bools", False),
    ("truncated", "bui", "bools (or 0/1 integers)", "pass it as bools", False),
    # NaN (float) is unknown; bool and 0/1 numbers are the outcome.
    (
        "success",
        "buif",
        "bools or numbers",
        "pass bools (True: success), or floats with NaN where unknown",
        True,
    ),
)
"""Per outcome, in ``DeviceOutcomes.record_step``'s order: the dtype kinds it takes, what
:meth:`OutcomeTerm._array` asks for and the fix it names, and whether it is a float."""
_HOST_KINDS = tuple((name, kinds) for name, kinds, *_ in _OUTCOMES)
OUTCOME_NAMES = tuple(name for name, *_ in _OUTCOMES)
"""The ``record_step`` names the outcome term reads."""


def _refuse_flags(name: str, x: np.ndarray) -> None:
    """A count or a code where a flag goes: 2 was read as True, unseen."""
    odd = x[(x < 0) | (x > 1)]
    raise ValueError(
        f"record_step `{name}` must hold bools or 0/1 integers, got {odd[:3].tolist()}; "
        f"pass bools (e.g. {name}=(x == 1))"
    )


def _zero_one(x: np.ndarray) -> bool:
    """Whether the integers ``x`` are all 0 or 1: one reduction, no temporaries (any
    other value sets another bit of the OR; a negative one its sign)."""
    return not x.size or 0 <= int(np.bitwise_or.reduce(x)) <= 1


class OutcomeTerm(RecorderTerm):
    """Return, success, terminated and truncated of every finished episode.

    ``record_step`` accumulates ``reward`` and keeps the latest ``terminated``,
    ``truncated`` and ``success`` (NaN or absent: unknown, stored as null).
    """

    def __init__(self, cfg: RecorderTermCfg, manager: TermHost) -> None:
        super().__init__(cfg, manager)
        # numpy until a tensor comes; then on the tensors' device (`_acc.device` set)
        self._acc = DeviceOutcomes(manager.num_envs)
        self._taken: tuple[Any, ...] | None = None  # the step's outcomes, once checked

    COLUMNS: ClassVar[Mapping[str, pa.DataType]] = {
        "return": pa.float64(),
        "success": pa.bool_(),
        "terminated": pa.bool_(),
        "truncated": pa.bool_(),
    }

    def columns(self) -> Mapping[str, pa.DataType]:
        return self.COLUMNS

    def _array(self, name: str, value: Any, kinds: str, want: str, fix: str) -> np.ndarray:
        """``value`` as an array of shape ``(num_envs,)`` and a dtype kind in ``kinds``,
        or an error naming the key, what it got and the fix (dtype and shape only)."""
        arr = np.asarray(value)
        n = self.manager.num_envs
        if arr.shape == (n,) and arr.dtype.kind in kinds:
            if name != "reward" and arr.dtype.kind in "iu" and not _zero_one(arr):
                _refuse_flags(name, arr)
            return arr
        if arr.shape != (n,):
            hint = (
                f"; pass {name}.reshape(-1)"
                if arr.size == n
                else "; pass one value per env, for every env (not only the finished ones)"
            )
            raise ValueError(
                f"record_step `{name}` must have shape ({n},) (one value per env), got shape "
                f"{arr.shape}{hint}"
            )
        raise TypeError(
            f"record_step `{name}` must hold {want}, got dtype {arr.dtype} (e.g. "
            f"{arr[:3].tolist()}); {fix}"
        )

    def check_step(self, data: Mapping[str, Any]) -> None:
        # The outcomes as the accumulators take them, checked: kept for record_step, so
        # a refused one leaves every return and flag as it was.
        self._taken = self._take(data)

    def record_step(self, data: Mapping[str, np.ndarray]) -> None:
        taken, self._taken = self._taken, None
        self._acc.record_step(*(self._take(data) if taken is None else taken))

    def _take(self, data: Mapping[str, Any]) -> tuple[Any, ...]:
        """``reward``, ``terminated``, ``truncated`` and ``success`` (None: not given)
        as the accumulators take them, or an error naming the one refused."""
        acc = self._acc
        if acc.torch is None:
            given = self._host_step(data)
            if given is not None:
                return given
        if acc.device is None and any(is_tensor(x) for x in data.values()):
            world = getattr(self.manager, "world", None) or ArrayWorld()
            for name, x in data.items():
                if is_tensor(x):
                    world.check(x, name)
            # The env computes on a device: accumulate there from now on (on the CPU,
            # in numpy over the tensors' memory).
            n = self.manager.num_envs
            # The ring holds a hand-over's rows: they reach the writer as one view.
            rows = getattr(self.manager, "max_rows", None)
            self._acc = acc = DeviceOutcomes(
                n, world.device, (acc.acc, acc.flags), world=world,
                ring=None if rows is None else rows + n,
            )  # fmt: skip
        on_device = acc.torch is not None

        def take(name: str, kinds: str, want: str, fix: str, floats: bool) -> Any:
            x = data.get(name)
            if x is None:
                return None
            if on_device or is_tensor(x):
                return acc.local(name, x, floats)
            return self._array(name, x, kinds, want, fix)

        return tuple(take(*spec) for spec in _OUTCOMES)

    def _host_step(self, data: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The usual step, in a few Python calls: every outcome given is a numpy array
        (or a CPU tensor, read in place) of shape ``(num_envs,)`` and an accepted kind;
        None for anything else, which takes the checked path (it converts, or names the
        problem)."""
        shape = self._acc.shape
        given = []
        for name, kinds in _HOST_KINDS:
            x = data.get(name)
            if x is not None:
                if type(x) is not np.ndarray:
                    x = cpu_view(x)  # its checks cost a fraction of the tensor path's
                    if x is None:
                        return None
                if x.shape != shape or x.dtype.kind not in kinds:
                    return None
                if x.dtype.kind in "iu" and name != "reward" and not _zero_one(x):
                    _refuse_flags(name, x)
            given.append(x)
        return tuple(given)

    def record_pre_reset(self, env_ids: np.ndarray) -> Mapping[str, np.ndarray]:
        # plain numpy: the writer thread turns NaN success into nulls
        return self._acc.record_pre_reset(env_ids)

    def copy_out(self) -> None:
        # Rows gathered on a device leave it in one copy per hand-over of the episodes.
        self._acc.copy_out()

    def record_post_reset(self, env_ids: np.ndarray) -> None:
        # Steps add to stopped envs too: a new episode starts from a clean slate.
        self._acc.restart(env_ids)


class VariationsTerm(RecorderTerm):
    """Records every draw of the manager's variations into the ``draws`` table.

    ``params``: ``max_rows`` (rows buffered before a chunk goes to storage).
    """

    def __init__(self, cfg: RecorderTermCfg, manager: TermHost) -> None:
        super().__init__(cfg, manager)
        sink = manager.sink("draws")
        self.recorder = VariationRecorder(
            sink, tracker=manager.tracker, max_rows=int(cfg.params.get("max_rows", 262_144))
        )
        self.recorder.attach(manager.variations)

    def flush(self) -> None:
        self.recorder.flush()

    def close(self) -> None:
        self.recorder.flush()
        self.recorder.detach()


class _StepsChunk:
    """Buffered per-step arrays; :meth:`to_arrow` runs on the writer thread."""

    __slots__ = ("event", "parts")

    def __init__(
        self, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, dict]], event: Any = None
    ) -> None:
        self.parts = parts
        self.event = event  # after the parts' copies from a GPU (None: nothing pending)

    def __len__(self) -> int:
        return sum(len(p[0]) for p in self.parts)

    def to_arrow(self) -> pa.Table:
        wait(self.event)  # the non-blocking copies from the device are complete
        cols: dict[str, Any] = {  # STEPS_OWN
            "env_id": np.concatenate([p[0] for p in self.parts]).astype(np.int32),
            "episode": np.concatenate([p[1] for p in self.parts]),
            "step": np.concatenate([p[2] for p in self.parts]),
        }
        for key in self.parts[0][3]:
            values = np.concatenate([p[3][key] for p in self.parts])
            if values.ndim == 1:
                cols[key] = values
            else:
                flat = pa.array(values.reshape(-1))
                cols[key] = pa.FixedSizeListArray.from_arrays(flat, int(np.prod(values.shape[1:])))
        return pa.table(cols)


STEPS_OWN = ("env_id", "episode", "step")
"""The ``steps`` table's own columns, before the arrays of ``step_keys``."""


class StepsTerm(RecorderTerm):
    """Per-step arrays chosen by name, to a ``steps`` table: one row per (env, step).

    ``params``: ``keys`` (names in the ``record_step`` data, e.g. ``("reward",
    "action")``), ``max_rows`` (rows buffered before a chunk goes to storage).
    Vector-valued entries become fixed-size list columns.
    """

    keys: ClassVar[Sequence[str]] = ()

    def __init__(self, cfg: RecorderTermCfg, manager: TermHost) -> None:
        super().__init__(cfg, manager)
        keys = cfg.params.get("keys", ())
        if isinstance(keys, str) or not keys:
            raise ValueError(
                f"StepsTerm params['keys'] must name the per-step arrays to keep, got {keys!r}; "
                "e.g. keys=('reward', 'action')"
            )
        taken = [k for k in keys if k in STEPS_OWN or k == "run_id"]
        if taken:
            raise ValueError(
                f"step_keys {taken} are the steps table's own columns ({list(STEPS_OWN)}, "
                "and run_id, its partition); pass the arrays under other names, e.g. "
                f"record_step({taken[0]}_value=...) with step_keys=({taken[0] + '_value'!r},)"
            )
        self.keys = tuple(keys)
        self.max_rows = int(cfg.params.get("max_rows", 262_144))
        self._sink = manager.sink("steps")
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, dict]] = []
        self._rows = 0
        self._device: Any = None  # where the step tensors are, once one came from a GPU
        self._signature: dict[str, tuple[tuple[int, ...], str]] = {}  # key: (row shape, dtype)
        self._first: dict[str, tuple[tuple[int, ...], str]] = {}  # checked, not yet recorded

    def check_step(self, data: Mapping[str, Any]) -> None:
        """Each key given, with a row per env and the shape and dtype of its first step:
        a column keeps one type, and a part that differs would fail the whole chunk."""
        missing = [k for k in self.keys if k not in data]
        if missing:
            raise KeyError(
                f"StepsTerm records {list(self.keys)} but record_step got no {missing}; "
                f"pass them, e.g. manager.record_step({missing[0]}=...)"
            )
        n = self.manager.num_envs
        for key in self.keys:
            x = data[key]
            if not hasattr(x, "shape"):
                x = np.asarray(x)
            shape = tuple(x.shape)
            dtype = str(x.dtype).removeprefix("torch.")
            if isinstance(x, np.ndarray) and x.dtype.kind in "US":
                dtype = "str"  # its width may change from step to step
            if not shape or shape[0] != n:
                raise ValueError(
                    f"record_step `{key}` (a steps column) must have a row per env, shape "
                    f"({n}, ...), got shape {shape}; pass the values of every env, not "
                    "only the running ones"
                )
            if isinstance(x, np.ndarray) and x.dtype.kind in "OV":  # Arrow's guess per chunk
                raise TypeError(
                    f"record_step `{key}` (a steps column) must hold numbers, bools or "
                    f"text, got dtype {dtype}; pass a numeric array, or text as .astype(str)"
                )
            if getattr(x.dtype, "kind", None) == "c" or getattr(x.dtype, "is_complex", False):
                raise TypeError(  # Parquet has no complex type: the chunk would fail
                    f"record_step `{key}` (a steps column) must hold real numbers, bools or "
                    f"text, got dtype {dtype}; record its parts as two keys, e.g. "
                    f"{key}_re={key}.real and {key}_im={key}.imag"
                )
            first = self._signature.get(key)
            if first is None:  # kept once the step is recorded (a refused one sets nothing)
                self._first[key] = (shape[1:], dtype)
            elif first != (shape[1:], dtype):
                raise ValueError(
                    f"record_step `{key}` (a steps column) had shape {(n, *first[0])} and "
                    f"dtype {first[1]} in this run's first step, got {shape} and {dtype}; a "
                    "column keeps one shape and type: pass it as the first step did (e.g. "
                    f".astype({first[1]!r}))"
                )

    def record_step(self, data: Mapping[str, np.ndarray]) -> None:
        if self._first:
            self._signature.update(self._first)
            self._first.clear()
        t = self.manager.tracker
        ids = np.flatnonzero(t.started)
        on_device: dict[Any, Any] = {}  # the ids sent once per device, for every key
        picked = {k: self._pick(data[k], k, ids, on_device) for k in self.keys}
        self._parts.append((ids, t.episode[ids], t.steps(ids) - 1, picked))
        self._rows += len(ids)
        if self._rows >= self.max_rows:
            self.flush()

    def _pick(self, x: Any, name: str, ids: np.ndarray, on_device: dict[Any, Any]) -> np.ndarray:
        """The rows of the running envs: a copy on the host. A tensor on a GPU with a row
        per env is gathered there and copied back without a wait (the chunk waits on an
        event before it is read, on the writer thread); any other shape takes the host
        path, which names a short one (an index out of range on the device would break
        its context for good)."""
        if (
            is_tensor(x)
            and not x.requires_grad
            and x.ndim >= 1
            and x.shape[0] == self.manager.num_envs
            and arrays.off_host(x.device)
        ):
            self._device = x.device
            idx = on_device.get(x.device)
            if idx is None:
                idx = on_device[x.device] = device_async(ids, x.device)
            return host_async(x[idx])
        return to_host(x, name)[ids]  # fancy index: a copy

    def flush(self) -> None:
        # Cleared only once the writer accepted the chunk: never lost, never sent twice.
        if self._parts:
            chunk = _StepsChunk(self._parts, record_event(self._device))
            hand_over(self._sink, chunk, self._clear)

    def _clear(self) -> None:
        self._parts, self._rows = [], 0

    def close(self) -> None:
        self.flush()
