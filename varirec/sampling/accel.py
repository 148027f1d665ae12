"""Whether numpy draws run through the compiled kernels, loaded on the first draw.

When numba is installed (the ``fast`` extra), the keyed hash and the inverse CDFs of
numpy draws run in :mod:`varirec.sampling.compiled`: the same values bit for bit, in one
call where numpy needs tens. The numpy path stays the reference and the fallback: it
runs where numba is absent, where compiling fails, for torch tensors, and everywhere
when the environment variable ``VARIREC_NO_COMPILE=1`` is set before the first draw.

The first draw of a process imports numba and compiles every kernel (a few seconds the
first time; about a second once numba's on-disk cache holds them). Make one draw before
anything you time, or set ``VARIREC_NO_COMPILE=1``.

>>> with compiled_draws(False):
...     kernels() is None
True
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["NO_COMPILE_ENV", "compiled_draws", "kernels", "kernels_of"]

log = logging.getLogger(__name__)

NO_COMPILE_ENV = "VARIREC_NO_COMPILE"
"""Set to ``1`` (before the first draw) to draw with numpy only."""

_UNSET: Any = object()
_kernels: Any = _UNSET


def kernels() -> ModuleType | None:
    """The compiled kernels (:mod:`varirec.sampling.compiled`), or None: use numpy."""
    found = _kernels
    return _load() if found is _UNSET else found


_companions: dict[str, ModuleType | None] = {}


def kernels_of(module: str) -> ModuleType | None:
    """The compiled module ``module`` of another stage (a module that imports numba and
    has a ``warm()`` that compiles its kernels), or None: use numpy. It follows the
    same switch as :func:`kernels` (numba present, ``VARIREC_NO_COMPILE``,
    :func:`compiled_draws`), and is imported and warmed once, on first use."""
    if kernels() is None:
        return None
    found = _companions.get(module, _UNSET)
    if found is _UNSET:
        found = _companions[module] = None
        try:
            found = importlib.import_module(module)
            found.warm()
        except Exception as exc:  # as in _load: numpy gives the same results
            log.warning("varirec: numba kernels of %s unavailable (%r); using numpy", module, exc)
            found = None
        _companions[module] = found
    return found


def _load() -> ModuleType | None:
    global _kernels
    _kernels = None
    if os.environ.get(NO_COMPILE_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return None
    if importlib.util.find_spec("numba") is None:
        return None
    try:
        from varirec.sampling import compiled

        _warm(compiled)
    except Exception as exc:  # an unsupported numba or CPU: numpy gives the same values
        log.warning("varirec: numba kernels unavailable (%r); drawing with numpy", exc)
        return None
    _kernels = compiled
    return compiled


def _warm(c: ModuleType) -> None:
    """Compile every kernel for the argument types draws pass, now rather than mid-run."""
    i, u, f = np.zeros(2, np.int64), np.zeros(2, np.uint64), np.full(2, 0.5)
    grid = np.full((2, 3), 0.5)
    c.keyed_uniforms(np.uint64(1), i, i, i[:1], grid)
    c.keyed_columns(u, u, i, i, np.zeros((2, 2), np.int64), False, grid[:, :2])
    for fn in (c.ndtri, c.exp, c.log):
        fn(f, np.empty(2))
    for x in (grid[:, :2].copy(), grid[:, 1:]):  # a block of columns, and a view of some
        c.affine_columns(x, f, f)
        c.exp_columns(x, f, f)
        c.gauss_columns(x, np.zeros((9, x.shape[1])))
        c.gauss_flat(x, np.zeros((9, x.shape[1])), np.empty(x.size))
    c.plan_columns(u, u, np.zeros((10, 3)), i, i, grid)


@contextlib.contextmanager
def compiled_draws(enabled: bool) -> Iterator[ModuleType | None]:
    """Draw with the compiled kernels (``True``, where numba is installed) or with numpy
    only (``False``) inside the block; yields the kernels in use (None: numpy).

    >>> with compiled_draws(False) as k:
    ...     k is None
    True
    """
    global _kernels
    before = _kernels
    if enabled:
        if _kernels is None:
            _kernels = _UNSET
        on = kernels()
    else:
        _kernels = on = None
    try:
        yield on
    finally:
        _kernels = before
