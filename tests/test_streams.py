"""Reproducible draws: a value depends only on its keys, never on the batch around it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from varirec import CounterStream, DrawContext, NormalCfg, UniformCfg, Variation, VariationCfg
from varirec.sampling.streams import GeneratorSource, as_generator


def _reset_draws(num_envs: int, order: str, seed: int = 7) -> dict[tuple[int, int], np.ndarray]:
    """Draw 3 episodes for every env, resetting envs in the given order."""
    v = Variation(
        "cube.pos",
        VariationCfg(sampler=UniformCfg(low=(0, 0, 0), high=(1, 2, 3), names=("x", "y", "z"))),
    )
    v.seed(seed)
    out: dict[tuple[int, int], np.ndarray] = {}
    rng = np.random.default_rng(123)
    for episode in range(3):
        ids = np.arange(num_envs)
        if order == "one_at_a_time":
            batches = [np.array([i]) for i in rng.permutation(ids)]
        elif order == "random_batches":
            batches = np.array_split(rng.permutation(ids), 3)
        else:
            batches = [ids]
        for batch in batches:
            ctx = DrawContext(episodes=np.full(len(batch), episode))
            values = v.draw(env_ids=batch, context=ctx)
            for i, env in enumerate(batch):
                out[(int(env), episode)] = values[i]
    return out


@pytest.mark.parametrize("order", ["one_at_a_time", "random_batches", "all"])
def test_value_depends_only_on_keys_not_num_envs_or_order(order: str) -> None:
    small = _reset_draws(4, order)
    large = _reset_draws(64, "all")
    assert small.keys() <= large.keys()
    for key, value in small.items():
        np.testing.assert_array_equal(value, large[key])


def test_different_keys_give_different_values() -> None:
    s = CounterStream(0, "a")
    env = np.arange(1000)
    u0 = s.uniforms(env, np.zeros(1000, int), k=3)
    u1 = s.uniforms(env, np.ones(1000, int), k=3)
    u_seq = s.uniforms(env, np.zeros(1000, int), k=3, draw_seq=1)
    other = CounterStream(0, "b").uniforms(env, np.zeros(1000, int), k=3)
    other_seed = CounterStream(1, "a").uniforms(env, np.zeros(1000, int), k=3)
    all_u = np.concatenate([u0, u1, u_seq, other, other_seed]).ravel()
    assert len(np.unique(all_u)) == all_u.size
    # Components of one row differ, and a batch of mixed draw_seq matches per-element.
    assert np.all(u0[:, 0] != u0[:, 1])
    mixed = s.uniforms(env[:2], np.zeros(2, int), k=1, draw_seq=np.array([0, 1]))
    assert mixed[0, 0] == u0[0, 0]
    assert mixed[1, 0] == s.uniforms(env[1:2], np.zeros(1, int), k=1, draw_seq=1)[0, 0]


def test_counter_uniforms_are_uniform_and_open() -> None:
    s = CounterStream(42, "light.intensity")
    u = s.uniforms(np.arange(20000), np.repeat(np.arange(4), 5000), k=2).ravel()
    assert u.min() > 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 0.01
    # neighbouring keys are not correlated
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.03


def test_counter_normals_pass_ks_against_scipy() -> None:
    v = Variation("g", VariationCfg(sampler=NormalCfg(mean=2.0, std=0.5)))
    v.seed(0)
    x = v.draw(env_ids=np.arange(5000), context=DrawContext(episodes=np.zeros(5000, int)))
    assert stats.kstest(x, stats.norm(2.0, 0.5).cdf).pvalue > 0.01


def test_generator_source_and_seed_zero_is_a_seed() -> None:
    a = GeneratorSource(0).uniforms(5, 2)
    b = GeneratorSource(0).uniforms(5, 2)
    c = GeneratorSource(1).uniforms(5, 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all((a > 0) & (a < 1))
    with pytest.raises(TypeError, match="`seed` must be an int"):
        as_generator("0")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`seed` must be an int"):
        CounterStream("0", "k")  # type: ignore[arg-type]


def test_keyed_source_checks_row_count() -> None:
    with pytest.raises(ValueError, match="len\\(env_ids\\)"):
        CounterStream(0, "k").keyed(np.arange(3), np.zeros(3, int)).uniforms(4, 1)


def test_the_largest_hash_gives_a_uniform_below_one() -> None:
    """(2**53 - 1 + 0.5) * 2**-53 rounds to 1.0, where a normal quantile is +inf."""
    from varirec.sampling.streams import _BELOW_ONE, _to_unit

    u = _to_unit(np.array([2**64 - 1, 0], dtype=np.uint64))
    assert u[0] == _BELOW_ONE < 1.0
    assert u[1] == 0.5 * 2.0**-53  # the rest is untouched
    assert np.isfinite(NormalCfg(mean=0, std=1).ppf(u.reshape(-1, 1))).all()


def test_a_generator_at_its_largest_draw_stays_below_one() -> None:
    class Top(np.random.Generator):
        def random(self, size=None):  # the largest value numpy's random() can return
            return np.full(size, 1.0 - 2.0**-53)

    source = GeneratorSource(Top(np.random.PCG64(0)))
    assert source.uniforms(2, 1).max() < 1.0
