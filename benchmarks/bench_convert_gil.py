"""How long the writer thread holds the GIL converting one hand-over, old way and new way.

The main thread of a GPU loop lets the GIL go at every torch call, and waits for it
while a writer thread holds it (``bench_gil.py`` times that in a loop). Here one
hand-over of a loop at ``--envs`` envs (~1/60 of them reset per step, 20 reset-mode
variations) is converted to Arrow on a background thread, while the main thread makes
tiny torch calls without pause; the GIL the converter held is the main thread's wall
time less what its calls took alone. Each conversion, both ways, in turn:

- episodes, ``--parts`` resets of the compiled numpy path (one ``RECORDED_BLOCK`` each)
  and of a device recorder (the finished rows, views of the host buffer that the
  device's copy fills, beside the tracker's block), joined, then split once: blocks in
  new arrays per reset and outcomes as four column views of host buffers of
  ``num_envs`` rows (joined by copies), against blocks and env ids side by side in a
  :class:`~varirec.recording.block_pool.BlockPool`'s buffer and the outcomes as one
  block view of a host buffer that holds the hand-over (joined as views);
- draws, ``--blocks`` reset blocks: laid out by numpy's slice and broadcast
  assignments, against the compiled kernel that lets the GIL go (numba; the ``fast``
  extra).

The table gives the median over ``--repeats`` of the GIL held and of the conversion's
wall time, in ms. On a machine of 2 cores the two threads also share the cores: the
held figures count some of that too, alike for both ways.

Run: ``python benchmarks/bench_convert_gil.py`` (~30 s).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from varirec.recording.block_pool import BlockPool
from varirec.recording.device_outcomes import FLAG_ROWS, OUTCOMES_BLOCK, VALUE_ROWS
from varirec.recording.draw_chunk import DrawChunk
from varirec.recording.episode_chunk import RECORDED_BLOCK, RECORDED_ROWS, EpisodeChunk
from varirec.recording.episodes import FINISHED, FINISHED_BLOCK
from varirec.sampling.accel import compiled_draws
from varirec.storage.schema import episodes_schema

_X = torch.zeros(16)


def _call_us() -> float:
    n = 20000
    start = time.perf_counter()
    for _ in range(n):
        _X.add_(1)
    return (time.perf_counter() - start) / n


def gil_held(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median GIL held by ``fn`` on a background thread, and its wall time (s)."""
    alone = _call_us()
    held, walls = [], []
    for _ in range(repeats):
        done = threading.Event()

        def convert(done: threading.Event = done) -> None:
            fn()
            done.set()

        thread = threading.Thread(target=convert)
        calls = 0
        start = time.perf_counter()
        thread.start()
        while not done.is_set():
            _X.add_(1)
            calls += 1
        wall = time.perf_counter() - start
        thread.join()
        held.append(max(0.0, wall - calls * alone))
        walls.append(wall)
    return statistics.median(held), statistics.median(walls)


def _recorded_parts(
    rng: np.random.Generator, parts: int, k: int, pool: BlockPool | None
) -> list[dict[str, Any]]:
    """Compiled numpy resets' parts: the kernel's block of ``2 k`` columns (a new array,
    or taken from ``pool``) of which ``k`` finished."""
    rows = len(RECORDED_ROWS)
    out = []
    for _ in range(parts):
        block = np.empty((rows, 2 * k), np.int64) if pool is None else pool.take(rows, 2 * k)
        block[:] = rng.integers(0, 1000, block.shape)
        block[-4] = rng.random(2 * k).view(np.int64)  # return
        block[-3] = np.where(rng.random(2 * k) < 0.2, np.nan, 1.0).view(np.int64)  # success
        block[-2:] = rng.integers(0, 2, (2, 2 * k))
        if pool is not None:
            pool.keep(rows, k)
        out.append({RECORDED_BLOCK: block[:, :k]})
    return out


