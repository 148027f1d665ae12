"""A GPU env's reset that waits for nothing: its values are on the device before it
comes, and its bookkeeping is done at the next step.

After the env's ``nonzero()`` the GPU idles until the host launches more work, so every
microsecond the host spends in a reset is added to the step. A reset that brings its
ids to the host, keys and draws the values there and sends them back costs two
transfers and their waits. Yet the values of an env's next reset are known long before
it: every draw of a reset is the first of a new episode, keyed by ``(env, episode + 1)``.

:class:`PrefetchedReset` keeps every env's next values in a ``(num_envs, width)`` table
on the device (and its float64 twin on the host). A reset of an int64 id tensor on the
env's CUDA device then takes its rows with one gather (of the ids clamped: varirec's
own gather cannot stop the device; an id out of range takes a row of NaN), hands them
to ``apply``, and records one CUDA event: nothing is copied. The reset's bookkeeping
(the tracker, the recorder's rows and draws, the listeners) runs at the next hook that
needs it, usually the next ``record_step``, while the GPU is busy with the step:
:meth:`PrefetchedReset.settle` copies the ids to the host on a side stream that waits
for that event only (not for the step queued since), runs the
:class:`~varirec.recording.compiled_reset.CompiledReset` kernel on them with the
reset's own time and the table's values (it keys the reset and draws nothing; the
episodes it begins must be those the rows were drawn for), and draws the next
episode's values of those envs into both tables. Every change of the tracker that the
driver did not make (a variation drawn by hand, a shared tracker) makes the tables
again before the next reset.

It applies where the compiled reset does (continuous kinds, no ``before_sample`` hook,
no schedule or ``reset_fn``), to a driver with no recorder or one whose only reset-time
term is the built-in outcome term (a term of yours with ``record_pre_reset`` reads the
env as the episode ended: those resets stay synchronous), with values in float32 or
float64, on CUDA. Everything else, and ``VARIREC_NO_PREFETCH=1``, takes the compiled
or general reset. What changes for you:

- listeners see a reset's draws at the next step rather than before ``apply`` (a
  listener that ``apply_cfg`` moves to a new sampler in between misses them);
- ``apply_batch`` gets a :class:`PendingBatch`: ``matrix``, ``values`` and ``value``
  are ready, in the env's dtype as ``apply`` takes them; reading ``ids``,
  ``contexts`` or ``host`` settles the reset first;
- the manager's ``tracker`` settles before it is read; an
  :class:`~varirec.recording.episodes.EpisodeTracker` held elsewhere shows the reset
  only once it is settled;
- an id out of range is named at the next step, not before the values are applied
  (your ``apply`` gets the ids as given, with NaN values for that id), and the reset
  and that step are not recorded; an id tensor changed in place before then is
  recorded as the reset read it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from varirec import arrays
from varirec.arrays import current_stream, device_async
from varirec.errors import RecorderStateError
from varirec.recording.episodes import now_us
from varirec.sampling.accel import kernels
from varirec.storage.shutdown import exit_held
from varirec.variations.batch import BatchKeys, column_views

__all__ = ["PREFETCH", "PendingBatch", "PrefetchedReset"]

_EVENTS = ("cuda", "cpu")
"""Device types whose copies a CUDA event orders (the CPU's are done at once; a test
forces the GPU code onto it). Elsewhere (MPS, XPU) resets are not prefetched."""

PREFETCH = os.environ.get("VARIREC_NO_PREFETCH", "").strip() in ("", "0")
"""Whether GPU resets are prefetched (read at each reset; ``VARIREC_NO_PREFETCH=1``
turns it off for the process)."""


def _rows(table: np.ndarray) -> np.ndarray:
    """A C-contiguous 2-d array as a 1-d array of its rows (a view): numpy scatters whole
    rows at ids in half the time of ``table[ids] = values`` (on the settle's path, with
    thousands of rows a step)."""
    return table.view(np.dtype((np.void, table.shape[1] * table.itemsize))).reshape(len(table))


class _Pending:
    """A reset applied on the device whose bookkeeping waits: its ids as the gather took
    them (``rows``, varirec's own tensor), the CUDA stream it ran on (None off CUDA; the
    ids' copy waits for the gather's event there), its time, the plan it drew with, its
    batch; once settled, its host ids and the tracker's seq before and after."""

    __slots__ = ("batch", "before", "env", "ids", "plan", "rows", "stamped", "stream", "time")

    def __init__(self, rows: Any, stream: Any, time: int, plan: tuple, env: Any) -> None:
        self.rows = rows
        self.stream = stream
        self.time = time
        self.plan = plan
        self.env = env
        self.batch: Any = None  # the host ResetBatch, once settled
        self.ids: np.ndarray | None = None
        self.before = self.stamped = -1


