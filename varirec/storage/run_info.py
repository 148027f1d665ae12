"""What a run's ``run.json`` and writer sidecars say: parsed, validated, summed.

Contents:
    RunInfo: one run as its ``run.json`` and writer sidecars describe it.
    DatasetWarning: something in the dataset was skipped or is incomplete.
    load_run: read one run's ``run.json`` and sidecars into a :class:`RunInfo` (and the
        per-writer counts that :mod:`varirec.storage.health` compares with the parts).
    sum_sidecars, SidecarSummary: the counts and writer ids that a run's sidecars record.
    check_run_doc, RUN_STATUSES: the fields of a ``run.json`` that have the right types.

A missing ``run.json`` or one that is not valid JSON gives a DatasetWarning, and the
run's parts are still read with empty metadata and status ``"unknown"``: the data
matters more than its label, and the file is left untouched for the user to inspect.
A field of the wrong type (``"writers": 5``) is named in a DatasetWarning and ignored.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import pyarrow.fs as pafs

from .schema import RUN_JSON, RUN_PREFIX, SCHEMA_VERSION, WRITERS_DIR

__all__ = [
    "RUN_STATUSES",
    "DatasetWarning",
    "LoadedRun",
    "RunInfo",
    "SidecarSummary",
    "check_run_doc",
    "load_run",
    "sum_sidecars",
    "warn",
]


class DatasetWarning(UserWarning):
    """A part or run file was skipped or is incomplete; the message names the file."""


def warn(message: str) -> None:
    """Issue a :class:`DatasetWarning` with ``message`` (which names the file)."""
    warnings.warn(message, DatasetWarning, stacklevel=4)


@dataclass(frozen=True)
class RunInfo:
    """One run of a dataset, as its ``run.json`` and writer sidecars describe it.

    Attributes:
        run_id: the run's id (``run_id=<run_id>`` directory).
        path: the run directory on the dataset's filesystem.
        metadata: the user metadata of ``run.json`` (seed, num_envs, variations...).
        status: ``running``, ``complete``, ``failed``, or ``unknown`` (no readable run.json).
        created: when the run was created (UTC), if known.
        ended: when the creating writer closed (UTC), if it did.
        counts: rows per table, summed over the writers' sidecars (else from run.json).
        writers: ids of the writers that wrote the run.
        error: ``{"type", "message"}`` of a failed run.
        schema_version: the run's on-disk schema version.
    """

    run_id: str
    path: str
    metadata: dict[str, Any] = field(default_factory=dict)
    status: str = "unknown"
    created: datetime | None = None
    ended: datetime | None = None
    counts: dict[str, int] = field(default_factory=dict)
    writers: list[str] = field(default_factory=list)
    error: dict[str, str] | None = None
    schema_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of the fields (datetimes as ISO strings)."""
        out = asdict(self)
        for key in ("created", "ended"):
            out[key] = None if out[key] is None else out[key].isoformat()
        return out


def _parse_time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


class SidecarSummary(NamedTuple):
    """What the writer sidecars of a run record (see :func:`sum_sidecars`)."""

    counts: dict[str, int]
    writers: list[str]
    running: list[str]


def sum_sidecars(sidecars: Mapping[str, Any]) -> SidecarSummary:
    """Rows per table summed over a run's writer sidecars, the writer ids, and which run.

    Args:
        sidecars: the parsed ``writers/<writer_id>.json`` documents, keyed by the file
            name without ``.json``. A malformed document still names its writer (by
            the file name); counts that are not non-negative integers are skipped.

    Returns:
        ``(counts, writers, running)``: the summed counts, the sorted writer ids, and
        the ids of writers whose status is still ``running``.

    Example:
        >>> sum_sidecars({"a": {"writer_id": "a", "counts": {"steps": 5}, "status": "complete"},
        ...               "b": {"counts": {"steps": 7}, "status": "running"}, "c": []})
        SidecarSummary(counts={'steps': 12}, writers=['a', 'b', 'c'], running=['b'])
    """
    counts: dict[str, int] = {}
    writers, running = [], []
    for name, side in sorted(sidecars.items()):
        side = side if isinstance(side, dict) else {}
        writer = str(side.get("writer_id") or name)
        writers.append(writer)
        if side.get("status") == "running":
            running.append(writer)
        tables = side.get("counts")
        for table, n in (tables if isinstance(tables, dict) else {}).items():
            if _is_count(n):
                counts[table] = counts.get(table, 0) + int(n)
    return SidecarSummary(counts, writers, running)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_time(value: object) -> bool:
    if value is None:
        return True
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_error_record(value: object) -> bool:
    return value is None or (
        isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    )


