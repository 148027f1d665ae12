"""Nothing lost when a recording process dies (issue 8): signals at random moments,
interrupted hand-overs, buffers with an age limit, a full disk, forked children."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import varirec as vr
from varirec.errors import DatasetError, RecorderStateError
from varirec.recording import manager as manager_module
from varirec.recording import terms
from varirec.recording.recorder import VariationRecorder
from varirec.storage import RunWriter, shutdown

CHILD = Path(__file__).with_name("crash_child.py")
NUM_ENVS = 2048  # as in crash_child.py
FLUSH_SECONDS = 1.0  # as in crash_child.py
# A SIGKILL may lose what was handed over in the last flush window; the slack covers
# the writer thread's own delay (conversion, compression) on a loaded machine.
KILL_WINDOW = FLUSH_SECONDS + 2.0


def run_json(root: Path, run_id: str) -> dict:
    return json.loads((root / f"run_id={run_id}" / "run.json").read_text())


def read_table(root: Path, run_id: str, table: str) -> pa.Table:
    """Every final-named part of ``table``, read with pyarrow directly."""
    parts = sorted((root / f"run_id={run_id}" / table).glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts]) if parts else None


def np_col(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy().astype(np.int64)


def check_dataset(root: Path, run_id: str, safe_step: int, last_step: int) -> dict[str, int]:
    """Nothing written twice; every row of steps ``<= safe_step`` present; nothing from
    later than the step after ``last_step``. Returns the rows per table."""
    steps = read_table(root, run_id, "steps")
    episodes = read_table(root, run_id, "episodes")
    draws = read_table(root, run_id, "draws")
    rows = {}
    # steps: one row per (env, episode); episode k is step k of the loop.
    for name, table, bound in (
        ("steps", steps, safe_step),
        ("episodes", episodes, safe_step),
        ("draws", draws, safe_step + 1),  # the reset of step k draws episode k + 1
    ):
        if table is None:
            assert safe_step < 0, f"no {name} part though step {safe_step} was handed over"
            rows[name] = 0
            continue
        env = np_col(table, "env_id")
        episode = np_col(table, "episode")
        assert env.min() >= 0 and env.max() < NUM_ENVS
        if name == "draws":
            variation = pc.equal(table.column("variation").cast(pa.string()), "com")
            component = np_col(table, "component")
            key = ((np_col(table, "seq") * 2 + variation.to_numpy()) * 4 + component) * NUM_ENVS
            per_episode = 4 * NUM_ENVS  # mass (1 component) and com (3)
        elif name == "steps":
            key = (episode * 1024 + np_col(table, "step")) * NUM_ENVS
            per_episode = NUM_ENVS
        else:
            key = episode * NUM_ENVS
            per_episode = NUM_ENVS
        key = key + env
        assert np.unique(key).size == key.size, f"{name}: rows written twice"
        # Unique rows, each episode at most once per env: a count is the complete set.
        assert np.count_nonzero(episode <= bound) == (bound + 1) * per_episode, (
            f"{name}: rows of episodes <= {bound} are missing"
        )
        assert episode.max() <= bound + (last_step - safe_step) + 1, f"{name}: rows never recorded"
        if name == "episodes":  # one step per episode: its return is that step's reward
            want = np.linspace(0.0, 1.0, NUM_ENVS)[env]
            assert np.array_equal(table.column("return").to_numpy(), want), "wrong returns"
            assert pc.all(table.column("terminated")).as_py(), "wrong flags"
        rows[name] = table.num_rows
    return rows


def read_log(path: Path) -> list[tuple[int, float]]:
    out = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) == 2 and "." in fields[1] and len(fields[1].split(".")[1]) == 6:
            out.append((int(fields[0]), float(fields[1])))  # a line cut by SIGKILL is skipped
    return out


@pytest.fixture
def children():
    """The child processes a test starts; at teardown, those still running are killed
    and every one is waited for (a failed assertion leaves no process behind)."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def start(
    children: list[subprocess.Popen],
    tmp_path: Path,
    i: int,
    shape: str,
    pause: float,
    gpu: bool = False,
) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"log{i}"
    log.touch()
    env = {**os.environ, "PYTHONPATH": str(Path(vr.__file__).parents[1])}
    with open(tmp_path / f"stderr{i}", "w") as stderr:  # the child keeps its own copy
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(tmp_path / "data"), f"r{i}", shape, str(log),
             str(pause), "gpu" if gpu else "numpy"],
            stdout=subprocess.DEVNULL, stderr=stderr, env=env,
        )  # fmt: skip
    children.append(proc)
    return proc, log


