"""Samplers: distributions, the listener template, and bad cfgs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from varirec import (
    BernoulliCfg,
    ChoiceCfg,
    ConstantCfg,
    DesignCfg,
    DrawContext,
    IntegerCfg,
    ListenerError,
    LogUniformCfg,
    NormalCfg,
    SampleEvent,
    TruncNormalCfg,
    UniformCfg,
    cfg_from_dict,
)

N = 20_000


@pytest.mark.parametrize(
    ("cfg", "dist"),
    [
        (UniformCfg(low=-1.0, high=3.0), stats.uniform(-1.0, 4.0)),
        (LogUniformCfg(low=0.01, high=10.0), stats.loguniform(0.01, 10.0)),
        (NormalCfg(mean=1.0, std=0.2), stats.norm(1.0, 0.2)),
        (TruncNormalCfg(mean=0.0, std=1.0, low=-0.5, high=2.0), stats.truncnorm(-0.5, 2.0)),
        (TruncNormalCfg(mean=0.0, std=1.0, low=3.0, high=6.0), stats.truncnorm(3.0, 6.0)),
        (TruncNormalCfg(mean=0.0, std=1.0, low=-6.0, high=-3.0), stats.truncnorm(-6.0, -3.0)),
    ],
    ids=["uniform", "loguniform", "normal", "truncnormal", "truncnormal-upper-tail", "lower-tail"],
)
def test_continuous_distributions_pass_ks(cfg, dist) -> None:
    x = cfg.build(seed=0).sample(N)
    assert x.shape == (N,)
    assert stats.kstest(x, dist.cdf).pvalue > 0.01


@pytest.mark.parametrize(
    ("cfg", "probs"),
    [
        (IntegerCfg(low=2, high=5), {2: 0.25, 3: 0.25, 4: 0.25, 5: 0.25}),
        (
            ChoiceCfg(choices=("a", "b", "c"), weights=(0.5, 0.3, 0.2)),
            {"a": 0.5, "b": 0.3, "c": 0.2},
        ),
        (ChoiceCfg(choices=(0.1, 2.0)), {0.1: 0.5, 2.0: 0.5}),
        (BernoulliCfg(p=0.3), {False: 0.7, True: 0.3}),
    ],
    ids=["integer", "choice-weighted", "choice-numbers", "bernoulli"],
)
def test_discrete_distributions_pass_chi_square(cfg, probs) -> None:
    x = cfg.build(seed=1).sample(N)
    labels = list(probs)
    counts = np.array([(x == lab).sum() for lab in labels])
    assert counts.sum() == N
    assert stats.chisquare(counts, N * np.array(list(probs.values()))).pvalue > 0.01
    np.testing.assert_array_equal(np.asarray(cfg.categories)[cfg.encode(x)], x)


def test_vector_sampler_has_components_and_per_component_bounds() -> None:
    cfg = UniformCfg(low=(0, 10, 100), high=(1, 11, 101), names=("x", "y", "z"))
    x = cfg.build(seed=0).sample(1000)
    assert x.shape == (1000, 3)
    assert np.all(x.min(axis=0) >= [0, 10, 100]) and np.all(x.max(axis=0) <= [1, 11, 101])
    assert [f.name for f in cfg.factor_specs("cube.pos")] == [
        "cube.pos[x]",
        "cube.pos[y]",
        "cube.pos[z]",
    ]
    assert NormalCfg(mean=(0.0, 1.0), std=0.1).component_names == ("0", "1")


def test_constant_and_design() -> None:
    np.testing.assert_array_equal(ConstantCfg(value=2.5).build().sample(3), [2.5, 2.5, 2.5])
    assert ConstantCfg(value=(1, 2)).build().sample(2).shape == (2, 2)
    assert ConstantCfg(value=1.0).factor_specs("k") == []
    design = DesignCfg(
        values=np.array([[1.0, 2.0], [3.0, 4.0]]), base=UniformCfg(low=(0, 0), high=(5, 5))
    )
    sampler = design.build()
    rows = sampler.sample(2, context=DrawContext(sample_ids=np.array([1, 0])))
    np.testing.assert_array_equal(rows, [[3.0, 4.0], [1.0, 2.0]])
    np.testing.assert_array_equal(sampler.sample(3)[:, 0], [1.0, 3.0, 1.0])  # cycles in order
    with pytest.raises(ValueError, match="design rows in \\[0, 2\\)"):
        sampler.sample(1, context=DrawContext(sample_ids=np.array([2])))


def test_factor_specs_describe_salib_distributions() -> None:
    assert UniformCfg(low=1, high=2).factor_specs("a")[0].params == (1.0, 2.0)
    assert LogUniformCfg(low=1, high=2).factor_specs("a")[0].dist == "logunif"
    assert NormalCfg(mean=1, std=2).factor_specs("a")[0].params == (1.0, 2.0)
    tn = TruncNormalCfg(mean=0, std=1, low=-1, high=1).factor_specs("a")[0]
    assert (tn.dist, tn.params) == ("truncnorm", (-1.0, 1.0, 0.0, 1.0))
    ch = ChoiceCfg(choices=("kitchen", "garage")).factor_specs("scene")[0]
    assert (ch.dist, ch.params, ch.categories) == ("unif", (0.0, 1.0), ("kitchen", "garage"))


def test_ppf_maps_unit_design_to_categories() -> None:
    u = np.array([[0.1], [0.6], [0.95]])
    np.testing.assert_array_equal(
        ChoiceCfg(choices=("a", "b", "c"), weights=(0.5, 0.4, 0.1)).ppf(u), ["a", "b", "c"]
    )
    np.testing.assert_array_equal(IntegerCfg(low=0, high=3).ppf(u), [0, 2, 3])


@pytest.mark.parametrize(
    "cfg",
    [
        UniformCfg(low=(0.0, 1.0), high=2.0, names=("a", "b")),
        NormalCfg(mean=1.0, std=0.5),
        ChoiceCfg(choices=("a", "b"), weights=(0.25, 0.75)),
        IntegerCfg(low=1, high=4),
        BernoulliCfg(p=0.2),
        TruncNormalCfg(mean=0, std=1, low=-1, high=1),
        LogUniformCfg(low=0.1, high=1),
        ConstantCfg(value=3.0),
    ],
)
def test_cfg_round_trips_through_dict(cfg) -> None:
    assert cfg_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: UniformCfg(low=2.0, high=1.0), r"UniformCfg.low must be <= high"),
        (lambda: UniformCfg(low=float("nan"), high=1.0), r"UniformCfg.low must be finite"),
        (lambda: UniformCfg(low=(0, 0), high=(1, 1, 1)), r"same length"),
        (
            lambda: UniformCfg(low=(0, 0), high=1, names=("x", "y", "z")),
            r"3 names but .* 2 components",
        ),
        (lambda: UniformCfg(low=0, high=1, names=("x", "x")), r"names must be distinct"),
        (lambda: LogUniformCfg(low=0.0, high=1.0), r"LogUniformCfg.low must be > 0"),
        (lambda: NormalCfg(mean=0.0, std=0.0), r"NormalCfg.std must be > 0"),
        (lambda: NormalCfg(mean=0.0, std=-1.0), r"NormalCfg.std must be > 0"),
        (
            lambda: TruncNormalCfg(mean=0, std=1, low=1, high=0),
            r"TruncNormalCfg.low must be < high",
        ),
        (lambda: TruncNormalCfg(mean=0, std=1, low=50, high=60), r"holds no probability mass"),
        (lambda: ChoiceCfg(choices=()), r"ChoiceCfg.choices must be a non-empty"),
        (lambda: ChoiceCfg(choices=("a", "a")), r"must be distinct"),
        (lambda: ChoiceCfg(choices=("a", 1)), r"all strings or all numbers"),
        (lambda: ChoiceCfg(choices=(1.0, float("nan"))), r"finite numbers \(no NaN or inf\)"),
        (lambda: ChoiceCfg(choices=(1, float("inf"))), r"finite numbers"),
        (lambda: ChoiceCfg(choices=("a", "b"), weights=(0.5, 0.6)), r"summing to 1 .*1\.1"),
        (lambda: ChoiceCfg(choices=("a", "b"), weights=(1.5, -0.5)), r"finite and >= 0"),
        (lambda: ChoiceCfg(choices=("a", "b"), weights=(1.0,)), r"one weight per choice"),
        (lambda: IntegerCfg(low=3, high=1), r"IntegerCfg.low must be <= high"),
        (lambda: IntegerCfg(low=0.5, high=1), r"IntegerCfg.low must be an int"),
        (lambda: IntegerCfg(low=0, high=10**6), r"spans 1000001 integers.*round it in your apply"),
        (lambda: IntegerCfg(low=0, high=2**62), r"at most 10000"),
        (
            lambda: DesignCfg(values=[0.5, np.nan]),
            r"must be finite, got NaN or inf in row\(s\) \[1\]",
        ),
        (lambda: BernoulliCfg(p=1.5), r"BernoulliCfg.p must be a probability"),
        (lambda: BernoulliCfg(p=True), r"BernoulliCfg.p must be a probability .*p=0\.5"),
        (lambda: UniformCfg(low=True), r"UniformCfg.low must be a number, not a bool"),
        (lambda: NormalCfg(mean=0.0, std=[1.0, True]), r"std must be a number, not a bool"),
        (lambda: ChoiceCfg(choices="kitchen"), r"the string 'kitchen' .*choices=\('kitchen',\)"),
        (lambda: ChoiceCfg(choices=("a", "b"), weights="ab"), r"weights must be a sequence"),
        (lambda: ChoiceCfg(choices=("a", "b"), weights=("x", 1)), r"numbers, one per choice"),
        (lambda: ChoiceCfg(choices=([1], [2])), r"all strings or all numbers"),
        (lambda: DesignCfg(values=np.empty(0)), r"DesignCfg.values must be at least one row"),
        # A design row the base cannot draw would be recorded with a label or range it
        # does not have (found by a bad-input probe: -1.0 recorded with label 'a').
        (
            lambda: DesignCfg(values=np.array([-1.0, 0.5]), base=ChoiceCfg(choices=("a", "b"))),
            r"must be one of the base's choices \['a', 'b'\], got -1.0 in row\(s\) \[0, 1\]",
        ),
        (
            lambda: DesignCfg(values=np.array([0.5, 5.0]), base=UniformCfg(low=0, high=1)),
            r"within the base's \[low, high\], got 5.0 in row\(s\) \[1\]",
        ),
        (
            lambda: DesignCfg(values=np.array([2, 3.5]), base=IntegerCfg(low=2, high=5)),
            r"\[low, high\] and integers, got 3.5",
        ),
        (lambda: DesignCfg(values=np.array(["a", "b"])), r"DesignCfg.values must be numbers"),
        (lambda: DesignCfg(values=[[1.0, 2.0], [3.0]]), r"must be rows of one shape"),
        (lambda: cfg_from_dict({"kind": "gamma"}), r"unknown sampler kind 'gamma'"),
        (lambda: cfg_from_dict({"kind": "uniform", "hi": 1}), r"no field\(s\) \['hi'\]"),
        (lambda: cfg_from_dict({"kind": "design", "rows": 3}), r"rebuilt from its run's design"),
    ],
)
def test_bad_cfgs_raise_naming_field_and_fix(make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make()


class Recording:
    """A listener object with a before hook."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def before_sample(self, sampler, n, env_ids, context) -> None:
        self.calls.append(f"before:{n}")

    def __call__(self, event: SampleEvent) -> None:
        self.calls.append(f"after:{len(event.values)}")


