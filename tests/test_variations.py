"""Variations: listeners across cfg swaps, enable/disable, collections and overrides."""

from __future__ import annotations

import numpy as np
import pytest

import varirec as vr
from varirec import (
    ChoiceCfg,
    DrawContext,
    ListenerError,
    NormalCfg,
    SampleEvent,
    UniformCfg,
    UnknownNameError,
    Variation,
    VariationCfg,
    VariationSet,
)


def _mass() -> Variation:
    return Variation("cube.mass", VariationCfg(sampler=UniformCfg(low=0.5, high=2.0)))


def test_listener_survives_three_cfg_swaps_and_old_samplers_keep_none() -> None:
    v = _mass()
    events: list[SampleEvent] = []
    v.add_sample_listener(events.append)
    old = [v.sampler]
    for high in (3.0, 4.0, 5.0):
        v.apply_cfg(VariationCfg(sampler=UniformCfg(low=high - 0.5, high=high)))
        old.append(v.sampler)
    assert all(s.listeners == () for s in old[:-1])
    for s in old[:-1]:
        s.sample(2)  # drawing on an old sampler reaches nobody
    values = v.draw(env_ids=[0, 1, 2])
    assert len(events) == 1
    assert events[0].sampler is v.sampler is old[-1]
    assert np.all((values >= 4.5) & (values <= 5.0))
    np.testing.assert_array_equal(events[0].values, values)


def test_remove_sample_listener() -> None:
    v = _mass()
    handle = v.add_sample_listener(lambda e: None)
    v.remove_sample_listener(handle)
    assert v.sampler.listeners == ()
    with pytest.raises(ListenerError, match=r"was not added to variation 'cube.mass'"):
        v.remove_sample_listener(handle)


def test_disabled_variation_draws_nothing_and_notifies_nothing() -> None:
    applied: list[np.ndarray] = []
    v = Variation(
        "light",
        VariationCfg(sampler=NormalCfg(mean=1, std=0.1)),
        apply=lambda env, ids, x: applied.append(x),
    )
    events: list[SampleEvent] = []
    v.add_sample_listener(events.append)
    v.disable()
    assert v.draw(env=object(), env_ids=[0]) is None
    assert events == [] and applied == [] and v.num_draws == 0
    v.enable()
    assert v.draw(env=object(), env_ids=[0, 1]).shape == (2,)
    assert len(events) == 1 and len(applied) == 1 and v.num_draws == 1


def test_apply_receives_env_ids_and_build_draw_is_one_row_for_all() -> None:
    got: list[tuple] = []
    v = Variation(
        "scene",
        VariationCfg(sampler=ChoiceCfg(choices=("a", "b")), mode="build"),
        apply=lambda env, ids, x: got.append((env, ids, x)),
    )
    env = object()
    v.draw(env)
    assert got[0][0] is env and got[0][1] is None and got[0][2].shape == (1,)
    v.draw(None, np.array([2, 3]))  # apply runs even without an env object (closures)
    assert got[1][0] is None and got[1][1].tolist() == [2, 3] and got[1][2].shape == (2,)


def test_seeded_variation_is_reproducible_across_cfg_swap_of_same_distribution() -> None:
    a, b = _mass(), _mass()
    a.seed(11)
    b.seed(11)
    b.apply_cfg(VariationCfg(sampler=UniformCfg(low=0.5, high=2.0)))
    ctx = DrawContext(episodes=np.array([4, 4]))
    np.testing.assert_array_equal(
        a.draw(env_ids=[0, 9], context=ctx), b.draw(env_ids=[0, 9], context=ctx)
    )


