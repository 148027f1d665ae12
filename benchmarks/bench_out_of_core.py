"""The episode table on a selection larger than memory: DuckDB path vs hand-written SQL.

Two steps, because recording a large dataset takes a while (about 1 M draw rows/s here):

    python benchmarks/bench_out_of_core.py generate /tmp/ooc-200M --rows 200_000_000
    python benchmarks/bench_out_of_core.py measure /tmp/ooc-200M [--cases read memory ...]
        [--budget GIB] [--repeat N]

``generate`` records through the real recorder: 20 reset-mode variations, 4096 envs,
every env reset together (one episode = 20 draw rows), plus one build-mode variation
drawn once (an all-env draw), so the as-of join sees both kinds of draws.

``measure`` runs each case in its own subprocess (``--repeat`` rounds, the cases
interleaved, medians) and prints one table: wall time, CPU time (user + system, every
thread, of the case itself, not the interpreter's start; on a shared machine the
fairer figure), peak resident memory (``ru_maxrss`` of the child, in GiB and GB), and
the ratios to the plain read and to the hand-written join:

- ``episode_table(engine="duckdb")``: the out-of-core path of varirec.
- ``hand-written ASOF JOIN``: DuckDB's own ``ASOF LEFT JOIN`` of episodes to draws per
  factor, joined on the episode, written by hand on the same files, with the memory
  limit ``episode_table`` gives DuckDB (half the budget).
- ``episode_table(engine="memory")`` (``--cases ... memory``): the in-memory path,
  where it fits.
- ``pyarrow read``: the plain read of the draw columns (the floor).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

NUM_ENVS, NUM_VARS = 4096, 20


def generate(root: Path, rows: int) -> None:
    """Record about ``rows`` draw rows into ``root`` (run id ``r``)."""
    import varirec as vr

    reset_vars = [
        vr.Variation(f"object{i}.param", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)))
        for i in range(NUM_VARS)
    ]
    light = vr.Variation(
        "light.intensity",
        vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1), mode="build"),
    )
    variations = vr.VariationSet([*reset_vars, light])
    rounds = max(1, rows // (NUM_ENVS * NUM_VARS))
    ones = np.ones(NUM_ENVS)
    t0 = time.perf_counter()
    with vr.RecorderManager(NUM_ENVS, variations=variations, output=root, run_id="r") as m:
        m.draw_build()
        for r in range(rounds):
            m.reset(None, None)
            m.record_step(reward=ones, success=ones > 0.5)
            if r % 100 == 0:
                print(f"round {r}/{rounds} {time.perf_counter() - t0:.0f} s", flush=True)
        m.record_pre_reset(None)
    print(f"done: {rounds * NUM_ENVS * NUM_VARS:,} draw rows in {time.perf_counter() - t0:.0f} s")


def _hand_asof_sql(files: list[str], episodes: list[str], factors: list[str]) -> str:
    """DuckDB's ASOF JOIN written by hand: one join per factor, joined on the episode."""
    draws = f"read_parquet({files!r})"
    parts = []
    for i, key in enumerate(factors):
        parts.append(
            f"f{i} AS (SELECT e.env_id, e.episode, d.value AS v{i} FROM "
            f"read_parquet({episodes!r}) e ASOF LEFT JOIN "
            f"(SELECT env_id, seq, value FROM {draws} WHERE variation = '{key}') d "
            "ON e.env_id = d.env_id AND e.start_seq >= d.seq)"
        )
    select = ", ".join(f"f{i}.v{i}" for i in range(len(factors)))
    joins = " ".join(f"JOIN f{i} USING (env_id, episode)" for i in range(1, len(factors)))
    return f"WITH {', '.join(parts)} SELECT f0.env_id, f0.episode, {select} FROM f0 {joins}"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime  # every thread; fairer than wall on a shared host


