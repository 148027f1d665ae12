"""The RecorderManager: lifecycle hooks that drive episode tracking and recorder terms.

Call the hooks from the env's step and reset (mjlab order)::

    manager.record_step(reward=r, terminated=term, truncated=trunc, success=s)
    manager.record_pre_reset(done_ids)    # finished episodes are still intact
    variations draw for done_ids          # or manager.draw_reset(env, done_ids)
    manager.record_post_reset(done_ids)   # new episodes start
    manager.record_post_step()            # end of the step

A RecorderManager *holds* a :class:`~varirec.recording.driver.VariationDriver`, which
tracks episodes and drives the variations (seeds, design rows, batched reset draws,
interval timers), and records around it: the driver calls the manager back
(:class:`~varirec.recording.driver.DriverHooks`) when episodes finish, before the
tracker reserves their next index, and when new ones start. With nothing to record,
:func:`make_recorder_manager` returns the driver alone (``NullRecorderManager``).

>>> import varirec as vr, tempfile
>>> mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
>>> m = RecorderManager(num_envs=2, variations=[mass], output=tempfile.mkdtemp(), seed=0)
>>> m.reset(None, [0, 1])   # the first reset: starts episode 0, finishes nothing
>>> m.record_step(reward=np.ones(2), terminated=np.array([True, False]))
>>> m.reset(None, [0])
>>> m.close()
>>> m.counts["episodes"], m.counts["draws"]
(1, 3)
"""

from __future__ import annotations

import difflib
import inspect
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from varirec._version import __version__
from varirec.arrays import ArrayWorld, record_event
from varirec.errors import RecorderStateError
from varirec.recording.block_pool import BlockPool
from varirec.recording.driver import EpisodeSchedule, StudyDesign, VariationDriver
from varirec.recording.episode_chunk import (
    EpisodeChunk,
    check_term_columns,
    column_kinds,
    part_rows,
)
from varirec.recording.episodes import EpisodeTracker
from varirec.recording.term_set import TermHooks, build_terms, builtin_term_cfgs
from varirec.recording.terms import OUTCOME_NAMES, OutcomeTerm, RecorderTerm, RecorderTermCfg
from varirec.storage import RunWriter
from varirec.storage.schema import episodes_schema
from varirec.storage.shutdown import (
    exit_held,
    exit_if_signalled,
    hand_over,
    propagating,
    register,
    signal_of,
    unregister,
)
from varirec.variations.batch import ResetBatch
from varirec.variations.variation import Variation
from varirec.variations.variation_set import VariationSet

__all__ = [
    "EpisodeSchedule",
    "LifecycleManager",
    "NullRecorderManager",
    "RecorderManager",
    "StudyDesign",
    "VariationDriver",
    "make_recorder_manager",
]

log = logging.getLogger(__name__)


_CLOSED_HOOKS = (
    "record_step", "record_pre_reset", "record_post_reset", "record_post_step", "reset",
    "draw_build", "draw_reset", "draw_interval",
)  # fmt: skip
"""The calls a closed manager refuses."""

NullRecorderManager = VariationDriver
"""The zero-cost manager: tracks episodes and drives the variations, records nothing."""


