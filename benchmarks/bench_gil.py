"""What the recorder's writer threads cost a GPU loop's host through the GIL, on the CPU.

Every torch call lets the GIL go while it launches. A background thread waiting for
the GIL takes it then, and the main thread gets it back only when that thread lets go:
at its next GIL-free call (numpy copies, Arrow's encoding and writing) or after the
switch interval (5 ms). So whatever a writer thread does holding the GIL lands on the
main thread's next torch calls; on a GPU, in the window from the ``nonzero()`` sync to
the next step's launch, the GPU idles for it.

Each step here: varirec's hooks with numpy arrays (``record_step``; the reset of the
envs whose episode ended, 30-90 steps; ``record_post_step``), a GIL-free wait standing
for the GPU's step (``time.sleep``), then that window: ``--calls`` tiny torch calls on
the CPU. Modes (interleaved repeats): ``bare`` (no varirec), ``null`` (the null manager:
no thread), ``recording`` (a RecorderManager writing Parquet on its threads). The table
gives the window's mean and 99th percentile, and the mean's overhead against ``bare``
of the same repeat (median and spread over repeats); the recording row's overhead is
the writer threads' GIL time that the main thread waited for.

Run: ``python benchmarks/bench_gil.py`` (~1 min; ``--quick`` ~10 s).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import varirec as vr
from varirec.recording.manager import NullRecorderManager, RecorderManager

MODES = ("bare", "null", "recording")
MIN_LEN, MAX_LEN = 30, 90


def _variations(num: int) -> vr.VariationSet:
    return vr.VariationSet(
        (
            vr.Variation(
                f"object{j}.param", vr.VariationCfg(sampler=vr.UniformCfg(low=0.5, high=2.0))
            )
            for j in range(num)
        ),
        apply_batch=lambda env, ids, batch: None,
    )


def run_loop(
    mode: str, num_envs: int, steps: int, args: argparse.Namespace, out: Path | None
) -> dict[str, Any]:
    """One loop: the window's time per step (us), and the resets it made."""
    rng = np.random.default_rng(0)
    length = rng.integers(MIN_LEN, MAX_LEN + 1, num_envs)
    t = (rng.random(num_envs) * length).astype(np.int64)  # start times spread
    m: NullRecorderManager | None = None
    if mode == "null":
        m = NullRecorderManager(num_envs, variations=_variations(args.variations), seed=0)
    elif mode == "recording":
        m = RecorderManager(num_envs, variations=_variations(args.variations), seed=0, output=out)
    if m is not None:
        m.reset(None, np.arange(num_envs))
    x = torch.zeros(16)
    reward = np.zeros(num_envs, np.float32)
    truncated = np.zeros(num_envs, bool)
    window: list[float] = []
    resets = 0
    for _ in range(args.warmup + steps):
        t += 1
        done = t >= length
        if m is not None:
            m.record_step(reward=reward, terminated=done, truncated=truncated, success=done)
        time.sleep(args.step_ms / 1e3)  # the GPU's step: the GIL is free
        s = time.perf_counter()
        for _ in range(args.calls):
            x.add_(1)
        window.append(time.perf_counter() - s)
        ids = np.flatnonzero(done)
        if len(ids):
            resets += len(ids)
            if m is not None:
                m.reset(None, ids)
            t[ids] = 0
            length[ids] = rng.integers(MIN_LEN, MAX_LEN + 1, len(ids))
        if m is not None:
            m.record_post_step()
    if isinstance(m, RecorderManager):
        m.close()
    us = np.array(window[args.warmup :]) * 1e6
    return {"mean": float(us.mean()), "p99": float(np.percentile(us, 99)), "resets": resets}


def measure(num_envs: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for r in range(args.repeats):
        for mode in MODES[r % 3 :] + MODES[: r % 3]:  # rotated: none always runs first
            out = tmp / f"run-{num_envs}-{r}" if mode == "recording" else None
            runs[mode].append(run_loop(mode, num_envs, args.steps, args, out))
    row: dict[str, Any] = {"envs": num_envs}
    for mode in MODES:
        row[mode] = statistics.median(x["mean"] for x in runs[mode])
        row[f"{mode}_p99"] = statistics.median(x["p99"] for x in runs[mode])
        if mode != "bare":
            ratios = [
                100 * (a["mean"] / b["mean"] - 1)
                for a, b in zip(runs[mode], runs["bare"], strict=True)
            ]
            row[f"{mode}_pct"] = (statistics.median(ratios), min(ratios), max(ratios))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[16384, 65536])
    parser.add_argument("--variations", type=int, default=20, help="reset-mode variations")
    parser.add_argument("--steps", type=int, default=400, help="timed steps per loop")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps per loop")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    parser.add_argument("--step-ms", type=float, default=2.0, help="the GIL-free wait")
    parser.add_argument("--calls", type=int, default=15, help="torch calls in the window")
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats, args.envs = 120, 1, args.envs[:1]
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, varirec {vr.__version__}; {args.variations} reset-mode "
        f"variations, episodes {MIN_LEN}-{MAX_LEN} steps, a {args.step_ms} ms GIL-free wait, "
        f"then {args.calls} torch calls; {args.steps} steps x {args.repeats} repeats\n"
    )
    head = (
        f"{'envs':>6} {'bare us':>8} {'null us':>8} {'rec us':>8} {'rec p99':>8}"
        f" {'null % (min..max)':>22} {'rec % (min..max)':>22}"
    )
    print("the window after the sync: mean us per step (median over repeats)")
    print(head)
    print("-" * len(head))
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.envs:
            row = measure(n, args, Path(tmp))

            def pct(mode: str, row: dict[str, Any] = row) -> str:
                med, lo, hi = row[f"{mode}_pct"]
                return f"{med:+.1f} ({lo:+.1f}..{hi:+.1f})"

            print(
                f"{n:>6} {row['bare']:>8.0f} {row['null']:>8.0f} {row['recording']:>8.0f}"
                f" {row['recording_p99']:>8.0f} {pct('null'):>22} {pct('recording'):>22}"
            )


if __name__ == "__main__":
    main()