def wait_for_steps(proc: subprocess.Popen, log: Path, tmp_path: Path, i: int) -> float:
    """Block until the child logged its first step; return when that was (monotonic
    time, from the child's own log: a child that started sooner than the one waited
    for before it is not left running longer)."""
    while not (steps := read_log(log)):
        if proc.poll() is not None:
            raise AssertionError((tmp_path / f"stderr{i}").read_text())
        time.sleep(0.02)
    return time.monotonic() - max(0.0, time.time() - steps[0][1])


RUNS = 6
TORCH = importlib.util.find_spec("torch") is not None


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=str)
def test_signals_at_random_moments_lose_nothing_handed_over_and_write_nothing_twice(
    tmp_path, sig, children
):
    rng = random.Random(int(sig))  # reproducible moments, different per signal
    shapes = ["with", "bare"] * (RUNS // 2)
    # Two runs (one of each shape) take the GPU code on CPU torch (outcomes wait on
    # the "device" until a hand-over), where torch is installed.
    gpu = [i % 3 == 2 and TORCH for i in range(RUNS)]
    pauses = [rng.choice([0.0, 0.002, 0.01]) for _ in range(RUNS)]
    if sig == signal.SIGKILL:  # long enough for a flush window to pass before the kill
        delays = [rng.uniform(KILL_WINDOW + 0.5, KILL_WINDOW + 2.0) for _ in range(RUNS)]
    else:
        delays = [rng.uniform(0.05, 1.5) for _ in range(RUNS)]
    # The runs that import torch start first, and are running before the others start:
    # no run waits for a slow starter (its dataset would grow past what is checked fast).
    started = {}
    for group in ([i for i in range(RUNS) if gpu[i]], [i for i in range(RUNS) if not gpu[i]]):
        for i in group:
            started[i] = start(children, tmp_path, i, shapes[i], pauses[i], gpu[i])
        for i in group:
            started[i] = (*started[i], wait_for_steps(*started[i], tmp_path, i))
    runs = [started[i][:2] for i in range(RUNS)]
    ready = [started[i][2] for i in range(RUNS)]
    order = sorted(range(RUNS), key=lambda i: ready[i] + delays[i])
    killed_at = {}
    for i in order:
        time.sleep(max(0.0, ready[i] + delays[i] - time.monotonic()))
        killed_at[i] = time.time()
        runs[i][0].send_signal(sig)
    root = tmp_path / "data"
    for i, (proc, log) in enumerate(runs):
        proc.wait(timeout=60)
        stderr = (tmp_path / f"stderr{i}").read_text()
        steps = read_log(log)
        last = steps[-1][0]
        if sig == signal.SIGKILL:
            assert proc.returncode == -signal.SIGKILL
            safe = max((k for k, t in steps if t <= killed_at[i] - KILL_WINDOW), default=-1)
            assert safe >= 0, f"run {i}: no step older than the flush window ({steps[-1]})"
            check_dataset(root, f"r{i}", safe, last)
            continue
        # SIGINT ends Python by SIGINT once the KeyboardInterrupt went uncaught.
        expected_rc = 128 + signal.SIGTERM if sig == signal.SIGTERM else -signal.SIGINT
        assert proc.returncode == expected_rc, stderr
        rows = check_dataset(root, f"r{i}", last, last)
        doc = run_json(root, f"r{i}")
        assert doc["status"] == "failed", doc
        assert doc["error"]["type"] == ("SIGTERM" if sig == signal.SIGTERM else "KeyboardInterrupt")
        assert doc["closed_by"] == ("close" if shapes[i] == "with" else "exit")
        assert doc["counts"] == rows  # run.json agrees with what is readable
        assert not list((root / f"run_id=r{i}").rglob("*.tmp"))


@pytest.mark.slow
def test_an_uncaught_exception_without_a_with_block_writes_every_buffered_row(tmp_path, children):
    proc, log = start(children, tmp_path, 0, "raise", 0.0)
    proc.wait(timeout=60)
    assert proc.returncode == 1
    steps = read_log(log)
    assert [k for k, _ in steps] == list(range(20))
    root = tmp_path / "data"
    rows = check_dataset(root, "r0", 19, 19)
    doc = run_json(root, "r0")
    assert doc["status"] == "failed" and doc["closed_by"] == "exit"
    assert doc["error"] == {"type": "RuntimeError", "message": "simulated crash after 20 steps"}
    assert doc["counts"] == rows == {"steps": 20 * NUM_ENVS, "episodes": 20 * NUM_ENVS,
                                     "draws": 21 * 4 * NUM_ENVS}  # fmt: skip


LATE_CHILD = """
import atexit, os, signal, sys, threading
import numpy as np, pyarrow as pa
from varirec.storage import RunWriter

class Held:  # a batch whose conversion waits until the interpreter is shutting down
    def __init__(self, gate, start):
        self.gate, self.start = gate, start
    def __len__(self):
        return 5
    def to_arrow(self):
        self.gate.wait(60)
        return pa.table({"seq": pa.array(np.arange(self.start, self.start + 5))})

gate = threading.Event()
writer = RunWriter(sys.argv[1], "r1")
atexit.register(gate.set)  # registered after the writer's exit hook: runs before it
writer.append("steps", Held(gate, 0))
writer.append("steps", Held(gate, 5))
if sys.argv[2] == "int":
    raise KeyboardInterrupt  # uncaught, no close: the exit hook writes both batches
os.kill(os.getpid(), signal.SIGTERM)
"""


@pytest.mark.parametrize("how", ["int", "term"])
def test_batches_first_converted_while_the_interpreter_exits_are_written_and_the_exit_is_kept(
    tmp_path, how
):
    # pyarrow imports pandas at its first conversion; during the shutdown that import
    # failed (the batch was lost) and cleared CPython's "exit by SIGINT" (status 1).
    env = {**os.environ, "PYTHONPATH": str(Path(vr.__file__).parents[1])}
    proc = subprocess.run(
        [sys.executable, "-c", LATE_CHILD, str(tmp_path), how],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    expected = -signal.SIGINT if how == "int" else 128 + signal.SIGTERM
    assert proc.returncode == expected, proc.stderr
    assert "can't register atexit" not in proc.stderr
    doc = run_json(tmp_path, "r1")
    assert doc["error"]["type"] == ("KeyboardInterrupt" if how == "int" else "SIGTERM")
    assert "rows_lost" not in doc and doc["counts"] == {"steps": 10}
    steps = read_table(tmp_path, "r1", "steps")
    assert sorted(steps.column("seq").to_pylist()) == list(range(10))


GYM_CHILD = """
import os, signal, sys
import gymnasium as gym
from varirec.integrations.gym import VariationWrapper, cartpole_variations

env = VariationWrapper(gym.make("CartPole-v1"), cartpole_variations(), output=sys.argv[1],
                       run_id="r1", seed=0)
for episode in range(30):  # the README quickstart, without env.close()
    obs, _ = env.reset()
    done = False
    while not done:
        obs, r, term, trunc, _ = env.step(int(obs[2] > 0))
        done = term or trunc
    print(episode, flush=True)
    if sys.argv[2] == "term" and episode == 19:
        os.kill(os.getpid(), signal.SIGTERM)
if sys.argv[2] == "raise":
    raise ValueError("the policy failed")
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["term", "raise"])
def test_the_gymnasium_quickstart_without_close_keeps_every_episode(tmp_path, how):
    env = {**os.environ, "PYTHONPATH": str(Path(vr.__file__).parents[1])}
    proc = subprocess.run(
        [sys.executable, "-c", GYM_CHILD, str(tmp_path), how],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    finished = len(proc.stdout.split())
    if how == "term":
        assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
        assert finished == 20
    else:
        assert proc.returncode == 1 and finished == 30, proc.stderr
    doc = run_json(tmp_path, "r1")
    assert doc["status"] == "failed" and doc["closed_by"] == "exit"
    if how == "term":
        assert doc["error"]["type"] == "SIGTERM"
    else:
        assert doc["error"] == {"type": "ValueError", "message": "the policy failed"}
    episodes = read_table(tmp_path, "r1", "episodes")
    assert episodes is not None, "no episodes part: the manager's buffer was lost"
    assert sorted(episodes.column("episode").to_pylist()) == list(range(finished))
    assert doc["counts"]["episodes"] == finished


# ------------------------------------------------------------ in-process, deterministic
@pytest.fixture
def own_signals(monkeypatch):
    """The storage SIGTERM handler as the process's only one, with fresh process state,
    and Python's Ctrl-C handler (pytest started with SIGINT ignored has none)."""
    monkeypatch.setattr(shutdown, "_OPEN", {})
    monkeypatch.setattr(shutdown, "_SIGNALLED", set())
    monkeypatch.setitem(shutdown._STATE, "previous", None)
    monkeypatch.setitem(shutdown._STATE, "signal", None)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    assert before in (signal.default_int_handler, signal.SIG_IGN)  # no handler left behind
    yield
    signal.signal(signal.SIGINT, before)


class Gate:
    """A batch whose conversion waits for the test (it holds the writer thread)."""

    def __init__(self, rows: int, start: int, gate: threading.Event | None = None) -> None:
        self.rows, self.start, self.gate = rows, start, gate

    def __len__(self) -> int:
        return self.rows

    def to_arrow(self) -> pa.Table:
        if self.gate is not None:
            self.gate.wait(30)
        return pa.table({"seq": np.arange(self.start, self.start + self.rows)})


def test_ctrl_c_while_waiting_for_queue_space_keeps_the_draws_to_write_them_once(
    tmp_path, own_signals
):
    gate = threading.Event()
    writer = RunWriter(tmp_path, "r1", max_queue=1)
    writer.append("blocker", Gate(1, 0, gate))  # the writer thread waits on the gate
    writer.append("blocker", Gate(1, 1))  # ... and this one fills the queue
    recorder = VariationRecorder(lambda chunk: writer.append("draws", chunk), max_rows=100)
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    recorder.attach([mass])
    mass.draw(env_ids=np.arange(10))
    # A real SIGINT, delivered while the flush waits for queue space.
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        recorder.flush()
    assert recorder._chunk.rows == 10  # not handed over, so still in the buffer
    gate.set()
    recorder.flush()  # the next hand-over (or the close) writes it
    assert recorder._chunk.rows == 0 and recorder.rows_recorded == 10
    writer.close()
    draws = read_table(tmp_path, "r1", "draws")
    assert sorted(draws.column("env_id").to_pylist()) == list(range(10))  # once each
    assert writer.counts == {"blocker": 2, "draws": 10}


def test_sigterm_right_after_a_steps_chunk_was_accepted_writes_it_once(tmp_path, own_signals):
    real = terms._StepsChunk.to_arrow
    hits = []

    def convert_then_sigterm(self):
        table = real(self)
        if not hits:  # the writer took the chunk; the term has not cleared it yet
            hits.append(1)
            shutdown._on_sigterm(signal.SIGTERM, None)
        return table

    terms._StepsChunk.to_arrow = convert_then_sigterm
    try:
        manager = vr.RecorderManager(
            4, output=tmp_path, run_id="r1", step_keys=("reward",),
            writer_options={"background": False},
        )  # fmt: skip
        manager.reset(None, np.arange(4))
        manager.record_step(reward=np.ones(4))
        with pytest.raises(SystemExit) as info, manager:
            manager.flush()
    finally:
        terms._StepsChunk.to_arrow = real
    assert info.value.code == 128 + signal.SIGTERM
    steps = read_table(tmp_path, "r1", "steps")
    assert steps.num_rows == 4 and sorted(steps.column("env_id").to_pylist()) == [0, 1, 2, 3]
    doc = run_json(tmp_path, "r1")
    assert doc["error"]["type"] == "SIGTERM" and doc["counts"]["steps"] == 4


def test_buffers_go_to_storage_once_half_the_flush_window_passed(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(manager_module.time, "monotonic", lambda: clock[0])
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    manager = vr.RecorderManager(
        4, variations=[mass], output=tmp_path, run_id="r1", step_keys=("reward",),
        flush_seconds=2.0, writer_options={"background": False},
    )  # fmt: skip
    # Parts rotate at the other half of the window.
    assert manager.writer._sink._options["max_seconds_per_part"] == 1.0
    ids = np.arange(4)
    manager.reset(None, ids)
    manager.record_step(reward=np.ones(4), terminated=np.ones(4, bool))
    manager.reset(None, ids)
    manager.record_post_step()
    assert manager.writer.counts == {}  # young rows wait in the buffers
    clock[0] += 0.9
    manager.record_step(reward=np.ones(4), terminated=np.ones(4, bool))
    assert manager.writer.counts == {}
    clock[0] += 0.2  # 1.1 s: older than half the window
    manager.record_post_step()
    assert manager.writer.counts == {"draws": 8, "episodes": 4, "steps": 8}
    manager.close()


def test_a_run_writer_handed_to_a_manager_keeps_its_flush_window(tmp_path):
    """A RunWriter given as ``output`` (as every vector env's and Ray worker's is)
    closes its parts at half the manager's ``flush_seconds``, not at its own default
    of 60 s, which let a SIGKILL lose a minute of rows; a window given to the writer
    stays."""
    writer = vr.RunWriter(tmp_path, "r1", background=False)
    manager = vr.RecorderManager(4, output=writer, flush_seconds=2.0, step_keys=("reward",))
    manager.reset(None, None)
    manager.record_step(reward=np.ones(4))
    manager.flush()
    assert writer._sink._options["max_seconds_per_part"] == 1.0
    assert {part.max_seconds_per_part for part in writer._sink._parts.values()} == {1.0}
    manager.close()
    kept = vr.RunWriter(tmp_path, "r2", background=False, max_seconds_per_part=30.0)
    vr.RecorderManager(4, output=kept, flush_seconds=2.0).close()
    assert kept._sink._options["max_seconds_per_part"] == 30.0
    alone = vr.RunWriter(tmp_path, "r3", background=False)
    assert alone._sink._options["max_seconds_per_part"] == 60.0
    alone.close()


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan"), True, "5"])
def test_a_bad_flush_window_is_refused_before_the_run_exists(tmp_path, value):
    with pytest.raises(ValueError, match=r"`flush_seconds` must be a positive number of seconds"):
        vr.RecorderManager(2, output=tmp_path, run_id="r1", flush_seconds=value)
    assert not (tmp_path / "run_id=r1").exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_fails_the_run_with_the_rows_lost_even_if_the_caller_goes_on(tmp_path):
    writer = RunWriter(tmp_path, "r1", writer_id="w1", row_group_size=10)
    writer.append("steps", pa.table({"seq": np.arange(5)}))
    writer.flush()  # part 0: 5 rows
    steps_dir = tmp_path / "run_id=r1" / "steps"
    # The next part's file is on a device that is always full: a real ENOSPC.
    (steps_dir / ".part-w1-00001.parquet.tmp").symlink_to("/dev/full")
    writer.append("steps", pa.table({"seq": np.arange(5, 25)}))
    with pytest.raises(DatasetError, match=r"No space left on device.*free space") as info:
        writer.flush()
    assert ".part-w1-00001.parquet.tmp" in str(info.value)
    writer.close()  # the caller caught the error and closes normally
    doc = run_json(tmp_path, "r1")
    assert doc["status"] == "failed" and doc["rows_lost"] == {"steps": 20}
    assert doc["error"]["type"] == "DatasetError" and "20 rows lost" in doc["error"]["message"]
    assert doc["counts"] == {"steps": 5}
    assert not list(steps_dir.glob(".*.tmp"))  # the empty temporary file is gone
    assert read_table(tmp_path, "r1", "steps").column("seq").to_pylist() == list(range(5))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_error_not_yet_seen_is_raised_by_close(tmp_path):
    writer = RunWriter(tmp_path, "r1", writer_id="w1", row_group_size=10)
    writer.append("steps", pa.table({"seq": np.arange(5)}))
    writer.flush()
    (tmp_path / "run_id=r1" / "steps" / ".part-w1-00001.parquet.tmp").symlink_to("/dev/full")
    writer.append("steps", pa.table({"seq": np.arange(5, 25)}))
    with pytest.raises(DatasetError, match="No space left on device"):
        writer.close()
    doc = run_json(tmp_path, "r1")
    assert doc["status"] == "failed" and doc["rows_lost"] == {"steps": 20}
    assert doc["counts"] == {"steps": 5}


def test_a_run_whose_writer_record_cannot_be_written_still_ends_failed_in_run_json(tmp_path):
    writer = RunWriter(tmp_path, "r1", writer_id="w1")
    writer.append("steps", pa.table({"x": [1, 2]}))
    writers = tmp_path / "run_id=r1" / "writers"
    shutil.rmtree(writers)
    writers.write_text("a file where the writers' directory was")
    with pytest.raises(DatasetError, match=r"ended \(failed\) but its record .* could not"):
        writer.close()
    doc = run_json(tmp_path, "r1")
    assert doc["status"] == "failed" and doc["error"]["type"] == "NotADirectoryError"
    assert doc["counts"] == {"steps": 2}


def test_a_table_path_taken_by_a_file_fails_the_run_though_the_caller_closes_normally(tmp_path):
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    manager = vr.RecorderManager(
        4, variations=[mass], output=tmp_path, run_id="r1", step_keys=("reward",)
    )
    (tmp_path / "run_id=r1" / "steps").write_text("a file where the table's directory goes")
    ids = np.arange(4)
    manager.reset(None, ids)
    for _ in range(3):
        manager.record_step(reward=np.ones(4), terminated=np.ones(4, bool))
        manager.reset(None, ids)
    with pytest.raises(DatasetError, match=r"cannot write table 'steps' to .*steps: .*File exists"):
        manager.flush()  # the loop gets the error at once
    manager.close()  # the caller caught it and closes as usual
    doc = run_json(tmp_path, "r1")
    assert doc["status"] == "failed" and doc["error"]["type"] == "DatasetError"
    assert doc["rows_lost"] == {"steps": 12} and "12 rows lost" in doc["error"]["message"]
    assert doc["counts"] == {"draws": 16, "episodes": 12}  # the other tables are whole
    assert read_table(tmp_path, "r1", "episodes").num_rows == 12


FULL_DISK_CHILD = """
import resource, sys
import numpy as np, pyarrow as pa
from varirec.errors import DatasetError
from varirec.storage import RunWriter

writer = RunWriter(sys.argv[1], "r1", writer_id="w1")
writer.append("steps", pa.table({"seq": np.arange(100)}))
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))  # from now on no file can grow
try:
    writer.close()
except DatasetError as exc:
    message = str(exc)
finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
with open(sys.argv[2], "w") as f:
    f.write(message)
"""


def test_a_disk_that_takes_no_byte_leaves_no_empty_temp_file_and_says_so(tmp_path):
    # RLIMIT_FSIZE 0: every write fails with EFBIG, as on a full disk (Python ignores SIGXFSZ).
    env = {**os.environ, "PYTHONPATH": str(Path(vr.__file__).parents[1])}
    out = tmp_path / "message.txt"
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(tmp_path / "data"), str(out)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    message = out.read_text()
    assert "ended (failed) but its record" in message and "File too large" in message
    run = tmp_path / "data" / "run_id=r1"
    empty = [p for p in run.rglob("*") if p.is_file() and p.stat().st_size == 0]
    assert not empty, empty  # no zero-byte part or JSON temp files


def fork_and_check(body) -> int:
    """Run ``body()`` in a forked child; its exit code."""
    with warnings.catch_warnings():  # Python >= 3.12 warns about forking with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 3
        try:
            body()
            code = 1
        except RecorderStateError as exc:
            code = 0 if "fork" in str(exc) and "'spawn'" in str(exc) else 2
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_writer_used_in_a_forked_child_says_fork_and_what_to_do(tmp_path):
    writer = RunWriter(tmp_path, "r1")
    assert fork_and_check(lambda: writer.append("steps", pa.table({"x": [1]}))) == 0
    assert fork_and_check(writer.close) == 0
    writer.close()
    assert run_json(tmp_path, "r1")["status"] == "complete"


def test_a_manager_closed_in_a_forked_child_does_not_drop_its_rows_silently(tmp_path):
    manager = vr.RecorderManager(4, output=tmp_path, run_id="r1", step_keys=("reward",))
    manager.reset(None, np.arange(4))
    manager.record_step(reward=np.ones(4))
    assert fork_and_check(manager.close) == 0
    manager.close()  # the parent still owns the run and writes it
    assert read_table(tmp_path, "r1", "steps").num_rows == 4


def test_a_non_ascii_hostname_gives_an_ascii_writer_id(tmp_path, monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "Jürgens-名前-pc.example")
    with RunWriter(tmp_path, "r1") as writer:
        writer.append("steps", pa.table({"x": [1]}))
    assert writer.writer_id.isascii() and writer.writer_id.startswith("Jrgenspc_")
    assert run_json(tmp_path, "r1")["status"] == "complete"


# --------------------------------------------- an application's own signal handlers
def _app_handler_loop(
    tmp_path, monkeypatch, fire, where: str, raises=(SystemExit, KeyboardInterrupt)
):
    """Three prefetched resets of every env of a forced-GPU loop (8 envs), then a fourth
    hook inside which ``fire()`` delivers a signal: while the settle records the finished
    episodes, right after a chunk was handed to the writer, or just before (``submit``).
    The hook must raise one of ``raises``. Returns the dataset."""
    from varirec.storage import sink

    torch = pytest.importorskip("torch")
    armed = [False]

    def wrap(owner, name, after):
        real = getattr(owner, name)

        def inner(*args, **kwargs):
            if armed[0] and not after:
                armed[0] = False
                fire()
            out = real(*args, **kwargs)
            if armed[0] and after:
                armed[0] = False
                fire()
            return out

        monkeypatch.setattr(owner, name, inner)

    if where == "settle":
        wrap(manager_module.RecorderManager, "finishing", after=False)
    else:
        wrap(sink.TableSink, "submit", after=where == "handover")
    n = 8
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    m = vr.RecorderManager(n, variations=[mass], output=tmp_path, run_id="r", seed=0,
                           device="cpu")  # fmt: skip
    ones, done = torch.ones(n), torch.ones(n, dtype=torch.bool)
    with pytest.raises(raises), m:
        m.reset(None, torch.arange(n))
        for _ in range(3):
            m.record_step(reward=ones, terminated=done)
            if where != "settle":
                m.flush()
            m.reset(None, torch.arange(n))
            m.record_post_step()
        armed[0] = True
        if where == "settle":
            m.record_step(reward=ones)  # settles the last reset: the signal lands inside
        else:
            m.flush()  # settles it and hands its rows over: the signal lands inside
        assert where == "none"
    assert not armed[0]
    return vr.open_dataset(tmp_path)


def _nothing_lost_or_twice(ds) -> None:
    episodes, draws = ds.episodes("r").to_pandas(), ds.draws("r").to_pandas()
    assert len(episodes) == 24 and len(draws) == 32  # 3 x 8 finished; 4 x 8 begun
    assert not draws.duplicated(["env_id", "episode"]).any()
    assert ds.run("r").status == "failed"


@pytest.mark.parametrize("where", ["settle", "handover"])
def test_an_application_sigterm_handler_runs_once_the_hook_has_settled_its_rows(
    tmp_path, monkeypatch, own_signals, gpu, where
):
    """A training script's ``signal(SIGTERM, lambda *_: sys.exit(143))``, installed
    before varirec's: it owns the shutdown, but runs only once the hook's block ends."""
    depth = []

    def app(signum, frame):
        depth.append(getattr(shutdown._LOCAL, "depth", 0))
        sys.exit(143)

    shutdown.install_hooks()  # as the first writer would: it reads the handler installed
    monkeypatch.setitem(shutdown._STATE, "previous", app)
    ds = _app_handler_loop(
        tmp_path, monkeypatch, lambda: shutdown._on_sigterm(signal.SIGTERM, None), where
    )
    assert depth == [0]  # called once, outside every held block
    assert gpu[0] >= 3  # the resets were prefetched: the settle is what the signal met
    _nothing_lost_or_twice(ds)


@pytest.mark.parametrize("where", ["settle", "handover"])
def test_an_application_ctrl_c_handler_runs_once_the_hook_has_settled_its_rows(
    tmp_path, monkeypatch, own_signals, gpu, where
):
    depth = []

    def app(signum, frame):
        depth.append(getattr(shutdown._LOCAL, "depth", 0))
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, app)  # own_signals puts the handler back afterwards
    ds = _app_handler_loop(
        tmp_path, monkeypatch, lambda: os.kill(os.getpid(), signal.SIGINT), where
    )
    assert depth[:1] == [0]
    assert signal.getsignal(signal.SIGINT) is app  # put back after each block
    assert gpu[0] >= 3  # the resets were prefetched: the settle is what the signal met
    _nothing_lost_or_twice(ds)


class Preempted(Exception):
    """What a cluster script's SIGTERM handler may raise (not an exit)."""


@pytest.mark.parametrize("how", ["sigterm", "sigint"])
def test_an_application_handler_raising_an_error_before_a_hand_over_loses_no_chunk(
    tmp_path, monkeypatch, own_signals, gpu, how
):
    """The handler runs once the hook's block ends, not inside the hand-over (where an
    ordinary error would clear a buffer that was never queued)."""
    depth = []

    def app(signum, frame):
        depth.append(getattr(shutdown._LOCAL, "depth", 0))
        raise Preempted

    if how == "sigterm":
        shutdown.install_hooks()
        monkeypatch.setitem(shutdown._STATE, "previous", app)
        fire = lambda: shutdown._on_sigterm(signal.SIGTERM, None)  # noqa: E731
    else:
        signal.signal(signal.SIGINT, app)
        fire = lambda: os.kill(os.getpid(), signal.SIGINT)  # noqa: E731
    ds = _app_handler_loop(tmp_path, monkeypatch, fire, "submit", raises=Preempted)
    assert depth == [0]
    assert gpu[0] >= 3  # the resets were prefetched: the settle is what the signal met
    _nothing_lost_or_twice(ds)


def test_varirec_s_held_exit_outlives_an_application_ctrl_c_handler(own_signals):
    """A SIGTERM (varirec's handler) and a Ctrl-C (the application's, which raises) in one
    block: the handler is called, and the exit is what the block raises."""
    calls = []

    def app(signum, frame):
        calls.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, app)
    shutdown._OPEN[object()] = None  # an open writer: the SIGTERM is held, not fatal
    with pytest.raises(SystemExit) as info, shutdown.exit_held():
        os.kill(os.getpid(), signal.SIGINT)
        shutdown._on_sigterm(signal.SIGTERM, None)
    assert info.value.code == 128 + signal.SIGTERM and calls == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is app


def test_a_second_ctrl_c_while_closing_interrupts_even_with_an_exit_held(own_signals):
    reached = []
    shutdown._OPEN[object()] = None
    with pytest.raises(SystemExit), shutdown.exit_held(closing=True):
        shutdown._on_sigterm(signal.SIGTERM, None)  # an exit held for the close's end
        os.kill(os.getpid(), signal.SIGINT)  # held
        reached.append(1)
        os.kill(os.getpid(), signal.SIGINT)  # the user insists: the close stops here
        reached.append(2)
    assert reached == [1]


def test_a_ctrl_c_handler_installed_inside_a_block_stays_installed(own_signals):
    def mine(signum, frame):
        pass

    with shutdown.exit_held():
        signal.signal(signal.SIGINT, mine)  # a listener's, during a settle
    assert signal.getsignal(signal.SIGINT) is mine


def test_an_exit_raised_early_inside_a_block_outlives_a_held_handler_s_error(own_signals):
    """A wait for queue space raises varirec's held exit early (raise_if_pending); at the
    block's end the application's Ctrl-C handler held back still runs, and its error
    does not replace the exit."""
    calls = []

    def app(signum, frame):
        calls.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, app)
    shutdown._OPEN[object()] = None
    with pytest.raises(SystemExit) as info, shutdown.exit_held():
        os.kill(os.getpid(), signal.SIGINT)  # held back
        shutdown._on_sigterm(signal.SIGTERM, None)  # held back
        shutdown.raise_if_pending()  # as the wait for queue space does
    assert info.value.code == 128 + signal.SIGTERM and calls == [signal.SIGINT]


