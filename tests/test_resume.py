"""Resuming a study whose process died: only what did not finish runs, into the same run,
and the result equals an uninterrupted study (the draws are reproducible)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import varirec as vr

pytest.importorskip("SALib")

from varirec.analysis import analyze, episode_table, run_study
from varirec.cli import main as cli_main
from varirec.envs.analytic import ishigami
from varirec.envs.one_step import OneStepEnv, ishigami_variations
from varirec.errors import DatasetError
from varirec.storage import open_dataset

STUDY = {"method": "sobol", "n": 16, "replicates": 2, "seed": 5, "num_envs": 8}
# 16 x (3 + 2) rows x 2 replicates, 8 envs, one-step episodes: 20 steps.
EPISODES = 16 * 5 * 2


def make_noisy_env(num_envs: int) -> OneStepEnv:
    """Ishigami reward; success drawn from the episode's seed (so seeds must match too)."""
    return OneStepEnv(
        num_envs,
        ishigami,
        3,
        success_prob=lambda x: 1.0 / (1.0 + np.exp(-x[:, 0])),
    )


def dies(env: OneStepEnv, after: int) -> OneStepEnv:
    """``env``, whose process 'dies' (raises) at its ``after``-th step."""
    step, left = env.step, [after]

    def dying_step():
        left[0] -= 1
        if left[0] < 0:
            raise RuntimeError("the study process died")
        return step()

    env.step = dying_step
    return env


def by_pair(root: Path, run_id: str) -> pa.Table:
    """The episode table of a run, one row per (design row, replicate seed), sorted."""
    table = episode_table(open_dataset(root), runs=run_id, outcomes=["return", "success"])
    cols = ["sample_id", "seed", "x1", "x2", "x3", "return", "success"]
    return pa.Table.from_pandas(table.frame[cols], preserve_index=False).sort_by(
        [("sample_id", "ascending"), ("seed", "ascending")]
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, pa.Table]:
    root = tmp_path_factory.mktemp("whole")
    run_study(
        make_noisy_env, ishigami_variations(), output=root, run_id="s", progress=False, **STUDY
    )
    return root, by_pair(root, "s")


def interrupted(root: Path, after: int) -> None:
    with pytest.raises(RuntimeError, match="died"):
        run_study(
            lambda n: dies(make_noisy_env(n), after), ishigami_variations(), output=root,
            run_id="s", progress=False, **STUDY,
        )  # fmt: skip


def test_a_resumed_study_equals_an_uninterrupted_one(tmp_path, uninterrupted):
    interrupted(tmp_path, after=7)
    before = open_dataset(tmp_path).episodes("s").num_rows
    assert 0 < before < EPISODES
    resumed = run_study(
        make_noisy_env, ishigami_variations(), output=tmp_path, run_id="s", progress=False,
        resume=True, **STUDY,
    )  # fmt: skip
    assert resumed.stats.episodes == EPISODES - before  # only what had not finished ran
    got = by_pair(tmp_path, "s")
    assert got.num_rows == EPISODES  # every (row, replicate) once: nothing twice
    assert got.equals(uninterrupted[1])  # same values, seeds and outcomes per pair
    run = open_dataset(tmp_path).run("s")
    assert run.status == "complete" and len(run.writers) == 2
    doc = json.loads((tmp_path / "run_id=s" / "run.json").read_text())
    assert len(doc["resumed_utc"]) == 1
    whole = analyze(open_dataset(uninterrupted[0]), outcome="return", num_resamples=0)
    again = analyze(open_dataset(tmp_path), outcome="return", num_resamples=0)
    assert whole.to_frame().equals(again.to_frame())


@pytest.mark.parametrize("died_after", [7, None])
def test_a_resume_writes_the_design_table_the_first_process_never_wrote(
    tmp_path, uninterrupted, died_after
):
    """A SIGKILL within the first flush window leaves no design part: the resume writes
    the design again (the schedule rebuilds it), also when every episode had finished,
    so the run is analysed by its design, as an uninterrupted one."""
    if died_after is None:
        run_study(
            make_noisy_env, ishigami_variations(), output=tmp_path, run_id="s", progress=False,
            **STUDY,
        )  # fmt: skip
    else:
        interrupted(tmp_path, after=died_after)
    for part in (tmp_path / "run_id=s" / "design").iterdir():
        part.unlink()
    assert open_dataset(tmp_path).read("design", "s").num_rows == 0
    run_study(
        make_noisy_env, ishigami_variations(), output=tmp_path, run_id="s", progress=False,
        resume=True, **STUDY,
    )  # fmt: skip
    whole = open_dataset(uninterrupted[0])
    design = open_dataset(tmp_path).read("design", "s")
    assert design.sort_by("sample_id").equals(whole.read("design", "s").sort_by("sample_id"))
    assert by_pair(tmp_path, "s").equals(uninterrupted[1])
    again = analyze(open_dataset(tmp_path), outcome="return", num_resamples=0)
    assert again.to_frame().equals(analyze(whole, outcome="return", num_resamples=0).to_frame())


