"""mjlab integration on Mjlab-Cartpole-Balance, 4 envs on the CPU (needs the mjlab extra).

The truth is read from mjlab itself by a test-only recorder term that runs *before*
varirec's: at each ``record_pre_reset`` it copies the model fields in force, mjlab's
episode length and termination flags, and the return summed from ``reward_buf``; it
counts each env's episodes on its own. MuJoCo-Warp is not fully deterministic, so the
assertions are on values (drawn, applied, in the model), not on trajectories.
The first run compiles Warp's CPU kernels (~1-2 min); ``WARP_CACHE_PATH`` keeps them.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mjlab")
torch = pytest.importorskip("torch")

import mjlab.tasks  # noqa: E402, F401  (registers the tasks)
from mjlab.envs import ManagerBasedRlEnv  # noqa: E402
from mjlab.managers.recorder_manager import RecorderTerm, RecorderTermCfg  # noqa: E402
from mjlab.managers.termination_manager import TerminationTermCfg  # noqa: E402
from mjlab.tasks.registry import load_env_cfg  # noqa: E402

import varirec as vr  # noqa: E402
from varirec.integrations.mjlab import (  # noqa: E402
    APPLIED_SUFFIX,
    ModelField,
    instrument,
    model_variation,
    time_out_success,
)
from varirec.studies.replay import replay_episode  # noqa: E402

NUM_ENVS = 4
STEPS = 40  # episodes of at most 10 steps (0.5 s of 0.05 s steps): 4+ per env
FIELDS = {  # variation key -> (model field, how the test finds the element)
    "pole.mass": ("body_mass", "body"),
    "cart.mass": ("body_mass", "body"),
    "hinge.damping": ("dof_damping", "dof"),
    "pole.friction": ("geom_friction", "geom"),
}


def pole_fell(env, limit: float = 0.2):
    """A failure termination cartpole lacks: the pole tilted past ``limit`` rad."""
    asset = env.scene["cartpole"]
    ids, _ = asset.find_joints("hinge_1")
    return asset.data.joint_pos[:, ids].abs().squeeze(-1) > limit


def _element(env, field: str, kind: str, name: str) -> int:
    ent = env.scene["cartpole"]
    if kind == "body":
        return int(ent.indexing.body_ids[ent.find_bodies(name)[0][0]])
    if kind == "geom":
        return int(ent.indexing.geom_ids[ent.find_geoms(name)[0][0]])
    return int(ent.indexing.joint_v_adr[ent.find_joints(name)[0][0]])


class Probe(RecorderTerm):
    """Test-only: what mjlab's model and buffers hold when each episode finishes."""

    def __init__(self, cfg, env):
        super().__init__(cfg, env)
        self.episode = np.zeros(env.num_envs, dtype=int)  # its own count of finished episodes
        self.ret = torch.zeros(env.num_envs, dtype=torch.float64)
        self.rows: list[dict] = []
        self.where = {
            key: (field, _element(env, field, kind, name))
            for key, (field, kind), name in zip(
                FIELDS, FIELDS.values(), ("pole_1", "cart", "hinge_1", "pole_1"), strict=True
            )
        }

    def _model(self, ids):
        out = {}
        for key, (field, gid) in self.where.items():
            values = getattr(self._env.sim.model, field)[ids, gid]
            out[key] = (values[:, 0] if values.ndim == 2 else values).double().numpy()
        return out

    def record_pre_reset(self, env_ids):
        env = self._env
        ids = env_ids.cpu()
        ret = self.ret[ids] + env.reward_buf[ids].double()  # the terminal step's reward
        model = self._model(ids)
        for j, e in enumerate(ids.tolist()):
            self.rows.append(
                {
                    "env_id": e,
                    "episode": int(self.episode[e]),
                    "length": int(env.episode_length_buf[e]),
                    "return": float(ret[j]),
                    "terminated": bool(env.reset_terminated[e]),
                    "truncated": bool(env.reset_time_outs[e]),
                    **{key: float(vals[j]) for key, vals in model.items()},
                }
            )
            self.episode[e] += 1

    def record_post_reset(self, env_ids):
        self.ret[env_ids.cpu()] = 0.0

    def record_post_step(self):
        env = self._env
        self.ret += torch.where(env.reset_buf, 0.0, env.reward_buf).double()