@pytest.mark.parametrize("held", ["exit", "handler"])
def test_a_ctrl_c_in_a_block_s_last_lines_leaves_nothing_held_behind(
    own_signals, monkeypatch, held
):
    """A Ctrl-C that lands after the block put Python's handler back, before it raised
    what it held (placed there with a trace function), escapes as a KeyboardInterrupt:
    the held SIGTERM exit, or the application's held-back handler, comes at the next
    block's start, before anything is handed over; the Ctrl-C held before is not raised
    a second time."""
    calls, reached = [], []
    shutdown._OPEN[object()] = None
    if held == "handler":
        shutdown.install_hooks()
        monkeypatch.setitem(shutdown._STATE, "previous", lambda *a: calls.append(a[0]))

    def trace(frame, event, arg):
        if event == "call" and frame.f_code is shutdown._raise_pending.__code__ and not reached:
            reached.append("fired")
            os.kill(os.getpid(), signal.SIGINT)  # Python's default handler is back
        return None

    try:
        with pytest.raises(KeyboardInterrupt), shutdown.exit_held():
            os.kill(os.getpid(), signal.SIGINT)  # held back
            shutdown._on_sigterm(signal.SIGTERM, None)  # held back
            sys.settrace(trace)
    finally:
        sys.settrace(None)
    assert reached == ["fired"] and calls == []
    if held == "exit":
        with pytest.raises(SystemExit) as info, shutdown.exit_held():
            reached.append("inside")
        assert info.value.code == 128 + signal.SIGTERM
    else:
        with shutdown.exit_held():
            reached.append("inside")
        assert calls == [signal.SIGTERM]
    with shutdown.exit_held():  # nothing held any more, no stale Ctrl-C
        shutdown.raise_if_pending()
        reached.append("clean")
    assert reached == ["fired", "clean"] if held == "exit" else ["fired", "inside", "clean"]


