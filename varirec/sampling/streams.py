"""Sources of uniform random numbers that samplers push through inverse CDFs.

- :class:`GeneratorSource` — plain draws from a :class:`numpy.random.Generator`.
- :class:`CounterStream` — *reproducible* draws: the uniform for
  ``(run seed, variation key, env_id, episode, draw_seq, component)`` is a hash of
  those keys, so it does not depend on ``num_envs``, on the order of resets, or on
  which other envs reset in the same call. This is what makes "replay episode 1234
  of env 7" possible.

Every source hands out uniforms in the *open* interval (0, 1), so inverse CDFs
never return infinities.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any, Protocol

import numpy as np

from varirec.sampling.accel import kernels
from varirec.sampling.constants import BELOW_ONE, GOLDEN, M1, M2, SECOND, TO_UNIT

__all__ = [
    "DESIGN_SEED_STREAM",
    "INTERVAL_TIMER_STREAM",
    "RESET_SEED_STREAM",
    "CounterStream",
    "GeneratorSource",
    "KeyedUniforms",
    "UniformSource",
    "as_generator",
]

# Streams of varirec's own draws. A variation key cannot start with "#", so no
# variation ever shares their uniforms.
RESET_SEED_STREAM = "#reset_seed"
"""Reset seeds of (env_id, episode), when nothing else gives one."""
DESIGN_SEED_STREAM = "#design_seed"
"""Reset seeds of (base sample or design row, replicate) in design-driven studies."""
INTERVAL_TIMER_STREAM = "#interval_timer"
"""Steps between interval-mode draws."""

# SplitMix64 constants (Steele, Lea & Flood 2014, doi:10.1145/2660193.2660195).
_GOLDEN, _SECOND, _M1, _M2 = (np.uint64(c) for c in (GOLDEN, SECOND, M1, M2))
_S11, _S16, _S27, _S30, _S31, _S32 = (np.uint64(s) for s in (11, 16, 27, 30, 31, 32))
_LOW32 = np.uint64(0xFFFFFFFF)
_TO_UNIT = TO_UNIT
_BELOW_ONE = BELOW_ONE


class UniformSource(Protocol):
    """Anything that hands out a ``(n, k)`` array of uniforms in (0, 1)."""

    def uniforms(self, n: int, k: int) -> np.ndarray: ...


def as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """Normalize a seed argument; ``0`` is a seed like any other (never ``if seed:``)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and not isinstance(seed, int | np.integer):
        raise TypeError(f"`seed` must be an int, a numpy Generator or None, got {seed!r}")
    return np.random.default_rng(seed)


class GeneratorSource:
    """Uniforms from a numpy Generator: fast, not keyed, reproducible only in call order.

    >>> GeneratorSource(0).uniforms(2, 1).shape
    (2, 1)
    """

    __slots__ = ("rng",)

    def __init__(self, seed: int | np.random.Generator | None = None) -> None:
        self.rng = as_generator(seed)

    def uniforms(self, n: int, k: int) -> np.ndarray:
        u = self.rng.random((n, k))
        u += 2.0**-54  # [0, 1) -> (0, 1): no -inf from an inverse CDF
        np.minimum(u, _BELOW_ONE, out=u)  # (1 - 2**-53) + 2**-54 rounds to 1.0: no +inf
        return u


_CHUNK = 8192
"""Elements per pass over a large hash array: a block and its scratch stay in cache, and
the scratch (64 KiB) stays below malloc's mmap threshold (a fresh mapping costs a page
fault per 4 KiB, more than the arithmetic)."""
_I64 = np.dtype(np.int64)


def _mix_block(z: np.ndarray, tmp: np.ndarray | None) -> None:
    if tmp is None:
        z ^= z >> _S30
        z *= _M1
        z ^= z >> _S27
        z *= _M2
        z ^= z >> _S31
        return
    np.right_shift(z, _S30, out=tmp)
    z ^= tmp
    z *= _M1
    np.right_shift(z, _S27, out=tmp)
    z ^= tmp
    z *= _M2
    np.right_shift(z, _S31, out=tmp)
    z ^= tmp


def _unit_block(h: np.ndarray) -> None:
    """1-D ``h`` to uniforms in place: its memory then holds float64 (see :func:`_to_unit`)."""
    h >>= _S11
    u = h.view(np.float64)
    np.copyto(u, h.view(np.int64), casting="unsafe")  # exact: h < 2**53; same element
    u += 0.5
    u *= _TO_UNIT
    # (2**53 - 1 + 0.5) * 2**-53 rounds to 1.0, where an inverse CDF is infinite.
    np.minimum(u, _BELOW_ONE, out=u)


def _mix(z: np.ndarray) -> np.ndarray:
    """The SplitMix64 finalizer, in place on a uint64 array (wrapping arithmetic)."""
    if z.size <= _CHUNK or not z.flags.c_contiguous:
        _mix_block(z, None)
        return z
    flat = z.reshape(-1)
    tmp = np.empty(_CHUNK, np.uint64)
    for i in range(0, flat.size, _CHUNK):
        block = flat[i : i + _CHUNK]
        _mix_block(block, tmp[: block.size])
    return z


