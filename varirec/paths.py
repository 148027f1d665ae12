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
    replaced: bool = False,
) -> None:
    """Refuse a file path that cannot be written: an empty one, a directory, one under
    a file, or one inside a run of ``dataset`` (a part or ``run.json`` written over is
    data lost; a run folder that is a link counts too) (``name``: the argument, as the
    message calls it; ``example``: a file name to suggest). ``replaced``: the file is
    written beside and renamed over the path (a link's target, for a link), so a device
    or a pipe there, or a read-only file, is refused as well."""
    target = Path(path)
    if not str(path).strip():
        raise ValueError(f"`{name}` is empty; give a file path, e.g. {example!r}")
    if replaced and target.is_symlink():
        target = Path(os.path.realpath(target))  # written through to the file it names
    if dataset is not None and "://" not in str(dataset) and _inside_a_run(target, dataset):
        raise ValueError(
            f"`{name}` {str(target)!r} is inside a run of the dataset {str(dataset)!r}: "
            "writing there could replace its recorded data; write it elsewhere, e.g. "
            f"{str(Path(dataset).resolve() / example)!r}"
        )
    if target.is_dir():
        raise ValueError(
            f"`{name}` must be a file path, got the directory {str(target)!r}; give a file "
            f"name inside it, e.g. {str(target / example)!r}"
        )
    if replaced and target.exists() and not target.is_file():
        raise ValueError(
            f"`{name}` {str(path)!r} is not a regular file (a device or a pipe): it would be "
            f"replaced by a new file; give the path of a file, e.g. {example!r}"
        )
    if replaced and target.is_file() and not os.access(target, os.W_OK):
        raise ValueError(
            f"`{name}` {str(target)!r} is read-only; make it writable or pick another path"
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


def _inside_a_run(target: Path, dataset: str | os.PathLike[str]) -> bool:
    """Whether ``target`` lies in a ``run_id=*`` folder of ``dataset``: by its path as
    written, and where it resolves (a run folder may be a link to elsewhere)."""
    root = Path(dataset)
    written = (Path(os.path.abspath(root)), Path(os.path.abspath(target)))  # `..` folded
    for base, where in (written, (root.resolve(), target.resolve())):
        if where.is_relative_to(base) and any(
            part.startswith("run_id=") for part in where.relative_to(base).parts
        ):
            return True
    resolved = target.resolve()
    try:
        runs = [run.resolve() for run in root.glob("run_id=*")]
    except OSError:
        return False
    return any(resolved.is_relative_to(run) for run in runs)
