"""Read a varirec dataset back: runs, draws, episodes, steps.

Contents:
    open_dataset: open a dataset directory or URI.
    Dataset: lists runs and reads their tables (pyarrow filters and projection).
    RunInfo: what ``run.json`` and the writer sidecars say about one run.
    TableHealth, SkippedPart: how much of a table reads, and the files that do not.
    DatasetWarning: something in the dataset was skipped or is incomplete.

The reader never writes, renames or deletes anything. What it skips, and says so
(a DatasetWarning naming the file and the reason; :meth:`Dataset.health` lists them
with the rows they held, from the writer sidecars):
    * ``.part-*.parquet.tmp``: an unfinished part of a writer that died (or is still
      writing).
    * a final-named part whose footer cannot be read (truncated, empty, not Parquet).
    * a foreign part: a ``draws``/``episodes`` part without the table's columns and
      types (e.g. written by ``DataFrame.to_parquet``), or a part of another table
      that shares no column with the run's other parts of it. Read as the table, its
      rows would be rows of nulls.
    * a corrupt part: its data fails a page checksum (parts are written with one per
      page) or does not decompress. The scan's error names no file, so the parts are
      then read one by one to find it; the rest is returned.
    * a table path that is a file, not a directory.
    * other names starting with ``.`` or ``_``: logged at debug level.

A missing ``run.json`` or one that is not valid JSON gives a DatasetWarning, and the
run's parts are still read with empty metadata and status ``"unknown"``: the data
matters more than its label, and the file is left untouched for the user to inspect.
A field of the wrong type (``"writers": 5``) is named in a DatasetWarning and ignored.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import logging
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import pyarrow as pa
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
    check_part_schema,
    check_run_doc,
    check_table_name,
    parse_part_name,
    sum_sidecars,
)

if TYPE_CHECKING:
    import pyarrow.dataset as ds

    Filter = ds.Expression | list[tuple[Any, ...]] | list[list[tuple[Any, ...]]]
    """A ``pyarrow.dataset`` expression, or DNF tuples as in ``pyarrow.parquet``."""

__all__ = ["Dataset", "DatasetWarning", "RunInfo", "SkippedPart", "TableHealth", "open_dataset"]

logger = logging.getLogger(__name__)

_TABLE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@functools.cache
def _parquet_format() -> ds.ParquetFileFormat:
    # pyarrow.dataset imports pandas when present: loaded on the first read, never by
    # `import varirec` (the core stays light inside the simulator process).
    import pyarrow.dataset as ds

    # Pages written with a CRC (write_page_checksum) are verified; older pages are not.
    return ds.ParquetFileFormat(
        default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True)
    )


_DATA_ERRORS = (OSError, pa.ArrowException)


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


@dataclass(frozen=True)
class SkippedPart:
    """A file of a table that the reader does not read, and why.

    Attributes:
        run_id: the run it belongs to.
        table: the table it belongs to.
        path: the file, on the dataset's filesystem.
        kind: ``unfinished`` (a temporary part of a writer that died or is still
            writing), ``unreadable`` (no valid footer: truncated, empty, not Parquet),
            ``foreign`` (a schema that is not the table's), ``corrupt`` (its data failed
            a page checksum or decompression) or ``not a directory`` (the table path).
        reason: why it is not read, in words (the error, or the schema problem).
        writer: the writer id in its name, or None if the name does not parse.
    """

    run_id: str
    table: str
    path: str
    kind: str
    reason: str
    writer: str | None = None

    @property
    def unfinished(self) -> bool:
        """A temporary part: its writer died (or is still writing); not damage."""
        return self.kind == "unfinished"

    def __str__(self) -> str:
        return f"{self.path} ({self.kind}: {self.reason})"

    def warning(self) -> str:
        """The DatasetWarning text: what is skipped, naming the file, and why."""
        if self.unfinished:
            return (
                f"skipping {self.path}: an unfinished part from a writer that died (or is "
                "still writing); its rows are not readable"
            )
        if self.kind == "not a directory":
            return f"skipping table {self.table!r} of run {self.run_id!r}: {self.reason}"
        return f"skipping {self.kind} part {self.path}: {self.reason}"


@dataclass(frozen=True)
class TableHealth:
    """How much of one table of one run reads, from the Parquet footers (no data read).

    Attributes:
        run_id: the run.
        table: the table.
        rows_readable: rows in the parts that read.
        rows_recorded: rows that the writers recorded in their sidecars (or, without
            sidecars, ``run.json``), summed over the writers whose count is known; None
            if none is.
        rows_missing: rows that counted writers recorded beyond what their readable
            parts hold: the rows of the skipped parts. Never negative; None if unknown.
        skipped: the files of the table that are not read.
        writers_uncounted: writers with parts but no final count (killed, still
            writing, or their sidecar is missing): their rows are not in
            ``rows_recorded``.
    """

    run_id: str
    table: str
    rows_readable: int
    rows_recorded: int | None
    rows_missing: int | None
    skipped: tuple[SkippedPart, ...] = ()
    writers_uncounted: tuple[str, ...] = ()

    @property
    def damaged(self) -> bool:
        """Whether a part was skipped or recorded rows are not readable."""
        return bool(self.skipped) or bool(self.rows_missing)

    def describe(self) -> str:
        """The skipped parts with their reasons and the rows they held, in words."""
        where = f"table {self.table!r} of run {self.run_id!r}"
        lines = [where]
        if self.skipped:
            parts = "; ".join(str(s) for s in self.skipped)
            lines = [f"{where}: {len(self.skipped)} part(s) skipped: {parts}"]
        if self.rows_recorded is not None:
            where = (
                "in the skipped part(s)"
                if self.skipped
                else "no file holds them: parts were deleted or moved"
            )
            lines.append(
                f"its writers recorded {self.rows_recorded} row(s), {self.rows_readable} are "
                f"readable, {self.rows_missing or 0} are not ({where})"
            )
        else:
            lines.append(
                f"{self.rows_readable} row(s) are readable; how many the skipped part(s) held "
                "is unknown (no closed writer sidecar counts them)"
            )
        if self.writers_uncounted:
            lines.append(
                f"writer(s) {list(self.writers_uncounted)} left no final count (killed, still "
                "writing, or sidecar missing)"
            )
        return "; ".join(lines)


class _Part(NamedTuple):
    path: str
    schema: pa.Schema
    num_rows: int
    writer: str | None


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
        self._writer_counts: dict[str, dict[str, dict[str, int] | None]] = {}
        self._closed_counts: dict[str, dict[str, int]] = {}
        # Footers by (path, size, mtime): a file that changes is read again.
        self._footers: dict[tuple[str, int, int | None], Any] = {}
        # Parts whose data failed to read (checksum, decompression): (kind, reason).
        self._bad_data: dict[tuple[str, int, int | None], tuple[str, str]] = {}
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
        # Per writer, the counts it wrote when it closed; None: killed, running or unknown.
        per_writer: dict[str, dict[str, int] | None] = dict.fromkeys(writers)
        for name, side in sidecars.items():
            side = side if isinstance(side, dict) else {}
            writer = str(side.get("writer_id") or name)
            tables = side.get("counts")
            closed = side.get("status") in ("complete", "failed") and isinstance(tables, dict)
            per_writer[writer] = sum_sidecars({name: side}).counts if closed else None
        self._writer_counts[run_id] = per_writer
        closed_run = doc.get("status") in ("complete", "failed") and not sidecars
        self._closed_counts[run_id] = dict(doc.get("counts") or {}) if closed_run else {}
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
        except (OSError, UnicodeDecodeError) as exc:
            _warn(
                f"{path} cannot be read ({type(exc).__name__}: {exc}); reading run {run_id!r} "
                "with empty metadata and status 'unknown'. Nothing was changed"
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
        clean, problems = check_run_doc(doc)
        for problem in problems:
            _warn(
                f"{path}: {problem}; reading run {run_id!r} without it (the file was left as "
                "it is; fix the field to get it back)"
            )
        return clean

    def _read_sidecars(self, run_path: str) -> dict[str, Any]:
        directory = f"{run_path}/{WRITERS_DIR}"
        if self.filesystem.get_file_info(directory).type != pafs.FileType.Directory:
            return {}
        out: dict[str, Any] = {}
        for info in self.filesystem.get_file_info(pafs.FileSelector(directory)):
            if not info.base_name.endswith(".json") or info.base_name.startswith("."):
                continue
            name = info.base_name[: -len(".json")]
            try:
                with self.filesystem.open_input_stream(info.path) as f:
                    out[name] = json.loads(f.read().decode("utf-8"))
            except (OSError, ValueError) as exc:
                _warn(
                    f"writer sidecar {info.path} is unreadable ({type(exc).__name__}: {exc}); "
                    f"the rows of writer {name!r} are not counted"
                )
                out[name] = None
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
        import pyarrow.dataset as ds  # lazily: see _parquet_format

        if isinstance(filter, list):
            filter = pq.filters_to_expression(filter)
        partitioning = ds.partitioning(
            pa.schema([("run_id", DICT_STRING)]),
            dictionaries={"run_id": pa.array(selected, pa.string())},
            flavor="hive",
        )

        def scan(paths: list[str]) -> pa.Table:
            dataset = ds.dataset(
                paths,
                schema=schema,
                format=_parquet_format(),
                filesystem=self.filesystem,
                partitioning=partitioning,
                partition_base_dir=self.root,
            )
            return dataset.to_table(columns=wanted, filter=filter)

        try:
            return scan(files)
        except _DATA_ERRORS as exc:
            # The scan's error names no file: find the damaged part(s), read the rest.
            tables = []
            for path in files:
                try:
                    tables.append(scan([path]))
                except _DATA_ERRORS as part_exc:
                    if not self._data_damaged(table, path, part_exc):
                        raise exc from None  # not damage (e.g. a bad filter): the caller's error
            if not tables:
                return schema.empty_table().select(wanted)
            return pa.concat_tables(tables)

    def _data_damaged(self, table: str, path: str, exc: BaseException) -> bool:
        """Whether ``path``'s data is damaged (read fully, checksums verified); if so, warn
        naming it and skip it from now on."""
        try:
            pq.read_table(path, filesystem=self.filesystem, page_checksum_verification=True)
        except _DATA_ERRORS as full_exc:
            info = self.filesystem.get_file_info(path)
            reason = (
                f"its data failed to read ({type(full_exc).__name__}: {full_exc}): a page "
                "checksum mismatch or undecodable page, i.e. the file's bytes changed after it "
                "was written"
            )
            self._bad_data[(path, info.size, info.mtime_ns)] = ("corrupt", reason)
            _warn(f"skipping corrupt part {path} of table {table!r}: {reason}")
            return True
        return False

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
    ) -> Any:
        """:meth:`read` as a pandas DataFrame (dictionary columns become categoricals).

        Raises:
            ImportError: pandas is not installed.
        """
        # pyarrow converts; the core never imports pandas itself (docs/architecture.md).
        if importlib.util.find_spec("pandas") is None:
            raise ImportError(
                "Dataset.to_pandas needs pandas; install it with pip install 'varirec[analysis]'"
            )
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

    # ------------------------------------------------------------ parts and health
    def tables(self, run_id: str) -> list[str]:
        """Names of the tables that run ``run_id`` has on disk or counted in its metadata."""
        run = self.run(run_id)
        selector = pafs.FileSelector(run.path, allow_not_found=True)
        names = {
            e.base_name
            for e in self.filesystem.get_file_info(selector)
            if e.base_name != WRITERS_DIR and _TABLE_RE.match(e.base_name)
        }
        return sorted(names | set(run.counts))

    def health(self, table: str, runs: Runs = None) -> list[TableHealth]:
        """How much of ``table`` reads in each selected run, from the footers (cheap).

        Parts whose data failed to read earlier (a page checksum or decompression
        error, found by :meth:`read`) count as skipped. Returns what :meth:`read` warns
        about; warns nothing itself.

        Example:
            >>> import tempfile, pyarrow as pa
            >>> from varirec.storage import RunWriter
            >>> root = tempfile.mkdtemp()
            >>> with RunWriter(root, "r0", background=False) as w:
            ...     w.append("steps", pa.table({"reward": [1.0, 2.0]}))
            >>> h = open_dataset(root).health("steps")[0]
            >>> h.rows_readable, h.rows_recorded, h.rows_missing, h.damaged
            (2, 2, 0, False)
        """
        check_table_name(table)
        out = []
        for run_id in self._select(runs):
            parts, skipped = self._scan(run_id, table)
            counts = self._writer_counts[run_id]
            readable: dict[str | None, int] = {}
            for part in parts:
                readable[part.writer] = readable.get(part.writer, 0) + part.num_rows
            with_files = {p.writer for p in parts} | {s.writer for s in skipped}
            with_files.discard(None)
            counted = {w: c for w, c in counts.items() if c is not None}
            uncounted = sorted(w for w in with_files if w not in counted)
            if counted:
                recorded: int | None = sum(c.get(table, 0) for c in counted.values())
                missing: int | None = sum(
                    max(0, c.get(table, 0) - readable.get(w, 0)) for w, c in counted.items()
                )
            elif table in self._closed_counts[run_id]:
                # No usable sidecar: run.json's total stands for all writers.
                recorded = self._closed_counts[run_id][table]
                missing = max(0, recorded - sum(readable.values()))
                uncounted = []
            else:
                recorded = missing = None
            out.append(
                TableHealth(
                    run_id,
                    table,
                    sum(readable.values()),
                    recorded,
                    missing,
                    tuple(skipped),
                    tuple(uncounted),
                )
            )
        return out

    def damage_note(self, table: str, runs: Runs = None) -> str | None:
        """What is damaged or missing in ``table`` of the selected runs, or None.

        One sentence per run whose parts were skipped or whose recorded rows are not
        all readable; used by the analysis to give the real cause of an empty table.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DatasetWarning)
            damaged = [h for h in self.health(table, runs) if h.damaged]
        if not damaged:
            return None
        return (
            ". ".join(h.describe() for h in damaged)
            + ". The reader changed nothing: restore the damaged files from a copy, or "
            "record the run again"
        )

    def _collect(self, table: str, run_ids: list[str]) -> tuple[list[str], pa.Schema]:
        merged = canonical_schema(table)
        files = []
        for run_id in run_ids:
            parts, skipped = self._scan(run_id, table)
            for s in skipped:
                _warn(s.warning())
            for part in parts:
                try:
                    merged = (
                        part.schema if merged is None else pa.unify_schemas([merged, part.schema])
                    )
                except pa.ArrowException as exc:
                    _warn(
                        f"skipping part {part.path}: its schema conflicts with the others ({exc})"
                    )
                    continue
                files.append(part.path)
        return files, pa.schema([]) if merged is None else merged

    def _scan(self, run_id: str, table: str) -> tuple[list[_Part], list[SkippedPart]]:
        """The readable parts of ``table`` in run ``run_id`` (footers only), and the rest."""
        run_path = self._runs[run_id].path
        parts: list[_Part] = []
        skipped: list[SkippedPart] = []
        for info in self._part_infos(run_id, run_path, table, skipped):
            parsed = parse_part_name(info.base_name.lstrip(".").removesuffix(TMP_SUFFIX))
            writer = None if parsed is None else parsed[0]
            if info.base_name.endswith(TMP_SUFFIX):
                reason = "the writer died while writing it, or is still writing"
                skipped.append(SkippedPart(run_id, table, info.path, "unfinished", reason, writer))
                continue
            key = (info.path, info.size, info.mtime_ns)
            problem = self._bad_data.get(key)
            if problem is None:
                footer = self._footers.get(key)
                if footer is None:
                    footer = self._footers[key] = self._read_footer(info.path, table)
                if isinstance(footer[0], str):
                    problem = footer
                else:
                    parts.append(_Part(info.path, footer[0], footer[1], writer))
                    continue
            skipped.append(SkippedPart(run_id, table, info.path, *problem, writer))
        if canonical_schema(table) is None and len(parts) > 1:
            parts = self._drop_disjoint(parts, skipped, run_id, table)
        return parts, skipped

    def _read_footer(self, path: str, table: str) -> tuple[pa.Schema, int] | tuple[str, str]:
        """``(schema, rows)`` of a part, or ``(kind, reason)`` it cannot be read as ``table``."""
        try:
            meta = pq.read_metadata(path, filesystem=self.filesystem)
            schema = meta.schema.to_arrow_schema().remove_metadata()
        except (pa.ArrowException, OSError) as exc:
            return "unreadable", f"{type(exc).__name__}: {exc}"
        problems = check_part_schema(table, schema)
        if problems:
            nulls = (
                "; read as the table, its rows would be nulls" if "missing" in problems[0] else ""
            )
            return "foreign", (
                f"its schema conflicts with the {table!r} table's: {'; '.join(problems)}; "
                f"it was not written by varirec (or by an incompatible version){nulls}"
            )
        return schema, meta.num_rows

    @staticmethod
    def _drop_disjoint(
        parts: list[_Part], skipped: list[SkippedPart], run_id: str, table: str
    ) -> list[_Part]:
        """Drop parts that share no column with the run's usual columns (foreign files)."""
        column_sets = [frozenset(p.schema.names) for p in parts]
        usual = max(column_sets, key=column_sets.count)  # most common; ties: the first
        keep = []
        for part, names in zip(parts, column_sets, strict=True):
            if names & usual:
                keep.append(part)
            else:
                reason = (
                    f"its columns {sorted(names)} share none with the other {table!r} parts of "
                    f"the run ({sorted(usual)}); it was written by another tool and would read "
                    "as rows of nulls"
                )
                skipped.append(
                    SkippedPart(run_id, table, part.path, "foreign", reason, part.writer)
                )
        return keep

    def _part_infos(
        self, run_id: str, run_path: str, table: str, skipped: list[SkippedPart]
    ) -> list[pafs.FileInfo]:
        """The final and temporary part files of a table, sorted by path."""
        directory = f"{run_path}/{table}"
        info = self.filesystem.get_file_info(directory)
        if info.type == pafs.FileType.NotFound:
            return []
        if info.type != pafs.FileType.Directory:
            reason = f"{directory} is a file, not a directory of parts; nothing of it is read"
            skipped.append(SkippedPart(run_id, table, directory, "not a directory", reason))
            return []
        out = []
        selector = pafs.FileSelector(directory)
        for info in sorted(self.filesystem.get_file_info(selector), key=lambda i: i.path):
            name = info.base_name
            if info.type != pafs.FileType.File:
                continue
            if name.startswith(".part-") and name.endswith(TMP_SUFFIX):
                out.append(info)
            elif name.startswith((".", "_")) or not name.endswith(".parquet"):
                logger.debug("skipping %s (hidden or not a .parquet file)", info.path)
            else:
                out.append(info)
        return out
