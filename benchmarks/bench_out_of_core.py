"""The episode table on a selection larger than memory: DuckDB path vs hand-written SQL.

Two steps, because recording a large dataset takes a while (about 1 M draw rows/s here):

    python benchmarks/bench_out_of_core.py generate /tmp/ooc-200M --rows 200_000_000
    python benchmarks/bench_out_of_core.py measure /tmp/ooc-200M [--memory]

``generate`` records through the real recorder: 20 reset-mode variations, 4096 envs,
every env reset together (one episode = 20 draw rows), plus one build-mode variation
drawn once (an all-env draw), so the as-of join sees both kinds of draws.

``measure`` runs each case in its own subprocess and reports wall time and peak
resident memory (``ru_maxrss`` of the child):

- ``episode_table(engine="duckdb")``: the out-of-core path of varirec.
- ``hand-written ASOF JOIN``: DuckDB's own ``ASOF LEFT JOIN`` of episodes to draws per
  factor, pivoted, written by hand on the same files and memory limit.
- ``episode_table(engine="memory")`` (with ``--memory``): the in-memory path, where
  it fits.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("root", type=Path)
    g.add_argument("--rows", type=int, default=200_000_000)
    args = parser.parse_args(argv)
    if args.cmd == "generate":
        generate(args.root, args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
