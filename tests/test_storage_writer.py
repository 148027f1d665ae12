"""RunWriter: run.json, lifecycle, errors, background thread, joined writers."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_storage_parts import SlowBatch, make_draws

from varirec._version import __version__
from varirec.errors import DatasetError, RecorderStateError
from varirec.storage import RunWriter, episodes_schema, open_dataset, shutdown


def run_json(root, run_id):
    return json.loads((root / f"run_id={run_id}" / "run.json").read_text())


def snapshot(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def make_episodes(n: int, **extra) -> pa.Table:
    t0 = np.datetime64("2025-01-01T00:00:00", "us")
    columns = {
        "env_id": np.arange(n, dtype=np.int32),
        "episode": np.zeros(n, np.int64),
        "start_seq": np.arange(n),
        "end_seq": np.arange(n) + 10,
        "length": np.full(n, 10),
        "return": np.ones(n),
        "success": pa.array([True, None] * (n // 2) + [False] * (n % 2)),
        "terminated": np.ones(n, bool),
        "truncated": np.zeros(n, bool),
        "sample_id": pa.nulls(n, pa.int64()),
        "seed": np.arange(n),
        "time_start": pa.array(np.full(n, t0)).cast(pa.timestamp("us", "UTC")),
        "time_end": pa.array(np.full(n, t0)).cast(pa.timestamp("us", "UTC")),
    }
    return pa.table({**columns, **extra})


def test_run_json_at_open_and_close(tmp_path):
    writer = RunWriter(tmp_path, "r1", writer_id="w1", metadata={"seed": np.int64(3)})
    doc = run_json(tmp_path, "r1")
    assert doc["status"] == "running"
    assert doc["schema_version"] == 1 and doc["varirec_version"] == __version__
    assert doc["run_id"] == "r1" and doc["metadata"] == {"seed": 3}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", doc["created_utc"])
    writer.append("draws", make_draws(10))
    writer.append("episodes", make_episodes(3))
    writer.close()
    doc = run_json(tmp_path, "r1")
    assert doc["status"] == "complete" and "error" not in doc
    assert doc["counts"] == {"draws": 10, "episodes": 3}
    assert doc["writers"] == ["w1"]
    assert doc["ended_utc"].endswith("Z") and doc["ended_utc"] >= doc["created_utc"]
    side = json.loads((tmp_path / "run_id=r1" / "writers" / "w1.json").read_text())
    assert side["status"] == "complete" and side["counts"] == doc["counts"]


def test_default_ids_are_unique_and_parse_in_part_names(tmp_path):
    a, b = RunWriter(tmp_path), RunWriter(tmp_path)
    assert a.run_id != b.run_id and a.writer_id != b.writer_id
    assert re.fullmatch(r"\d{8}T\d{6}Z_[0-9a-f]{6}", a.run_id)
    assert re.fullmatch(r"[A-Za-z0-9]+_\d+_[0-9a-f]{8}", a.writer_id)
    a.close()
    b.close()


def test_exception_in_with_marks_run_failed_and_keeps_rows(tmp_path):
    with pytest.raises(RuntimeError, match="physics exploded"), RunWriter(tmp_path, "r1") as w:
        w.append("draws", make_draws(50))
        raise RuntimeError("physics exploded")
    doc = run_json(tmp_path, "r1")
    assert doc["status"] == "failed"
    assert doc["error"] == {"type": "RuntimeError", "message": "physics exploded"}
    assert pq.read_table(tmp_path / "run_id=r1" / "draws").num_rows == 50


def test_a_close_in_finally_records_the_error_passing_by_but_not_a_generator_s_end(tmp_path):
    """`finally: writer.close()` during a Ctrl-C or an exception records why the run
    ended, as a `with` block does; a generator closed early (GeneratorExit) is no error."""
    w = RunWriter(tmp_path, "r1")
    with pytest.raises(KeyboardInterrupt):
        try:
            w.append("draws", make_draws(5))
            raise KeyboardInterrupt
        finally:
            w.close()
    doc = run_json(tmp_path, "r1")
    assert doc["status"] == "failed" and doc["error"]["type"] == "KeyboardInterrupt"

    def rollout():
        w = RunWriter(tmp_path, "r2")
        try:
            w.append("draws", make_draws(5))
            yield 1
            yield 2
        finally:
            w.close()

    steps = rollout()
    assert next(steps) == 1
    steps.close()  # the consumer stops early: GeneratorExit at the yield
    assert run_json(tmp_path, "r2")["status"] == "complete"


def test_sys_exit_zero_in_with_is_a_complete_run(tmp_path):
    with pytest.raises(SystemExit), RunWriter(tmp_path, "r1") as w:
        w.append("draws", make_draws(5))
        raise SystemExit(0)
    assert run_json(tmp_path, "r1")["status"] == "complete"


def test_existing_run_is_refused_without_overwrite_and_left_untouched(tmp_path):
    with RunWriter(tmp_path, "r1") as w:
        w.append("draws", make_draws(5))
    before = snapshot(tmp_path)
    with pytest.raises(DatasetError, match=r"run 'r1' already exists in .*overwrite=True"):
        RunWriter(tmp_path, "r1")
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_the_old_run_and_leaves_no_trash(tmp_path):
    with RunWriter(tmp_path, "r1", metadata={"v": 1}) as w:
        w.append("draws", make_draws(5))
    with RunWriter(tmp_path, "r1", metadata={"v": 2}, overwrite=True) as w:
        w.append("episodes", make_episodes(2))
    assert run_json(tmp_path, "r1")["metadata"] == {"v": 2}
    assert not (tmp_path / "run_id=r1" / "draws").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_id=r1"]


def test_tables_are_created_lazily(tmp_path):
    with RunWriter(tmp_path, "r1") as w:
        w.append("draws", make_draws(5))
    assert sorted(p.name for p in (tmp_path / "run_id=r1").iterdir()) == [
        "draws",
        "run.json",
        "writers",
    ]


@pytest.mark.parametrize("background", [True, False])
def test_to_arrow_runs_on_the_writer_thread_only_in_background(tmp_path, background):
    batch = SlowBatch(make_draws(5))
    with RunWriter(tmp_path, "r1", background=background) as w:
        w.append("draws", batch)
    assert (batch.thread is threading.current_thread()) is not background
    assert w.counts == {"draws": 5}


def test_schema_mismatch_of_a_table_is_raised_by_append_itself(tmp_path):
    with RunWriter(tmp_path, "r1") as w:
        with pytest.raises(ValueError, match=r"table 'draws'.*unexpected columns \['bogus'\]"):
            w.append("draws", make_draws(3).append_column("bogus", pa.array([1, 2, 3])))
        w.append("draws", make_draws(3))
    assert w.status == "complete" and w.counts == {"draws": 3}


def test_writer_thread_error_is_reraised_by_next_call_and_recorded(tmp_path):
    w = RunWriter(tmp_path, "r1")
    w.append("draws", SlowBatch(make_draws(3).drop_columns(["seq"])))
    with pytest.raises(ValueError, match=r"missing columns \['seq'\]"):
        w.flush()
    w.append("draws", SlowBatch(pa.table({"x": [1]})))
    with pytest.raises(ValueError, match="missing columns"):
        w.close()
    assert w.closed
    doc = run_json(tmp_path, "r1")
    assert doc["status"] == "failed" and doc["error"]["type"] == "ValueError"


def test_flush_makes_every_row_durable_while_the_writer_stays_open(tmp_path):
    w = RunWriter(tmp_path, "r1", row_group_size=1000)
    w.append("draws", make_draws(30))
    w.flush()
    table_dir = tmp_path / "run_id=r1" / "draws"
    assert [p.name.startswith(".") for p in table_dir.iterdir()] == [False]
    assert pq.read_table(table_dir).num_rows == 30
    w.append("draws", make_draws(5, start=30))
    w.close()
    assert pq.read_table(table_dir).column("seq").to_pylist() == list(range(35))


def test_background_thread_closes_old_parts_without_new_appends(tmp_path):
    with RunWriter(tmp_path, "r1", max_seconds_per_part=0.1) as w:
        w.append("draws", make_draws(5))
        deadline = time.monotonic() + 5
        final = tmp_path / "run_id=r1" / "draws" / f"part-{w.writer_id}-00000.parquet"
        while not final.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert final.exists()


def test_episodes_accept_user_term_columns_and_pinned_schemas(tmp_path):
    pinned = episodes_schema([("max_force", pa.float32())])
    with RunWriter(tmp_path, "r1", schemas={"episodes": pinned}) as w:
        w.append("episodes", make_episodes(4, max_force=np.ones(4)))
    back = pq.read_table(tmp_path / "run_id=r1" / "episodes")
    assert back.schema.field("max_force").type == pa.float32()
    assert back.column("success").to_pylist() == [True, None, True, None]


def test_update_metadata_rewrites_run_json(tmp_path):
    with RunWriter(tmp_path, "r1", metadata={"seed": 1}) as w:
        w.update_metadata(num_envs=64, variations=[{"key": "cube.mass"}])
        assert run_json(tmp_path, "r1")["metadata"] == {
            "seed": 1,
            "num_envs": 64,
            "variations": [{"key": "cube.mass"}],
        }
        with pytest.raises(TypeError, match="`metadata` must be JSON-serializable"):
            w.update_metadata(bad=object())
    assert run_json(tmp_path, "r1")["metadata"]["num_envs"] == 64
    assert not [p for p in (tmp_path / "run_id=r1").iterdir() if p.name.endswith(".tmp")]


def test_join_adds_parts_and_counts_to_the_run(tmp_path):
    main = RunWriter(tmp_path, "r1", writer_id="main")
    main.append("draws", make_draws(10))
    with RunWriter.join(tmp_path, "r1", writer_id="worker") as j:
        j.append("draws", make_draws(5, start=10))
        with pytest.raises(DatasetError, match=r"may not rewrite run\.json"):
            j.update_metadata(x=1)
    main.close()
    doc = run_json(tmp_path, "r1")
    assert doc["counts"] == {"draws": 15} and doc["writers"] == ["main", "worker"]
    names = sorted(p.name for p in (tmp_path / "run_id=r1" / "draws").iterdir())
    assert names == ["part-main-00000.parquet", "part-worker-00000.parquet"]


def test_join_needs_an_existing_run(tmp_path):
    with pytest.raises(DatasetError, match=r"cannot join run 'nope'.*create the run first"):
        RunWriter.join(tmp_path, "nope")
    with pytest.raises(TypeError, match="does not take"):
        RunWriter.join(tmp_path, "nope", overwrite=True)


def test_bad_arguments_are_rejected_before_anything_is_written(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(ValueError, match="`run_id` must start with a letter or digit"):
        RunWriter(root, "../escape")
    with pytest.raises(TypeError, match="`metadata` must be JSON-serializable"):
        RunWriter(root, "r1", metadata={"cfg": object()})
    with pytest.raises(ValueError, match="`max_rows_per_part` must be a positive number"):
        RunWriter(root, "r1", max_rows_per_part=0)
    assert not root.exists() or not any(root.iterdir())
    with RunWriter(root, "r1") as w:
        with pytest.raises(ValueError, match="`table` must be a lowercase name"):
            w.append("Draws/../x", make_draws(1))
        with pytest.raises(TypeError, match="`data` must be a pyarrow Table"):
            w.append("draws", {"seq": [1]})


def test_close_is_idempotent_and_append_after_close_fails(tmp_path):
    w = RunWriter(tmp_path, "r1")
    w.close()
    first = run_json(tmp_path, "r1")
    w.close()
    assert run_json(tmp_path, "r1") == first
    with pytest.raises(RecorderStateError, match="is closed; open a new RunWriter"):
        w.append("draws", make_draws(1))


def test_a_reused_writer_id_is_refused_so_counts_stay_right(tmp_path):
    main = RunWriter(tmp_path, "r1", writer_id="main", background=False)
    with RunWriter.join(tmp_path, "r1", writer_id="w") as first:
        first.append("steps", pa.table({"x": np.arange(5)}))
    before = snapshot(tmp_path)
    for writer_id in ("w", "main"):
        match = rf"writer id '{writer_id}' already wrote to run 'r1'.*pass a new writer_id"
        with pytest.raises(DatasetError, match=match):
            RunWriter.join(tmp_path, "r1", writer_id=writer_id)
    assert snapshot(tmp_path) == before
    with RunWriter.join(tmp_path, "r1", writer_id="w2") as second:
        second.append("steps", pa.table({"x": np.arange(7)}))
    main.close()
    assert run_json(tmp_path, "r1")["counts"] == {"steps": 12}
    assert main.writers == ["main", "w", "w2"]


def test_two_creators_of_one_run_id_do_not_clobber_each_other(tmp_path, monkeypatch):
    real_mkdir = Path.mkdir
    others = []

    def racing_mkdir(path, *args, **kwargs):
        if path.name == "run_id=r1" and not others:  # another process gets there first
            others.append(None)
            others[0] = RunWriter(tmp_path, "r1", writer_id="other", metadata={"by": "other"})
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    with pytest.raises(DatasetError, match="run 'r1' already exists"):
        RunWriter(tmp_path, "r1", writer_id="me", metadata={"by": "me"})
    others[0].close()
    doc = run_json(tmp_path, "r1")
    assert doc["metadata"] == {"by": "other"} and doc["writers"] == ["other"]


def test_malformed_sidecars_do_not_stop_run_json_from_finishing(tmp_path):
    w = RunWriter(tmp_path, "r1", writer_id="main")
    w.append("draws", make_draws(4))
    writers = tmp_path / "run_id=r1" / "writers"
    (writers / "nameless.json").write_text(json.dumps({"counts": {"draws": 2}}))
    (writers / "odd.json").write_text(json.dumps({"writer_id": "odd", "counts": {"draws": "x"}}))
    (writers / "list.json").write_text("[1, 2]")
    w.close()
    doc = run_json(tmp_path, "r1")
    assert doc["status"] == "complete" and doc["counts"] == {"draws": 6}
    assert doc["writers"] == ["list", "main", "nameless", "odd"]


def test_join_is_a_private_keyword_of_the_constructor(tmp_path):
    RunWriter(tmp_path, "r1", writer_id="main").close()
    with RunWriter(tmp_path, "r1", writer_id="j", _join=True) as j:
        assert not j.created
    with pytest.raises(TypeError, match=r"does not take \['_join'\]"):
        RunWriter.join(tmp_path, "r1", _join=False)


def test_max_queue_below_one_is_rejected_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="`max_queue` must be a positive integer, got 0"):
        RunWriter(tmp_path / "data", "r1", max_queue=0)
    assert not (tmp_path / "data").exists()


@pytest.fixture
def own_sigterm(monkeypatch):
    """The storage SIGTERM handler as the process's only one, with fresh process state."""
    monkeypatch.setattr(shutdown, "_OPEN", {})
    monkeypatch.setattr(shutdown, "_SIGNALLED", set())
    monkeypatch.setitem(shutdown._STATE, "previous", None)
    monkeypatch.setitem(shutdown._STATE, "signal", None)