def _variations() -> list[vr.Variation]:
    return [
        # Draws below 0 are clamped to the physical floor (1e-6): applied != drawn.
        model_variation(
            "pole.mass",
            vr.UniformCfg(low=-0.05, high=0.3),
            field="body_mass",
            entity="cartpole",
            name="pole_1",
        ),
        model_variation(
            "cart.mass",
            vr.UniformCfg(low=-0.5, high=1.0),
            field="body_mass",
            entity="cartpole",
            name="cart",
            mode="build",
            operation="add",
        ),
        model_variation(
            "hinge.damping",
            vr.LogUniformCfg(low=1e-4, high=1e-2),
            field="dof_damping",
            entity="cartpole",
            name="hinge_1",
        ),
        model_variation(  # contacts are off in cartpole: a control factor
            "pole.friction",
            vr.UniformCfg(low=0.3, high=1.2),
            field="geom_friction",
            entity="cartpole",
            name="pole_1",
            axes=(0,),
        ),
        model_variation(
            "slider.damping",
            vr.UniformCfg(low=0.0, high=0.01),
            field="dof_damping",
            entity="cartpole",
            name="slider",
            mode="interval",
            interval_steps=(3, 3),
        ),
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mjlab")
    cfg = load_env_cfg("Mjlab-Cartpole-Balance")
    cfg.scene.num_envs = NUM_ENVS
    cfg.seed = 0
    cfg.episode_length_s = 0.5
    cfg.terminations["pole_fell"] = TerminationTermCfg(func=pole_fell)
    # Wider starting angles than the task's +-0.034 rad: some poles fall within 10 steps.
    cfg.events["reset_hinge"].params["position_range"] = (-0.25, 0.25)
    cfg.recorders["probe"] = RecorderTermCfg(func=Probe)  # before varirec's: sees the truth
    variations = _variations()
    recording = instrument(
        cfg, variations, output=root, seed=7, run_id="cartpole", success=time_out_success
    )
    env = ManagerBasedRlEnv(cfg, device="cpu")
    probe = env.recorder_manager.get_term("probe")
    env.reset()
    first = {key: probe._model(torch.arange(NUM_ENVS))[key].copy() for key in FIELDS}
    action = torch.zeros(NUM_ENVS, env.action_manager.total_action_dim)
    for _ in range(STEPS):
        env.step(action)
    # An explicit mid-episode reset: mjlab fires no record_pre_reset.
    cut_length = int(env.episode_length_buf[1])
    env.reset(env_ids=torch.tensor([1]))
    for _ in range(3):
        env.step(action)
    yield {
        "root": root,
        "env": env,
        "probe": probe,
        "first": first,
        "cut_length": cut_length,
        "recording": recording,
        "variations": variations,
    }


@pytest.fixture(scope="module")
def recorded(run):
    run["env"].close()
    ds = vr.open_dataset(run["root"])
    episodes = ds.episodes("cartpole").to_pylist()
    draws = ds.draws("cartpole").to_pylist()
    return episodes, draws


def test_every_episode_of_the_probe_is_recorded_with_its_outcome(run, recorded) -> None:
    episodes, _ = recorded
    by_key = {(e["env_id"], e["episode"]): e for e in episodes}
    probe_rows = run["probe"].rows
    assert len(probe_rows) >= 3 * NUM_ENVS
    for row in probe_rows:
        ep = by_key[(row["env_id"], row["episode"])]
        assert ep["length"] == row["length"]
        assert ep["terminated"] == row["terminated"]
        assert ep["truncated"] == row["truncated"]
        assert ep["success"] == (row["truncated"] and not row["terminated"])
        assert ep["return"] == pytest.approx(row["return"], rel=1e-6, abs=1e-9)
    # Both endings occur: the pole fell (failure) and the time ran out.
    assert {r["terminated"] for r in probe_rows} == {True, False}
    assert {r["truncated"] for r in probe_rows} == {True, False}


def test_first_reset_is_no_episode_and_an_explicit_reset_is_one(run, recorded) -> None:
    episodes, _ = recorded
    probe_rows = run["probe"].rows
    # Episodes are numbered from 0 per env, no gaps: the first env.reset() finished none.
    for e in range(NUM_ENVS):
        mine = sorted(x["episode"] for x in episodes if x["env_id"] == e)
        assert mine == list(range(len(mine)))
    # The explicit reset of env 1 cut an episode short that mjlab never reported.
    extra = [
        x
        for x in episodes
        if (x["env_id"], x["episode"]) not in {(r["env_id"], r["episode"]) for r in probe_rows}
    ]
    assert len(extra) == 1
    (cut,) = extra
    assert cut["env_id"] == 1 and cut["length"] == run["cut_length"]
    assert not cut["terminated"] and not cut["truncated"]


def test_recorded_values_are_the_values_in_the_model(run, recorded) -> None:
    episodes, _ = recorded
    by_key = {(e["env_id"], e["episode"]): e for e in episodes}
    clamped = 0
    for row in run["probe"].rows:
        replay = replay_episode(run["root"], "cartpole", row["env_id"], row["episode"])
        ep = by_key[(row["env_id"], row["episode"])]
        for key in FIELDS:
            model = row[key]
            drawn = replay.values[key]
            applied = ep[f"{key}{APPLIED_SUFFIX}"]
            assert applied == model  # read back from the model: exact
            if key == "cart.mass":  # add: drawn plus the compiled default (1 kg)
                assert model == np.float32(drawn) + np.float32(1.0) != np.float32(drawn)
            elif key == "pole.mass" and drawn < 1e-6:
                assert model == np.float32(1e-6)  # clamped to the physical floor
                clamped += 1
            else:
                assert model == np.float32(drawn)  # float32 in the model
    assert clamped >= 1  # this seed draws negative masses: applied differs from drawn


def test_values_differ_per_env_and_per_episode(run) -> None:
    rows = run["probe"].rows
    masses = {(r["env_id"], r["episode"]): r["pole.mass"] for r in rows}
    assert len(set(masses.values())) > len(masses) // 2
    # cart.mass is a startup (build) draw: one value for every env and episode.
    assert len({r["cart.mass"] for r in rows}) == 1
    assert len(set(run["first"]["cart.mass"])) == 1


def test_interval_draws_carry_their_episode_step(recorded) -> None:
    episodes, draws = recorded
    lengths = {(e["env_id"], e["episode"]): e["length"] for e in episodes}
    interval = [d for d in draws if d["phase"] == "interval"]
    assert interval
    assert {d["variation"] for d in interval} == {"slider.damping"}
    for d in interval:
        assert d["step"] % 3 == 0 and d["step"] >= 3
        if (d["env_id"], d["episode"]) in lengths:
            assert d["step"] <= lengths[(d["env_id"], d["episode"])]


def test_replay_writes_the_recorded_values_back(run, recorded) -> None:
    env, probe = run["env"], run["probe"]
    now = probe._model(torch.arange(NUM_ENVS))["pole.mass"]
    row = next(r for r in probe.rows if now[r["env_id"]] != r["pole.mass"])  # a past value
    replay = replay_episode(run["root"], "cartpole", row["env_id"], row["episode"])
    by_key = {v.key: v for v in run["variations"]}
    replay.apply(env, by_key)  # writes env `env_id` of the model, draws and records nothing
    got = probe._model(torch.tensor([row["env_id"]]))
    for key in FIELDS:
        assert got[key][0] == row[key]
    # The derived constants follow, as after mjlab's own events: the cart's subtree
    # holds the replayed pole (the pole's subtree is the pole alone).
    model, e = env.sim.model, row["env_id"]
    cart, pole = (_element(env, "body_mass", "body", n) for n in ("cart", "pole_1"))
    assert model.body_subtreemass[e, pole] == pytest.approx(float(model.body_mass[e, pole]))
    whole = float(model.body_mass[e, cart] + model.body_mass[e, pole])
    assert model.body_subtreemass[e, cart] == pytest.approx(whole, rel=1e-6)


def test_model_field_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="`field` must be a model field"):
        ModelField("mass", entity="cartpole", name="pole_1")
    with pytest.raises(ValueError, match=r"low end above its high end.*pass \(0.1, 0.5\)"):
        ModelField("body_mass", entity="cartpole", name="pole_1", clamp=(0.5, 0.1))
    with pytest.raises(ValueError, match="`clamp` must be"):
        ModelField("body_mass", entity="cartpole", name="pole_1", clamp=(float("nan"), None))
    with pytest.raises(ValueError, match=r"takes numbers.*\['light', 'heavy'\]"):
        model_variation("m", vr.ChoiceCfg(choices=("light", "heavy")), field="body_mass",
                        entity="cartpole", name="pole_1")  # fmt: skip
    with pytest.raises(ValueError, match="`operation` must be"):
        ModelField("body_mass", entity="cartpole", name="pole_1", operation="mul")
    with pytest.raises(ValueError, match="writes 1 value"):
        model_variation(
            "v",
            vr.NormalCfg(mean=(0, 0), std=(1, 1)),
            field="body_mass",
            entity="cartpole",
            name="pole_1",
        )


