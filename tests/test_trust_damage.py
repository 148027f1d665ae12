"""Damaged datasets (issue 8): the real cause, naming the file and its rows; nothing touched.

Each test damages a recorded dataset the way a crash, a disk or a user does (truncated,
empty, garbage and foreign parts, flipped bytes, bad run.json fields, a table path
that is a file, a missing sidecar, a SIGKILLed writer) and checks what ``analyze``,
``open_dataset`` and ``varirec inspect`` say, and that the files are unchanged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_storage_parts import make_draws
from test_storage_writer import snapshot

import varirec as vr
from varirec.analysis.study import analyze
from varirec.analysis.tables.episode_table import episode_table
from varirec.cli.inspection import format_inspection, inspect_dataset
from varirec.errors import DatasetError
from varirec.storage import DatasetWarning, PartWriter, RunWriter, draws_schema, open_dataset

NUM_ENVS = 8
EPISODES = 30  # per env: 240 episodes, 248 draws (8 envs x 31 resets)


def record(root: Path, run_id: str = "r", seed: int = 0) -> Path:
    """A small given-data run: one reset-mode factor, success and return per episode."""
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    rng = np.random.default_rng(seed)
    with vr.RecorderManager(
        NUM_ENVS, variations=[mass], output=root, run_id=run_id, seed=seed
    ) as m:
        m.reset(None, None)
        for _ in range(EPISODES):
            m.record_step(reward=rng.random(NUM_ENVS), success=rng.random(NUM_ENVS) > 0.5)
            m.record_pre_reset(None)
            m.reset(None, None)
    return root


def only_part(root: Path, table: str, run_id: str = "r") -> Path:
    (part,) = (root / f"run_id={run_id}" / table).glob("part-*.parquet")
    return part


@pytest.fixture
def dataset(tmp_path) -> Path:
    return record(tmp_path / "data")


# ---------------------------------------------------------------- 1. damaged parts
DAMAGE = {
    "truncated": lambda b: b[: len(b) // 2],
    "zero-byte": lambda b: b"",
    "garbage": lambda b: b"garbage " * 64,
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_episodes_part_is_named_with_its_rows_in_the_error(dataset, kind):
    part = only_part(dataset, "episodes")
    part.write_bytes(DAMAGE[kind](part.read_bytes()))
    before = snapshot(dataset)
    with (
        pytest.warns(DatasetWarning, match=re.escape(part.name)),
        pytest.raises(DatasetError) as caught,
    ):
        analyze(dataset)
    message = str(caught.value)
    # Before: "no episodes ... record finished episodes (record_pre_reset)".
    assert "record_pre_reset" not in message
    assert part.name in message and "unreadable" in message
    assert "recorded 240 row(s), 0 are readable, 240 are not (in the skipped part(s))" in message
    assert snapshot(dataset) == before


@pytest.mark.parametrize("engine", ["memory", "duckdb"])
def test_a_damaged_page_outside_the_key_columns_is_named_not_a_length_mismatch(dataset, engine):
    """Bytes changed in the ``return`` column's page only: the join's key columns read,
    the whole part does not; the error names the part (it was pandas' "Length of values
    (240) does not match length of index (0)")."""
    part = only_part(dataset, "episodes")
    meta = pq.ParquetFile(part).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    chunk = meta.row_group(0).column(names.index("return"))
    data = bytearray(part.read_bytes())
    at = chunk.data_page_offset + chunk.total_compressed_size // 2
    data[at : at + 16] = bytes(b ^ 0xFF for b in data[at : at + 16])
    part.write_bytes(bytes(data))
    with (
        pytest.warns(DatasetWarning, match=re.escape(part.name)),
        pytest.raises(DatasetError, match=r"no readable episodes") as caught,
    ):
        episode_table(dataset, engine=engine)
    assert part.name in str(caught.value) and "240 are not" in str(caught.value)


def test_damaged_draws_part_is_named_instead_of_no_factor_has_a_value(dataset):
    part = only_part(dataset, "draws")
    part.write_bytes(b"")
    before = snapshot(dataset)
    with (
        pytest.warns(DatasetWarning, match=re.escape(part.name)),
        pytest.raises(DatasetError, match="the draws are damaged") as caught,
    ):
        analyze(dataset)
    message = str(caught.value)
    assert part.name in message and "Parquet file size is 0 bytes" in message
    assert "recorded 248 row(s), 0 are readable, 248 are not" in message
    assert snapshot(dataset) == before


def _recorded_in_small_parts(root, variations) -> Path:
    """Run "r" of ``variations`` in ``root``, its draws in parts of 40 rows (several
    parts, so that one can be lost)."""
    rng = np.random.default_rng(0)
    options = {"max_rows_per_part": 40, "row_group_size": 40}
    with vr.RecorderManager(NUM_ENVS, variations=variations, output=root, run_id="r",
                            max_rows=8, writer_options=options) as m:  # fmt: skip
        m.reset(None, None)
        for _ in range(EPISODES):
            m.record_step(reward=rng.random(NUM_ENVS), success=rng.random(NUM_ENVS) > 0.5)
            m.reset(None, None)
    return root


def test_an_episodes_part_that_is_gone_is_warned_of_and_noted(tmp_path, capsys):
    """A deleted part was left out without a word (inspect counted it): the rest is
    not a random sample, since a part holds the episodes that ended first (found by a
    CLI probe: a success rate of 44 % against 52 %)."""
    from varirec.cli import main

    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    root = tmp_path / "d"
    rng = np.random.default_rng(0)
    with vr.RecorderManager(NUM_ENVS, variations=[mass], output=root, run_id="r", max_rows=8,
                            writer_options={"max_rows_per_part": 16}) as m:  # fmt: skip
        m.reset(None, None)
        for _ in range(EPISODES):
            m.record_step(reward=rng.random(NUM_ENVS), success=rng.random(NUM_ENVS) > 0.5)
            m.reset(None, None)
    parts = sorted((root / "run_id=r" / "episodes").glob("part-*.parquet"))
    total = NUM_ENVS * EPISODES
    held = pq.read_metadata(parts[0]).num_rows
    parts[0].unlink()
    with pytest.warns(DatasetWarning, match=rf"recorded {total} episode\(s\), {total - held} "):
        table = episode_table(root)
    assert len(table) == total - held
    gone = f"{held} are in no file (parts deleted, moved or rewritten)"
    assert any(gone in n for n in table.notes)
    assert main(["failures", str(root)]) == 0
    err = capsys.readouterr().err
    assert err.count(f"{held} are in no file") == 1


@pytest.mark.parametrize("engine", ["memory", "duckdb"])
def test_episodes_whose_draws_part_is_damaged_get_no_earlier_draw(tmp_path, engine):
    """The as-of rule would give an episode whose reset draws sat in a damaged part the
    env's previous draw: a value it never had. It gets none, with a note."""
    pytest.importorskip("duckdb")
    vs = [
        vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2))),
        vr.Variation("scene", vr.VariationCfg(sampler=vr.ChoiceCfg(choices=("lab", "yard")))),
    ]
    root = _recorded_in_small_parts(tmp_path / "data", vs)
    intact = episode_table(root, engine=engine)
    assert intact.notes == []
    parts = sorted((root / "run_id=r" / "draws").glob("part-*.parquet"))
    assert len(parts) >= 5
    parts[len(parts) // 2].write_bytes(b"garbage")
    with pytest.warns(DatasetWarning, match="unreadable part"):
        damaged = episode_table(root, engine=engine)
    both = intact.frame.merge(damaged.frame, on=["env_id", "episode"], suffixes=("", "_d"))
    assert len(both) == len(intact.frame)  # every episode is still there, with its outcome
    for name in ("mass", "scene"):
        kept = both[f"{name}_d"].notna()
        assert (both.loc[kept, name] == both.loc[kept, f"{name}_d"]).all()  # none from earlier
        assert 0 < (~kept).sum() < len(both) // 2
    assert "lack a reset draw, lost with a damaged draws part" in damaged.notes[0]
    assert parts[len(parts) // 2].name in damaged.notes[0]


@pytest.mark.parametrize("also", ["run.json", "run.json and sidecars"])
def test_episodes_whose_draws_part_went_with_run_json_get_no_earlier_draw(tmp_path, also):
    """Without run.json the reset variations are those the draws hold at resets; without
    any writer count the loss cannot be seen, so episodes without their own reset draw
    are left empty there too (they took the env's previous value, with no note)."""
    vs = [vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))]
    root = _recorded_in_small_parts(tmp_path / "data", vs)
    intact = episode_table(root)
    run = root / "run_id=r"
    parts = sorted((run / "draws").glob("part-*.parquet"))
    parts[len(parts) // 2].unlink()
    (run / "run.json").unlink()
    if "sidecars" in also:
        for sidecar in (run / "writers").glob("*.json"):
            sidecar.unlink()
    with pytest.warns(DatasetWarning):
        damaged = episode_table(root)
    both = intact.frame.merge(damaged.frame, on=["env_id", "episode"], suffixes=("", "_d"))
    kept = both["mass_d"].notna()
    assert (both.loc[kept, "mass"] == both.loc[kept, "mass_d"]).all()  # none from earlier
    assert 0 < (~kept).sum() < len(both) // 2
    assert any("lack a reset draw" in note for note in damaged.notes)


def test_compare_and_failures_name_a_run_whose_draws_are_gone(tmp_path, capsys):
    from varirec.cli import main

    root = record(tmp_path / "data", "a")
    record(root, "b")
    shutil.rmtree(root / "run_id=a" / "draws")
    with pytest.raises(DatasetError, match=r"run 'a' has no readable draws.*0 are readable"):
        vr.analysis.compare.compare(root, ["a", "b"])
    assert main(["compare", str(root), "--runs", "a", "b"]) == 2
    assert "run 'a' has no readable draws" in capsys.readouterr().err
    assert main(["failures", str(root), "--runs", "a"]) == 2
    assert "no factor to explain the failures with: table 'draws'" in capsys.readouterr().err


def test_compare_leaves_out_the_pairs_whose_draws_a_damaged_part_lost(tmp_path):
    from varirec.analysis.compare import compare

    root = tmp_path / "data"
    for run in ("a", "b"):
        mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
        rng = np.random.default_rng(0 if run == "a" else 1)
        options = {"max_rows_per_part": 16}
        with vr.RecorderManager(NUM_ENVS, variations=[mass], output=root, run_id=run, seed=0,
                                max_rows=8, writer_options=options) as m:  # fmt: skip
            m.reset(None, None)
            for _ in range(EPISODES):
                m.record_step(reward=rng.random(NUM_ENVS), success=rng.random(NUM_ENVS) > 0.5)
                m.reset(None, None)
    parts = sorted((root / "run_id=a" / "draws").glob("part-*.parquet"))
    parts[len(parts) // 2].write_bytes(b"garbage")
    with pytest.warns(DatasetWarning, match="unreadable part"):
        c = compare(root, ["a", "b"], num_resamples=0)
    assert 0 < 240 - c.num_pairs < 60
    assert any("left out: the draws of one side were lost" in note for note in c.notes)


def test_a_run_directory_this_user_cannot_read_is_skipped_and_the_others_read(tmp_path):
    """As another user (root reads everything): ``setpriv`` to nobody where run as root."""
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("runs as root without setpriv: every directory is readable")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    # Where the other user reaches it: the system's temporary folder (pytest's own
    # folders, where the root conftest points tempfile, are the owner's only).
    top = Path(tempfile.mkdtemp(prefix="varirec-perm-", dir=os.environ.get("TMPDIR") or "/tmp"))
    root = record(top / "data", "a")
    record(root, "b")
    for path in (top, root, *root.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (root / "run_id=a").chmod(0)
    script = (
        "import warnings, varirec as vr\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        f"    ds = vr.open_dataset({str(root)!r})\n"
        "print(ds.run_ids(), len(ds.episodes('b')), [str(x.message) for x in w])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(vr.__file__).parents[1]), "HOME": "/tmp"}
    reach = subprocess.run([*prefix, sys.executable, "-c", "import varirec"], env=env,
                           capture_output=True, timeout=60)  # fmt: skip
    if reach.returncode:  # CI's fresh venv lies in a folder only its owner may enter
        shutil.rmtree(top)
        pytest.skip("the other user cannot reach this Python or varirec")
    try:
        out = subprocess.run([*prefix, sys.executable, "-c", script], capture_output=True,
                             text=True, env=env, timeout=60)  # fmt: skip
    finally:
        (root / "run_id=a").chmod(0o755)
        shutil.rmtree(top)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("['b'] 240 ")
    assert "skipping run 'a'" in out.stdout and "chmod -R u+rX" in out.stdout


def test_a_part_copied_under_a_second_name_is_read_once(dataset):
    part = only_part(dataset, "episodes")
    copy = part.with_name(part.name.replace("-00000.", "-00099."))
    shutil.copyfile(part, copy)
    with pytest.warns(DatasetWarning, match=rf"skipping duplicate part .*{copy.name}.*same bytes"):
        episodes = open_dataset(dataset).episodes("r")
    assert episodes.num_rows == NUM_ENVS * EPISODES
    (health,) = open_dataset(dataset).health("episodes", "r")
    assert not health.damaged and health.rows_missing == 0
    with pytest.warns(DatasetWarning, match="duplicate part"):
        assert analyze(dataset).num_episodes == NUM_ENVS * EPISODES


def test_episodes_recorded_twice_in_other_bytes_are_refused_not_counted_twice(dataset, capsys):
    """The same episodes in a second part of other bytes (a damaged part put back after a
    resume recorded its episodes again; a part rewritten elsewhere): every number would
    count them twice, so the analyses refuse them with the place to mend."""
    from varirec.cli import main

    part = only_part(dataset, "episodes")
    pq.write_table(pq.read_table(part), part.with_name("part-elsewhere-00000.parquet"),
                   compression="gzip")  # fmt: skip
    before = snapshot(dataset)
    with pytest.raises(DatasetError, match=r"run 'r' of .* holds 240 episode\(s\) more than once"):
        episode_table(dataset)
    for command in (["analyze", str(dataset)], ["failures", str(dataset)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "more than once (e.g. env 0, episode 0)" in err and "run_id=r/episodes" in err
    (run,) = inspect_dataset(dataset)["runs"]
    assert run["episodes"] == 480 and run["episodes_repeated"] == 240
    assert "episodes recorded more than once: 240" in format_inspection(inspect_dataset(dataset))
    assert snapshot(dataset) == before


def test_enough_good_data_left_keeps_going_with_a_warning(tmp_path):
    root = record(tmp_path / "data", "good", seed=1)
    record(root, "bad", seed=2)
    part = only_part(root, "episodes", "bad")
    part.write_bytes(b"garbage")
    with pytest.warns(DatasetWarning, match=rf"unreadable part .*{re.escape(part.name)}"):
        study = analyze(root)
    assert study.num_episodes == 240 and part.read_bytes() == b"garbage"


# ---------------------------------------------------------------- 2. foreign schema
def test_foreign_episodes_part_is_refused_by_name_not_read_as_nulls(dataset):
    pd = pytest.importorskip("pandas")
    foreign = dataset / "run_id=r" / "episodes" / "part-pandas-00000.parquet"
    pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}).to_parquet(foreign)
    before = snapshot(dataset)
    info = inspect_dataset(dataset)  # it lists the reader's warnings under "skipped"
    pattern = r"foreign part .*part-pandas-00000\.parquet: .*missing columns \['env_id'"
    assert [s for s in info["skipped"] if re.search(pattern, s)]
    run = info["runs"][0]
    # Before: 243 episodes over 9 envs (3 rows of nulls), "rows in skipped parts: episodes -3".
    assert run["episodes"] == 240 and run["envs_with_episodes"] == NUM_ENVS
    assert run["rows_lost"]["episodes"]["parts"][0].startswith(str(foreign))
    with pytest.warns(DatasetWarning, match="part-pandas-00000"):
        study = analyze(dataset)  # before: IndexError from the null env ids
    assert study.num_episodes == 240
    (health,) = open_dataset(dataset).health("episodes")
    assert [s.kind for s in health.skipped] == ["foreign"] and health.rows_readable == 240
    assert snapshot(dataset) == before


def test_foreign_part_of_a_free_schema_table_shares_no_column(tmp_path):
    with RunWriter(tmp_path, "r", background=False, max_rows_per_part=2) as w:
        w.append("steps", pa.table({"reward": [1.0, 2.0, 3.0, 4.0]}))
    pq.write_table(pa.table({"other": [7]}), tmp_path / "run_id=r/steps/part-x-00000.parquet")
    with pytest.warns(DatasetWarning, match=r"foreign part .*part-x-00000.*share none"):
        steps = open_dataset(tmp_path).steps()
    assert steps.column_names == ["reward", "run_id"] and steps.num_rows == 4


def test_part_with_the_right_columns_but_wrong_types_is_named(dataset):
    part = only_part(dataset, "episodes")
    table = pq.read_table(part)
    i = table.schema.get_field_index("length")
    pq.write_table(table.set_column(i, "length", table.column("length").cast(pa.float64())), part)
    with (
        pytest.warns(DatasetWarning, match="column 'length' is double, expected int64"),
        pytest.raises(DatasetError, match=re.escape(part.name)),
    ):
        analyze(dataset)


# ---------------------------------------------------------------- 3. page checksums
def _flip_a_value_byte(part: Path, column: str = "value") -> None:
    meta = pq.read_metadata(part)
    chunk = meta.row_group(0).column(meta.schema.to_arrow_schema().get_field_index(column))
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(part.read_bytes())
    data[start + chunk.total_compressed_size // 2] ^= 0x5A  # inside the page data
    part.write_bytes(bytes(data))


def test_flipped_byte_in_an_uncompressed_page_is_caught_by_its_checksum(tmp_path):
    writer = PartWriter(
        tmp_path / "draws", "w", schema=draws_schema(), table="draws", compression="none"
    )
    writer.write(make_draws(1000))
    writer.close()
    (part,) = writer.parts
    good = pq.read_table(part).column("value")
    _flip_a_value_byte(part)
    assert not pq.read_table(part).column("value").equals(good)  # silently different without CRC
    # A dataset around the lone part, as the reader expects it.
    run = tmp_path / "data" / "run_id=r"
    (run / "draws").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "complete"}))
    shutil.copy(part, run / "draws" / part.name)
    before = snapshot(tmp_path / "data")
    data = open_dataset(tmp_path / "data")
    with pytest.warns(DatasetWarning, match=rf"corrupt part .*{part.name}.*CRC checksum"):
        draws = data.draws()
    assert draws.num_rows == 0  # the damaged rows are not handed out as values
    (health,) = data.health("draws")
    assert [s.kind for s in health.skipped] == ["corrupt"]
    assert snapshot(tmp_path / "data") == before


def test_flipped_byte_in_a_recorded_part_is_named_by_analyze(dataset):
    part = only_part(dataset, "draws")
    _flip_a_value_byte(part)
    with (
        pytest.warns(DatasetWarning, match=rf"corrupt part .*{part.name}"),
        pytest.raises(DatasetError, match=rf"{part.name} \(corrupt: its data failed"),
    ):
        analyze(dataset)  # before: "OSError: ZSTD decompression failed", no file named


# ---------------------------------------------------------------- 4. run.json and layout
@pytest.mark.parametrize(
    ("field", "value", "text"),
    [
        ("writers", 5, "field 'writers' must be a list of writer ids (strings), got int 5"),
        ("counts", {"draws": -3}, "field 'counts' must be an object of non-negative"),
        ("status", 7, "field 'status' must be one of"),
        ("metadata", {"variations": 3}, "field 'metadata.variations' must be a list"),
    ],
)
def test_run_json_field_of_the_wrong_type_is_named_and_the_rest_reads(dataset, field, value, text):
    record(dataset, "other", seed=3)
    path = dataset / "run_id=r" / "run.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), field: value}))
    before = snapshot(dataset)
    with pytest.warns(DatasetWarning, match=rf"run_id=r/run\.json: {re.escape(text)}"):
        data = open_dataset(dataset)  # before: TypeError for "writers": 5
    assert data.run_ids() == ["other", "r"]
    assert data.draws("r").num_rows == 248 and data.episodes("other").num_rows == 240
    assert snapshot(dataset) == before


def test_table_path_that_is_a_file_is_named_and_other_tables_read(dataset):
    draws = dataset / "run_id=r" / "draws"
    shutil.rmtree(draws)
    draws.write_text("not a directory")
    before = snapshot(dataset)
    data = open_dataset(dataset)
    with pytest.warns(DatasetWarning, match=rf"{re.escape(str(draws))} is a file"):
        assert data.draws().num_rows == 0  # before: NotADirectoryError
    assert data.episodes().num_rows == 240
    with (
        pytest.warns(DatasetWarning, match="is a file"),
        pytest.raises(DatasetError, match=r"draws are damaged.*recorded 248 row"),
    ):
        analyze(dataset)
    assert snapshot(dataset) == before


def test_missing_writer_sidecar_never_gives_negative_counts(dataset):
    with RunWriter.join(dataset, "r", writer_id="w2", background=False) as w:
        w.append("draws", make_draws(10, start=10_000))
    (dataset / "run_id=r" / "writers" / "w2.json").unlink()
    info = inspect_dataset(dataset)
    text = format_inspection(info)
    assert not re.search(r" -\d", text), text  # before: "rows in skipped parts: draws -10"
    run = info["runs"][0]
    assert run["rows_readable"]["draws"] == 258 and run["rows_lost"] == {}
    assert run["writers_uncounted"] == ["w2"] and "w2" in text


# ---------------------------------------------------------------- 5. inspect
KILLED = """
import os, signal, sys
import pyarrow as pa
sys.path.insert(0, {tests!r})
from test_storage_parts import make_draws
from varirec.storage import RunWriter
w = RunWriter({root!r}, "killed", background=False, max_rows_per_part=1000, row_group_size=500)
for i in range(5):
    w.append("draws", make_draws(1000, start=1000 * i))
w.append("draws", make_draws(600, start=5000))  # 500 in the open part: lost to SIGKILL
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_inspect_counts_the_readable_rows_of_a_sigkilled_run(tmp_path):
    tests = str(Path(__file__).parent)
    script = KILLED.format(tests=tests, root=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], check=False)
    assert done.returncode == -9
    before = snapshot(tmp_path)
    info = inspect_dataset(tmp_path)
    assert [s for s in info["skipped"] if re.search(r"\.part-.*\.tmp: an unfinished part", s)]
    run = info["runs"][0]
    assert run["status"] == "running" and run["rows_readable"] == {"draws": 5000}
    text = format_inspection(info)
    assert "rows readable: draws 5000" in text  # before: "rows: none"
    assert "the run did not close (status 'running')" in text
    assert run["rows_lost"]["draws"]["rows"] is None  # unknown, not a guess
    assert snapshot(tmp_path) == before


def test_inspect_an_all_nan_outcome_without_a_traceback(tmp_path):
    with vr.RecorderManager(2, output=tmp_path, run_id="r") as m:
        m.reset(None, None)
        m.record_step(reward=np.array([np.nan, np.nan]))
        m.record_pre_reset(None)
    text = format_inspection(inspect_dataset(tmp_path))  # before: TypeError on None
    assert "return       no finite value (2 episodes, all NaN or inf)" in text


# ---------------------------------------------------------------- more damage
def _empty_run(root: Path) -> None:
    (root / "run_id=empty").mkdir()


def _episodes_dir_missing(root: Path) -> None:
    shutil.rmtree(root / "run_id=r" / "episodes")


def _tmp_part_only(root: Path) -> None:
    part = only_part(root, "episodes")
    part.rename(part.with_name(f".{part.name}.tmp"))


@pytest.mark.parametrize(
    ("damage", "runs", "error"),
    [
        (_empty_run, "empty", r"no episodes in run\(s\) \['empty'\].*record finished episodes"),
        (_episodes_dir_missing, None, r"recorded 240 row\(s\), 0 are readable.*no file holds"),
        (_tmp_part_only, None, r"\.part-.*\.parquet\.tmp \(unfinished"),
    ],
)
def test_more_damage_gets_a_clear_error_and_nothing_changes(dataset, damage, runs, error):
    damage(dataset)
    before = snapshot(dataset)
    with (
        pytest.warns(DatasetWarning) if damage is not _episodes_dir_missing else nullcontext(),
        pytest.raises(DatasetError, match=error),
    ):
        analyze(dataset, runs=runs)
    assert snapshot(dataset) == before


@pytest.mark.parametrize(
    ("content", "warning"),
    [(None, r"run_id=r/run\.json is missing"), ("{oops", r"run\.json is not valid run metadata")],
)
def test_run_json_missing_or_invalid_still_analyses_the_parts(dataset, content, warning):
    path = dataset / "run_id=r" / "run.json"
    path.unlink() if content is None else path.write_text(content)
    before = snapshot(dataset)
    info = inspect_dataset(dataset)
    assert re.search(warning, info["skipped"][0])
    text = format_inspection(info)
    assert "whether the run closed is unknown" in text and "rows readable: draws 248" in text
    with pytest.warns(DatasetWarning, match=warning):
        assert analyze(dataset).num_episodes == 240
    assert snapshot(dataset) == before


def test_reader_checks_leave_every_file_as_it_was(dataset):
    """The damage checks (footers, checksums, health) read only."""
    part = only_part(dataset, "draws")
    _flip_a_value_byte(part)
    only_part(dataset, "episodes").write_bytes(b"")
    os.utime(part, (1, 1))
    before = snapshot(dataset)
    stat = part.stat()
    with pytest.warns(DatasetWarning):
        data = open_dataset(dataset)
        data.draws()
        data.health("draws")
        inspect_dataset(dataset)
    assert snapshot(dataset) == before and part.stat().st_mtime == stat.st_mtime


def test_inspect_says_how_many_episodes_a_mean_leaves_out_as_nan(tmp_path):
    with vr.RecorderManager(3, output=tmp_path, run_id="r") as m:
        m.reset(None, None)
        m.record_step(reward=np.array([1.0, np.nan, 3.0]))
        m.record_pre_reset(None)
    text = format_inspection(inspect_dataset(tmp_path))
    assert "return       mean 2  min 1  max 3  (2 of 3 episodes; 1 NaN or inf)" in text


def test_episodes_running_at_close_are_counted_and_noted(tmp_path):
    """Episodes that never finished had no row and no mention: heavy payloads that could
    not finish left a success rate of 100 % (found by a numbers probe). run.json counts
    them and the episode table says so; a new episode not yet stepped is not counted."""
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    with vr.RecorderManager(4, variations=[mass], output=tmp_path, run_id="r") as m:
        m.reset(None, None)
        m.record_step(reward=np.ones(4), success=np.ones(4, bool))
        m.reset(None, np.array([0, 1]))  # 0 and 1 finish and start again; 2 and 3 run on
    meta = json.loads((tmp_path / "run_id=r" / "run.json").read_text())["metadata"]
    assert meta["episodes_open_at_close"] == 2
    table = episode_table(tmp_path)
    assert len(table) == 2
    assert any("2 episode(s) were still running when it closed (beside 2 finished)" in n
               for n in table.notes)  # fmt: skip
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    with vr.RecorderManager(2, variations=[mass], output=tmp_path, run_id="all") as m:
        m.reset(None, None)
        m.record_step(reward=np.ones(2), success=np.ones(2, bool))
        m.reset(None, None)
    run_json = json.loads((tmp_path / "run_id=all" / "run.json").read_text())
    assert "episodes_open_at_close" not in run_json["metadata"]


def test_a_run_still_marked_running_is_noted(tmp_path):
    """A killed run reads 'running' in run.json: inspect said so, analyze did not (found
    by a CLI probe)."""
    record(tmp_path, "k")
    path = tmp_path / "run_id=k" / "run.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "status": "running"}))  # as a SIGKILL leaves it
    notes = episode_table(tmp_path).notes
    assert any("run 'k' says 'running': its process was killed, or still records" in n
               for n in notes)  # fmt: skip
    assert not any("says 'running'" in n for n in episode_table(record(tmp_path, "c"), "c").notes)


@pytest.mark.parametrize("engine", ["memory", "duckdb"])
def test_without_run_json_a_vector_factor_keeps_every_component_index(tmp_path, engine):
    """Without the spec, the first component was named like the whole vector:
    'offset', 'offset[1]', 'offset[2]' (found by a CLI probe)."""
    if engine == "duckdb":
        pytest.importorskip("duckdb")
    offset = vr.Variation(
        "offset", vr.VariationCfg(sampler=vr.UniformCfg(low=(-1.0,) * 3, high=(1.0,) * 3))
    )
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    with vr.RecorderManager(4, variations=[offset, mass], output=tmp_path, run_id="r") as m:
        for _ in range(3):
            m.reset(None, None)
            m.record_step(reward=np.ones(4))
            m.record_pre_reset(None)
    with_spec = episode_table(tmp_path, engine=engine).factors
    (tmp_path / "run_id=r" / "run.json").unlink()
    with pytest.warns(DatasetWarning, match="run.json is missing"):
        without = episode_table(tmp_path, engine=engine).factors
    assert with_spec == ["offset[0]", "offset[1]", "offset[2]", "mass"]
    assert sorted(without) == sorted(with_spec)  # without a spec, in name order


def test_a_resumed_run_replaces_the_count_of_episodes_open_at_close(tmp_path):
    """The first process's count stayed after a resume that ran those episodes again
    (found by a review probe)."""

    def mass():
        return vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))

    m = vr.RecorderManager(4, variations=[mass()], output=tmp_path, run_id="r")
    m.reset(None, None)
    m.record_step(reward=np.ones(4))
    m.close(error=RuntimeError("interrupted"))
    run_json = tmp_path / "run_id=r" / "run.json"
    assert json.loads(run_json.read_text())["metadata"]["episodes_open_at_close"] == 4
    with vr.RecorderManager(4, variations=[mass()], output=RunWriter.resume(tmp_path, "r")) as m:
        m.reset(None, None)
        m.record_step(reward=np.ones(4))
        m.reset(None, None)
    doc = json.loads(run_json.read_text())
    assert doc["status"] == "complete" and doc["metadata"]["episodes_open_at_close"] == 0
    assert not any("still running when it closed" in n for n in episode_table(tmp_path).notes)
