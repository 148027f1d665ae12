"""The RecorderManager: lifecycle hooks that drive episode tracking and recorder terms.

Call the hooks from the env's step and reset (mjlab order)::

    manager.record_step(reward=r, terminated=term, truncated=trunc, success=s)
    manager.record_pre_reset(done_ids)    # finished episodes are still intact
    variations draw for done_ids          # or manager.draw_reset(env, done_ids)
    manager.record_post_reset(done_ids)   # new episodes start
    manager.record_post_step()            # end of the step

The hooks also drive the :class:`~varirec.recording.episodes.EpisodeTracker`, which keys the
reproducible draws of the variations; so :class:`NullRecorderManager` (no terms, no
output: what :func:`make_recorder_manager` returns when nothing is recorded) still
tracks episodes and nothing else.

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

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from varirec._version import __version__
from varirec.errors import RecorderStateError
from varirec.recording.episode_chunk import EpisodeChunk
from varirec.recording.episodes import EpisodeTracker
from varirec.recording.terms import (
    OutcomeTerm,
    RecorderTerm,
    RecorderTermCfg,
    StepsTerm,
    VariationsTerm,
)
from varirec.sampling.streams import INTERVAL_TIMER_STREAM, RESET_SEED_STREAM, CounterStream
from varirec.storage import RunWriter
from varirec.storage.schema import episodes_schema
from varirec.storage.shutdown import exit_held, hand_over, register, unregister
from varirec.variations.variation import Variation, VariationSet, noise_keys

__all__ = [
    "EpisodeSchedule",
    "NullRecorderManager",
    "RecorderManager",
    "make_recorder_manager",
]

log = logging.getLogger(__name__)


class StudyDesign(Protocol):
    """The design of a study, as the manager stores it (run.json and the design table)."""

    def to_dict(self) -> dict[str, Any]: ...

    def to_table(self) -> pa.Table: ...


class EpisodeSchedule(Protocol):
    """Hands design rows and common-random-number seeds to the episodes that begin
    (the studies stage's :class:`~varirec.studies.design.DesignSchedule` is one)."""

    design: StudyDesign
    replicates: int
    common_random_numbers: bool

    def attach(self, variations: VariationSet) -> None:
        """Refuse variations the design does not fit (before any run exists)."""

    def check_bound(self) -> None:
        """Refuse to hand out rows while the design is not bound to the variations."""

    def assign(self, tracker: EpisodeTracker, env_ids: np.ndarray) -> np.ndarray: ...


class NullRecorderManager:
    """Episode tracking and variation driving, with no terms and no output.

    Args:
        num_envs: envs in the batch (or give ``tracker``).
        variations: variations to key by this manager's episodes and draw.
        seed: the run seed of the reproducible draws.
        tracker: share an existing tracker.
        env: the env, handed to terms and to ``apply`` callables.
        schedule: a :class:`~varirec.studies.design.DesignSchedule` that hands design rows to
            resetting envs. Its design must drive these variations (checked here) and be
            bound to them (``design.bind(variations)``, before or after this manager is
            made; checked at the first reset, before any row is handed out).
    """

    def __init__(
        self,
        num_envs: int | None = None,
        *,
        variations: VariationSet | Iterable[Variation] | None = None,
        seed: int = 0,
        tracker: EpisodeTracker | None = None,
        env: Any = None,
        schedule: EpisodeSchedule | None = None,
    ) -> None:
        if tracker is None:
            if num_envs is None:
                raise ValueError("give `num_envs` (or an EpisodeTracker as `tracker`)")
            tracker = EpisodeTracker(num_envs)
        self.tracker = tracker
        self.num_envs = tracker.num_envs
        self.env = env
        self.seed = int(seed)
        if variations is None:
            variations = VariationSet()
        elif not isinstance(variations, VariationSet):
            variations = VariationSet(variations)
        self.variations = variations
        if schedule is not None:
            schedule.attach(variations)  # binding is checked at the first rows handed out
        self.schedule = schedule
        for v in variations.values():
            v.bind(tracker)
            v.seed(self.seed)
        # Every interval variation has a timer: one enabled later draws on time too.
        self._interval_next = {
            v.key: np.zeros(self.num_envs, dtype=np.int64)
            for v in variations.values()
            if v.mode == "interval"
        }
        self._timer_stream = CounterStream(self.seed, INTERVAL_TIMER_STREAM)
        self._seed_stream = CounterStream(self.seed, RESET_SEED_STREAM)
        self._built = False

    # -- lifecycle hooks -------------------------------------------------------------
    def record_step(self, **data: np.ndarray) -> None:
        """Count a step for every running episode (terms also record ``data``)."""
        self.tracker.advance_steps()

    def record_pre_reset(self, env_ids: Any) -> None:
        """Finish the started episodes of ``env_ids`` and reserve their next index."""
        self._pre_reset(self.tracker.ids(env_ids))

    def record_post_reset(self, env_ids: Any) -> None:
        """Start the reserved episodes of ``env_ids`` (after their reset draws)."""
        self._post_reset(self.tracker.ids(env_ids))

    def _pre_reset(self, ids: np.ndarray) -> None:
        self.tracker.finish(ids)
        self.tracker.begin(ids)

    def _post_reset(self, ids: np.ndarray) -> None:
        self.tracker.start(ids)
        self._arm_interval_timers(ids)

    def record_post_step(self) -> None:
        """End of a step (nothing to do without terms)."""

    def flush(self) -> None:
        """Nothing buffered without terms."""

    def close(self, error: BaseException | None = None, *, closed_by: str = "close") -> None:
        """Nothing to close without output."""

    # -- driving variations ----------------------------------------------------------
    def draw_build(self, env: Any = None, *, apply: bool = True) -> dict[str, np.ndarray]:
        """Draw the build-mode variations once (one value for every env); returns them by
        key. ``apply=False`` only draws (and records): the env does not exist yet."""
        if self._built:
            raise RecorderStateError("build-mode variations were already drawn for this run")
        self._built = True
        values = {}
        for v in self.variations.enabled("build"):
            values[v.key] = v.draw(env, apply=apply)
        return values

    def draw_reset(self, env: Any, env_ids: Any) -> None:
        """Draw the reset-mode variations for ``env_ids`` and apply them to ``env``."""
        self._draw_reset(env, self.tracker.ids(env_ids))

    def _draw_reset(self, env: Any, ids: np.ndarray) -> None:
        for v in self.variations.enabled("reset"):
            v.draw(env, ids)  # a bound variation begins episode 0 for never-reset envs

    def episode_seeds(self, env_ids: Any) -> np.ndarray:
        """Reset seeds of the current episodes of ``env_ids``, stored on the tracker: the
        schedule's (common random numbers) where it set one, else a hash of ``(run
        seed, env_id, episode)``, so every episode can be replayed."""
        ids = self.tracker.ids(env_ids)
        seeds = self.tracker.seed[ids]
        missing = seeds < 0
        if missing.any():
            seeds[missing] = self._seed_stream.seeds(
                ids[missing], self.tracker.episode[ids[missing]]
            )
            self.tracker.seed[ids] = seeds
        return seeds

    def reset(
        self,
        env: Any,
        env_ids: Any,
        *,
        reset_fn: Callable[[np.ndarray, np.ndarray], Any] | None = None,
    ) -> None:
        """One reset of ``env_ids``, in order: ``record_pre_reset``; the design rows of the
        new episodes (with a schedule); their seeds (with ``reset_fn``); the reset
        draws, applied to ``env``; ``reset_fn(env_ids, seeds)``, the env's own reset
        from the applied values; then ``record_post_reset``, with the new episodes'
        first state in place."""
        ids = self.tracker.ids(env_ids)  # checked once for every step
        if self.schedule is not None:
            self.schedule.check_bound()  # before the tracker moves: nothing half-done
        self._pre_reset(ids)
        if self.schedule is not None:
            self.schedule.assign(self.tracker, ids)
        seeds = None if reset_fn is None else self.episode_seeds(ids)
        self._draw_reset(env, ids)
        if reset_fn is not None:
            reset_fn(ids, seeds)
        self._post_reset(ids)

    def draw_interval(self, env: Any = None) -> None:
        """Draw the interval-mode variations whose per-env timer is due, and re-arm it."""
        t = self.tracker
        for v in self.variations.enabled("interval"):
            nxt = self._interval_next.get(v.key)
            if nxt is None:
                continue
            due = np.flatnonzero(t.started & (t.step >= nxt))
            if due.size:
                v.draw(env, due)
                nxt[due] = t.step[due] + self._interval_steps(v, due)

    def _interval_steps(self, v: Variation, ids: np.ndarray) -> np.ndarray:
        low, high = v.cfg.interval_steps
        t = self.tracker
        # Timers are episode noise too: keyed by the episode seed where one is set.
        keys, episodes = noise_keys(ids, t.episode[ids], t.seed[ids])
        u = self._timer_stream.uniforms(keys, episodes, 1, t.step[ids])
        return low + np.minimum((u[:, 0] * (high - low + 1)).astype(np.int64), high - low)

    def _arm_interval_timers(self, ids: np.ndarray) -> None:
        for key, nxt in self._interval_next.items():
            nxt[ids] = self._interval_steps(self.variations[key], ids)

    def __enter__(self) -> NullRecorderManager:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        self.close(error=exc)


class RecorderManager(NullRecorderManager):
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
    ) -> None:
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
        super().__init__(
            num_envs, variations=variations, seed=seed, tracker=tracker, env=env, schedule=schedule
        )
        self.max_rows = int(max_rows)
        if isinstance(step_keys, str):
            raise TypeError(
                f"`step_keys` must be a sequence of names, got the string {step_keys!r}; "
                f"pass e.g. step_keys=({step_keys!r},)"
            )
        builtin = {
            "outcome": RecorderTermCfg(term=OutcomeTerm),
            "variations": RecorderTermCfg(term=VariationsTerm, params={"max_rows": max_rows}),
        }
        if step_keys is not None:
            builtin["steps"] = RecorderTermCfg(
                term=StepsTerm, params={"keys": tuple(step_keys), "max_rows": max_rows}
            )
        user = dict(terms or {})
        clash = set(user) & set(builtin)
        if clash:
            raise ValueError(f"term names {sorted(clash)} are taken by built-in terms; rename them")
        self.writer: RunWriter | None = None
        self._episode_parts: list[dict[str, Any]] = []
        self._episode_rows = 0
        self.terms: dict[str, RecorderTerm] = {}
        # Core episode columns not recorded by the outcome term come from the tracker.
        outcome = set(OutcomeTerm.COLUMNS)
        self._columns = {c: "tracker" for c in episodes_schema().names if c not in outcome}
        # Every input (term cfgs, column clashes, variations that drew) is checked before
        # the run directory exists: a refused manager leaves nothing in the dataset.
        try:
            for name, cfg in {**builtin, **user}.items():
                self._add_term(name, cfg)
            core = set(episodes_schema().names)
            extra = [
                pa.field(c, t)
                for term in self.terms.values()
                for c, t in term.columns().items()
                if c not in core
            ]
            self.episodes_schema = episodes_schema(extra)
            self.writer = self._open_writer(output, run_id, metadata, writer_options)
        except BaseException as exc:
            self.close(error=exc)  # detaches the terms; closes a writer only if opened
            raise
        if self.writer is not None and self.writer.created:
            self.writer.update_metadata(episode_columns=[f.name for f in extra])
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
        if output is None or isinstance(output, RunWriter):
            return output
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

    def _add_term(self, name: str, cfg: RecorderTermCfg) -> None:
        if not isinstance(cfg, RecorderTermCfg):
            raise TypeError(f"term {name!r} must be given as a RecorderTermCfg, got {cfg!r}")
        term = cfg.term(cfg, self)
        for column in term.columns():
            owner = self._columns.get(column)
            if owner is not None:
                raise ValueError(
                    f"term {name!r} adds episode column {column!r}, which {owner!r} already "
                    "records; rename the column"
                )
            self._columns[column] = name
        self.terms[name] = term

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

    # -- hooks -----------------------------------------------------------------------
    def record_step(self, **data: np.ndarray) -> None:
        """A step's per-env arrays (``reward``, ``terminated``, ``truncated``,
        ``success`` and anything a term records), before finished envs reset."""
        if time.monotonic() >= self._handover_due:  # once per hook call, not per draw
            self._hand_over_buffers()
        self.tracker.advance_steps()
        for term in self.terms.values():
            term.record_step(data)

    def _pre_reset(self, ids: np.ndarray) -> None:
        """Record the finished episodes of ``ids`` (skipping never-started ones), then
        reserve their next episode index."""
        done = ids[self.tracker.started[ids]]
        if done.size:
            row: dict[str, Any] = {}
            for term in self.terms.values():
                row.update(term.record_pre_reset(done) or {})
            row.update(self.tracker.finish(done))
            self._episode_parts.append(row)
            self._episode_rows += done.size
            if self._episode_rows >= self.max_rows:
                self._flush_episodes()
        self.tracker.begin(ids)

    def _post_reset(self, ids: np.ndarray) -> None:
        super()._post_reset(ids)
        for term in self.terms.values():
            term.record_post_reset(ids)

    def record_post_step(self) -> None:
        for term in self.terms.values():
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
        chunk = EpisodeChunk(self._episode_parts, self.episodes_schema)
        hand_over(self.sink("episodes"), chunk, self._clear_episodes)

    def _clear_episodes(self) -> None:
        self._episode_parts, self._episode_rows = [], 0

    def flush(self) -> None:
        """Hand every buffered row to storage and make it durable."""
        for term in self.terms.values():
            term.flush()
        self._flush_episodes()
        if self.writer is not None:
            self.writer.flush()

    def close(self, error: BaseException | None = None, *, closed_by: str = "close") -> None:
        """Flush every term and close the run (``error``: why the run ended early).

        Idempotent. Every term is flushed even if one fails; the first failure is
        recorded in the run and raised (when ``error`` is None) once the run is closed.
        A Ctrl-C or SIGTERM during the close is raised when it is done.
        """
        if getattr(self, "_closed", False):
            return
        first: BaseException | None = None
        with exit_held(closing=True):
            try:
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
                unregister(self)
                writer = getattr(self, "writer", None)
                if writer is not None and not writer.closed:
                    self._note_enabled_later(writer)
                    # run.json's counts sum every writer's rows
                    writer.close(error=first if error is None else error, closed_by=closed_by)
        if first is not None and error is None:
            raise first

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


def make_recorder_manager(
    num_envs: int,
    *,
    output: str | os.PathLike[str] | RunWriter | None = None,
    terms: Mapping[str, RecorderTermCfg] | None = None,
    step_keys: Iterable[str] | None = None,
    **kwargs: Any,
) -> NullRecorderManager:
    """A :class:`RecorderManager`, or the :class:`NullRecorderManager` when there is
    nothing to record (no output, no terms, no step keys)."""
    if output is None and not terms and step_keys is None:
        null_kwargs = {
            k: v
            for k, v in kwargs.items()
            if k in ("variations", "seed", "tracker", "env", "schedule")
        }
        return NullRecorderManager(num_envs, **null_kwargs)
    return RecorderManager(num_envs, output=output, terms=terms, step_keys=step_keys, **kwargs)