def test_instrument_refuses_unknown_entities_and_twice(tmp_path) -> None:
    cfg = load_env_cfg("Mjlab-Cartpole-Balance")
    bad = model_variation(
        "m", vr.UniformCfg(low=1, high=2), field="body_mass", entity="robot", name="x"
    )
    with pytest.raises(ValueError, match=r"entity 'robot'.*pick one of \['cartpole'\]"):
        instrument(cfg, [bad], output=tmp_path)
    instrument(cfg, [], output=tmp_path)
    with pytest.raises(ValueError, match="already has varirec terms"):
        instrument(cfg, [], output=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written before an env is built


def test_manual_resets_with_auto_reset_off(tmp_path) -> None:
    """``auto_reset=False``: mjlab fires no record_pre_reset; the recorder term finishes
    the episodes at record_post_step, and the user's reset draws for the next ones."""
    cfg = load_env_cfg("Mjlab-Cartpole-Balance")
    cfg.scene.num_envs = 2
    cfg.episode_length_s = 0.15  # 3 steps
    cfg.auto_reset = False
    mass = model_variation(
        "pole.mass",
        vr.UniformCfg(low=0.05, high=0.3),
        field="body_mass",
        entity="cartpole",
        name="pole_1",
    )
    instrument(cfg, [mass], output=tmp_path, seed=1, run_id="manual")
    env = ManagerBasedRlEnv(cfg, device="cpu")
    env.reset()
    gid = int(
        env.scene["cartpole"].indexing.body_ids[env.scene["cartpole"].find_bodies("pole_1")[0][0]]
    )
    action = torch.zeros(2, env.action_manager.total_action_dim)
    in_model = []
    for _ in range(2):
        for _ in range(3):
            env.step(action)
        in_model.append(env.sim.model.body_mass[:, gid].double().numpy().copy())
        env.reset(env_ids=torch.nonzero(env.reset_buf).squeeze(-1))
    env.close()
    episodes = vr.open_dataset(tmp_path).episodes("manual").to_pylist()
    got = sorted((e["env_id"], e["episode"], e["length"], e["truncated"]) for e in episodes)
    assert got == [(e, k, 3, True) for e in range(2) for k in range(2)]
    for e in episodes:
        replay = replay_episode(tmp_path, "manual", e["env_id"], e["episode"])
        assert np.float32(replay.values["pole.mass"]) == in_model[e["episode"]][e["env_id"]]
        assert e[f"pole.mass{APPLIED_SUFFIX}"] == in_model[e["episode"]][e["env_id"]]


def test_readme_mjlab_example_runs_as_written(tmp_path, monkeypatch) -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## GPU simulators") :]
    (block,) = re.findall(r"```py\n(.*?)```", section[: section.index("### Isaac Lab")], re.DOTALL)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})
    episodes = vr.open_dataset("runs/").episodes("cartpole")
    assert episodes.num_rows >= 8  # 30 steps of 4 envs, episodes of 10 steps
    applied = episodes.column("pole.mass@applied").to_numpy()
    assert ((applied >= 0.05 - 1e-7) & (applied <= 0.3 + 1e-7)).all()


