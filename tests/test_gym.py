"""Gymnasium integration on real envs (CartPole-v1, Pendulum-v1): attribution end to end.

A probe wrapper *inside* the recording wrapper reports, at every step and reset, the
physical attributes the env really had (``info["probe"]``). The test follows each
env's episodes from what the vector env returns (flags, the ignored autoreset step of
NEXT_STEP, ``final_info`` of SAME_STEP, the caller's masked resets of DISABLED) and
checks that every recorded episode, read back through ``episode_table``, has exactly
the values, return, length and flags the env had: no phantom and no missing episode.
"""

from __future__ import annotations

import copy
import importlib
import json
import subprocess
import sys
from collections import defaultdict

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import varirec as vr
from varirec.analysis.designs import sobol_design
from varirec.analysis.tables.episode_table import episode_table
from varirec.integrations.builder import EnvBuilder
from varirec.integrations.gym import (
    ReplayWrapper,
    VariationWrapper,
    cartpole_variations,
    make_env,
    pendulum_variations,
    reset_seed,
    reset_to_episode,
)
from varirec.integrations.gym_vector import make_vector_env
from varirec.studies.design import DesignSchedule
from varirec.studies.replay import replay_episode

CARTPOLE = ("gravity", "masscart", "masspole", "pole_length", "force_mag")  # variation keys
CARTPOLE_ATTRS = ("gravity", "masscart", "masspole", "length", "force_mag")  # what they set
DERIVED = ("total_mass", "polemass_length")
PENDULUM = ("g", "m", "l")