def test_resuming_a_complete_study_runs_nothing(uninterrupted):
    again = run_study(
        make_noisy_env, ishigami_variations(), output=uninterrupted[0], run_id="s",
        progress=False, resume=True, **STUDY,
    )  # fmt: skip
    assert again.stats.episodes == 0
    assert by_pair(uninterrupted[0], "s").equals(uninterrupted[1])


def test_a_run_of_another_study_is_refused(tmp_path):
    interrupted(tmp_path, after=3)
    other = {**STUDY, "n": 32}
    with pytest.raises(DatasetError, match=r"run 's' was recorded by another study: n=16"):
        run_study(
            make_noisy_env, ishigami_variations(), output=tmp_path, run_id="s",
            progress=False, resume=True, **other,
        )  # fmt: skip
    with pytest.raises(ValueError, match=r"`resume=True` needs the `run_id`"):
        run_study(make_noisy_env, ishigami_variations(), output=tmp_path, resume=True, n=16)


def test_a_random_study_resumes_to_its_episode_count(tmp_path):
    options = {"method": "random", "n": 100, "seed": 1, "num_envs": 8, "progress": False}
    with pytest.raises(RuntimeError, match="died"):
        run_study(lambda n: dies(make_noisy_env(n), 4), ishigami_variations(), output=tmp_path,
                  run_id="r", **options)  # fmt: skip
    before = open_dataset(tmp_path).episodes("r").num_rows
    run_study(
        make_noisy_env, ishigami_variations(), output=tmp_path, run_id="r", resume=True, **options
    )
    episodes = open_dataset(tmp_path).episodes("r", columns=["env_id", "episode"])
    assert before < 100 and episodes.num_rows == 100
    pairs = episodes.group_by(["env_id", "episode"]).aggregate([])
    assert pairs.num_rows == 100  # the resumed writer never reused an (env, episode)


def test_the_cli_resumes_a_study_from_its_run_json(tmp_path, uninterrupted, capsys):
    interrupted(tmp_path, after=5)
    code = cli_main(
        ["resume", str(tmp_path), "--run-id", "s", "--quiet",
         "--env", f"{__name__}:make_noisy_env",
         "--variations", "varirec.envs:ishigami_variations"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "resumed run 's'" in capsys.readouterr().out
    assert by_pair(tmp_path, "s").equals(uninterrupted[1])


def test_the_cli_names_a_bad_env_factory(tmp_path, capsys):
    interrupted(tmp_path, after=2)
    code = cli_main(["resume", str(tmp_path), "--run-id", "s", "--env", "nowhere",
                     "--variations", "varirec.envs:ishigami_variations"])  # fmt: skip
    assert code == 2
    assert "`--env` must be 'module:function', got 'nowhere'" in capsys.readouterr().err


def none_env(num_envs):
    return None


def strings():
    return ["mass", "friction"]


@pytest.mark.parametrize(
    ("env", "variations", "said"),
    [
        (f"{__name__}:none_env", "varirec.envs:ishigami_variations",
         "make_env(8) must return a batched env with num_envs == 8"),
        (f"{__name__}:make_noisy_env", f"{__name__}:strings",
         "must return the env's variations (a VariationSet or a list of Variation), got list"),
        # factories of the wrong signature ended in a TypeError traceback (a CLI probe)
        ("os:getcwd", "varirec.envs:ishigami_variations",
         "`--env` 'os:getcwd' is called as make_env(num_envs), but its signature is ()"),
        (f"{__name__}:make_noisy_env", "varirec.envs:make_ishigami_env",
         "`--variations` 'varirec.envs:make_ishigami_env' is called as make_variations()"),
    ],
)  # fmt: skip
def test_a_factory_that_returns_no_env_or_variations_is_named_and_the_run_kept(
    tmp_path, capsys, env, variations, said
):
    """A bad factory is named before the run is joined: no second writer, and run.json
    keeps why the run ended (it had held the factory's AttributeError instead)."""
    interrupted(tmp_path, after=2)
    before = sorted(p.name for p in (tmp_path / "run_id=s").rglob("*"))
    doc = json.loads((tmp_path / "run_id=s" / "run.json").read_text())
    code = cli_main(["resume", str(tmp_path), "--run-id", "s", "--quiet", "--env", env,
                     "--variations", variations])  # fmt: skip
    assert code == 2 and said in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "run_id=s").rglob("*")) == before
    assert json.loads((tmp_path / "run_id=s" / "run.json").read_text()) == doc


