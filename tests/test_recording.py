"""Attribution end to end: every recorded value equals what the env really had.

A fake env keeps the values applied to each env; at every episode end the test notes
what the env had during that episode. The dataset is read back and the value in
force during each episode is found by an as-of join written here independently
(pandas ``merge_asof``): the last draw for that env, or for all envs, with
``seq <= start_seq``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import varirec as vr
from conftest import FakeEnv, run_fake_env
from varirec.recording.manager import NullRecorderManager, RecorderManager
from varirec.storage import open_dataset


def _as_of(draws: pd.DataFrame, episodes: pd.DataFrame, column: str) -> pd.Series:
    """Value in force at each episode's start: last draw of that env or all envs."""
    d = draws[draws["column"] == column]
    out = []
    for env_id, eps in episodes.groupby("env_id"):
        mine = d[(d["env_id"] == env_id) | (d["env_id"] == -1)].sort_values("seq")
        joined = pd.merge_asof(
            eps.sort_values("start_seq"),
            mine[["seq", "value", "label"]],
            left_on="start_seq",
            right_on="seq",
            direction="backward",
        )
        out.append(joined.set_index(["env_id", "episode"])[["value", "label"]])
    return pd.concat(out)


def _columns(draws: pd.DataFrame) -> pd.DataFrame:
    comp = {("pos", 0): "pos[x]", ("pos", 1): "pos[y]"}
    draws = draws.copy()
    draws["column"] = [
        comp.get((v, c), v) for v, c in zip(draws["variation"], draws["component"], strict=True)
    ]
    return draws


def test_every_recorded_value_equals_what_the_env_had(tmp_path) -> None:
    env, manager = run_fake_env(tmp_path)
    ds = open_dataset(tmp_path)
    draws = _columns(ds.draws().to_pandas())
    episodes = ds.episodes().to_pandas()
    truth = pd.DataFrame(env.history).set_index(["env_id", "episode"]).sort_index()
    assert len(episodes) == len(truth) == manager.tracker.episodes_finished
    # No phantom: every recorded episode started, and episode indices are 0, 1, ... per env.
    for _, g in episodes.groupby("env_id"):
        assert g["episode"].sort_values().tolist() == list(range(len(g)))
    for column in ("mass", "pos[x]", "pos[y]", "friction"):
        recorded = _as_of(draws, episodes, column).sort_index()
        np.testing.assert_array_equal(
            recorded["value"].to_numpy(), truth[column].to_numpy(), err_msg=column
        )
    scene = _as_of(draws, episodes, "scene").sort_index()
    assert (scene["label"] == truth["scene"]).all()
    # the cfg swap at step 30 shows up as recorded values from the new sampler
    assert (draws.loc[draws["variation"] == "mass", "value"] > 10).any()


def test_build_draw_has_env_and_episode_minus_one(tmp_path) -> None:
    run_fake_env(tmp_path, steps=5)
    draws = open_dataset(tmp_path).draws().to_pandas()
    build = draws[draws["phase"] == "build"]
    assert build["variation"].tolist() == ["scene"]
    assert build[["env_id", "episode"]].values.tolist() == [[-1, -1]]
    assert build["label"].iloc[0] in ("kitchen", "garage")


def test_interval_draws_are_attributed_to_episode_and_step(tmp_path) -> None:
    env, _ = run_fake_env(tmp_path, steps=40)
    ds = open_dataset(tmp_path)
    draws = ds.draws().to_pandas()
    episodes = ds.episodes().to_pandas()
    gust = draws[draws["variation"] == "gust"]
    assert len(gust) == len(env.gusts) > 0
    np.testing.assert_array_equal(gust["value"].to_numpy(), [g[2] for g in env.gusts])
    assert (gust["phase"] == "interval").all()
    # Timers of (2..4) steps: the first gust of an episode is at step >= 2, and gusts of
    # one (env, episode) are numbered 0, 1, 2... by draw_seq.
    assert gust["step"].min() >= 2
    for _, g in gust.groupby(["env_id", "episode"]):
        assert g["draw_seq"].tolist() == list(range(len(g)))
    # An interval draw never counts as the value in force at an episode's start.
    merged = gust.merge(episodes, on=["env_id", "episode"], how="inner")
    assert (merged["seq"] > merged["start_seq"]).all() and (merged["seq"] < merged["end_seq"]).all()


