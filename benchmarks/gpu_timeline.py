"""Where ``bench_gpu_loop.py``'s step goes on the GPU: busy with kernels, or idle waiting
for the host, and in which part of the loop the host was when the GPU resumed.

One loop per mode (bare, null, recording; ``--rounds`` times, interleaved) runs under
``torch.profiler`` with the loop's parts labelled (the env's physics and reset, and
varirec's ``record_step``, ``reset`` and ``record_post_step``). From the GPU's timeline
it prints, per step: the kernels' busy time, the GPU's idle time (the step on the GPU
is their sum) and the host region in which each idle gap ended (the part of the loop
the GPU was waiting for: time spent there, and in the unlabelled loop code before it).
The kernels that a mode adds to the bare loop's are listed with their time. The
profiler adds several us to each host call, so the host is slower here than in
``bench_gpu_loop.py`` and its idle times are longer: read the busy times as they are,
and compare the modes' idle times with each other.

On an H200 (2026-11-28) varirec's kernels added 7-9 us a step (null) and 18-28 us
(recording); the rest of its cost is the GPU's idle time, waiting for the host.

Run: ``python benchmarks/gpu_timeline.py`` (CUDA; ``--envs 4096 65536``, ``--steps 40``;
``--trace DIR`` keeps each mode's Chrome trace, gzipped, for ``chrome://tracing`` or
Perfetto). Without CUDA it says so and stops.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import json
import statistics
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bench_gpu_loop as loop
import torch
from torch.profiler import ProfilerActivity, profile, record_function

from varirec.recording.driver import VariationDriver
from varirec.recording.manager import RecorderManager

LABELLED: list[tuple[Any, str, str]] = [
    (loop.TorchEnv, "physics", "env physics"),
    (loop.TorchEnv, "reset_rows", "env reset"),
    (RecorderManager, "record_step", "varirec record_step"),
    (RecorderManager, "reset", "varirec reset"),
    (RecorderManager, "record_post_step", "varirec record_post_step"),
    (VariationDriver, "record_step", "varirec record_step"),
    (VariationDriver, "reset", "varirec reset"),
    (VariationDriver, "record_post_step", "varirec record_post_step"),
]
GPU_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")
UNLABELLED = "the loop's own code (the bare reset's draw, nonzero)"


@contextlib.contextmanager
def labelled() -> Iterator[None]:
    """Each function of :data:`LABELLED` runs inside a ``record_function`` of its label
    (the driver's methods only where the manager does not wrap them: a null manager)."""
    originals = [(owner, name, owner.__dict__[name]) for owner, name, _ in LABELLED]

    def wrap(fn: Any, label: str) -> Any:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            if _inside[0]:  # the manager's call of the driver's: one label
                return fn(*args, **kwargs)
            _inside[0] = True
            try:
                with record_function(label):
                    return fn(*args, **kwargs)
            finally:
                _inside[0] = False

        return inner

    for owner, name, label in LABELLED:
        setattr(owner, name, wrap(owner.__dict__[name], label))
    try:
        yield
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)


_inside = [False]


def profiled(mode: str, env: loop.TorchEnv, steps: int, tmp: Path) -> list[dict]:
    """The trace events of one loop of ``mode`` under the profiler."""
    prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
    out = tmp / mode if mode == "recording" else None
    with labelled():
        loop.run_loop(mode, env, steps, 30, True, out, window=(prof.start, prof.stop))
    path = tmp / f"{mode}.json"
    prof.export_chrome_trace(str(path))
    with path.open() as f:
        return json.load(f)["traceEvents"]


