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
from varirec.sampling.accel import compiled_draws
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
    assert (
        replay_episode(tmp_path, "r", env_id=np.int64(1), episode=np.int32(2)).seed == replay.seed
    )
    with pytest.raises(TypeError, match=r"`env_id` must be an int, got 0\.5"):
        replay_episode(tmp_path, "r", env_id=0.5, episode=1)  # it had read back env 0
    with pytest.raises(TypeError, match=r"`episode` must be an int, got True"):
        replay_episode(tmp_path, "r", env_id=1, episode=True)


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


@pytest.mark.parametrize("kernels", [True, False], ids=["kernels", "numpy"])
@pytest.mark.parametrize(
    ("env_ids", "env", "times"),
    [
        (np.array([1, 1]), 1, 2),
        ([3, 0, 3, 3], 3, 3),
        (np.array([0, 1, 0, 1]), 0, 2),  # an int 0/1 "mask": read as ids, named as such
        (np.array([2, 0, 2], np.int32), 2, 2),
    ],
)
def test_an_env_named_twice_in_a_reset_is_refused_before_anything_moves(
    tmp_path, kernels, env_ids, env, times
) -> None:
    with compiled_draws(kernels):
        _a_reset_with_repeats(tmp_path, env_ids, env, times)


def _a_reset_with_repeats(tmp_path, env_ids, env, times) -> None:
    m = RecorderManager(4, variations=[_mass()], output=tmp_path, run_id="r")
    m.reset(None, None)
    m.record_step(reward=np.ones(4), terminated=np.ones(4, bool))
    before = m.tracker.episode.copy()
    with pytest.raises(ValueError, match=rf"must name each env once, got env {env} {times} times"):
        m.reset(None, env_ids)
    with pytest.raises(ValueError, match="read as env ids: pass a mask as bool"):
        m.record_pre_reset(env_ids)
    assert m.tracker.episode.tolist() == before.tolist()  # nothing moved
    m.reset(None, [1, 2])  # the loop goes on
    m.close()
    episodes = vr.open_dataset(tmp_path).episodes("r").to_pandas()
    assert sorted(zip(episodes["env_id"], episodes["episode"], strict=True)) == [(1, 0), (2, 0)]
    draws = vr.open_dataset(tmp_path).draws("r").to_pandas()
    assert not draws.duplicated(["env_id", "episode", "variation"]).any()


def test_two_dimensional_env_ids_are_refused_with_the_fix() -> None:
    m = NullRecorderManager(3, variations=[_mass()])
    with pytest.raises(ValueError, match=r"one-dimensional, got shape \(2, 2\); pass .*reshape"):
        m.reset(None, np.array([[0, 1], [2, 3]]))
    assert (m.tracker.episode == -1).all()
    m.reset(None, np.array([[0], [2]]))  # a column, as nonzero() gives it: the ids
    assert m.tracker.episode.tolist() == [0, -1, 0]


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.record_step(reward=np.ones(2), terminated=np.ones(2, bool)),
        lambda m: m.reset(None, [0]),
        lambda m: m.record_pre_reset([0]),
        lambda m: m.record_post_reset([0]),
        lambda m: m.record_post_step(),
        lambda m: m.draw_reset(None, [0]),
        lambda m: m.draw_interval(),
    ],
    ids=["record_step", "reset", "pre_reset", "post_reset", "post_step", "draw", "interval"],
)
def test_a_hook_after_close_is_refused_and_the_run_keeps_its_rows(tmp_path, call) -> None:
    m = RecorderManager(2, variations=[_mass()], output=tmp_path, run_id="r")
    m.reset(None, None)
    m.record_step(reward=np.ones(2), terminated=np.ones(2, bool))
    m.reset(None, None)
    m.close()
    with pytest.raises(RecorderStateError, match=r"after close\(\): the run 'r' is closed.*new"):
        call(m)
    m.close()  # still idempotent
    assert len(vr.open_dataset(tmp_path).episodes("r")) == 2


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
    for name in ("terminated", "truncated", "success"):  # 2 was read as True, unseen
        with pytest.raises(
            ValueError, match=rf"`{name}` must hold bools or 0/1 integers, got \[2\]"
        ):
            m.record_step(**{name: np.array([0, 2, 1])})
    m.record_step(reward=[1, 2, 3], terminated=np.array([1, 0, 0]), success=[1.0, np.nan, 0.0])
    m.record_pre_reset([0, 1])
    m.close()


