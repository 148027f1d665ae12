"""Outcome accumulators for the outcome term: numpy on the host, torch on a device.

Return, termination flags and success stay where the env computes them: a step adds
to them with device ops, and a pre-reset gathers the finished episodes' rows into a
ring on the device, in one op; they leave it in one ``non_blocking`` copy into a
pinned buffer per hand-over of the episodes (:meth:`DeviceOutcomes.copy_out`), not one
per reset. Nothing here waits for the device: the copies complete in stream order, and
the writer thread waits on a CUDA event (:func:`varirec.arrays.record_event`) before
it reads them (:class:`~varirec.recording.episode_chunk.EpisodeChunk`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from varirec import arrays
from varirec.arrays import ArrayWorld, host_async, pinned, to_host

__all__ = ["FLAG_ROWS", "OUTCOMES_BLOCK", "VALUE_ROWS", "DeviceOutcomes"]

VALUE_ROWS = ("return", "success")
"""The episode columns of the float accumulator's rows, in order."""
FLAG_ROWS = ("terminated", "truncated")
"""The episode columns of the flags' rows, in order."""
OUTCOMES_BLOCK = "#outcomes"
"""Key of a device's pre-reset block: float64 rows :data:`VALUE_ROWS` then
:data:`FLAG_ROWS` (0 or 1), one column per episode, a view of the host rows that the
copy from the device fills (the pre-resets of one host buffer lie side by side there, so
a hand-over joins them without a copy: see
:class:`~varirec.recording.episode_chunk.EpisodeChunk`)."""


def _check(name: str, x: Any, n: int, floats: bool) -> None:
    if tuple(x.shape) != (n,):
        hint = f"; pass {name}.reshape(-1)" if x.numel() == n else "; pass one value per env"
        raise ValueError(
            f"record_step `{name}` must have shape ({n},) (one value per env), got shape "
            f"{tuple(x.shape)} (a tensor on {x.device}){hint}"
        )
    if x.dtype.is_complex or (x.dtype.is_floating_point and not floats):
        raise TypeError(
            f"record_step `{name}` must hold {'numbers' if floats else 'bools'}, got a "
            f"{x.dtype} tensor on {x.device}; pass {name}.bool()"
            if not floats
            else f"record_step `{name}` must hold real numbers, got {x.dtype}; pass {name}.real"
        )


_FILL = (0.0, float("nan"))  # a new episode: return 0, success unknown (and no flags)


