"""Where varirec's host time goes inside ``bench_gpu_loop.py``'s loop, call by call.

Each listed varirec function is wrapped with a timer while one null and one recording
loop run (the wrappers cost ~0.3 us a call and are removed afterwards); the table gives
each one's inclusive host time per step and its calls per step. Nested calls count in
their callers too, so the rows do not add up. On CUDA it then times single torch calls
on this machine's host (a launch, a gather, pinned copies), whose cost sets what the
reset can cost: on an H100 machine they took 7-25 us each, varying by machine.

Run: ``python benchmarks/gpu_breakdown.py`` (``--envs 4096 65536``, ``--steps 200``; CUDA
where present, ~40 s on an H100; the CPU too, where the GPU-only calls do not occur).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import pstats
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bench_gpu_loop as loop
import numpy as np
import torch

from varirec import arrays
from varirec.recording import compiled_reset, device_outcomes, manager, prefetched_reset, recorder
from varirec.sampling.accel import kernels_of
from varirec.variations import batch

WRAPPED: list[tuple[Any, str]] = [
    (manager.RecorderManager, "reset"),
    (manager.RecorderManager, "record_step"),
    (manager.RecorderManager, "record_post_step"),
    (arrays.ArrayWorld, "ids"),  # the ids' copy to the host
    (arrays.ArrayWorld, "values"),  # the values' copy to the env
    (arrays.ArrayWorld, "on_device"),
    (arrays, "device_async"),
    (compiled_reset.CompiledReset, "_drawn"),
    (prefetched_reset.PrefetchedReset, "__call__"),  # a reset from the prefetch table
    (prefetched_reset.PrefetchedReset, "settle"),  # its bookkeeping, at the next step
    (prefetched_reset.PrefetchedReset, "_refill"),
    (prefetched_reset.PrefetchedReset, "_host_ids"),  # the ids' copy, on a side stream
    *(
        (device_outcomes.DeviceOutcomes, name)
        for name in ("record_pre_reset", "restart", "record_step", "copy_out")
    ),
    (batch.ResetBatch, "notify_and_apply"),
    (recorder.VariationRecorder, "_record_block"),
]
"""(owner, attribute) of each function timed, labelled ``Owner.attribute``."""


@contextlib.contextmanager
def timed(total: dict[str, float], calls: dict[str, int]) -> Iterator[None]:
    """Every function of :data:`WRAPPED` (and the tracker's compiled reset kernels, where
    numba is there) adds its seconds and calls to ``total`` and ``calls`` until exit."""
    targets = list(WRAPPED)
    kt = kernels_of(compiled_reset.TRACKER_KERNELS)
    if kt is not None:
        targets += [(kt, "reset_draws"), (kt, "started_among")]
    saved = [(owner, name, owner.__dict__[name]) for owner, name in targets]

    def wrap(fn: Any, label: str) -> Any:
        @functools.wraps(fn)
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                total[label] += time.perf_counter() - start
                calls[label] += 1

        return timed_call

    try:
        for owner, name in targets:
            label = f"{owner.__name__.rsplit('.', 1)[-1]}.{name}"  # a class, or a module
            setattr(owner, name, wrap(getattr(owner, name), label))
        yield
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)


def breakdown(num_envs: int, steps: int, device: torch.device) -> dict[str, dict[str, Any]]:
    """For the null and the recording loop: the loop's per-step figures (``run_loop``)
    and, per timed function, ``(us per step, calls per step)``."""
    mat = 1024 if device.type == "cuda" else 128
    reps, _ = loop._calibrate(num_envs, 20, mat, 2.0, device)
    out: dict[str, dict[str, Any]] = {}
    for mode in ("null", "recording"):
        with tempfile.TemporaryDirectory() as tmp:
            warm = loop.TorchEnv(num_envs, 20, reps, mat, device)
            loop.run_loop(mode, warm, 30, 5, True, Path(tmp) / "warm")
            total: dict[str, float] = defaultdict(float)
            calls: dict[str, int] = defaultdict(int)
            env = loop.TorchEnv(num_envs, 20, reps, mat, device)
            with timed(total, calls):
                stats = loop.run_loop(mode, env, steps, 0, True, Path(tmp) / "run")
        rows = {k: (total[k] / steps * 1e6, calls[k] / steps) for k in total}
        out[mode] = {"loop": stats, "calls": rows}
    return out


def profiled(num_envs: int, steps: int, device: torch.device, top: int) -> None:
    """Print, for the null and the recording loop run under :mod:`cProfile`, the ``top``
    functions by own host time per step (torch's calls among them: what each launch
    costs where varirec makes it). cProfile adds ~1 us a Python call, so the own times
    of small Python functions read high; the main thread's only."""
    mat = 1024 if device.type == "cuda" else 128
    reps, _ = loop._calibrate(num_envs, 20, mat, 2.0, device)
    for mode in ("null", "recording"):
        with tempfile.TemporaryDirectory() as tmp:
            warm = loop.TorchEnv(num_envs, 20, reps, mat, device)
            loop.run_loop(mode, warm, 30, 5, True, Path(tmp) / "warm")
            env = loop.TorchEnv(num_envs, 20, reps, mat, device)
            prof = cProfile.Profile()
            window = (prof.enable, prof.disable)
            stats = loop.run_loop(mode, env, steps, 5, True, Path(tmp) / "run", window)
        print(
            f"\n{num_envs} envs, {mode}, under cProfile: {stats['wall'] * 1e3:.3f} ms/step; "
            f"own host time per step, by function"
        )
        rows = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
        ranked = sorted(rows.items(), key=lambda r: -r[1][2])[:top]
        for (file, line, name), (_, calls, own, cum, _) in ranked:
            where = f"{Path(file).name}:{line} {name}" if line else name
            print(
                f"  {own / steps * 1e6:8.1f} us own {cum / steps * 1e6:8.1f} us cum "
                f"{calls / steps:6.2f}/step  {where[:90]}"
            )


