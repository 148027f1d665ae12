"""The compiled kernels (numba) draw the numpy path's values bit for bit.

Each test draws the same keys twice, once through :mod:`varirec.sampling.compiled` and
once with numpy only (``compiled_draws(False)``, the reference), and compares the bits.
The pinned digests of ``tests/test_pinned_draws.py`` run under both as well.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import varirec as vr
from varirec.sampling import portable
from varirec.sampling.accel import NO_COMPILE_ENV, compiled_draws
from varirec.sampling.batch_draw import ColumnPlan
from varirec.sampling.streams import CounterStream

pytest.importorskip("numba")


@pytest.fixture(autouse=True)
def _needs_kernels() -> None:
    with compiled_draws(True) as kern:
        if kern is None:
            pytest.skip(f"the compiled kernels are off ({NO_COMPILE_ENV} or a failed compile)")


class _Counted:
    """The kernels, noting the name of each call made through them."""

    def __init__(self, kern: object) -> None:
        self.kern, self.names = kern, []

    @property
    def calls(self) -> int:
        return len(self.names)

    def __getattr__(self, name: str) -> object:
        fn = getattr(self.kern, name)

        def call(*args: object) -> object:
            self.names.append(name)
            return fn(*args)

        return call


def _both(fn, compiled: bool = True):
    """``fn()`` through the kernels, and with numpy only; the first must call a kernel
    (``compiled``), else "the kernels' bits equal numpy's" would compare numpy with
    itself where a path falls back to numpy unseen."""
    from varirec.sampling import accel

    with compiled_draws(True) as kern:
        assert kern is not None
        spy = accel._kernels = _Counted(kern)
        fast = fn()
    assert spy.calls > 0 or not compiled
    with compiled_draws(False):
        slow = fn()
    return fast, slow


def _same_bits(a: object, b: object) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    if a.dtype.kind == "f":
        np.testing.assert_array_equal(a.view(np.int64), b.view(np.int64))
    else:
        np.testing.assert_array_equal(a, b)


RNG = np.random.default_rng(2026)
WIDE = RNG.integers(-(2**63), 2**63 - 1, 4000, dtype=np.int64)


@pytest.mark.parametrize("n", [1, 2, 3, 64, 4000])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_keyed_uniforms_are_the_numpy_bits_for_any_keys(n: int, k: int) -> None:
    ids, episodes = WIDE[:n], np.roll(WIDE, 7)[:n]
    seq = RNG.integers(0, 2**20, n)
    for key in ("cube.mass", "#reset_seed", ""):
        stream = CounterStream(int(RNG.integers(-(2**40), 2**40)), key)
        for episodes_, seq_ in ((episodes, 0), (episodes, seq), (3, seq), (episodes, 5), (0, 0)):
            fast, slow = _both(lambda e=episodes_, s=seq_, st=stream: st.uniforms(ids, e, k, s))
            _same_bits(fast, slow)
            assert ((fast > 0) & (fast < 1)).all()


@pytest.mark.parametrize(
    "convert",
    [
        lambda a: a.astype(np.int32),
        lambda a: a.view(np.uint64),
        lambda a: a.astype(np.uint32),
        lambda a: a.tolist(),
        lambda a: a[::-1].copy()[::-1],  # a strided view
    ],
)
def test_keys_of_any_integer_kind_hash_as_in_numpy(convert) -> None:
    ids, episodes = WIDE[:50], WIDE[50:100]
    stream = CounterStream(4, "kinds")
    fast, slow = _both(lambda: stream.uniforms(convert(ids), convert(episodes), 3, convert(ids)))
    _same_bits(fast, slow)
    fast, slow = _both(lambda: stream.uniforms(ids, np.int64(7), 2, np.uint8(3)))
    _same_bits(fast, slow)
    fast, slow = _both(lambda: stream.seeds(ids, episodes))
    _same_bits(fast, slow)


def _edges() -> np.ndarray:
    return np.concatenate(
        [
            [2.0**-1022, 1e-300, 1.3e-11, 1.5e-11, 0.075, 0.0749999, 0.0750001, 0.5],
            [0.5 + 1e-17, 0.925, 0.9250001, 0.9249999, 1 - 1e-12, 1 - 2.0**-53],
            np.nextafter(0.075, [0.0, 1.0]),
            np.nextafter(0.925, [0.0, 1.0]),
            RNG.random(20000),
            np.exp(-RNG.uniform(0, 700, 20000)),  # both tails, s > 5 included
            1 - np.exp(-RNG.uniform(0, 36, 20000)),
        ]
    )


def test_quantile_exp_and_log_are_the_numpy_bits_on_every_branch() -> None:
    p = _edges()
    for shaped in (p, p[:-2].reshape(-1, 4), p[::3], p[:1], p[5:6].reshape(())):
        _same_bits(*_both(lambda s=shaped: portable.ndtri(s, np)))
        _same_bits(*_both(lambda s=shaped: portable.log(s, np)))
    x = np.concatenate([np.linspace(-700, 700, 4001), RNG.uniform(-708, 709, 20000)])
    _same_bits(*_both(lambda: portable.exp(x, np)))
    _same_bits(*_both(lambda: portable.exp(x[:-1].reshape(-1, 2)[:, ::-1], np)))
    y = np.concatenate([np.exp(np.linspace(-700, 700, 4001)), p, 1 - p, [1.0, 2.0**-1022]])
    _same_bits(*_both(lambda: portable.log(y, np)))
    # The reference itself: the quantile of its own values, against scipy (an independent
    # implementation), within the rounding of AS 241.
    from scipy import special

    z, _ = _both(lambda: portable.ndtri(p, np))
    np.testing.assert_allclose(z, special.ndtri(p), rtol=1e-14, atol=1e-15)


CFGS = {
    "uniform": vr.UniformCfg(low=0.5, high=2.0),
    "uniform_vec": vr.UniformCfg(low=(0, -1, 2), high=(1, 1, 5)),
    "loguniform": vr.LogUniformCfg(low=1e-3, high=(10.0)),
    "loguniform_vec": vr.LogUniformCfg(low=(1e-3, 1.0), high=(10.0, 3.0)),
    "normal": vr.NormalCfg(mean=1.0, std=0.1),
    "normal_vec": vr.NormalCfg(mean=(0.0, 5.0), std=(1.0, 2.0)),
    "truncnormal": vr.TruncNormalCfg(mean=0.0, std=1.0, low=-1.5, high=2.5),
    "truncnormal_upper": vr.TruncNormalCfg(mean=0.0, std=1.0, low=1.0, high=4.0),
    "truncnormal_far": vr.TruncNormalCfg(mean=0.0, std=1.0, low=-9.0, high=-6.0),
    "constant": vr.ConstantCfg(value=(1.5, 2.5)),
    "integer": vr.IntegerCfg(low=-2, high=9),
    "choice": vr.ChoiceCfg(choices=("a", "b", "c"), weights=(0.5, 0.3, 0.2)),
    "choice_numbers": vr.ChoiceCfg(choices=(1.5, 2.5)),
    "bernoulli": vr.BernoulliCfg(p=0.3),
}


@pytest.mark.parametrize("name", list(CFGS))
@pytest.mark.parametrize("n", [1, 64, 3000])
def test_every_kind_draws_the_numpy_bits_alone(name: str, n: int) -> None:
    cfg = CFGS[name]
    sampler, stream = cfg.build(seed=0), CounterStream(9, name)
    ids, episodes, seq = WIDE[:n], WIDE[1 : n + 1] % 97, np.arange(n) % 4
    for draw_seq in (0, seq):
        keyed = stream.keyed(ids, episodes, draw_seq)
        fast, slow = _both(
            lambda keyed=keyed: sampler._sample(n, keyed, None), compiled=name != "constant"
        )
        _same_bits(fast, slow)


@pytest.mark.parametrize("n", [1, 64, 3000])
def test_a_reset_batch_of_every_kind_is_the_numpy_bits_and_the_solo_draws(n: int) -> None:
    # Kinds interleaved, so that a kind's columns are not adjacent (a gather, not a view).
    names = [*CFGS, "normal", "uniform", "loguniform", "truncnormal_upper"]
    cfgs = [CFGS[x] for x in names]
    streams = [CounterStream(1, f"{x}{i}") for i, x in enumerate(names)]
    plan = ColumnPlan(cfgs, [s.base for s in streams])
    ids, episodes = np.sort(RNG.choice(100000, n, replace=False)), RNG.integers(0, 50, n)
    seqs = [np.arange(n) % 3 if i % 2 else 0 for i in range(len(cfgs))]
    for draw_seq in ([0] * len(cfgs), seqs):
        fast, slow = _both(lambda d=draw_seq: plan.draw(ids, episodes, d, np))
        for cfg, stream, a, b, d in zip(cfgs, streams, fast, slow, draw_seq, strict=True):
            _same_bits(a, b)
            with compiled_draws(True):
                solo = cfg.build()._sample(n, stream.keyed(ids, episodes, d), None)
            _same_bits(a, solo)
    # The matrix of an all-continuous plan (the null manager's reset), columns in place.
    cont = [CFGS[x] for x in ("uniform", "uniform_vec", "normal", "loguniform", "uniform")]
    plan = ColumnPlan(cont, [s.base for s in streams[: len(cont)]])
    assert plan.continuous
    fast, slow = _both(lambda: plan.draw_columns(ids, episodes, None, np)[1])
    _same_bits(fast, slow)


_CONTINUOUS = [n for n in CFGS if n.split("_")[0] in ("uniform", "loguniform", "normal",
               "truncnormal", "constant")]  # fmt: skip


@pytest.mark.parametrize("n", [1, 64, 3000])
def test_the_one_pass_draw_of_a_continuous_plan_is_the_numpy_bits(n: int) -> None:
    """A reset's first draws of continuous kinds go through ``plan_columns`` alone (the
    hash and every inverse CDF in one kernel call): the numpy path's bits, in every
    column, with the kinds interleaved and past every branch of the quantile."""
    from varirec.sampling import accel

    names = [*_CONTINUOUS, "normal", "uniform", "truncnormal_far", "loguniform"]
    cfgs = [CFGS[x] for x in names]
    streams = [CounterStream(5, f"{x}{i}") for i, x in enumerate(names)]
    plan = ColumnPlan(cfgs, [s.base for s in streams])
    assert plan.continuous
    ids, episodes = WIDE[:n], np.roll(WIDE, 3)[:n]  # any int64 keys
    with compiled_draws(True) as kern:
        spy = accel._kernels = _Counted(kern)
        fast = plan.draw_columns(ids, episodes, None, np)[1]
    assert spy.names == ["plan_columns"]
    with compiled_draws(False):
        slow = plan.draw_columns(ids, episodes, None, np)[1]
    _same_bits(fast, slow)
    for j, (cfg, stream) in enumerate(zip(cfgs, streams, strict=True)):
        s, e = plan._bounds[j]
        with compiled_draws(False):
            solo = cfg.build()._sample(n, stream.keyed(ids, episodes, 0), None)
        _same_bits(fast[:, s:e].reshape(solo.shape), solo)
    # The kind codes the plan writes are the kernel's.
    from varirec.sampling import batch_draw, compiled

    codes = {kind: code for kind, (code, _) in batch_draw._FUSED.items()}
    assert codes == {
        "uniform": compiled.UNIFORM,
        "loguniform": compiled.LOGUNIFORM,
        "gauss": compiled.GAUSS,
        "constant": compiled.CONSTANT,
    }


def test_a_subclass_of_normal_draws_through_its_ppf_as_in_numpy() -> None:
    """``NormalCfg.ppf`` of a subclass (no ``low`` / ``high``) is the plain normal."""
    from dataclasses import dataclass
    from typing import ClassVar

    from varirec.sampling import cfg_base

    @dataclass(frozen=True, kw_only=True)
    class MyNormal(vr.NormalCfg):
        kind: ClassVar[str] = "test_my_normal"  # its own kind: "normal" stays NormalCfg

    cfg_base._KINDS.pop(MyNormal.kind)

    u = np.concatenate([RNG.random(200), [1e-300, 1 - 2.0**-53]]).reshape(-1, 2)
    cfg = MyNormal(mean=(1.0, -2.0), std=(2.0, 0.5))
    fast, slow = _both(lambda: cfg.ppf(u))
    _same_bits(fast, slow)
    _same_bits(fast, vr.NormalCfg(mean=(1.0, -2.0), std=(2.0, 0.5)).ppf(u))


def _run(statement: str, **env: str) -> str:
    import os

    return subprocess.run(
        [sys.executable, "-c", statement],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout.strip()


def test_numba_loads_on_the_first_draw_only_and_the_env_var_keeps_numpy() -> None:
    probe = "import sys, varirec; a = 'numba' in sys.modules; "
    draw = "varirec.CounterStream(0, 'k').uniforms([1, 2], [0, 0]); "
    show = "print(a, 'numba' in sys.modules, varirec.sampling.accel.kernels() is not None)"
    assert _run(probe + draw + show, **{NO_COMPILE_ENV: ""}) == "False True True"
    assert _run(probe + draw + show, **{NO_COMPILE_ENV: "1"}) == "False False False"


def test_numpy_draws_go_through_the_kernels_when_they_are_on(monkeypatch) -> None:
    """The wiring: each numpy path hands its work to its kernel (a counting wrapper
    around the real kernels), and no kernel runs when they are off."""
    from types import SimpleNamespace

    from varirec.sampling import accel

    with compiled_draws(True) as kern:
        calls: dict[str, int] = {}

        def counted(name: str):
            def call(*args: object) -> object:
                calls[name] = calls.get(name, 0) + 1
                return getattr(kern, name)(*args)

            return call

        names = [n for n in kern.__all__]
        spy = SimpleNamespace(**{n: counted(n) for n in names})
        monkeypatch.setattr(accel, "_kernels", spy)
        ids, eps = np.arange(5), np.zeros(5, np.int64)
        CFGS["normal"].build()._sample(5, CounterStream(0, "n").keyed(ids, eps), None)
        CFGS["loguniform"].build()._sample(5, CounterStream(0, "l").keyed(ids, eps), None)
        cfgs = [CFGS[x] for x in ("uniform", "loguniform", "truncnormal")]
        ColumnPlan(cfgs, [np.uint64(i) for i in range(3)]).draw(ids, eps, [0, 0, 0], np)
        portable.ndtri(np.full(3, 0.2), np)
        portable.log(np.full(3, 0.2), np)
        assert calls == {
            "keyed_uniforms": 2, "gauss_flat": 1, "gauss_columns": 1, "exp": 1,
            "keyed_columns": 1, "affine_columns": 1, "exp_columns": 1, "ndtri": 1, "log": 1,
        }  # fmt: skip
        calls.clear()
        monkeypatch.setattr(accel, "_kernels", None)
        CFGS["normal"].build()._sample(5, CounterStream(0, "n").keyed(ids, eps), None)
        assert calls == {}


def test_a_kernel_without_a_writable_cache_compiles_in_memory() -> None:
    """numba refuses ``cache=True`` where it finds no cache directory (a read-only
    install; here a function with no source file); the kernel then compiles uncached."""
    import numba

    from varirec.sampling.compiled import jit

    namespace: dict[str, object] = {}
    exec("def twice(x):\n    return 2 * x\n", namespace)  # no file: no cache locator
    with pytest.raises(RuntimeError, match="cannot cache"):
        numba.njit(cache=True)(namespace["twice"])
    assert jit(namespace["twice"])(21) == 42
