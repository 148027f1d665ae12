"""open_dataset / Dataset: runs, tables, filters, bad input, and other readers (pandas, DuckDB)."""

from __future__ import annotations

import json
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from test_storage_parts import make_draws
from test_storage_writer import make_episodes, snapshot

from varirec.errors import DatasetError, UnknownNameError
from varirec.storage import DatasetWarning, RunWriter, draws_schema, episodes_schema, open_dataset


@pytest.fixture
def root(tmp_path):
    """Two complete runs: r1 (draws 0..99, 4 episodes, steps) and r2 (draws 0..49)."""
    with RunWriter(tmp_path, "r1", metadata={"seed": 1}, max_rows_per_part=40) as w:
        w.append("draws", make_draws(100))
        w.append("episodes", make_episodes(4))
        w.append("steps", pa.table({"reward": [0.5, 1.5]}))
    with RunWriter(tmp_path, "r2", metadata={"seed": 2}) as w:
        w.append("draws", make_draws(50))
    return tmp_path


def test_runs_describe_run_json_and_writers(root):
    data = open_dataset(root)
    assert data.run_ids() == ["r1", "r2"]
    r1 = data.run("r1")
    assert r1.status == "complete" and r1.metadata == {"seed": 1}
    assert r1.counts == {"draws": 100, "episodes": 4, "steps": 2}
    assert isinstance(r1.created, datetime) and r1.created.utcoffset().total_seconds() == 0
    assert r1.ended >= r1.created and len(r1.writers) == 1
    assert r1.to_dict()["created"] == r1.created.isoformat()


def test_draws_of_all_runs_gain_a_dictionary_run_id(root):
    draws = open_dataset(root).draws()
    assert draws.num_rows == 150
    assert draws.schema.field("run_id").type == pa.dictionary(pa.int32(), pa.string())
    assert draws.schema.remove(draws.schema.get_field_index("run_id")).equals(
        draws_schema(), check_metadata=False
    )
    counts = pc.value_counts(draws.column("run_id").combine_chunks().dictionary_decode())
    assert {c["values"].as_py(): c["counts"].as_py() for c in counts} == {"r1": 100, "r2": 50}


def test_filters_projection_and_run_selection(root):
    data = open_dataset(root)
    table = data.draws(columns=["seq", "value"], filter=pc.field("seq") >= 90)
    assert table.column_names == ["seq", "value", "run_id"]
    assert sorted(table.column("seq").to_pylist()) == list(range(90, 100))
    only_r2 = data.draws("r2", columns=["seq"])
    assert only_r2.num_rows == 50 and set(only_r2.column("run_id").to_pylist()) == {"r2"}
    by_run_id = data.draws(filter=pc.field("run_id") == "r2")
    assert by_run_id.num_rows == 50
    dnf = data.draws(filter=[("seq", "<", 5), ("env_id", "=", 1)])
    assert dnf.column("seq").to_pylist() == [1, 1]


def test_missing_tables_read_as_empty_canonical_tables(root):
    data = open_dataset(root)
    episodes = data.episodes("r2")
    assert episodes.num_rows == 0
    assert episodes.schema.names == [*episodes_schema().names, "run_id"]
    steps = data.steps("r2")
    assert steps.num_rows == 0 and steps.column_names == ["run_id"]
    assert data.steps().column("reward").to_pylist() == [0.5, 1.5]


def test_unknown_run_or_column_names_the_known_ones(root):
    data = open_dataset(root)
    with pytest.raises(UnknownNameError, match=r"unknown run id\(s\) \['r3'\].*\['r1', 'r2'\]"):
        data.draws(runs=["r3"])
    with pytest.raises(UnknownNameError, match=r"unknown column\(s\) \['vlaue'\]"):
        data.draws(columns=["vlaue"])


def test_to_pandas_gives_categorical_run_id(root):
    frame = open_dataset(root).to_pandas("episodes")
    assert len(frame) == 4 and str(frame["run_id"].dtype) == "category"
    assert frame["return"].sum() == 4.0


def test_file_uri_reads_like_a_path(root):
    assert open_dataset(root.as_uri()).draws("r2").num_rows == 50


def test_bad_paths_raise_dataset_error_with_the_fix(tmp_path):
    with pytest.raises(DatasetError, match="does not exist; check the path"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="is not a directory"):
        open_dataset(tmp_path / "file.txt")
    with pytest.raises(DatasetError, match=r"no run_id=\* directories under .*record a run first"):
        open_dataset(tmp_path)


def test_a_run_directory_itself_gets_a_hint(root):
    with pytest.raises(DatasetError, match="this is a run directory; pass its parent"):
        open_dataset(root / "run_id=r1")


