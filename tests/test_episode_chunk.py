"""EpisodeChunk: numpy, Arrow and missing (None) columns become one ``episodes`` table."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from varirec.recording.episode_chunk import EpisodeChunk
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