def test_sigterm_right_after_a_foreground_row_group_exits_once_the_append_is_done(
    tmp_path, monkeypatch, own_sigterm
):
    real = pq.ParquetWriter.write_table
    hits = []

    def write_then_sigterm(self, *args, **kwargs):
        real(self, *args, **kwargs)
        if not hits:  # the signal lands before the row group is booked
            hits.append(1)
            shutdown._on_sigterm(signal.SIGTERM, None)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", write_then_sigterm)
    w = RunWriter(tmp_path, "r1", background=False, row_group_size=10)
    with pytest.raises(SystemExit) as info, w:
        w.append("draws", make_draws(35))  # exits at its end, with every row booked
        w.append("draws", make_draws(5, start=35))
    assert info.value.code == 128 + signal.SIGTERM
    doc = run_json(tmp_path, "r1")
    assert doc["status"] == "failed" and doc["error"]["type"] == "SIGTERM"
    seq = sorted(pq.read_table(tmp_path / "run_id=r1" / "draws").column("seq").to_pylist())
    assert seq == list(range(35)) and doc["counts"] == {"draws": 35}
    # The process caught the SystemExit: its next run is not marked as killed.
    assert shutdown._STATE["signal"] is None
    with RunWriter(tmp_path, "r2", background=False) as again:
        again.append("draws", make_draws(3))
    assert run_json(tmp_path, "r2")["status"] == "complete"