def _as_u64(a: np.ndarray | int, n: int) -> np.ndarray:
    """``a`` (an int, or ``n`` ints) as a fresh or viewed uint64 array of length ``n``."""
    if isinstance(a, np.ndarray) and a.dtype == _I64 and a.shape == (n,):
        return a.view(np.uint64)
    return np.broadcast_to(np.asarray(a, dtype=np.int64), (n,)).astype(np.uint64)


_SCALAR_MAX = 4
"""Up to this many uniforms, Python integers hash faster than numpy's 18 calls (about
half a microsecond each, whatever the size; a key's hash in Python ints costs one or two)."""
_MASK = (1 << 64) - 1


def _mix_int(z: int) -> int:
    """:func:`_mix` on one Python int (wrapping made explicit by the mask)."""
    z ^= z >> 30
    z = (z * M1) & _MASK
    z ^= z >> 27
    z = (z * M2) & _MASK
    return z ^ (z >> 31)


def _listed(a: Any, n: int) -> list[Any]:
    """``n`` keys as a list: one per row, or one for every row."""
    if isinstance(a, np.ndarray):
        return a.tolist() if a.ndim else [a.item()] * n
    return list(a) if isinstance(a, list | tuple) else [a] * n


def _scalar_uniforms(
    base: int, env_ids: Any, episodes: Any, draw_seq: Any, n: int, k: int
) -> np.ndarray:
    """The ``(n, k)`` keyed uniforms of :meth:`KeyedUniforms.uniforms`, key by key in
    Python ints and floats: the same integer hash, and the same IEEE-754 operations
    (the float of ``h >> 11`` is exact, then ``+ 0.5``, ``* 2**-53``, the clamp)."""
    out = []
    keys = (_listed(a, n) for a in (env_ids, episodes, draw_seq))
    for env, episode, seq in zip(*keys, strict=True):
        word = ((int(env) & 0xFFFFFFFF) << 32) | (int(episode) & 0xFFFFFFFF)
        h = _mix_int(((word * GOLDEN) & _MASK) ^ base)
        for c in range(k):
            extra = (((int(seq) & _MASK) << 16) & _MASK) | c
            hc = h if extra == 0 else _mix_int(h ^ ((extra * SECOND) & _MASK))
            out.append(min((float(hc >> 11) + 0.5) * _TO_UNIT, _BELOW_ONE))
    return np.array(out).reshape(n, k)


# Where the low and the high 32 bits of a uint64 lie, seen as two uint32.
_LO, _HI = (0, 1) if sys.byteorder == "little" else (1, 0)


def _key_words(env_ids: np.ndarray, episodes: np.ndarray | int, n: int) -> np.ndarray:
    """``(env_ids << 32) | (episodes & 0xFFFFFFFF)`` as a fresh uint64 array."""
    if (
        type(episodes) is np.ndarray
        and env_ids.shape == episodes.shape == (n,)
        and env_ids.dtype.kind in "iu"
        and episodes.dtype.kind in "iu"
    ):  # two casting copies into the halves: the cast keeps the low 32 bits
        w = np.empty((n, 2), np.uint32)
        w[:, _LO] = episodes
        w[:, _HI] = env_ids
        return w.view(np.uint64).reshape(n)
    word = _as_u64(env_ids, n) << _S32
    word |= _as_u64(episodes, n) & _LOW32
    return word


def _to_unit(h: np.ndarray) -> np.ndarray:
    """Uniforms in (0, 1) from the top 53 bits of uint64 hashes ``h`` (consumed): in
    place where ``h`` is contiguous (the result is its memory, read as float64)."""
    if h.size <= _CHUNK:  # few elements: the fewest numpy calls
        h >>= _S11
        u = h.astype(np.float64)
        u += 0.5
        u *= _TO_UNIT
        np.minimum(u, _BELOW_ONE, out=u)  # as in _unit_block
        return u
    if not h.flags.c_contiguous:
        h = np.ascontiguousarray(h)
    flat = h.reshape(-1)
    for i in range(0, flat.size, _CHUNK):
        _unit_block(flat[i : i + _CHUNK])
    return h.view(np.float64)


_ZERO_KEY = np.zeros(1, np.int64)
"""The kernel's key 0 for every row (never written)."""


def _key_arg(a: Any, n: int) -> np.ndarray | None:
    """A key as the kernel takes it: one int64 per row, or one for every row (an array
    of one); None for what the numpy path should judge (floats, a wrong length, an int
    past int64)."""
    if type(a) is np.ndarray and a.dtype == _I64 and a.shape == (n,):
        return a  # the usual case: no conversion
    if type(a) is int:
        if a == 0:
            return _ZERO_KEY
        return np.array([a], np.int64) if -(2**63) <= a < 2**63 else None
    a = np.asarray(a)
    if a.dtype.kind not in "iu" or not (a.shape == (n,) or (a.size == 1 and a.ndim <= 1)):
        return None
    return a.reshape(-1).astype(np.int64)  # keeps the low 64 bits: the bits the hash reads


