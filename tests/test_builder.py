"""EnvBuilder: the build order, the attach-after-draw error, and cfg copies that keep recording.

The env here is a small batched env object (no simulator): what matters is when the
builder does each step, observed from inside ``make_env`` and ``apply`` and from the
dataset written.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest

import varirec as vr
from varirec.integrations.builder import EnvBuilder


class BatchEnv:
    """A batched env whose per-env parameters the variations set."""

    def __init__(self, num_envs: int, cfg: EnvCfg) -> None:
        self.cfg = copy.deepcopy(cfg)  # as Isaac Lab does: the env owns a deep copy
        self.mass = np.full(num_envs, np.nan)
        self.scene = ""
        self.size = np.nan


@dataclasses.dataclass
class EnvCfg:
    """An env cfg that carries the variations' cfgs and the build values."""

    variation_cfgs: dict[str, vr.VariationCfg]
    build_values: dict[str, np.ndarray]


def variations(calls: list[str]) -> vr.VariationSet:
    def set_mass(env, ids, values) -> None:
        if env is not None:
            env.mass[ids] = values

    def set_scene(env, ids, values) -> None:
        calls.append(f"apply scene to {type(env).__name__}")
        if env is not None:
            env.scene = str(values[0])

    def set_size(env, ids, values) -> None:
        if env is not None:
            env.size = float(values[0])

    return vr.VariationSet(
        [
            vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)), set_mass),
            vr.Variation(
                "scene",
                vr.VariationCfg(sampler=vr.ChoiceCfg(choices=("kitchen", "garage")), mode="build"),
                set_scene,
            ),
            vr.Variation(
                "size",
                vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=10), mode="build"),
                set_size,
            ),
        ]
    )


def test_build_order_overrides_attach_draw_construct_expose(tmp_path) -> None:
    calls: list[str] = []
    vs = variations(calls)
    builder = EnvBuilder(
        vs, overrides=["size.sampler.low=9.5", "mass.sampler.high=1.5"], output=tmp_path,
        num_envs=3, run_id="r", seed=1,
    )  # fmt: skip
    seen = {}

    def make_env(values):
        # (1)-(3) are done when the env is made: overridden, attached, drawn.
        seen["stages"] = list(builder.stages)
        seen["attached"] = builder.recorder.keys
        seen["high"] = vs["mass"].cfg.sampler.high
        seen["values"] = {k: v.copy() for k, v in values.items()}
        calls.append("make_env")
        env = BatchEnv(3, EnvCfg({k: v.cfg for k, v in vs.items()}, values))
        assert not hasattr(env, "varirec")  # (5) comes last
        values["size"][0] = -1.0  # the caller's copy: the recorded draw must not change
        return env

    env = builder.build(make_env)
    assert seen["stages"] == ["overrides", "attach", "build_draws"]
    assert seen["attached"] == ["mass", "scene", "size"] and seen["high"] == 1.5
    assert builder.stages == ["overrides", "attach", "build_draws", "make_env", "expose"]
    # build draws are drawn before the env exists and applied once, on the env
    assert calls == ["make_env", "apply scene to BatchEnv"]
    assert env.varirec is builder.manager and builder.manager.env is env
    assert env.scene == seen["values"]["scene"][0] and env.size >= 9.5

    m = builder.manager
    m.reset(env, None)
    m.record_step(reward=np.ones(3), terminated=np.ones(3, dtype=bool))
    m.reset(env, None)
    builder.close()

    doc = json.loads((tmp_path / "run_id=r" / "run.json").read_text())
    specs = {s["key"]: s["sampler"] for s in doc["metadata"]["variations"]}
    assert specs["size"]["low"] == 9.5 and specs["mass"]["high"] == 1.5  # (1) before (2)
    draws = vr.open_dataset(tmp_path).draws().to_pandas()
    build = draws[draws["phase"] == "build"].set_index("variation")
    assert build.loc["size", "value"] == seen["values"]["size"][0]  # recorded, uncorrupted
    assert build.loc["scene", "label"] == seen["values"]["scene"][0]
    assert (build[["env_id", "episode"]] == -1).all().all()
    assert build["seq"].max() < draws.loc[draws["phase"] == "reset", "seq"].min()
    assert len(draws[draws["variation"] == "mass"]) == 6


