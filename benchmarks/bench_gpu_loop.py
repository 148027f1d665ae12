"""What varirec costs inside a batched torch simulation loop (Isaac Lab / mjlab shape).

Three loops over the same batched torch env, on CUDA where present, else on the CPU:

- ``bare``: the env randomizes itself on the device: one ``uniform_`` on the rows of
  the resetting envs, all 20 parameters at once (the cheapest baseline: Isaac Lab's
  reset event terms launch one draw per parameter);
- ``null``: varirec's null manager (episode tracking and keyed draws, nothing written)
  draws the 20 reset-mode variations and applies them to the same parameter tensor, in
  one scatter of the reset batch (``VariationSet(apply_batch=...)``);
- ``recording``: a :class:`~varirec.recording.manager.RecorderManager` that also records
  outcomes and draws to a Parquet dataset in a temporary directory.

Every step does matmul work calibrated to take ``--step-ms`` (default 2 ms) on the
device, then the env's own elementwise update; episodes last 30-90 steps (the start
times are spread, so ~1.6 % of envs reset in every step from the first); the loop
syncs once per step on ``nonzero(done)``, as Isaac Lab's ``if len(reset_env_ids) > 0``
does. Repeats are interleaved (a slow spell of the machine hits every mode) and the
overhead is the median over repeats of ``mode / bare - 1`` of the same repeat, with its
spread. ``varirec us/step`` is host time spent inside varirec's calls (and the glue
they need), timed around them. Below the table, each mode's host time from the sync to
the next step's launch (the reset, the env's own and varirec's): on a GPU, what it
waits for; varirec's other calls overlap the step already queued. Then the host's wait
at the sync: where it nears 0 the host, not the GPU, sets the step's time.

Goals on an H100/H200: null <= 2 %, recording <= 5 % at every size. The spread over
repeats is wider than the goals, so each goal's verdict (met, missed, undecided) comes
from the median's 95 % confidence interval over the repeats (15 on CUDA by default).
On the CPU the device *is* the host, so every microsecond varirec spends is on the
critical path.

If the installed varirec refuses torch tensors, the loop uses the glue a user would
write (``.cpu().numpy()`` for ids and step arrays; the batch's values are copied to
the device) and says so in the table header.

Run: ``python benchmarks/bench_gpu_loop.py`` (CUDA: ~1 min for 7 repeats on an H200,
so some 2-3 min for the default 15; CPU: ~3 min with the defaults; ``--quick`` ~1 min on
the CPU).
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

import varirec as vr
from varirec.recording.manager import NullRecorderManager, RecorderManager
from varirec.variations import batch as batch_module

MODES = ("bare", "null", "recording")
GOALS = {"null": 2.0, "recording": 5.0}
"""Overhead goals on an H100/H200, in % of the bare loop's step, at every size."""
LOW, HIGH = 0.5, 2.0
MIN_LEN, MAX_LEN = 30, 90
STATE = 4  # state columns; the first STATE parameters act on them


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TorchEnv:
    """A batched env: calibrated matmul work, then an elementwise update of the state.

    ``params`` (num_envs x num_params) is what the randomization writes; the first
    ``STATE`` columns scale the state's update, so a write that went missing would show.
    """

    def __init__(self, num_envs: int, num_params: int, reps: int, mat: int, device: torch.device):
        g = torch.Generator(device=device).manual_seed(0)
        self.device = device
        self.num_envs = num_envs
        self.reps = reps
        self.a = torch.randn(mat, mat, device=device, generator=g) / mat**0.5
        self.b = torch.randn(mat, mat, device=device, generator=g) / mat**0.5
        self.c = torch.empty(mat, mat, device=device)
        self.state = torch.randn(num_envs, STATE, device=device, generator=g)
        self.params = torch.ones(num_envs, num_params, device=device)
        self.length = torch.randint(MIN_LEN, MAX_LEN + 1, (num_envs,), device=device, generator=g)
        # Spread start times: the loop is in its steady state (~1/60 of envs reset per step).
        self.t = (torch.rand(num_envs, device=device, generator=g) * self.length).long()
        self.gen = g

    def physics(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        for _ in range(self.reps):
            torch.mm(self.a, self.b, out=self.c)
        self.state.add_(0.01 * torch.sin(self.state) * self.params[:, :STATE])
        self.t += 1
        reward = self.state[:, 0]
        truncated = self.t >= MAX_LEN
        terminated = (self.t >= self.length) & ~truncated
        return reward, terminated, truncated

    def reset_rows(self, ids: torch.Tensor) -> None:
        """The env's own reset of ``ids`` (state and episode length), randomization aside."""
        k = len(ids)
        self.state[ids] = torch.randn(k, STATE, device=self.device, generator=self.gen)
        self.t[ids] = 0
        self.length[ids] = torch.randint(
            MIN_LEN, MAX_LEN + 1, (k,), device=self.device, generator=self.gen
        )


def _calibrate(num_envs: int, num_params: int, mat: int, step_ms: float, device: torch.device):
    """Matmul repetitions that make one env step (resets aside) take ``step_ms``: wall
    time on CUDA; on the CPU, the main thread's CPU time (wall time on a shared machine
    counts the neighbours' work too)."""
    clock = time.perf_counter if device.type == "cuda" else time.thread_time

    def per_step(reps: int) -> float:
        env = TorchEnv(num_envs, num_params, reps, mat, device)
        for _ in range(5):
            env.physics()
        _sync(device)
        n = 30
        t0 = clock()
        for _ in range(n):
            env.physics()
        _sync(device)
        return (clock() - t0) / n

    base = per_step(0)
    one = max(per_step(20) - base, 1e-7) / 20
    reps = max(0, round((step_ms / 1e3 - base) / one))
    return reps, per_step(reps)


def _apply_all(env: TorchEnv, ids: torch.Tensor, batch: Any) -> None:
    """All 20 parameters of the resetting rows in one scatter (the bare loop's one
    scatter): ``batch.matrix`` is ``(k, 20)``, float32 on the env's device."""
    env.params[ids] = batch.matrix


def _apply_glue(env: TorchEnv, ids: Any, batch: Any) -> None:
    """:func:`_apply_all` for a varirec that hands numpy values and ids (the glue path):
    they are copied to the device."""
    ids = torch.as_tensor(ids, device=env.device)
    env.params[ids] = torch.as_tensor(batch.matrix, device=env.device, dtype=torch.float32)


def _variations(num_params: int, tensors: bool = True) -> vr.VariationSet:
    return vr.VariationSet(
        (
            vr.Variation(
                f"object{j}.param", vr.VariationCfg(sampler=vr.UniformCfg(low=LOW, high=HIGH))
            )
            for j in range(num_params)
        ),
        apply_batch=_apply_all if tensors else _apply_glue,
    )


def takes_tensors(device: torch.device) -> bool:
    """Whether the installed varirec takes torch tensors on ``device`` (ids, step arrays)."""
    try:
        m = NullRecorderManager(2, variations=_variations(1), seed=0, device=device)
        env = TorchEnv(2, 1, 0, 2, device)
        m.reset(env, torch.arange(2, device=device))
        m.record_step(
            reward=torch.zeros(2, device=device),
            terminated=torch.zeros(2, dtype=torch.bool, device=device),
        )
        m.reset(env, torch.tensor([1], device=device))
    except (TypeError, ValueError, RuntimeError) as exc:  # an older varirec, or a bug here
        print(
            f"varirec refused tensors on {device} ({type(exc).__name__}: {exc}); timing the "
            "numpy glue instead (--path tensors raises it)",
            file=sys.stderr,
        )
        return False
    return True


def run_loop(
    mode: str,
    env: TorchEnv,
    steps: int,
    warmup: int,
    tensors: bool,
    out: Path | None,
    window: tuple[Callable[[], Any], Callable[[], Any]] | None = None,
) -> dict[str, float]:
    """One loop, per step: wall and main-thread CPU seconds, varirec's host seconds
    (CPU time on a CPU device; wall time on CUDA, where a sync would show), resets.
    ``window``: two functions called as the timed steps begin and once they end (a
    profiler's enable and disable)."""
    device = env.device
    clock = time.perf_counter if device.type == "cuda" else time.thread_time
    num_params = env.params.shape[1]
    m: NullRecorderManager | None = None
    # The tensor path names the env's device: draws are made there, apply gets tensors.
    kw: dict[str, Any] = {"device": device} if tensors else {}
    if mode == "null":
        m = NullRecorderManager(
            env.num_envs, variations=_variations(num_params, tensors), seed=0, **kw
        )
    elif mode == "recording":
        m = RecorderManager(
            env.num_envs, variations=_variations(num_params, tensors), output=out, seed=0, **kw
        )

    def host(x: torch.Tensor) -> Any:
        return x if tensors else x.cpu().numpy()

    all_ids = torch.arange(env.num_envs, device=device)
    if m is not None:
        m.reset(env, host(all_ids))
    inside = after = waited = 0.0
    resets = all_resets = 0
    gc.collect()
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            inside, after, waited, resets = 0.0, 0.0, 0.0, 0
            t0, c0 = time.perf_counter(), time.thread_time()
            if window is not None:
                window[0]()
        reward, terminated, truncated = env.physics()
        if m is not None:
            s = clock()
            m.record_step(
                reward=host(reward),
                terminated=host(terminated),
                truncated=host(truncated),
                success=host(truncated),
            )
            inside += clock() - s
        s = clock()
        ids = (terminated | truncated).nonzero().squeeze(-1)  # the one sync per step
        synced = clock()
        waited += synced - s  # from here to the next step's launch, the GPU waits for the host
        if len(ids) > 0:
            resets += len(ids)
            all_resets += len(ids)
            if m is None:
                # All parameters of the resetting rows in one draw: the cheapest baseline
                # (Isaac Lab's event terms would launch one draw per parameter).
                env.params[ids] = torch.empty(len(ids), num_params, device=device).uniform_(
                    LOW, HIGH, generator=env.gen
                )
                env.reset_rows(ids)
            else:
                s = clock()
                m.reset(env, host(ids))
                inside += clock() - s
                env.reset_rows(ids)
        if m is not None:
            s = clock()
            m.record_post_step()
            inside += clock() - s
        after += clock() - synced
    _sync(device)
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    if window is not None:
        window[1]()
    if isinstance(m, RecorderManager):
        m.close()  # after the clock: the writer thread's backlog is not the loop's time
        want = num_params * (env.num_envs + all_resets)
        if m.counts["draws"] != want:
            raise RuntimeError(f"recorded {m.counts['draws']} draw rows, expected {want}")
    per_step = {
        "wall": wall, "cpu": cpu, "inside": inside, "after": after, "waited": waited,
        "resets": resets,
    }  # fmt: skip
    return {k: v / steps for k, v in per_step.items()}


def measure(
    num_envs: int, args: argparse.Namespace, device: torch.device, tensors: bool, tmp: Path
) -> dict[str, Any]:
    reps, calibrated = _calibrate(num_envs, args.variations, args.mat, args.step_ms, device)
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    for r in range(args.repeats):
        order = MODES[r % 3 :] + MODES[: r % 3]  # rotate: no mode always runs first
        for mode in order:
            env = TorchEnv(num_envs, args.variations, reps, args.mat, device)
            out = tmp / f"run-{num_envs}-{r}" if mode == "recording" else None
            runs[mode].append(run_loop(mode, env, args.steps, args.warmup, tensors, out))
            if out is not None:
                shutil.rmtree(out, ignore_errors=True)

    def med(mode: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[mode])

    def overhead(mode: str, key: str) -> tuple[float, ...]:
        """Over repeats of this repeat's ``mode / bare - 1``, in %: the median, the
        spread (min, max) and the median's 95 % confidence interval."""
        ratios = [
            100 * (a[key] / b[key] - 1) for a, b in zip(runs[mode], runs["bare"], strict=True)
        ]
        return statistics.median(ratios), min(ratios), max(ratios), *median_ci(ratios)

    return {
        "envs": num_envs,
        "reps": reps,
        "calibrated_ms": calibrated * 1e3,
        "reset_pct": 100 * med("bare", "resets") / num_envs,
        "ms": {k: {m: med(m, k) * 1e3 for m in MODES} for k in ("wall", "cpu")},
        "us": {m: med(m, "inside") * 1e6 for m in MODES},
        "after_us": {m: med(m, "after") * 1e6 for m in MODES},
        "waited_us": {m: med(m, "waited") * 1e6 for m in MODES},
        "pct": {k: {m: overhead(m, k) for m in MODES[1:]} for k in ("wall", "cpu")},
    }


def median_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval of the median of ``values``: two order
    statistics (:func:`scipy.stats.quantile_test`), NaN where there are too few values
    for ``level`` (fewer than 6 at 95 %).

    >>> median_ci([3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0])  # 7 repeats: the min and the max
    (1.0, 9.0)
    """
    x = np.asarray(values, dtype=float)
    ci = stats.quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(level)
    return float(ci.low), float(ci.high)


def verdict(ci: tuple[float, float], goal: float) -> str:
    """Whether a median overhead meets ``goal`` (%), from its confidence interval."""
    lo, hi = ci
    if np.isnan(lo) or np.isnan(hi):
        return "undecided: too few repeats for an interval (6 at least)"
    if hi <= goal:
        return "met"
    if lo > goal:
        return "missed"
    return "undecided: the interval holds the goal (more repeats narrow it)"


def _pct(cell: tuple[float, ...]) -> str:
    med, lo, hi = cell[:3]
    return f"{med:+6.1f} ({lo:+.1f}..{hi:+.1f})"


def print_table(results: list[dict[str, Any]], header: str, cpu: bool) -> None:
    print(header)
    kinds = [("wall", "wall clock")]
    if cpu:
        # On a shared machine wall time swings with the neighbours' load; the main
        # thread's CPU time (the loop, torch's one thread, varirec's calls) is steadier.
        kinds.append(("cpu", "main-thread CPU time (the writer thread is not counted)"))
    for key, title in kinds:
        head = (
            f"{'envs':>6} {'reset %':>7} {'bare ms':>8} {'null ms':>8} {'rec ms':>8} "
            f"{'null us':>8} {'rec us':>8} {'null % (min..max)':>24} {'rec % (min..max)':>24}"
        )
        print(f"\n{title}: ms/step (median), varirec's host us/step, overhead vs bare")
        print(head)
        print("-" * len(head))
        for r in results:
            ms, pct = r["ms"][key], r["pct"][key]
            print(
                f"{r['envs']:>6} {r['reset_pct']:7.2f} {ms['bare']:8.3f} {ms['null']:8.3f} "
                f"{ms['recording']:8.3f} {r['us']['null']:8.0f} {r['us']['recording']:8.0f} "
                f"{_pct(pct['null']):>24} {_pct(pct['recording']):>24}"
            )
    print(
        "\nhost us/step from the sync to the next step's launch (on a GPU, what it waits "
        "for; the rest of varirec's time overlaps the queued step):"
    )
    for r in results:
        a = r["after_us"]
        print(
            f"  {r['envs']:>6} envs: bare {a['bare']:.0f}, null {a['null']:.0f}, "
            f"recording {a['recording']:.0f}"
        )
    print(
        "\nhost us/step waiting at the sync for the GPU (near 0: the GPU waits for the "
        "host instead, and every us of host work lengthens the step):"
    )
    for r in results:
        w = r["waited_us"]
        print(
            f"  {r['envs']:>6} envs: bare {w['bare']:.0f}, null {w['null']:.0f}, "
            f"recording {w['recording']:.0f}"
        )
    print(
        "\ngoals on an H100/H200: null <= +2 %, recording <= +5 % at every size; the wall "
        "clock's median overhead with its 95 % confidence interval (order statistics over "
        "the repeats, no assumption of a distribution):"
    )
    for r in results:
        for mode, goal in GOALS.items():
            cell = r["pct"]["wall"][mode]
            print(
                f"  {r['envs']:>6} envs, {mode:9s} {cell[0]:+5.1f} % "
                f"[{cell[3]:+.1f}, {cell[4]:+.1f}]: {verdict(cell[3:5], goal)}"
            )
    for r in results:
        print(
            f"  {r['envs']} envs: {r['reps']} matmuls/step, "
            f"calibrated step (no resets) {r['calibrated_ms']:.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[4096, 16384, 65536])
    parser.add_argument("--variations", type=int, default=20, help="reset-mode variations")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per loop")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps per loop")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats")
    parser.add_argument("--step-ms", type=float, default=2.0, help="calibrated step time")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU runs)")
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument(
        "--path",
        choices=("auto", "tensors", "numpy"),
        default="auto",
        help="hand varirec torch tensors, or numpy through .cpu() glue (auto: tensors if taken)",
    )
    parser.add_argument(
        "--host-draw-max",
        type=int,
        default=None,
        help="values (envs x columns) of a GPU reset drawn on the host and sent in one copy "
        "(varirec.variations.batch.HOST_DRAW_MAX; 0: every reset drawn on the device)",
    )
    args = parser.parse_args()
    if args.host_draw_max is not None:
        batch_module.HOST_DRAW_MAX = args.host_draw_max
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        # One thread, like a simulator's main thread: the other core stays free for
        # varirec's writer thread, as a GPU simulator leaves the host's cores free.
        torch.set_num_threads(args.threads)
    args.mat = 1024 if device.type == "cuda" else 128
    if args.steps is None:
        args.steps = 300 if device.type == "cuda" else (100 if args.quick else 200)
    if args.repeats is None:
        # 15 on CUDA: the median's 95 % interval is then the 4th to the 12th of the
        # sorted repeats (with 7, the min and the max: wider than the goals there).
        args.repeats = 3 if args.quick else (15 if device.type == "cuda" else 5)
    tensors = takes_tensors(device) if args.path == "auto" else args.path == "tensors"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    header = (
        f"device {device} ({name}), torch {torch.__version__}, varirec {vr.__version__}; "
        f"{args.variations} reset-mode variations; episodes {MIN_LEN}-{MAX_LEN} steps; "
        f"step calibrated to {args.step_ms} ms; {args.steps} steps x {args.repeats} "
        f"interleaved repeats; path: {'torch tensors' if tensors else 'numpy glue (.cpu())'}; "
        f"GPU resets of up to {batch_module.HOST_DRAW_MAX} values drawn on the host"
    )
    tmp = Path(tempfile.mkdtemp(prefix="varirec-gpu-loop-"))
    try:
        results = [measure(n, args, device, tensors, tmp) for n in args.envs]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(results, header, cpu=device.type == "cpu")


if __name__ == "__main__":
    main()