def test_an_application_sigterm_exit_is_recorded_as_why_a_run_closed_at_exit_ended(
    tmp_path, own_signals, monkeypatch
):
    """``signal(SIGTERM, lambda *_: sys.exit(143))`` and no ``with`` block: the run is
    closed at exit, which sees no error (Python keeps no uncaught SystemExit); it read
    ``complete``."""
    shutdown.install_hooks()
    monkeypatch.setitem(shutdown._STATE, "previous", lambda *a: sys.exit(143))
    writer = RunWriter(tmp_path, "r")
    writer.append("steps", pa.table({"x": [1]}))
    with pytest.raises(SystemExit):
        shutdown._on_sigterm(signal.SIGTERM, None)
    writer.close(closed_by="exit")  # as the atexit hook does
    doc = run_json(tmp_path, "r")
    assert doc["status"] == "failed" and doc["error"]["type"] == "SIGTERM"
    assert vr.open_dataset(tmp_path).read("steps", "r").num_rows == 1


_THREAD_LOOP = """
import os, sys, threading, time
import numpy as np
import varirec as vr

root, log, hooks = sys.argv[1], sys.argv[2], sys.argv[3] == "hooks"

def work():
    v = [vr.Variation("m", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)))]
    m = vr.RecorderManager(4, variations=v, output=root, run_id="r", flush_seconds=30)
    m.reset(None, None)
    n, fd = 0, os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    with m:
        while True:
            m.record_step(reward=np.ones(4), terminated=np.ones(4, bool))
            m.reset(None, np.arange(4))
            n += 4
            os.write(fd, f"{n}\\n".encode())
            time.sleep(0.005)

if hooks:
    vr.storage.install_hooks()  # from the main thread, before the thread that records
thread = threading.Thread(target=work)
thread.start()
thread.join()
"""


@pytest.mark.parametrize("hooks", ["hooks", "none"])
def test_sigterm_to_a_process_that_records_on_another_thread(tmp_path, hooks):
    """Signal handlers are set from the main thread only: a writer made on another
    thread says so and how to install varirec's first; installed, a SIGTERM ends the
    recording thread at its next hook and every finished episode is written."""
    log = tmp_path / "log"
    child = subprocess.Popen(
        [sys.executable, "-c", _THREAD_LOOP, str(tmp_path / "data"), str(log), hooks],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (log.exists() and log.read_text().count("\n") >= 20):
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    if hooks == "none":  # killed outright: told beforehand, not silently
        assert child.returncode == -signal.SIGTERM
        assert "call varirec.storage.install_hooks() on the main thread" in err
        return
    finished = int(log.read_text().split()[-1])
    ds = vr.open_dataset(tmp_path / "data")
    assert child.returncode == 128 + signal.SIGTERM and "Traceback" not in err
    assert ds.episodes("r").num_rows == finished and ds.run("r").status == "failed"