def test_one_recording_per_env(tmp_path) -> None:
    """A cfg copied after instrument() shares its recording: a second env is refused
    before it writes anything."""
    import copy

    cfg = load_env_cfg("Mjlab-Cartpole-Balance")
    cfg.scene.num_envs = 1
    instrument(cfg, [], output=tmp_path, run_id="one")
    twin = copy.deepcopy(cfg)
    env = ManagerBasedRlEnv(cfg, device="cpu")
    with pytest.raises(vr.RecorderStateError, match="already records another mjlab env"):
        ManagerBasedRlEnv(twin, device="cpu")
    env.close()
    assert vr.open_dataset(tmp_path).run_ids() == ["one"]


def test_instrument_refuses_a_schedule(tmp_path) -> None:
    cfg = load_env_cfg("Mjlab-Cartpole-Balance")
    with pytest.raises(TypeError, match=r"`schedule`.*not supported"):
        instrument(cfg, [], output=tmp_path, schedule=object())
    assert "varirec_reset" not in cfg.events


def _built(tmp_path, variations):
    cfg = load_env_cfg("Mjlab-Cartpole-Balance")
    cfg.scene.num_envs = 2
    instrument(cfg, variations, output=tmp_path, run_id="r")
    return ManagerBasedRlEnv(cfg, device="cpu")


