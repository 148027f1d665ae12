"""Read a varirec dataset back: runs, draws, episodes, steps.

Contents:
    open_dataset: open a dataset directory or URI.
    Dataset: lists runs and reads their tables (pyarrow filters and projection).
    RunInfo: what ``run.json`` and the writer sidecars say about one run.
    DatasetWarning: something in the dataset was skipped or is incomplete.

The reader never writes, renames or deletes anything. What it skips, and says so:
    * ``.part-*.parquet.tmp``: an unfinished part of a writer that died (or is still
      writing): a DatasetWarning naming the file.
    * a final-named part whose footer cannot be read (truncated, corrupt) or whose
      schema conflicts with the table's: a DatasetWarning naming it and the error.
    * other names starting with ``.`` or ``_``: logged at debug level.

A missing ``run.json`` or one that is not valid JSON gives a DatasetWarning, and the
run's parts are still read with empty metadata and status ``"unknown"``: the data
matters more than its label, and the file is left untouched for the user to inspect.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from varirec.errors import DatasetError, UnknownNameError

from .schema import (
    DICT_STRING,
    RUN_JSON,
    RUN_PREFIX,
    SCHEMA_VERSION,
    TMP_SUFFIX,
    WRITERS_DIR,
    canonical_schema,
    check_table_name,
    sum_sidecars,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Dataset", "DatasetWarning", "RunInfo", "open_dataset"]

logger = logging.getLogger(__name__)

Filter = ds.Expression | list[tuple[Any, ...]] | list[list[tuple[Any, ...]]]


class DatasetWarning(UserWarning):
    """A part or run file was skipped or is incomplete; the message names the file."""


def _warn(message: str) -> None:
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


Runs = str | RunInfo | Iterable[str | RunInfo] | None
"""Which runs to read: one id or RunInfo, several, or None for all."""


def _parse_time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def open_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Open a dataset directory (or a URI such as ``s3://bucket/prefix``).

    Raises:
        DatasetError: the path does not exist, is not a directory or holds no runs.

    Example:
        >>> import tempfile, pyarrow as pa
        >>> from varirec.storage import RunWriter
        >>> root = tempfile.mkdtemp()
        >>> with RunWriter(root, "r0", background=False) as w:
        ...     w.append("steps", pa.table({"reward": [1.0, 2.0]}))
        >>> data = open_dataset(root)
        >>> data.run_ids, data.runs[0].status
        (['r0'], 'complete')
        >>> data.steps(columns=["reward"]).column("reward").to_pylist()
        [1.0, 2.0]
    """
    return Dataset(path)


