"""Recording to and reading from an S3 bucket: a moto server over real HTTP on 127.0.0.1.

The server is started once for the module (about a second) and stopped afterwards;
every test gets its own bucket. Credentials and endpoint reach pyarrow and boto3 only
through the standard environment variables.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import varirec as vr
from varirec.cli import main as cli_main
from varirec.errors import DatasetError
from varirec.storage import RunWriter, open_dataset
from varirec.storage.location import StorePath, redact

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

ACCESS_KEY = "AKIAVARIRECTEST0001"
SECRET_KEY = "varirec-secret-" + "x" * 24
CHILD = Path(__file__).with_name("crash_child.py")


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on a free port, with the environment pointing at it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(key, raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        yield endpoint
    server.stop()


@pytest.fixture
def bucket(s3_endpoint):
    name = f"varirec-{secrets.token_hex(4)}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def variations() -> list[vr.Variation]:
    return [
        vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2))),
        vr.Variation("com", vr.VariationCfg(sampler=vr.UniformCfg(low=(0, 0), high=(1, 2)))),
    ]


def record(output, steps: int = 6, num_envs: int = 4, **options) -> vr.RecorderManager:
    manager = vr.RecorderManager(
        num_envs, variations=variations(), output=output, run_id="r1", seed=3, **options
    )
    ids = np.arange(num_envs)
    with manager:
        manager.reset(None, ids)
        for step in range(steps):
            done = (np.arange(num_envs) + step) % 2 == 0
            manager.record_step(reward=np.full(num_envs, float(step)), terminated=done)
            manager.reset(None, np.flatnonzero(done))
            manager.record_post_step()
    return manager


def keys(bucket: str, prefix: str = "") -> list[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def sort_draws(table: pa.Table) -> pa.Table:
    cols = ["seq", "variation", "component", "env_id", "episode", "value"]
    return table.select(cols).sort_by([("seq", "ascending"), ("component", "ascending")])


def test_a_run_recorded_to_a_bucket_reads_back_as_the_same_run_on_disk(bucket, tmp_path):
    record(f"s3://{bucket}/data")
    record(tmp_path)
    remote, local = open_dataset(f"s3://{bucket}/data"), open_dataset(tmp_path)
    assert remote.runs()[0].status == "complete"
    assert remote.runs()[0].counts == local.runs()[0].counts
    assert remote.runs()[0].metadata["seed"] == 3
    assert sort_draws(remote.draws()).to_pylist() == sort_draws(local.draws()).to_pylist()
    eps = ["env_id", "episode", "length", "return", "terminated"]
    assert remote.episodes(columns=eps).sort_by(
        [("env_id", "ascending"), ("episode", "ascending")]
    ) == local.episodes(columns=eps).sort_by([("env_id", "ascending"), ("episode", "ascending")])
    # Only complete objects with final names: no temporary part was ever uploaded.
    listed = keys(bucket)
    assert all(".tmp" not in k for k in listed), listed
    assert {k.split("/")[2] for k in listed} == {"run.json", "writers", "draws", "episodes"}


def test_an_existing_run_is_refused_and_nothing_of_it_changes(bucket):
    uri = f"s3://{bucket}/data"
    RunWriter(uri, "r1", metadata={"who": "first"}, background=False).close()
    before = {k: boto3.client("s3").get_object(Bucket=bucket, Key=k)["ETag"] for k in keys(bucket)}
    with pytest.raises(DatasetError, match=r"run 'r1' already exists in s3://.*/data.*overwrite"):
        RunWriter(uri, "r1", metadata={"who": "second"}, background=False)
    after = {k: boto3.client("s3").get_object(Bucket=bucket, Key=k)["ETag"] for k in keys(bucket)}
    assert before == after
    assert open_dataset(uri).run("r1").metadata == {"who": "first"}
    # overwrite=True replaces it.
    RunWriter(uri, "r1", metadata={"who": "third"}, overwrite=True, background=False).close()
    assert open_dataset(uri).run("r1").metadata == {"who": "third"}


def test_run_json_is_created_by_one_conditional_put_even_between_racing_creators(bucket):
    target = StorePath.from_uri(f"s3://{bucket}/data/run_id=r1/run.json")
    won, lost = [], []
    barrier = threading.Barrier(8)

    def create(i: int) -> None:
        barrier.wait()
        try:
            target.create_text(f'{{"creator": {i}}}')
            won.append(i)
        except FileExistsError:
            lost.append(i)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 7
    assert target.read_text() == f'{{"creator": {won[0]}}}'


def test_pandas_and_duckdb_read_the_bucket_while_the_run_continues(bucket, request):
    pd = pytest.importorskip("pandas")
    duckdb = pytest.importorskip("duckdb")
    uri = f"s3://{bucket}/data"
    manager = vr.RecorderManager(4, variations=variations(), output=uri, run_id="r1", seed=0)
    request.addfinalizer(manager.close)
    ids = np.arange(4)
    manager.reset(None, ids)
    for _ in range(3):
        manager.record_step(reward=np.ones(4), terminated=np.ones(4, bool))
        manager.reset(None, ids)
    manager.flush()  # parts of the 12 finished episodes are in the bucket; the run goes on
    frame = pd.read_parquet(f"{uri}/run_id=r1/episodes")
    assert len(frame) == 12
    con = duckdb.connect()
    con.register("draws", pads.dataset(f"{uri}/run_id=r1/draws", format="parquet"))
    n = con.sql("SELECT count(*) AS n, count(DISTINCT episode) AS e FROM draws").fetchall()
    assert n == [(4 * 4 * 3, 4)]  # 4 resets x 4 envs x 3 values (mass, com[x], com[y])
    assert open_dataset(uri).runs()[0].status == "running"
    manager.close()
    assert open_dataset(uri).runs()[0].status == "complete"


def test_no_credential_reaches_the_bucket_or_the_logs(bucket, caplog):
    caplog.set_level(logging.DEBUG)
    record(f"s3://{bucket}/data")
    for key in keys(bucket):
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        assert SECRET_KEY.encode() not in body and ACCESS_KEY.encode() not in body, key
    varirec_logs = [r.getMessage() for r in caplog.records if r.name.startswith("varirec")]
    assert varirec_logs  # the writer did log (close, parts)
    assert not any(SECRET_KEY in m or ACCESS_KEY in m for m in varirec_logs)
    # A URI with keys in it: the error names the place, not the keys.
    # Keys in a URI are refused (credentials come from the environment only), unshown.
    with pytest.raises(ValueError, match="has keys in it") as info:
        open_dataset(f"s3://{ACCESS_KEY}:{SECRET_KEY}@{bucket}/nothing")
    assert SECRET_KEY not in str(info.value) and f"s3://{bucket}/nothing" in str(info.value)
    with pytest.raises(DatasetError) as info:
        open_dataset(f"s3://{bucket}/nothing?region=us-east-1")
    assert f"s3://{bucket}/nothing" in str(info.value)
    assert redact(f"s3://k:{SECRET_KEY}@b/p?secret_key={SECRET_KEY}") == "s3://b/p"


def test_inspect_and_analyze_take_a_bucket_uri(bucket, capsys):
    pytest.importorskip("SALib")
    from varirec.analysis import run_study
    from varirec.envs import ishigami_variations, make_ishigami_env

    uri = f"s3://{bucket}/studies"
    run_study(
        make_ishigami_env, ishigami_variations(), n=16, num_envs=32, output=uri,
        run_id="s1", progress=False,
    )  # fmt: skip
    assert cli_main(["inspect", uri, "--json"]) == 0
    assert '"run_id": "s1"' in capsys.readouterr().out
    assert cli_main(["analyze", uri, "--outcome", "return", "--method", "sobol"]) == 0
    out = capsys.readouterr().out
    assert "x1" in out and "x3" in out


def test_a_writer_sigkilled_mid_run_leaves_only_complete_parts(bucket, tmp_path):
    """Every listed part reads; what was handed over a flush window before the kill is there."""
    uri = f"s3://{bucket}/data"
    log = tmp_path / "log"
    with open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), uri, "k1", "bare", str(log), "0.0"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=os.environ.copy(),
        )
    window = 1.0 + 2.0  # crash_child's flush window, plus slack for upload on a busy machine
    try:
        while not log.exists() or not log.read_text():
            assert proc.poll() is None, (tmp_path / "stderr").read_text()
            time.sleep(0.02)
        time.sleep(window + 1.0)
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    steps = [(int(s), float(t)) for s, t in (ln.split() for ln in log.read_text().splitlines())]
    safe = max(k for k, t in steps if t <= killed_at - window)
    fs, root = StorePath.from_uri(uri).filesystem, f"{bucket}/data/run_id=k1"
    episodes = []
    for key in keys(bucket):
        if "/episodes/" in key:
            assert key.rsplit("/", 1)[1].startswith("part-"), key
            episodes.append(pq.read_table(f"{bucket}/{key}", filesystem=fs))  # reads
        elif "/draws/" in key:
            pq.read_metadata(f"{bucket}/{key}", filesystem=fs)
    assert episodes, "no part was uploaded before the kill"
    table = pa.concat_tables(episodes)
    pairs = table.select(["env_id", "episode"]).group_by(["env_id", "episode"]).aggregate([])
    assert pairs.num_rows == table.num_rows  # nothing written twice
    episode = table.column("episode").to_numpy()
    per_episode = np.bincount(episode)
    # Episode k ends in step k: every episode of the steps older than the window is there.
    assert (per_episode[: safe + 1] == 2048).all(), (safe, per_episode)
    assert episode.max() <= steps[-1][0] + 1
    assert open_dataset(uri).run("k1").status == "running"  # killed: never closed
    assert fs.get_file_info(root).type.name == "Directory"


def test_an_fsspec_filesystem_records_and_reads_like_a_directory(tmp_path):
    """Any fsspec filesystem (here fsspec's in-memory one): parts written whole, then moved."""
    fsspec = pytest.importorskip("fsspec")
    uri = f"memory://varirec-{secrets.token_hex(4)}/data"
    record(uri)
    record(tmp_path)
    remote, local = open_dataset(uri), open_dataset(tmp_path)
    assert remote.runs()[0].status == "complete"
    assert sort_draws(remote.draws()).to_pylist() == sort_draws(local.draws()).to_pylist()
    names = fsspec.filesystem("memory").find(uri)
    assert names and not [n for n in names if n.endswith(".tmp")]


def test_the_s3_specific_endpoint_variable_is_honoured(bucket, monkeypatch, s3_endpoint):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    RunWriter(f"s3://{bucket}/data", "r1", metadata={"k": 1}, background=False).close()
    with pytest.raises(DatasetError, match="already exists"):
        RunWriter(f"s3://{bucket}/data", "r1", background=False)
    assert open_dataset(f"s3://{bucket}/data").run("r1").metadata == {"k": 1}
    target = StorePath.from_uri(f"s3://{bucket}/other.json")  # boto3's conditional PUT
    target.create_text("1")
    with pytest.raises(FileExistsError):
        target._put_if_absent(b"2")
    assert target.read_text() == "1"


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("s3://K:S@b-ok/x", "has keys in it"),
        ("s3:///data", "names no bucket"),
        ("s3://Bad_Bucket!/x", "not an S3 bucket name"),
        ("s3://bucket/a/../b", r"'\.\.' path component.*write s3://bucket/b"),
        ("s3://bucket//a", r"empty path component.*write s3://bucket/a"),
        ("s3://bucket/x?bogus=1", "Unexpected query parameter.*'bogus'"),
    ],
)
def test_an_s3_uri_that_would_go_wrong_is_refused_before_anything_is_written(uri, words):
    from varirec import RunWriter

    with pytest.raises(ValueError, match=words) as info:
        RunWriter(uri, run_id="r")
    assert ":S@" not in str(info.value)


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("abfs://container@account.dfs.core.windows.net/path", "container/path"),  # no keys
        ("s3://Legacy_Bucket/data?region=us-east-1", "Legacy_Bucket/data"),  # old us-east-1
        ("s3://ab/data?region=us-east-1&endpoint_override=localhost:9000", "ab/data"),
        ("s3://my.bucket-1/a/b.parquet?region=us-east-1", "my.bucket-1/a/b.parquet"),
    ],
)
def test_uris_that_stores_take_resolve(uri, path):
    from varirec.storage.location import resolve_filesystem

    assert resolve_filesystem(uri)[1] == path
