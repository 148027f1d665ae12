"""PartWriter, TableSink and the schema checks: row groups, rotation, temp names, errors."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from varirec.storage import parts
from varirec.storage.parts import PartWriter
from varirec.storage.schema import (
    check_writer_id,
    conform,
    draws_schema,
    episodes_schema,
    parse_part_name,
    part_name,
    table_schema,
)
from varirec.storage.sink import TableSink


def make_draws(n: int, start: int = 0) -> pa.Table:
    """A valid draws table of ``n`` rows with seq ``start..start+n-1``."""
    seq = np.arange(start, start + n)
    variation = np.array(["cube.mass", "light.gain"])[seq % 2]
    return pa.table(
        {
            "seq": seq,
            "variation": pa.array(variation).dictionary_encode(),
            "component": np.zeros(n, np.int16),
            "env_id": (seq % 8).astype(np.int32),
            "episode": seq // 8,
            "step": np.zeros(n, np.int64),
            "phase": pa.array(["reset"] * n).dictionary_encode(),
            "draw_seq": np.zeros(n, np.int32),
            "value": seq * 0.5,
            "label": pa.nulls(n, pa.string()),
            "sample_id": pa.nulls(n, pa.int64()),
            "time": pa.array([datetime(2025, 1, 1, tzinfo=UTC)] * n, pa.timestamp("us", "UTC")),
        }
    )


def files(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_part_names_round_trip_and_temp_names_do_not_parse():
    assert part_name("gpu01_42_ab12", 7) == "part-gpu01_42_ab12-00007.parquet"
    assert parse_part_name(part_name("gpu01.x_42", 123456)) == ("gpu01.x_42", 123456)
    assert parse_part_name(".part-w-00001.parquet.tmp") is None
    assert parse_part_name("run.json") is None


@pytest.mark.parametrize("bad", ["a-b", "", "../x", ".hidden", "a/b", "x" * 101])
def test_writer_id_rejects_names_that_break_part_names(bad):
    with pytest.raises(ValueError, match="`writer_id` must be letters, digits"):
        check_writer_id(bad)


def test_row_groups_have_row_group_size_rows_and_remainder_is_written_on_close(tmp_path):
    writer = PartWriter(tmp_path / "draws", "w1", schema=draws_schema(), row_group_size=256)
    for i in range(10):
        writer.write(make_draws(100, start=100 * i))
        assert writer.rows_buffered < 256  # memory holds less than one row group
    writer.close()
    meta = pq.ParquetFile(writer.parts[0]).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [256, 256, 256, 232]
    assert pq.read_table(writer.parts[0]).column("seq").to_pylist() == list(range(1000))


def test_parts_use_zstd_and_dictionary_encoding_for_strings_and_episodes(tmp_path):
    writer = PartWriter(tmp_path, "w1", schema=draws_schema())
    writer.write(make_draws(500))
    writer.close()
    rg = pq.ParquetFile(writer.parts[0]).metadata.row_group(0)
    columns = {rg.column(i).path_in_schema: rg.column(i) for i in range(rg.num_columns)}
    assert {c.compression for c in columns.values()} == {"ZSTD"}
    assert "RLE_DICTIONARY" in columns["variation"].encodings
    assert "RLE_DICTIONARY" in columns["phase"].encodings
    # The episode index too (an int64 column to readers, its statistics kept).
    assert "RLE_DICTIONARY" in columns["episode"].encodings
    assert "RLE_DICTIONARY" not in columns["env_id"].encodings
    assert columns["episode"].is_stats_set
    back = pq.read_table(writer.parts[0])
    assert back.schema.equals(draws_schema(), check_metadata=False)
    assert back.column("episode").to_pylist() == make_draws(500).column("episode").to_pylist()


def test_parts_rotate_at_max_rows_with_sequential_names_and_no_temp_left(tmp_path):
    writer = PartWriter(
        tmp_path, "w1", schema=draws_schema(), max_rows_per_part=300, row_group_size=128
    )
    for i in range(10):
        writer.write(make_draws(100, start=100 * i))
    writer.close()
    names = files(tmp_path)
    assert names == [part_name("w1", i) for i in range(4)]
    sizes = [pq.ParquetFile(tmp_path / n).metadata.num_rows for n in names]
    assert sizes == [300, 300, 300, 100]
    seq = pa.concat_tables(pq.read_table(tmp_path / n) for n in names).column("seq")
    assert seq.to_pylist() == list(range(1000))
    assert writer.rows_written == 1000


def test_open_part_is_hidden_temp_until_closed(tmp_path):
    writer = PartWriter(tmp_path, "w1", schema=draws_schema(), row_group_size=50)
    writer.write(make_draws(120))  # two row groups written, 20 rows buffered
    assert files(tmp_path) == [".part-w1-00000.parquet.tmp"]
    assert writer.rows_pending == 120
    writer.flush()
    assert files(tmp_path) == ["part-w1-00000.parquet"]
    assert writer.rows_pending == 0
    writer.write(make_draws(10, start=120))
    writer.close()
    assert files(tmp_path) == ["part-w1-00000.parquet", "part-w1-00001.parquet"]


def test_time_rotation_closes_a_part_once_its_oldest_row_is_old(tmp_path):
    writer = PartWriter(tmp_path, "w1", schema=draws_schema(), max_seconds_per_part=0.05)
    writer.write(make_draws(10))
    assert writer.maybe_rotate() is False
    time.sleep(0.06)
    assert writer.maybe_rotate() is True
    assert files(tmp_path) == ["part-w1-00000.parquet"]
    assert writer.seconds_until_rotation() is None


def test_new_writer_with_same_id_continues_numbering_and_never_overwrites(tmp_path):
    first = PartWriter(tmp_path, "w1", schema=draws_schema())
    first.write(make_draws(5))
    first.close()
    before = (tmp_path / part_name("w1", 0)).read_bytes()
    second = PartWriter(tmp_path, "w1", schema=draws_schema())
    second.write(make_draws(7))
    second.close()
    assert files(tmp_path) == [part_name("w1", 0), part_name("w1", 1)]
    assert (tmp_path / part_name("w1", 0)).read_bytes() == before


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda t: t.drop_columns(["value"]), r"missing columns \['value'\]"),
        (lambda t: t.append_column("extra", pa.array([1] * t.num_rows)), "unexpected columns"),
        (
            lambda t: t.set_column(8, "value", pa.array(["x"] * t.num_rows)),
            "column 'value' has type string",
        ),
        (
            lambda t: t.set_column(3, "env_id", pa.array([2**40] * t.num_rows)),
            "column 'env_id' has type int64",
        ),
        (
            lambda t: t.set_column(0, "seq", pa.array([None] * t.num_rows, pa.int64())),
            "column 'seq' holds 3 nulls",
        ),
    ],
)
def test_schema_mismatch_raises_before_anything_is_written(tmp_path, change, match):
    writer = PartWriter(
        tmp_path / "draws", "w1", schema=draws_schema(), table="draws", row_group_size=2
    )
    with pytest.raises(ValueError, match=match) as info:
        writer.write(change(make_draws(3)))
    assert "Expected columns (seq: int64" in str(info.value)
    assert files(tmp_path / "draws") == []
    assert writer.rows_pending == 0


def test_safe_casts_are_applied_and_columns_reordered():
    table = make_draws(4)
    table = table.set_column(3, "env_id", pa.array([1, 2, 3, 4], pa.int64()))
    reordered = table.select(list(reversed(table.column_names)))
    out = conform(reordered, draws_schema())
    assert out.schema.equals(draws_schema())
    assert out.column("env_id").to_pylist() == [1, 2, 3, 4]


def test_episodes_extra_fields_follow_core_and_duplicates_are_rejected():
    schema = episodes_schema([("max_force", pa.float32()), pa.field("slipped", pa.bool_())])
    assert schema.names[:2] == ["env_id", "episode"]
    assert schema.names[-2:] == ["max_force", "slipped"]
    incoming = schema.insert(0, pa.field("note", pa.string()))
    assert table_schema("episodes", incoming).names[-3:] == ["note", "max_force", "slipped"]
    with pytest.raises(ValueError, match=r"duplicates \['success'\]"):
        episodes_schema([("success", pa.float64())])


def test_invalid_limits_are_rejected():
    with pytest.raises(ValueError, match="`row_group_size` must be a positive number, got 0"):
        PartWriter("unused", "w1", row_group_size=0)
    with pytest.raises(TypeError, match=r"unknown part options \['max_rows'\]"):
        TableSink("unused", "w1", background=False, max_rows=5)


class SlowBatch:
    """A to_arrow() object that records the thread that converted it."""

    def __init__(self, table: pa.Table, gate: threading.Event | None = None) -> None:
        self.table, self.gate, self.thread = table, gate, None

    def to_arrow(self) -> pa.Table:
        self.thread = threading.current_thread()
        if self.gate is not None:
            self.gate.wait(10)
        return self.table


def test_sink_converts_on_its_thread_and_reraises_thread_errors_once(tmp_path):
    sink = TableSink(tmp_path, "w1")
    good = SlowBatch(make_draws(3))
    sink.submit("draws", good)
    sink.submit("draws", SlowBatch(make_draws(2).drop_columns(["time"])))  # bad, async
    with pytest.raises(ValueError, match=r"missing columns \['time'\]"):
        sink.flush()
    sink.submit("draws", make_draws(4, start=3))  # the error was raised once; writing goes on
    sink.flush()
    assert good.thread is not threading.current_thread()
    assert sink.close() is None
    seq = pq.read_table(tmp_path / "draws").column("seq").to_pylist()
    assert sorted(seq) == list(range(7))
    assert sink.counts == {"draws": 7}


def test_sink_queue_gives_back_pressure(tmp_path):
    gate = threading.Event()
    sink = TableSink(tmp_path, "w1", max_queue=1)
    sink.submit("draws", SlowBatch(make_draws(1), gate))  # the thread blocks in to_arrow
    sink.submit("draws", make_draws(1, start=1))  # fills the queue
    third = threading.Thread(target=sink.submit, args=("draws", make_draws(1, start=2)))
    third.start()
    third.join(0.3)
    assert third.is_alive()  # blocked: the queue is full
    gate.set()
    third.join(5)
    assert not third.is_alive()
    sink.close()
    assert sink.counts == {"draws": 3}


def test_sink_converts_the_next_batch_while_it_writes_one(tmp_path, monkeypatch):
    """Two threads, in order: while one batch is written the next is converted (a
    machine with a core to spare writes more rows a second); the rows all arrive."""
    writing, release = threading.Event(), threading.Event()
    real = PartWriter._append

    def held(self, data):  # the writing thread stays in the first batch until released
        writing.set()
        release.wait(10)
        return real(self, data)

    monkeypatch.setattr(PartWriter, "_append", held)
    sink = TableSink(tmp_path, "w1", convert_thread=True)
    sink.submit("draws", make_draws(3))
    assert writing.wait(5)
    following = SlowBatch(make_draws(2, start=3))
    sink.submit("draws", following)
    for _ in range(500):  # converted while the first batch is still being written
        if following.thread is not None:
            break
        time.sleep(0.01)
    assert following.thread is not None and not release.is_set()
    assert following.thread.name.startswith("varirec-convert")
    release.set()
    sink.close()
    assert sink.counts == {"draws": 5}
    assert sorted(pq.read_table(tmp_path / "draws").column("seq").to_pylist()) == list(range(5))


@pytest.mark.parametrize("convert_thread", [True, False])
def test_the_first_batch_that_fails_is_the_error_reported(tmp_path, monkeypatch, convert_thread):
    """A converting thread works ahead: a later batch that fails to convert is
    accounted for where it would have been written, so an earlier batch's failed
    write stays the error raised and the run's ``failure`` (as with one thread)."""
    held, release = threading.Event(), threading.Event()
    real = PartWriter._append

    def full_disk(self, data):
        if not held.is_set():
            held.set()
            release.wait(10)
            raise OSError(28, "No space left on device")
        return real(self, data)

    class Unconvertible:
        def __len__(self) -> int:
            return 7

        def to_arrow(self):
            raise TypeError("not a table")

    monkeypatch.setattr(PartWriter, "_append", full_disk)
    sink = TableSink(tmp_path, "w1", convert_thread=convert_thread)
    sink.submit("draws", make_draws(5))
    assert held.wait(5)
    sink.submit("draws", Unconvertible())  # converted (and failed) while batch 1 is held
    time.sleep(0.1)
    release.set()
    with pytest.raises(OSError, match="No space left"):
        sink.flush()  # may raise the pending error before the thread took batch 2
    assert sink.close() is None  # the second error was logged, not kept for later
    assert isinstance(sink.failure, OSError)
    assert sink.lost == {"draws": 7}  # the unconvertible batch (the held append took none)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_close_returns_when_the_converting_thread_died(tmp_path):
    """Nothing passes "close" on from a dead converting thread: close hands it to the
    writing thread itself, which closes its parts."""
    sink = TableSink(tmp_path, "w1", max_queue=1, convert_thread=True)

    def dies(item):  # anything escaping the converting thread's own error handling
        raise MemoryError("the converting thread died")

    sink._converted.put = dies
    sink.submit("draws", make_draws(1))
    sink._converter.join(5)
    assert not sink._converter.is_alive()
    del sink._converted.put  # the queue's own put again, for close
    with pytest.raises(RuntimeError, match=r"varirec-convert-w1 .* stopped unexpectedly"):
        sink.flush()
    closer = threading.Thread(target=sink.close, daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive()
    assert not sink._thread.is_alive()


@pytest.mark.parametrize("convert_thread", [None, True, False])
def test_a_converting_thread_by_default_where_the_process_has_three_cores(tmp_path, convert_thread):
    """A sink converts on a thread of its own where asked, and by default where the
    process may run on 3 or more cores (on fewer, the writing thread converts too);
    either way off the caller's thread."""
    sink = TableSink(tmp_path, "w1", convert_thread=convert_thread)
    batch = SlowBatch(make_draws(2))
    sink.submit("draws", batch)
    sink.flush()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    own = cores >= 3 if convert_thread is None else convert_thread
    expected = "varirec-convert-w1" if own else "varirec-writer-w1"
    assert (sink._converter is not None) == own
    assert batch.thread.name == expected
    sink.close()
    assert sink.counts == {"draws": 2}


def test_statistics_are_kept_for_ids_and_dropped_for_floats_and_strings(tmp_path):
    writer = PartWriter(tmp_path, "w1", schema=draws_schema())
    writer.write(make_draws(50))
    writer.close()
    rg = pq.ParquetFile(writer.parts[0]).metadata.row_group(0)
    columns = {rg.column(i).path_in_schema: rg.column(i) for i in range(rg.num_columns)}
    seq = columns["seq"].statistics
    assert columns["seq"].is_stats_set and seq.has_min_max and (seq.min, seq.max) == (0, 49)
    assert not columns["value"].is_stats_set and columns["value"].statistics is None
    assert not columns["variation"].is_stats_set


def test_fsync_syncs_the_part_before_its_rename_and_then_the_directory(tmp_path, monkeypatch):
    calls = []
    real = parts._fsync_path

    def spy(path, *, directory=False):
        calls.append((path.name, directory, path.exists()))
        real(path, directory=directory)

    monkeypatch.setattr(parts, "_fsync_path", spy)
    writer = PartWriter(tmp_path / "draws", "w1", schema=draws_schema(), fsync=True)
    writer.write(make_draws(20))
    writer.close()
    assert calls == [(".part-w1-00000.parquet.tmp", False, True), ("draws", True, True)]
    assert pq.read_table(writer.parts[0]).num_rows == 20


class FailingWrites:
    """Make the ``n``-th next row-group write raise OSError (disk full), once."""

    def __init__(self, monkeypatch, n: int = 1) -> None:
        self.left, self.real = n, pq.ParquetWriter.write_table
        monkeypatch.setattr(pq.ParquetWriter, "write_table", self)

    def __get__(self, obj, objtype=None):
        return lambda *args, **kwargs: self(obj, *args, **kwargs)

    def __call__(self, writer, *args, **kwargs):
        self.left -= 1
        if self.left == 0:
            raise OSError(28, "No space left on device")
        return self.real(writer, *args, **kwargs)


def final_seqs(directory) -> list[list[int]]:
    return [pq.read_table(p).column("seq").to_pylist() for p in sorted(directory.glob("part-*"))]


def test_a_failed_row_group_write_aborts_the_part_instead_of_leaving_a_hole(tmp_path, monkeypatch):
    writer = PartWriter(tmp_path, "w1", schema=draws_schema(), row_group_size=10)
    writer.write(make_draws(10))  # one row group in the open part
    FailingWrites(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        writer.write(make_draws(30, start=10))
    with pytest.raises(RuntimeError, match="aborted after a write error"):
        writer.write(make_draws(10, start=40))
    writer.close()
    assert files(tmp_path) == [".part-w1-00000.parquet.tmp"]  # never renamed
    assert writer.rows_written == 0 and writer.rows_pending == 0


@pytest.mark.parametrize("background", [False, True])
def test_sink_replaces_a_failed_part_and_counts_only_what_is_readable(
    tmp_path, monkeypatch, background
):
    sink = TableSink(tmp_path, "w1", background=background, row_group_size=10)
    sink.submit("draws", make_draws(10))
    sink.flush()  # part 0: rows 0..9, final
    sink.submit("draws", make_draws(10, start=10))  # part 1 open: rows 10..19
    FailingWrites(monkeypatch, n=2)  # the second row group of the next batch fails
    with pytest.raises(OSError, match="No space left"):
        sink.submit("draws", make_draws(30, start=20))
        sink.flush()
    sink.submit("draws", make_draws(10, start=50))
    assert sink.close() is None
    table_dir = tmp_path / "draws"
    assert ".part-w1-00001.parquet.tmp" in files(table_dir)  # left for inspection
    assert final_seqs(table_dir) == [list(range(10)), list(range(50, 60))]  # no holes
    assert sink.counts == {"draws": 20}


def test_a_failed_rename_keeps_the_part_under_its_temporary_name(tmp_path, monkeypatch):
    sink = TableSink(tmp_path, "w1", background=False)
    sink.submit("draws", make_draws(10))
    real = os.replace

    def fail_once(src, dst):
        monkeypatch.setattr(parts.os, "replace", real)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(parts.os, "replace", fail_once)
    with pytest.raises(OSError, match="Input/output error"):
        sink.flush()
    sink.submit("draws", make_draws(5, start=10))
    sink.close()
    tmp = tmp_path / "draws" / ".part-w1-00000.parquet.tmp"
    assert pq.read_table(tmp).column("seq").to_pylist() == list(range(10))  # not overwritten
    assert final_seqs(tmp_path / "draws") == [list(range(10, 15))]
    assert sink.counts == {"draws": 5}


def test_rows_left_over_by_a_full_part_start_a_fresh_age(tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(parts, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    writer = PartWriter(
        tmp_path, "w1", max_rows_per_part=300, row_group_size=100, max_seconds_per_part=10
    )
    writer.write(pa.table({"seq": range(250)}))  # t=100: 200 in the open part, 50 buffered
    clock[0] = 108.0
    writer.write(pa.table({"seq": range(250, 350)}))  # part 0 closes at 300; 50 left over
    assert files(tmp_path) == [part_name("w1", 0)] and writer.rows_buffered == 50
    clock[0] = 115.0  # 15 s after the first rows, 7 s after the leftover ones
    assert writer.maybe_rotate() is False
    assert writer.seconds_until_rotation() == pytest.approx(3.0)
    clock[0] = 118.0
    assert writer.maybe_rotate() is True
    assert [pq.read_metadata(p).num_rows for p in writer.parts] == [300, 50]


def test_max_queue_below_one_is_an_error_not_clamped(tmp_path):
    with pytest.raises(ValueError, match="`max_queue` must be a positive integer, got 0"):
        TableSink(tmp_path, "w1", max_queue=0)


def test_a_second_schema_is_refused_before_the_thread_saw_the_first(tmp_path):
    gate = threading.Event()
    sink = TableSink(tmp_path, "w1")
    sink.submit("draws", SlowBatch(make_draws(1), gate))  # holds the thread
    first = pa.table({"x": [1, 2]})
    sink.precheck("steps", first.schema)
    sink.submit("steps", first)
    with pytest.raises(ValueError, match=r"table 'steps'.*missing columns \['x'\]"):
        sink.precheck("steps", pa.schema([("y", pa.float64())]))
    sink.precheck("steps", pa.schema([("x", pa.int8())]))  # a safe cast is still fine
    gate.set()
    assert sink.close() is None
    assert sink.counts == {"draws": 1, "steps": 2}
