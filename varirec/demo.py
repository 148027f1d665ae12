"""``varirec demo``: the main job on the built-in example (filled in with the built-in env)."""

from __future__ import annotations

import argparse

__all__ = ["add_demo_parser"]


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``demo`` subcommand."""
