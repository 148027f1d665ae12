"""Crash-safe Parquet part files: one table of one run, written by one writer.

Contents:
    PartWriter: buffers batches into row groups and writes them to rotating parts.
    TableSink: routes batches of several tables to their PartWriters, optionally on a
        background thread.

A part is written under a hidden temporary name (``.part-<writer>-<n>.parquet.tmp``;
the leading dot makes ``pyarrow.dataset`` and globs such as ``*.parquet`` skip it)
and renamed with ``os.replace`` to ``part-<writer>-<n>.parquet`` once its footer is
written. Every file with a final name is therefore a complete Parquet file; a
process killed mid-part loses only that part (at most ``max_rows_per_part`` rows or
``max_seconds_per_part`` seconds of rows).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .schema import TMP_SUFFIX, check_writer_id, conform, parse_part_name, part_name, table_schema

__all__ = ["PartWriter", "TableSink"]

logger = logging.getLogger(__name__)

_OPTIONS = {"max_rows_per_part", "max_seconds_per_part", "row_group_size", "compression", "fsync"}


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. directories cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class PartWriter:
    """Writes one table of one run for one writer, as a sequence of Parquet parts.

    Incoming batches are buffered in memory until ``row_group_size`` rows are
    available, then written as one row group (zstd, dictionary-encoded strings). A
    part is closed and renamed to its final name when it holds ``max_rows_per_part``
    rows, when the oldest row not yet in a final-named part is ``max_seconds_per_part``
    old (checked on each write and on :meth:`maybe_rotate`), and on :meth:`flush` and
    :meth:`close`. Memory holds about one row group.

    Args:
        directory: the table directory, ``<run_dir>/<table>``; created if missing.
        writer_id: the writer's id, part of every file name.
        schema: the schema every batch must match; None takes the first batch's schema.
        table: the table name, used in error messages.
        max_rows_per_part: rows after which a part is closed.
        max_seconds_per_part: age of the oldest pending row after which a part is closed.
        row_group_size: rows per row group.
        compression: Parquet compression codec.
        fsync: fsync each part before renaming it. The rename alone protects against
            process crashes (SIGKILL); fsync adds power-loss safety at ~25 % throughput.

    Example:
        >>> import tempfile, pyarrow as pa
        >>> d = tempfile.mkdtemp()
        >>> w = PartWriter(f"{d}/steps", "w1", table="steps")
        >>> w.write(pa.table({"x": [1, 2, 3]}))
        >>> w.close()
        >>> [p.name for p in w.parts], w.rows_written
        (['part-w1-00000.parquet'], 3)
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        writer_id: str,
        *,
        schema: pa.Schema | None = None,
        table: str = "table",
        max_rows_per_part: int = 1_000_000,
        max_seconds_per_part: float = 60.0,
        row_group_size: int = 131_072,
        compression: str = "zstd",
        fsync: bool = False,
    ) -> None:
        self.check_options(
            max_rows_per_part=max_rows_per_part,
            max_seconds_per_part=max_seconds_per_part,
            row_group_size=row_group_size,
        )
        check_writer_id(writer_id)
        self.directory = Path(directory)
        self.writer_id = writer_id
        self.table = table
        self.schema = schema
        self.max_rows_per_part = int(max_rows_per_part)
        self.max_seconds_per_part = float(max_seconds_per_part)
        self.row_group_size = int(row_group_size)
        self.compression = compression
        self.fsync = fsync
        self.parts: list[Path] = []
        self.rows_written = 0  # rows in final-named parts
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self._part_rows = 0
        self._pending_since: float | None = None
        self._closed = False
        self.directory.mkdir(parents=True, exist_ok=True)
        self._next_index = self._first_free_index()

    @staticmethod
    def check_options(**options: Any) -> None:
        """Raise TypeError for an unknown option and ValueError for a non-positive limit."""
        unknown = sorted(options.keys() - _OPTIONS)
        if unknown:
            raise TypeError(f"unknown part options {unknown}; valid: {sorted(_OPTIONS)}")
        for name in ("max_rows_per_part", "max_seconds_per_part", "row_group_size"):
            value = options.get(name, 1)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"`{name}` must be a positive number, got {value!r}")

    @property
    def rows_buffered(self) -> int:
        """Rows held in memory, waiting for a full row group (less than ``row_group_size``)."""
        return self._buffered

    @property
    def rows_pending(self) -> int:
        """Rows accepted but not yet in a final-named part (lost on SIGKILL)."""
        return self._buffered + self._part_rows

    def _first_free_index(self) -> int:
        parsed = (parse_part_name(p.name) for p in self.directory.glob(f"part-{self.writer_id}-*"))
        indices = [p[1] for p in parsed if p is not None and p[0] == self.writer_id]
        return max(indices, default=-1) + 1

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        """Validate ``data``, buffer it, and write every full row group.

        Raises:
            ValueError: ``data`` does not match the schema (see :func:`conform`);
                nothing of it is buffered or written.
            RuntimeError: the writer is closed.
        """
        if self._closed:
            raise RuntimeError(f"PartWriter for table {self.table!r} is closed; open a new one")
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        if self.schema is None:
            self.schema = data.schema.remove_metadata()
        data = conform(data, self.schema, table=self.table)
        if data.num_rows == 0:
            return
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        self._buffer.append(data)
        self._buffered += data.num_rows
        self._drain(final=False)
        self.maybe_rotate()

    def maybe_rotate(self, now: float | None = None) -> bool:
        """Flush if the oldest pending row is older than ``max_seconds_per_part``.

        Returns:
            True if a flush happened.
        """
        if self._pending_since is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self._pending_since < self.max_seconds_per_part:
            return False
        self.flush()
        return True

    def seconds_until_rotation(self) -> float | None:
        """Seconds until :meth:`maybe_rotate` would flush, or None if nothing is pending."""
        if self._pending_since is None:
            return None
        return max(0.0, self._pending_since + self.max_seconds_per_part - time.monotonic())

    def flush(self) -> None:
        """Write buffered rows as a row group and close the current part (durable)."""
        self._drain(final=True)
        self._close_part()
        self._pending_since = None

    def close(self) -> None:
        """Flush and refuse further writes; idempotent."""
        if self._closed:
            return
        self.flush()
        self._closed = True

    def abort(self) -> None:
        """Close the open temporary part without renaming it (used after a write error)."""
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None
        self._closed = True

    def _drain(self, *, final: bool) -> None:
        if not self._buffered or (not final and self._buffered < self.row_group_size):
            return
        pending = self._buffer[0] if len(self._buffer) == 1 else pa.concat_tables(self._buffer)
        self._buffer, self._buffered = [], 0
        offset, total = 0, pending.num_rows
        while total - offset >= self.row_group_size or (final and offset < total):
            room = self.max_rows_per_part - self._part_rows
            n = min(self.row_group_size, total - offset, room)
            self._write_row_group(pending.slice(offset, n))
            offset += n
            if self._part_rows >= self.max_rows_per_part:
                self._close_part()
        if offset < total:
            rest = pending.slice(offset)
            self._buffer, self._buffered = [rest], rest.num_rows

    def _write_row_group(self, rows: pa.Table) -> None:
        if self._writer is None:
            self._open_part()
        # One dictionary per column chunk keeps the dictionary encoding (Parquet falls
        # back to plain encoding when the dictionary changes inside a column chunk).
        rows = rows.unify_dictionaries().combine_chunks()
        self._writer.write_table(rows, row_group_size=rows.num_rows)
        self._part_rows += rows.num_rows

    def _open_part(self) -> None:
        final = part_name(self.writer_id, self._next_index)
        self._tmp = self.directory / f".{final}{TMP_SUFFIX}"
        strings = [
            f.name
            for f in self.schema
            if pa.types.is_dictionary(f.type)
            or pa.types.is_string(f.type)
            or pa.types.is_large_string(f.type)
        ]
        self._writer = pq.ParquetWriter(
            self._tmp,
            self.schema,
            compression=self.compression,
            use_dictionary=strings or False,
        )
        logger.debug("opened part %s", self._tmp)

    def _close_part(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        final = self.directory / part_name(self.writer_id, self._next_index)
        if self.fsync:
            _fsync_path(self._tmp)
        os.replace(self._tmp, final)
        if self.fsync:
            _fsync_path(self.directory, directory=True)
        self._next_index += 1
        self.parts.append(final)
        self.rows_written += self._part_rows
        logger.debug("closed part %s (%d rows)", final, self._part_rows)
        self._part_rows = 0
        self._tmp = None


class TableSink:
    """Routes batches of several tables to one :class:`PartWriter` each.

    With ``background=True`` a daemon thread does the work (``to_arrow()``,
    validation, compression, writing) and :meth:`submit` only enqueues, blocking
    while ``max_queue`` items wait (back-pressure). An error on the thread is kept
    and re-raised by the next :meth:`submit`, :meth:`flush` or :meth:`close`. The
    thread also closes parts whose oldest row is ``max_seconds_per_part`` old when
    no batch arrives.

    Args:
        directory: the run directory; table ``t`` goes to ``directory/t``.
        writer_id: the writer id in part names.
        background: write on a background thread.
        max_queue: items that may wait for the thread.
        schemas: pinned schemas per table; others follow :func:`table_schema`.
        **part_options: passed to every :class:`PartWriter`.

    Example:
        >>> import tempfile, pyarrow as pa
        >>> sink = TableSink(tempfile.mkdtemp(), "w1")
        >>> sink.submit("steps", pa.table({"x": [1, 2]}))
        >>> sink.close()
        >>> sink.counts
        {'steps': 2}
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        writer_id: str,
        *,
        background: bool = True,
        max_queue: int = 32,
        schemas: dict[str, pa.Schema] | None = None,
        **part_options: Any,
    ) -> None:
        PartWriter.check_options(**part_options)
        self.directory = Path(directory)
        self.writer_id = check_writer_id(writer_id)
        self.counts: dict[str, int] = {}
        self._options = part_options
        self._schemas: dict[str, pa.Schema] = dict(schemas or {})
        self._parts: dict[str, PartWriter] = {}
        self._checked: dict[str, list[tuple[pa.Schema, pa.Schema]]] = {}
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if background:
            self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=max(1, max_queue))
            self._thread = threading.Thread(
                target=self._main, name=f"varirec-writer-{writer_id}", daemon=True
            )
            self._thread.start()

    def precheck(self, table: str, incoming: pa.Schema) -> None:
        """Raise ValueError now if batches of schema ``incoming`` cannot go to ``table``."""
        target = self._schema_for(table, incoming)
        checked = self._checked.setdefault(table, [])
        if any(s.equals(incoming) and t.equals(target) for s, t in checked):
            return  # Schema.equals is ~50 ns; hashing a schema costs ~7 us
        conform(incoming.empty_table(), target, table=table)
        checked.append((incoming, target))

    def submit(self, table: str, data: Any) -> None:
        """Write ``data`` (Table, RecordBatch or object with ``to_arrow()``) to ``table``."""
        self.raise_pending()
        if self._thread is None:
            with self._lock:
                self._write(table, data)
        else:
            self._put(("write", table, data))

    def flush(self) -> None:
        """Write buffered rows and close the open parts; returns once they are durable."""
        self.raise_pending()
        if self._thread is None:
            with self._lock:
                self._flush()
            return
        done = threading.Event()
        self._put(("flush", done))
        while not done.wait(0.2):
            self._check_thread()
        self.raise_pending()

    def close(self) -> BaseException | None:
        """Close every part and stop the thread; idempotent.

        Returns:
            The first error of the writer thread not yet raised, or None.
        """
        if self._thread is None:
            with self._lock:
                self._guarded(self._close)
        elif self._thread.is_alive():
            self._put(("close",))
            self._thread.join()
        error, self._error = self._error, None
        return error

    def raise_pending(self) -> None:
        """Re-raise (once) an error that happened on the writer thread."""
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _schema_for(self, table: str, incoming: pa.Schema) -> pa.Schema:
        pinned = self._schemas.get(table)
        return table_schema(table, incoming) if pinned is None else pinned

    def _check_thread(self) -> None:
        if self._thread is not None and not self._thread.is_alive():
            raise RuntimeError(f"the writer thread of {self.directory} stopped unexpectedly")

    def _put(self, item: tuple[Any, ...]) -> None:
        while True:
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                self._check_thread()

    def _write(self, table: str, data: Any) -> None:
        if not isinstance(data, (pa.Table, pa.RecordBatch)):
            data = data.to_arrow()
            if not isinstance(data, (pa.Table, pa.RecordBatch)):
                raise TypeError(f"to_arrow() must return a pyarrow Table, got {type(data)}")
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        part = self._parts.get(table)
        if part is None:
            schema = self._schema_for(table, data.schema)
            data = conform(data, schema, table=table)  # before the directory exists
            part = PartWriter(
                self.directory / table, self.writer_id, schema=schema, table=table, **self._options
            )
            self._parts[table], self._schemas[table] = part, schema
        part.write(data)
        self.counts[table] = self.counts.get(table, 0) + data.num_rows

    def _flush(self) -> None:
        for part in self._parts.values():
            part.flush()

    def _close(self) -> None:
        first: BaseException | None = None
        for part in self._parts.values():
            try:
                part.close()
            except BaseException as exc:
                part.abort()
                first = first or exc
        if first is not None:
            raise first

    def _guarded(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as exc:
            if self._error is None:
                self._error = exc
            else:
                logger.error("writer error while another is pending", exc_info=exc)

    def _rotate_due(self) -> float | None:
        waits = []
        for part in self._parts.values():
            self._guarded(part.maybe_rotate)
            wait = part.seconds_until_rotation()
            if wait is not None:
                waits.append(wait)
        return min(waits, default=None)

    def _main(self) -> None:
        timeout = None
        while True:
            try:
                item = self._queue.get(timeout=None if timeout is None else timeout + 0.01)
            except queue.Empty:
                timeout = self._rotate_due()
                continue
            if item[0] == "write":
                self._guarded(self._write, item[1], item[2])
            elif item[0] == "flush":
                self._guarded(self._flush)
                item[1].set()
            else:
                self._guarded(self._close)
                return
            timeout = self._rotate_due()
