"""The usual reset of a :class:`~varirec.recording.driver.VariationDriver` in one compiled
call (the ``fast`` extra), and the first-draw keys that its general path reads compiled.

A reset of a few dozen envs costs the general path some 45 Python and 30 numpy calls,
each paying for caches a simulation step has just evicted. :class:`CompiledReset` does
the tracker's pre-reset, the first-draw check, every value and the episodes' start in
one kernel (:func:`~varirec.recording.tracker_kernels.reset_draws`), then hands the
batch to the recorder and ``apply``. The start is stamped before ``apply`` runs (the
end of the old episode and the start of the new share a time); if the recorder or
``apply`` raises, :func:`~varirec.recording.tracker_kernels.unstart` takes it back:
the episodes are begun but not started, as the general path leaves them. A recorder
whose only reset work is the built-in outcome term's (``outcome_accumulators``) has it
done in the same kernel (:func:`~varirec.recording.tracker_kernels.recorded_reset`).
It applies to a numpy
env, a torch env on the CPU, or a GPU env's reset of a few envs
(:func:`~varirec.variations.batch.draws_on_host`: drawn on the host, sent in one copy)
whose enabled reset-mode variations are all of continuous kinds, with no
``before_sample`` hook, and (the driver checks) no schedule or
``reset_fn``; anything else takes the general path. ``tests/test_tracker_kernels.py``
runs both on the same resets: the same state, values and recorded rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from varirec import arrays
from varirec.arrays import cpu_view, is_tensor
from varirec.errors import RecorderStateError
from varirec.recording.episode_chunk import RECORDED_BLOCK, RECORDED_ROWS
from varirec.recording.episodes import EpisodeTracker, now_us
from varirec.sampling import samplers as samplers_module
from varirec.sampling.accel import kernels, kernels_of
from varirec.variations.batch import ResetBatch, draws_on_host
from varirec.variations.counters import DrawCounters
from varirec.variations.reset_group import ResetGroup
from varirec.variations.variation import epoch

__all__ = ["TRACKER_KERNELS", "CompiledReset", "first_draw_keys"]

TRACKER_KERNELS = "varirec.recording.tracker_kernels"
"""The tracker's compiled reset steps (:func:`varirec.sampling.accel.kernels_of`)."""

_INT64 = np.dtype(np.int64)
_KEYED_ONLY = np.empty((0, 0))
"""The kernels' ``out`` where the values were drawn already: no row, no column to draw."""


def torch_bool() -> Any:
    """torch.bool (imported where a tensor came in, so torch is there)."""
    import torch

    return torch.bool


def _none() -> None:
    """``outcome_accumulators`` of hooks that do not have it: the hooks run in Python."""


def first_draw_keys(
    tracker: EpisodeTracker, counters: DrawCounters, g: ResetGroup, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, bool, bool] | None:
    """What :func:`~varirec.variations.batch.draw_reset_batch` reads first (the episodes
    and design rows of ``ids``, whether one is in a design,
    :func:`~varirec.variations.counters.first_draws`) in one compiled call; None where
    the kernels are off (or an id is out of range): it reads them with numpy."""
    if g.rows is None or counters.cols is not g.rows or ids.dtype != np.int64:
        return None
    kt = kernels_of(TRACKER_KERNELS)
    if kt is None:
        return None
    keys = np.empty((2, len(ids)), np.int64)
    code = kt.first_draw_keys(ids, tracker._ints, counters.last, counters.pending, keys)
    if code < 0:
        return None
    if code & 2:
        counters.dirty = True
    return keys[0], keys[1], bool(code & 1), bool(code & 2)


