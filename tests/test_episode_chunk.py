"""EpisodeChunk: numpy, Arrow and missing (None) columns become one ``episodes`` table."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from varirec.recording import episode_chunk
from varirec.recording.episode_chunk import RECORDED_BLOCK, RECORDED_ROWS, EpisodeChunk, part_rows
from varirec.recording.episodes import FINISHED, FINISHED_BLOCK
from varirec.storage import episodes_schema
from varirec.storage.schema import conform

SCHEMA = pa.schema(
    [
        ("env_id", pa.int32()),
        ("success", pa.bool_()),
        ("seed", pa.int64()),
        ("time_end", pa.timestamp("us", tz="UTC")),
        ("max_force", pa.float32()),
    ]
)
T0 = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)


def part(env_ids, **columns):
    n = len(env_ids)
    base = {
        "env_id": np.asarray(env_ids),
        "success": np.ones(n),
        "seed": np.arange(n, dtype=np.int64),
        "time_end": np.full(n, T0, np.int64),
    }
    return {**base, **columns}


def test_a_term_that_returns_nothing_for_some_resets_gives_nulls_there():
    parts = [
        part([0, 1], max_force=np.array([1.5, 2.5])),
        part([2]),  # the term returned None: no max_force key
        part([3], max_force=None),
    ]
    table = EpisodeChunk(parts, SCHEMA).to_arrow()
    assert table.column("max_force").to_pylist() == [1.5, 2.5, None, None]
    assert table.column("env_id").to_pylist() == [0, 1, 2, 3]
    assert table.schema == SCHEMA


def test_arrow_columns_mix_with_numpy_ones():
    parts = [
        part([0, 1], max_force=pa.array([1.0, None])),
        part([2], max_force=np.array([3.0])),
        part([3, 4], max_force=pa.chunked_array([[4.0], [5.0]], pa.float64())),
        part([5], success=pa.array([None], pa.bool_())),
    ]
    table = EpisodeChunk(parts, SCHEMA).to_arrow()
    assert table.column("max_force").to_pylist() == [1.0, None, 3.0, 4.0, 5.0, None]
    assert table.column("max_force").type == pa.float32()
    assert table.column("success").to_pylist() == [True] * 5 + [None]


def test_nan_success_is_null_and_negative_seeds_are_null():
    parts = [
        part([0, 1, 2], success=np.array([1.0, np.nan, 0.0]), seed=np.array([7, -1, 9])),
        part([3], success=np.array([np.nan]), seed=np.array([-5])),
    ]
    table = EpisodeChunk(parts, SCHEMA).to_arrow()
    assert table.column("success").to_pylist() == [True, None, False, None]
    assert table.column("seed").to_pylist() == [7, None, 9, None]


def test_integer_microseconds_become_utc_timestamps():
    parts = [part([0], time_end=np.array([T0])), part([1], time_end=np.array([T0 + 1_500_000]))]
    times = EpisodeChunk(parts, SCHEMA).to_arrow().column("time_end").to_pylist()
    assert times == [
        datetime(2025, 1, 1, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 0, 1, 500_000, tzinfo=UTC),
    ]


def test_a_value_that_does_not_fit_the_column_raises_instead_of_wrapping():
    with pytest.raises(pa.ArrowInvalid):
        EpisodeChunk([part([0], max_force=None, seed=pa.array([2.5]))], SCHEMA).to_arrow()


def test_len_counts_rows_and_the_table_conforms_to_the_episodes_schema():
    schema = episodes_schema([("max_force", pa.float32())])
    n = 3
    columns = {
        "env_id": np.arange(n),
        "episode": np.zeros(n, np.int64),
        "start_seq": np.arange(n),
        "end_seq": np.arange(n) + 5,
        "length": np.full(n, 5),
        "return": np.ones(n),
        "success": np.array([1.0, np.nan, 0.0]),
        "terminated": np.ones(n, bool),
        "truncated": np.zeros(n, bool),
        "sample_id": np.full(n, -1),
        "seed": np.arange(n),
        "time_start": np.full(n, T0),
        "time_end": np.full(n, T0),
    }
    chunk = EpisodeChunk([columns, {**columns, "max_force": np.ones(n)}], schema)
    assert len(chunk) == 2 * n
    table = chunk.to_arrow()
    assert conform(table, schema) is table
    assert table.column("max_force").null_count == n
    assert table.column("sample_id").null_count == 2 * n


def _recorded_part(rng, env_ids):
    """A compiled recorded reset's part: one int64 block, rows as RECORDED_ROWS."""
    n = len(env_ids)
    block = np.empty((len(RECORDED_ROWS), n), np.int64)
    block[0] = env_ids
    block[1 : 1 + len(FINISHED)] = rng.integers(-1, 1000, (len(FINISHED), n))
    block[-4] = rng.random(n).view(np.int64)  # return, as its bits
    block[-3] = np.where(rng.random(n) < 0.3, np.nan, rng.random(n).round()).view(np.int64)
    block[-2:] = rng.integers(0, 2, (2, n))
    return {RECORDED_BLOCK: block[:, : n - 1]}  # a slice of a larger block, as the kernel's


