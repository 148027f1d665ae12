"""The batched test envs: vectorized steps, variations that act, a null control factor,
reproducible episode noise, and the study driver finishing a design.

Run as a script (``python tests/test_envs.py``) it measures the ground truth of the
reach env that its module docstring quotes (about a minute).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import varirec as vr
from varirec.analysis.designs import sobol_design
from varirec.analysis.estimators.sobol import sobol_indices
from varirec.envs import (
    OneStepEnv,
    ReachEnv,
    StepOutput,
    drive_episodes,
    ishigami,
    ishigami_variations,
    make_ishigami_env,
    make_reach_env,
    make_reach_variations,
    make_sobol_g_env,
    sobol_g,
    sobol_g_variations,
)
from varirec.recording.manager import NullRecorderManager
from varirec.studies.design import DesignSchedule

REACH_FACTORS = [
    "payload.mass",
    "joint.friction",
    "controller.gain",
    "actuator.delay",
    "scene",
    "target.offset[x]",
    "target.offset[y]",
    "target.offset[z]",
    "object.color",
]


def _set_params(env: ReachEnv, **params: object) -> None:
    for name, value in params.items():
        getattr(env, name)[...] = value


def _rollout(env: ReachEnv, seeds: np.ndarray) -> dict[str, np.ndarray]:
    """Run every env of ``env`` once from ``seeds``; the trajectory and the outcomes."""
    env.reset_idx(np.arange(env.num_envs), seeds)
    traj, ret = [], np.zeros(env.num_envs)
    success = np.zeros(env.num_envs)
    length = np.zeros(env.num_envs, dtype=np.int64)
    while not env.done.all():
        out = env.step()
        traj.append(env.pos.copy())
        ret += out.reward
        ended = out.terminated | out.truncated
        success[ended] = out.success[ended]
        length[ended] = env.steps[ended]
    return {"traj": np.stack(traj, axis=1), "return": ret, "success": success, "length": length}


class _Outcomes:
    """Wraps an env: sums each row's return and success over its finished episodes.

    Other attributes pass through to the env (the variations' ``apply`` sets them).
    """

    _OWN = ("env", "manager", "ret", "success", "count", "_running")

    def __init__(self, env: ReachEnv | OneStepEnv, manager: NullRecorderManager) -> None:
        self.env, self.manager = env, manager
        rows = manager.schedule.design.num_rows if manager.schedule is not None else 1
        self.ret, self.success, self.count = np.zeros(rows), np.zeros(rows), np.zeros(rows)
        self._running = np.zeros(env.num_envs)

    def __getattr__(self, name: str) -> object:
        return getattr(self.env, name)

    def __setattr__(self, name: str, value: object) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.env, name, value)

    def reset_idx(self, env_ids: np.ndarray, seeds: np.ndarray) -> None:
        self.env.reset_idx(env_ids, seeds)

    def step(self) -> StepOutput:
        out = self.env.step()
        t = self.manager.tracker
        self._running += np.where(t.started, out.reward, 0.0)
        ended = np.flatnonzero((out.terminated | out.truncated) & t.started)
        rows = t.sample_id[ended]
        np.add.at(self.ret, rows, self._running[ended])
        np.add.at(self.success, rows, out.success[ended])
        np.add.at(self.count, rows, 1)
        self._running[ended] = 0.0
        return out


def reach_sobol_study(
    base_size: int, replicates: int, *, gust: bool = True, num_envs: int = 4096, seed: int = 0
) -> dict[str, object]:
    """A Saltelli study of the reach env's reset-mode variations (no recorder; gravity
    stays at its nominal 9.81: no build draw).

    Returns the design, the run's stats, and the Sobol results of each row's success
    rate and mean return.
    """
    env = make_reach_env(num_envs)
    variations = make_reach_variations()
    if not gust:
        variations["wind.gust"].disable()
    design = sobol_design(
        [v for v in variations.values() if v.mode == "reset"], base_size, seed=seed
    )
    design.bind(variations)
    schedule = DesignSchedule(design, replicates=replicates, seed=seed)
    manager = NullRecorderManager(num_envs, variations=variations, seed=seed, schedule=schedule)
    wrapped = _Outcomes(env, manager)
    stats = drive_episodes(wrapped, manager, build=False)
    assert stats.complete and np.all(wrapped.count == replicates)
    out: dict[str, object] = {"design": design, "stats": stats}
    for name, y in (("success", wrapped.success), ("return", wrapped.ret)):
        out[name] = sobol_indices(
            y / replicates,
            design.num_factors,
            second_order=False,
            factor_names=design.factor_names,
            num_resamples=500,
            seed=seed,
            outcome=name,
        )
    return out


# --------------------------------------------------------------------------------------
# The reach env
# --------------------------------------------------------------------------------------


def test_step_is_vectorized_and_shaped() -> None:
    env = make_reach_env(1000)
    env.reset_idx(np.arange(1000), np.arange(1000))
    out = env.step()
    for arr in (out.reward, out.terminated, out.truncated, out.success):
        assert arr.shape == (1000,)
    assert env.pos.shape == (1000, 3) and np.isfinite(env.pos).all()


def test_episodes_end_by_success_or_truncation() -> None:
    env = make_reach_env(64)
    res = _rollout(env, np.arange(64))
    assert res["length"].max() <= env.cfg.max_steps
    assert set(np.unique(res["success"])) <= {0.0, 1.0}
    assert res["success"].mean() > 0.5  # the default parameters are easy
    # a finished env holds still until it is reset
    pos = env.pos.copy()
    out = env.step()
    np.testing.assert_array_equal(env.pos, pos)
    assert not (out.terminated | out.truncated).any() and not out.reward.any()


def test_heavier_payload_sags_and_changes_the_trajectory() -> None:
    light, heavy = make_reach_env(8), make_reach_env(8)
    _set_params(light, mass=1.0, gain=60.0)
    _set_params(heavy, mass=2.0, gain=60.0)
    a, b = _rollout(light, np.arange(8)), _rollout(heavy, np.arange(8))
    steps = min(a["traj"].shape[1], b["traj"].shape[1])
    assert not np.allclose(a["traj"][:, :steps], b["traj"][:, :steps])
    # 1 kg over the compensated weight sags by about g / kp = 16 cm: never a success.
    assert a["success"].all() and not b["success"].any()
    assert b["traj"][:, -1, 2].mean() < 0.2 - 0.1


@pytest.mark.parametrize(
    ("bad", "good"),
    [
        ({"gain": 300.0, "delay": 3}, {"gain": 300.0, "delay": 0}),  # a delayed stiff loop rings
        ({"gain": 60.0, "friction": 20.0, "friction_scale": 4.0}, {"gain": 60.0}),  # too slow
    ],
)
def test_delay_and_friction_cause_failures(bad: dict, good: dict) -> None:
    env_bad, env_good = make_reach_env(32), make_reach_env(32)
    _set_params(env_bad, **bad)
    _set_params(env_good, **good)
    assert _rollout(env_bad, np.arange(32))["success"].mean() < 0.2
    assert _rollout(env_good, np.arange(32))["success"].mean() > 0.8


def test_control_factor_changes_no_outcome() -> None:
    """Identical draws, seeds and envs except object.color: identical outcomes, bitwise."""
    results = []
    for color_low in (0.0, 0.9):
        variations = make_reach_variations()
        color = variations["object.color"]
        color.apply_cfg(vr.VariationCfg(sampler=vr.UniformCfg(low=color_low, high=color_low + 0.1)))
        env = make_reach_env(256)
        manager = NullRecorderManager(256, variations=variations, seed=7)
        wrapped = _Outcomes(env, manager)
        drive_episodes(wrapped, manager, num_episodes=1024)
        results.append((env.color.copy(), wrapped.ret.copy(), wrapped.success.copy(), env.pos))
    (c0, r0, s0, p0), (c1, r1, s1, p1) = results
    assert np.all(c0 < 0.1) and np.all(c1 > 0.9)
    np.testing.assert_array_equal(r0, r1)
    np.testing.assert_array_equal(s0, s1)
    np.testing.assert_array_equal(p0, p1)


def test_build_draw_sets_gravity_for_every_env() -> None:
    variations = make_reach_variations()
    env = make_reach_env(4)
    manager = NullRecorderManager(4, variations=variations, seed=0)
    manager.draw_build(env)
    assert 9.6 <= env.gravity <= 10.0 and isinstance(env.gravity, float)


def test_variations_need_the_env() -> None:
    manager = NullRecorderManager(2, variations=make_reach_variations())
    with pytest.raises(TypeError, match="pass the env to the manager"):
        manager.reset(None, None)


def test_interval_gust_fires_and_pushes(tmp_path) -> None:
    env = make_reach_env(64)
    manager = vr.RecorderManager(
        64, variations=make_reach_variations(), output=tmp_path, run_id="r", seed=1
    )
    seen = []
    gust = manager.variations["wind.gust"]
    gust.add_sample_listener(lambda event: seen.append(event.values.copy()))
    drive_episodes(env, manager, num_episodes=128)
    manager.close()
    assert seen and all(np.all(np.abs(v) <= 3.0) for v in seen)
    draws = vr.open_dataset(tmp_path).draws().to_pandas()
    gusts = draws[draws["variation"] == "wind.gust"]
    assert len(gusts) == sum(len(v) for v in seen)
    assert (gusts["phase"] == "interval").all() and gusts["step"].between(10, 100).all()
    # a steady gust moves the payload sideways (y) against the controller
    calm, windy = make_reach_env(4), make_reach_env(4)
    _set_params(windy, gust=3.0)
    calm.reset_idx(np.arange(4), np.arange(4))
    windy.reset_idx(np.arange(4), np.arange(4))
    windy.gust[:] = 3.0  # reset_idx calms the wind; the next interval draw sets it
    for _ in range(20):
        calm.step(), windy.step()
    assert np.all(windy.pos[:, 1] > calm.pos[:, 1])


def test_episode_noise_is_reproducible_from_the_seed() -> None:
    a = _rollout(make_reach_env(32), np.arange(32) + 100)
    b = _rollout(make_reach_env(32), np.arange(32) + 100)
    c = _rollout(make_reach_env(32), np.arange(32) + 200)
    np.testing.assert_array_equal(a["traj"], b["traj"])
    assert not np.array_equal(a["return"], c["return"])
    # One env's noise does not depend on its position in the batch.
    d = _rollout(make_reach_env(1), np.array([117]))
    np.testing.assert_array_equal(d["return"], a["return"][[17]])


def test_episode_seeds_derive_from_run_seed_when_schedule_gives_none() -> None:
    m1, m2 = NullRecorderManager(6, seed=1), NullRecorderManager(6, seed=2)
    for m in (m1, m2):
        m.reset(None, None)
    s1 = m1.episode_seeds(np.arange(6))
    assert (s1 >= 0).all() and len(set(s1.tolist())) == 6
    assert np.array_equal(m1.tracker.seed, s1)  # stored, so the episode rows carry them
    assert not np.array_equal(s1, m2.episode_seeds(np.arange(6)))
    m1.tracker.seed[2] = 42  # a schedule's seed wins
    assert m1.episode_seeds(np.arange(6))[2] == 42


# --------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------


def test_driver_finishes_a_design_schedule_with_every_row(tmp_path) -> None:
    variations = make_reach_variations()
    design = sobol_design([v for v in variations.values() if v.mode == "reset"], 16, seed=0)
    design.bind(variations)
    schedule = DesignSchedule(design, replicates=3, seed=0, shuffle=True)
    env = make_reach_env(100)  # not a divisor of the 528 episodes: some envs go idle
    manager = vr.RecorderManager(
        100, variations=variations, output=tmp_path, run_id="r", seed=0, schedule=schedule
    )
    ticks: list[int] = []
    stats = drive_episodes(env, manager, progress=ticks.append)
    manager.close()
    assert stats.complete and stats.episodes == design.num_rows * 3 == sum(ticks)
    episodes = vr.open_dataset(tmp_path).episodes().to_pandas()
    assert len(episodes) == design.num_rows * 3
    assert episodes["sample_id"].notna().all()  # idle envs recorded nothing
    schedule.check_complete(episodes["sample_id"].astype(int))
    # common random numbers: the rows built on one base row share their episode seeds
    noise = design.noise_of(episodes["sample_id"].to_numpy())
    per_noise = episodes.assign(noise=noise).groupby(["noise"])["seed"].nunique()
    assert (per_noise == 3).all() and len(per_noise) == 2 * design.base_size
    # and the recorded seed is the schedule's seed of that row and replicate
    assert episodes["seed"].notna().all()
    seeds = set(episodes["seed"].astype(int))
    expected = {
        int(s)
        for rep in range(3)
        for s in schedule.episode_seeds(np.arange(design.num_rows), np.full(design.num_rows, rep))
    }
    assert seeds == expected


def test_driver_plain_draws_run_exactly_num_episodes() -> None:
    env = make_reach_env(50)
    manager = NullRecorderManager(50, variations=make_reach_variations(), seed=0)
    stats = drive_episodes(env, manager, num_episodes=777)
    assert stats.complete and stats.episodes == 777 == manager.tracker.episodes_finished
    # every episode got a reset seed (the tracker's are cleared for the reserved next ones)
    assert len(np.unique(env.seed)) == 50
    again = drive_episodes(env, manager, num_episodes=100, build=False)
    assert again.episodes == 100


def test_driver_stops_at_max_steps(caplog) -> None:
    env = make_reach_env(10)
    manager = NullRecorderManager(10, variations=make_reach_variations(), seed=0)
    stats = drive_episodes(env, manager, num_episodes=1000, max_steps=5)
    assert stats.steps == 5 and not stats.complete and "max_steps" in caplog.text


def test_driver_errors_name_the_fix() -> None:
    env = make_reach_env(4)
    with pytest.raises(ValueError, match="num_episodes` must be given"):
        drive_episodes(env, NullRecorderManager(4), num_episodes=None)
    with pytest.raises(ValueError, match="same num_envs"):
        drive_episodes(env, NullRecorderManager(5), num_episodes=1)
    with pytest.raises(ValueError, match="`num_envs` must be a positive int"):
        make_reach_env(0)


def test_small_study_runs_every_episode() -> None:
    # (its speed is measured by `varirec demo` and the benchmarks, not asserted here)
    res = reach_sobol_study(64, 4, num_envs=1024)
    assert res["stats"].episodes == 64 * (9 + 2) * 4


def test_ground_truth_ranking() -> None:
    """The ranking the reach module docstring states, at a small N.

    Common random numbers cover all episode noise (the gust too), so the control
    factor's indices are exactly 0."""
    res = reach_sobol_study(512, 4)
    assert res["design"].factor_names == REACH_FACTORS
    st = dict(zip(REACH_FACTORS, res["success"].ST, strict=True))
    s1 = dict(zip(REACH_FACTORS, res["success"].S1, strict=True))
    assert st["object.color"] == 0.0 and s1["object.color"] == 0.0
    assert min(st["controller.gain"], st["payload.mass"]) > st["actuator.delay"] + 0.1
    assert st["actuator.delay"] > max(st["joint.friction"], st["scene"]) + 0.1
    offsets = max(st[f"target.offset[{c}]"] for c in "xyz")
    assert min(st["joint.friction"], st["scene"]) > offsets + 0.03
    assert res["return"].ST[REACH_FACTORS.index("object.color")] == 0.0