def test_a_refused_step_is_not_counted_nor_recorded_in_part(tmp_path) -> None:
    """A refusal by any term (the outcomes, a steps column) leaves the step uncounted and
    every return and steps row as they were: the episode is 2 steps long, return 2."""
    m = RecorderManager(2, output=tmp_path, run_id="r", step_keys=("x",))
    m.reset(None, None)
    m.record_step(reward=np.ones(2), x=np.zeros(2))
    bad = [
        {"reward": np.ones(3), "x": np.zeros(2)},
        {"reward": np.ones(2), "terminated": np.ones(3, bool), "x": np.zeros(2)},
        {"reward": np.ones(2), "x": np.zeros(3)},  # the outcomes pass, the steps column not
    ]
    for data in bad:
        with pytest.raises(ValueError, match="must have"):
            m.record_step(**data)
    m.record_step(reward=np.ones(2), x=np.ones(2))
    m.record_pre_reset(None)
    m.close()
    data = vr.open_dataset(tmp_path)
    episodes = data.episodes().to_pandas()
    assert episodes["length"].tolist() == [2, 2] and episodes["return"].tolist() == [2.0, 2.0]
    steps = data.steps().to_pandas().sort_values(["step", "env_id"])
    assert steps["step"].tolist() == [0, 0, 1, 1] and steps["x"].tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize(
    ("later", "match"),
    [
        (np.ones((2, 3)), r"had shape \(2, 2\) and dtype float64 .* got \(2, 3\) and float64"),
        (np.ones((2, 2), np.float32), r"dtype float64 .* got \(2, 2\) and float32.*astype"),
        (np.array([["a", "b"], ["c", "d"]]), r"got \(2, 2\) and str"),
        (np.ones(5), r"must have a row per env, shape \(2, \.\.\.\), got shape \(5,\)"),
        (np.array([None, None]), r"must hold numbers, bools or text, got dtype object"),
    ],
)
def test_a_steps_column_keeps_its_first_shape_and_dtype_and_loses_no_row(
    tmp_path, later, match
) -> None:
    """A steps column that changes shape or type (or has no row per env) is refused at
    the call: before, it failed the writer's chunk later and lost the rows before it."""
    m = RecorderManager(2, output=tmp_path, run_id="r", step_keys=("x",), max_rows=4)
    m.reset(None, None)
    for _ in range(3):
        m.record_step(reward=np.ones(2), x=np.ones((2, 2)))
    with pytest.raises((ValueError, TypeError), match=match):
        m.record_step(reward=np.ones(2), x=later)
    m.record_step(reward=np.ones(2), x=np.zeros((2, 2)))
    m.record_pre_reset(None)
    m.close()
    assert json.loads((tmp_path / "run_id=r" / "run.json").read_text())["status"] == "complete"
    steps = vr.open_dataset(tmp_path).steps().to_pandas()
    assert len(steps) == 8 and sorted(steps["step"].unique()) == [0, 1, 2, 3]


def test_success_values_other_than_0_1_nan_are_logged_once_and_the_rows_kept(
    tmp_path, caplog, monkeypatch
) -> None:
    """0.7 or 2 as a success is read as True above 0.5 and said once (logged, not warned:
    a warning made an error would fail the writer's chunk and lose its rows)."""
    from varirec.recording import episode_chunk

    monkeypatch.setattr(episode_chunk, "_TOLD", set())
    m = RecorderManager(4, output=tmp_path, run_id="r")
    m.reset(None, None)
    for _ in range(2):
        m.record_step(reward=np.ones(4), success=np.array([0.0, 1.0, 0.7, np.nan]))
        m.record_pre_reset(None)
        m.reset(None, None)
        m.flush()
    with caplog.at_level("WARNING", logger="varirec.recording.episode_chunk"):
        m.close()
    said = [r.getMessage() for r in caplog.records if "other than 0, 1 and NaN" in r.getMessage()]
    assert len(said) == 1 and "(e.g. 0.7): recorded as True where above 0.5" in said[0]
    success = vr.open_dataset(tmp_path).episodes().to_pandas().sort_values(["episode", "env_id"])
    assert success["success"].tolist() == [False, True, True, None] * 2