class Probe(gym.Wrapper):
    """Reports the attributes the env has at every step and reset in ``info["probe"]``."""

    def __init__(self, env: gym.Env, names: tuple[str, ...]) -> None:
        super().__init__(env)
        self.names = names
        self.steps = 0

    def _probe(self, info: dict) -> dict:
        u = self.env.unwrapped
        return {**info, "probe": np.array([float(getattr(u, n)) for n in self.names])}

    def reset(self, **kwargs):
        self.steps = 0
        obs, info = self.env.reset(**kwargs)
        return obs, self._probe(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        info = self._probe(info)
        info["is_success"] = self.steps % 3 == 0
        return obs, reward, terminated, truncated, info


def cartpole_probe(values=None) -> gym.Env:
    return Probe(gym.make("CartPole-v1", max_episode_steps=40), CARTPOLE_ATTRS + DERIVED)


def pendulum_probe(values=None) -> gym.Env:
    return Probe(gym.make("Pendulum-v1", max_episode_steps=25), PENDULUM)


class Truth:
    """Per (env, episode): the probe rows of its steps, return, length, flags."""

    def __init__(self) -> None:
        self.probes: dict[tuple[int, int], list[np.ndarray]] = defaultdict(list)
        self.ret: dict[tuple[int, int], float] = defaultdict(float)
        self.flags: dict[tuple[int, int], tuple[bool, bool, bool]] = {}
        self.seeds: dict[tuple[int, int], int] = {}
        self.reset_probes: dict[tuple[int, int], np.ndarray] = {}

    def reset(self, env_ids: np.ndarray, episode: np.ndarray, probe: np.ndarray) -> None:
        """What the envs had right after their reset (the reset info)."""
        for i in env_ids:
            self.reset_probes[(i, episode[i])] = probe[i]

    def step(self, key, probe, reward, terminated, truncated, success) -> None:
        self.probes[key].append(probe)
        self.ret[key] += float(reward)
        self.flags[key] = (bool(terminated), bool(truncated), bool(success))


def check_run(root, truth: Truth, finished: set[tuple[int, int]], names: tuple[str, ...]) -> None:
    """Every finished episode is recorded once, with the values the env really had."""
    table = episode_table(root, drop_constant=False).frame.set_index(["env_id", "episode"])
    assert set(table.index) == finished, "phantom or missing episodes"
    assert table.index.is_unique
    for key in sorted(finished):
        row = table.loc[key]
        probes = np.array(truth.probes[key])
        assert (probes == probes[0]).all(), f"the env's values changed within episode {key}"
        if key in truth.reset_probes:  # applied before the inner reset
            np.testing.assert_array_equal(truth.reset_probes[key], probes[0])
        np.testing.assert_array_equal(row[list(names)].to_numpy(float), probes[0, : len(names)])
        assert row["length"] == len(probes)
        assert row["return"] == pytest.approx(truth.ret[key], abs=0, rel=1e-12)
        terminated, truncated, success = truth.flags[key]
        assert (row["terminated"], row["truncated"], row["success"]) == (
            terminated,
            truncated,
            success,
        )
        if key in truth.seeds:
            assert row["seed"] == truth.seeds[key]
    if names == CARTPOLE:  # the derived attributes follow the drawn ones
        probes = np.concatenate([np.array(p) for p in truth.probes.values()])
        np.testing.assert_array_equal(probes[:, 5], probes[:, 2] + probes[:, 1])
        np.testing.assert_array_equal(probes[:, 6], probes[:, 2] * probes[:, 3])


def test_single_env_cartpole_records_what_the_env_had(tmp_path) -> None:
    env = VariationWrapper(
        cartpole_probe(), cartpole_variations(), output=tmp_path, run_id="r", seed=3
    )
    truth, finished, episode = Truth(), set(), 0
    rng = np.random.default_rng(0)
    env.reset(seed=42)
    truth.seeds[(0, 0)] = 42
    for _ in range(300):
        _, reward, terminated, truncated, info = env.step(int(rng.integers(2)))
        truth.step((0, episode), info["probe"], reward, terminated, truncated, info["is_success"])
        if terminated or truncated:
            finished.add((0, episode))
            episode += 1
            truth.seeds[(0, episode)] = reset_seed(3, 0, episode)
            env.reset()
    env.close()
    assert len(finished) >= 8
    check_run(tmp_path, truth, finished, CARTPOLE)
    run = vr.open_dataset(tmp_path).run("r")
    assert run.status == "complete" and run.counts["episodes"] == len(finished)


@pytest.mark.parametrize("seed", ["x", 1.5, -5, True])
def test_a_bad_reset_seed_is_refused_before_the_episode_ends(tmp_path, seed) -> None:
    env = VariationWrapper(gym.make("CartPole-v1"), cartpole_variations(), output=tmp_path,
                           run_id="r", seed=3)  # fmt: skip
    env.reset(seed=1)
    env.step(0)
    with pytest.raises(ValueError, match=r"`seed` must be None or an int >= 0 .*reset\(seed=0\)"):
        env.reset(seed=seed)
    env.step(0)  # the episode runs on: nothing ended, nothing burned
    env.reset()
    env.close()
    episodes = vr.open_dataset(tmp_path).episodes("r").to_pandas()
    assert episodes[["episode", "length", "seed"]].values.tolist() == [[0, 2, 1]]


def test_single_env_pendulum_with_success_fn(tmp_path) -> None:
    base = Probe(gym.make("Pendulum-v1", max_episode_steps=30), PENDULUM)
    env = VariationWrapper(
        base,
        pendulum_variations(),
        output=tmp_path,
        run_id="r",
        success_fn=lambda obs, r, te, tr, info: bool(obs[0] > 0),
    )
    truth, finished, episode = Truth(), set(), 0
    env.reset(seed=1)
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(np.array([0.5], dtype=np.float32))
        truth.step((0, episode), info["probe"], reward, terminated, truncated, obs[0] > 0)
        if terminated or truncated:
            finished.add((0, episode))
            episode += 1
            env.reset()
    env.close()  # the fourth episode is still running: not recorded
    assert len(finished) == 3
    check_run(tmp_path, truth, finished, PENDULUM)


def run_vector(
    tmp_path,
    vectorization_mode: str,
    mode: AutoresetMode,
    steps: int = 150,
    env: str = "cartpole",
) -> tuple[Truth, set]:
    """Run 3 envs with random actions, following each env's episodes from outside."""
    n = 3
    if env == "cartpole":
        variations, make, names = cartpole_variations(), cartpole_probe, CARTPOLE
    else:
        variations, make, names = pendulum_variations(), pendulum_probe, PENDULUM
    builder = EnvBuilder(variations, output=tmp_path, num_envs=n, run_id="r", seed=7)
    envs = make_vector_env(
        make, builder, vectorization_mode=vectorization_mode, autoreset_mode=mode
    )
    truth, finished = Truth(), set()
    episode = np.zeros(n, dtype=int)
    pending = np.zeros(n, dtype=bool)  # NEXT_STEP: the next step only resets these
    envs.action_space.seed(1)
    _, info = envs.reset(seed=100)
    truth.seeds.update({(i, 0): 100 + i for i in range(n)})
    truth.reset(np.arange(n), episode, info["probe"])
    for _ in range(steps):
        _, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
        done = terminated | truncated
        probe, success = info["probe"], info.get("is_success", np.zeros(n, dtype=bool))
        if mode == AutoresetMode.SAME_STEP and done.any():
            final = info["final_info"]
            probe = np.where(done[:, None], final["probe"], probe)
            success = np.where(done, final["is_success"], success)
        real = ~pending if mode == AutoresetMode.NEXT_STEP else np.ones(n, dtype=bool)
        assert not (done & ~real).any() and (reward[~real] == 0).all()
        truth.reset(np.flatnonzero(~real), episode, info["probe"])  # NEXT_STEP's reset step
        for i in np.flatnonzero(real):
            key = (i, episode[i])
            truth.step(key, probe[i], reward[i], terminated[i], truncated[i], success[i])
            if done[i]:
                finished.add(key)
                episode[i] += 1
                truth.seeds[(i, episode[i])] = reset_seed(7, i, episode[i])
        if mode == AutoresetMode.SAME_STEP:
            truth.reset(np.flatnonzero(done), episode, info["probe"])
        if mode == AutoresetMode.NEXT_STEP:
            pending = done
        if mode == AutoresetMode.DISABLED and done.any():
            _, reset_info = envs.reset(options={"reset_mask": done})
            truth.reset(np.flatnonzero(done), episode, reset_info["probe"])
    envs.close()
    check_run(tmp_path, truth, finished, names)
    return truth, finished


def check_vector_run(tmp_path, truth: Truth, finished: set) -> None:
    assert len(finished) >= 3 * 3
    doc = json.loads((tmp_path / "run_id=r" / "run.json").read_text())
    assert doc["status"] == "complete"
    assert doc["counts"]["episodes"] == len(finished)  # the parent summed every writer
    assert doc["counts"]["episodes"] == len(finished)  # summed over every worker
    assert len(doc["writers"]) == 4 and not doc["writers_still_running"]


@pytest.mark.parametrize("mode", list(AutoresetMode), ids=lambda m: m.name)
def test_sync_vector_env_every_autoreset_mode(tmp_path, mode) -> None:
    truth, finished = run_vector(tmp_path, "sync", mode)
    check_vector_run(tmp_path, truth, finished)


def test_sync_vector_pendulum_returns(tmp_path) -> None:
    truth, finished = run_vector(tmp_path, "sync", AutoresetMode.SAME_STEP, env="pendulum")
    check_vector_run(tmp_path, truth, finished)
    assert len({round(r, 6) for r in truth.ret.values()}) == len(truth.ret)  # real returns


def test_a_vector_env_s_writers_close_parts_within_the_flush_window(tmp_path) -> None:
    """Each sub-env joins the run with a RunWriter of its own: its parts close at half
    the builder's ``flush_seconds`` (they kept the writer's 60 s, and the sub-envs'
    managers the default 5 s window: a SIGKILL lost a minute of episodes, none were
    readable after 12 s)."""
    builder = EnvBuilder(cartpole_variations(), output=tmp_path, num_envs=2, run_id="v",
                         flush_seconds=3.0)  # fmt: skip
    envs = make_vector_env("CartPole-v1", builder)
    envs.reset(seed=0)
    envs.step(np.zeros(2, dtype=int))
    subs = [e.unwrapped.varirec for e in envs.unwrapped.envs]
    windows = {m.writer._sink._options["max_seconds_per_part"] for m in subs}
    envs.close()
    assert windows == {1.5}


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(AutoresetMode), ids=lambda m: m.name)
def test_async_vector_env_every_autoreset_mode(tmp_path, mode) -> None:
    truth, finished = run_vector(tmp_path, "async", mode)
    check_vector_run(tmp_path, truth, finished)


