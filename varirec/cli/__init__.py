"""Stage 7, the command line: ``varirec demo``, ``analyze``, ``inspect``.

The only layer that may import :mod:`varirec.analysis` (lazily, inside the commands).
"""

from varirec.cli.commands import main

__all__ = ["main"]
