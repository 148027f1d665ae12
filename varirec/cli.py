"""The ``varirec`` command line.

Subcommands are added as the project grows; ``varirec --help`` lists them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from varirec._version import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="varirec",
        description=(
            "Record what domain randomization drew, per (env, episode), and find "
            "which variation moves the outcome."
        ),
    )
    parser.add_argument("--version", action="version", version=f"varirec {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
