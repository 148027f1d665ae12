"""The layout of a draws chunk's reset blocks into rows, compiled with numba, without the GIL.

:meth:`~varirec.recording.draw_chunk.DrawChunk.to_arrow` runs on the writer thread. Its
numpy layout of a reset block (a dozen slice and broadcast assignments of ``V x k``
rows) holds the GIL between its copies, and the simulation's main thread, which lets
the GIL go at every torch call, waits for it there (see :mod:`varirec.storage.sink`).
:func:`lay_out_block` writes the same rows in one call that lets the GIL go
(``nogil``): the main thread runs on meanwhile. ``tests/test_draw_chunk.py`` compares
it with the numpy layout.

Loaded through :func:`varirec.sampling.accel.kernels_of` (numba, the ``fast`` extra).
"""

from __future__ import annotations

import numpy as np

from varirec.sampling.compiled import jit

__all__ = ["lay_out_block", "warm"]


@jit(nogil=True)
def lay_out_block(
    s: int,
    r: int,
    ids: np.ndarray,
    episodes: np.ndarray,
    values: np.ndarray,
    codes: np.ndarray,
    seq0: int,
    time_us: int,
    env_id: np.ndarray,
    episode: np.ndarray,
    value: np.ndarray,
    seq: np.ndarray,
    key: np.ndarray,
    phase: np.ndarray,
    time: np.ndarray,
) -> None:
    """The ``V * k`` rows of one reset block, variation-major: env rows from ``s``
    (``env_id``, ``episode``), value rows from ``r`` (``seq``, ``key``, ``phase``,
    ``time``; ``value`` too unless ``values`` has no rows: values still on their way
    from a device, copied in elsewhere). ``values``: ``(k, V)``; ``codes``: ``(V, 2)``,
    key code and phase code."""
    k = ids.shape[0]
    with_values = values.shape[0] == k
    for v in range(codes.shape[0]):
        e0, r0 = s + v * k, r + v * k
        code, phase_code, event_seq = codes[v, 0], codes[v, 1], seq0 + v
        for i in range(k):
            env_id[e0 + i] = ids[i]
            episode[e0 + i] = episodes[i]
            seq[r0 + i] = event_seq
            key[r0 + i] = code
            phase[r0 + i] = phase_code
            time[r0 + i] = time_us
            if with_values:
                value[r0 + i] = values[i, v]


def warm() -> None:
    """Compile the kernel for the arrays a recorder's reset block holds."""
    ids, i64 = np.zeros(2, np.int64), np.zeros(2, np.int64)
    env_id, i32 = np.zeros(2, np.int32), np.zeros(2, np.int32)
    codes = np.zeros((1, 2), np.int64)
    codes.flags.writeable = False  # as the recorder keeps them (another type to numba)
    for values in (np.zeros((2, 1)), np.zeros((0, 0))):  # recorded, or still on a device
        lay_out_block(0, 0, ids, i64, values, codes, 0, 0, env_id, i64.copy(),
                      np.zeros(2), i64.copy(), i32, i32.copy(), i64.copy())  # fmt: skip
