"""Crash safety in real processes: SIGKILL, SIGTERM, SIGINT, uncaught errors, joined writers."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import varirec
from varirec.storage import DatasetWarning, RunWriter, open_dataset

BATCH, MAX_ROWS, ROW_GROUP, MAX_QUEUE = 100, 2000, 500, 4
# Rows a SIGKILL may lose: the open part, the row-group buffer, the queue, the batch in hand.
MAX_LOST = MAX_ROWS + ROW_GROUP + (MAX_QUEUE + 2) * BATCH

CHILD = textwrap.dedent(
    f"""
    import sys, time
    import numpy as np, pyarrow as pa
    from varirec.storage import RunWriter

    root, run_id, mode = sys.argv[1:4]
    kw = dict(max_rows_per_part={MAX_ROWS}, row_group_size={ROW_GROUP}, max_queue={MAX_QUEUE})

    def loop(w, limit=None, worker=0, pause=0.001):
        n = 0
        while limit is None or n < limit:
            seq = np.arange(n, n + {BATCH})
            w.append("steps", pa.table({{"worker": np.full({BATCH}, worker), "seq": seq}}))
            n += {BATCH}
            print(n, flush=True)
            time.sleep(pause)

    if mode == "kill":
        loop(RunWriter(root, run_id, writer_id="victim", **kw))
    elif mode in ("term", "int"):
        with RunWriter(root, run_id, **kw) as w:
            loop(w)
    elif mode == "term_fg":  # the main thread writes: SIGTERM lands mid-write, no pauses
        with RunWriter(root, run_id, background=False, **kw) as w:
            loop(w, pause=0)
    elif mode == "term_bare":  # no with-block: the atexit hook must close it
        loop(RunWriter(root, run_id, **kw))
    elif mode == "raise":  # uncaught exception outside any with-block
        w = RunWriter(root, run_id, **kw)
        loop(w, limit=1000)
        raise RuntimeError("simulated crash after 1000 rows")
    elif mode == "join":
        with RunWriter.join(root, run_id, **kw) as w:
            loop(w, limit=3000, worker=int(sys.argv[4]))
    """
)

pytestmark = pytest.mark.slow


def start(tmp_path: Path, run_id: str, mode: str, *extra: str) -> subprocess.Popen[str]:
    script = tmp_path / "child.py"
    if not script.exists():  # rewriting it could truncate it under a child still reading it
        tmp = tmp_path / f".child.{os.getpid()}.py"
        tmp.write_text(CHILD)
        tmp.replace(script)
    env = {**os.environ, "PYTHONPATH": str(Path(varirec.__file__).parents[1])}
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "data"), run_id, mode, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_ready(proc: subprocess.Popen[str], rows: int = BATCH) -> int:
    """Block until the child has appended at least ``rows`` rows; return how many."""
    appended = 0
    while appended < rows:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"child died after {appended} rows: {proc.communicate()[1]}")
        appended = int(line)
    return appended


def last_count(stdout: str, default: int = BATCH) -> int:
    lines = [line for line in stdout.split("\n") if line.strip().isdigit()]
    return int(lines[-1]) if lines else default


def read_steps(root: Path, run_id: str):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = open_dataset(root).steps(run_id)
    assert all(issubclass(w.category, DatasetWarning) for w in caught), caught
    return table, [str(w.message) for w in caught]


def test_sigkill_at_random_moments_loses_at_most_the_open_part(tmp_path):
    delays = [random.Random(7 + i).uniform(0.05, 1.0) for i in range(5)]
    procs = [start(tmp_path, f"kill{i}", "kill") for i in range(5)]
    # Past MAX_LOST rows before the kill, so some rows must be in final parts.
    progress = [wait_ready(proc, MAX_LOST + BATCH) for proc in procs]
    began = time.monotonic()
    for proc, delay in sorted(zip(procs, delays, strict=True), key=lambda p: p[1]):
        time.sleep(max(0.0, began + delay - time.monotonic()))
        proc.send_signal(signal.SIGKILL)
    root = tmp_path / "data"
    for i, proc in enumerate(procs):
        stdout, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        parts = sorted((root / f"run_id=kill{i}" / "steps").glob("part-*.parquet"))
        assert parts, "more than MAX_LOST rows were appended, so a part must be final"
        for part in parts:  # every final-named part is a complete Parquet file
            assert pq.read_table(part).num_rows > 0
        table, messages = read_steps(root, f"kill{i}")
        assert all("unfinished part from a writer that died" in m for m in messages)
        seq = sorted(table.column("seq").to_pylist())
        assert seq == list(range(len(seq)))  # a prefix: nothing in the middle is missing
        appended = last_count(stdout, default=progress[i])
        assert 0 < appended - MAX_LOST <= len(seq) <= appended + BATCH


@pytest.mark.parametrize(
    ("mode", "sig", "error_type"),
    [
        ("term", signal.SIGTERM, "SIGTERM"),
        ("term_bare", signal.SIGTERM, "SIGTERM"),
        ("term_fg", signal.SIGTERM, "SIGTERM"),
        ("int", signal.SIGINT, "KeyboardInterrupt"),
    ],
)
def test_sigterm_and_sigint_lose_nothing_and_record_why(tmp_path, mode, sig, error_type):
    proc = start(tmp_path, "r", mode)
    wait_ready(proc)
    time.sleep(0.3)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM, stderr
    else:  # an uncaught KeyboardInterrupt ends Python by SIGINT itself
        assert proc.returncode == -signal.SIGINT, stderr
    run_dir = tmp_path / "data" / "run_id=r"
    assert not list(run_dir.rglob("*.tmp"))
    doc = json.loads((run_dir / "run.json").read_text())
    assert doc["status"] == "failed" and doc["error"]["type"] == error_type
    table, messages = read_steps(tmp_path / "data", "r")
    assert messages == []
    seq = sorted(table.column("seq").to_pylist())
    assert seq == list(range(doc["counts"]["steps"]))  # every accepted row is readable
    assert len(seq) >= last_count(stdout)


def test_uncaught_exception_outside_with_is_closed_at_exit(tmp_path):
    proc = start(tmp_path, "r", "raise")
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "simulated crash" in stderr
    doc = json.loads((tmp_path / "data" / "run_id=r" / "run.json").read_text())
    assert doc["status"] == "failed"
    assert doc["error"] == {"type": "RuntimeError", "message": "simulated crash after 1000 rows"}
    table, messages = read_steps(tmp_path / "data", "r")
    assert messages == [] and sorted(table.column("seq").to_pylist()) == list(range(1000))


def test_four_processes_write_one_run_without_collisions(tmp_path):
    root = tmp_path / "data"
    creator = RunWriter(root, "shared", writer_id="creator", background=False)
    procs = [start(tmp_path, "shared", "join", str(worker)) for worker in range(4)]
    stderrs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0 and last_count(stdout) == 3000, (stdout[-200:], stderr)
        stderrs.append(stderr)
    creator.close()
    doc = json.loads((root / "run_id=shared" / "run.json").read_text())
    sidecars = {p.name: p.read_text() for p in (root / "run_id=shared" / "writers").iterdir()}
    why = f"run.json {doc}\nsidecars {sidecars}\nworkers' stderr {stderrs}"
    assert doc["status"] == "complete" and doc["counts"] == {"steps": 12_000}, why
    assert len(doc["writers"]) == 5 and "creator" in doc["writers"]
    names = [p.name for p in (root / "run_id=shared" / "steps").iterdir()]
    assert len(names) == 8 and len({n.split("-")[1] for n in names}) == 4  # 2 parts per writer
    table = open_dataset(root).steps()
    for worker in range(4):
        rows = table.filter(pc.field("worker") == worker)
        assert sorted(rows.column("seq").to_pylist()) == list(range(3000))


WINDOW_CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    from pathlib import Path
    import numpy as np
    import varirec as vr
    from varirec.storage.writer import RunWriter

    root, window, caught = sys.argv[1], sys.argv[2], sys.argv[3] == "catch"
    method = {"create": "_create_run", "close": "_write_sidecar"}[window]
    original = getattr(RunWriter, method)

    def signalled(self, *args, **kwargs):  # the SIGTERM lands inside this step
        if window == "create" or not kwargs.get("new", False):
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args, **kwargs)

    def record(run_id):
        mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
        m = vr.RecorderManager(4, variations=[mass], output=root, run_id=run_id)
        m.reset(None, None)
        for _ in range(3):
            m.record_step(reward=np.ones(4), terminated=np.ones(4, bool))
            m.reset(None, None)
        print("recorded", flush=True)
        m.close()

    def status(run_id):
        doc = json.loads((Path(root) / f"run_id={run_id}" / "run.json").read_text())
        return f"{run_id} {doc['status']} {(doc.get('error') or {}).get('type')}"

    setattr(RunWriter, method, signalled)
    try:
        record("r1")
    except SystemExit as exc:  # IPython, pytest, Ray or a user's except catch the exit
        if not caught:
            raise
        print("caught", exc.code, flush=True)
    setattr(RunWriter, method, original)
    print(status("r1"), flush=True)
    record("r2")  # a later run is not taken for the signal's
    print(status("r2"), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)  # and a later SIGTERM still ends the process
    print("survived", flush=True)
    """
)