@pytest.mark.parametrize("background", [False, True])
def test_an_episodes_part_is_final_only_once_the_draws_before_it_are(tmp_path, background):
    """After a SIGKILL, a finished episode whose draws were still in an open part would
    get the previous episode's values from the as-of join: draws settle first."""
    w = RunWriter(tmp_path, "r", max_rows_per_part=4, row_group_size=2, background=background)
    w.append("draws", make_draws(3))  # one row group written, one row buffered: not final
    w.append("episodes", make_episodes(4))  # the episodes part closes by its row count
    deadline = time.monotonic() + 30
    run = tmp_path / "run_id=r"
    while background and not list((run / "episodes").glob("part-*.parquet")):
        assert time.monotonic() < deadline, "the episodes part never closed"
        time.sleep(0.01)
    assert [p.name for p in (run / "episodes").glob("part-*.parquet")]
    draws = sorted((run / "draws").glob("part-*.parquet"))
    assert sum(pq.read_metadata(p).num_rows for p in draws) == 3  # final before the episodes
    w.close()


def test_writer_flags_and_pinned_schemas_of_the_wrong_kind_are_refused_before_anything_is_written(
    tmp_path,
):
    """``overwrite="false"`` is truthy: it deleted the run it was meant to keep; a schema
    that is not one failed the run's rows at its first batch."""
    with RunWriter(tmp_path, "r") as writer:
        writer.append("steps", pa.table({"x": [1, 2]}))
    for kw, says in [
        ({"overwrite": "false"}, "`overwrite` must be True or False, got str 'false'"),
        ({"fsync": 1}, "`fsync` must be True or False"),
        ({"schemas": {"steps": 3}}, "`schemas\\['steps'\\]` must be a pyarrow schema"),
        ({"schemas": [("steps", pa.schema([]))]}, "`schemas` must map table names"),
    ]:
        with pytest.raises(TypeError, match=says):
            RunWriter(tmp_path, "r" if "overwrite" in kw else "new", **kw)
    assert open_dataset(tmp_path).read("steps", "r").num_rows == 2
    assert not (tmp_path / "run_id=new").exists()


