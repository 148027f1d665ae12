"""How long the writer thread holds the GIL converting one hand-over, old way and new way.

The main thread of a GPU loop lets the GIL go at every torch call, and waits for it
while a writer thread holds it (``bench_gil.py`` times that in a loop). Here one
hand-over of a loop at ``--envs`` envs (~1/60 of them reset per step, 20 reset-mode
variations) is converted to Arrow on a background thread, while the main thread makes
tiny torch calls without pause; the GIL the converter held is the main thread's wall
time less what its calls took alone. Each conversion, both ways, in turn:

- episodes, ``--parts`` resets of the compiled numpy path (one ``RECORDED_BLOCK`` each)
  and of a device recorder (outcome columns beside the tracker's block): every part
  split, then each column joined (the general path), against the parts joined, then
  split once;
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

from varirec.recording import episode_chunk
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


def _recorded_parts(rng: np.random.Generator, parts: int, k: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(parts):
        block = np.empty((len(RECORDED_ROWS), 2 * k), np.int64)  # the kernel's larger block
        block[:] = rng.integers(0, 1000, block.shape)
        block[-4] = rng.random(2 * k).view(np.int64)  # return
        block[-3] = np.where(rng.random(2 * k) < 0.2, np.nan, 1.0).view(np.int64)  # success
        block[-2:] = rng.integers(0, 2, (2, 2 * k))
        out.append({RECORDED_BLOCK: block[:, :k]})
    return out


def _device_parts(rng: np.random.Generator, parts: int, k: int) -> list[dict[str, Any]]:
    return [
        {
            "return": rng.random(k),
            "success": np.where(rng.random(k) < 0.2, np.nan, 1.0),
            "terminated": rng.integers(0, 2, k).astype(np.float64),
            "truncated": np.zeros(k),
            "env_id": rng.integers(0, 65536, k).astype(np.int32),
            FINISHED_BLOCK: rng.integers(0, 1000, (len(FINISHED), k)),
        }
        for _ in range(parts)
    ]


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
    for label, parts in (
        ("episodes, numpy path", _recorded_parts(rng, args.parts, k)),
        ("episodes, device path", _device_parts(rng, args.parts, k)),
    ):
        chunk = EpisodeChunk(parts, schema)
        joined = episode_chunk._merged

        def general(chunk: EpisodeChunk = chunk, joined: Any = joined) -> None:
            episode_chunk._merged = lambda parts: None
            try:
                chunk.to_arrow()
            finally:
                episode_chunk._merged = joined

        chunk.to_arrow()
        general()  # warm: Arrow's first casts import their kernels
        rows.append(
            (label, gil_held(general, args.repeats), gil_held(chunk.to_arrow, args.repeats))
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
        "\nold: episodes split part by part, draws laid out by numpy; new: parts joined, "
        "then split once; draws laid out by the compiled kernel without the GIL"
    )


if __name__ == "__main__":
    main()
