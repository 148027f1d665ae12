"""The JSON files of a run: ``run.json`` and the writer sidecars.

Contents:
    create_run: make the run exclusively (a directory, or a conditional PUT of ``run.json``).
    adopt_run: the ``run.json`` document a resuming writer takes over.
    create_sidecar: write a writer's sidecar only if that writer id is new to the run.
    read_sidecars: every readable sidecar of a run; sidecar_doc: the head of a new one.
    write_json_atomic, to_json: whole-file JSON writes (temp + rename, or one object).
    utc_now, default_run_id, default_writer_id: times and ids as the writer makes them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from varirec.errors import DatasetError

from .location import StorePath
from .schema import RUN_JSON, WRITERS_DIR

__all__ = [
    "adopt_run",
    "create_run",
    "create_sidecar",
    "default_run_id",
    "default_writer_id",
    "read_sidecars",
    "sidecar_doc",
    "to_json",
    "utc_now",
    "write_json_atomic",
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- small helpers
def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def default_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}_{secrets.token_hex(3)}"


def default_writer_id() -> str:
    # ASCII only: writer ids are part of file names (str.isalnum accepts "é" and "名")
    name = socket.gethostname().split(".")[0]
    host = "".join(c for c in name if c.isascii() and c.isalnum())[:24]
    return f"{host or 'host'}_{os.getpid()}_{secrets.token_hex(4)}"


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable")


def to_json(doc: dict[str, Any], what: str) -> str:
    try:
        # allow_nan=False: a bare NaN is not JSON, and strict readers (jq, JavaScript,
        # Go) refuse the whole run.json
        return json.dumps(doc, indent=2, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"`{what}` must be JSON-serializable (numbers, strings, lists, dicts, numpy "
            f"values; finite floats), got {exc}; convert the value first (e.g. str() or "
            "dataclasses.asdict; None for a NaN)"
        ) from None


def write_json_atomic(path: Path | StorePath, text: str) -> None:
    if isinstance(path, StorePath):
        path.write_text(text)  # a whole object: readers see the old or the new one
        return
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # e.g. disk full: leave no empty temp file
            os.unlink(tmp)
        raise


def create_run(
    root: Path | StorePath, path: Path | StorePath, run_id: str, text: str, *, overwrite: bool
) -> None:
    """Create run directory ``path`` with ``run.json`` = ``text``, exclusively.

    Raises:
        DatasetError: the run exists (and not ``overwrite``), or another process created
            it again while ``overwrite`` replaced it.
    """
    if isinstance(path, StorePath):
        _create_stored_run(root, path, run_id, text, overwrite=overwrite)
        return
    try:
        path.mkdir()  # exclusive: of two creators of one run id, one fails here
    except FileExistsError:
        if not overwrite:
            raise DatasetError(
                f"run {run_id!r} already exists in {root}; pass overwrite=True "
                "to replace it, or a new run_id"
            ) from None
        trash = root / f".trash-{path.name}-{secrets.token_hex(4)}"
        os.replace(path, trash)  # atomic: the old run is gone from view at once
        logger.info("overwrite=True: deleting the previous run %s", path)
        shutil.rmtree(trash, ignore_errors=True)
        try:
            path.mkdir()
        except FileExistsError:
            raise DatasetError(
                f"run {run_id!r} was created again by another process while "
                "overwrite=True replaced it; pass a new run_id"
            ) from None
    write_json_atomic(path / RUN_JSON, text)


def _create_stored_run(
    root: Path | StorePath, path: StorePath, run_id: str, text: str, *, overwrite: bool
) -> None:
    """Create the run on an object store: ``run.json`` is written only if absent."""
    if not overwrite and path.exists():  # parts without run.json count as a run too
        raise DatasetError(
            f"run {run_id!r} already exists in {root}; pass overwrite=True to "
            "replace it, or a new run_id"
        )
    if overwrite and path.exists():
        logger.info("overwrite=True: deleting the previous run %s", path)
        path.delete_tree()  # not atomic: readers may see part of the old run meanwhile
    try:
        (path / RUN_JSON).create_text(text)
    except FileExistsError:
        raise DatasetError(
            f"run {run_id!r} already exists in {root} ({RUN_JSON} is there); "
            "pass overwrite=True to replace it, or a new run_id"
        ) from None


def adopt_run(path: Path | StorePath, run_id: str, started: str) -> dict[str, Any]:
    """The ``run.json`` of run directory ``path`` as a resuming writer keeps it: status
    ``running`` again, ``started`` appended to ``resumed_utc``, the closing fields gone.

    Raises:
        DatasetError: ``run.json`` is missing or not a JSON object.
    """
    target = path / RUN_JSON
    try:
        doc = json.loads(target.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    except (OSError, ValueError) as exc:
        raise DatasetError(
            f"cannot resume run {run_id!r}: {target} is unreadable ({exc}); restore it "
            "from a copy, or record a new run"
        ) from None
    kept = ("schema_version", "varirec_version", "run_id", "created_utc", "metadata")
    out = {k: doc[k] for k in kept if k in doc}
    resumed = doc.get("resumed_utc")
    out["resumed_utc"] = [*(resumed if isinstance(resumed, list) else []), started]
    out["status"] = "running"
    return out


def create_sidecar(path: Path | StorePath, writer_id: str, run_id: str, text: str) -> None:
    """Write the new sidecar of ``writer_id`` in run directory ``path``, exclusively.

    Raises:
        DatasetError: that writer id already wrote to the run.
    """
    sidecar = path / WRITERS_DIR / f"{writer_id}.json"
    sidecar.parent.mkdir(exist_ok=True)
    try:  # exclusive: a second writer with this id would overwrite the counts
        if isinstance(sidecar, StorePath):
            sidecar.create_text(text)
        else:
            with open(sidecar, "x", encoding="utf-8") as f:
                f.write(text)
    except FileExistsError:
        raise DatasetError(
            f"writer id {writer_id!r} already wrote to run {run_id!r} ({sidecar} "
            "exists); pass a new writer_id (or none, for a unique default)"
        ) from None


def sidecar_doc(
    writer_id: str, pid: int, created: str, ended: str | None, status: str
) -> dict[str, Any]:
    """The head of a writer's sidecar: who wrote (id, pid, host), when, and its status."""
    doc = {"writer_id": writer_id, "pid": pid, "host": socket.gethostname()}
    doc.update(created_utc=created, ended_utc=ended, status=status)
    return doc