@pytest.mark.slow
def test_sync_and_async_draw_the_same_values(tmp_path) -> None:
    run_vector(tmp_path / "sync", "sync", AutoresetMode.NEXT_STEP, steps=60)
    run_vector(tmp_path / "async", "async", AutoresetMode.NEXT_STEP, steps=60)
    s, a = (
        vr.open_dataset(tmp_path / d)
        .draws()
        .to_pandas()
        .set_index(["variation", "env_id", "episode"])
        for d in ("sync", "async")
    )
    assert s.index.equals(a.index) and len(s) >= 3 * 5
    np.testing.assert_array_equal(s["value"].to_numpy(), a["value"].to_numpy())


def test_build_variation_applies_to_every_sub_env(tmp_path) -> None:
    variations = cartpole_variations()
    variations["pole_length"].apply_cfg(
        vr.VariationCfg(sampler=vr.UniformCfg(low=0.3, high=0.9), mode="build")
    )
    builder = EnvBuilder(variations, output=tmp_path, num_envs=2, run_id="r")
    envs = make_vector_env(cartpole_probe, builder, autoreset_mode=AutoresetMode.SAME_STEP)
    _, info = envs.reset(seed=0)
    built = float(builder.build_values["pole_length"][0])
    for _ in range(60):
        *_, info = envs.step(np.zeros(2, dtype=np.int64))
        assert (info["probe"][:, 3] == built).all()
    envs.close()
    frame = episode_table(tmp_path, drop_constant=False).frame
    assert len(frame) >= 2 and (frame["pole_length"] == built).all()
    build = vr.open_dataset(tmp_path).draws(filter=[("phase", "=", "build")]).to_pandas()
    assert build[["variation", "env_id", "episode"]].values.tolist() == [["pole_length", -1, -1]]