def timeline(events: list[dict], steps: int) -> dict[str, Any]:
    """Per step: GPU busy and idle time (us), idle by the host region it ended in, and
    busy time per kernel name."""
    gpu = sorted(
        (e["ts"], e["ts"] + e.get("dur", 0), e["name"])
        for e in events
        if e.get("cat") in GPU_CATEGORIES and "ts" in e
    )
    regions = sorted(
        (e["ts"], e["ts"] + e.get("dur", 0), e["name"])
        for e in events
        if e.get("cat") == "user_annotation"
    )
    busy = 0.0
    idle_in: dict[str, float] = defaultdict(float)
    kernels: dict[str, float] = defaultdict(float)
    end = gpu[0][0] if gpu else 0.0
    r = 0
    for start, stop, name in gpu:
        kernels[name[:90]] += (stop - start) / steps
        if start > end:  # an idle gap, ended by this op's launch
            while r + 1 < len(regions) and regions[r + 1][0] <= start:
                r += 1
            inside = regions and regions[r][0] <= start <= regions[r][1]
            idle_in[regions[r][2] if inside else UNLABELLED] += (start - end) / steps
        busy += max(0.0, stop - max(start, end))
        end = max(end, stop)
    span = (end - gpu[0][0]) if gpu else 0.0
    return {
        "busy": busy / steps,
        "idle": (span - busy) / steps,
        "idle_in": dict(idle_in),
        "kernels": dict(kernels),
    }


def report(num_envs: int, results: dict[str, list[dict[str, Any]]]) -> None:
    def med(mode: str, f: Any) -> float:
        return statistics.median(f(t) for t in results[mode])

    print(f"\n{num_envs} envs: us/step on the GPU, median over rounds")
    print(f"{'mode':>10} {'GPU busy':>9} {'GPU idle':>9} {'step':>9}")
    for mode in loop.MODES:
        busy, idle = med(mode, lambda t: t["busy"]), med(mode, lambda t: t["idle"])
        step = med(mode, lambda t: t["busy"] + t["idle"])
        print(f"{mode:>10} {busy:9.0f} {idle:9.0f} {step:9.0f}")
    regions = sorted({k for runs in results.values() for t in runs for k in t["idle_in"]})
    print("GPU idle by the host region it ended in (bare, null, recording):")
    for region in regions:
        cells = [med(m, lambda t, k=region: t["idle_in"].get(k, 0.0)) for m in loop.MODES]
        print(f"  {region:>52} " + " ".join(f"{c:8.0f}" for c in cells))
    bare = results["bare"][-1]["kernels"]
    for mode in loop.MODES[1:]:
        extra = {k: v - bare.get(k, 0.0) for k, v in results[mode][-1]["kernels"].items()}
        top = sorted(extra.items(), key=lambda kv: -kv[1])[:6]
        print(f"kernels {mode} adds (us/step): " + "; ".join(f"{v:.1f} {k[:48]}" for k, v in top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[4096, 65536])
    parser.add_argument("--steps", type=int, default=40, help="profiled steps per loop")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--step-ms", type=float, default=2.0, help="calibrated step time")
    parser.add_argument("--trace", type=Path, default=None, help="keep the traces here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_timeline.py reads the GPU's timeline: it needs a CUDA device")
    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]):
        torch.ones(8, device=device).add_(1)  # the profiler's first start (CUPTI), untimed
        torch.cuda.synchronize(device)
    for num_envs in args.envs:
        reps, _ = loop._calibrate(num_envs, 20, 1024, args.step_ms, device)
        results: dict[str, list[dict[str, Any]]] = defaultdict(list)
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.rounds):
                for mode in loop.MODES:
                    env = loop.TorchEnv(num_envs, 20, reps, 1024, device)
                    events = profiled(mode, env, args.steps, Path(tmp))
                    results[mode].append(timeline(events, args.steps))
                    if args.trace is not None:
                        args.trace.mkdir(parents=True, exist_ok=True)
                        name = args.trace / f"trace-{num_envs}-{mode}.json.gz"
                        with gzip.open(name, "wt") as f:
                            json.dump({"traceEvents": events}, f)
        report(num_envs, results)


if __name__ == "__main__":
    main()