def read_sidecars(path: Path | StorePath) -> dict[str, Any]:
    """The readable sidecars of run directory ``path``, by writer id (file stem)."""
    sidecars = {}
    for side in (path / WRITERS_DIR).glob("*.json"):
        if side.name.startswith("."):
            continue
        try:
            sidecars[side.stem] = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.warning("skipping unreadable writer sidecar %s: %s", side, exc)
    return sidecars


def live_writers(path: Path | StorePath) -> list[str]:
    """The writers of run directory ``path`` that are still at work: a sidecar that says
    ``running``, written on this host by a process that is alive and began before the
    sidecar was made (not a later process given the same pid). A writer on another
    host cannot be seen from here."""
    if isinstance(path, StorePath):
        return []
    live = []
    host = socket.gethostname()
    for writer, doc in read_sidecars(path).items():
        if not isinstance(doc, dict) or doc.get("status") != "running" or doc.get("host") != host:
            continue
        pid = doc.get("pid")
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
            continue
        if _alive_since(pid, doc.get("created_utc")):
            live.append(f"{writer} (pid {pid})")
    return live


def _alive_since(pid: int, created: Any) -> bool:
    """Whether process ``pid`` is alive and, where Linux says when it began, began by
    ``created`` (the sidecar's ISO time)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        pass  # alive, another user's
    try:  # /proc/<pid>/stat field 22: start, in clock ticks after boot
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if stat[0] in ("Z", "X"):  # killed, not yet reaped by its parent: not at work
            return False
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        began = boot + int(stat[19]) / os.sysconf("SC_CLK_TCK")
        when = datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp()
    except (OSError, ValueError, IndexError, StopIteration, TypeError):
        return True
    return began <= when + 1.0  # btime is in whole seconds
