"""Read a varirec dataset back: runs, draws, episodes, steps.

Contents:
    open_dataset: open a dataset directory or URI.
    Dataset: lists runs and reads their tables (pyarrow filters and projection).

Re-exported here for the readers' convenience: RunInfo and DatasetWarning (from
:mod:`varirec.storage.run_info`), TableHealth and SkippedPart (from
:mod:`varirec.storage.health`).

The reader never writes, renames or deletes anything. It skips temporary,
unreadable, foreign and corrupt parts with a DatasetWarning that names the file and
the reason (the list is in :mod:`varirec.storage.health`); :meth:`Dataset.health`
lists them with the rows they held, from the writer sidecars. A missing or invalid
``run.json`` is read as empty metadata with status ``"unknown"``
(:mod:`varirec.storage.run_info`).
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import logging
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from varirec.errors import DatasetError, UnknownNameError

from .health import PartScanner, SkippedPart, TableHealth
from .location import StorePath, is_uri, redact, resolve_filesystem
from .run_info import DatasetWarning, RunInfo, load_run, warn
from .schema import DICT_STRING, RUN_PREFIX, WRITERS_DIR, canonical_schema, check_table_name

if TYPE_CHECKING:
    import pyarrow.dataset as ds

    Filter = ds.Expression | list[tuple[Any, ...]] | list[list[tuple[Any, ...]]]
    """A ``pyarrow.dataset`` expression, or DNF tuples as in ``pyarrow.parquet``."""

__all__ = ["Dataset", "DatasetWarning", "RunInfo", "SkippedPart", "TableHealth", "open_dataset"]
# DatasetWarning, RunInfo, SkippedPart, TableHealth: re-exported (see the module docstring).

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


Runs = str | RunInfo | Iterable[str | RunInfo] | None
"""Which runs to read: one id or RunInfo, several, or None for all."""


def open_dataset(path: str | os.PathLike[str] | StorePath) -> Dataset:
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
        >>> data.run_ids(), data.runs()[0].status
        (['r0'], 'complete')
        >>> data.steps(columns=["reward"]).column("reward").to_pylist()
        [1.0, 2.0]
    """
    if not isinstance(path, str | os.PathLike | StorePath):
        raise TypeError(
            f"a dataset path must be a str or a path, got {type(path).__name__} {path!r:.60}; "
            "e.g. open_dataset('runs/')"
        )
    return Dataset(path)


class Dataset:
    """A varirec dataset: a directory of ``run_id=<run_id>/`` runs.

    Args:
        path: a local directory or a URI that ``pyarrow.fs.FileSystem.from_uri`` knows.

    Raises:
        DatasetError: the path does not exist, is not a directory or holds no runs.
    """

    def __init__(self, path: str | os.PathLike[str] | StorePath) -> None:
        text = str(path) if isinstance(path, StorePath) else os.fspath(path)
        if isinstance(path, StorePath):
            self.filesystem, self.root = path.filesystem, path.path
        elif is_uri(text):
            self.filesystem, self.root = resolve_filesystem(text)
            text = redact(text)  # credentials in a URI never reach a message
        else:
            text = text.removeprefix("file://")
            self.filesystem, self.root = pafs.LocalFileSystem(), os.path.abspath(text)
        self.path = text
        self._writer_counts: dict[str, dict[str, dict[str, int] | None]] = {}
        self._closed_counts: dict[str, dict[str, int]] = {}
        self._parts = PartScanner(self.filesystem)
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
        runs = {}
        for run_id in dirs:
            try:
                # Listed first: a run directory this user may not read is skipped whole
                # (a part it holds would fail every read of the dataset).
                self.filesystem.get_file_info(pafs.FileSelector(self._run_path(run_id)))
                runs[run_id] = self._load_run(run_id)
            except OSError as exc:
                warn(
                    f"skipping run {run_id!r}: {self._run_path(run_id)} cannot be read "
                    f"({exc}); check that it is still there and that this user may read it "
                    "(chmod -R u+rX), then open the dataset again"
                )
        if not runs:
            raise DatasetError(
                f"no run under {self.path} can be read ({len(dirs)} run_id=* "
                "director(ies) skipped, see the warnings); check their permissions"
            )
        self._runs = runs

    def _run_path(self, run_id: str) -> str:
        return f"{self.root.rstrip('/')}/{RUN_PREFIX}{run_id}"

    def _is_run_dir(self) -> bool:
        return os.path.basename(self.root.rstrip("/")).startswith(RUN_PREFIX)

    def runs(self) -> list[RunInfo]:
        """Every run, sorted by run id (reads of the dataset are methods, like :meth:`run`
        and :meth:`draws`; what was listed at open or :meth:`refresh`)."""
        return list(self._runs.values())

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
        loaded = load_run(self.filesystem, self.root, run_id)
        self._writer_counts[run_id] = loaded.writer_counts
        self._closed_counts[run_id] = loaded.closed_counts
        return loaded.info

    def selected(self, runs: Runs) -> list[str]:
        """The ids of the runs ``runs`` names (every run for None), each known, once.

        Raises:
            TypeError: ``runs`` is not a run id, a run or an iterable of them.
            UnknownNameError: a run id the dataset does not hold.
        """
        return self._select(runs)

    def _select(self, runs: Runs) -> list[str]:
        if runs is None:
            return self.run_ids()
        if isinstance(runs, (str, RunInfo)):
            runs = [runs]
        elif not isinstance(runs, Iterable):
            raise TypeError(
                f"`runs` must be a run id or a list of run ids, got {type(runs).__name__} "
                f"{runs!r:.60}; e.g. runs=['{(self.run_ids() or ['run'])[0]}']"
            )
        wanted = [r.run_id if isinstance(r, RunInfo) else r for r in runs]
        bad = [r for r in wanted if not isinstance(r, str)]
        if bad:
            raise TypeError(
                f"`runs` must hold run ids (str), got {bad[0]!r}; `varirec inspect` lists them"
            )
        unknown = [r for r in wanted if r not in self._runs]
        if unknown:
            near = difflib.get_close_matches(str(unknown[0]), self.run_ids(), n=3)
            hint = f"; did you mean {near}?" if near else ""
            raise UnknownNameError(
                f"unknown run id(s) {unknown} in {self.path}{hint} Known run ids: {self.run_ids()}"
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
            reason = (
                f"its data failed to read ({type(full_exc).__name__}: {full_exc}): a page "
                "checksum mismatch or undecodable page, i.e. the file's bytes changed after it "
                "was written"
            )
            self._parts.mark_corrupt(path, reason)
            warn(f"skipping corrupt part {path} of table {table!r}: {reason}")
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
        return [
            self._parts.health(
                run_id,
                self._runs[run_id].path,
                table,
                self._writer_counts[run_id],
                self._closed_counts[run_id],
            )
            for run_id in self._select(runs)
        ]

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
            parts, skipped = self._parts.scan(run_id, self._runs[run_id].path, table)
            for s in skipped:
                warn(s.warning())
            for part in parts:
                try:
                    merged = (
                        part.schema if merged is None else pa.unify_schemas([merged, part.schema])
                    )
                except pa.ArrowException as exc:
                    warn(f"skipping part {part.path}: its schema conflicts with the others ({exc})")
                    continue
                files.append(part.path)
        return files, pa.schema([]) if merged is None else merged
