"""BlockPool: a hand-over's finished-episode blocks lie side by side in one buffer, so
the writer joins them as one view (no copy while it holds the GIL), and the episodes
recorded are those of new arrays per reset."""

from __future__ import annotations

import numpy as np
import pytest
from same_tables import assert_same_episodes_and_draws, random_resets

import varirec as vr
from varirec.recording import episode_chunk
from varirec.recording.block_pool import BlockPool
from varirec.sampling.accel import kernels

N = 16


def test_kept_columns_are_never_handed_out_again():
    pool = BlockPool(capacity=6)
    a = pool.take(3, 4)
    a[:] = 1
    pool.keep(3, 2)  # two of four kept: the next block starts after them
    b = pool.take(3, 4)
    b[:] = 2
    assert (a[:, :2] == 1).all() and np.shares_memory(a, b)
    pool.keep(3, 4)
    c = pool.take(3, 1)  # the buffer is full: a new one
    c[:] = 3
    assert not np.shares_memory(c, a) and (a[:, :2] == 1).all() and (b == 2).all()
    pool.renew()  # a hand-over: the next block starts a new buffer too
    assert not np.shares_memory(pool.take(3, 1), c)
    assert pool.take(8, 10).shape == (8, 10)  # another row count; wider than the capacity
    ids = pool.take(1, 2, np.int32)  # another dtype: its own buffer
    assert ids.dtype == np.int32 and not np.shares_memory(ids, c)


class _Fresh(BlockPool):
    """A new array per block, as before the pool."""

    def take(self, rows: int, n: int, dtype=np.int64) -> np.ndarray:
        return np.empty((rows, n), dtype)

    def keep(self, rows: int, m: int, dtype=np.int64) -> None:
        pass


def _run(path, monkeypatch, arrays, device, pooled: bool):
    joins: list[tuple[list, np.ndarray]] = []
    joined = episode_chunk._joined

    def kept(values):
        out = joined(values)
        joins.append((values, out))
        return out

    monkeypatch.setattr(episode_chunk, "_joined", kept)
    vs = [vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))]
    m = vr.RecorderManager(N, variations=vs, output=path, seed=3, run_id="r", device=device)
    if not pooled:
        m.blocks = _Fresh(1)
    random_resets(m, arrays, steps=30)
    m.close()
    monkeypatch.setattr(episode_chunk, "_joined", joined)
    ds = vr.open_dataset(path)
    return [ds.episodes().to_pandas(), ds.draws().to_pandas()], joins


def _check(tmp_path, monkeypatch, arrays, device, blocks):
    pooled, joins = _run(tmp_path / "pooled", monkeypatch, arrays, device, True)
    fresh, _ = _run(tmp_path / "fresh", monkeypatch, arrays, device, False)
    assert_same_episodes_and_draws(pooled, fresh)
    assert len(pooled[0]) > 50 and len(pooled[1]) > 50
    found = [(v, out) for v, out in joins if v[0].ndim == 2 or v[0].dtype == np.int32]
    assert {len(v) for v, _ in found} != {1}  # a hand-over of several resets
    for values, out in found:
        assert np.shares_memory(out, values[0])  # one view of the buffer: no copy
    assert len(found) >= blocks


@pytest.mark.skipif(kernels() is None, reason="the blocks are written by the numba kernels")
def test_a_compiled_loop_hands_its_blocks_over_as_one_view(tmp_path, monkeypatch):
    _check(tmp_path, monkeypatch, np.asarray, None, blocks=1)


@pytest.mark.skipif(kernels() is None, reason="prefetching needs numba (fast extra)")
def test_a_gpu_loop_hands_its_blocks_and_outcomes_over_as_views(tmp_path, monkeypatch, gpu):
    torch = pytest.importorskip("torch")
    _check(tmp_path, monkeypatch, torch.as_tensor, "cpu", blocks=3)  # tracker's, ids, outcomes
    assert gpu[0] > 10


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(kernels() is None or not _cuda(), reason="needs a CUDA device and numba")
def test_a_cuda_loop_hands_its_blocks_and_outcomes_over_as_views(tmp_path, monkeypatch):
    import torch

    cuda = torch.device("cuda", torch.cuda.current_device())
    _check(tmp_path, monkeypatch, lambda a: torch.as_tensor(a, device=cuda), cuda, blocks=3)
