"""Seed handling shared by the estimators (private).

- :data:`Seed`: what a ``seed=`` argument accepts.
- :func:`_generator`: a Generator for a seed, and the integer seed to record.
- :func:`_global_rng_untouched`: restores numpy's legacy global RNG state on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

__all__ = ["Seed", "_generator", "_global_rng_untouched"]

Seed = int | np.random.Generator | None


def _generator(seed: Seed) -> tuple[np.random.Generator, int | None]:
    """A Generator for ``seed`` and the integer seed to record (``seed=0`` is a seed)."""
    if isinstance(seed, np.random.Generator):
        return seed, None
    if seed is None:
        return np.random.default_rng(), None
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(
            "`seed` must be an int, a numpy.random.Generator or None, got "
            f"{type(seed).__name__}; pass e.g. seed=0"
        )
    if seed < 0:
        raise ValueError(f"`seed` must be a non-negative int, got {seed}; pass e.g. seed=0")
    return np.random.default_rng(int(seed)), int(seed)


@contextlib.contextmanager
def _global_rng_untouched() -> Iterator[None]:
    """Restore numpy's legacy global RNG state on exit.

    Some SALib analyzers call ``np.random.seed`` or draw from the global RNG
    (``delta``; ``pawn`` with a seed); the caller's global stream must not notice.
    """
    state = np.random.get_state()  # noqa: NPY002 - saving the legacy global state is the point
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002
