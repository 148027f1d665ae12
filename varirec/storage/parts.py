"""Crash-safe Parquet part files: one table of one run, written by one writer.

Contents:
    PartWriter: buffers batches into row groups and writes them to rotating parts.
    (:class:`~varirec.storage.sink.TableSink` routes several tables to their
    PartWriters, optionally on a background thread.)

A part is written under a hidden temporary name (``.part-<writer>-<n>.parquet.tmp``;
the leading dot makes ``pyarrow.dataset`` and globs such as ``*.parquet`` skip it)
and renamed with ``os.replace`` to ``part-<writer>-<n>.parquet`` once its footer is
written. Every file with a final name is therefore a complete Parquet file holding
exactly the rows written to it, in order; a process killed mid-part loses only that
part (at most ``max_rows_per_part`` rows or ``max_seconds_per_part`` seconds of rows).
On an object store (a :class:`~varirec.storage.location.StorePath` directory, e.g.
``s3://``), which has no rename, the open part is built in memory and uploaded whole
under its final name when it closes: the object appears complete or not at all.
A write that fails (disk full, interrupt) aborts the part the same way: it keeps its
temporary name and the writer refuses further rows, so no final part has a hole.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from varirec.errors import DatasetError

from .location import StorePath
from .schema import TMP_SUFFIX, check_writer_id, conform, parse_part_name, part_name

__all__ = ["PartWriter"]

logger = logging.getLogger(__name__)

_OPTIONS = {"max_rows_per_part", "max_seconds_per_part", "row_group_size", "compression", "fsync"}


_DICTIONARY_INTS = frozenset({"episode"})
"""Integer columns written dictionary-encoded: an env's episode index repeats over its
draws and changes slowly, and zstd over its plain values cost ~20 ns a row, a quarter
of a draws part's write time (dictionary-encoded: 4-9 ns, and smaller)."""


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

    An error while writing or renaming (e.g. OSError: disk full) aborts the writer
    (:meth:`abort`): the open part keeps its temporary name, its rows and the buffered
    ones are dropped (counted in :attr:`rows_lost`), and later writes raise
    RuntimeError. An OSError is re-raised as :class:`~varirec.errors.DatasetError`
    naming the part.

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
        directory: str | os.PathLike[str] | StorePath,
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
        self.directory = directory if isinstance(directory, StorePath) else Path(directory)
        self.writer_id = writer_id
        self.table = table
        self.schema = schema
        self.max_rows_per_part = int(max_rows_per_part)
        self.max_seconds_per_part = float(max_seconds_per_part)
        self.row_group_size = int(row_group_size)
        self.compression = compression
        self.fsync = fsync
        self.parts: list[Path | StorePath] = []
        self.rows_written = 0  # rows in final-named parts
        self.rows_lost = 0  # rows dropped by abort()
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self._memory: pa.BufferOutputStream | None = None  # the open part, on an object store
        self._part_rows = 0
        self._pending_since: float | None = None
        self._closed = False
        self.before_close: Callable[[], None] | None = None
        """Called before a part becomes final (see :class:`~varirec.storage.sink.TableSink`)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._next_index = self._first_free_index()
        except OSError as exc:
            raise DatasetError(
                f"cannot write table {table!r} to {self.directory}: {exc}; that path must be a "
                "writable directory (remove or rename what is there, or free disk space)"
            ) from exc

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
        # Temporary names count too: a part aborted after an error keeps its number.
        indices = []
        for path in self.directory.iterdir():
            name = path.name
            if name.startswith(".") and name.endswith(TMP_SUFFIX):
                name = name[1 : -len(TMP_SUFFIX)]
            parsed = parse_part_name(name)
            if parsed is not None and parsed[0] == self.writer_id:
                indices.append(parsed[1])
        return max(indices, default=-1) + 1

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        """Validate ``data``, buffer it, and write every full row group.

        Raises:
            ValueError: ``data`` does not match the schema (see :func:`conform`);
                nothing of it is buffered or written.
            RuntimeError: the writer is closed or was aborted.
            OSError: writing failed; the writer is aborted (see :meth:`abort`).
        """
        self._check_open()
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        if self.schema is None:
            self.schema = data.schema.remove_metadata()
        self._append(conform(data, self.schema, table=self.table))
        self.maybe_rotate()

    def _append(self, data: pa.Table) -> None:
        """Buffer ``data`` (already conformed to :attr:`schema`), write full row groups."""
        self._check_open()
        if data.num_rows == 0:
            return
        with self._aborting():
            if self._pending_since is None:
                self._pending_since = time.monotonic()
            self._buffer.append(data)
            self._buffered += data.num_rows
            self._drain(final=False)

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
        with self._aborting():
            self._drain(final=True)
            self._close_part()

    def close(self) -> None:
        """Flush and refuse further writes; idempotent."""
        if self._closed:
            return
        self.flush()
        self._closed = True

    def abort(self) -> None:
        """Stop after a write error: close the open part but leave its temporary name.

        The rows of the open part and the buffered rows are dropped and counted in
        :attr:`rows_lost` (the temporary file stays for inspection, readers skip it;
        an empty one, e.g. when the disk was full, is removed), and later writes
        raise RuntimeError. Idempotent.
        """
        lost = self.rows_pending
        self.rows_lost += lost
        self._closed = True
        self._buffer, self._buffered, self._part_rows, self._pending_since = [], 0, 0, None
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception as exc:  # the error that caused the abort is the one to raise
                logger.debug("closing the aborted part %s failed: %s", self._tmp, exc)
        tmp, self._memory = self._tmp, None  # an object-store part is dropped: never uploaded
        try:
            if tmp is not None and os.stat(tmp).st_size == 0:  # nothing to inspect
                os.unlink(tmp)
        except OSError:
            pass
        if lost:
            logger.warning(
                "aborted part %s of table %r: %d rows not written", self._tmp, self.table, lost
            )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(
                f"PartWriter for table {self.table!r} is closed (or was aborted after a write "
                "error); open a new one"
            )

    @contextmanager
    def _aborting(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            where = self._tmp if self._tmp is not None else self.directory
            self.abort()
            if isinstance(exc, DatasetError):
                raise
            message = (
                f"could not write part {where} of table {self.table!r}: {exc}; free space "
                "on that disk or make the directory writable (the rows of this part are lost)"
            )
            args = (message,) if exc.errno is None else (exc.errno, message)
            raise DatasetError(*args) from exc
        except BaseException:
            self.abort()
            raise

    def _drain(self, *, final: bool) -> None:
        if not self._buffered or (not final and self._buffered < self.row_group_size):
            return
        pending = self._buffer[0] if len(self._buffer) == 1 else pa.concat_tables(self._buffer)
        self._buffer = [pending]
        while self._buffered >= self.row_group_size or (final and self._buffered):
            room = self.max_rows_per_part - self._part_rows
            n = min(self.row_group_size, self._buffered, room)
            self._write_row_group(pending.slice(0, n))
            # Rows leave the buffer only once their row group is written.
            pending = pending.slice(n)
            self._buffer, self._buffered = [pending] if pending.num_rows else [], pending.num_rows
            if self._part_rows >= self.max_rows_per_part:
                self._close_part()

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
        if isinstance(self.directory, StorePath):
            self._memory = pa.BufferOutputStream()
        else:
            self._tmp = self.directory / f".{final}{TMP_SUFFIX}"
        strings = [
            f.name
            for f in self.schema
            if pa.types.is_dictionary(f.type)
            or pa.types.is_string(f.type)
            or pa.types.is_large_string(f.type)
            or f.name in _DICTIONARY_INTS
        ]
        # Min/max statistics where they let a reader skip row groups (ids, seqs, times,
        # flags); on floats and dictionary strings they cost ~25 % of write time and
        # skip nothing (every row group mixes all variations and values).
        with_stats = [
            f.name
            for f in self.schema
            if not (pa.types.is_floating(f.type) or pa.types.is_dictionary(f.type))
        ]
        self._writer = pq.ParquetWriter(
            self._tmp if self._memory is None else self._memory,
            self.schema,
            compression=self.compression,
            use_dictionary=strings or False,
            write_statistics=with_stats or False,
            # A CRC per page: readers verify it, so flipped bytes are an error naming
            # the part rather than silently different values.
            write_page_checksum=True,
        )
        logger.debug("opened part %s", self._tmp or final)

    def _close_part(self) -> None:
        if self._writer is None:
            return
        if self.before_close is not None:
            self.before_close()
        self._writer.close()
        final = self.directory / part_name(self.writer_id, self._next_index)
        if isinstance(final, StorePath):
            final.write_bytes(self._memory.getvalue())  # one upload, complete or absent
            self._memory = None
        else:
            if self.fsync:
                _fsync_path(self._tmp)
            os.replace(self._tmp, final)
        self._writer = None  # only now: a failed rename leaves the part open, to be aborted
        if self.fsync and isinstance(self.directory, Path):
            _fsync_path(self.directory, directory=True)
        self._next_index += 1
        self.parts.append(final)
        self.rows_written += self._part_rows
        logger.debug("closed part %s (%d rows)", final, self._part_rows)
        self._part_rows = 0
        self._tmp = None
        # Rows left over from a part closed by row count start the age of the next one.
        self._pending_since = time.monotonic() if self._buffered else None
