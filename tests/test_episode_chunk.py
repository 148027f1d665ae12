"""EpisodeChunk: numpy, Arrow and missing (None) columns become one ``episodes`` table."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from varirec.recording import episode_chunk
from varirec.recording.block_pool import BlockPool
from varirec.recording.device_outcomes import OUTCOMES_BLOCK
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


def _recorded_parts(rng, sizes, pool):
    """Compiled recorded resets' parts: one int64 block each, rows as RECORDED_ROWS,
    taken from a pool as the kernel's (one more column than it keeps)."""
    parts = []
    for n in sizes:
        block = pool.take(len(RECORDED_ROWS), n + 1)
        block[0] = rng.permutation(50)[: n + 1]
        block[1 : 1 + len(FINISHED)] = rng.integers(-1, 1000, (len(FINISHED), n + 1))
        block[-4] = rng.random(n + 1).view(np.int64)  # return, as its bits
        success = np.where(rng.random(n + 1) < 0.3, np.nan, rng.random(n + 1).round())
        block[-3] = success.view(np.int64)
        block[-2:] = rng.integers(0, 2, (2, n + 1))
        pool.keep(len(RECORDED_ROWS), n)
        parts.append({RECORDED_BLOCK: block[:, :n]})
    return parts


def _device_parts(rng, sizes, pool, rows=60):
    """A device recorder's parts: the tracker's block (from a pool) beside the outcomes'
    block, a view of host rows that a new buffer follows when full (as the ring's)."""
    parts, out, used = [], np.empty((0, 4)), 0
    for n in sizes:
        if used + n > len(out):
            out, used = np.empty((rows, 4)), 0
        out[used : used + n, :2] = rng.random((n, 2))
        out[used : used + n, 1][rng.random(n) < 0.3] = np.nan  # success unknown
        out[used : used + n, 2:] = rng.integers(0, 2, (n, 2))
        block = pool.take(len(FINISHED), n)
        block[:] = rng.integers(-1, 1000, block.shape)
        pool.keep(len(FINISHED), n)
        ids = np.asarray(rng.permutation(50)[:n], np.int32)
        parts.append({OUTCOMES_BLOCK: out[used : used + n].T, "env_id": ids, FINISHED_BLOCK: block})
        used += n
    return parts


def _column_part(rng, env_ids):
    """The general path's part: a column per key."""
    n = len(env_ids)
    return {
        "return": rng.random(n),
        "success": np.where(rng.random(n) < 0.3, np.nan, 1.0),
        "terminated": rng.integers(0, 2, n).astype(bool),
        "truncated": np.zeros(n, bool),
        "env_id": np.asarray(env_ids, np.int32),
        FINISHED_BLOCK: rng.integers(-1, 1000, (len(FINISHED), n)),
    }


@pytest.mark.parametrize("make", [_recorded_parts, _device_parts])
def test_many_parts_of_one_shape_give_the_rows_each_part_gives_alone(make, monkeypatch):
    # Parts of one shape are joined before they are split (the writer holds the GIL a
    # sixth as long): the rows must be those the general path gives part by part.
    rng = np.random.default_rng(3)
    schema = episodes_schema()
    pool = BlockPool(capacity=500)  # full midway: two buffers, joined by a copy
    parts = make(rng, rng.integers(1, 30, 40), pool)
    splits = []
    split = episode_chunk._split
    monkeypatch.setattr(episode_chunk, "_split", lambda p: splits.append(1) or split(p))
    joined = EpisodeChunk(parts, schema).to_arrow()
    assert len(splits) == 1  # joined, then split once
    alone = pa.concat_tables(EpisodeChunk([p], schema).to_arrow() for p in parts)
    assert joined.equals(alone)
    assert joined.num_rows == sum(part_rows(p) for p in parts)
    assert joined.column("success").null_count > 0  # NaN success: null on both paths


@pytest.mark.parametrize("make", [_recorded_parts, _device_parts])
def test_blocks_side_by_side_in_one_buffer_are_joined_without_a_copy(make):
    # The writer thread holds the GIL while it copies: a hand-over's blocks, written
    # side by side on the main thread, are joined as one view of their buffer.
    rng = np.random.default_rng(5)
    parts = make(rng, rng.integers(1, 30, 20), BlockPool(capacity=10_000))
    for key in parts[0].keys() & {FINISHED_BLOCK, RECORDED_BLOCK, OUTCOMES_BLOCK}:
        blocks = [p[key] for p in parts]
        if key == OUTCOMES_BLOCK:  # the ring's host buffers: in one buffer, one view too
            blocks = [b for b in blocks if b.base is blocks[0].base]
        joined = episode_chunk._joined(blocks)
        assert np.shares_memory(joined, blocks[0]) and not joined.flags.writeable
        assert np.array_equal(joined, np.concatenate(blocks, axis=1), equal_nan=True)
        later = make(rng, [7], BlockPool(capacity=10))[0][key]  # another buffer: copied
        both = episode_chunk._joined([*blocks, later])
        assert not np.shares_memory(both, blocks[0])
        assert np.array_equal(both, np.concatenate([*blocks, later], axis=1), equal_nan=True)


def test_views_of_other_arrays_or_not_side_by_side_are_copied():
    buffer = np.arange(20).reshape(2, 10)
    a, b, c = buffer[:, 0:3], buffer[:, 4:6], buffer[:, 6:9]  # a gap between a and b
    joined = episode_chunk._joined([a, b, c])
    assert np.array_equal(joined, np.concatenate([a, b, c], axis=1))
    assert not np.shares_memory(joined, buffer)
    other = np.arange(20).reshape(2, 10)[:, 3:5]  # right after a, but in another array
    assert not np.shares_memory(episode_chunk._joined([a, other]), other)
    assert episode_chunk._joined([b, c]).base is not None  # side by side: a view
    assert np.shares_memory(episode_chunk._joined([b, c]), buffer)


def test_parts_whose_blocks_do_not_join_take_the_general_path():
    rng = np.random.default_rng(4)
    schema = episodes_schema()
    a, b = _column_part(rng, [0, 1, 2]), _column_part(rng, [3, 4])
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
