"""Drawn values pinned bit for bit: a faster hash or inverse CDF must not change one value.

Each test runs twice: drawn with numpy only, and through the compiled kernels (numba,
the ``fast`` extra; skipped without it).

The digests were computed with varirec before the keyed draw was optimized (the values
of every run recorded so far); a change here breaks "replay episode 1234 of env 7" for
every existing dataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pytest

import varirec as vr
from varirec.sampling import portable
from varirec.sampling.accel import compiled_draws
from varirec.sampling.streams import RESET_SEED_STREAM, CounterStream, GeneratorSource

N = 3000
IDS = np.arange(N) * 7 + 3
EPISODES = np.arange(N) % 11
DRAW_SEQ = np.arange(N) % 3

# name: (cfg, keyed digest, keyed with draw_seq digest, Generator digest, first two values)
PINNED = {
    "uniform": (
        vr.UniformCfg(low=0.5, high=2.0),
        ("33d8735b79fc121c", "fbfc4f5421e1c357", "a3bdae99c1e7826a"),
        ["0x1.aed2d7fdc2b9cp+0", "0x1.dc4da905477cdp-1"],
    ),
    "uniform_vec": (
        vr.UniformCfg(low=(0, -1, 2), high=(1, 1, 5), names=("x", "y", "z")),
        ("d044eab65698f4c1", "981c6e4c6b1bc536", "10316d0df82dab01"),
        ["0x1.4624d18af248ap-3", "0x1.e2f7129b7c7c0p-3"],
    ),
    "loguniform": (
        vr.LogUniformCfg(low=1e-3, high=10.0),
        ("2cb22361cf7b7913", "2a137cfb72f08a5b", "16dee26271160e36"),
        ["0x1.56a644f54eeaap-9", "0x1.e7c2997edee45p-10"],
    ),
    "normal": (
        vr.NormalCfg(mean=1.0, std=0.1),
        ("4971549bffbbe028", "91dc90c73c25ef22", "047355c7a0744890"),
        ["0x1.b8d50bc1adcdcp-1", "0x1.0e055b2cf7758p+0"],
    ),
    "normal_vec": (
        vr.NormalCfg(mean=(0.0, 5.0), std=(1.0, 2.0)),
        ("d2a24a0c1aa7772d", "8f8d91487c41e165", "76179862e1948777"),
        ["-0x1.300df3f39880ap-3", "0x1.f3191660363d0p-1"],
    ),
    "truncnormal": (
        vr.TruncNormalCfg(mean=0.0, std=1.0, low=-1.5, high=2.5),
        ("7cdc59f276168696", "4c30e4f64106298c", "953d0b7c8ab74c80"),
        ["-0x1.261ff026667f3p-1", "-0x1.27116ee6dd3d2p-2"],
    ),
    "truncnormal_upper": (
        vr.TruncNormalCfg(mean=0.0, std=1.0, low=1.0, high=4.0),
        ("57b212f887508bfd", "510762f90fb636c6", "3bbb8b9125e28dab"),
        ["0x1.23f1778e0a545p+0", "0x1.26961659b4617p+0"],
    ),
    "constant": (
        vr.ConstantCfg(value=(1.5, 2.5)),
        ("4e9f20c5768a7cb9", "4e9f20c5768a7cb9", "4e9f20c5768a7cb9"),
        ["0x1.8000000000000p+0", "0x1.4000000000000p+1"],
    ),
    "integer": (
        vr.IntegerCfg(low=-2, high=9),
        ("50a60d78ba9759f0", "cf67bf6cbb45bb05", "c00302509d63d900"),
        [-2, 1],
    ),
    "choice": (
        vr.ChoiceCfg(choices=("kitchen", "garage", "office", "lab"), weights=(0.4, 0.3, 0.2, 0.1)),
        ("3b128a0546a3ca26", "866951b25f8b1b2b", "0ee830f1fdaf5ce7"),
        ["garage", "garage"],
    ),
    "bernoulli": (
        vr.BernoulliCfg(p=0.3),
        ("eb1c58d11f77af5a", "9c8d87c73e561cd9", "764256a137459681"),
        [True, False],
    ),
}


@pytest.fixture(autouse=True, params=["numpy", "compiled"])
def _path(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every pinned value, drawn with numpy only and through the compiled kernels."""
    with compiled_draws(request.param == "compiled") as kern:
        if request.param == "compiled" and kern is None:
            pytest.skip("numba is not installed (the `fast` extra), or VARIREC_NO_COMPILE is set")
        yield