def test_leftover_temp_part_warns_and_the_rest_reads(root):
    draws = root / "run_id=r2" / "draws"
    (draws / ".part-dead_1_ab-00003.parquet.tmp").write_bytes(b"PAR1 half a part")
    before = snapshot(root)
    with pytest.warns(DatasetWarning, match=r"\.part-dead_1_ab-00003\.parquet\.tmp.*unfinished"):
        table = open_dataset(root).draws("r2")
    assert table.num_rows == 50
    assert snapshot(root) == before


def test_corrupt_part_is_skipped_with_a_warning_naming_it(root):
    part = sorted((root / "run_id=r1" / "draws").iterdir())[0]
    part.write_bytes(part.read_bytes()[:-20])  # truncated footer
    before = snapshot(root)
    with pytest.warns(DatasetWarning, match=rf"unreadable part .*{part.name}: ArrowInvalid"):
        table = open_dataset(root).draws("r1")
    assert table.num_rows == 60  # 100 rows in parts of 40, 40, 20; the first is lost
    assert snapshot(root) == before


def test_part_with_a_conflicting_schema_is_skipped(root):
    pq.write_table(pa.table({"seq": ["a"]}), root / "run_id=r2" / "draws" / "part-x-00000.parquet")
    with pytest.warns(DatasetWarning, match="part-x-00000.parquet: its schema conflicts"):
        assert open_dataset(root).draws("r2").num_rows == 50


def test_missing_run_json_warns_and_still_reads_parts(root):
    (root / "run_id=r2" / "run.json").unlink()
    before = snapshot(root)
    with pytest.warns(DatasetWarning, match=r"run_id=r2/run\.json is missing"):
        data = open_dataset(root)
    assert data.run("r2").status == "unknown" and data.run("r2").metadata == {}
    assert data.draws("r2").num_rows == 50
    assert snapshot(root) == before


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_malformed_run_json_warns_and_is_left_untouched(root, text):
    (root / "run_id=r1" / "run.json").write_text(text)
    before = snapshot(root)
    with pytest.warns(DatasetWarning, match=r"run\.json is not valid run metadata.*left as it is"):
        data = open_dataset(root)
    assert data.run("r1").status == "unknown"
    assert data.draws("r1").num_rows == 100
    assert snapshot(root) == before


def test_malformed_sidecars_are_summed_like_the_writer_sums_them(root):
    writers = root / "run_id=r2" / "writers"
    (writers / "list.json").write_text("[1, 2]")
    (writers / "nameless.json").write_text(json.dumps({"counts": {"draws": 3, "steps": None}}))
    run = open_dataset(root).run("r2")
    assert run.counts == {"draws": 53}
    assert "list" in run.writers and "nameless" in run.writers and len(run.writers) == 3


def test_newer_schema_version_warns(root):
    path = root / "run_id=r2" / "run.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": 99}))
    with pytest.warns(DatasetWarning, match="schema_version 99, newer"):
        open_dataset(root)


def test_reading_never_writes(root):
    before = snapshot(root)
    data = open_dataset(root)
    data.draws()
    data.episodes()
    data.steps()
    data.to_pandas("draws", "r1", columns=["value"])
    assert snapshot(root) == before


def test_pyarrow_dataset_reads_the_directory_as_hive(root):
    files = sorted(str(p) for p in root.glob("run_id=*/draws/*.parquet"))
    table = ds.dataset(files, partitioning="hive", partition_base_dir=str(root)).to_table()
    assert table.num_rows == 150 and set(table.column("run_id").to_pylist()) == {"r1", "r2"}
    one_run = ds.dataset(root / "run_id=r1" / "draws", format="parquet").to_table()
    assert one_run.num_rows == 100


def test_pandas_reads_parts_directly(root):
    pd = pytest.importorskip("pandas")
    (root / "run_id=r2" / "draws" / ".part-w-00009.parquet.tmp").write_bytes(b"junk")
    frame = pd.read_parquet(root / "run_id=r2" / "draws")  # skips the hidden temp part
    assert len(frame) == 50 and frame["seq"].tolist() == list(range(50))
    files = sorted(str(p) for p in root.glob("run_id=*/draws/*.parquet"))
    both = pd.read_parquet(files)
    assert len(both) == 150 and set(both["run_id"]) == {"r1", "r2"}


def test_duckdb_reads_the_glob_with_hive_partitioning(root):
    duckdb = pytest.importorskip("duckdb")
    (root / "run_id=r2" / "draws" / ".part-w-00009.parquet.tmp").write_bytes(b"junk")
    glob = f"{root}/run_id=*/draws/*.parquet"
    rows = duckdb.sql(
        f"SELECT run_id, count(*), max(seq) FROM read_parquet('{glob}', hive_partitioning=true) "
        "GROUP BY run_id ORDER BY run_id"
    ).fetchall()
    assert rows == [("r1", 100, 99), ("r2", 50, 49)]