def balance(obs: np.ndarray) -> int:
    """A deterministic CartPole controller that fails after tens of steps (or survives)."""
    return int(obs[2] > 0)


def swing(obs: np.ndarray) -> np.ndarray:
    """A deterministic Pendulum controller."""
    return np.clip(np.array([-2.0 * obs[1] - 0.5 * obs[2]], dtype=np.float32), -2, 2)


def test_replay_reproduces_return_and_length(tmp_path) -> None:
    variations = pendulum_variations()
    variations.override("g.mode=interval", "g.interval_steps=[5, 15]")
    env = VariationWrapper(
        gym.make("Pendulum-v1", max_episode_steps=40), variations, output=tmp_path, run_id="r"
    )
    obs, _ = env.reset()
    for _ in range(3):
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(swing(obs))
            done = terminated or truncated
        obs, _ = env.reset()
    env.close()
    for episode in (0, 1, 2):
        replay = replay_episode(tmp_path, "r", env_id=0, episode=episode)
        assert set(replay.values) >= {"m", "l"} and replay.interval
        assert replay.seed == reset_seed(0, 0, episode)
        fresh = ReplayWrapper(gym.make("Pendulum-v1", max_episode_steps=40), replay, variations)
        obs, _ = fresh.reset()
        total, length, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = fresh.step(swing(obs))
            total, length, done = total + float(reward), length + 1, terminated or truncated
        fresh.close()
        assert (length, total) == (replay.outcome["length"], replay.outcome["return"])
    with pytest.raises(vr.UnknownNameError, match="no finished episode 99 of env 0"):
        replay_episode(tmp_path, "r", env_id=0, episode=99)


