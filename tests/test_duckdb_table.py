"""The episode table pushed down to DuckDB equals the in-memory one, row by row."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import varirec as vr
from conftest import run_fake_env
from varirec.analysis.tables.episode_table import (
    BYTES_PER_DRAW_ROW,
    EpisodeTable,
    _choose_engine,
    episode_table,
)
from varirec.recording.manager import RecorderManager

pytest.importorskip("duckdb")


def assert_same_tables(path, **kwargs) -> EpisodeTable:
    memory = episode_table(path, engine="memory", **kwargs)
    duck = episode_table(path, engine="duckdb", **kwargs)
    pd.testing.assert_frame_equal(duck.frame, memory.frame)
    assert duck.factors == memory.factors
    assert duck.categorical == memory.categorical
    assert duck.outcomes == memory.outcomes
    assert duck.notes == memory.notes
    return memory


def test_fake_env_run_with_build_vector_interval_and_skipped_resets(fake_run) -> None:
    env, _, path = fake_run
    table = assert_same_tables(path, drop_constant=False)
    # and both equal what the env had (an independent truth)
    truth = pd.DataFrame(env.history).set_index(["env_id", "episode"]).sort_index()
    frame = table.frame.set_index(["env_id", "episode"]).sort_index()
    for column in ("mass", "pos[x]", "pos[y]", "friction"):
        np.testing.assert_array_equal(frame[column].to_numpy(), truth[column].to_numpy())
    assert (frame["scene"].astype(str) == truth["scene"]).all()
    assert_same_tables(path)  # constant factors dropped alike


def test_several_runs_text_labels_and_a_mid_episode_draw(tmp_path) -> None:
    run_fake_env(tmp_path / "fake", seed=3, steps=40)
    for run_id, seed in (("a", 1), ("b", 2)):
        scene = vr.Variation(
            "scene", vr.VariationCfg(sampler=vr.ChoiceCfg(choices=("kitchen", "garage", "lab")))
        )
        mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)))
        with RecorderManager(
            5, variations=[scene, mass], output=tmp_path / "ab", run_id=run_id, seed=seed
        ) as m:
            m.reset(None, None)
            m.record_step(reward=np.ones(5))
            mass.draw(None, np.array([0, 3]))  # mid-episode: counts from the next episode
            m.record_pre_reset([0, 1, 2])
            scene.draw(None, np.array([0, 1]))  # env 2 skips scene, env 0..2 skip mass
            m.record_post_reset([0, 1, 2])
            m.record_step(reward=np.full(5, 2.0), success=np.arange(5) > 1)
            m.record_pre_reset(None)
            if run_id == "b":  # one draw for all envs, later than the envs' own: it wins
                mass.draw(None, None)
                scene.draw(None, np.array([1, 4]))  # envs 1 and 4 skip mass
                m.record_post_reset([1, 4])
                m.record_step(reward=np.ones(5))
                m.record_pre_reset([1, 4])
    table = assert_same_tables(tmp_path / "ab")
    assert table.categorical == ["scene"] and len(table) == 18
    draws = vr.open_dataset(tmp_path / "ab").draws("b").to_pandas()
    everyone = draws[(draws["variation"] == "mass") & (draws["env_id"] == -1)]["value"]
    assert len(everyone) == 1
    last = table.frame[table.frame["run_id"] == "b"].groupby("env_id")["mass"].last()
    assert last[1] == last[4] == everyone.iloc[0] != last[0]
    assert sorted(table.frame["run_id"].unique()) == ["a", "b"]
    assert_same_tables(tmp_path / "ab", runs="b")
    assert_same_tables(tmp_path / "fake", drop_constant=False)


def test_unreadable_parts_are_skipped_alike(fake_run) -> None:
    _, _, path = fake_run
    (path / "run_id=r" / "draws" / "part-ghost-00000.parquet").write_bytes(b"not parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", vr.DatasetWarning)
        assert_same_tables(path, drop_constant=False)


def test_auto_takes_duckdb_above_the_memory_budget(fake_run) -> None:
    _, _, path = fake_run
    ds = vr.open_dataset(path)
    rows = ds.health("draws")[0].rows_readable
    assert _choose_engine("auto", ds, ["r"], rows * BYTES_PER_DRAW_ROW) == (
        "memory",
        rows * BYTES_PER_DRAW_ROW,
    )
    assert _choose_engine("auto", ds, ["r"], rows * BYTES_PER_DRAW_ROW - 1)[0] == "duckdb"
    small = episode_table(path, memory_budget=1, drop_constant=False)
    pd.testing.assert_frame_equal(
        small.frame, episode_table(path, engine="memory", drop_constant=False).frame
    )


def test_bad_engine_or_budget_is_refused(fake_run) -> None:
    _, _, path = fake_run
    with pytest.raises(ValueError, match=r"`engine` must be one of .*got 'spark'"):
        episode_table(path, engine="spark")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`memory_budget` must be a positive number.*got 0"):
        episode_table(path, memory_budget=0)


def test_episode_indices_with_large_gaps_use_a_sparse_layout(tmp_path) -> None:
    # A study fanned out on Ray gives each chunk its own range of episode indices.
    from varirec.recording.episodes import EpisodeTracker

    tracker = EpisodeTracker(2)
    tracker.episode[:] = [10**9 - 1, -1]  # env 0 starts at episode 1e9, env 1 at 0
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)))
    scene = vr.Variation("scene", vr.VariationCfg(sampler=vr.ChoiceCfg(choices=("a", "b"))))
    with RecorderManager(
        2, variations=[mass, scene], output=tmp_path, run_id="r", tracker=tracker, seed=2
    ) as m:
        for _ in range(2):
            m.reset(None, None)
            m.record_step(reward=np.ones(2))
        m.record_pre_reset([0, 1])
        scene.draw(None, np.array([0, 1]))  # both envs skip mass: they keep the last one
        m.record_post_reset([0, 1])
        m.record_step(reward=np.ones(2))
        m.record_pre_reset(None)
    table = assert_same_tables(tmp_path)
    frame = table.frame.set_index(["env_id", "episode"]).sort_index()
    assert frame.index.get_level_values("episode").max() == 10**9 + 2
    draws = vr.open_dataset(tmp_path).draws(columns=["variation", "env_id", "episode", "value"])
    draws = draws.to_pandas()
    truth = draws[draws["variation"] == "mass"].set_index(["env_id", "episode"])["value"]
    for env, first in ((0, 10**9), (1, 0)):
        assert frame.loc[(env, first), "mass"] == truth[(env, first)]
        assert frame.loc[(env, first + 2), "mass"] == truth[(env, first + 1)]


def test_text_labels_drawn_per_env_and_for_all_envs(tmp_path) -> None:
    # One ASOF JOIN per factor: a labelled factor with both kinds of draws takes the
    # later one's label, as the in-memory path does.
    scene = vr.Variation(
        "scene", vr.VariationCfg(sampler=vr.ChoiceCfg(choices=("kitchen", "garage", "lab")))
    )
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)))
    with RecorderManager(4, variations=[scene, mass], output=tmp_path, run_id="r", seed=7) as m:
        m.reset(None, None)
        m.record_step(reward=np.ones(4))
        m.record_pre_reset(None)
        scene.draw(None, None)  # one label for every env, later than their own draws
        mass.draw(None, np.arange(4))
        m.record_post_reset(None)
        m.record_step(reward=np.ones(4))
        m.record_pre_reset([0, 1])
        scene.draw(None, np.array([0]))  # env 0's own draw is later again
        mass.draw(None, np.array([0, 1]))
        m.record_post_reset([0, 1])
        m.record_step(reward=np.ones(4))
        m.record_pre_reset([0, 1])
    table = assert_same_tables(tmp_path, drop_constant=False)
    draws = vr.open_dataset(tmp_path).draws(columns=["variation", "env_id", "seq", "label"])
    scene_draws = draws.to_pandas().query("variation == 'scene'").sort_values("seq")
    everyone, own0 = scene_draws.iloc[4]["label"], scene_draws.iloc[5]["label"]
    frame = table.frame.set_index(["env_id", "episode"])
    assert frame.loc[(0, 2), "scene"] == own0
    assert frame.loc[(1, 2), "scene"] == frame.loc[(1, 1), "scene"] == everyone
    assert table.categorical == ["scene"]