class PendingBatch(BatchKeys):
    """What ``apply_batch`` gets at a prefetched reset: :attr:`matrix` (``(k, width)`` on
    the env's device, in its dtype) and each variation's values (views of it) are ready;
    anything else (``ids``, ``contexts``, ``host``, ...) settles the reset first and is
    read from its host :class:`~varirec.variations.batch.ResetBatch`."""

    __slots__ = ("_owner", "_pending", "_views", "group", "matrix", "variations", "world")

    def __init__(self, owner: PrefetchedReset, pending: _Pending, matrix: Any, group: Any) -> None:
        self._owner = owner
        self._pending = pending
        self.matrix = matrix
        self.group = group
        self.variations = group.together
        self.world = owner.driver.world
        self._views: list[Any] | None = None

    @property
    def values(self) -> list[Any]:
        """Each variation's columns of :attr:`matrix`, as a reset drawn on the host hands
        them to ``apply`` (:func:`~varirec.variations.batch.column_views`)."""
        if self._views is None:
            self._views = column_views(self.group.plan, self.matrix)
        return self._views

    def value(self, key: str) -> Any:
        """The values of variation ``key`` on the env's device."""
        return self.values[self._index(key)]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        p = self._pending
        if p.batch is None and self._owner.pending is p:
            self._owner.settle()
        if p.batch is None:
            raise RecorderStateError(
                f"this reset's bookkeeping failed (the error was raised where it was "
                f"settled), so its batch has no {name!r}"
            )
        return getattr(p.batch, name)


