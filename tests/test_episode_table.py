"""The episode table: factor values per episode by the as-of rule, vectorized."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import varirec as vr
from varirec.analysis.tables.episode_table import episode_table
from varirec.recording.manager import RecorderManager


def test_factor_values_equal_what_the_env_had(fake_run) -> None:
    env, manager, path = fake_run
    table = episode_table(path)
    truth = pd.DataFrame(env.history).set_index(["env_id", "episode"]).sort_index()
    frame = table.frame.set_index(["env_id", "episode"]).sort_index()
    assert len(frame) == len(truth) == manager.tracker.episodes_finished
    # scene is one build draw for the whole run: constant, dropped with a note
    # gust is interval-mode: episode noise, not a factor
    assert table.factors == ["mass", "pos[x]", "pos[y]", "friction"]
    assert any("'scene' is constant" in n for n in table.notes)
    for column in ("mass", "pos[x]", "pos[y]", "friction"):
        np.testing.assert_array_equal(
            frame[column].to_numpy(), truth[column].to_numpy(), err_msg=column
        )
    # kept, the build draw is the value of every episode (env_id -1 applies to all)
    whole = episode_table(path, drop_constant=False).frame.set_index(["env_id", "episode"])
    assert (whole.sort_index()["scene"].astype(str) == truth["scene"]).all()
    assert {"success", "return", "length", "terminated", "truncated"} <= set(table.outcomes)
    assert "start_seq" not in table.frame.columns


def test_interval_variation_is_noted_not_a_factor(fake_run) -> None:
    _, _, path = fake_run
    table = episode_table(path, drop_constant=False)
    assert "gust" not in table.factors and "gust" not in table.frame.columns
    assert any("'gust' is an interval-mode variation" in n for n in table.notes)


def test_categorical_factors_keep_labels_and_constants_are_dropped(tmp_path) -> None:
    scene = vr.Variation(
        "scene", vr.VariationCfg(sampler=vr.ChoiceCfg(choices=("kitchen", "garage", "lab")))
    )
    const = vr.Variation("gravity", vr.VariationCfg(sampler=vr.ConstantCfg(value=9.81)))
    with RecorderManager(8, variations=[scene, const], output=tmp_path, run_id="a", seed=1) as m:
        for _ in range(3):
            m.reset(None, None)
            m.record_step(reward=np.ones(8), success=np.ones(8))
        m.record_pre_reset(None)
    table = episode_table(tmp_path)
    assert table.factors == ["scene"] and table.categorical == ["scene"]
    assert list(table.frame["scene"].cat.categories) == ["kitchen", "garage", "lab"]
    assert any("'gravity' is constant" in n for n in table.notes)
    codes = table.factor_matrix()
    assert codes.shape == (24, 1) and set(np.unique(codes)) <= {0.0, 1.0, 2.0}


def test_several_runs_and_outcome_checks(tmp_path) -> None:
    for run_id, reward in (("a", 1.0), ("b", np.nan)):
        mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)))
        with RecorderManager(4, variations=[mass], output=tmp_path, run_id=run_id) as m:
            m.reset(None, None)
            m.record_step(reward=np.full(4, reward))
            m.record_pre_reset(None)
    both = episode_table(tmp_path)
    assert sorted(both.frame["run_id"].unique()) == ["a", "b"] and len(both) == 8
    y, valid = both.outcome("return")
    assert valid.sum() == 4  # the NaN returns are flagged, not passed on
    assert np.all(y[valid] == 1.0)
    _, valid = both.outcome("success")
    assert valid.sum() == 0  # no success reported: all missing
    assert len(episode_table(tmp_path, runs="a")) == 4
    with pytest.raises(vr.UnknownNameError, match="no outcome 'sucess'; did you mean 'success'"):
        episode_table(tmp_path, outcomes=["sucess"])
    with pytest.raises(vr.UnknownNameError, match="no outcome 'retrun'"):
        both.outcome("retrun")


def test_no_episodes_is_a_clear_error(tmp_path) -> None:
    with RecorderManager(2, output=tmp_path, run_id="empty") as m:
        m.reset(None, None)
    with pytest.raises(vr.DatasetError, match="no episodes in run"):
        episode_table(tmp_path)


def test_a_draw_made_mid_episode_counts_from_the_next_episode(tmp_path) -> None:
    applied = np.zeros(2)

    def apply(env, ids, values):
        applied[ids] = values

    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)), apply)
    scene = vr.Variation("scene", vr.VariationCfg(sampler=vr.ChoiceCfg(choices=("a", "b"))))
    truth = []
    with RecorderManager(2, variations=[mass, scene], output=tmp_path, run_id="r", seed=4) as m:
        m.reset(None, None)
        truth.append(applied.copy())  # episode 0
        m.record_step(reward=np.ones(2))
        mass.draw(None, np.array([0]))  # redrawn mid-episode: episode 0 keeps its value
        m.record_pre_reset([0, 1])
        scene.draw(None, np.array([0, 1]))  # env 0 skips mass on this reset
        mass.draw(None, np.array([1]))
        m.record_post_reset([0, 1])
        truth.append(applied.copy())  # episode 1
        m.record_step(reward=np.ones(2))
        m.record_pre_reset([0, 1])
    frame = episode_table(tmp_path).frame.set_index(["env_id", "episode"]).sort_index()
    assert frame.loc[(0, 0), "mass"] == truth[0][0]
    assert frame.loc[(0, 1), "mass"] == truth[1][0] != truth[0][0]  # the mid-episode draw
    assert frame.loc[(1, 1), "mass"] == truth[1][1]
    assert frame["scene"].notna().all()


def test_episodes_that_ran_no_step_are_left_out_with_a_note(tmp_path) -> None:
    # An env reset twice without a step between (a wrapper's reset, then the user's)
    # ends an episode of length 0: a return of 0 that no policy earned.
    v = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    with vr.RecorderManager(3, variations=[v], output=tmp_path, run_id="r") as m:
        m.reset(None, None)
        m.reset(None, None)  # again, before any step: three episodes of length 0
        for _ in range(2):
            m.record_step(reward=np.ones(3))
        m.record_pre_reset(None)
    assert sorted(vr.open_dataset(tmp_path).episodes().column("length").to_pylist()) == [
        0, 0, 0, 2, 2, 2
    ]  # fmt: skip
    t = episode_table(tmp_path)
    assert len(t) == 3 and (t.frame["length"] == 2).all() and (t.frame["return"] == 2).all()
    assert any("3 episode(s) that ran no step" in n for n in t.notes)
