"""The streamed as-of join equals run_factors on the whole table, or steps aside."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import varirec as vr
from conftest import run_fake_env
from varirec.analysis.tables.as_of import DRAW_COLUMNS, run_factors
from varirec.analysis.tables.episode_table import _specs, episode_table
from varirec.analysis.tables.stream import stream_factors
from varirec.recording.manager import RecorderManager


def _labels(got: dict[str, tuple[np.ndarray, list[str]]]) -> dict[str, list[str | None]]:
    """Label codes decoded (the two paths may number the labels differently)."""
    return {k: [labs[c] if c >= 0 else None for c in codes] for k, (codes, labs) in got.items()}


def _both(path, run_id: str = "r", batch_size: int = 1 << 20):
    ds = vr.open_dataset(path)
    specs, episodes = _specs(ds, [run_id]), ds.episodes(run_id)
    streamed = stream_factors(ds, run_id, episodes, specs, batch_size=batch_size)
    skipped: list[str] = []
    whole = run_factors(ds.draws(run_id, columns=list(DRAW_COLUMNS)), episodes, specs, skipped)
    return streamed, (whole, skipped)


def assert_streams_alike(path, run_id: str = "r", batch_size: int = 1 << 20) -> list[str]:
    streamed, ((names, values, labels), skipped) = _both(path, run_id, batch_size)
    assert streamed is not None, "the stream stepped aside"
    (s_names, s_values, s_labels), s_skipped = streamed
    assert s_names == names and s_skipped == skipped
    np.testing.assert_array_equal(s_values, values)  # NaN where both have no value
    assert _labels(s_labels) == _labels(labels)
    return s_names


@pytest.mark.parametrize("batch_size", [7, 1 << 20])
def test_fake_env_build_vector_interval_labels_and_skipped_resets(tmp_path, batch_size) -> None:
    # batches of 7 rows: dictionaries, components and labels change from batch to batch
    run_fake_env(tmp_path, seed=5, steps=50)
    names = assert_streams_alike(tmp_path, batch_size=batch_size)
    assert names == ["mass", "pos[x]", "pos[y]", "friction", "scene"]


def test_text_labels_across_small_batches_and_unfinished_episodes(tmp_path) -> None:
    scene = vr.Variation(
        "scene", vr.VariationCfg(sampler=vr.ChoiceCfg(choices=("kitchen", "garage", "lab")))
    )
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)))
    with RecorderManager(6, variations=[mass, scene], output=tmp_path, run_id="r", seed=4) as m:
        for _ in range(3):
            m.reset(None, None)
            m.record_step(reward=np.ones(6))
        m.record_pre_reset([0, 1, 2])
        mass.draw(None, np.array([0, 1, 2]))  # envs 0..2 skip scene
        m.record_post_reset([0, 1, 2])
        m.record_step(reward=np.ones(6))
        m.record_pre_reset([0, 1])  # env 2's last episode never finishes
    assert assert_streams_alike(tmp_path, batch_size=5) == ["mass", "scene"]
    table = episode_table(tmp_path)
    assert table.categorical == ["scene"] and len(table) == 17


def test_sparse_episode_indices(tmp_path) -> None:
    from varirec.recording.episodes import EpisodeTracker

    tracker = EpisodeTracker(2)
    tracker.episode[:] = [10**9 - 1, -1]  # as a study fanned out on Ray numbers them
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)))
    with RecorderManager(
        2, variations=[mass], output=tmp_path, run_id="r", tracker=tracker, seed=2
    ) as m:
        for _ in range(3):
            m.reset(None, None)
            m.record_step(reward=np.ones(2))
        m.record_pre_reset(None)
    assert assert_streams_alike(tmp_path, batch_size=3) == ["mass"]


def _mid_episode_draw(path, *, all_envs: bool) -> None:
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)))
    scene = vr.Variation("scene", vr.VariationCfg(sampler=vr.ChoiceCfg(choices=("a", "b"))))
    with RecorderManager(4, variations=[mass, scene], output=path, run_id="r", seed=1) as m:
        m.reset(None, None)
        m.record_step(reward=np.ones(4))
        mass.draw(None, None if all_envs else np.array([1, 3]))  # counts from the next one
        m.record_pre_reset(None)
        scene.draw(None, np.arange(4))  # every env skips mass
        m.record_post_reset(None)
        m.record_step(reward=np.ones(4))
        m.record_pre_reset(None)


@pytest.mark.parametrize("all_envs", [False, True])
def test_cases_the_stream_leaves_to_run_factors(tmp_path, all_envs) -> None:
    # a draw after its own episode began, or a variation drawn per env and for all envs
    _mid_episode_draw(tmp_path, all_envs=all_envs)
    streamed, ((names, values, _), _) = _both(tmp_path, batch_size=2)
    assert streamed is None
    table = episode_table(tmp_path, drop_constant=False)
    frame = table.frame.set_index(["env_id", "episode"])
    draws = vr.open_dataset(tmp_path).draws(columns=["variation", "env_id", "seq", "value"])
    mass = draws.to_pandas().query("variation == 'mass'").sort_values("seq")
    first, mid = mass.iloc[:4].set_index("env_id")["value"], mass.iloc[4:]
    mid = mid.set_index("env_id")["value"]
    assert frame.loc[(1, 1), "mass"] == mid[-1 if all_envs else 1]
    assert frame.loc[(0, 1), "mass"] == (mid[-1] if all_envs else first[0])
    assert (frame.xs(0, level="episode")["mass"] == first).all()
    np.testing.assert_array_equal(table.frame["mass"].to_numpy(), values[names.index("mass")])


def test_several_writers_are_left_to_run_factors(tmp_path) -> None:
    run_fake_env(tmp_path, seed=2, steps=20)
    draws = tmp_path / "run_id=r" / "draws"
    first = sorted(draws.glob("part-*.parquet"))[0]
    shutil.copy(first, draws / "part-other-00000.parquet")
    streamed, _ = _both(tmp_path)
    assert streamed is None  # seq is per writer: run_factors sorts the draws by it
