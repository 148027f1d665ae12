"""Shared fixtures: a fake env whose variations are recorded, with the truth kept."""

from __future__ import annotations

import numpy as np
import pytest

import varirec as vr
from varirec.recording.manager import RecorderManager

NUM_ENVS = 6


class FakeEnv:
    """Per-env parameters that variations set; remembers them per finished episode."""

    def __init__(self, num_envs: int) -> None:
        self.params = {
            k: np.full(num_envs, np.nan) for k in ("mass", "pos[x]", "pos[y]", "friction")
        }
        self.scene = ""
        self.history: list[dict] = []
        self.gusts: list[tuple[int, int, float]] = []  # (env, step, value)

    def set(self, name: str):
        def apply(env: FakeEnv, ids: np.ndarray | None, values: np.ndarray) -> None:
            if name == "pos":
                env.params["pos[x]"][ids] = values[:, 0]
                env.params["pos[y]"][ids] = values[:, 1]
            else:
                env.params[name][ids] = values

        return apply


def _variations(env: FakeEnv) -> vr.VariationSet:
    def set_scene(e: FakeEnv, ids: np.ndarray | None, values: np.ndarray) -> None:
        e.scene = str(values[0])

    def gust(e: FakeEnv, ids: np.ndarray, values: np.ndarray) -> None:
        e.gusts.extend(zip(ids.tolist(), [None] * len(ids), values.tolist(), strict=True))

    return vr.VariationSet(
        [
            vr.Variation(
                "mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)), env.set("mass")
            ),
            vr.Variation(
                "pos",
                vr.VariationCfg(sampler=vr.NormalCfg(mean=(0, 0), std=(1, 1), names=("x", "y"))),
                env.set("pos"),
            ),
            vr.Variation(
                "friction",
                vr.VariationCfg(sampler=vr.ChoiceCfg(choices=(0.2, 0.8))),
                env.set("friction"),
            ),
            vr.Variation(
                "scene",
                vr.VariationCfg(sampler=vr.ChoiceCfg(choices=("kitchen", "garage")), mode="build"),
                set_scene,
            ),
            vr.Variation(
                "gust",
                vr.VariationCfg(
                    sampler=vr.UniformCfg(low=0, high=5), mode="interval", interval_steps=(2, 4)
                ),
                gust,
            ),
        ]
    )


def run_fake_env(tmp_path, seed: int = 0, steps: int = 60) -> tuple[FakeEnv, RecorderManager]:
    env = FakeEnv(NUM_ENVS)
    variations = _variations(env)
    manager = RecorderManager(
        NUM_ENVS, variations=variations, output=tmp_path, seed=seed, run_id="r"
    )
    rng = np.random.default_rng(seed)
    manager.draw_build(env)
    manager.reset(env, None)  # the first reset: episode 0 everywhere, no phantom
    running_scene = env.scene
    for step in range(steps):
        manager.record_step(reward=np.ones(NUM_ENVS), success=rng.random(NUM_ENVS) < 0.5)
        manager.draw_interval(env)
        done = np.flatnonzero(rng.random(NUM_ENVS) < 0.25)
        if step == 30:  # a cfg swap mid-run: the recorder keeps recording the new sampler
            variations["mass"].apply_cfg(vr.VariationCfg(sampler=vr.UniformCfg(low=10, high=11)))
        if done.size:
            for env_id in done:
                env.history.append(
                    {
                        "env_id": env_id,
                        "episode": manager.tracker.episode[env_id],
                        "scene": running_scene,
                        **{k: v[env_id] for k, v in env.params.items()},
                    }
                )
            manager.record_pre_reset(done)
            manager.draw_reset(env, done)
            manager.record_post_reset(done)
        manager.record_post_step()
    manager.close()
    return env, manager


@pytest.fixture
def fake_run(tmp_path):
    """A recorded 60-step run of the fake env: ``(env, manager, dataset path)``."""
    env, manager = run_fake_env(tmp_path)
    return env, manager, tmp_path


@pytest.fixture
def gpu(monkeypatch):
    """The GPU code on CPU torch (``off_host`` for any device; step tensors not read in
    place); counts the resets that were prefetched (``gpu[0]``)."""
    from varirec import arrays
    from varirec.recording import terms
    from varirec.recording.prefetched_reset import PrefetchedReset

    monkeypatch.setattr(arrays, "off_host", lambda dev: dev is not None)
    monkeypatch.setattr(terms, "cpu_view", lambda x: None)
    call = PrefetchedReset.__call__
    count = [0]

    def counted(self, env, env_ids):
        done = call(self, env, env_ids)
        count[0] += done
        return done

    monkeypatch.setattr(PrefetchedReset, "__call__", counted)
    return count