def test_run_study_checks_the_env_before_the_run_exists(tmp_path):
    with pytest.raises(vr.EnvError, match=r"make_env\(8\) must return .* got TorchEnv"):
        run_study(lambda n: type("TorchEnv", (), {"num_envs": n})(), ishigami_variations(),
                  output=tmp_path, run_id="s", method="random", n=8, num_envs=8)  # fmt: skip
    with pytest.raises(vr.EnvError, match="with num_envs=4"):
        run_study(lambda n: make_noisy_env(4), ishigami_variations(), output=tmp_path,
                  run_id="s", method="random", n=8, num_envs=8)  # fmt: skip
    assert not (tmp_path / "run_id=s").exists()


def test_a_resume_past_a_damaged_part_warns_and_putting_it_back_is_noted(tmp_path):
    """Resuming past an unreadable episodes part records its episodes again: the resume
    says so (and not to put the part back); put back anyway, the analysis notes the
    design pairs held twice instead of silently counting them (Sobol averages them)."""
    interrupted(tmp_path, after=7)
    (part,) = (tmp_path / "run_id=s" / "episodes").glob("part-*.parquet")
    good = part.read_bytes()
    part.write_bytes(good[:-8])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_study(make_noisy_env, ishigami_variations(), output=tmp_path, run_id="s",
                  progress=False, resume=True, **STUDY)  # fmt: skip
    said = [str(w.message) for w in caught if issubclass(w.category, vr.DatasetWarning)]
    assert any("recorded again; do not put those parts back" in m for m in said), said
    part.write_bytes(good)
    episodes = open_dataset(tmp_path).episodes("s").num_rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", vr.DatasetWarning)  # the part's earlier skip
        study = analyze(tmp_path, outcome="return")
    repeated = episodes - EPISODES
    assert repeated > 0 and study.num_episodes == episodes
    assert f"run 's' holds {repeated} design pair(s) (sample_id, seed) more than once" in " ".join(
        study.notes
    )


CHILD = """
import sys, time
import numpy as np
sys.path.insert(0, {tests!r})
from test_resume import STUDY, make_noisy_env
from varirec.analysis import run_study
from varirec.envs.one_step import ishigami_variations

def slow(n):
    env = make_noisy_env(n)
    step = env.step
    def slow_step():
        time.sleep(0.05)
        with open({log!r}, "a") as f:
            f.write("step\\n")
        return step()
    env.step = slow_step
    return env

run_study(slow, ishigami_variations(), output={root!r}, run_id="s", progress=False,
          flush_seconds=0.2, **STUDY)
"""


@pytest.mark.slow
# A SIGKILL while a part is open leaves it unfinished (a .tmp the reader skips with a
# warning); its pairs have no finished episode, so the resume runs them again.
@pytest.mark.filterwarnings("ignore:skipping .*an unfinished part:varirec.storage.DatasetWarning")
def test_a_study_sigkilled_mid_run_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted):
    root, log = tmp_path / "data", tmp_path / "log"
    code = CHILD.format(tests=str(Path(__file__).parent), log=str(log), root=str(root))
    proc = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy())
    try:
        while not log.exists() or len(log.read_text().split()) < 10:  # half of the 20 steps
            assert proc.poll() is None, "the study ended before it was killed"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert open_dataset(root).run("s").status == "running"  # it never closed
    run_study(
        make_noisy_env, ishigami_variations(), output=root, run_id="s", progress=False,
        resume=True, **STUDY,
    )  # fmt: skip
    assert by_pair(root, "s").equals(uninterrupted[1])


def test_a_run_whose_design_rows_differ_from_the_rebuilt_ones_is_refused(tmp_path):
    """A Morris run begun on an earlier grid (uniform levels at the quantiles (i + 0.5) / 4)
    is not finished on today's (SALib's): its new episodes would follow other rows."""
    import pyarrow.parquet as pq

    morris = {"method": "morris", "n": 6, "seed": 5, "num_envs": 8}
    with pytest.raises(RuntimeError, match="died"):
        run_study(lambda n: dies(make_noisy_env(n), 2), ishigami_variations(), output=tmp_path,
                  run_id="m", progress=False, **morris)  # fmt: skip
    (part,) = (tmp_path / "run_id=m" / "design").glob("*.parquet")
    old = pq.read_table(part)
    grid = {
        c: pa.array(np.round(old[c].to_numpy() * 3) / 3 * 0.75 + 0.125) for c in ("x1", "x2", "x3")
    }
    pq.write_table(pa.table({"sample_id": old["sample_id"], **grid}), part)
    before = open_dataset(tmp_path).read("episodes", "m").num_rows
    with pytest.raises(DatasetError, match="other design rows than this call rebuilds"):
        run_study(make_noisy_env, ishigami_variations(), output=tmp_path, run_id="m",
                  progress=False, resume=True, **morris)  # fmt: skip
    assert open_dataset(tmp_path).read("episodes", "m").num_rows == before  # nothing run