class Dataset:
    """A varirec dataset: a directory of ``run_id=<run_id>/`` runs.

    Args:
        path: a local directory or a URI that ``pyarrow.fs.FileSystem.from_uri`` knows.

    Raises:
        DatasetError: the path does not exist, is not a directory or holds no runs.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        text = os.fspath(path)
        if "://" in text:
            self.filesystem, self.root = pafs.FileSystem.from_uri(text)
        else:
            self.filesystem, self.root = pafs.LocalFileSystem(), os.path.abspath(text)
        self.path = text
        info = self.filesystem.get_file_info(self.root)
        if info.type == pafs.FileType.NotFound:
            raise DatasetError(f"dataset path {text} does not exist; check the path")
        if info.type != pafs.FileType.Directory:
            raise DatasetError(
                f"dataset path {text} is not a directory; pass the directory that holds "
                "the run_id=* directories"
            )
        self.refresh()

    def __repr__(self) -> str:
        return f"Dataset({self.path!r}, runs={len(self._runs)})"

    # ------------------------------------------------------------ runs
    def refresh(self) -> None:
        """Re-scan the directory for runs (a dataset may grow while it is read)."""
        entries = self.filesystem.get_file_info(pafs.FileSelector(self.root))
        dirs = sorted(
            e.base_name[len(RUN_PREFIX) :]
            for e in entries
            if e.type == pafs.FileType.Directory and e.base_name.startswith(RUN_PREFIX)
        )
        if not dirs:
            hint = " (this is a run directory; pass its parent)" if self._is_run_dir() else ""
            raise DatasetError(
                f"no run_id=* directories under {self.path}{hint}; record a run first "
                "or check the path"
            )
        self._runs = {run_id: self._load_run(run_id) for run_id in dirs}

    def _is_run_dir(self) -> bool:
        return os.path.basename(self.root.rstrip("/")).startswith(RUN_PREFIX)

    @property
    def runs(self) -> list[RunInfo]:
        """Every run, sorted by run id."""
        return list(self._runs.values())

    @property
    def run_ids(self) -> list[str]:
        """Every run id, sorted."""
        return list(self._runs)

    def run(self, run_id: str) -> RunInfo:
        """The :class:`RunInfo` of ``run_id``.

        Raises:
            UnknownNameError: no such run; the message lists the known run ids.
        """
        return self._runs[self._select([run_id])[0]]

    def _load_run(self, run_id: str) -> RunInfo:
        path = f"{self.root.rstrip('/')}/{RUN_PREFIX}{run_id}"
        doc = self._read_json(f"{path}/{RUN_JSON}", run_id)
        sidecars = self._read_sidecars(path)
        counts, sidecar_writers, _ = sum_sidecars(sidecars)
        writers = {*doc.get("writers", []), *sidecar_writers}
        version = doc.get("schema_version")
        if isinstance(version, int) and version > SCHEMA_VERSION:
            _warn(
                f"run {run_id!r} has schema_version {version}, newer than this varirec's "
                f"{SCHEMA_VERSION}; upgrade varirec to read it reliably"
            )
        return RunInfo(
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

    def _read_json(self, path: str, run_id: str) -> dict[str, Any]:
        try:
            with self.filesystem.open_input_stream(path) as f:
                text = f.read().decode("utf-8")
        except FileNotFoundError:
            _warn(
                f"{path} is missing; reading run {run_id!r} with empty metadata and status "
                "'unknown' (its writer may have died before writing it)"
            )
            return {}
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict):
                raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
        except ValueError as exc:
            _warn(
                f"{path} is not valid run metadata ({exc}); reading run {run_id!r} with "
                "empty metadata and status 'unknown'. The file was left as it is; fix or "
                "restore it to get the metadata back"
            )
            return {}
        return doc

    def _read_sidecars(self, run_path: str) -> dict[str, Any]:
        selector = pafs.FileSelector(f"{run_path}/{WRITERS_DIR}", allow_not_found=True)
        out = {}
        for info in self.filesystem.get_file_info(selector):
            if not info.base_name.endswith(".json") or info.base_name.startswith("."):
                continue
            try:
                with self.filesystem.open_input_stream(info.path) as f:
                    out[info.base_name[: -len(".json")]] = json.loads(f.read().decode("utf-8"))
            except (OSError, ValueError) as exc:
                logger.warning("skipping unreadable writer sidecar %s: %s", info.path, exc)
        return out

    def _select(self, runs: Runs) -> list[str]:
        if runs is None:
            return self.run_ids
        if isinstance(runs, (str, RunInfo)):
            runs = [runs]
        wanted = [r.run_id if isinstance(r, RunInfo) else r for r in runs]
        unknown = [r for r in wanted if r not in self._runs]
        if unknown:
            near = difflib.get_close_matches(str(unknown[0]), self.run_ids, n=3)
            hint = f"; did you mean {near}?" if near else ""
            raise UnknownNameError(
                f"unknown run id(s) {unknown} in {self.path}{hint} Known run ids: {self.run_ids}"
            )
        return list(dict.fromkeys(wanted))

    # ------------------------------------------------------------ tables
    def read(
        self,
        table: str,
        runs: Runs = None,
        *,
        columns: Sequence[str] | None = None,
        filter: Filter | None = None,
    ) -> pa.Table:
        """Read ``table`` of the selected runs, with a dictionary ``run_id`` column.

        Args:
            table: ``draws``, ``episodes``, ``steps`` or another table name.
            runs: run id(s) or RunInfo(s) to read; None reads every run.
            columns: columns to read (``run_id`` is always added); None reads all.
            filter: a ``pyarrow.compute``/``pyarrow.dataset`` expression (it may use
                ``run_id``) or DNF tuples as in ``pyarrow.parquet.read_table``.

        Returns:
            The rows; an empty table with the canonical schema if no run has parts of
            ``draws``/``episodes`` (only ``run_id`` for other tables).

        Raises:
            UnknownNameError: an unknown run id or column name.
        """
        check_table_name(table)
        selected = self._select(runs)
        files, schema = self._collect(table, selected)
        schema = schema.append(pa.field("run_id", DICT_STRING))
        wanted = self._columns(schema, columns, table)
        if not files:
            return schema.empty_table().select(wanted)
        partitioning = ds.partitioning(
            pa.schema([("run_id", DICT_STRING)]),
            dictionaries={"run_id": pa.array(selected, pa.string())},
            flavor="hive",
        )
        dataset = ds.dataset(
            files,
            schema=schema,
            format="parquet",
            filesystem=self.filesystem,
            partitioning=partitioning,
            partition_base_dir=self.root,
        )
        if isinstance(filter, list):
            filter = pq.filters_to_expression(filter)
        return dataset.to_table(columns=wanted, filter=filter)

    def draws(
        self,
        runs: Runs = None,
        *,
        columns: Sequence[str] | None = None,
        filter: Filter | None = None,
    ) -> pa.Table:
        """Read the ``draws`` table; arguments as in :meth:`read`."""
        return self.read("draws", runs, columns=columns, filter=filter)

    def episodes(
        self,
        runs: Runs = None,
        *,
        columns: Sequence[str] | None = None,
        filter: Filter | None = None,
    ) -> pa.Table:
        """Read the ``episodes`` table; arguments as in :meth:`read`."""
        return self.read("episodes", runs, columns=columns, filter=filter)

    def steps(
        self,
        runs: Runs = None,
        *,
        columns: Sequence[str] | None = None,
        filter: Filter | None = None,
    ) -> pa.Table:
        """Read the ``steps`` table; arguments as in :meth:`read`."""
        return self.read("steps", runs, columns=columns, filter=filter)

    def to_pandas(
        self,
        table: str,
        runs: Runs = None,
        *,
        columns: Sequence[str] | None = None,
        filter: Filter | None = None,
    ) -> pd.DataFrame:
        """:meth:`read` as a pandas DataFrame (dictionary columns become categoricals).

        Raises:
            ImportError: pandas is not installed.
        """
        try:
            import pandas  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "Dataset.to_pandas needs pandas; install it with pip install 'varirec[analysis]'"
            ) from exc
        return self.read(table, runs, columns=columns, filter=filter).to_pandas()

    def _columns(self, schema: pa.Schema, columns: Sequence[str] | None, table: str) -> list[str]:
        if columns is None:
            return schema.names
        if isinstance(columns, str):
            columns = [columns]
        unknown = [c for c in columns if c not in schema.names]
        if unknown and len(schema) > 1:  # a table without parts knows no columns
            raise UnknownNameError(
                f"unknown column(s) {unknown} in table {table!r}; columns: {schema.names}"
            )
        known = [c for c in columns if c in schema.names and c != "run_id"]
        return [*known, "run_id"]

    def _collect(self, table: str, run_ids: list[str]) -> tuple[list[str], pa.Schema]:
        merged = canonical_schema(table)
        files = []
        for run_id in run_ids:
            for path in self._part_paths(self._runs[run_id].path, table):
                try:
                    schema = pq.read_schema(path, filesystem=self.filesystem).remove_metadata()
                except (pa.ArrowException, OSError) as exc:
                    _warn(f"skipping unreadable part {path}: {type(exc).__name__}: {exc}")
                    continue
                try:
                    merged = schema if merged is None else pa.unify_schemas([merged, schema])
                except pa.ArrowException as exc:
                    _warn(f"skipping part {path}: its schema conflicts with the others ({exc})")
                    continue
                files.append(path)
        return files, pa.schema([]) if merged is None else merged

    def _part_paths(self, run_path: str, table: str) -> list[str]:
        selector = pafs.FileSelector(f"{run_path}/{table}", allow_not_found=True)
        paths = []
        for info in sorted(self.filesystem.get_file_info(selector), key=lambda i: i.path):
            name = info.base_name
            if info.type != pafs.FileType.File:
                continue
            if name.startswith(".part-") and name.endswith(TMP_SUFFIX):
                _warn(
                    f"skipping {info.path}: an unfinished part from a writer that died "
                    "(or is still writing); its rows are not readable"
                )
            elif name.startswith((".", "_")) or not name.endswith(".parquet"):
                logger.debug("skipping %s (hidden or not a .parquet file)", info.path)
            else:
                paths.append(info.path)
        return paths