def test_bad_variation_arguments() -> None:
    with pytest.raises(ValueError, match="dotted name"):
        Variation("cube mass", VariationCfg(sampler=UniformCfg()))
    with pytest.raises(TypeError, match="must be a SamplerCfg"):
        VariationCfg(sampler={"kind": "uniform"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode must be one of"):
        VariationCfg(sampler=UniformCfg(), mode="startup")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval_steps must be"):
        VariationCfg(sampler=UniformCfg(), mode="interval", interval_steps=(5, 2))
    with pytest.raises(TypeError, match="apply` must be callable"):
        Variation("a", VariationCfg(sampler=UniformCfg()), apply=3)  # type: ignore[arg-type]


def test_variation_set_keys_modes_and_duplicates() -> None:
    vs = VariationSet(
        [
            _mass(),
            Variation("scene", VariationCfg(sampler=ChoiceCfg(choices=("a", "b")), mode="build")),
            Variation("wind", VariationCfg(sampler=NormalCfg(), mode="interval", enabled=False)),
        ]
    )
    assert list(vs) == ["cube.mass", "scene", "wind"]
    assert [v.key for v in vs.enabled("build")] == ["scene"]
    assert [v.key for v in vs.enabled()] == ["cube.mass", "scene"]
    with pytest.raises(ValueError, match="'scene' already exists"):
        vs.add(Variation("scene", VariationCfg(sampler=UniformCfg())))
    with pytest.raises(
        UnknownNameError, match=r"no variation 'cube.mas'; did you mean 'cube.mass'"
    ):
        vs["cube.mas"]
    spec = {s["key"]: s for s in vs.specs()}
    assert spec["scene"]["categorical"] and spec["scene"]["labels"] == ["a", "b"]
    assert spec["cube.mass"]["factors"][0]["dist"] == "unif"


def test_overrides_go_through_apply_cfg_and_keep_listeners() -> None:
    vs = VariationSet([_mass(), Variation("cube.mass_scale", VariationCfg(sampler=UniformCfg()))])
    events: list[SampleEvent] = []
    vs["cube.mass"].add_sample_listener(events.append)
    vs.override(
        "cube.mass.sampler.high=3",
        "cube.mass.sampler.low=2.5",
        "cube.mass_scale.enabled=false",
        'cube.mass.mode="interval"',
    )
    cfg = vs["cube.mass"].cfg
    assert (cfg.sampler.low, cfg.sampler.high, cfg.mode) == (2.5, 3.0, "interval")
    assert isinstance(cfg.sampler.high, float)
    assert not vs["cube.mass_scale"].enabled
    vs["cube.mass"].draw(env_ids=[0])
    assert len(events) == 1
    vs.override('cube.mass.sampler={"kind": "normal", "mean": 1.0, "std": 0.1}')
    assert isinstance(vs["cube.mass"].cfg.sampler, NormalCfg)
    vs.override('cube.mass.sampler.names=["m"]', "cube.mass.sampler.mean=[1.0]")
    assert vs["cube.mass"].cfg.sampler.shape == (1,)


@pytest.mark.parametrize(
    ("override", "error", "match"),
    [
        (
            "cube.mas.sampler.high=2",
            UnknownNameError,
            r"names no known variation; did you mean 'cube.mass'",
        ),
        (
            "cube.mass.sampler.hihg=2",
            UnknownNameError,
            r"UniformCfg has no field 'hihg'; did you mean 'high'",
        ),
        ("cube.mass.sampler.high=0.1", ValueError, r"low must be <= high"),
        ("cube.mass.sampler.high", ValueError, r"must look like 'cube.mass.sampler.high=2.0'"),
        ("cube.mass=3", ValueError, r"names the variation 'cube.mass' but no field"),
        ("cube.mass.enabled=maybe", ValueError, r"enabled must be true or false"),
        ("cube.mass.enabled.x=1", ValueError, r"'enabled' is a value, it has no field 'x'"),
        ("cube.mass.sampler.high=true", ValueError, r"high must be a number, not a bool"),
    ],
)
def test_bad_overrides_raise_and_change_nothing(override, error, match) -> None:
    vs = VariationSet([_mass()])
    before = vs["cube.mass"].cfg
    with pytest.raises(error, match=match):
        vs.override("cube.mass.sampler.low=0.2", override)
    assert vs["cube.mass"].cfg is before  # the good override before it was not applied either


def test_an_override_of_choices_with_one_word_is_refused_not_split() -> None:
    scene = Variation("scene", VariationCfg(sampler=vr.ChoiceCfg(choices=("lab", "garage"))))
    vs = VariationSet([scene])
    with pytest.raises(ValueError, match=r"the string 'kitchen' \(it would be split"):
        vs.override("scene.sampler.choices=kitchen")
    assert vs["scene"].cfg.sampler.choices == ("lab", "garage")


def test_interval_draws_follow_the_episode_seed_for_common_random_numbers() -> None:
    tracker = vr.EpisodeTracker(4)
    gust = Variation("gust", VariationCfg(sampler=NormalCfg(), mode="interval"))
    gust.bind(tracker)
    gust.seed(0)
    tracker.begin(np.arange(4))
    tracker.start(np.arange(4))
    tracker.seed[:] = [7, 7, 9, -1]  # envs 0 and 1 share an episode seed
    first = gust.draw(env_ids=np.arange(4))
    second = gust.draw(env_ids=np.arange(4))
    assert first[0] == first[1] and second[0] == second[1]  # same seed, same noise
    assert first[0] != second[0] and first[0] != first[2]  # draw_seq and seed both count
    assert first[3] not in (first[0], first[2])  # no seed: keyed by (env, episode)


def test_deepcopy_of_an_attached_variation_is_refused() -> None:
    import copy

    v = _mass()
    clone = copy.deepcopy(v)  # nothing attached: a fresh, independent variation
    assert clone.key == v.key and clone.sampler is not v.sampler
    recorder = vr.VariationRecorder().attach([v])
    with pytest.raises(vr.RecorderStateError, match="copy its cfg instead"):
        copy.deepcopy(v)
    assert copy.deepcopy(v.cfg) == v.cfg
    recorder.detach()
