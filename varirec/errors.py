"""The exceptions varirec raises.

Bad user input raises the built-in ``ValueError`` / ``TypeError`` (with a message
that names the argument, the value received and the fix). The types here cover
what is specific to varirec: a dataset that cannot be read, a recorder used in
the wrong order, a design whose rows did not all run.
"""

from __future__ import annotations

__all__ = [
    "DatasetError",
    "DesignError",
    "DuplicateRunsError",
    "EnvError",
    "ListenerError",
    "RecorderStateError",
    "UnknownNameError",
    "VarirecError",
]


class VarirecError(Exception):
    """Base class of every error varirec raises on purpose."""


class UnknownNameError(VarirecError, KeyError):
    """A variation, outcome or factor name that does not exist.

    The message lists the nearest known names.
    """

    def __str__(self) -> str:
        # KeyError quotes its argument; a sentence reads better unquoted.
        return str(self.args[0]) if self.args else ""


class EnvError(VarirecError, TypeError):
    """An env, or what its factory returned, lacks what varirec drives (e.g. ``num_envs``)."""


class ListenerError(VarirecError, ValueError):
    """A sample listener was removed twice or never attached."""


class RecorderStateError(VarirecError, RuntimeError):
    """The recorder or a lifecycle hook was used out of order (e.g. attached after a draw)."""


class DatasetError(VarirecError, OSError):
    """A dataset path, run or part that cannot be read or written as asked."""


class DesignError(VarirecError, ValueError):
    """A design-driven study that cannot be analysed as asked (e.g. rows never ran)."""


class DuplicateRunsError(VarirecError, ValueError):
    """Runs that repeat each other's draws (same seed, variations and episode keys)."""