# --------------------------------------------------------------------------------------
# One-step envs
# --------------------------------------------------------------------------------------


def test_one_step_episode_reward_is_the_function() -> None:
    env = make_ishigami_env(5)
    manager = NullRecorderManager(5, variations=ishigami_variations(), seed=0)
    wrapped = _Outcomes(env, manager)
    drive_episodes(wrapped, manager, num_episodes=5)
    np.testing.assert_allclose(wrapped.ret[0], ishigami(env.x).sum())
    assert np.all(np.abs(env.x) <= np.pi)
    g = make_sobol_g_env(3, a=[0, 1, 9])
    m = NullRecorderManager(3, variations=sobol_g_variations([0, 1, 9]), seed=0)
    out = _Outcomes(g, m)
    drive_episodes(out, m, num_episodes=3)
    np.testing.assert_allclose(out.ret[0], sobol_g(g.x, [0, 1, 9]).sum())


def test_one_step_success_modes() -> None:
    env = make_ishigami_env(4, success_threshold=0.0)
    env.x[:] = [[np.pi / 2, 0, 0], [-np.pi / 2, 0, 0], [0, 0, 0], [1, 1, 1]]
    env.reset_idx(np.arange(4), np.arange(4))
    out = env.step()
    assert out.success.tolist() == [1.0, 0.0, 0.0, 1.0] and out.terminated.all()
    coin = OneStepEnv(20_000, lambda x: x[:, 0], 1, success_prob=lambda x: x[:, 0])
    coin.x[:, 0] = 0.3
    coin.reset_idx(np.arange(20_000), np.arange(20_000))
    assert abs(coin.step().success.mean() - 0.3) < 0.02
    with pytest.raises(ValueError, match="not both"):
        OneStepEnv(2, np.sum, 1, success_threshold=0.5, success_prob=np.sum)