class CompiledReset:
    """A driver's reset in one kernel call; calling it returns False, with nothing
    changed, where it does not apply (or an id is out of range: the general path
    names it).

    Args:
        driver: the :class:`~varirec.recording.driver.VariationDriver` it resets for.
    """

    __slots__ = ("counters", "driver", "last_batch", "plan", "tracker")

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.tracker: EpisodeTracker = driver.tracker
        self.counters: DrawCounters = driver._counters
        self.plan: tuple[Any, ...] | None = None  # see _prepare
        self.last_batch: ResetBatch | None = None  # the batch of the last run that drew

    def _prepare(self, kd: Any) -> tuple[Any, ...]:
        """What a call reads, worked out once per change of a variation, a listener or
        the kernels' switch: ``(epoch, listener edits, draw kernels, tracker kernels,
        group)``; the tracker kernels are None where the compiled reset does not apply."""
        g = self.driver._reset_group()
        edits = samplers_module.listener_edits
        kt = kernels_of(TRACKER_KERNELS) if kd is not None else None
        ok = g.rows is not None and self.counters.cols is g.rows and g.fusable()
        return (g.epoch, edits, kd, kt if ok else None, g)

    def current(self, kd: Any) -> tuple[Any, ...]:
        """The plan of :meth:`_prepare`, made again after a change (``kd``: the draw
        kernels, or None where they are off)."""
        f = self.plan
        if f is None or f[0] != epoch() or f[1] != samplers_module.listener_edits or f[2] is not kd:
            f = self.plan = self._prepare(kd)
        return f

    def __call__(self, env: Any, env_ids: Any) -> bool:
        kd = kernels()
        f = self.plan  # current(kd), inline: this runs at every reset
        if f is None or f[0] != epoch() or f[1] != samplers_module.listener_edits or f[2] is not kd:
            f = self.plan = self._prepare(kd)
        if f[3] is None:
            return False
        d = self.driver
        dev = d.world.device
        if dev is None:  # numpy ids as the env hands them: the kernels check their range
            if type(env_ids) is not np.ndarray or env_ids.dtype is not _INT64 or env_ids.ndim != 1:
                return False
            ids = given = env_ids
            self.tracker.check_unique(ids)
        elif arrays.off_host(dev):  # a GPU env: ids come to the host (its episode
            # counters are there), and a reset of a few envs is drawn there too, sent to
            # the device in one copy
            width = f[4].plan.width
            if (
                is_tensor(env_ids)
                and env_ids.ndim == 1
                and env_ids.dtype != torch_bool()
                and not draws_on_host(env_ids.shape[0], width)
            ):
                return False  # the general path, before the ids' copy to the host
            ids = d._ids(env_ids)
            if ids.dtype is not _INT64 or not draws_on_host(len(ids), width):
                return False
            given = d._env_ids(ids, env_ids)
        else:  # a torch env on the CPU draws on the host, as draw_reset
            ids = cpu_view(env_ids)  # the env's id tensor: the kernels check the range
            if ids is not None and ids.dtype is _INT64 and ids.ndim == 1:
                self.tracker.check_unique(ids)
                given = env_ids
            elif is_tensor(env_ids):  # a mask, other dtypes, a grad: checked and named
                ids = d._ids(env_ids)
                given = d._env_ids(ids, env_ids)
            else:
                return False
        return self.run(env, ids, given, f)

    def run(
        self,
        env: Any,
        ids: np.ndarray,
        given: Any,
        f: tuple[Any, ...],
        *,
        applied: tuple[np.ndarray, np.ndarray, int] | None = None,
        failed: BaseException | None = None,
    ) -> bool:
        """The reset of host ids ``ids`` (``given``: as ``apply`` takes them), with the
        plan ``f`` of :meth:`_prepare` (made before a change of the variations: the batch
        tells each variation's current sampler, where its listeners moved); False, with
        nothing changed, where an id is out of range.

        ``applied``: ``(values, episodes, time)`` of a reset applied already (a
        prefetched GPU reset, :mod:`~varirec.recording.prefetched_reset`): ``values``
        (``(len(ids), width)`` float64) were drawn for ``episodes`` of ``ids``, at
        ``time``; the kernel keys the reset and draws nothing, every draw must be a first
        draw of the episodes it begins, which must be those, and the listeners and the
        recorder see the values with that time; nothing is applied. ``failed``: the error
        its ``apply`` raised, raised again where ``apply`` would run, so that the reset is
        left as a failed one is."""
        _, _, _, kt, g = f
        d = self.driver
        plan, vs = g.plan, g.together
        c, t, hooks = self.counters, self.tracker, d.hooks
        keys = np.empty((2, len(ids)), np.int64)
        if applied is None:
            out, stamp = np.empty((len(ids), plan.width)), now_us()
            into = out
        else:
            out, drawn, stamp = applied
            into = _KEYED_ONLY  # no column: the kernel draws nothing
        fused = None if hooks is None else getattr(hooks, "outcome_accumulators", _none)()
        late: list[BaseException] = []  # the recorder's hand-over failed: raised at the end
        before = t.seq
        try:  # from the kernel on: an exception anywhere until apply returns takes the start back
            if fused is not None:  # the outcome term's gather and restart in the kernels too
                code = self._recorded(kt, ids, fused, keys, plan, into, late, len(vs), stamp)
            else:
                code = self._drawn(kt, ids, keys, plan, into, late, len(vs), stamp)
            if code < 0:
                return False
            if applied is not None and not code & 2:
                raise RecorderStateError(
                    f"envs {ids[:8].tolist()} had drawn in their new episode before its "
                    "prefetched reset (varirec's bookkeeping is out of step: please report "
                    "it); set VARIREC_NO_PREFETCH=1 to reset GPU envs without prefetching"
                )
            if applied is not None and not np.array_equal(keys[0], drawn):
                raise RecorderStateError(
                    f"a prefetched GPU reset of envs {ids[:8].tolist()} applied values drawn "
                    f"for episodes {drawn[:8].tolist()}, but begins episodes "
                    f"{keys[0][:8].tolist()} (varirec's bookkeeping is out of step: please "
                    "report it); set VARIREC_NO_PREFETCH=1 to reset GPU envs without prefetching"
                )
            if code & 2:  # the kernel drew every value and stamped the start at t.seq + 1
                c.dirty = True
                rows = keys[1]  # indexed: unpacking an array raises inside it, 3x slower
                batch = ResetBatch(
                    vs,
                    ids,
                    None,
                    None,
                    d.world,
                    matrix=out,
                    parts=(plan, out, out, np, rows, None),
                    lazy=(t.seq - len(vs) + 1, keys[0], rows, bool(code & 1)),  # draws' seqs
                    group=g if f[0] == epoch() else None,
                )
                stamped = t.seq + 1
                if applied is not None:
                    batch.time = stamp
                self.last_batch = batch
                if hooks is not None:
                    hooks.reset_drawn(batch)
                batch.notify_and_apply(env, given, apply=applied is None)
                if failed is not None:
                    raise failed
                if t.seq + 1 == stamped:
                    t.seq = stamped
                else:  # the hooks or apply took seqs (a draw): the start follows them
                    t.start_seq[ids] = t.next_seq()
                if fused is not None:
                    hooks = None  # the kernel restarted the outcome entries: the recorder's start
        except BaseException:
            self._take_back(kt, ids, before)
            raise
        if not code & 2:  # an env draws again in its episode: the draw counts per variation
            d._draw_reset(env, ids, given, begun=True)
            seq = t.seq + 1
            if fused is not None and kt.start_outcomes(
                ids, t._ints, t.started, t._clock, seq, stamp, t._scratch, *fused
            ) == 0:  # fmt: skip
                t.seq = seq
                hooks = None  # the recorder's start is done
            else:
                t.start(ids, begun=True)
        if d._timers:
            d._timers.arm(ids)
        if hooks is not None:
            hooks.started(ids)
        if late:
            raise late[0]
        return True

    def _take_back(self, kt: Any, ids: np.ndarray, before: int) -> None:
        """An exception between the kernel and the end of ``apply`` (an interrupt
        included): if the kernel started the episodes of ``ids`` (each started at a seq
        beyond ``before``, which only it stamps in this reset), :func:`unstart` takes the
        start back, as the general path leaves a failed reset: begun, not started."""
        t = self.tracker
        if t.started[ids].all() and (t.start_seq[ids] > before).all():
            kt.unstart(ids, t._ints, t.started, t._clock, t._scratch)

    def _drawn(
        self,
        kt: Any,
        ids: np.ndarray,
        keys: np.ndarray,
        plan: Any,
        out: np.ndarray,
        late: list[BaseException],
        nv: int,
        stamp: int,
    ) -> int:
        """The reset's draw kernel (:func:`~varirec.recording.tracker_kernels.reset_draws`),
        after a recorder took the finished episodes through its hooks (an error of its
        hand-over goes to ``late``, as in :meth:`_recorded`: the tracker ended them, and
        a reset cut short would never begin their next episodes); returns its code
        (-1: nothing changed). The tracker's seq then follows the end of the finished
        episodes, and (drawn and started in the kernel) the ``nv`` draws; the kernel
        stamped the start at the next seq, which the caller takes once ``apply`` is done."""
        d, t, c = self.driver, self.tracker, self.counters
        hooks = d.hooks
        if hooks is not None:  # the finished episodes, recorded before the tracker moves
            done = np.empty(len(ids), np.int64)
            m = kt.started_among(ids, t.started, done)
            if m < 0:
                return -1
            if m:
                d._record_finished(done[:m], now=stamp, late=late)
        ended = t.seq + 1 if hooks is None else t.seq  # the end's seq, as finish takes it
        start_seq = ended + nv + 1
        code = kt.reset_draws(ids, t._ints, t.started, t._clock, start_seq, stamp, c.last,
                              c.pending, keys, t._scratch, plan.bases, plan.comps,
                              plan.fused_form, out)  # fmt: skip
        if code >= 0:
            if hooks is None:
                t.episodes_finished += code >> 2
            t.seq = ended + nv if code & 2 else ended  # the start's seq: once apply is done
        return code

    def _recorded(
        self,
        kt: Any,
        ids: np.ndarray,
        fused: tuple[np.ndarray, np.ndarray],
        keys: np.ndarray,
        plan: Any,
        out: np.ndarray,
        late: list[BaseException],
        nv: int,
        stamp: int,
    ) -> int:
        """The kernel of a recorded reset
        (:func:`~varirec.recording.tracker_kernels.recorded_reset`), which also draws
        and, for first draws, starts the new episodes (``nv`` draws' seqs between the
        end and the start); the finished episodes' row goes to the recorder as one
        block (``RECORDED_BLOCK``). Returns the kernel's code (-1: nothing changed).

        The kernel has begun the new episodes when the recorder takes the row, so an
        error of its hand-over (a failed write, a held Ctrl-C or SIGTERM; the row is
        in its buffer by then) goes to ``late``, raised once the reset is whole: a
        reset cut short here would leave episodes begun but never drawn or started."""
        t, c, hooks = self.tracker, self.counters, self.driver.hooks
        pool = getattr(hooks, "blocks", None)
        nrows = len(RECORDED_ROWS)
        if pool is None:
            block = np.empty((nrows, len(ids)), np.int64)
        else:  # beside the last reset's: the hand-over joins them without a copy
            block = pool.take(nrows, len(ids))
        end_seq = t.seq + 1
        code = kt.recorded_reset(
            ids, t._ints, t.started, t._clock, end_seq, stamp, *fused, block,
            block.view(np.float64), c.last, c.pending, keys, t._scratch, plan.bases,
            plan.comps, plan.fused_form, out, nv,
        )  # fmt: skip
        if code < 0:
            return code
        m = code >> 2
        t.seq = (end_seq if m > 0 else end_seq - 1) + (nv if code & 2 else 0)  # and the start
        if m > 0:
            if pool is not None:
                pool.keep(nrows, m)
            t.episodes_finished += m
            row = {RECORDED_BLOCK: block[:, :m]}
            try:
                hooks.finished(row)
            except BaseException as exc:
                late.append(exc)
        return code