class PrefetchedReset:
    """A driver's GPU resets from a table of every env's next values; calling it returns
    False, with nothing changed, where it does not apply.

    Args:
        driver: the :class:`~varirec.recording.driver.VariationDriver` it resets for.
    """

    __slots__ = (
        "_events", "_pins", "_side", "_where", "device", "driver", "episode", "host", "pending",
        "plan", "seq", "wanted", "written",
    )  # fmt: skip

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.plan: tuple[Any, ...] | None = None  # the compiled reset's plan the tables hold
        self.host: np.ndarray | None = None  # (num_envs, width) float64
        self.episode: np.ndarray | None = None  # the episode each env's row was drawn for
        self.device: Any = None  # the same values on the env's device, in its dtype
        self.pending: _Pending | None = None
        self.wanted = False  # the last reset could have been prefetched, had the tables been
        self.seq = -1  # the tracker's seq the tables are current with (see _applies)
        self.written: tuple[Any, Any] | None = None  # (stream, event) of the last table write
        self._events: list[Any] = []  # CUDA events: the gather, the tables' write, a send
        self._side: Any = None  # the CUDA stream that copies the ids to the host
        self._pins: dict[str, Any] = {}  # pinned host buffers, kept (see _pinned)
        self._where: tuple[Any, Any] = (None, None)  # (device, _takes(device))

    def _applies(self, env_ids: Any) -> tuple[Any, ...] | None:
        """The compiled reset's plan where this reset can be prefetched, else None
        (``wanted`` says whether only the tables were missing or out of date)."""
        self.wanted = False
        d = self.driver
        dev = d.world.device
        if dev is not self._where[0]:  # what holds for every reset on this device, once
            self._where = (dev, self._takes(dev))
        kinds = self._where[1]
        if (
            kinds is None
            or not PREFETCH
            or type(env_ids) is not kinds[0]  # a subclass takes the compiled reset
            or env_ids.dtype is not kinds[1]
            or env_ids.ndim != 1
            or env_ids.requires_grad
            or env_ids.shape[0] == 0
            or env_ids.device != dev
        ):
            return None
        hooks = d.hooks
        if hooks is not None and not getattr(hooks, "defers_resets", bool)():
            return None
        f = d._compiled.current(kernels())
        if f[3] is None:
            return None
        # Every change of the tracker takes a seq: one the driver did not account for
        # (a variation drawn by hand, a shared tracker moved elsewhere) may have begun
        # an episode, so the tables are made again.
        if f is not self.plan or d._tracker.seq != self.seq:
            self.wanted = True
            return None
        return f

    def _takes(self, dev: Any) -> tuple[Any, Any] | None:
        """``(torch.Tensor, torch.int64)`` where resets on ``dev`` can be prefetched (a
        device off the host whose copies a CUDA event orders, float values the tables
        can hold), else None."""
        if dev is None or not arrays.off_host(dev) or dev.type not in _EVENTS:
            return None
        if self.driver.world.host_float() is None:  # the tables hold host-cast values
            return None
        torch = arrays._torch()
        return torch.Tensor, torch.int64

    def __call__(self, env: Any, env_ids: Any) -> bool:
        f = self._applies(env_ids)
        if f is None:
            return False
        d = self.driver
        stamp = now_us()
        dev = d.world.device
        stream = current_stream(dev) if dev.type == "cuda" else None
        w = self.written
        if w is not None and w[0] is not stream:  # the table was written on another stream
            stream.wait_event(w[1])
        # Clamped to [-1, n], a tensor of varirec's own that the env cannot change before
        # the settle reads it: an id out of range takes the table's last row (n, NaN;
        # -1 counts from the end), so varirec's gather cannot stop the device, and the
        # settle finds it there.
        n = d.num_envs
        rows = env_ids.clamp(-1, n)
        matrix = self.device[rows]
        # The ids go to the host at settle, on a side stream, once this event passed:
        # here, the one launch more than the gather.
        if stream is not None:
            self._event(0).record(stream)
        pending = _Pending(rows, stream, stamp, f, env)
        self.pending = pending
        d._tracker.before_read = self.settle  # a variation drawn by hand settles it first
        try:
            g = f[4]
            batch = PendingBatch(self, pending, matrix, g)
            if g.appliers:
                values = batch.values
                for j, fn in g.appliers:
                    fn(env, env_ids, values[j])
            if g.apply_batch is not None:
                g.apply_batch(env, env_ids, batch)
        except BaseException as exc:  # as a failed reset is left: begun, not started
            if self.pending is pending:
                self.settle(failed=exc)
            elif pending.ids is not None:  # settled inside apply (it read batch.ids)
                self._take_back(pending)
            raise
        return True

    def _take_back(self, p: _Pending) -> None:
        """Take back the start of a reset settled before its ``apply`` raised."""
        t = self.driver._tracker
        self.driver._compiled._take_back(p.plan[3], p.ids, p.before)
        if t.seq == p.stamped:  # the start's seq, taken only once apply returns
            t.seq -= 1
        self.seq = t.seq

    def settle(self, *, failed: BaseException | None = None) -> None:
        """The bookkeeping of the pending reset, now: its ids come to the host (a wait
        for their copy only), the compiled reset runs on them with the values the table
        held (tracker, recorder, listeners; nothing drawn or applied), which must have
        been drawn for the episodes it begins; then the next values of those envs go
        into the tables. ``failed``: the error its ``apply`` raised; the episodes stay
        begun but not started, as the compiled reset leaves them."""
        if self.pending is None:
            return
        # A Ctrl-C or SIGTERM waits for the end, even where the settle hands rows to the
        # writer (closing: no early raise there): a reset is settled whole.
        with exit_held(closing=True):
            self._settle(failed)

    def drop(self) -> None:
        """Give up the pending reset (its settle fails for good, as after a device
        fault: the close must still close the run) and the tables."""
        self.pending = self.plan = None
        self.driver._tracker.before_read = None

    def _settle(self, failed: BaseException | None) -> None:
        p = self.pending
        assert p is not None
        d = self.driver
        n = d.num_envs
        ids = self._host_ids(p)
        if ids.size and ids.view(np.uint64).max() >= n:  # -1 or n: an id out of range
            self.drop()
            at = np.flatnonzero(ids.view(np.uint64) >= n)
            raise ValueError(
                f"`env_ids` must be in [0, {n}), got {len(at)} id(s) outside it (< 0 or "
                f">= {n}) at position(s) {at[:5].tolist()} of a GPU reset of {len(ids)} envs, "
                "checked at the next step: your apply got NaN for them (a negative id "
                "counts from the end in torch, so your scatter may have written NaN into a "
                "valid env), the reset is not recorded, nor is the call that raised this; "
                "pass the ids of the envs that finished, e.g. done.nonzero().squeeze(-1)"
            )
        try:
            d._tracker.check_unique(ids)
        except ValueError as exc:
            self.drop()
            raise ValueError(
                f"{exc} (a GPU reset of {len(ids)} envs, checked at the next step: the "
                "reset is not recorded, nor is the call that raised this)"
            ) from None
        self.pending = None  # from here on, the reset is settled or the tables dropped
        d._tracker.before_read = None
        f = p.plan
        plan = f[4].plan
        t = d._tracker
        if p.stream is not None:
            stream = current_stream(d.world.device)
            if stream is not p.stream:  # the env moved: rows is read on this stream too
                p.rows.record_stream(stream)
        d.world.sent(ids, p.rows)  # the outcome terms' gathers take these ids as they are
        p.ids, p.before = ids, t.seq
        compiled = d._compiled
        try:
            # The values applied, as the tables held them: the kernel checks that they
            # were drawn for the episodes it begins (the draws are keyed by them).
            applied = (self.host.take(ids, axis=0), self.episode[ids], p.time)
            ran = compiled.run(p.env, ids, None, f, applied=applied, failed=failed)
        except BaseException as exc:
            if exc is not failed:
                self.plan = None
                raise
            ran = True
        if not ran:
            self.plan = None
            raise RecorderStateError(
                f"a prefetched GPU reset of envs {ids[:8].tolist()} could not be settled; "
                "set VARIREC_NO_PREFETCH=1 to reset GPU envs without prefetching"
            )
        p.batch = compiled.last_batch
        p.stamped = t.seq
        self._refill(ids, p.rows, plan)
        self.seq = t.seq

    def _host_ids(self, p: _Pending) -> np.ndarray:
        """The reset's ids on the host, as its gather took them: on CUDA, copied on a
        side stream once the gather's event passed, so the copy need not wait for the
        step queued since (the wait is for this copy only)."""
        if p.stream is None:  # the CPU (a test runs the GPU code there): nothing queued
            return np.array(p.rows.numpy())
        torch = arrays._torch()
        cuda = torch.cuda
        side = self._side
        if side is None:  # high priority: not one of the streams the env may take
            side = self._side = cuda.Stream(p.rows.device, priority=-1)
        side.wait_event(self._event(0))  # recorded after the gather, not since
        host = self._pinned("ids", p.rows.shape[0], (), torch.int64)
        if cuda.current_device() == side.device_index:
            # What torch.cuda.stream(side) does, without its four current_stream calls
            # (~10 us each on an H100 machine's host): the copy is the one launch there.
            back = current_stream(p.rows.device)
            cuda.set_stream(side)
            try:
                host.copy_(p.rows, non_blocking=True)
            finally:
                cuda.set_stream(back)
        else:  # the env's device is not the current one: the context restores both
            with cuda.stream(side):
                host.copy_(p.rows, non_blocking=True)
        side.synchronize()  # the side stream holds this copy and its wait only
        return np.array(host.numpy())  # a copy: the buffer serves the next settle

    def _refill(self, ids: np.ndarray, rows: Any, plan: Any) -> None:
        """The next episode's values of ``ids`` (``rows``: the same ids on the device) into
        both tables, sent without a wait; the device's first, the host's last: the host
        twin is what a settle reads, so it never holds a value the device does not.
        Anything raised drops the tables."""
        try:
            t = self.driver._tracker
            episode = t.episode[ids] + 1
            _, values = plan.draw_columns(ids, episode, None, np)
            # In inference mode too: a normal tensor may be written in place there.
            self.device.index_copy_(0, rows, self._sent(values))
            self._wrote()
            _rows(self.host)[ids] = _rows(np.ascontiguousarray(values, self.host.dtype))
            self.episode[ids] = episode
        except BaseException:
            self.plan = None
            raise

    def _sent(self, values: np.ndarray) -> Any:
        """``values`` on the env's device in the table's dtype, without a wait (as
        :func:`~varirec.arrays.device_async` sends them): on CUDA through a pinned
        buffer kept for the refills once its last copy has run (event 2), else a new
        one. In a loop the step leaves the host's caches cold, and a new pinned buffer
        from torch's cache then took ~19 us, the kept one's reuse nothing. The last
        copy precedes the next reset's gather (on its stream, or through the tables'
        write event), which the settle before this waited for: the kept buffer is free
        here unless the tables were made again on another stream since."""
        world = self.driver.world
        dev = world.device
        done = self._event(2) if dev.type == "cuda" else None
        if done is None or not done.query():
            return device_async(values, dev, world.host_float())
        stage = self._pinned("values", len(values), values.shape[1:], self.device.dtype)
        stage.numpy()[...] = values  # the cast as numpy rounds, as device_async's
        sent = stage.to(dev, non_blocking=True)
        done.record(current_stream(dev))
        return sent

    def _pinned(self, name: str, rows: int, tail: tuple[int, ...], dtype: Any) -> Any:
        """The first ``rows`` rows of pinned host buffer ``name`` (``(capacity, *tail)``
        of ``dtype``), made again larger where it is short: a power of two of rows, at
        least 64. The caller sees to it that no copy reads it still."""
        buf = self._pins.get(name)
        if buf is None or buf.shape[0] < rows or buf.shape[1:] != tail or buf.dtype != dtype:
            torch = arrays._torch()
            capacity = 1 << max(rows - 1, 63).bit_length()
            with torch.inference_mode(False):  # written outside a rollout's inference mode too
                buf = torch.empty((capacity, *tail), dtype=dtype, pin_memory=True)
            self._pins[name] = buf
        return buf[:rows]

    def _wrote(self) -> None:
        """Where the tables were last written on a CUDA device: its stream and an event."""
        dev = self.driver.world.device
        if dev.type == "cuda":
            stream = current_stream(dev)
            event = self._event(1)
            event.record(stream)
            self.written = (stream, event)

    def _event(self, which: int) -> Any:
        """CUDA event ``which`` (0: a reset's gather, 1: the tables' last write, 2: the
        last send from the kept pinned buffer), made once and recorded again: a reset
        is settled before the next one records, and the buffer is written only once
        event 2 passed, so none is waited on after it is recorded again."""
        if not self._events:
            cuda = arrays._torch().cuda
            self._events = [cuda.Event(), cuda.Event(), cuda.Event()]
        return self._events[which]

    def build(self) -> None:
        """Both tables for every env, from the tracker as it is (after a reset that was
        not prefetched, which moved it)."""
        self.wanted = False
        self.plan = None
        d = self.driver
        f = d._compiled.current(kernels())
        if f[3] is None:
            return
        t = d._tracker
        n = d.num_envs
        ids = np.arange(n, dtype=np.int64)
        _, values = f[4].plan.draw_columns(ids, t.episode + 1, None, np)
        rows = np.empty((n + 1, values.shape[1]))
        rows[:n] = values
        rows[n] = np.nan  # where a reset's ids out of range take their values
        torch = arrays._torch()
        if self.written is not None:  # a refill may still write the old table there
            self.device.record_stream(self.written[0])
        with torch.inference_mode(False):
            self.device = device_async(rows, d.world.device, d.world.host_float())
        self._wrote()
        self.host = np.array(values)
        self.episode = t.episode + 1
        self.plan, self.seq = f, t.seq

    def forget(self) -> None:
        """The tracker moved outside the prefetched resets: build the tables again
        before the next one."""
        self.plan = None

    def keep(self, before: int) -> None:
        """Draws that took seqs but moved no episode (interval draws) were made since the
        tracker's seq was ``before``: the tables stay current if they were then."""
        if self.seq == before:
            self.seq = self.driver._tracker.seq