def _device_parts(
    rng: np.random.Generator, parts: int, k: int, pool: BlockPool | None, ring: int
) -> list[dict[str, Any]]:
    """A device recorder's parts: the finished rows are views of the host buffer that
    the ring's copy fills (``ring`` rows, then a new buffer), beside the tracker's
    block. Before the pool: four column views and a new block per reset; with it: the
    outcomes as one block view, the tracker's block from ``pool``."""
    out, host, used = [], np.empty((0, 4)), 0
    for _ in range(parts):
        if used + k > len(host):
            host, used = np.empty((ring, 4)), 0
            host[:, 0] = rng.random(ring)  # return
            host[:, 1] = np.where(rng.random(ring) < 0.2, np.nan, 1.0)  # success
            host[:, 2:] = rng.integers(0, 2, (ring, 2))
        rows = host[used : used + k].T
        used += k
        ids = rng.integers(0, 65536, k)
        if pool is None:
            block = rng.integers(0, 1000, (len(FINISHED), k))
            part = dict(zip((*VALUE_ROWS, *FLAG_ROWS), rows, strict=True))
            part["env_id"] = ids.astype(np.int32)
        else:
            block = pool.take(len(FINISHED), k)
            block[:] = rng.integers(0, 1000, block.shape)
            pool.keep(len(FINISHED), k)
            part = {OUTCOMES_BLOCK: rows, "env_id": pool.take(1, k, np.int32)[0]}
            part["env_id"][:] = ids
            pool.keep(1, k, np.int32)
        part[FINISHED_BLOCK] = block
        out.append(part)
    return out


def _draw_chunk(rng: np.random.Generator, blocks: int, k: int, v: int) -> Callable[[], DrawChunk]:
    codes = np.stack([np.arange(v), np.zeros(v, np.int64)], axis=1)
    codes.flags.writeable = False
    resets = [(rng.integers(0, 65536, k), rng.integers(0, 99, k), rng.random((k, v)))
              for _ in range(blocks)]  # fmt: skip

    def make() -> DrawChunk:
        chunk = DrawChunk(blocks * k * v, [f"object{j}.param" for j in range(v)], [])
        for i, (ids, episodes, values) in enumerate(resets):
            chunk.add_block(codes, i * v, values, ids, episodes, None, 1000 + i)
        return chunk

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", type=int, default=65536, help="envs of the loop")
    parser.add_argument("--parts", type=int, default=240, help="resets in an episodes hand-over")
    parser.add_argument("--blocks", type=int, default=11, help="resets in a draws chunk")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    k = max(1, args.envs // 60)
    schema = episodes_schema()
    rows: list[tuple[str, tuple[float, float], tuple[float, float]]] = []
    # The device ring's rows (DeviceOutcomes) before, num_envs; and the pool's buffer
    # and now the ring too, a hand-over (max_rows) and a reset.
    ring, cap = max(args.envs, 256), 262_144 + args.envs
    for label, before, pooled in (
        (
            "episodes, numpy path",
            _recorded_parts(rng, args.parts, k, None),
            _recorded_parts(rng, args.parts, k, BlockPool(cap)),
        ),
        (
            "episodes, device path",
            _device_parts(rng, args.parts, k, None, ring),
            _device_parts(rng, args.parts, k, BlockPool(cap), cap),
        ),
    ):
        old, new = EpisodeChunk(before, schema), EpisodeChunk(pooled, schema)
        old.to_arrow()
        new.to_arrow()  # warm: Arrow's first casts import their kernels
        rows.append(
            (label, gil_held(old.to_arrow, args.repeats), gil_held(new.to_arrow, args.repeats))
        )
    make = _draw_chunk(rng, args.blocks, k, 20)
    with compiled_draws(False):
        old = gil_held(lambda: make().to_arrow(), args.repeats)
    with compiled_draws(True) as kern:
        make().to_arrow()  # the kernel compiled (or loaded) before it is timed
        new = gil_held(lambda: make().to_arrow(), args.repeats)
        label = "draws" if kern is not None else "draws (numba missing: numpy both ways)"
    made = gil_held(make, args.repeats)  # filling the chunk is the main thread's, not timed
    rows.append((label, (old[0] - made[0], old[1] - made[1]), (new[0] - made[0], new[1] - made[1])))

    print(
        f"one hand-over at {args.envs} envs ({k} resets a step): {args.parts} resets of "
        f"episodes, {args.blocks} reset blocks x 20 variations of draws; median of "
        f"{args.repeats}\n"
    )
    head = (
        f"{'conversion':<24} {'old: GIL held':>14} {'(wall)':>8} {'new: GIL held':>14} "
        f"{'(wall)':>8}"
    )
    print(head)
    print("-" * len(head))
    for label, (oh, ow), (nh, nw) in rows:
        print(
            f"{label:<24} {oh * 1e3:11.2f} ms {ow * 1e3:8.2f} {nh * 1e3:11.2f} ms {nw * 1e3:8.2f}"
        )
    print(
        "\nold: episodes' blocks in new arrays per reset, joined by copies; draws laid out "
        "by numpy\nnew: blocks side by side in a pool's buffer, joined as views; draws laid "
        "out by the compiled kernel without the GIL"
    )


if __name__ == "__main__":
    main()