def test_attach_after_draw_is_an_error_and_writes_nothing(tmp_path) -> None:
    vs = variations([])
    vs["mass"].draw(env_ids=[0, 1])
    builder = EnvBuilder(vs, output=tmp_path, num_envs=2)
    with pytest.raises(vr.RecorderStateError, match=r"'mass' \(1 draw\(s\)\) already drew"):
        builder.build(lambda values: BatchEnv(2, EnvCfg({}, values)))
    assert builder.stages == [] and builder.manager is None
    assert not any(tmp_path.iterdir())


def test_bad_override_changes_and_writes_nothing(tmp_path) -> None:
    vs = variations([])
    builder = EnvBuilder(
        vs, overrides=["mass.sampler.high=3", "nass.sampler.high=3"], output=tmp_path
    )
    with pytest.raises(vr.UnknownNameError, match="nass"):
        builder.build(lambda values: BatchEnv(1, EnvCfg({}, values)))
    assert vs["mass"].cfg.sampler.high == 2 and not any(tmp_path.iterdir())


def test_deep_copies_of_cfgs_do_not_orphan_the_recorder(tmp_path) -> None:
    vs = variations([])
    builder = EnvBuilder(vs, output=tmp_path, num_envs=2, run_id="r")
    env = builder.build(
        lambda values: BatchEnv(2, EnvCfg({k: v.cfg for k, v in vs.items()}, values))
    )
    assert env.cfg.variation_cfgs["mass"] == vs["mass"].cfg  # a copy, equal: cfgs hold no state
    env_cfg_copy = copy.deepcopy(env.cfg)
    vs["mass"].apply_cfg(env_cfg_copy.variation_cfgs["mass"])  # e.g. a study re-applies a copy
    vs["mass"].apply_cfg(copy.deepcopy(vs["mass"].cfg))
    m = builder.manager
    for _ in range(3):
        m.reset(env, None)
        m.record_step(reward=np.ones(2))
    builder.close()
    draws = vr.open_dataset(tmp_path).draws().to_pandas()
    assert (draws["variation"] == "mass").sum() == 6  # every draw after the copies recorded
    np.testing.assert_array_equal(
        draws[draws["variation"] == "mass"].tail(2)["value"].to_numpy(), env.mass
    )


def test_build_twice_and_make_env_errors(tmp_path) -> None:
    builder = EnvBuilder(variations([]), output=tmp_path, run_id="r")
    with pytest.raises(TypeError, match="returned None"):
        builder.build(lambda values: None)
    assert vr.open_dataset(tmp_path).run("r").status == "failed"
    with pytest.raises(vr.RecorderStateError, match="already built"):
        builder.build(lambda values: BatchEnv(1, EnvCfg({}, values)))


def test_without_output_the_null_manager_still_drives_variations() -> None:
    builder = EnvBuilder(variations([]), num_envs=2, seed=3)
    env = builder.build(lambda values: BatchEnv(2, EnvCfg({}, values)))
    assert isinstance(env.varirec, vr.NullRecorderManager) and builder.recorder is None
    env.varirec.reset(env, None)
    assert np.isfinite(env.mass).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_envs": 0}, ValueError, "`num_envs` must be a positive int, got 0"),
        ({"seed": 1.5}, TypeError, "`seed` must be an int, got 1.5"),
        ({"overrides": [3]}, TypeError, "`overrides` must be strings"),
    ],
)
def test_bad_arguments(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        EnvBuilder(variations([]), **kwargs)


def test_variations_must_be_a_set_or_iterable() -> None:
    with pytest.raises(TypeError, match="`variations` must be a VariationSet"):
        EnvBuilder(variations([])["mass"])


def test_builder_builds_the_built_in_reach_env(tmp_path) -> None:
    from varirec.envs import make_reach_env, make_reach_variations

    builder = EnvBuilder(make_reach_variations(), output=tmp_path, run_id="r", num_envs=4)
    env = builder.build(lambda values: make_reach_env(4))
    gravity = float(builder.build_values["world.gravity"][0])
    assert 9.6 <= gravity <= 10.0 and env.varirec is builder.manager
    assert np.all(env.gravity == gravity)  # applied to the env that was built
    builder.close()