def _compiled_uniforms(
    kern: Any, base: np.uint64, env_ids: Any, episodes: Any, draw_seq: Any, n: int, k: int
) -> np.ndarray | None:
    """:meth:`KeyedUniforms.uniforms` in one compiled call, or None (then numpy)."""
    env, ep, seq = _key_arg(env_ids, n), _key_arg(episodes, n), _key_arg(draw_seq, n)
    if env is None or len(env) != n or ep is None or seq is None:
        return None
    out = np.empty((n, k))
    kern.keyed_uniforms(base, env, ep, seq, out)
    return out


class CounterStream:
    """The reproducible uniforms of one variation in one run.

    Args:
        seed: the run seed.
        key: the variation key (``"cube.mass"``).

    The hash packs ``env_id`` and ``episode`` into one 64-bit word (32 bits each)
    and runs one SplitMix64 round; a second round mixes in ``draw_seq`` and the
    component index when either is non-zero. Values are a pure function of the keys.

    >>> s = CounterStream(seed=0, key="cube.mass")
    >>> a = s.uniforms(np.array([3, 7]), np.array([0, 5]), k=1)
    >>> b = s.uniforms(np.array([7]), np.array([5]), k=1)
    >>> bool(a[1, 0] == b[0, 0])
    True
    """

    __slots__ = ("base", "key", "seed")

    def __init__(self, seed: int, key: str) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise TypeError(
                f"`seed` must be an int, got {seed!r} ({type(seed).__name__}); e.g. seed=0"
            )
        self.seed = int(seed)
        self.key = key
        digest = hashlib.blake2b(f"{self.seed}\x1f{key}".encode(), digest_size=8).digest()
        self.base = np.uint64(int.from_bytes(digest, "little"))

    def __repr__(self) -> str:
        return f"CounterStream(seed={self.seed}, key={self.key!r})"

    def seeds(self, keys: np.ndarray, episodes: np.ndarray) -> np.ndarray:
        """Reproducible reset seeds in ``[0, 2**31)``, one per ``(key, episode)`` pair.

        >>> s = CounterStream(0, RESET_SEED_STREAM)
        >>> one = s.seeds(np.array([3]), np.array([5]))
        >>> two = s.seeds(np.array([3, 4]), np.array([5, 5]))
        >>> bool(one[0] == two[0])
        True
        """
        keys = np.asarray(keys, dtype=np.int64)
        u = self.uniforms(keys, np.asarray(episodes, dtype=np.int64))
        return (u[:, 0] * 2**31).astype(np.int64)

    def keyed(
        self,
        env_ids: np.ndarray,
        episodes: np.ndarray,
        draw_seq: np.ndarray | int = 0,
    ) -> KeyedUniforms:
        """A :class:`UniformSource` bound to these keys (one row per env id)."""
        return KeyedUniforms(self.base, env_ids, episodes, draw_seq)

    def uniforms(
        self,
        env_ids: np.ndarray,
        episodes: np.ndarray,
        k: int = 1,
        draw_seq: np.ndarray | int = 0,
    ) -> np.ndarray:
        """Uniforms of shape ``(len(env_ids), k)`` for these keys."""
        return self.keyed(env_ids, episodes, draw_seq).uniforms(len(env_ids), k)


class KeyedUniforms:
    """A uniform source whose row ``i`` is keyed by ``(env_ids[i], episodes[i], draw_seq)``."""

    __slots__ = ("base", "draw_seq", "env_ids", "episodes")

    def __init__(
        self,
        base: np.uint64,
        env_ids: np.ndarray,
        episodes: np.ndarray,
        draw_seq: np.ndarray | int = 0,
    ) -> None:
        self.base = base
        self.env_ids = env_ids
        self.episodes = episodes
        self.draw_seq = draw_seq

    def uniforms(self, n: int, k: int) -> np.ndarray:
        if len(self.env_ids) != n:
            raise ValueError(f"`n` must equal len(env_ids) = {len(self.env_ids)}, got {n}")
        kern = kernels()
        if kern is not None:
            out = _compiled_uniforms(
                kern, self.base, self.env_ids, self.episodes, self.draw_seq, n, k
            )
            if out is not None:
                return out
        if n * k <= _SCALAR_MAX:
            return _scalar_uniforms(
                int(self.base), self.env_ids, self.episodes, self.draw_seq, n, k
            )
        word = _key_words(np.asarray(self.env_ids), self.episodes, n)
        word *= _GOLDEN
        word ^= self.base
        h = _mix(word)
        seq = self.draw_seq
        if k == 1 and (seq == 0 if isinstance(seq, int) else not seq.any()):
            return _to_unit(h).reshape(n, 1)
        # A second round for draw_seq / component, applied only where either is
        # non-zero, so a value never depends on what else is in the batch.
        extra = (_as_u64(seq, n)[:, None] << _S16) | np.arange(k, dtype=np.uint64)
        h2 = h[:, None] ^ (extra * _SECOND)
        _mix(h2)
        return _to_unit(np.where(extra == 0, h[:, None], h2))