def test_a_misspelt_record_step_name_is_refused_with_the_name_it_meant(tmp_path) -> None:
    m = RecorderManager(2, output=tmp_path, run_id="r", step_keys=("action",))
    m.reset(None, None)
    with pytest.raises(
        TypeError,
        match=r"\['rewards', 'sucess'\] that no term records \(did "
        r"you mean 'rewards' -> 'reward', 'sucess' -> 'success'\?\).*step_keys",
    ):
        m.record_step(rewards=np.ones(2), sucess=np.ones(2, bool), action=np.ones(2))
    assert m.tracker.step.tolist() == [0, 0]  # refused before the step counted
    m.record_step(reward=np.ones(2), success=np.ones(2, bool), action=np.ones(2))
    m.reset(None, None)
    m.close()
    ep = vr.open_dataset(tmp_path).episodes("r").to_pandas()
    assert ep["return"].tolist() == [1.0, 1.0] and ep["success"].tolist() == [True, True]


class _ReadsAnyName(RecorderTerm):
    def record_step(self, data) -> None:
        self.seen = sorted(data)


def test_a_term_of_yours_may_read_any_record_step_name() -> None:
    m = RecorderManager(2, terms={"mine": RecorderTermCfg(term=_ReadsAnyName)})
    m.reset(None, None)
    m.record_step(reward=np.ones(2), contact_force=np.ones(2))
    assert m.terms["mine"].seen == ["contact_force", "reward"]
    m.close()


_BAD_ARGUMENTS = [
    (
        lambda o: RecorderManager(2, output=o, seed=1.5),
        TypeError,
        r"`seed` must be an int, got 1\.5",
    ),
    (lambda o: RecorderManager(2, output=o, seed="7"), TypeError, r"'7' \(str\); e\.g\. seed=0"),
    (lambda o: RecorderManager(2, output=o, max_rows=2.7), ValueError, r"must be a positive int"),
    (lambda o: RecorderManager(2, output=o, max_rows=0), ValueError, r"e\.g\. max_rows=262_144"),
    (lambda o: NullRecorderManager(2, seed=True), TypeError, r"`seed` must be an int, got True"),
    (
        lambda o: vr.make_recorder_manager(2, flush_second=1),
        TypeError,
        r"argument\(s\) \['flush_second'\] \(did you mean \['flush_seconds'\]",
    ),
    (
        lambda o: vr.VariationCfg(sampler=vr.UniformCfg(), interval_steps=5),
        ValueError,
        r"interval_steps must be \(low, high\).*got 5; e\.g\. interval_steps=\(50, 50\)",
    ),
    (
        lambda o: RecorderManager(2, output=o, variations=3),
        TypeError,
        r"variations must be an iterable of Variation, got int 3; e\.g\. VariationSet",
    ),
    (
        lambda o: RecorderManager(2, output=o, metadata=[1, 2]),
        TypeError,
        r"`metadata` must be a mapping .* got list \[1, 2\]; e\.g\. metadata=",
    ),
    (
        lambda o: vr.UniformCfg(low=1j, high=2),
        ValueError,
        r"UniformCfg\.low must be a real number or a sequence of real numbers, got 1j",
    ),
    (lambda o: vr.open_dataset(None), TypeError, r"a dataset path must be a str or a path"),
]


@pytest.mark.parametrize(("make", "error", "match"), _BAD_ARGUMENTS)
def test_bad_manager_arguments_are_refused_before_the_run_exists(tmp_path, make, error, match):
    with pytest.raises(error, match=match):
        make(tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_numpy_integers_are_taken_where_ints_go() -> None:
    cfg = vr.VariationCfg(sampler=vr.UniformCfg(), interval_steps=(np.int64(5), np.int32(9)))
    assert cfg.interval_steps == (5, 9) and type(cfg.interval_steps[0]) is int
    assert NullRecorderManager(2, seed=np.int64(3)).seed == 3


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
        ({"max_rows": 0}, ValueError, "`max_rows` must be a positive int"),
        ({"metadata": {"x": object()}}, TypeError, "JSON"),
        ({"metadata": {"x": float("nan")}}, TypeError, r"finite floats.*None for a NaN"),
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


@pytest.mark.parametrize("under", [False, True], ids=["a-file", "under-a-file"])
def test_an_output_that_is_a_file_is_named(tmp_path, under) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    output = tmp_path / "notes.txt" / ("runs" if under else "")
    mass = _mass()
    with pytest.raises(vr.DatasetError, match=r"is, or lies under, a file, not a directory"):
        RecorderManager(2, variations=[mass], output=output)  # was a bare FileExistsError
    assert (tmp_path / "notes.txt").read_text() == "mine" and mass.sampler.listeners == ()


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