def test_skipped_reset_inherits_previous_value(tmp_path) -> None:
    env = FakeEnv(2)
    mass = vr.Variation(
        "mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)), env.set("mass")
    )
    m = RecorderManager(2, variations=[mass], output=tmp_path, run_id="r", seed=3)
    m.reset(env, None)
    first = env.params["mass"].copy()
    m.record_step(reward=np.zeros(2))
    m.record_pre_reset([0, 1])
    mass.draw(env, np.array([1]))  # env 0 skips the variation on this reset
    m.record_post_reset([0, 1])
    m.record_step(reward=np.zeros(2))
    m.record_pre_reset([0, 1])
    m.close()
    ds = open_dataset(tmp_path)
    episodes = ds.episodes().to_pandas()
    draws = _columns(ds.draws().to_pandas())
    values = _as_of(draws, episodes, "mass")["value"]
    assert values.loc[(0, 1)] == first[0]  # inherited
    assert values.loc[(1, 1)] == env.params["mass"][1] != first[1]


def test_retried_reset_never_reuses_an_episode_index(tmp_path) -> None:
    m = RecorderManager(3, output=tmp_path, run_id="r")
    m.reset(None, None)
    m.record_step(reward=np.ones(3))
    m.record_pre_reset([0])
    m.record_pre_reset([0])  # the reset failed and is retried
    m.record_post_reset([0])
    assert m.tracker.episode.tolist() == [2, 0, 0]
    m.record_step(reward=np.ones(3))
    m.record_pre_reset([0, 1, 2])
    m.close()
    episodes = open_dataset(tmp_path).episodes().to_pandas().sort_values(["env_id", "episode"])
    assert episodes[["env_id", "episode"]].values.tolist() == [[0, 0], [0, 2], [1, 0], [2, 0]]


def test_reproducible_values_do_not_depend_on_reset_pattern(tmp_path) -> None:
    a = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    b = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    ma = RecorderManager(4, variations=[a], output=tmp_path / "a", run_id="r", seed=5)
    mb = RecorderManager(64, variations=[b], output=tmp_path / "b", run_id="r", seed=5)
    ma.reset(None, None)
    mb.reset(None, None)
    for ids in ([2], [0, 3], [1]):  # a resets envs a few at a time, b all at once
        ma.record_step()
        ma.reset(None, ids)
    mb.record_step()
    mb.reset(None, None)
    ma.close()
    mb.close()
    da = open_dataset(tmp_path / "a").draws().to_pandas().set_index(["env_id", "episode"])["value"]
    db = open_dataset(tmp_path / "b").draws().to_pandas().set_index(["env_id", "episode"])["value"]
    common = da.index.intersection(db.index)
    assert len(common) == 8
    np.testing.assert_array_equal(da.loc[common].to_numpy(), db.loc[common].to_numpy())


def test_outcomes_return_length_success_and_times(tmp_path) -> None:
    m = RecorderManager(2, output=tmp_path, run_id="r")
    m.reset(None, None)
    for _ in range(3):
        m.record_step(reward=np.array([1.0, 2.0]), terminated=np.array([False, False]))
    m.record_step(
        reward=np.array([1.0, 2.0]),
        terminated=np.array([True, False]),
        truncated=np.array([False, True]),
        success=np.array([1.0, np.nan]),
    )
    m.record_pre_reset([0, 1])
    m.close()
    ep = open_dataset(tmp_path).episodes().to_pandas().sort_values("env_id")
    assert ep["length"].tolist() == [4, 4]
    assert ep["return"].tolist() == [4.0, 8.0]
    assert ep["terminated"].tolist() == [True, False] and ep["truncated"].tolist() == [False, True]
    assert ep["success"].iloc[0] == True and pd.isna(ep["success"].iloc[1])  # noqa: E712
    assert str(ep["time_start"].dt.tz) == "UTC"
    assert (ep["time_end"] >= ep["time_start"]).all()
    assert (ep["end_seq"] > ep["start_seq"]).all()


def test_reset_again_without_pre_reset_is_an_error() -> None:
    m = NullRecorderManager(2)
    m.reset(None, None)
    with pytest.raises(vr.RecorderStateError, match="call record_pre_reset"):
        m.record_post_reset([1])