def test_listeners_are_notified_around_the_draw_with_the_event() -> None:
    sampler = UniformCfg(low=0, high=1).build(seed=0)
    obj = Recording()
    events: list[SampleEvent] = []
    sampler.add_listener(obj)
    handle = sampler.add_listener(events.append)
    ctx = DrawContext(variation="v", phase="reset")
    values = sampler.sample(env_ids=[3, 5], context=ctx)
    assert obj.calls == ["before:2", "after:2"]
    (event,) = events
    assert event.sampler is sampler and event.values is values and event.context is ctx
    np.testing.assert_array_equal(event.env_ids, [3, 5])
    assert sampler.sample(1, env_ids=None) is not None and events[-1].env_ids is None
    sampler.remove_listener(handle)
    sampler.sample(2)
    assert len(events) == 2
    with pytest.raises(ListenerError, match="is not attached"):
        sampler.remove_listener(handle)
    with pytest.raises(TypeError, match="must be callable"):
        sampler.add_listener(42)  # type: ignore[arg-type]


def test_raising_listener_does_not_stop_the_others_then_propagates() -> None:
    sampler = NormalCfg(mean=0, std=1).build(seed=0)
    seen: list[np.ndarray] = []

    def boom(event: SampleEvent) -> None:
        raise RuntimeError("listener failed")

    def boom2(event: SampleEvent) -> None:
        raise KeyError("second")

    sampler.add_listener(boom)
    sampler.add_listener(lambda e: seen.append(e.values))
    sampler.add_listener(boom2)
    with pytest.raises(RuntimeError, match="listener failed") as info:
        sampler.sample(3)
    assert len(seen) == 1 and seen[0].shape == (3,)
    assert any("also raised" in note for note in info.value.__notes__)
    # The sampler still works and keeps all its listeners.
    assert len(sampler.listeners) == 3


def test_sample_checks_n_against_env_ids() -> None:
    with pytest.raises(ValueError, match=r"`n` \(3\) must equal len\(env_ids\) \(2\)"):
        UniformCfg().build().sample(3, env_ids=[0, 1])


def test_weights_tolerate_rounding() -> None:
    w = (1 / 3, 1 / 3, 1 / 3)
    assert math.isclose(sum(ChoiceCfg(choices=(1, 2, 3), weights=w).probs), 1.0)


def test_a_uniform_range_wider_than_float64_is_refused() -> None:
    """Every draw of U(-1e308, 1e308) was inf (found by a bad-input probe)."""
    with pytest.raises(ValueError, match=r"UniformCfg.high must be within a finite float64 span"):
        UniformCfg(low=-1e308, high=1e308)