def test_replay_cartpole_vector_episode(tmp_path) -> None:
    builder = EnvBuilder(cartpole_variations(), output=tmp_path, num_envs=2, run_id="r", seed=5)
    envs = make_vector_env(
        lambda values: gym.make("CartPole-v1", max_episode_steps=100),
        builder,
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    obs, _ = envs.reset()
    for _ in range(300):
        obs, *_ = envs.step(np.array([balance(o) for o in obs]))
    envs.close()
    episodes = vr.open_dataset(tmp_path).episodes().to_pylist()
    assert len(episodes) >= 4
    for row in episodes:
        replay = replay_episode(tmp_path, "r", row["env_id"], row["episode"])
        env = gym.make("CartPole-v1", max_episode_steps=100)
        obs, _ = reset_to_episode(env, replay, cartpole_variations())
        total, length, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(balance(obs))
            total, length, done = total + float(reward), length + 1, terminated or truncated
        env.close()
        assert (length, total) == (row["length"], row["return"])


def test_attach_after_draw_is_refused(tmp_path) -> None:
    variations = cartpole_variations()
    variations["gravity"].draw(env_ids=[0])
    with pytest.raises(vr.RecorderStateError, match=r"'gravity' .*already drew"):
        VariationWrapper(gym.make("CartPole-v1"), variations, output=tmp_path)
    with pytest.raises(vr.RecorderStateError, match=r"'gravity' .*already drew"):
        make_env("CartPole-v1", EnvBuilder(variations, output=tmp_path))
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_spec_and_cfg_copies_do_not_orphan_the_recorder(tmp_path) -> None:
    builder = EnvBuilder(cartpole_variations(), output=tmp_path, run_id="r")
    env = make_env(lambda values: gym.make("CartPole-v1", max_episode_steps=5), builder)
    spec = copy.deepcopy(env.spec)  # Gymnasium deep-copies specs and recorded wrapper args
    assert spec.additional_wrappers[-1].kwargs is None
    gravity = builder.variations["gravity"]
    gravity.apply_cfg(copy.deepcopy(gravity.cfg))
    env.reset(seed=0)
    for _ in range(5):
        env.step(0)
    env.close()
    draws = vr.open_dataset(tmp_path).draws().to_pandas()
    assert (draws["variation"] == "gravity").sum() == 1


def test_make_env_exposes_manager_and_applies_overrides(tmp_path) -> None:
    builder = EnvBuilder(
        pendulum_variations(), overrides=["m.sampler.low=1.4"], output=tmp_path, run_id="r"
    )
    env = make_env("Pendulum-v1", builder)
    assert env.unwrapped.varirec is builder.manager is env.manager
    env.reset(seed=0)
    assert env.unwrapped.m >= 1.4
    env.close()
    assert builder.manager.writer.closed


def test_replay_needs_the_recorded_values(tmp_path) -> None:
    """A negative control: without the recorded physics, some episode differs."""
    env = VariationWrapper(
        gym.make("CartPole-v1", max_episode_steps=100), cartpole_variations(), output=tmp_path,
        run_id="r",
    )  # fmt: skip
    lengths = []
    for _ in range(4):
        obs, _ = env.reset()
        done, n = False, 0
        while not done:
            obs, _, terminated, truncated, _ = env.step(balance(obs))
            done, n = terminated or truncated, n + 1
        lengths.append(n)
    env.close()
    plain = []
    for episode in range(4):
        replay = replay_episode(tmp_path, "r", 0, episode)
        bare = gym.make("CartPole-v1", max_episode_steps=100)
        obs, _ = bare.reset(seed=replay.seed)  # the seed only, default physics
        done, n = False, 0
        while not done:
            obs, _, terminated, truncated, _ = bare.step(balance(obs))
            done, n = terminated or truncated, n + 1
        plain.append(n)
    assert plain != lengths


class FailingReset(gym.Wrapper):
    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.fail = True

    def reset(self, **kwargs):
        if self.fail:
            self.fail = False
            raise RuntimeError("simulator hiccup")
        return self.env.reset(**kwargs)


def test_retried_and_mid_episode_resets(tmp_path) -> None:
    env = VariationWrapper(
        FailingReset(gym.make("CartPole-v1")), cartpole_variations(), output=tmp_path, run_id="r"
    )
    with pytest.raises(RuntimeError, match="hiccup"):
        env.reset(seed=0)
    env.reset(seed=0)  # the retry reserves a new index: episode 0 is never reused
    for _ in range(3):
        env.step(0)
    env.reset()  # abandoned mid-episode: recorded, neither terminated nor truncated
    env.step(0)
    env.close()  # episode 2 is still running: not recorded
    ep = vr.open_dataset(tmp_path).episodes().to_pandas()
    assert ep[["episode", "length", "terminated", "truncated"]].values.tolist() == [
        [1, 3, False, False]
    ]
    draws = vr.open_dataset(tmp_path).draws().to_pandas()
    assert sorted(set(draws["episode"])) == [0, 1, 2]


def test_wrapper_argument_errors(tmp_path) -> None:
    manager = vr.RecorderManager(1, variations=cartpole_variations(), output=tmp_path)
    with pytest.raises(TypeError, match="either `variations`"):
        VariationWrapper(gym.make("CartPole-v1"), cartpole_variations(), manager=manager)
    with pytest.raises(ValueError, match="no slot for env_id=3; make it with num_envs >= 4"):
        VariationWrapper(gym.make("CartPole-v1"), manager=manager, env_id=3)
    with pytest.raises(ValueError, match="`env_id` must be an int >= 0, got -1"):
        VariationWrapper(gym.make("CartPole-v1"), cartpole_variations(), env_id=-1)
    manager.close()
    builder = EnvBuilder(cartpole_variations(), output=tmp_path, num_envs=2)
    with pytest.raises(ValueError, match="`autoreset_mode` must be one of"):
        make_vector_env("CartPole-v1", builder, autoreset_mode="sometimes")
    with pytest.raises(ValueError, match="make_env builds one env, but the builder has num_envs=2"):
        make_env("CartPole-v1", builder)


def test_a_second_open_wrapper_on_one_manager_is_refused_and_a_closed_one_frees_it(tmp_path):
    """One manager serves one open wrapper: two sharing it would count each other's steps
    (episode lengths 5-6 recorded for episodes of 3) and fire each other's timers."""
    manager = vr.RecorderManager(2, variations=cartpole_variations(), output=tmp_path)
    first = VariationWrapper(gym.make("CartPole-v1"), manager=manager)

    def episode(env: VariationWrapper, seed: int) -> int:
        env.reset(seed=seed)
        steps, done = 0, False
        while not done:  # pushing left: CartPole falls within a dozen steps
            _, _, terminated, truncated, _ = env.step(0)
            steps, done = steps + 1, terminated or truncated
        return steps

    lengths = [episode(first, 0)]
    first.reset(seed=1)
    with pytest.raises(ValueError, match="already records the open VariationWrapper of env_id=0"):
        VariationWrapper(gym.make("CartPole-v1"), manager=manager, env_id=1)
    assert manager.tracker.started.tolist() == [True, False]  # nothing of env 1 began
    first.close()  # the manager stays open (not the wrapper's): a new wrapper may take it
    second = VariationWrapper(gym.make("CartPole-v1"), manager=manager, env_id=1)
    lengths.append(episode(second, 2))
    second.close()
    manager.close()
    episodes = vr.open_dataset(tmp_path).episodes().to_pandas().sort_values("env_id")
    assert episodes["env_id"].tolist() == [0, 1]
    assert episodes["length"].tolist() == lengths


def test_import_error_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    monkeypatch.delitem(sys.modules, "varirec.integrations.gym")
    with pytest.raises(ImportError, match=r'pip install "varirec\[gym\]"'):
        importlib.import_module("varirec.integrations.gym")


def test_import_varirec_does_not_import_gymnasium() -> None:
    code = "import sys, varirec; assert 'gymnasium' not in sys.modules, 'gymnasium imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_gym_integration_and_replay_import_no_pandas_torch_or_matplotlib() -> None:
    """DESIGN: the core never imports pandas at import time (``pyarrow.dataset`` does:
    replay had imported it at the top)."""
    modules = "varirec.integrations.gym, varirec.integrations.gym_vector, varirec.studies.replay"
    heavy = "[m for m in ('pandas', 'torch', 'matplotlib', 'SALib') if m in sys.modules]"
    code = f"import sys, {modules}; print({heavy})"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_design_schedule_drives_a_gym_env(tmp_path) -> None:
    """A Sobol design on Pendulum: each episode runs its design row with its seed."""
    variations = pendulum_variations()
    design = sobol_design(variations, 4, seed=1)
    schedule = DesignSchedule(design, replicates=1, seed=7)
    builder = EnvBuilder(variations, output=tmp_path, run_id="r", schedule=schedule)
    env = make_env(lambda values: pendulum_probe(values), builder)
    design.bind(variations)  # after the recorder attached: listeners move along
    had = []
    env.reset(seed=123)  # the schedule's seed wins over the caller's
    for _ in range(design.num_rows):
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(np.zeros(1, dtype=np.float32))
            done = terminated or truncated
        had.append(info["probe"])
        if not schedule.exhausted:
            env.reset()
    env.close()
    frame = episode_table(tmp_path, drop_constant=False).frame.sort_values("episode")
    rows = frame["sample_id"].to_numpy(int)
    assert sorted(rows) == list(range(design.num_rows))
    for j, key in enumerate(PENDULUM):
        np.testing.assert_array_equal(frame[key], design.values(key)[rows])
        np.testing.assert_array_equal(np.array(had)[:, j], design.values(key)[rows])
    expected = schedule.episode_seeds(rows, np.zeros_like(rows))
    np.testing.assert_array_equal(frame["seed"], expected)
    assert frame.groupby(design.noise_of(rows))["seed"].nunique().eq(1).all()  # per base row
    assert frame.groupby(rows // design.group_size)["seed"].nunique().eq(2).all()


class _VectorReward(gym.Env):
    """One env whose step returns a reward of two numbers (a bug of the env's)."""

    observation_space = gym.spaces.Box(-1, 1, (1,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.mass = 1.0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), np.ones(2), False, False, {"is_success": "maybe"}


def test_a_reward_that_is_not_one_number_is_named(tmp_path) -> None:
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)),
                        apply=lambda env, ids, x: setattr(env, "mass", float(x[0])))  # fmt: skip
    env = VariationWrapper(_VectorReward(), [mass], output=tmp_path, run_id="g")
    env.reset(seed=0)
    with pytest.raises(
        ValueError, match=r"gave a reward that is not one number: ndarray of shape \(2,\)"
    ):
        env.step(0)
    env.unwrapped.step = lambda action: (
        np.zeros(1, np.float32),
        1.0,
        False,
        False,
        {"is_success": "maybe"},
    )
    with pytest.raises(ValueError, match=r"gave a success that is not one number: str"):
        env.step(0)
    env.close()


@pytest.mark.parametrize("closed_by", ["finally", "with"])
def test_a_wrapped_env_closed_the_gymnasium_way_records_the_error_that_stopped_it(
    tmp_path, closed_by: str
) -> None:
    """`finally: env.close()` and `with env:` record a Ctrl-C or an exception in
    run.json, as the manager's own `with` block does (not a complete run)."""
    env = VariationWrapper(
        gym.make("CartPole-v1"), cartpole_variations(), output=tmp_path, run_id="r", seed=0
    )

    def run() -> None:
        env.reset(seed=0)
        env.step(0)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        if closed_by == "with":
            with env:
                run()
        else:
            try:
                run()
            finally:
                env.close()
    doc = json.loads((tmp_path / "run_id=r" / "run.json").read_text())
    assert doc["status"] == "failed"
    assert doc["error"]["type"] == "KeyboardInterrupt"
