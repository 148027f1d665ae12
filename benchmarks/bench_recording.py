"""What recording costs: throughput, the simulation loop, and memory. One table.

(a) Draw rows/s through the recorder to closed Parquet parts, against plain
    ``pyarrow.parquet.ParquetWriter`` writing the same rows (goal >= 0.7x) and against
    one JSON line per episode with its variations, the Isaac Lab Arena recorder's
    format (goal: >= 15x faster); with file sizes.
(b) A batched loop of 4096 envs whose step does ~2 ms of numpy work, 20 variations
    drawn at reset, episodes of ~100 steps: time per step with recording against
    without (goal <= 3 % more) and with the null manager (goal <= 0.5 % more); the
    recorder's own cost in us per step and ns per draw row.
(c) Resident memory after 50 million draw rows against after 1 million (goal: at
    most 64 MB more).

Run: ``python benchmarks/bench_recording.py`` (about 3 minutes; ``--quick`` for ~30 s).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import varirec as vr
from varirec.recording.manager import NullRecorderManager, RecorderManager
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
    with pq.ParquetWriter(
        tmp / "plain.parquet",
        schema,
        compression="zstd",
        use_dictionary=strings,
        write_statistics=stats,
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
class BusyEnv:
    """~2 ms of numpy per step (about one GPU physics step at 4096 envs).

    Elementwise numpy only, single-threaded like a simulator's Python main thread:
    (a BLAS matmul would spread over both cores and measure only how the writer
    thread and BLAS share the second core, which a GPU simulator leaves free).
    """

    def __init__(self, reps: int) -> None:
        rng = np.random.default_rng(0)
        self.state = rng.standard_normal((NUM_ENVS, 16))
        self.vel = np.zeros((NUM_ENVS, 16))
        self.reps = reps
        self.params = np.ones((NUM_VARIATIONS, NUM_ENVS))
        self.length = rng.integers(50, 150, NUM_ENVS)
        self.t = np.zeros(NUM_ENVS, np.int64)

    def physics(self) -> None:
        for _ in range(self.reps):
            self.vel += 0.01 * (np.sin(self.state) - 0.1 * self.vel)
            self.state += 0.01 * self.vel
        self.t += 1


def _calibrate() -> int:
    env = BusyEnv(1)
    t0 = time.perf_counter()
    for _ in range(50):
        env.physics()
    per = (time.perf_counter() - t0) / 50
    return max(1, round(0.002 / per))


def _loop(mode: str, steps: int, reps: int, tmp: Path) -> tuple[float, int]:
    env = BusyEnv(reps)
    variations = _variations()
    for i, v in enumerate(variations.values()):
        v.apply = lambda e, ids, x, i=i: e.params[i].__setitem__(ids, x)
    if mode == "recording":
        m = RecorderManager(
            NUM_ENVS, variations=variations, output=tmp / f"loop{time.time_ns()}", seed=0
        )
    elif mode in ("null", "without"):
        m = NullRecorderManager(NUM_ENVS, variations=variations, seed=0)
    else:  # plain: unkeyed draws, no tracker at all
        m = None
    reset_vars = list(variations.values())
    tracker = None if m is None else m.tracker
    rng = np.random.default_rng(1)
    if m is not None:
        m.reset(env, None)
    else:
        for v in reset_vars:
            v.draw(env, np.arange(NUM_ENVS))
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(steps):
        env.physics()
        reward = env.state[:, 0]
        done_mask = env.t >= env.length
        if mode in ("recording", "null"):
            m.record_step(reward=reward, terminated=done_mask)
        elif mode == "without":
            tracker.advance_steps()
        done = np.flatnonzero(done_mask)
        if done.size:
            env.t[done] = 0
            env.length[done] = rng.integers(50, 150, done.size)
            if mode in ("recording", "null"):
                m.reset(env, done)
            elif mode == "without":  # the same tracker lifecycle, called directly
                tracker.finish(done)
                tracker.begin(done)
                for v in reset_vars:
                    v.draw(env, done)
                tracker.start(done)
            else:
                for v in reset_vars:
                    v.draw(env, done)
        if mode in ("recording", "null"):
            m.record_post_step()
    elapsed = time.perf_counter() - t0
    rows = 0
    if mode == "recording":
        m.close()
        rows = m.counts["draws"]
    return elapsed / steps, rows


def simulation_loop(steps: int, repeats: int, tmp: Path) -> list[tuple[str, str, str]]:
    reps = _calibrate()
    modes = ("plain", "without", "null", "recording")
    times: dict[str, list[float]] = {m: [] for m in modes}
    rows = 0
    for _ in range(repeats):  # interleaved: a slow spell of the machine hits every mode
        for mode in modes:
            t, r = _loop(mode, steps, reps, tmp)
            times[mode].append(t)
            rows = max(rows, r)
    best = {m: min(v) for m, v in times.items()}
    base = best["without"]

    def spread(mode: str) -> str:
        ratios = sorted(
            100 * (a / b - 1) for a, b in zip(times[mode], times["without"], strict=True)
        )
        return f"per-repeat {ratios[0]:+.1f} .. {ratios[-1]:+.1f} %"

    rows_per_step = rows / steps
    own = best["recording"] - base
    return [
        ("(b) step, plain unkeyed draws", f"{best['plain'] * 1e3:.3f} ms", "reference"),
        ("(b) step, keyed draws, no recording", f"{base * 1e3:.3f} ms", "baseline"),
        (
            "(b) step, null manager",
            f"{best['null'] * 1e3:.3f} ms",
            f"{(best['null'] / base - 1) * 100:+.2f} % (goal <= 0.5); {spread('null')}",
        ),
        (
            "(b) step, recording",
            f"{best['recording'] * 1e3:.3f} ms",
            f"{(best['recording'] / base - 1) * 100:+.2f} % (goal <= 3); {spread('recording')}",
        ),
        (
            "(b) recorder's own cost",
            f"{own * 1e6:.1f} us/step",
            f"{own / max(rows_per_step, 1) * 1e9:.0f} ns/draw row ({rows_per_step:.0f} rows/step)",
        ),
    ]


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
    parser.add_argument("--quick", action="store_true", help="smaller sizes (~30 s)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="varirec-bench-"))
    try:
        rows = throughput(2_000_000 if args.quick else 10_000_000, tmp)
        rows += simulation_loop(150 if args.quick else 400, 2 if args.quick else 7, tmp)
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