def test_a_run_that_lost_its_design_table_and_drew_other_rows_is_refused(tmp_path, monkeypatch):
    """Killed before its design part was written, a run begun on the earlier Morris grid
    is not given today's design table: its recorded draws are checked against it."""
    from varirec.analysis import designs

    morris = {"method": "morris", "n": 6, "seed": 5, "num_envs": 8}
    with monkeypatch.context() as m:  # the earlier grid: (i + 0.5) / L for every factor
        m.setattr(designs, "grid_ends", lambda factors, levels: np.full(len(factors), 0.5 / levels))
        with pytest.raises(RuntimeError, match="died"):
            run_study(lambda n: dies(make_noisy_env(n), 2), ishigami_variations(),
                      output=tmp_path, run_id="m", progress=False, **morris)  # fmt: skip
    for part in (tmp_path / "run_id=m" / "design").iterdir():
        part.unlink()
    before = open_dataset(tmp_path).read("episodes", "m").num_rows
    with pytest.raises(DatasetError, match="lost its design table, and its recorded draws"):
        run_study(make_noisy_env, ishigami_variations(), output=tmp_path, run_id="m",
                  progress=False, resume=True, **morris)  # fmt: skip
    ds = open_dataset(tmp_path)
    assert ds.read("episodes", "m").num_rows == before and ds.read("design", "m").num_rows == 0


def _narrow(key: str = "x1", low: float = -1.0) -> vr.VariationSet:
    """The Ishigami variations with ``key`` drawn from U(low, pi) instead of U(-pi, pi)."""
    return vr.VariationSet(
        vr.Variation(k, vr.VariationCfg(sampler=vr.UniformCfg(low=low if k == key else -np.pi,
                                                                high=np.pi)))
        for k in ("x1", "x2", "x3")
    )  # fmt: skip


@pytest.mark.parametrize("method", ["sobol", "random"])
def test_a_resume_with_other_distributions_is_refused_before_anything_runs(tmp_path, method):
    """A design's unit rows map to other values under other bounds, and a random study's
    new episodes would come from a distribution run.json does not name."""
    n = 16 if method == "sobol" else 64
    options = {"method": method, "n": n, "seed": 5, "num_envs": 8, "progress": False}
    with pytest.raises(RuntimeError, match="died"):
        run_study(lambda n: dies(make_noisy_env(n), 2), ishigami_variations(), output=tmp_path,
                  run_id="s", **options)  # fmt: skip
    before = open_dataset(tmp_path).episodes("s").num_rows
    variations = [_narrow(), vr.VariationSet(list(ishigami_variations().values())[:2])]
    for other, named in zip(variations, ["'x1' had", "'x3' is not among"], strict=True):
        with pytest.raises(DatasetError, match=f"began with other variations: {named}"):
            run_study(make_noisy_env, other, output=tmp_path, run_id="s", resume=True, **options)
    assert open_dataset(tmp_path).episodes("s").num_rows == before  # nothing run
    run_study(make_noisy_env, ishigami_variations(), output=tmp_path, run_id="s", resume=True,
              **options)  # fmt: skip
    assert open_dataset(tmp_path).episodes("s").num_rows == (80 if method == "sobol" else 64)


def test_the_cli_names_running_out_of_memory_without_a_traceback(tmp_path, capsys, monkeypatch):
    """`--num-envs 2000000000` ended in numpy's _ArrayMemoryError traceback (a CLI probe);
    any command out of memory now says so in one line, and what to ask for instead."""
    import numpy as np

    from varirec.cli import resume

    def too_big(args):
        return np.empty(int(args.num_envs) * 10**5)  # 1.6 PB: numpy refuses it at once

    monkeypatch.setattr(resume, "_cmd_resume", too_big)
    code = cli_main(["resume", str(tmp_path), "--run-id", "s", "--env", "a:b",
                     "--variations", "a:c", "--num-envs", "2000000000"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "error: out of memory" in err and "fewer envs" in err
    assert "Traceback" not in err
