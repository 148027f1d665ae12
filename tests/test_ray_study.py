"""A study fanned out on a local Ray instance equals the single-process study."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")

import varirec as vr  # noqa: E402
from varirec.analysis.runner import run_study  # noqa: E402
from varirec.analysis.tables.episode_table import episode_table  # noqa: E402
from varirec.envs import ishigami_variations, make_ishigami_env  # noqa: E402

# The actors unpickle this module's env factory: ship it by value (tests/ is not on
# the workers' path).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

N, NUM_ENVS = 32, 8


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


class DyingEnv:
    """The Ishigami env, except that the first process to reach step 3 dies there
    (``os._exit``, as a crash or a lost node would: no cleanup)."""

    def __init__(self, num_envs: int, marker: str) -> None:
        self.inner = make_ishigami_env(num_envs)
        self.num_envs = num_envs
        self.marker = marker
        self.steps = 0

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def reset_idx(self, env_ids, seeds) -> None:
        self.inner.reset_idx(env_ids, seeds)

    def step(self):
        self.steps += 1
        if self.steps == 3:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass  # another process died already
            else:
                os._exit(1)
        return self.inner.step()


def by_pair(path: Path) -> pd.DataFrame:
    """The episode table keyed by (design row, reset seed): independent of who ran it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", vr.DatasetWarning)  # a dead actor's leftovers
        frame = episode_table(path, drop_constant=False).frame
    return frame.set_index(["sample_id", "seed"]).sort_index()[["x1", "x2", "x3", "return"]]


def single_process(tmp_path: Path) -> pd.DataFrame:
    run_study(
        make_ishigami_env,
        ishigami_variations(),
        method="sobol",
        n=N,
        num_envs=NUM_ENVS,
        output=tmp_path / "one",
        run_id="one",
        progress=False,
    )
    return by_pair(tmp_path / "one")


def test_two_actors_equal_one_process(local_ray, tmp_path) -> None:
    from varirec.analysis.ray_study import run_study_on_ray

    study = run_study_on_ray(
        make_ishigami_env,
        ishigami_variations(),
        method="sobol",
        n=N,
        num_envs=NUM_ENVS,
        num_actors=2,
        output=tmp_path / "ray",
        run_id="ray",
        progress=False,
    )
    assert study.stats.episodes == N * 5
    writers = vr.open_dataset(tmp_path / "ray").run("ray").writers
    assert len([w for w in writers if w.startswith("ray")]) == 4  # 4 chunks, own writer ids
    got, want = by_pair(tmp_path / "ray"), single_process(tmp_path)
    assert len(got) == len(want) == N * 5
    pd.testing.assert_frame_equal(got, want)
    s1 = study.analyze(outcome="return").to_frame()
    assert np.isfinite(s1.select_dtypes("number").to_numpy()).any()


def test_a_dead_actor_s_rows_are_handed_to_another(local_ray, tmp_path) -> None:
    from varirec.analysis.ray_study import run_study_on_ray

    marker = str(tmp_path / "died")

    def make_env(num_envs: int) -> DyingEnv:
        return DyingEnv(num_envs, marker)

    study = run_study_on_ray(
        make_env,
        ishigami_variations(),
        method="sobol",
        n=N,
        num_envs=NUM_ENVS,
        num_actors=2,
        output=tmp_path / "ray",
        run_id="ray",
        progress=False,
    )
    assert os.path.exists(marker)  # an actor did die
    got, want = by_pair(tmp_path / "ray"), single_process(tmp_path)
    assert study.stats.complete
    pd.testing.assert_frame_equal(got, want)  # every pair once, with the same values


def test_a_factory_that_fails_is_reported_not_retried(local_ray, tmp_path) -> None:
    from varirec.analysis.ray_study import run_study_on_ray

    def make_env(num_envs: int):
        raise OSError("no simulator licence")

    with pytest.raises(RuntimeError, match=r"(?s)could not be built.*no simulator licence"):
        run_study_on_ray(
            make_env,
            ishigami_variations(),
            n=4,
            num_envs=4,
            output=tmp_path,
            run_id="r",
            progress=False,
        )
