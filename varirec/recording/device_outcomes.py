"""Outcome accumulators on the env's device (torch), for the outcome term.

Return, termination flags and success stay where the env computes them: a step adds
to them with device ops, and a pre-reset gathers the finished episodes' entries and
copies them to the host with ``non_blocking`` copies into pinned buffers (on CUDA).
Nothing here waits for the device: the copies complete in stream order, and the
writer thread waits on a CUDA event (:func:`varirec.arrays.record_event`) before it
reads them (:class:`~varirec.recording.episode_chunk.EpisodeChunk`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from varirec.arrays import host_async

__all__ = ["DeviceOutcomes"]


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


class DeviceOutcomes:
    """Per-env return, flags and success as torch tensors on ``device``."""

    def __init__(self, num_envs: int, device: Any) -> None:
        import torch

        self.torch = torch
        self.n = num_envs
        self.device = device
        self.ret = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.terminated = torch.zeros(num_envs, dtype=torch.bool, device=device)
        self.truncated = torch.zeros(num_envs, dtype=torch.bool, device=device)
        self.success = torch.full((num_envs,), float("nan"), dtype=torch.float64, device=device)

    def _tensor(self, name: str, x: Any) -> Any:
        if not hasattr(x, "device"):
            x = self.torch.as_tensor(np.asarray(x), device=self.device)
        return x

    def record_step(self, data: Mapping[str, Any], running: np.ndarray, everyone: bool) -> None:
        torch = self.torch
        mask = None if everyone else torch.as_tensor(running).to(self.device, non_blocking=True)
        if (reward := data.get("reward")) is not None:
            reward = self._tensor("reward", reward)
            _check("reward", reward, self.n, floats=True)
            self.ret += reward if mask is None else torch.where(mask, reward, 0.0)
        for name, buf in (("terminated", self.terminated), ("truncated", self.truncated)):
            if (flags := data.get(name)) is not None:
                flags = self._tensor(name, flags)
                _check(name, flags, self.n, floats=False)
                flags = flags.to(self.torch.bool)
                buf.copy_(flags if mask is None else self.torch.where(mask, flags, buf))
        if (success := data.get("success")) is not None:
            success = self._tensor("success", success)
            _check("success", success, self.n, floats=True)
            success = success.to(self.torch.float64)
            self.success.copy_(
                success if mask is None else self.torch.where(mask, success, self.success)
            )

    def record_pre_reset(self, env_ids: np.ndarray) -> dict[str, np.ndarray]:
        idx = self.torch.as_tensor(env_ids).to(self.device, non_blocking=True)
        out = {
            "return": host_async(self.ret[idx]),
            "success": host_async(self.success[idx]),
            "terminated": host_async(self.terminated[idx]),
            "truncated": host_async(self.truncated[idx]),
        }
        self.ret[idx] = 0.0
        self.terminated[idx] = False
        self.truncated[idx] = False
        self.success[idx] = float("nan")
        return out
