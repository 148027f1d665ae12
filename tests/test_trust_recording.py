"""Trust in recording (issue 8): seeds per episode, unbound designs, variations enabled
late, bad env ids and step arrays refused with the fix, refusals that leave no run."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import varirec as vr
from varirec.analysis.designs import sobol_design
from varirec.envs import drive_episodes, ishigami_variations, make_ishigami_env
from varirec.errors import DesignError, RecorderStateError
from varirec.integrations.builder import EnvBuilder
from varirec.integrations.gym import (
    VariationWrapper,
    cartpole_variations,
    make_env,
    pendulum_variations,
)
from varirec.integrations.gym_vector import make_vector_env
from varirec.recording.manager import NullRecorderManager, RecorderManager
from varirec.recording.terms import RecorderTerm, RecorderTermCfg
from varirec.sampling.streams import RESET_SEED_STREAM, CounterStream
from varirec.studies.design import DesignSchedule
from varirec.studies.replay import replay_episode


def _mass() -> vr.Variation:
    return vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))


def _expected_seeds(run_seed: int, ids: np.ndarray, episodes: np.ndarray) -> np.ndarray:
    return CounterStream(run_seed, RESET_SEED_STREAM).seeds(ids, episodes)


# -- 1. reset seeds: distinct and reproducible per (run seed, env, episode) -----------


def _seeds_of_three_resets(seed: int) -> list[list[int]]:
    got: list[list[int]] = []
    m = NullRecorderManager(2, variations=[_mass()], seed=seed)
    for _ in range(3):
        m.reset(None, None, reset_fn=lambda ids, seeds: got.append(seeds.tolist()))
    return got


def test_reset_seeds_differ_per_episode_and_are_reproducible() -> None:
    got = _seeds_of_three_resets(0)
    assert len({s for batch in got for s in batch}) == 6  # 2 envs x 3 episodes
    for episode, batch in enumerate(got):
        expected = _expected_seeds(0, np.arange(2), np.full(2, episode))
        assert batch == expected.tolist()
    assert _seeds_of_three_resets(0) == got
    assert _seeds_of_three_resets(1) != got


def test_seed_column_and_replay_seed_of_later_episodes(tmp_path) -> None:
    with RecorderManager(2, variations=[_mass()], output=tmp_path, run_id="r", seed=3) as m:
        for _ in range(4):  # three finished episodes per env
            m.reset(None, None, reset_fn=lambda ids, seeds: None)
            m.record_step(reward=np.ones(2), terminated=np.ones(2, bool))
    ep = vr.open_dataset(tmp_path).episodes().to_pandas().sort_values(["env_id", "episode"])
    expected = _expected_seeds(3, ep["env_id"].to_numpy(), ep["episode"].to_numpy())
    np.testing.assert_array_equal(ep["seed"].to_numpy(np.int64), expected)
    assert ep["seed"].nunique() == 6
    for episode in (1, 2):
        replay = replay_episode(tmp_path, "r", env_id=1, episode=episode)
        assert replay.seed == int(_expected_seeds(3, np.array([1]), np.array([episode]))[0])


def test_interval_draws_and_timers_differ_across_episodes(tmp_path) -> None:
    gust = vr.Variation(
        "gust",
        vr.VariationCfg(sampler=vr.UniformCfg(), mode="interval", interval_steps=(2, 9)),
    )
    with RecorderManager(1, variations=[gust], output=tmp_path, run_id="r", seed=0) as m:
        for _ in range(3):
            m.reset(None, [0], reset_fn=lambda ids, seeds: None)
            for _ in range(30):
                m.record_step(reward=np.zeros(1))
                m.draw_interval()
            m.record_pre_reset([0])
    draws = vr.open_dataset(tmp_path).draws().to_pandas()
    per_episode = [
        list(zip(d["step"], d["value"], strict=True)) for _, d in draws.groupby("episode")
    ]
    assert len(per_episode) == 3
    steps = [tuple(s for s, _ in e) for e in per_episode]
    values = [tuple(v for _, v in e) for e in per_episode]
    assert len(set(steps)) == 3  # timers keyed by each episode's own seed
    assert len({v[0] for v in values}) == 3


def test_gym_wrapper_seeds_differ_per_episode(tmp_path) -> None:
    env = VariationWrapper(
        gym.make("CartPole-v1"), cartpole_variations(), output=tmp_path, run_id="r", seed=4
    )
    env.reset(seed=11)  # the caller's seed for episode 0, then the run's own
    for _ in range(3):
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(0)
            done = terminated or truncated
        env.reset()
    env.close()
    ep = vr.open_dataset(tmp_path).episodes().to_pandas().sort_values("episode")
    later = _expected_seeds(4, np.zeros(2, np.int64), np.array([1, 2]))
    assert ep["seed"].tolist() == [11, *later.tolist()]
    assert replay_episode(tmp_path, "r", env_id=0, episode=2).seed == int(later[1])


# -- 2. a design never bound ---------------------------------------------------------


def test_unbound_design_is_refused_before_any_row_is_handed_out(tmp_path) -> None:
    variations = ishigami_variations()
    design = sobol_design(variations, 4, seed=0)
    schedule = DesignSchedule(design, seed=0)
    manager = RecorderManager(
        8, variations=variations, output=tmp_path, run_id="r", schedule=schedule
    )
    with pytest.raises(
        DesignError,
        match=r"not bound to variations \['x1', 'x2', 'x3'\] \(factors \['x1', 'x2', 'x3'\]\)"
        r".*call design\.bind\(variations\) first",
    ):
        drive_episodes(make_ishigami_env(8), manager)
    manager.close()
    assert schedule.handed_out == 0 and (manager.tracker.episode == -1).all()
    assert vr.open_dataset(tmp_path).episodes().num_rows == 0


def test_unbound_design_is_refused_by_the_null_manager_too() -> None:
    variations = ishigami_variations()
    design = sobol_design(variations, 4, seed=0)
    manager = NullRecorderManager(4, variations=variations, schedule=DesignSchedule(design))
    env = make_ishigami_env(4)
    with pytest.raises(DesignError, match=r"call design\.bind"):
        manager.reset(env, None)
    design.bind(variations)  # the fix: bound (even after the manager) it runs
    assert drive_episodes(env, manager, build=False).complete


def test_design_of_other_variations_is_refused_before_the_run_exists(tmp_path) -> None:
    design = sobol_design(ishigami_variations(), 4, seed=0)
    with pytest.raises(DesignError, match=r"drives variations \['x1', 'x2', 'x3'\]"):
        RecorderManager(4, variations=[_mass()], output=tmp_path, schedule=DesignSchedule(design))
    assert list(tmp_path.iterdir()) == []


# -- 3. a variation disabled at attach, enabled later ---------------------------------


def test_variation_enabled_after_attach_is_recorded(tmp_path) -> None:
    applied: list[np.ndarray] = []
    late = vr.Variation(
        "late",
        vr.VariationCfg(sampler=vr.UniformCfg(low=5, high=6), enabled=False),
        apply=lambda env, ids, values: applied.append(values.copy()),
    )
    gust = vr.Variation(
        "gust",
        vr.VariationCfg(sampler=vr.UniformCfg(), mode="interval", enabled=False),
    )
    with RecorderManager(2, variations=[_mass(), late, gust], output=tmp_path, run_id="r") as m:
        m.reset(None, None)
        m.record_step(reward=np.ones(2), terminated=np.ones(2, bool))
        late.enable()
        gust.enable()
        m.reset(None, None)
        for _ in range(60):  # past the interval timer (50 steps)
            m.record_step(reward=np.ones(2))
            m.draw_interval()
        m.record_pre_reset(None)
    draws = vr.open_dataset(tmp_path).draws().to_pandas()
    rows = draws[draws["variation"] == "late"]
    assert rows["episode"].tolist() == [1, 1] and rows["env_id"].tolist() == [0, 1]
    np.testing.assert_array_equal(rows["value"], np.concatenate(applied))
    assert (draws["variation"] == "gust").sum() == 2
    ep = replay_episode(tmp_path, "r", env_id=1, episode=1)
    assert ep.values["late"] == pytest.approx(applied[0][1])
    specs = {s["key"]: s for s in vr.open_dataset(tmp_path).run("r").metadata["variations"]}
    assert specs["late"]["enabled"] and specs["late"]["enabled_after_start"]
    assert specs["gust"]["enabled"] and "enabled_after_start" not in specs["mass"]


# -- 4. env ids: integers or a bool mask ----------------------------------------------


@pytest.mark.parametrize(
    ("env_ids", "got"),
    [
        ([0.5], r"float64 \[0\.5\]"),
        ([1.9], r"float64 \[1\.9\]"),
        (["a"], "<U1"),
        ([None], "object"),
    ],
)
def test_non_integer_env_ids_are_refused(env_ids, got) -> None:
    m = NullRecorderManager(3, variations=[_mass()])
    with pytest.raises(TypeError, match=rf"`env_ids` must be integers or a bool mask, got {got}"):
        m.reset(None, env_ids)
    assert (m.tracker.episode == -1).all()  # nothing moved
    with pytest.raises(TypeError, match="`env_ids` must be integer env ids"):
        _mass().draw(env_ids=env_ids)


def test_bool_mask_of_wrong_length_names_the_fix() -> None:
    m = NullRecorderManager(3)
    with pytest.raises(ValueError, match=r"shape \(3,\), got \(2,\); pass one bool per env"):
        m.record_pre_reset(np.array([True, False]))
    m.reset(None, np.array([True, False, True]))
    assert m.tracker.episode.tolist() == [0, -1, 0]
    m.reset(None, [])  # no envs is fine
    assert m.tracker.episode.tolist() == [0, -1, 0]


# -- 5. record_step arrays ----------------------------------------------------------


def test_record_step_refuses_wrong_shapes_and_dtypes_with_the_fix() -> None:
    m = RecorderManager(3)
    m.reset(None, None)
    with pytest.raises(ValueError, match=r"`reward` must have shape \(3,\).*got shape \(2,\)"):
        m.record_step(reward=np.ones(2))
    with pytest.raises(ValueError, match=r"got shape \(3, 1\); pass reward\.reshape\(-1\)"):
        m.record_step(reward=np.ones((3, 1)))
    with pytest.raises(TypeError, match=r"`success` must hold bools or numbers, got dtype <U3"):
        m.record_step(success=np.array(["yes", "no", "yes"]))
    with pytest.raises(TypeError, match=r"`terminated` must hold bools .* got dtype float64"):
        m.record_step(terminated=np.zeros(3))
    m.record_step(reward=[1, 2, 3], terminated=np.array([1, 0, 0]), success=[1.0, np.nan, 0.0])
    m.record_pre_reset([0, 1])
    m.close()


# -- 6. refusals leave no run directory ------------------------------------------------


class _Clash(RecorderTerm):
    def columns(self):
        import pyarrow as pa

        return {"return": pa.float64()}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"terms": {"bad": object()}}, TypeError, "must be given as a RecorderTermCfg"),
        ({"terms": {"clash": RecorderTermCfg(term=_Clash)}}, ValueError, "already records"),
        ({"step_keys": "reward"}, TypeError, "`step_keys` must be a sequence"),
        ({"step_keys": ()}, ValueError, "must name the per-step arrays"),
        ({"max_rows": 0}, ValueError, "`max_rows` must be >= 1"),
        ({"metadata": {"x": object()}}, TypeError, "JSON"),
        ({"writer_options": {"max_queue": 0}}, ValueError, "`max_queue` must be a positive"),
    ],
)
def test_refused_manager_leaves_no_run(tmp_path, kwargs, error, match) -> None:
    mass = _mass()
    with pytest.raises(error, match=match):
        RecorderManager(2, variations=[mass], output=tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []
    assert mass.sampler.listeners == ()  # nothing stays attached: a retry works
    RecorderManager(2, variations=[mass], output=tmp_path, run_id="ok").close()


def test_refused_late_attach_leaves_no_run(tmp_path) -> None:
    mass = _mass()
    mass.draw(env_ids=[0])
    with pytest.raises(RecorderStateError, match="already drew 1 time"):
        RecorderManager(2, variations=[mass], output=tmp_path)
    with pytest.raises(RecorderStateError, match="already drew"):
        EnvBuilder([mass], output=tmp_path).build(lambda values: {})
    assert list(tmp_path.iterdir()) == []


def test_gym_wrappers_refuse_an_env_without_the_varied_attributes(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"\(CartPoleEnv\) has no attribute\(s\) 'g', 'm', 'l'"):
        VariationWrapper(gym.make("CartPole-v1"), pendulum_variations(), output=tmp_path)
    with pytest.raises(ValueError, match="make_env: the env"):
        make_env("CartPole-v1", EnvBuilder(pendulum_variations(), output=tmp_path))
    with pytest.raises(ValueError, match="make_vector_env: the env"):
        make_vector_env(
            "CartPole-v1", EnvBuilder(pendulum_variations(), output=tmp_path, num_envs=2)
        )
    assert list(tmp_path.iterdir()) == []
    env = VariationWrapper(gym.make("Pendulum-v1"), pendulum_variations(), output=tmp_path)
    env.reset()
    env.close()
    (run,) = tmp_path.iterdir()
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