def single_calls(device: torch.device) -> dict[str, float]:
    """Host microseconds of single torch calls on ``device`` (after a warm-up)."""
    x = torch.zeros(1000, device=device)
    idx = torch.arange(100, device=device)
    host = np.zeros(1000)
    event, stream = torch.cuda.Event(), arrays.current_stream(device)
    cases = {
        "x.add_(1)": lambda: x.add_(1),
        "x[idx] (a gather)": lambda: x[idx],
        "x[idx] = 0 (index_put_)": lambda: x.__setitem__(idx, 0.0),
        "torch.empty(1000, pin_memory=True)": lambda: torch.empty(1000, pin_memory=True),
        "device_async (1000 floats)": lambda: arrays.device_async(host, device),
        "host_async (1000 floats)": lambda: arrays.host_async(x),
        "idx.cpu() (after a sync)": lambda: idx.cpu(),
        "record_event": lambda: arrays.record_event(device),
        "torch.cuda.current_stream(device)": lambda: torch.cuda.current_stream(device),
        "arrays.current_stream(device)": lambda: arrays.current_stream(device),
        "event.record(stream) (made once)": lambda: event.record(stream),
        "idx.clamp(-1, 100)": lambda: idx.clamp(-1, 100),
    }
    out = {}
    for label, fn in cases.items():
        fn()
        torch.cuda.synchronize(device)
        n = 500
        start = time.perf_counter()
        for _ in range(n):
            fn()
        out[label] = (time.perf_counter() - start) / n * 1e6
        torch.cuda.synchronize(device)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[4096, 65536])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per loop")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="TOP",
        help="instead: each loop under cProfile, its TOP functions by own time",
    )  # fmt: skip
    args = parser.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        torch.set_num_threads(1)
    if args.profile:
        for n in args.envs:
            profiled(n, args.steps, device, args.profile)
        return
    for n in args.envs:
        for mode, result in breakdown(n, args.steps, device).items():
            s = result["loop"]
            print(
                f"\n{n} envs, {mode}: {s['wall'] * 1e3:.3f} ms/step, varirec's host "
                f"{s['inside'] * 1e6:.0f} us/step, {s['resets']:.1f} envs reset per step"
            )
            for label, (us, per_step) in sorted(result["calls"].items(), key=lambda r: -r[1][0]):
                print(f"  {label:38s} {us:8.1f} us/step {per_step:6.2f} calls/step")
    if device.type == "cuda":
        print(f"\nsingle torch calls on {torch.cuda.get_device_name(device)} (host us)")
        for label, us in single_calls(device).items():
            print(f"  {label:38s} {us:8.2f}")


if __name__ == "__main__":
    main()
