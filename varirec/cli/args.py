"""argparse types shared by the ``varirec`` commands: every argument is checked when
it is parsed, before any command does work."""

from __future__ import annotations

import argparse

__all__ = ["count_arg", "level_arg", "seed_arg"]


def count_arg(text: str) -> int:
    """argparse type: bootstrap resamples, 0 (no intervals) or at least 2 (one
    resample has no spread)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0 or value == 1:
        raise argparse.ArgumentTypeError(
            f"must be 0 (no intervals) or at least 2, got {value}; e.g. 1000"
        )
    return value


def seed_arg(text: str) -> int:
    """argparse type: a seed, an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}; e.g. 0")
    return value


def level_arg(text: str) -> float:
    """argparse type: a confidence level in [0.5, 1) (below one half, a verdict's
    threshold falls below the null's median and every factor reads as an effect)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.5 <= value < 1.0:
        raise argparse.ArgumentTypeError(
            f"must be a number from 0.5 up to (not including) 1, got {text!r}; e.g. 0.95"
        )
    return value