class DeviceOutcomes:
    """Per-env return and success in one ``(2, num_envs)`` float64 accumulator, the
    termination flags in one ``(2, num_envs)`` bool array: numpy on the host (numpy
    envs, and torch envs on the CPU, whose tensors are read as numpy without a copy: a
    torch op on the CPU costs several numpy ones); on a CUDA device one ``(num_envs,
    4)`` float64 tensor (``flags`` its last two columns, 0/1), since there every op
    costs a launch. A
    pre-reset gathers the finished episodes' columns; a start resets them.

    A step adds to every env's entries, running or not (no mask to read or to copy
    to the device): an env's entries are reset when its episode starts, so what it
    got while stopped is dropped, and a finished episode is read before that.

    Args:
        num_envs: envs in the batch.
        device: the env's device (None: numpy).
        start: ``(acc, flags)`` accumulated so far (numpy), carried over.
        in_torch: accumulate with torch ops (default: on a device other than the CPU).
        world: the env's :class:`~varirec.arrays.ArrayWorld` (default: one of ``device``).
        ring: finished rows the device ring holds before it is copied out (default
            ``num_envs``; a recorder gives a hand-over's rows and one reset's, so that
            a hand-over's rows lie in one host buffer and are joined without a copy).
    """

    def __init__(
        self,
        num_envs: int,
        device: Any = None,
        start: tuple[Any, Any] | None = None,
        *,
        in_torch: bool | None = None,
        world: ArrayWorld | None = None,
        ring: int | None = None,
    ) -> None:
        self.n = num_envs
        self._cap = max(num_envs if ring is None else int(ring), 256)
        self.shape = (num_envs,)  # a step's arrays
        self.device = device
        self.world = world if world is not None else ArrayWorld(device)
        """The env's world: it sends ids to the device (see ArrayWorld.on_device)."""
        self.torch: Any = None
        acc = np.empty((2, num_envs))
        acc[:] = np.array(_FILL)[:, None]
        flags = np.zeros((2, num_envs), bool)
        if start is not None:
            acc[:], flags[:] = start
        if in_torch is None:
            in_torch = arrays.off_host(device)
        if in_torch:
            import torch

            self.torch = torch
            with torch.inference_mode(False):  # normal tensors, made in a rollout or not
                self._on_device_init(acc, flags, device, num_envs)
        else:
            self.acc, self.flags = acc, flags
            self._rows = (self.acc[0], self.flags[0], self.flags[1], self.acc[1])
        self.host = None if self.torch is not None else (acc, flags)
        """``(acc, flags)`` where they are numpy (a compiled reset gathers them), else None."""

    def _on_device_init(
        self, acc: np.ndarray, flags: np.ndarray, device: Any, num_envs: int
    ) -> None:
        """The accumulator and the ring on ``device`` (normal tensors: an inference
        tensor could not be updated outside ``torch.inference_mode``)."""
        torch = self.torch
        # One (num_envs, 4) float64 tensor: return, success, then the flags as 0/1
        # (the writer turns them into bools); a pre-reset gathers an env's row in one
        # op, a restart sets it in one.
        rows = np.ascontiguousarray(np.concatenate([acc, flags]).T)
        self.acc: Any = torch.as_tensor(rows, device=device)
        self.flags: Any = self.acc[:, 2:]
        fill = (*_FILL, 0.0, 0.0)
        self._fill: Any = torch.tensor(fill, dtype=torch.float64, device=device)
        self._rows = (self.acc[:, 0], self.acc[:, 2], self.acc[:, 3], self.acc[:, 1])
        # Finished rows wait on the device (gathered into `_ring`) and leave it in one
        # copy per hand-over of the episodes (copy_out): one launch per pre-reset.
        self._ring: Any = torch.empty((self._cap, 4), dtype=torch.float64, device=device)
        self._used = 0
        self._new_host_rows()

    def _new_host_rows(self) -> None:
        """A host buffer for the ring's rows (pinned where CUDA is), and its numpy view
        (one, so that the pre-resets' rows are views of one array): a new one for each
        copy, since the writer thread may still be reading the last."""
        with self.torch.inference_mode(False):
            out = self.torch.empty((self._cap, 4), dtype=self.torch.float64, pin_memory=pinned())
        self._out: Any = out
        self._out_rows: np.ndarray = out.numpy()

    def local(self, name: str, x: Any, floats: bool) -> Any:
        """A tensor handed in (checked), or a host array (checked by the caller), as the
        accumulator takes it: numpy on the host, a tensor on the device."""
        if hasattr(x, "device") and hasattr(x, "numel"):  # a torch tensor
            _check(name, x, self.n, floats)
            return x if self.torch is not None else to_host(x, name)
        if self.torch is not None:
            x = self.torch.as_tensor(np.asarray(x), device=self.device)
            _check(name, x, self.n, floats)
        return x

    def record_step(self, reward: Any, terminated: Any, truncated: Any, success: Any) -> None:
        """Add ``reward`` to the returns; keep the latest flags and success (None: not
        given this step)."""
        ret, term, trunc, succ = self._rows
        if self.torch is None:
            if reward is not None:
                np.add(ret, reward, out=ret)  # a strided reward is read in place
            if terminated is not None:
                np.copyto(term, terminated, casting="unsafe")
            if truncated is not None:
                np.copyto(trunc, truncated, casting="unsafe")
            if success is not None:
                np.copyto(succ, success, casting="unsafe")
            return
        if reward is not None:
            ret += reward
        for buf, flags in ((term, terminated), (trunc, truncated)):
            if flags is not None:
                # As given (a bool is 0/1): refusing an integer flag other than 0 or 1
                # here would cost a sync a step; the writer thread logs one and records
                # it as set (episode_chunk._flag_rows).
                buf.copy_(flags)
        if success is not None:
            succ.copy_(success)

    def record_pre_reset(self, env_ids: np.ndarray) -> dict[str, np.ndarray]:
        """The finished episodes' columns (host numpy; from a device, arriving
        asynchronously, as one :data:`OUTCOMES_BLOCK`)."""
        if self.torch is not None:  # columns of the host buffer that copy_out fills
            return {OUTCOMES_BLOCK: self._gather(env_ids).T}
        # take, not [:, ids]: a third of the cost
        values, flags = self.acc.take(env_ids, axis=1), self.flags.take(env_ids, axis=1)
        return {
            VALUE_ROWS[0]: values[0],
            VALUE_ROWS[1]: values[1],
            FLAG_ROWS[0]: flags[0],
            FLAG_ROWS[1]: flags[1],
        }

    def restart(self, env_ids: np.ndarray) -> None:
        """New episodes of ``env_ids`` started: return 0, success unknown, no flags."""
        if self.torch is None:
            ret, term, trunc, succ = self._rows
            ret.put(env_ids, _FILL[0])
            succ.put(env_ids, _FILL[1])
            term.put(env_ids, False)
            trunc.put(env_ids, False)
            return
        self.acc[self._on_device(env_ids)] = self._fill

    def _gather(self, env_ids: np.ndarray) -> np.ndarray:
        """The rows of ``env_ids`` gathered into the ring (one op); their place in the
        host buffer, filled by :meth:`copy_out` (a pre-reset larger than the ring is
        copied at once)."""
        m = len(env_ids)
        idx = self._on_device(env_ids)
        if m > self._cap:
            return host_async(self.acc[idx])
        if self._used + m > self._cap:
            self.copy_out()
        a = self._used
        self.torch.index_select(self.acc, 0, idx, out=self._ring[a : a + m])
        self._used = a + m
        return self._out_rows[a : a + m]

    def copy_out(self) -> None:
        """Start the copy of the gathered rows to their host buffer, without a wait: the
        recorder calls it before it records the episodes' hand-over event (the writer
        reads them after that event); the next rows go to a new host buffer."""
        if self.torch is None or self._used == 0:
            return
        used = self._used
        # In this order: an interrupt anywhere leaves the rows to copy again (at close).
        self._out[:used].copy_(self._ring[:used], non_blocking=True)
        self._new_host_rows()
        self._used = 0

    def _on_device(self, env_ids: np.ndarray) -> Any:
        """``env_ids`` as an index tensor on the device (the env's own where it handed
        these ids to the reset: usually nothing to send)."""
        return self.world.on_device(env_ids)
