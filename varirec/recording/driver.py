"""The VariationDriver: tracks episodes and drives the variations, recording nothing.

It owns the :class:`~varirec.recording.episodes.EpisodeTracker` (episode indices, steps,
seeds), hands design rows out through a schedule, keys and draws the variations (all
reset-mode variations of a reset in one batched draw), and runs the interval timers.
Call its hooks from the env's step and reset (mjlab order)::

    driver.record_step()                 # a step was taken
    driver.reset(env, done_ids, reset_fn=env.reset_idx)
    driver.draw_interval(env)            # mid-episode draws that are due
    driver.record_post_step()

This is the zero-cost path (:func:`~varirec.recording.manager.make_recorder_manager`
returns it when nothing is recorded; it is exported as ``NullRecorderManager`` too).
A :class:`~varirec.recording.manager.RecorderManager` holds one and records around it
through :class:`DriverHooks`: finished episodes before the tracker reserves the next
index, one event per reset batch, new episodes after their reset.

>>> import varirec as vr
>>> mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
>>> d = VariationDriver(2, variations=[mass], seed=0)
>>> d.reset(None, [0, 1])
>>> d.tracker.episode.tolist(), d.tracker.started.tolist()
([0, 0], [True, True])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from varirec.arrays import ArrayWorld, is_tensor
from varirec.errors import RecorderStateError
from varirec.recording.block_pool import BlockPool
from varirec.recording.compiled_reset import CompiledReset, first_draw_keys
from varirec.recording.episodes import FINISHED, EpisodeTracker
from varirec.recording.interval_timers import IntervalTimers
from varirec.recording.prefetched_reset import PrefetchedReset
from varirec.sampling.streams import RESET_SEED_STREAM, CounterStream
from varirec.variations.batch import ResetBatch, draw_reset_batch
from varirec.variations.counters import DrawCounters
from varirec.variations.reset_group import PlanCache, ResetGroup
from varirec.variations.variation import Variation, epoch
from varirec.variations.variation_set import VariationSet

__all__ = ["DriverHooks", "EpisodeSchedule", "StudyDesign", "VariationDriver"]


def _torch_int64() -> Any:
    import torch  # only reached with a tensor in hand

    return torch.int64


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


class DriverHooks(Protocol):
    """Where a recorder plugs into a :class:`VariationDriver` (the RecorderManager is one).

    Each hook runs at one moment of the reset lifecycle, with what is valid then.
    """

    def finishing(self, done: np.ndarray) -> dict[str, Any]:
        """The episodes of ``done`` ended and are still intact (the tracker has not
        finished them): return the recorder's columns for them, aligned with ``done``."""

    def finished(self, row: dict[str, Any]) -> None:
        """The columns of :meth:`finishing` plus the tracker's (``env_id``, seqs, length;
        with the kernels on, as one block: :meth:`EpisodeTracker.finish_block`)."""

    blocks: BlockPool
    """Where the finished episodes' int64 blocks are written (optional: hooks without
    it get new arrays), so that a hand-over's blocks lie side by side."""

    def outcome_accumulators(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The host arrays of return and success (``(2, num_envs)`` float64) and of
        terminated and truncated (``(2, num_envs)`` bool) when the recorder's only work
        at :meth:`finishing` and :meth:`started` is to gather and clear their entries
        (:class:`~varirec.recording.terms.OutcomeTerm` alone): the compiled reset then
        does it in its kernels and hands :meth:`finished` every column in one block
        (:data:`~varirec.recording.episode_chunk.RECORDED_BLOCK`), calling neither.
        None, or hooks without this method: call both."""

    def reset_drawn(self, batch: ResetBatch) -> None:
        """The reset-mode variations of one reset drew, in one batch (before the
        variations' own listeners and ``apply``)."""

    def started(self, ids: np.ndarray) -> None:
        """The new episodes of ``ids`` started: their draws are applied, the env reset."""


class VariationDriver:
    """Episode tracking and variation driving, with no terms and no output.

    Args:
        num_envs: envs in the batch (or give ``tracker``).
        variations: variations to key by this driver's episodes and draw.
        seed: the run seed of the reproducible draws.
        tracker: share an existing tracker.
        env: the env, handed to terms and to ``apply`` callables.
        schedule: a :class:`~varirec.studies.design.DesignSchedule` that hands design rows to
            resetting envs. Its design must drive these variations (checked here) and be
            bound to them (``design.bind(variations)``, before or after this driver is
            made; checked at the first reset, before any row is handed out).
        device: the env's device (``"cuda:0"``); None takes it from the first tensor
            the env hands in (env ids, ``record_step`` arrays), numpy until then.
            Reset draws are made there, and ``apply`` gets tensors there.
        dtype: the torch dtype of float values handed to ``apply`` (default float32).
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
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        # The stream checks the seed (an int): first, before anything is made from it.
        self._seed_stream = CounterStream(seed, RESET_SEED_STREAM)
        self.world = ArrayWorld(device, dtype)
        if tracker is None:
            if num_envs is None:
                raise ValueError("give `num_envs` (or an EpisodeTracker as `tracker`)")
            tracker = EpisodeTracker(num_envs)
        elif num_envs is not None and num_envs != tracker.num_envs:
            raise ValueError(
                f"`num_envs` is {num_envs!r} but the `tracker` given counts "
                f"{tracker.num_envs} envs; pass a tracker of {num_envs!r} envs, or leave "
                "num_envs out"
            )
        self._tracker = tracker
        self._prefetched = PrefetchedReset(self)  # a GPU env's resets, waiting for nothing
        self.num_envs = tracker.num_envs
        self.env = env
        self.seed = self._seed_stream.seed
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
        self._timers = IntervalTimers(variations, tracker, self.seed)
        self._built = False
        self._plans = PlanCache()
        self._counters = DrawCounters(list(variations.values()), self.num_envs)
        self._group: ResetGroup | None = None  # rebuilt when a variation changes
        self._compiled = CompiledReset(self)  # the usual reset, in one kernel call
        self.hooks: DriverHooks | None = None
        """The recorder around this driver; None on the zero-cost path."""

    @property
    def tracker(self) -> EpisodeTracker:
        """The episode tracker (a prefetched GPU reset's bookkeeping is done first)."""
        self.settle()
        return self._tracker

    def settle(self) -> None:
        """Do the bookkeeping of a prefetched GPU reset now, if one waits for it (the
        hooks that read the tracker call it; see
        :mod:`~varirec.recording.prefetched_reset`)."""
        p = self._prefetched
        if p.pending is not None:
            p.settle()

    # -- lifecycle hooks -------------------------------------------------------------
    def record_step(self, **data: Any) -> None:
        """Count a step for every running episode (a recorder also records ``data``)."""
        self.settle()
        self._tracker.advance_steps()

    def record_pre_reset(self, env_ids: Any) -> None:
        """Finish the started episodes of ``env_ids`` and reserve their next index."""
        self._moved()
        self._pre_reset(self._ids(env_ids))

    def record_post_reset(self, env_ids: Any) -> None:
        """Start the reserved episodes of ``env_ids`` (after their reset draws)."""
        self._moved()
        self._post_reset(self._ids(env_ids))

    def _moved(self) -> None:
        """The tracker moves outside a prefetched reset: settle the pending one, and the
        prefetch tables are made again before the next."""
        self.settle()
        self._prefetched.forget()

    def _ids(self, env_ids: Any) -> np.ndarray:
        """Env ids or a mask from the env (numpy, torch, any array) as checked host ids."""
        if env_ids is None or isinstance(env_ids, np.ndarray):
            return self._tracker.ids(env_ids)
        return self._tracker.ids(self.world.ids(env_ids, self.num_envs))

    def _pre_reset(self, ids: np.ndarray) -> None:
        t = self._tracker
        hooks = self.hooks
        if hooks is None:
            t.finish_and_begin(ids)
            return
        done = ids[t.started[ids]]
        if done.size:  # the first reset after build finishes nothing: no phantom
            self._record_finished(done)
        t.begin(ids)

    def _record_finished(
        self, done: np.ndarray, now: int | None = None, late: list[BaseException] | None = None
    ) -> None:
        """The recorder takes the finished episodes of ``done`` (started envs), then the
        tracker ends them (its columns as one block where the kernels are on; ``now``:
        their end's time, default now). ``late``: where an error of the recorder's
        hand-over goes (the row is in its buffer by then), for a reset that must be
        whole before it raises."""
        hooks, t = self.hooks, self._tracker
        assert hooks is not None
        row = hooks.finishing(done)
        pool = getattr(hooks, "blocks", None)
        n, m = len(FINISHED), len(done)
        if pool is None:
            found = t.finish_block(done, now)
        else:  # beside the last reset's: the hand-over joins them without a copy
            found = t.finish_block(done, now, pool.take(n, m), pool.take(1, m, np.int32)[0])
        if found is None:
            found = t.finish(done, started=True, now=now)
        elif pool is not None:
            pool.keep(n, m)
            pool.keep(1, m, np.int32)
        row.update(found)
        if late is None:
            hooks.finished(row)
            return
        try:
            hooks.finished(row)
        except BaseException as exc:
            late.append(exc)

    def _post_reset(self, ids: np.ndarray, begun: bool = False) -> None:
        self._tracker.start(ids, begun=begun)
        self._timers.arm(ids)
        if self.hooks is not None:
            self.hooks.started(ids)

    def record_post_step(self) -> None:
        """End of a step (nothing to do without a recorder)."""

    def flush(self) -> None:
        """Nothing buffered without a recorder (a prefetched reset is settled)."""
        self.settle()

    def close(self, error: BaseException | None = None, *, closed_by: str = "close") -> None:
        """Nothing to close without output; the variations' ``num_draws`` stop reading
        this driver's count of reset batches (a later reset counts anew)."""
        try:
            self.settle()
        except BaseException:
            self._prefetched.drop()  # a second close closes
            raise
        finally:
            self._prefetched.forget()
            g, self._group = self._group, None
            self._compiled.plan = None  # it holds the group too
            if g is not None:
                g.retire()

    # -- driving variations ----------------------------------------------------------
    def draw_build(self, env: Any = None, *, apply: bool = True) -> dict[str, np.ndarray]:
        """Draw the build-mode variations once (one value for every env); returns them by
        key. ``apply=False`` only draws (and records): the env does not exist yet."""
        if self._built:
            raise RecorderStateError("build-mode variations were already drawn for this run")
        self.settle()
        self._built = True
        values = {}
        for v in self.variations.enabled("build"):
            values[v.key] = v.draw(env, apply=False)
            if apply and v.apply is not None:
                v.apply(env, None, self.world.values(values[v.key]))
        return values

    def draw_reset(self, env: Any, env_ids: Any) -> ResetBatch | None:
        """Draw the reset-mode variations for ``env_ids`` and apply them to ``env``."""
        self._moved()
        return self._draw_reset(env, self._ids(env_ids), env_ids)

    def _draw_reset(
        self, env: Any, ids: np.ndarray, given: Any = None, begun: bool = False
    ) -> ResetBatch | None:
        """All enabled reset-mode variations in one batched draw (those with a sampler of
        their own draw alone, after it); a recorder takes the batch in one piece."""
        g = self._reset_group()
        if not g.enabled:
            return None
        batch = None
        if g.together:
            if not begun:
                self._tracker.begin_unbegun(ids)
            batch = draw_reset_batch(
                g.together,
                ids,
                self._tracker,
                self.world,
                counters=self._counters,
                group=g,
                begun=True,
                keys=first_draw_keys(self._tracker, self._counters, g, ids),
            )
            if batch is not None:
                if self.hooks is not None:
                    self.hooks.reset_drawn(batch)
                batch.notify_and_apply(env, self._env_ids(ids, given))
        for v in g.alone:  # a bound variation begins episode 0 for never-reset envs
            values = v.draw(env, ids, apply=False)  # None: disabled during this reset
            if values is not None and v.apply is not None:  # as the env takes them
                v.apply(env, self._env_ids(ids, given), self.world.values(values))
        return batch

    def _reset_group(self) -> ResetGroup:
        """The enabled reset-mode variations as one batch, rebuilt after any change."""
        g = self._group
        if g is None or g.epoch != epoch():
            if g is not None:
                g.retire()
            vs = self.variations
            g = self._group = ResetGroup(
                vs.enabled("reset"), vs.apply_batch, self._plans, self._counters
            )
        return g

    def _env_ids(self, ids: np.ndarray, given: Any) -> Any:
        """The ids as ``apply`` takes them: the env's own int64 id tensor where it handed
        one in (checked, on its device), else ``ids`` moved to the env's world."""
        if (
            given is not None
            and self.world.device is not None
            and is_tensor(given)
            and given.dtype == _torch_int64()
            and given.ndim == 1
        ):
            return given
        return self.world.env_ids(ids)

    def episode_seeds(self, env_ids: Any) -> np.ndarray:
        """Reset seeds of the current episodes of ``env_ids``, stored on the tracker: the
        schedule's (common random numbers) where it set one, else a hash of ``(run
        seed, env_id, episode)``, so every episode can be replayed."""
        self.settle()
        ids = self._ids(env_ids)
        seeds = self._tracker.seed[ids]
        missing = seeds < 0
        if missing.any():
            seeds[missing] = self._seed_stream.seeds(
                ids[missing], self._tracker.episode[ids[missing]]
            )
            self._tracker.seed[ids] = seeds
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
        if reset_fn is not None and not callable(reset_fn):
            raise TypeError(
                f"`reset_fn` must be callable as reset_fn(env_ids, seeds), got "
                f"{type(reset_fn).__name__} {reset_fn!r}; pass the env's own reset function, "
                "or None"
            )
        usual = reset_fn is None and self.schedule is None
        if self.world.device is None:  # numpy: nothing prefetched, nothing to check after
            if not (usual and self._compiled(env, env_ids)):
                self._general_reset(env, env_ids, reset_fn)
            return
        self.settle()
        if usual and self._prefetched(env, env_ids):  # the values were on the device already
            return
        t = self._tracker
        before = t.seq
        # A reset of no ids (a loop that resets every step, often with none) begins no
        # episode unless its apply or reset_fn begins one by hand: the episode indices,
        # which the tables' rows were drawn for, tell.
        kept = self._prefetched.plan is not None and _no_ids(env_ids)
        episodes = t.episode.copy() if kept else None
        try:
            if not (usual and self._compiled(env, env_ids)):
                self._general_reset(env, env_ids, reset_fn)
        finally:
            self._after_slow_reset(usual, before, episodes)

    def _after_slow_reset(self, usual: bool, before: int, episodes: np.ndarray | None) -> None:
        """A reset that was not prefetched moved the tracker: the prefetch tables are
        made again, at once where this reset could have been prefetched (``usual``:
        :class:`PrefetchedReset` was asked), unless every env's episode index is still
        ``episodes`` (the tables were current when the tracker's seq was ``before``)."""
        p = self._prefetched
        if episodes is not None and np.array_equal(episodes, self._tracker.episode):
            p.keep(before)
        if usual and p.wanted:
            p.build()
        elif p.plan is not None and self._tracker.seq != p.seq:
            p.forget()

    def _general_reset(
        self,
        env: Any,
        env_ids: Any,
        reset_fn: Callable[[np.ndarray, np.ndarray], Any] | None,
    ) -> None:
        """:meth:`reset`, one step after another (the compiled reset did not apply)."""
        ids = self._ids(env_ids)  # checked once for every step
        if self.schedule is not None:
            self.schedule.check_bound()  # before the tracker moves: nothing half-done
        self._pre_reset(ids)
        if self.schedule is not None:
            self.schedule.assign(self._tracker, ids)
        seeds = None if reset_fn is None else self.episode_seeds(ids)
        self._draw_reset(env, ids, env_ids, begun=True)  # _pre_reset began every env
        if reset_fn is not None:
            reset_fn(ids, seeds)
        self._post_reset(ids, begun=True)

    def draw_interval(self, env: Any = None) -> None:
        """Draw the interval-mode variations whose per-env timer is due, and re-arm it."""
        interval = self.variations.enabled("interval")
        if not interval:  # nothing to draw: a prefetched reset's bookkeeping waits on
            return
        self.settle()
        t = self._tracker
        before = t.seq
        try:
            self._timers.draw_due(env, interval, self.world)
        finally:
            self._prefetched.keep(before)  # interval draws begin no episode

    def __enter__(self) -> VariationDriver:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        self.close(error=exc)


def _no_ids(env_ids: Any) -> bool:
    """Whether ``env_ids`` is an empty list of ids (a reset that begins no episode)."""
    shape = getattr(env_ids, "shape", None)
    if shape is None:
        return isinstance(env_ids, (list, tuple)) and not env_ids
    return tuple(shape) == (0,)