def _device_part(rng, env_ids):
    """A device recorder's part: the tracker's block beside the outcome columns."""
    n = len(env_ids)
    return {
        "return": rng.random(n),
        "success": np.where(rng.random(n) < 0.3, np.nan, 1.0),
        "terminated": rng.integers(0, 2, n).astype(np.float64),
        "truncated": np.zeros(n),
        "env_id": np.asarray(env_ids, np.int32),
        FINISHED_BLOCK: rng.integers(-1, 1000, (len(FINISHED), n)),
    }


@pytest.mark.parametrize("make", [_recorded_part, _device_part])
def test_many_parts_of_one_shape_give_the_rows_each_part_gives_alone(make, monkeypatch):
    # Parts of one shape are joined before they are split (the writer holds the GIL a
    # sixth as long): the rows must be those the general path gives part by part.
    rng = np.random.default_rng(3)
    schema = episodes_schema()
    parts = [make(rng, rng.permutation(50)[: rng.integers(2, 30)]) for _ in range(40)]
    splits = []
    split = episode_chunk._split
    monkeypatch.setattr(episode_chunk, "_split", lambda p: splits.append(1) or split(p))
    joined = EpisodeChunk(parts, schema).to_arrow()
    assert len(splits) == 1  # joined, then split once
    alone = pa.concat_tables(EpisodeChunk([p], schema).to_arrow() for p in parts)
    assert joined.equals(alone)
    assert joined.num_rows == sum(part_rows(p) for p in parts)
    assert joined.column("success").null_count > 0  # NaN success: null on both paths


def test_parts_whose_blocks_do_not_join_take_the_general_path():
    rng = np.random.default_rng(4)
    schema = episodes_schema()
    a, b = _device_part(rng, [0, 1, 2]), _device_part(rng, [3, 4])
    b["return"] = b["return"].reshape(1, 2)  # another shape: not joined, refused as before
    with pytest.raises((ValueError, pa.ArrowInvalid)):
        EpisodeChunk([a, b], schema).to_arrow()
    b["return"] = pa.array([0.5, 1.5])  # Arrow in one part: column by column
    table = EpisodeChunk([a, b], schema).to_arrow()
    assert table.column("return").to_pylist()[3:] == [0.5, 1.5]


@pytest.mark.parametrize("kind", [pa.list_(pa.float64(), 2), pa.list_(pa.float32())])
def test_a_list_column_takes_an_array_of_k_values_per_episode(kind):
    schema = pa.schema([("env_id", pa.int32()), ("final_pos", kind)])
    parts = [
        {"env_id": np.array([0, 1]), "final_pos": np.array([[0.5, 1.5], [2.5, 3.5]])},
        {"env_id": np.array([2]), "final_pos": np.array([[4.5, 5.5]])},
    ]
    table = EpisodeChunk(parts, schema).to_arrow()
    assert table.schema == schema
    assert table.column("final_pos").to_pylist() == [[0.5, 1.5], [2.5, 3.5], [4.5, 5.5]]


def test_an_array_of_several_values_per_episode_in_a_scalar_column_is_named():
    schema = pa.schema([("env_id", pa.int32()), ("force", pa.float64())])
    part = {"env_id": np.array([0, 1]), "force": np.ones((2, 3))}
    with pytest.raises(ValueError, match=r"'force' \(double\) got an array of shape \(2, 3\)"):
        EpisodeChunk([part], schema).to_arrow()
