"""Where the finished episodes' blocks are written: side by side, one buffer per
hand-over.

A reset's kernel writes the finished episodes' columns as one block (the tracker's
:data:`~varirec.recording.episodes.FINISHED_BLOCK`, a compiled recorded reset's
:data:`~varirec.recording.episode_chunk.RECORDED_BLOCK`). Written into fresh arrays,
the blocks of hundreds of resets are joined on the writer thread: megabytes copied
while it holds the GIL, which the simulation's main thread then waits for at its next
torch call. Taken from a :class:`BlockPool`, the blocks of one hand-over lie side by
side in one buffer, and :class:`~varirec.recording.episode_chunk.EpisodeChunk` joins
them as one view of it.

>>> import numpy as np
>>> pool = BlockPool(capacity=8)
>>> a = pool.take(2, 3); a[:] = 1; pool.keep(2, 3)
>>> b = pool.take(2, 4); b[:] = 2; pool.keep(2, 2)  # two of the four columns kept
>>> pool.take(2, 1).base is a.base  # the next block follows the kept columns
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BlockPool"]


class BlockPool:
    """Blocks of ``rows`` rows (int64 unless another dtype is asked), taken column by
    column from one buffer per row count and dtype. A column once kept is never written
    again: the buffer is left for a new one when it is full and at each hand-over
    (:meth:`renew`), so that a hand-over's blocks are views that Arrow may keep without
    a copy.

    Args:
        capacity: the columns of a buffer (a hand-over's rows, at most, and one
            reset's: a hand-over's blocks then lie in one buffer). Untouched columns
            cost no memory (the pages of an untouched buffer are never mapped in).
    """

    __slots__ = ("_buffers", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        # (rows, dtype) -> (buffer, columns kept)
        self._buffers: dict[tuple[int, Any], tuple[np.ndarray, int]] = {}

    def take(self, rows: int, n: int, dtype: Any = np.int64) -> np.ndarray:
        """A ``(rows, n)`` block to write, after the columns kept so far (nothing is
        kept until :meth:`keep`)."""
        key = (rows, dtype)
        found = self._buffers.get(key)
        if found is None or found[1] + n > found[0].shape[1]:
            found = self._buffers[key] = (np.empty((rows, max(self.capacity, n)), dtype), 0)
        buffer, kept = found
        return buffer[:, kept : kept + n]

    def keep(self, rows: int, m: int, dtype: Any = np.int64) -> None:
        """Keep the first ``m`` columns of the last block taken of ``rows`` rows."""
        buffer, kept = self._buffers[(rows, dtype)]
        self._buffers[(rows, dtype)] = (buffer, kept + m)

    def renew(self) -> None:
        """A hand-over: the next blocks start new buffers."""
        self._buffers.clear()