def _digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    if a.dtype.kind in "USO":
        return hashlib.sha256("\x1f".join(str(x) for x in a.ravel()).encode()).hexdigest()[:16]
    little = a.astype(a.dtype.newbyteorder("<"))  # the same digest on any machine
    return hashlib.sha256(little.tobytes()).hexdigest()[:16]


def _edge_probabilities() -> np.ndarray:
    """Both branches of the normal quantile, their boundaries and the far tails. The
    tails are spaced with varirec's own ``exp``: numpy's differs in the last bits from
    one CPU to another (its AVX-512 loop is not its AVX2 one), which moved the pinned
    quantiles' inputs, not the quantiles."""
    return np.concatenate(
        [
            [2.0**-1022, 1e-300, 1e-20, 1.3e-11, 1.5e-11, 1e-5, 0.075, 0.0749999, 0.0750001],
            [0.5 - 0.425, 0.5 + 0.425, 0.5, 0.5 + 1e-17, 0.925, 1 - 1e-5, 1 - 2.0**-53],
            [1 - 1e-12],
            np.linspace(1e-6, 1 - 1e-6, 5001),
            portable.exp(-np.linspace(0.01, 600, 3000), np),
            1 - portable.exp(-np.linspace(0.01, 36, 3000), np),
        ]
    )


@pytest.mark.parametrize("name", list(PINNED))
def test_every_kind_draws_the_values_it_always_drew(name: str) -> None:
    cfg, (plain, with_seq, generator), first = PINNED[name]
    stream = CounterStream(11, name)
    sampler = cfg.build(seed=0)
    keyed = sampler._sample(N, stream.keyed(IDS, EPISODES), None)
    assert _digest(keyed) == plain
    seq = sampler._sample(N, stream.keyed(IDS, EPISODES, DRAW_SEQ), None)
    assert _digest(seq) == with_seq
    assert _digest(cfg.build(seed=5)._sample(N, GeneratorSource(5), None)) == generator
    head = keyed.ravel()[:2]
    assert [float(x).hex() if head.dtype.kind == "f" else x.item() for x in head] == first
    # A batch of one is the same value as its row in the batch: no batch-size branch
    # changes a value (a few keys hash in Python ints, a few quantiles are computed in
    # Python floats), with and without draw_seq.
    for i in (0, 2, N - 1):
        rows = slice(i, i + 1)
        one = sampler._sample(1, stream.keyed(IDS[rows], EPISODES[rows]), None)
        assert _digest(one) == _digest(keyed[rows])
        one = sampler._sample(1, stream.keyed(IDS[rows], EPISODES[rows], DRAW_SEQ[rows]), None)
        assert _digest(one) == _digest(seq[rows])


def test_counter_uniforms_and_seeds_are_pinned() -> None:
    u = CounterStream(3, "u").uniforms(IDS, EPISODES, k=4, draw_seq=DRAW_SEQ)
    assert _digest(u) == "d3b310b3e1d94631"
    assert u[0].tolist() == [
        0.7175255228487263,
        0.7037301613085689,
        0.7908211450722527,
        0.13993710168629275,
    ]
    assert _digest(CounterStream(3, RESET_SEED_STREAM).seeds(IDS, EPISODES)) == ("ad3125bc15b21c16")