def _window_child(tmp_path, window: str, mode: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "child.py"
    script.write_text(WINDOW_CHILD)
    env = {**os.environ, "PYTHONPATH": str(Path(varirec.__file__).parents[1])}
    return subprocess.run([sys.executable, str(script), str(tmp_path / "data"), window, mode],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip


@pytest.mark.parametrize("window", ["create", "close"])
def test_sigterm_while_a_run_is_made_or_closed_still_ends_it(tmp_path, window):
    """A SIGTERM while run.json is created, or while the close writes the sidecar (past
    the writer's unregister), waits for that step: exit 143, a run.json that says how the
    run ended (never "running"), no temporary file left."""
    proc = _window_child(tmp_path, window, "exit")
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    run_dir = tmp_path / "data" / "run_id=r1"
    assert not list(run_dir.rglob("*.tmp"))
    if window == "create":  # ended before anything was recorded, as failed
        assert proc.stdout == ""
        doc = json.loads((run_dir / "run.json").read_text())
        assert doc["status"] == "failed" and doc["error"]["type"] == "SIGTERM"
    else:  # every row was in when the signal came
        assert proc.stdout == "recorded\n"
        assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
        assert len(open_dataset(tmp_path / "data").episodes("r1")) == 12


@pytest.mark.parametrize("window", ["create", "close"])
def test_a_caught_exit_of_a_held_sigterm_leaves_no_signal_behind(tmp_path, window):
    proc = _window_child(tmp_path, window, "catch")
    lines = proc.stdout.split("\n")
    assert "caught 143" in lines, proc.stderr
    # the run the signal cut short is closed, not left open until the interpreter exits
    assert ("r1 failed SIGTERM" if window == "create" else "r1 complete None") in lines
    assert "r2 complete None" in lines and "survived" not in lines
    assert proc.returncode == -signal.SIGTERM