def _case(case: str, root: str, budget: int, out: str, tmp: str) -> None:
    """One measured case, in its own process (peak RSS is per process); imports are not
    timed (``import varirec.analysis`` alone takes a second)."""
    import duckdb
    import pyarrow.dataset as pads

    from varirec.analysis.tables.episode_table import episode_table

    cpu0, t0 = _cpu(), time.perf_counter()
    if case == "read":
        # Streamed, not held: the floor of any engine that reads every draw once.
        scanner = pads.dataset(f"{root}/run_id=r/draws", format="parquet").scanner(
            columns=["seq", "variation", "component", "env_id", "episode", "phase", "value"]
        )
        rows = sum(batch.num_rows for batch in scanner.to_batches())
        result = f"{rows:,} rows"
    elif case in ("memory", "duckdb"):
        table = episode_table(root, engine=case, memory_budget=budget, temp_directory=tmp)
        result = f"{len(table):,} episodes x {len(table.factors)} factors"
    else:
        files = sorted(str(p) for p in Path(root, "run_id=r", "draws").glob("part-*.parquet"))
        episodes = sorted(str(p) for p in Path(root, "run_id=r", "episodes").glob("*.parquet"))
        factors = [f"object{i}.param" for i in range(NUM_VARS)]
        con = duckdb.connect()
        # The memory DuckDB gets inside episode_table: half the budget.
        con.execute(f"SET memory_limit = '{budget // 2 // 2**20}MB'")
        con.execute("SET temp_directory = ?", [tmp])
        table = con.sql(_hand_asof_sql(files, episodes, factors)).to_arrow_table()
        result = f"{table.num_rows:,} episodes x {table.num_columns - 2} factors"
    elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    Path(out).write_text(
        json.dumps({"time_s": elapsed, "cpu_s": cpu, "peak_bytes": peak, "result": result})
    )


CASES = {
    "read": "pyarrow scans the draw columns (streamed)",
    "memory": "episode_table(engine='memory')",
    "duckdb": "episode_table(engine='duckdb')",
    "hand": "hand-written DuckDB ASOF JOIN per factor",
}


def _run_case(case: str, root: Path, budget: int) -> dict | None:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="varirec-ooc-") as tmp:
        out = Path(tmp) / "out.json"
        done = subprocess.run(
            [sys.executable, __file__, "case", case, str(root), str(budget), str(out), tmp],
            check=False,
        )
        if done.returncode != 0:
            print(f"{CASES[case]}: failed with exit status {done.returncode}", flush=True)
            return None
        return json.loads(out.read_text())


def _ratio(got: dict | None, base: dict | None, key: str) -> str:
    return "" if got is None or base is None else f"{got[key] / base[key]:.2f}"


def measure(root: Path, cases: list[str], budget: int, repeat: int = 1) -> None:
    """Run each case in a subprocess, ``repeat`` rounds with the cases interleaved; print
    one table of medians: wall, CPU, peak RSS, and ratios to the read and the hand join."""
    import os

    print(f"{root}: budget {budget / 2**30:.2f} GiB, load {os.getloadavg()} (1, 5, 15 min)")
    runs: dict[str, list[dict]] = {case: [] for case in cases}
    for _ in range(repeat):
        for case in cases:
            got = _run_case(case, root, budget)
            if got is not None:
                runs[case].append(got)
                print(f"  {case}: {got}", flush=True)  # survives an interrupted run
    med: dict[str, dict | None] = {}
    for case, got in runs.items():
        med[case] = None
        if got:
            med[case] = {k: float(np.median([g[k] for g in got])) for k in got[0] if k != "result"}
            med[case]["result"] = got[0]["result"]
    header = (
        f"{'case':<44} {'wall [s]':>8} {'CPU [s]':>8} {'peak RSS':>16} "
        f"{'wall/read':>9} {'CPU/read':>8} {'wall/hand':>9} {'CPU/hand':>8}  result"
    )
    print(header)
    print("-" * len(header))
    for case in cases:
        got = med[case]
        if got is None:
            continue
        rss = f"{got['peak_bytes'] / 2**30:.2f} GiB/{got['peak_bytes'] / 1e9:.2f} GB"
        read, hand = med.get("read"), med.get("hand")
        print(
            f"{CASES[case]:<44} {got['time_s']:8.1f} {got['cpu_s']:8.1f} {rss:>16} "
            f"{_ratio(got, read, 'time_s'):>9} {_ratio(got, read, 'cpu_s'):>8} "
            f"{_ratio(got, hand, 'time_s'):>9} {_ratio(got, hand, 'cpu_s'):>8}  "
            f"{got['result']} (median of {len(runs[case])})",
            flush=True,
        )
    print(f"load after: {os.getloadavg()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("root", type=Path)
    g.add_argument("--rows", type=int, default=200_000_000)
    m = sub.add_parser("measure")
    m.add_argument("root", type=Path)
    m.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["read", "duckdb", "hand"])
    m.add_argument("--budget", type=float, default=2.0, help="memory budget in GiB")
    m.add_argument("--repeat", type=int, default=1, help="rounds, cases interleaved (medians)")
    c = sub.add_parser("case")
    c.add_argument("case")
    c.add_argument("root")
    c.add_argument("budget", type=int)
    c.add_argument("out")
    c.add_argument("tmp")
    args = parser.parse_args(argv)
    if args.cmd == "generate":
        generate(args.root, args.rows)
    elif args.cmd == "measure":
        measure(args.root, args.cases, int(args.budget * 2**30), args.repeat)
    else:
        _case(args.case, args.root, args.budget, args.out, args.tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