@pytest.mark.parametrize(
    "convert",
    [
        lambda a: a,
        lambda a: a.astype(np.int32),  # only the low 32 bits of each key enter the hash
        lambda a: a.view(np.uint64),
        lambda a: a.tolist(),
    ],
)
def test_negative_and_wide_keys_of_any_integer_kind_are_pinned(convert) -> None:
    ids = np.array([-5, 2**40 + 3, 3, -(2**40), 2**31, -1])
    episodes = np.array([-1, 2**33 + 5, -(2**35), 7, 2**32 - 1, 0])
    stream = CounterStream(2, "neg")
    u = stream.uniforms(convert(ids), episodes)
    assert _digest(u) == "1f7b0dc7d8831de2"
    assert _digest(stream.uniforms(ids, np.full(6, 5))) == "3c985d1f79be2fe4"
    # Row by row (a few uniforms hash in Python ints): the same low bits of each key.
    for seq in (0, -3):
        wide = stream.uniforms(convert(ids), episodes, k=2, draw_seq=seq)
        if seq == 0:
            np.testing.assert_array_equal(wide[:, :1].view(np.int64), u.view(np.int64))
        for i in range(len(ids)):
            one = stream.uniforms(convert(ids[i : i + 1]), episodes[i : i + 1], 2, seq)
            np.testing.assert_array_equal(one.view(np.int64), wide[i : i + 1].view(np.int64))


def test_a_batch_larger_than_one_hash_block_is_pinned() -> None:
    """Past 8192 values the hash runs block by block, in place; the values do not change."""
    from varirec.sampling.streams import _mix, _to_unit

    n = 20000
    ids, episodes = np.arange(n) * 3 + 1, np.arange(n) % 7
    stream = CounterStream(5, "big")
    assert _digest(stream.uniforms(ids, episodes)) == "6e3196cb20e94a94"
    u = stream.uniforms(ids, episodes, k=3, draw_seq=np.arange(n) % 2)
    assert _digest(u) == "accfdf3554604e57"
    h = (np.arange(3 * n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)).reshape(n, 3)
    assert _digest(_to_unit(_mix(h.copy()))) == "956d353e14ddfc97"
    assert _digest(_to_unit(_mix(h.copy()[:, ::2]))) == "a9fb146afed56e7d"  # a strided view


def test_portable_functions_are_pinned_on_their_branches_and_edges() -> None:
    p = _edge_probabilities()
    z = portable.ndtri(p.copy(), np)
    assert _digest(z) == "f16ee0f0cc176b97"
    assert _digest(portable.exp(np.linspace(-700, 700, 4001), np)) == "f4af946108c48051"
    assert _digest(portable.log(np.exp(np.linspace(-700, 700, 4001)), np)) == "8cfc60455c2558ab"
    # Value by value (a small batch computes in Python floats): every value is the one
    # the whole batch gives it.
    singles = np.array([portable.ndtri(np.array([x]), np)[0] for x in p])
    np.testing.assert_array_equal(singles.view(np.int64), z.view(np.int64))
    pairs = portable.ndtri(p[:16].reshape(8, 2), np)
    np.testing.assert_array_equal(pairs.ravel().view(np.int64), z[:16].view(np.int64))


def test_portable_normal_quantile_is_the_same_in_torch_on_its_edges() -> None:
    torch = pytest.importorskip("torch")
    p = _edge_probabilities()
    z = portable.ndtri(p.copy(), np)
    zt = portable.ndtri(torch.from_numpy(p.copy()), torch).numpy()
    np.testing.assert_array_equal(zt.view(np.int64), z.view(np.int64))


def test_a_float32_quantile_keeps_its_precision_as_before() -> None:
    """Only float64 takes the numpy fast path; float32 computes in float32, as it did."""
    p = _edge_probabilities().astype(np.float32)
    p = p[(p > 0) & (p < 1)]
    z = portable.ndtri(p, np)
    assert z.dtype == np.float32
    assert _digest(z) == "dc56e12e8f31ec9c"
    assert _digest(portable.ndtri(p[:3], np)) == "862951973b1655f4"
