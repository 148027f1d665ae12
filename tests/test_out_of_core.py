"""The out-of-core benchmark compares like with like: its hand-written DuckDB ASOF JOIN
gives the episode table's values, on a dataset its own generator records."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from varirec.analysis.tables.episode_table import episode_table

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
pytestmark = pytest.mark.skipif(
    not BENCHMARKS.is_dir(), reason="the benchmarks are not shipped with the wheel"
)
duckdb = pytest.importorskip("duckdb")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_hand_asof_join_equals_both_engines(tmp_path) -> None:
    bench = _load("bench_out_of_core")
    bench.generate(tmp_path, 2 * bench.NUM_ENVS * bench.NUM_VARS)  # two resets of every env
    files = sorted(str(p) for p in (tmp_path / "run_id=r" / "draws").glob("part-*.parquet"))
    episodes = sorted(str(p) for p in (tmp_path / "run_id=r" / "episodes").glob("*.parquet"))
    factors = [f"object{i}.param" for i in range(bench.NUM_VARS)]
    hand = duckdb.connect().sql(bench._hand_asof_sql(files, episodes, factors)).to_df()
    hand = hand.set_index(["env_id", "episode"]).sort_index()
    assert len(hand) == 2 * bench.NUM_ENVS
    for engine in ("memory", "duckdb"):
        table = episode_table(tmp_path, engine=engine, drop_constant=False).frame
        table = table.set_index(["env_id", "episode"]).sort_index()
        for i, name in enumerate(factors):
            np.testing.assert_array_equal(table[name].to_numpy(), hand[f"v{i}"].to_numpy())
        # the build-mode draw, one for every env, is a factor too
        assert table["light.intensity"].nunique() == 1
