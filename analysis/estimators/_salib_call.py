"""Calling SALib analyzers from the given-data estimators (private).

- :func:`_salib_problem`: a SALib problem with neutral factor names.
- :func:`_call_salib`: calls an analyzer with numpy's global RNG state saved and
  restored, and its warnings turned into notes (and log records).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

from varirec.analysis.estimators._rng import _global_rng_untouched

__all__ = ["_call_salib", "_salib_problem"]

logger = logging.getLogger(__name__)


def _salib_problem(num_vars: int) -> dict[str, Any]:
    """A problem with neutral names (SALib refuses some suffixes, e.g. ``_conf``)."""
    return {
        "num_vars": num_vars,
        "names": [f"f{j}" for j in range(num_vars)],
        "bounds": [[0.0, 1.0]] * num_vars,
    }


def _call_salib(fn: Callable[..., Any], notes: list[str], *args: Any, **kwargs: Any) -> Any:
    """Call a SALib analyzer with the global RNG, warning filters and format restored.

    SALib's warnings become notes (and log records) instead of escaping.
    """
    formatwarning = warnings.formatwarning
    try:
        with _global_rng_untouched(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = fn(*args, **kwargs)
    finally:
        warnings.formatwarning = formatwarning
    for message in dict.fromkeys(str(w.message) for w in caught):
        logger.warning("SALib %s: %s", getattr(fn, "__module__", ""), message)
        notes.append(f"SALib: {message}")
    return result