def test_a_manager_refuses_to_have_its_own_tables_schemas_pinned(tmp_path):
    import varirec as vr

    with pytest.raises(ValueError, match="pins \\['episodes'\\], whose schemas the manager makes"):
        vr.RecorderManager(
            2,
            output=tmp_path,
            run_id="r",
            writer_options={"schemas": {"episodes": episodes_schema()}},
        )
    assert not (tmp_path / "run_id=r").exists()


def test_a_run_whose_writer_process_is_alive_is_not_resumed(tmp_path):
    """A resume while the first process still records would run its work again (a study
    resumed 2 s after it began held 16,972 pairs twice). A writer whose process died, or
    whose pid a later process took, does not hold the run."""
    import subprocess
    import sys

    code = (
        "import sys, time; from varirec.storage import RunWriter; "
        "w = RunWriter(sys.argv[1], 'r'); print('open', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"open"
        with pytest.raises(
            DatasetError, match=r"its writer\(s\) \['.* \(pid \d+\)'\] on this host"
        ):
            RunWriter.resume(tmp_path, "r")
        assert json.loads((tmp_path / "run_id=r" / "run.json").read_text())["status"] == "running"
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    (sidecar,) = (tmp_path / "run_id=r" / "writers").glob("*.json")
    doc = json.loads(sidecar.read_text())
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # the dead writer's pid, as if a process begun since had taken it
        sidecar.write_text(
            json.dumps({**doc, "pid": later.pid, "created_utc": "2026-01-01T00:00:00Z"})
        )
        with RunWriter.resume(tmp_path, "r") as writer:
            writer.append("steps", pa.table({"x": [1]}))
    finally:
        later.kill()
        later.wait()
    assert run_json(tmp_path, "r")["status"] == "complete"
