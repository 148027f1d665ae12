"""Checks of the files a command or a report writes, before any work is done.

>>> check_output_file("/tmp", "--output")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: `--output` must be a file path, got the directory '/tmp'; ...
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["check_output_file"]


def check_output_file(
    path: str | os.PathLike[str],
    name: str = "path",
    *,
    example: str = "out.txt",
    dataset: str | os.PathLike[str] | None = None,
) -> None:
    """Refuse a file path that cannot be written: a directory, one under a file, or
    one inside a run of ``dataset`` (a part or ``run.json`` written over is data lost)
    (``name``: the argument, as the message calls it; ``example``: a file name to
    suggest)."""
    target = Path(path)
    if dataset is not None and "://" not in str(dataset):
        root = Path(dataset).resolve()
        inside = target.resolve()
        if inside.is_relative_to(root) and any(
            part.startswith("run_id=") for part in inside.relative_to(root).parts
        ):
            raise ValueError(
                f"`{name}` {str(target)!r} is inside a run of the dataset {str(dataset)!r}: "
                "writing there could replace its recorded data; write it elsewhere, e.g. "
                f"{str(root / example)!r}"
            )
    if target.is_dir():
        raise ValueError(
            f"`{name}` must be a file path, got the directory {str(target)!r}; give a file "
            f"name inside it, e.g. {str(target / example)!r}"
        )
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(
                    f"`{name}` {str(target)!r} cannot be written: {str(parent)!r} is a file, "
                    "not a folder; pick another path"
                )
            # A file made and dropped at once (unnamed where the OS can): a folder that
            # refuses it (read-only, /proc) is named now, not after the work is done.
            try:
                with tempfile.TemporaryFile(dir=parent):
                    pass
            except OSError as exc:
                raise ValueError(
                    f"`{name}` {str(target)!r} cannot be written: {str(parent)!r} refuses new "
                    f"files ({exc.strerror or exc}); pick a folder you can write to"
                ) from None
            break
