"""Large arrays allocated without numpy's huge-page advice.

numpy advises the kernel to back every array of 4 MB or more with huge pages
(``madvise(MADV_HUGEPAGE)``). On a host whose transparent huge pages are ``madvise``
(the kernel's default), the kernel then finds, zeroes and, where memory is fragmented,
compacts 2 MB blocks on first touch; on a virtual machine whose host backs guest memory
lazily, each fresh huge page is costlier still. The episode table writes its arrays
once, in order, and gains nothing from huge pages. Measured on the 2-core VM, building
1 M episodes x 20 factors from 20 M draw rows right after another process read them (6
interleaved runs each): 0.60-0.69 s without the advice, 0.78-1.13 s with it; Arrow's
pool, which takes huge pages too, 0.76-1.11 s.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["no_hugepage_advice"]

_lock = threading.Lock()
_depth = [0, True]  # blocks open (in any thread), and the advice to restore after the last


@contextmanager
def no_hugepage_advice() -> Iterator[None]:
    """Within the block, numpy allocates without huge-page advice (restored when the
    last open block, in any thread, ends; a no-op where this numpy has no such switch).

    >>> import numpy as np
    >>> with no_hugepage_advice():
    ...     a = np.zeros(1 << 20)
    >>> a.nbytes
    8388608
    """
    try:
        from numpy._core.multiarray import _set_madvise_hugepage as set_advice
    except ImportError:  # numpy < 2 or a build without it
        yield
        return
    with _lock:  # the switch is process-wide: blocks in two threads must not interleave it
        if _depth[0] == 0:
            _depth[1] = set_advice(False)
        _depth[0] += 1
    try:
        yield
    finally:
        with _lock:
            _depth[0] -= 1
            if _depth[0] == 0:
                set_advice(_depth[1])