class RecorderManager:
    """Runs recorder terms at the lifecycle hooks and writes a run to a dataset.

    Built-in terms, in order: ``outcome`` (:class:`OutcomeTerm`), ``variations``
    (:class:`VariationsTerm`), ``steps`` (:class:`StepsTerm`, when ``step_keys`` is
    given); then the user's ``terms`` in the order given. A term column that collides
    with another's is an error at construction.

    Args:
        num_envs: envs in the batch.
        variations: the env's variations; the recorder attaches to them here, so they
            must not have drawn yet.
        output: a dataset directory, or a :class:`~varirec.storage.RunWriter`; None
            records to nowhere (terms still run).
        terms: user terms by name.
        seed: the run seed.
        run_id: the run's id (default: a UTC timestamp).
        metadata: user metadata for ``run.json`` (JSON-serializable).
        step_keys: per-step arrays to record in a ``steps`` table.
        max_rows: rows buffered per table before they go to storage.
        flush_seconds: the flush window, in seconds. Buffered rows go to storage at the
            first hook call (``record_step``/``record_post_step``) once they are
            ``flush_seconds / 2`` old, and the writer's parts become durable (renamed
            to their final names) once their oldest row is ``flush_seconds / 2`` old
            (``writer_options["max_seconds_per_part"]`` overrides that half). So a
            SIGKILL loses at most the rows of the last ``flush_seconds`` (plus the time
            until the next hook call), and at most ``max_rows`` rows per buffer plus
            the writer's queue and open part. SIGINT, SIGTERM and exceptions lose
            nothing: buffered rows are handed over and written at close, with or
            without a ``with`` block (the manager registers for shutdown like
            :class:`~varirec.storage.RunWriter`).
        writer_options: passed to :class:`~varirec.storage.RunWriter`.
        device: the env's device, see :class:`~varirec.recording.driver.VariationDriver`.
        dtype: the torch dtype of float values handed to ``apply`` (default float32).
    """

    def __init__(
        self,
        num_envs: int | None = None,
        *,
        variations: VariationSet | Iterable[Variation] | None = None,
        output: str | os.PathLike[str] | RunWriter | None = None,
        terms: Mapping[str, RecorderTermCfg] | None = None,
        seed: int = 0,
        run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        step_keys: Iterable[str] | None = None,
        max_rows: int = 262_144,
        tracker: EpisodeTracker | None = None,
        env: Any = None,
        schedule: EpisodeSchedule | None = None,
        writer_options: Mapping[str, Any] | None = None,
        flush_seconds: float = 5.0,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        self._closed = False
        if (
            isinstance(flush_seconds, bool)
            or not isinstance(flush_seconds, (int, float))
            or not 0 < flush_seconds < math.inf
        ):
            raise ValueError(
                f"`flush_seconds` must be a positive number of seconds, got {flush_seconds!r}; "
                "e.g. flush_seconds=5.0"
            )
        self.flush_seconds = float(flush_seconds)
        self._handover_due = math.inf  # armed once the writer is open
        self.driver = VariationDriver(
            num_envs,
            variations=variations,
            seed=seed,
            tracker=tracker,
            env=env,
            schedule=schedule,
            device=device,
            dtype=dtype,
        )
        if isinstance(max_rows, bool) or not isinstance(max_rows, int | np.integer) or max_rows < 1:
            raise ValueError(
                f"`max_rows` must be a positive int (rows buffered per table), got {max_rows!r}; "
                "e.g. max_rows=262_144"
            )
        self.max_rows = int(max_rows)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(
                f"`metadata` must be a mapping of names to JSON values, got "
                f"{type(metadata).__name__} {metadata!r:.60}; e.g. metadata={{'policy': 'ppo'}}"
            )
        builtin = builtin_term_cfgs(max_rows=max_rows, step_keys=step_keys)
        self.writer: RunWriter | None = None
        self._episode_parts: list[dict[str, Any]] = []
        self._episode_rows = 0
        # A hand-over's rows, and the reset that passes max_rows: one buffer's columns.
        self.blocks = BlockPool(self.max_rows + self.num_envs)
        self.terms: dict[str, RecorderTerm] = {}
        self._hooks = TermHooks(self.terms)  # the terms that implement each hook
        # record_step's names that a built-in term reads: any other is checked (a typo).
        self._step_names = frozenset(OUTCOME_NAMES) | frozenset(step_keys or ())
        # Every input (term cfgs, column clashes, variations that drew) is checked before
        # the run directory exists: a refused manager leaves nothing in the dataset.
        try:
            self.episodes_schema = build_terms(builtin, terms, self, into=self.terms)
            # What a term of yours may return at a reset, per column (checked there).
            self._column_kinds = {
                id(t): column_kinds(t, self.episodes_schema)
                for t in self.terms.values()
                if type(t) is not OutcomeTerm
            }
            self.writer = self._open_writer(output, run_id, metadata, writer_options)
        except BaseException as exc:
            self.close(error=exc)  # detaches the terms; closes a writer only if opened
            raise
        if self.writer is not None and self.writer.created:
            core = set(episodes_schema().names)
            added = [n for n in self.episodes_schema.names if n not in core]
            self.writer.update_metadata(episode_columns=added)
        self.driver.hooks = self  # recording starts once every term and the writer exist
        if self.writer is not None:
            register(self)  # on SIGTERM and at exit: hand the buffers over, then close
            self._handover_due = time.monotonic() + self.flush_seconds / 2

    def _open_writer(
        self,
        output: str | os.PathLike[str] | RunWriter | None,
        run_id: str | None,
        metadata: Mapping[str, Any] | None,
        options: Mapping[str, Any] | None,
    ) -> RunWriter | None:
        if isinstance(output, RunWriter):  # its parts too are durable within the window
            output.default_part_window(self.flush_seconds / 2)
        if output is None or isinstance(output, RunWriter):
            return output
        pinned = sorted(
            {"episodes", "draws", "steps", "design"} & set((options or {}).get("schemas") or ())
        )
        if pinned:
            raise ValueError(
                f"writer_options['schemas'] pins {pinned}, whose schemas the manager makes "
                "(its terms' columns, the draws' format); pin only tables of your own, and "
                "declare episode columns in a term's columns()"
            )
        self._start_specs = specs = self.variations.specs()
        meta: dict[str, Any] = {
            "seed": self.seed,
            "num_envs": self.num_envs,
            "varirec_version": __version__,
            "variations": specs,
            "user": dict(metadata or {}),
        }
        if self.schedule is not None:
            meta["design"] = {
                **self.schedule.design.to_dict(),
                "replicates": self.schedule.replicates,
                "common_random_numbers": self.schedule.common_random_numbers,
            }
        # Chunks are up to max_rows rows (a few MB each): a short queue bounds memory
        # through back-pressure; the writer keeps up with any simulation loop.
        options = {
            "max_queue": 4,
            "max_seconds_per_part": self.flush_seconds / 2,
            **dict(options or {}),
        }
        writer = RunWriter(output, run_id, metadata=meta, **options)
        if self.schedule is not None:
            writer.append("design", self.schedule.design.to_table())
        return writer

    @property
    def counts(self) -> dict[str, int]:
        """Rows written per table (after :meth:`close`, everything recorded)."""
        return {} if self.writer is None else dict(self.writer.counts)

    def sink(self, table: str) -> Callable[[Any], None]:
        """Where a term hands its chunks for ``table`` (the writer opens after the terms
        are built: looked up at each hand-over, once per chunk)."""

        def hand_over(chunk: Any) -> None:
            if self.writer is not None:
                self.writer.append(table, chunk)

        return hand_over

    # -- the driver's state, and the driving it does --------------------------------
    @property
    def tracker(self) -> EpisodeTracker:
        return self.driver.tracker

    @property
    def variations(self) -> VariationSet:
        return self.driver.variations

    @property
    def schedule(self) -> EpisodeSchedule | None:
        return self.driver.schedule

    @property
    def num_envs(self) -> int:
        return self.driver.num_envs

    @property
    def seed(self) -> int:
        return self.driver.seed

    @property
    def world(self) -> ArrayWorld:
        """The env's array world (device, dtype of applied values)."""
        return self.driver.world

    @property
    def env(self) -> Any:
        return self.driver.env

    @env.setter
    def env(self, env: Any) -> None:
        self.driver.env = env

    def draw_build(self, env: Any = None, *, apply: bool = True) -> dict[str, np.ndarray]:
        """Draw (and record) the build-mode variations; see :meth:`VariationDriver.draw_build`."""
        return self.driver.draw_build(env, apply=apply)

    def draw_reset(self, env: Any, env_ids: Any) -> None:
        """Draw (and record) the reset-mode variations for ``env_ids``, applied to ``env``."""
        self.driver.draw_reset(env, env_ids)

    def draw_interval(self, env: Any = None) -> None:
        """Draw (and record) the interval-mode variations that are due."""
        self.driver.draw_interval(env)

    def episode_seeds(self, env_ids: Any) -> np.ndarray:
        """Reset seeds of the current episodes; see :meth:`VariationDriver.episode_seeds`."""
        return self.driver.episode_seeds(env_ids)

    def reset(
        self,
        env: Any,
        env_ids: Any,
        *,
        reset_fn: Callable[[np.ndarray, np.ndarray], Any] | None = None,
    ) -> None:
        """One reset of ``env_ids``, recorded: see :meth:`VariationDriver.reset` (the
        finished episodes are recorded before the tracker reserves their next index)."""
        self.driver.reset(env, env_ids, reset_fn=reset_fn)

    # -- hooks -----------------------------------------------------------------------
    _first_step = True  # record_step not called yet (its first call checks for a reset)

    def record_step(self, **data: Any) -> None:
        """A step's per-env arrays (``reward``, ``terminated``, ``truncated``,
        ``success`` and anything a term records), before finished envs reset."""
        exit_if_signalled(self)  # recording on another thread: SIGTERM ends it here
        driver = self.driver
        driver.settle()  # the last reset's rows, first
        if self._first_step:
            self._first_step = False
            if not driver._tracker.started.any():  # logged: a warning made an error would stop
                log.warning(
                    "record_step before any reset: no env has begun an episode, so these "
                    "steps count toward none (their rewards are dropped); call "
                    "manager.reset(env, None) once before the first step"
                )
        if time.monotonic() >= self._handover_due:  # once per hook call, not per draw
            self._hand_over_buffers()
        if not data.keys() <= self._step_names:
            self._hooks.check_step_names(data)
        for key, x in data.items():
            if type(x) is not np.ndarray:  # tensors are checked; DLPack arrays taken
                data[key] = driver.world.per_env(x, key)
        terms = self._hooks("record_step")
        for term in terms:  # a refused step is not counted, nor recorded in part
            term.check_step(data)
        driver._tracker.advance_steps()
        for term in terms:
            term.record_step(data)

    def record_pre_reset(self, env_ids: Any) -> None:
        """Record the finished episodes of ``env_ids`` (skipping never-started ones), then
        reserve their next episode index."""
        self.driver.record_pre_reset(env_ids)

    def record_post_reset(self, env_ids: Any) -> None:
        """Start the reserved episodes of ``env_ids`` (after their reset draws)."""
        self.driver.record_post_reset(env_ids)

    # -- what the driver calls (DriverHooks) -----------------------------------------
    def finishing(self, done: np.ndarray) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for term in self._hooks("record_pre_reset"):
            got = term.record_pre_reset(done) or {}
            if type(term) is not OutcomeTerm:  # yours: refused here, not at the hand-over
                check_term_columns(term, got, self._column_kinds[id(term)], len(done))
            row.update(got)
        return row

    def finished(self, row: dict[str, Any]) -> None:
        self._episode_parts.append(row)
        self._episode_rows += part_rows(row)
        if self._episode_rows >= self.max_rows:
            self._hand_over_buffers()  # the draws these episodes began with go first

    def defers_resets(self) -> bool:
        """Whether a reset's recording may wait for the next step (a prefetched GPU
        reset): no term but the built-in outcome term reads anything at a reset (a term
        of yours with ``record_pre_reset`` reads the env as the episode ended)."""
        hooks = self._hooks.all()
        pre = hooks["record_pre_reset"]
        return pre == hooks["record_post_reset"] and all(type(t) is OutcomeTerm for t in pre)

    def outcome_accumulators(self) -> tuple[np.ndarray, np.ndarray] | None:
        hooks = self._hooks.all()
        pre = hooks["record_pre_reset"]
        if len(pre) != 1 or type(pre[0]) is not OutcomeTerm or hooks["record_post_reset"] != pre:
            return None
        return pre[0]._acc.host

    def reset_drawn(self, batch: ResetBatch) -> None:
        for term in self._hooks("batch"):
            term.recorder.record_batch(batch)

    def started(self, ids: np.ndarray) -> None:
        for term in self._hooks("record_post_reset"):
            term.record_post_reset(ids)

    def record_post_step(self) -> None:
        for term in self._hooks("record_post_step"):
            term.record_post_step()
        if time.monotonic() >= self._handover_due:
            self._hand_over_buffers()

    def _hand_over_buffers(self) -> None:
        """Hand every buffer to the writer (the age limit; the writer's parts rotate
        by age on its own thread)."""
        self._handover_due = time.monotonic() + self.flush_seconds / 2
        for term in self.terms.values():
            term.flush()
        self._flush_episodes()

    def _flush_episodes(self) -> None:
        if not self._episode_parts:
            return
        for term in self._hooks("record_pre_reset"):
            term.copy_out()  # rows still on a device: their copies, before the event
        # Rows copied from a device are read on the writer thread once this event passed.
        chunk = EpisodeChunk(
            self._episode_parts, self.episodes_schema, record_event(self.driver.world.device)
        )
        self.blocks.renew()  # the handed-over blocks are never written again
        hand_over(self.sink("episodes"), chunk, self._clear_episodes)

    def _clear_episodes(self) -> None:
        self._episode_parts, self._episode_rows = [], 0

    def flush(self) -> None:
        """Hand every buffered row to storage and make it durable."""
        self.driver.settle()
        for term in self.terms.values():
            term.flush()
        self._flush_episodes()
        if self.writer is not None:
            self.writer.flush()

    def _refuse_hooks(self) -> None:
        """A closed manager's hooks raise (set as instance attributes at close: the open
        path checks nothing): what they would record is lost."""
        run = getattr(getattr(self, "writer", None), "run_id", None)
        name = f"the run {run!r}" if run else "this recorder"
        ended_by = signal_of(self)  # a SIGTERM closed it at exit: a recording thread ends

        def refuse(hook: str) -> Callable[..., None]:
            def refused(*args: Any, **kwargs: Any) -> None:
                on_main = threading.current_thread() is threading.main_thread()
                if ended_by is not None and not on_main:
                    raise SystemExit(128 + ended_by)
                raise RecorderStateError(
                    f"`{hook}` was called after close(): {name} is closed and records nothing "
                    "more, so what this call would record is lost; make a new RecorderManager "
                    "(a new run) to record more"
                )

            return refused

        for hook in _CLOSED_HOOKS:
            setattr(self, hook, refuse(hook))

    def close(self, error: BaseException | None = None, *, closed_by: str = "close") -> None:
        """Flush every term and close the run (``error``: why the run ended early; by
        default the exception passing by, where ``close`` runs in a ``finally`` block).

        Idempotent. Every term is flushed even if one fails; the first failure is
        recorded in the run and raised (when ``error`` is None) once the run is closed.
        A Ctrl-C or SIGTERM during the close is raised when it is done.
        """
        if getattr(self, "_closed", False):
            return
        if error is None:  # closed in a `finally` (or `except`) while an error goes by
            error = propagating()
        first: BaseException | None = None
        with exit_held(closing=True):
            try:
                driver = getattr(self, "driver", None)
                if driver is not None and driver.hooks is self:
                    try:  # a prefetched reset's rows, before the terms close
                        driver.settle()
                    except Exception as exc:
                        first = first or exc
                        driver._prefetched.drop()  # the run is closed all the same
                for term in list(getattr(self, "terms", {}).values()):
                    try:
                        term.close()
                    except Exception as exc:
                        first = first or exc
                if hasattr(self, "episodes_schema"):
                    try:
                        self._flush_episodes()
                    except Exception as exc:
                        first = first or exc
            finally:
                self._closed = True
                self._refuse_hooks()
                unregister(self)
                driver = getattr(self, "driver", None)
                if driver is not None and driver.hooks is self:
                    driver.hooks = None  # a closed recorder records nothing more
                if driver is not None:
                    driver.close()  # no output of its own: its counts of draws fold in
                writer = getattr(self, "writer", None)
                if writer is not None and not writer.closed:
                    self._note_enabled_later(writer)
                    self._note_open_episodes(writer, driver)
                    # run.json's counts sum every writer's rows
                    writer.close(error=first if error is None else error, closed_by=closed_by)
        if first is not None and error is None:
            raise first

    @staticmethod
    def _note_open_episodes(writer: RunWriter, driver: Any) -> None:
        """Count in ``run.json`` (``episodes_open_at_close``) the episodes that had taken
        steps and were still running: they have no row, and where they are the long
        ones (a payload too heavy to finish) the episodes recorded lean the other way
        (the analysis says so). Where the run was resumed, the count is replaced."""
        tracker = getattr(driver, "tracker", None)
        if tracker is None or not writer.writes_outcome:
            return
        try:
            running = int(np.count_nonzero(tracker.started & (tracker.step > 0)))
            # A resumed run's count is this process's: the first one's episodes ran again.
            if running or "episodes_open_at_close" in writer.metadata:
                writer.update_metadata(episodes_open_at_close=running)
        except Exception as exc:  # a note in run.json must not keep the run from closing
            log.warning("could not count the episodes open at close in run.json: %s", exc)

    def _note_enabled_later(self, writer: RunWriter) -> None:
        """``run.json`` lists the variations as they were when the run began; mark those
        disabled then that drew later (``enabled``, ``enabled_after_start``)."""
        specs = getattr(self, "_start_specs", None)
        if not specs or not writer.created:
            return
        late = {s["key"] for s in specs if not s["enabled"] and self.variations[s["key"]].num_draws}
        if not late:
            return
        marked = [
            {**s, "enabled": True, "enabled_after_start": True} if s["key"] in late else s
            for s in specs
        ]
        try:
            writer.update_metadata(variations=marked)
        except Exception as exc:  # a note in run.json must not keep the run from closing
            log.warning("could not mark %s as enabled after start in run.json: %s", late, exc)

    def __enter__(self) -> RecorderManager:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        self.close(error=exc)


LifecycleManager = VariationDriver | RecorderManager
"""Either manager: what an env loop or a wrapper drives (``isinstance`` accepts it)."""


def make_recorder_manager(
    num_envs: int,
    *,
    output: str | os.PathLike[str] | RunWriter | None = None,
    terms: Mapping[str, RecorderTermCfg] | None = None,
    step_keys: Iterable[str] | None = None,
    **kwargs: Any,
) -> VariationDriver | RecorderManager:
    """A :class:`RecorderManager`, or the zero-cost :class:`VariationDriver` (the
    ``NullRecorderManager``) when there is nothing to record (no output, no terms, no
    step keys)."""
    if output is None and not terms and step_keys is None:
        known = inspect.signature(RecorderManager).parameters
        unknown = [k for k in kwargs if k not in known]
        if unknown:
            hints = [c for k in unknown for c in difflib.get_close_matches(k, known, n=1)]
            raise TypeError(
                f"make_recorder_manager got unexpected keyword argument(s) {unknown}"
                + (f" (did you mean {hints}?)" if hints else "")
                + f"; it takes those of RecorderManager: {', '.join(known)}"
            )
        null_kwargs = {
            k: v
            for k, v in kwargs.items()
            if k in ("variations", "seed", "tracker", "env", "schedule", "device", "dtype")
        }
        return VariationDriver(num_envs, **null_kwargs)
    return RecorderManager(num_envs, output=output, terms=terms, step_keys=step_keys, **kwargs)
