"""What recording costs: throughput, the simulation loop, and memory. One table.

(a) Draw rows/s through the recorder to closed Parquet parts, against plain
    ``pyarrow.parquet.ParquetWriter`` writing the same rows (goal >= 0.7x) and against
    one JSON line per episode with its variations, the Isaac Lab Arena recorder's
    format (goal: >= 15x faster); with file sizes.
(b) A batched loop of 4096 envs whose step does ~2 ms of numpy work (calibrated in
    CPU time), 20 reset-mode variations, episodes of 30-90 steps (~1.7 % of envs reset
    per step). The baseline draws with plain numpy, a Generator drawing the 20
    parameters of the resetting envs in one call (what the loop did before varirec,
    at its cheapest; one call per parameter is a reference row); against it
    the null manager (goal <= 1 % more) and recording (goal <= 3 % more), which apply
    the reset batch with one scatter (``VariationSet(apply_batch=...)``), as the
    baseline writes its draw. Repeats are
    interleaved; each figure is the median over repeats of ``mode / baseline - 1`` in
    the same repeat, with its spread, in the main thread's CPU time (steady on a
    shared machine; the writer thread is not counted) and in wall time. A separate
    row resets every env in every step: varirec's throughput in draw rows/s.
(c) Resident memory after 50 million draw rows against after 1 million (goal: at
    most 64 MB more).

Run: ``python benchmarks/bench_recording.py`` (about 3 minutes; ``--quick`` for ~1 min).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import varirec as vr
from varirec.recording.manager import NullRecorderManager, RecorderManager
from varirec.sampling.accel import kernels
from varirec.storage.schema import draws_schema

NUM_ENVS = 4096
NUM_VARIATIONS = 20


def _variations() -> vr.VariationSet:
    return vr.VariationSet(
        vr.Variation(f"object{i}.param", vr.VariationCfg(sampler=vr.UniformCfg(low=0.5, high=2.0)))
        for i in range(NUM_VARIATIONS)
    )


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- (a) throughput --------------------------------------------------------------------
def throughput(total_rows: int, tmp: Path) -> list[tuple[str, str, str]]:
    rounds = total_rows // (NUM_ENVS * NUM_VARIATIONS)
    rows = rounds * NUM_ENVS * NUM_VARIATIONS

    variations = _variations()
    m = RecorderManager(NUM_ENVS, variations=variations, output=tmp / "rec", run_id="r", seed=0)
    ids = np.arange(NUM_ENVS)
    # Load the compiled draw kernels (the fast extra) before the clock: a once-per-process
    # cost (~0.4 s from numba's cache), like the imports, not part of the rows/s.
    kernels()
    t0 = time.perf_counter()
    for _ in range(rounds):
        m.record_pre_reset(ids)
        m.draw_reset(None, ids)
        m.record_post_reset(ids)
    m.close()
    t_rec = time.perf_counter() - t0
    draws_rows = m.counts["draws"]
    assert draws_rows == rows, (draws_rows, rows)

    # The same rows, as numpy columns handed to a plain ParquetWriter.
    rng = np.random.default_rng(0)
    schema = draws_schema()
    keys = pa.array([f"object{i}.param" for i in range(NUM_VARIATIONS)])
    t0 = time.perf_counter()
    # The same writer options as the recorder's parts: a like-for-like baseline.
    strings = ["variation", "phase", "label"]
    stats = [f.name for f in schema if f.name not in (*strings, "value")]
    dictionary = [*strings, "episode"]  # an int column too: see parts._DICTIONARY_INTS
    with pq.ParquetWriter(
        tmp / "plain.parquet",
        schema,
        compression="zstd",
        use_dictionary=dictionary,
        write_statistics=stats,
        write_page_checksum=True,
    ) as w:
        batch = NUM_ENVS * NUM_VARIATIONS
        buf = []
        for r in range(rounds):
            n = batch
            var = np.repeat(np.arange(NUM_VARIATIONS, dtype=np.int32), NUM_ENVS)
            cols = [
                pa.array(np.full(n, r, np.int64)),
                pa.DictionaryArray.from_arrays(pa.array(var), keys),
                pa.array(np.zeros(n, np.int16)),
                pa.array(np.tile(np.arange(NUM_ENVS, dtype=np.int32), NUM_VARIATIONS)),
                pa.array(np.full(n, r, np.int64)),
                pa.array(np.zeros(n, np.int64)),
                pa.DictionaryArray.from_arrays(
                    pa.array(np.ones(n, np.int32)), pa.array(["build", "reset"])
                ),
                pa.array(np.zeros(n, np.int32)),
                pa.array(rng.uniform(0.5, 2.0, n)),
                pa.nulls(n, schema.field("label").type),
                pa.nulls(n, pa.int64()),
                pa.array(np.full(n, time.time_ns() // 1000), pa.timestamp("us", tz="UTC")),
            ]
            buf.append(pa.Table.from_arrays(cols, schema=schema))
            if sum(t.num_rows for t in buf) >= 131_072:
                w.write_table(pa.concat_tables(buf), row_group_size=131_072)
                buf = []
        if buf:
            w.write_table(pa.concat_tables(buf), row_group_size=131_072)
    t_plain = time.perf_counter() - t0

    # One JSON line per episode with its variations, as the Isaac Lab Arena recorder
    # writes them: core fields and the variation values, and (as reviewed there) one
    # json.dumps to validate at append and one to write.
    values = rng.uniform(0.5, 2.0, (NUM_ENVS, NUM_VARIATIONS))
    names = [f"object{i}.param" for i in range(NUM_VARIATIONS)]
    t0 = time.perf_counter()
    with open(tmp / "episodes.jsonl", "w") as f:
        for r in range(rounds):
            records = []
            for env in range(NUM_ENVS):
                record = {
                    "env_id": env,
                    "episode_in_env": r,
                    "success": bool(values[env, 0] > 1.0),
                    "episode_length": 100,
                    "timestamp": datetime.now(UTC).isoformat(),
                    "variations": dict(zip(names, values[env].tolist(), strict=True)),
                }
                json.dumps(record)  # the append-time validation
                records.append(record)
            f.writelines(json.dumps(rec) + "\n" for rec in records)
    t_json = time.perf_counter() - t0

    rec_rate, plain_rate, json_rate = rows / t_rec, rows / t_plain, rows / t_json
    return [
        (
            "(a) recorder -> Parquet parts",
            f"{rec_rate / 1e6:.2f} Mrows/s",
            f"{_dir_size(tmp / 'rec') / 1e6:.1f} MB",
        ),
        (
            "(a) plain ParquetWriter",
            f"{plain_rate / 1e6:.2f} Mrows/s",
            f"{(tmp / 'plain.parquet').stat().st_size / 1e6:.1f} MB",
        ),
        (
            "(a) JSON line per episode",
            f"{json_rate / 1e6:.3f} Mrows/s",
            f"{(tmp / 'episodes.jsonl').stat().st_size / 1e6:.1f} MB",
        ),
        ("(a) recorder / plain ParquetWriter", f"{rec_rate / plain_rate:.2f} x", "goal >= 0.7"),
        ("(a) recorder / JSON lines", f"{rec_rate / json_rate:.1f} x", "goal >= 15"),
    ]


# -- (b) the simulation loop -----------------------------------------------------------
MIN_LEN, MAX_LEN = 30, 90  # episode lengths: ~1.7 % of envs reset in a step
LOW, HIGH = 0.5, 2.0


class BusyEnv:
    """~2 ms of numpy per step (about one GPU physics step at 4096 envs).

    Elementwise numpy only, single-threaded like a simulator's Python main thread:
    (a BLAS matmul would spread over both cores and measure only how the writer
    thread and BLAS share the second core, which a GPU simulator leaves free).
    The first parameters scale the update, so a write that went missing would show.
    """

    def __init__(self, reps: int, num_envs: int = NUM_ENVS) -> None:
        self.state = np.empty((num_envs, 16))
        self.vel = np.empty((num_envs, 16))
        self.filler = np.empty((256, 16))
        self.reward = np.zeros(num_envs)  # the env's reward buffer, one float per env
        self.reps = reps
        # Per-env parameters env-major, as simulators keep per-env properties (Isaac Lab's
        # masses are (num_envs, num_bodies)): a reset writes whole rows.
        self.params = np.empty((num_envs, NUM_VARIATIONS))
        self.length = np.empty(num_envs, np.int64)
        self.t = np.empty(num_envs, np.int64)
        self.restart()

    def restart(self) -> None:
        """The same first state, in the same arrays: every mode of a repeat runs on the
        same memory (fresh arrays per loop move the step's time by a few percent, by
        where they land, which would be noise in a mode's overhead)."""
        rng = np.random.default_rng(0)
        self.state[:] = rng.standard_normal(self.state.shape)
        self.vel[:] = 0.0
        self.params[:] = 1.0
        self.length[:] = rng.integers(MIN_LEN, MAX_LEN + 1, len(self.length))
        # Spread start times: the loop is in its steady state from the first step.
        self.t[:] = (rng.random(len(self.t)) * self.length).astype(np.int64)

    def physics(self) -> None:
        gain = self.params[:, :1]
        self.vel += 0.01 * (np.sin(self.state) * gain - 0.1 * self.vel)
        self.state += 0.01 * self.vel
        np.copyto(self.reward, self.state[:, 0])  # a reward term, into the env's buffer
        for _ in range(self.reps):  # filler work in small pieces: a fine calibration
            np.sin(self.state[:256], out=self.filler)
        self.t += 1


def _calibrate() -> int:
    """Filler repetitions that make one step take 2 ms of the main thread's CPU time
    (wall time on a shared machine would count the neighbours' work too): a first
    guess from two counts, then corrected twice on the median of three measured runs
    (a single short run is thrown off by a slow spell)."""

    def per_step(reps: int, steps: int = 60) -> float:
        times = []
        for _ in range(3):
            env = BusyEnv(reps)
            t0 = time.thread_time()
            for _ in range(steps):
                env.physics()
            times.append((time.thread_time() - t0) / steps)
        return statistics.median(times)

    base = per_step(0)
    one = max(per_step(200) - base, 1e-9) / 200
    reps = max(0, round((0.002 - base) / one))
    for _ in range(2):
        reps = max(0, round(reps + (0.002 - per_step(reps)) / one))
    return reps


LOOP_MODES = ("plain", "plain20", "null", "recording")
"""plain: a numpy Generator draws the 20 parameters of the resetting envs in one call
(the baseline: the least the loop could spend before varirec); plain20: one call per
parameter, as separate randomization terms would (a reference); null: varirec's null
manager; recording: the recording manager."""


def _loop(
    mode: str, steps: int, env: BusyEnv, tmp: Path, all_reset: bool = False
) -> dict[str, float]:
    """One loop on ``env`` (restarted); per step: wall and main-thread CPU seconds, envs
    reset and draw rows written (the first reset of every env aside)."""
    env.restart()
    variations = _variations()
    # One scatter of the reset batch's (k, 20) values, as the baseline's one scatter.
    variations.apply_batch = lambda e, ids, batch: e.params.__setitem__(ids, batch.matrix)
    m: NullRecorderManager | None = None
    if mode == "recording":
        m = RecorderManager(
            NUM_ENVS, variations=variations, output=tmp / f"loop{time.time_ns()}", seed=0
        )
    elif mode == "null":
        m = NullRecorderManager(NUM_ENVS, variations=variations, seed=0)
    rng = np.random.default_rng(1)
    if m is not None:
        m.reset(env, None)
    else:
        env.params[:] = rng.uniform(LOW, HIGH, env.params.shape)
    resets = 0
    own = 0  # thread-CPU ns inside the randomization and recording calls (the clock's own
    clock = time.thread_time_ns  # cost, ~0.1 us a read, is in every mode alike)
    gc.collect()
    t0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(steps):
        env.physics()
        reward = env.reward
        done_mask = np.ones(NUM_ENVS, bool) if all_reset else env.t >= env.length
        a = clock()
        if m is not None:
            m.record_step(reward=reward, terminated=done_mask)
        own += clock() - a
        done = np.flatnonzero(done_mask)
        if done.size:
            resets += done.size
            a = clock()
            if m is not None:
                m.reset(env, done)
            elif mode == "plain":
                env.params[done] = rng.uniform(LOW, HIGH, (done.size, NUM_VARIATIONS))
            else:  # one draw per parameter, as separate randomization terms would
                for i in range(NUM_VARIATIONS):
                    env.params[done, i] = rng.uniform(LOW, HIGH, done.size)
            own += clock() - a
            env.t[done] = 0
            env.length[done] = rng.integers(MIN_LEN, MAX_LEN + 1, done.size)
        a = clock()
        if m is not None:
            m.record_post_step()
        own += clock() - a
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    rows = 0
    if isinstance(m, RecorderManager):
        m.close()  # after the clock: the writer thread's backlog is not the loop's time
        rows = m.counts["draws"] - NUM_ENVS * NUM_VARIATIONS  # less the first reset
        if rows != NUM_VARIATIONS * resets:
            raise RuntimeError(f"recorded {rows} draw rows, expected {NUM_VARIATIONS * resets}")
    return {
        "wall": wall / steps,
        "cpu": cpu / steps,
        "own": own * 1e-9 / steps,
        "resets": resets / steps,
        "rows": rows / steps,
    }


def _paired(
    steps: int, repeats: int, reps: int, tmp: Path, modes: tuple[str, ...], all_reset: bool
) -> dict[str, list[dict[str, float]]]:
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    env = BusyEnv(reps)
    for r in range(repeats):  # interleaved and rotated: a slow spell hits every mode
        for mode in modes[r % len(modes) :] + modes[: r % len(modes)]:
            runs[mode].append(_loop(mode, steps, env, tmp, all_reset))
    return runs


def _overhead(runs: dict[str, list[dict[str, float]]], mode: str, key: str) -> str:
    """Median over repeats of ``mode / plain - 1`` in the same repeat, with min..max."""
    ratios = [100 * (a[key] / b[key] - 1) for a, b in zip(runs[mode], runs["plain"], strict=True)]
    return f"{statistics.median(ratios):+.2f} % ({min(ratios):+.1f}..{max(ratios):+.1f})"


def simulation_loop(steps: int, repeats: int, tmp: Path) -> list[tuple[str, str, str]]:
    reps = _calibrate()
    runs = _paired(steps, repeats, reps, tmp, LOOP_MODES, all_reset=False)

    def ms(mode: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[mode]) * 1e3

    goals = {"null": 1, "recording": 3}
    out = [
        (
            "(b) step, plain numpy, one (k, 20) draw",
            f"{ms('plain', 'cpu'):.3f} ms",
            f"baseline (CPU time; wall {ms('plain', 'wall'):.3f} ms)",
        ),
        (
            "(b) step, plain numpy, a draw per parameter",
            f"{ms('plain20', 'cpu'):.3f} ms",
            f"reference: CPU {_overhead(runs, 'plain20', 'cpu')}",
        ),
    ]
    for mode in ("null", "recording"):
        out.append(
            (
                f"(b) step, {mode} manager",
                f"{ms(mode, 'cpu'):.3f} ms",
                f"CPU {_overhead(runs, mode, 'cpu')} (goal <= {goals[mode]}); "
                f"wall {_overhead(runs, mode, 'wall')}",
            )
        )
    for mode in ("null", "recording"):
        # Only the calls themselves, each timed where it runs in the loop (just after a
        # step): steady where the whole-step pairs above swing with the machine's speed,
        # blind to what the calls cost the next step (caches, the writer thread).
        extra = [
            1e6 * (a["own"] - b["own"]) for a, b in zip(runs[mode], runs["plain"], strict=True)
        ]
        step_us = 1e3 * ms("plain", "cpu")
        out.append(
            (
                f"(b) in the loop, {mode} calls less the plain draw",
                f"{statistics.median(extra):.0f} us/step",
                f"{100 * statistics.median(extra) / step_us:.2f} % of the step "
                f"({min(extra):.0f}..{max(extra):.0f} us; the plain draw and scatter "
                f"{1e6 * statistics.median(x['own'] for x in runs['plain']):.0f} us)",
            )
        )
    own = (ms("recording", "cpu") - ms("plain", "cpu")) * 1e3
    rows = statistics.median(x["rows"] for x in runs["recording"])
    out.append(
        (
            "(b) varirec's own cost, recording",
            f"{own:.0f} us/step",
            f"{own / max(rows, 1) * 1e3:.0f} ns/draw row ({rows:.0f} rows/step, "
            f"{100 * rows / NUM_VARIATIONS / NUM_ENVS:.2f} % of envs reset per step)",
        )
    )
    # Every env resets in every step: varirec's throughput, not a realistic loop.
    every = _paired(max(steps // 8, 10), repeats, reps, tmp, ("plain", "null", "recording"), True)
    for mode in ("null", "recording"):
        extra = statistics.median(
            a["cpu"] - b["cpu"] for a, b in zip(every[mode], every["plain"], strict=True)
        )
        # varirec's draw can cost less than the plain numpy one: then it is faster than
        # the baseline, and a rate of rows per extra second means nothing.
        # The null manager writes no rows: its row gives the extra time only.
        recorded = mode == "recording" and extra > 0
        rate = f"{NUM_ENVS * NUM_VARIATIONS / extra / 1e6:.2f} Mrows/s" if recorded else "-"
        out.append(
            (
                f"(b) all {NUM_ENVS} envs reset each step, {mode}",
                rate,
                f"{extra * 1e6:+.0f} us/step against plain numpy draws (CPU time)",
            )
        )
    return out


# -- (c) memory ------------------------------------------------------------------------
def memory(total_rows: int, tmp: Path) -> list[tuple[str, str, str]]:
    variations = _variations()
    m = RecorderManager(NUM_ENVS, variations=variations, output=tmp / "mem", run_id="m", seed=0)
    ids = np.arange(NUM_ENVS)
    per_round = NUM_ENVS * NUM_VARIATIONS
    marks = {1_000_000: None, total_rows: None}
    done_rows = 0
    while done_rows < total_rows:
        m.record_pre_reset(ids)
        m.draw_reset(None, ids)
        m.record_post_reset(ids)
        done_rows += per_round
        for mark in marks:
            if marks[mark] is None and done_rows >= mark:
                m.flush()
                gc.collect()
                marks[mark] = _rss_mb()
    m.close()
    first, last = marks[1_000_000], marks[total_rows]
    return [
        ("(c) RSS after 1 M draw rows", f"{first:.0f} MB", ""),
        (
            f"(c) RSS after {total_rows / 1e6:.0f} M draw rows",
            f"{last:.0f} MB",
            f"{last - first:+.0f} MB (goal <= +64)",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (~1 min)")
    parser.add_argument("--parts", default="abc", help="which parts to run, e.g. --parts b")
    parser.add_argument("--steps", type=int, default=None, help="(b): steps per loop")
    parser.add_argument("--repeats", type=int, default=None, help="(b): interleaved repeats")
    args = parser.parse_args()
    steps = args.steps or (150 if args.quick else 400)
    repeats = args.repeats or (3 if args.quick else 9)
    tmp = Path(tempfile.mkdtemp(prefix="varirec-bench-"))
    rows = []
    try:
        if "a" in args.parts:
            rows += throughput(2_000_000 if args.quick else 10_000_000, tmp)
        if "b" in args.parts:
            rows += simulation_loop(steps, repeats, tmp)
        if "c" in args.parts:
            rows += memory(5_000_000 if args.quick else 50_000_000, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':{width}}  {'value':>16}  note")
    print("-" * (width + 40))
    for name, value, note in rows:
        print(f"{name:{width}}  {value:>16}  {note}")


if __name__ == "__main__":
    main()