def test_two_variations_of_one_element_are_refused_before_any_run(tmp_path) -> None:
    # A build "nominal" and a reset "jitter" of one mass: the last write wins, and the
    # first's applied value was the second's.
    nominal = model_variation("cart.nominal", vr.UniformCfg(low=1, high=4), field="body_mass",
                              entity="cartpole", name="cart", mode="build")  # fmt: skip
    jitter = model_variation("cart.jitter", vr.UniformCfg(low=0.9, high=1.1),
                             field="body_mass", entity="cartpole", name="cart",
                             operation="scale")  # fmt: skip
    with pytest.raises(ValueError, match=r"'cart\.nominal' and 'cart\.jitter' both write"):
        _built(tmp_path, [nominal, jitter])
    assert not list(tmp_path.iterdir())
    axis0 = model_variation("f0", vr.UniformCfg(low=0.3, high=1), field="geom_friction",
                            entity="cartpole", name="pole_1", axes=(0,))  # fmt: skip
    axis1 = model_variation("f1", vr.UniformCfg(low=0.3, high=1), field="geom_friction",
                            entity="cartpole", name="pole_1", axes=(1,))  # fmt: skip
    _built(tmp_path, [axis0, axis1]).close()  # other axes of one element: both kept


def test_a_field_that_mujoco_warp_shares_by_every_env_is_refused_before_any_run(tmp_path) -> None:
    fluid = model_variation("fluid", vr.UniformCfg(low=0, high=1), field="geom_fluid",
                            entity="cartpole", name="pole_1", axes=(0,))  # fmt: skip
    with pytest.raises(ValueError, match=r"keeps 'geom_fluid' one for every env.*body_mass"):
        _built(tmp_path, [fluid])
    assert not list(tmp_path.iterdir())


def test_interval_steps_count_the_built_envs_steps(tmp_path) -> None:
    # The cfg changed after instrument(): the interval still counts env steps.
    cfg = load_env_cfg("Mjlab-Cartpole-Balance")
    cfg.scene.num_envs = 2
    cfg.episode_length_s = 2.0
    v = model_variation("slider.damping", vr.UniformCfg(low=0.0, high=0.01),
                        field="dof_damping", entity="cartpole", name="slider",
                        mode="interval", interval_steps=(4, 4))  # fmt: skip
    instrument(cfg, [v], output=tmp_path, run_id="r")
    cfg.decimation *= 2
    env = ManagerBasedRlEnv(cfg, device="cpu")
    env.reset()
    action = torch.zeros(2, env.action_manager.total_action_dim)
    for _ in range(12):
        env.step(action)
    env.close()
    draws = vr.open_dataset(tmp_path).draws("r").to_pylist()
    assert sorted({d["step"] for d in draws if d["phase"] == "interval"}) == [4, 8, 12]