RUN_STATUSES = ("running", "complete", "failed")
"""The values of ``status`` in ``run.json`` (the reader adds ``unknown``)."""

_RUN_FIELDS: dict[str, tuple[Callable[[object], bool], str]] = {
    "schema_version": (_is_count, "a non-negative integer"),
    "varirec_version": (lambda v: isinstance(v, str), "a string"),
    "run_id": (lambda v: isinstance(v, str), "a string"),
    "created_utc": (_is_time, "an ISO 8601 time or null"),
    "ended_utc": (_is_time, "an ISO 8601 time or null"),
    "status": (lambda v: v in RUN_STATUSES, f"one of {list(RUN_STATUSES)}"),
    "metadata": (lambda v: isinstance(v, dict), "an object"),
    "counts": (
        lambda v: isinstance(v, dict) and all(_is_count(n) for n in v.values()),
        "an object of non-negative row counts per table",
    ),
    "writers": (_is_str_list, "a list of writer ids (strings)"),
    "writers_still_running": (_is_str_list, "a list of writer ids (strings)"),
    "error": (_is_error_record, 'null or an object {"type": ..., "message": ...} of strings'),
}


def _shown(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _is_variation(value: object) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("key"), str)
        and isinstance(value.get("mode"), str)
    )


def check_run_doc(doc: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The fields of a parsed ``run.json`` whose types are right, and what is wrong.

    A field of the wrong type is left out of the returned document (readers then
    treat it as unknown) and described in the problems, so one bad field never makes
    the rest of the run unreadable. In ``metadata``, ``variations`` must be a list of
    objects with string ``key`` and ``mode``, and ``design`` an object.

    Returns:
        ``(clean, problems)``: the document without the bad fields, and one sentence
        per bad field naming it, the value found and what it must be.

    Example:
        >>> clean, problems = check_run_doc({"status": "complete", "writers": 5})
        >>> clean
        {'status': 'complete'}
        >>> problems
        ["field 'writers' must be a list of writer ids (strings), got int 5"]
    """
    clean: dict[str, Any] = {}
    problems = []
    for key, value in doc.items():
        check = _RUN_FIELDS.get(key)
        if check is not None and not check[0](value):
            problems.append(f"field {key!r} must be {check[1]}, got {_shown(value)}")
        else:
            clean[key] = value
    if "metadata" in clean:
        metadata = clean["metadata"] = dict(clean["metadata"])
        variations = metadata.get("variations")
        if variations is not None and not (
            isinstance(variations, list) and all(_is_variation(v) for v in variations)
        ):
            problems.append(
                "field 'metadata.variations' must be a list of objects with string 'key' "
                f"and 'mode', got {_shown(variations)}"
            )
            del metadata["variations"]
        design = metadata.get("design")
        if design is not None and not isinstance(design, dict):
            problems.append(f"field 'metadata.design' must be an object, got {_shown(design)}")
            del metadata["design"]
    return clean, problems


class LoadedRun(NamedTuple):
    """A run as :func:`load_run` read it: its info and the counts behind its health."""

    info: RunInfo
    writer_counts: dict[str, dict[str, int] | None]
    """Per writer, the counts it wrote when it closed; None: killed, running or unknown."""
    closed_counts: dict[str, int]
    """run.json's closing counts when no sidecar exists (they stand for all writers)."""


def load_run(filesystem: pafs.FileSystem, root: str, run_id: str) -> LoadedRun:
    """Read run ``run_id`` of the dataset at ``root``: its ``run.json`` and sidecars.

    Problems (a missing or invalid ``run.json``, a bad field, an unreadable sidecar, a
    newer schema version) are DatasetWarnings; nothing is raised or changed.

    Example:
        >>> import tempfile, pyarrow.fs as pafs
        >>> from varirec.storage import RunWriter
        >>> root = tempfile.mkdtemp()
        >>> RunWriter(root, "r0", background=False).close()
        >>> load_run(pafs.LocalFileSystem(), root, "r0").info.status
        'complete'
    """
    path = f"{root.rstrip('/')}/{RUN_PREFIX}{run_id}"
    doc = _read_json(filesystem, f"{path}/{RUN_JSON}", run_id)
    sidecars = _read_sidecars(filesystem, path)
    counts, sidecar_writers, _ = sum_sidecars(sidecars)
    writers = {*doc.get("writers", []), *sidecar_writers}
    per_writer: dict[str, dict[str, int] | None] = dict.fromkeys(writers)
    for name, side in sidecars.items():
        side = side if isinstance(side, dict) else {}
        writer = str(side.get("writer_id") or name)
        tables = side.get("counts")
        closed = side.get("status") in ("complete", "failed") and isinstance(tables, dict)
        per_writer[writer] = sum_sidecars({name: side}).counts if closed else None
    closed_run = doc.get("status") in ("complete", "failed") and not sidecars
    closed_counts = dict(doc.get("counts") or {}) if closed_run else {}
    version = doc.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        warn(
            f"run {run_id!r} has schema_version {version}, newer than this varirec's "
            f"{SCHEMA_VERSION}; upgrade varirec to read it reliably"
        )
    info = RunInfo(
        run_id=run_id,
        path=path,
        metadata=dict(doc.get("metadata") or {}),
        status=str(doc.get("status", "unknown")),
        created=_parse_time(doc.get("created_utc")),
        ended=_parse_time(doc.get("ended_utc")),
        counts=counts if sidecars else dict(doc.get("counts") or {}),
        writers=sorted(writers),
        error=doc.get("error"),
        schema_version=version,
    )
    return LoadedRun(info, per_writer, closed_counts)


def _read_json(filesystem: pafs.FileSystem, path: str, run_id: str) -> dict[str, Any]:
    try:
        with filesystem.open_input_stream(path) as f:
            text = f.read().decode("utf-8")
    except FileNotFoundError:
        warn(
            f"{path} is missing; reading run {run_id!r} with empty metadata and status "
            "'unknown' (its writer may have died before writing it)"
        )
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        warn(
            f"{path} cannot be read ({type(exc).__name__}: {exc}); reading run {run_id!r} "
            "with empty metadata and status 'unknown'. Nothing was changed"
        )
        return {}
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    except ValueError as exc:
        warn(
            f"{path} is not valid run metadata ({exc}); reading run {run_id!r} with "
            "empty metadata and status 'unknown'. The file was left as it is; fix or "
            "restore it to get the metadata back"
        )
        return {}
    clean, problems = check_run_doc(doc)
    for problem in problems:
        warn(
            f"{path}: {problem}; reading run {run_id!r} without it (the file was left as "
            "it is; fix the field to get it back)"
        )
    return clean


def _read_sidecars(filesystem: pafs.FileSystem, run_path: str) -> dict[str, Any]:
    directory = f"{run_path}/{WRITERS_DIR}"
    if filesystem.get_file_info(directory).type != pafs.FileType.Directory:
        return {}
    out: dict[str, Any] = {}
    for info in filesystem.get_file_info(pafs.FileSelector(directory)):
        if not info.base_name.endswith(".json") or info.base_name.startswith("."):
            continue
        name = info.base_name[: -len(".json")]
        try:
            with filesystem.open_input_stream(info.path) as f:
                out[name] = json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError) as exc:
            warn(
                f"writer sidecar {info.path} is unreadable ({type(exc).__name__}: {exc}); "
                f"the rows of writer {name!r} are not counted"
            )
            out[name] = None
    return out