if __name__ == "__main__":  # the ground truth quoted in varirec/envs/reach.py
    import tempfile

    import pandas as pd

    from varirec.analysis.estimators.given_data import first_order_binning
    from varirec.analysis.tables.episode_table import episode_table

    start = time.perf_counter()
    big = reach_sobol_study(2**14, 4, num_envs=8192)
    calm = reach_sobol_study(2**12, 4, gust=False, num_envs=8192)
    print(f"Sobol studies: {time.perf_counter() - start:.1f} s")
    root = tempfile.mkdtemp()
    env = make_reach_env(8192)
    with vr.RecorderManager(
        8192, variations=make_reach_variations(), output=root, run_id="gd", seed=1
    ) as manager:
        drive_episodes(env, manager, num_episodes=200_000)
    table = episode_table(root)
    y, valid = table.outcome("success")
    gd = first_order_binning(
        table.frame[REACH_FACTORS], y, seed=0, num_resamples=200, outcome="success"
    )
    print(f"success rate {y.mean():.3f}; notes: {table.notes}")
    frame = pd.DataFrame(index=REACH_FACTORS)
    for name in ("success", "return"):
        r = big[name]
        frame[f"{name} S1"] = [f"{e:.3f} ± {c:.3f}" for e, c in zip(r.S1, r.S1_conf, strict=True)]
        frame[f"{name} ST"] = [f"{e:.3f} ± {c:.3f}" for e, c in zip(r.ST, r.ST_conf, strict=True)]
    frame["given-data S1"] = [
        f"{e:.3f}{'*' if s else ''}" for e, s in zip(gd.estimate, gd.significant, strict=True)
    ]
    frame["gust off: success ST"] = [f"{e:.3f}" for e in calm["success"].ST]
    print(frame.to_string())
    print(f"success rate per row: mean {big['stats']}")
    print(f"dummy threshold {gd.dummy_threshold:.4f}, noise share {gd.noise_share:.3f}")
    print(f"total {time.perf_counter() - start:.1f} s")


def test_apply_without_an_env_says_how_to_pass_it() -> None:
    variations = make_reach_variations()
    with pytest.raises(TypeError, match=r"cannot apply 'mass': `env` is None; pass the env"):
        variations["payload.mass"].draw(None, np.array([0]))
    one_step = ishigami_variations()
    with pytest.raises(TypeError, match=r"cannot apply inputs \[0\]: `env` is None"):
        one_step["x1"].draw(None, np.array([0]))
