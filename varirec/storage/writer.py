"""Write one run of a varirec dataset from one process: ``RunWriter``.

Contents:
    RunWriter: appends tables (draws, episodes, steps...) to a run as Parquet parts.
    ArrowConvertible: anything with a ``to_arrow() -> pa.Table`` method.

Crash safety. Parts are renamed to their final name only once complete (see
:mod:`varirec.storage.parts`), so SIGKILL loses at most the open part of each table.
The first RunWriter of a process installs (once) a SIGTERM handler and an atexit
hook (:mod:`varirec.storage.shutdown`): SIGTERM raises ``SystemExit(143)`` in the
main thread, so ``with`` blocks and ``finally`` clauses run and every open writer
closes its parts. A SIGTERM or Ctrl-C that arrives during ``append``, ``flush`` or
``close`` is raised once that call is done (or, while ``append`` waits for queue
space, before the batch is queued), so a batch is written exactly once or not taken.
A writer belongs to the process that created it: used in a forked child it raises
:class:`~varirec.errors.RecorderStateError`.

Object storage. ``root`` may be a URI (``s3://bucket/prefix`` or another ``pyarrow.fs``
/ fsspec filesystem, see :mod:`varirec.storage.location`): parts are uploaded whole
when they close, ``run.json`` and the sidecars are whole-object writes, and run
creation is a conditional PUT where the store supports it.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from varirec._version import __version__
from varirec.errors import DatasetError, RecorderStateError

from .location import StorePath, as_path
from .run_files import (
    adopt_run,
    create_run,
    create_sidecar,
    default_run_id,
    default_writer_id,
    live_writers,
    read_sidecars,
    sidecar_doc,
    to_json,
    utc_now,
    write_json_atomic,
)
from .run_info import sum_sidecars
from .schema import (
    RUN_JSON,
    RUN_PREFIX,
    SCHEMA_VERSION,
    WRITERS_DIR,
    check_run_id,
    check_table_name,
)
from .shutdown import (
    error_record,
    exit_held,
    install_hooks,
    propagating,
    register,
    registered,
    signal_of,
    unregister,
)
from .sink import TableSink

__all__ = ["ArrowConvertible", "RunWriter"]

logger = logging.getLogger(__name__)


class ArrowConvertible(Protocol):
    """An object that converts itself to a table (called on the writer thread)."""

    def to_arrow(self) -> pa.Table: ...


TableLike = pa.Table | pa.RecordBatch | ArrowConvertible


class RunWriter:
    """One process's writer of one run: appends tables as crash-safe Parquet parts.

    The creating writer makes ``ROOT/run_id=<run_id>/`` and writes ``run.json``
    (status ``running``); :meth:`join` lets other processes add parts to the same run.
    Tables are created on first :meth:`append`. ``draws`` and the core ``episodes``
    columns must match :mod:`varirec.storage.schema`; extra ``episodes`` columns and
    any other table (``steps``) take the schema of their first batch.

    With ``background=True`` two daemon threads work in order, one converting
    (``to_arrow()``) while the other validates, compresses and writes the batch before
    (:class:`~varirec.storage.sink.TableSink`; one thread does both where the process
    has fewer than 3 cores); ``append`` only enqueues (blocking when
    ``max_queue`` items wait). An error on those threads is re-raised by the next
    ``append``, ``flush`` or ``close``. Every writer records
    ``writers/<writer_id>.json`` with its counts; at close the creator sets
    ``status`` (``complete``/``failed``), ``ended_utc``, ``counts``, ``writers`` and
    ``error`` in ``run.json``.

    Args:
        root: the dataset directory (created if missing), or a URI such as
            ``s3://bucket/prefix`` (see :mod:`varirec.storage.location`).
        run_id: the run's id (letters, digits, ``_ . -``); default ``<UTC time>_<hex>``.
        writer_id: this process's id in part names (letters, digits, ``_ .``; no ``-``);
            default ``<host>_<pid>_<8 hex>``.
        metadata: JSON-serializable user metadata (seed, num_envs, variations, design).
        overwrite: if the run exists, delete it (renamed aside to a hidden ``.trash-*``
            directory first, then removed) and start afresh. Default: raise DatasetError.
        background: convert and write on background threads.
        max_rows_per_part: rows after which a part is closed.
        max_seconds_per_part: a part is closed once its oldest row is this old (default
            60 s; a :class:`~varirec.recording.manager.RecorderManager` recording into
            this writer makes it half its ``flush_seconds`` where it is not given).
        row_group_size: rows per Parquet row group.
        max_queue: batches that may wait for the background threads.
        schemas: pin the schema of tables (e.g. ``{"episodes": episodes_schema(...)}``).
        fsync: fsync every part before its rename (power-loss safety; slower). Process
            crashes never need it.

    Raises:
        DatasetError: the run already exists (and ``overwrite`` is False), or this
            writer id already wrote to it (pass a new ``writer_id``).
        ValueError: an invalid run id, writer id or limit (nothing is written then).

    Example:
        >>> import tempfile, pyarrow as pa
        >>> root = tempfile.mkdtemp()
        >>> with RunWriter(root, "demo", metadata={"seed": 0}) as w:
        ...     w.append("steps", pa.table({"step": [0, 1], "reward": [0.5, 1.0]}))
        >>> w.status, w.counts
        ('complete', {'steps': 2})
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | StorePath,
        run_id: str | None = None,
        *,
        writer_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        overwrite: bool = False,
        background: bool = True,
        max_rows_per_part: int = 1_000_000,
        max_seconds_per_part: float | None = None,
        row_group_size: int = 131_072,
        max_queue: int = 32,
        schemas: dict[str, pa.Schema] | None = None,
        fsync: bool = False,
        _join: bool = False,
        _resume: bool = False,
    ) -> None:
        for name, flag in (("overwrite", overwrite), ("background", background), ("fsync", fsync)):
            if not isinstance(flag, bool | np.bool_):  # "false" is truthy: it would delete
                raise TypeError(
                    f"`{name}` must be True or False, got {type(flag).__name__} {flag!r:.40}"
                )
        self.root = as_path(root)
        self.run_id = check_run_id(default_run_id() if run_id is None else run_id)
        self.path = self.root / f"{RUN_PREFIX}{self.run_id}"
        self._metadata = dict(metadata or {})
        to_json(self._metadata, "metadata")
        # The sink checks the writer id and the limits before anything touches the disk.
        self._sink = TableSink(
            self.path,
            default_writer_id() if writer_id is None else writer_id,
            background=background,
            max_queue=max_queue,
            schemas=schemas,
            max_rows_per_part=max_rows_per_part,
            max_seconds_per_part=60.0 if max_seconds_per_part is None else max_seconds_per_part,
            row_group_size=row_group_size,
            fsync=fsync,
        )
        self._window_given = max_seconds_per_part is not None
        self.writer_id = self._sink.writer_id
        self.created = not _join
        self._finishes = not _join  # writes the run's outcome to run.json at close
        self.status = "running"
        self.writers: list[str] = [self.writer_id]
        self._counts = self._sink.counts
        self._doc: dict[str, Any] = {}
        self._closed = False
        self._pid = os.getpid()
        self._started = utc_now()
        install_hooks()
        # A SIGTERM or Ctrl-C while the run is made waits until the writer is registered,
        # then closes the run as failed: never half a run.json, nor a run left open.
        try:
            self._create(overwrite, _join=_join, _resume=_resume)
        except (KeyboardInterrupt, SystemExit) as exc:
            if not self._closed and registered(self):
                self.close(error=exc)
            raise

    def _create(self, overwrite: bool, *, _join: bool, _resume: bool) -> None:
        with exit_held():
            try:
                try:
                    self.root.mkdir(parents=True, exist_ok=True)
                except (FileExistsError, NotADirectoryError):
                    raise DatasetError(
                        f"the dataset path {str(self.root)!r} is, or lies under, a file, not a "
                        "directory; pass a directory path (it is created if missing)"
                    ) from None
                if self.created:
                    self._create_run(overwrite)
                elif not (self.path / RUN_JSON).is_file():
                    raise DatasetError(
                        f"cannot join run {self.run_id!r}: {self.path} has no {RUN_JSON}; "
                        f"create the run first with RunWriter(root, {self.run_id!r}) or check "
                        "the run id"
                    )
                elif _resume:
                    live = live_writers(self.path)
                    if live:
                        raise DatasetError(
                            f"cannot resume run {self.run_id!r}: its writer(s) {live} on this "
                            "host are still running (their process is alive); wait for them "
                            "to end or stop them, then resume (a second process would run "
                            "the same work again)"
                        )
                    self._adopt_run()
                self._write_sidecar(new=True)
            except BaseException:
                self._sink.close()
                raise
            register(self)

    def default_part_window(self, seconds: float) -> None:
        """Close parts once their oldest row is ``seconds`` old, unless this writer was
        given ``max_seconds_per_part``: a manager's flush window (``flush_seconds``)
        holds for a writer handed to it, as for one it makes."""
        if not self._window_given:
            self._sink.part_window(seconds)

    @classmethod
    def join(
        cls,
        root: str | os.PathLike[str] | StorePath,
        run_id: str,
        writer_id: str | None = None,
        **kwargs: Any,
    ) -> RunWriter:
        """A writer that adds parts to an existing run (another process created it).

        It never rewrites ``run.json``; it records its counts in
        ``writers/<writer_id>.json``. Keyword arguments are those of :class:`RunWriter`
        except ``metadata`` and ``overwrite``.

        Raises:
            DatasetError: the run does not exist (no ``run.json``), or ``writer_id``
                already wrote to it (each process needs its own id).

        Example:
            >>> import tempfile, pyarrow as pa
            >>> root = tempfile.mkdtemp()
            >>> main = RunWriter(root, "r1", background=False)
            >>> with RunWriter.join(root, "r1", writer_id="worker1") as w:
            ...     w.append("steps", pa.table({"x": [1]}))
            >>> main.close()
            >>> main.counts, "worker1" in main.writers
            ({'steps': 1}, True)
        """
        bad = sorted({"metadata", "overwrite", "_join", "_resume"} & kwargs.keys())
        if bad:
            raise TypeError(f"RunWriter.join() does not take {bad}; only the creator sets them")
        return cls(root, run_id, writer_id=writer_id, _join=True, **kwargs)

    @classmethod
    def resume(
        cls,
        root: str | os.PathLike[str] | StorePath,
        run_id: str,
        writer_id: str | None = None,
        **kwargs: Any,
    ) -> RunWriter:
        """A writer that continues a run whose creator died (or ended): it adds parts as
        :meth:`join` does and takes over ``run.json``, which it sets back to ``running``
        (appending the time to ``resumed_utc``) and closes as the creator would, with the
        counts of every writer that recorded a final count. Keyword arguments are those
        of :meth:`join`.

        Raises:
            DatasetError: the run does not exist, or its ``run.json`` is unreadable.

        Example:
            >>> import tempfile, pyarrow as pa
            >>> root = tempfile.mkdtemp()
            >>> RunWriter(root, "r1", background=False).close()
            >>> with RunWriter.resume(root, "r1", writer_id="again") as w:
            ...     w.append("steps", pa.table({"x": [1, 2]}))
            >>> w.status, w.counts
            ('complete', {'steps': 2})
        """
        bad = sorted({"metadata", "overwrite", "_join", "_resume"} & kwargs.keys())
        if bad:
            raise TypeError(f"RunWriter.resume() does not take {bad}; the run keeps its own")
        return cls(root, run_id, writer_id=writer_id, _join=True, _resume=True, **kwargs)

    def _adopt_run(self) -> None:
        """Take over ``run.json`` of the run being resumed (see :meth:`resume`)."""
        self._doc = adopt_run(self.path, self.run_id, self._started)
        self._metadata = dict(self._doc.get("metadata") or {})
        self._finishes = True
        write_json_atomic(self.path / RUN_JSON, to_json(self._doc, "metadata"))

    def _create_run(self, overwrite: bool) -> None:
        self._doc = {
            "schema_version": SCHEMA_VERSION,
            "varirec_version": __version__,
            "run_id": self.run_id,
            "created_utc": self._started,
            "status": "running",
            "metadata": self._metadata,
        }
        text = to_json(self._doc, "metadata")
        create_run(self.root, self.path, self.run_id, text, overwrite=overwrite)

    def _write_sidecar(
        self,
        ended: str | None = None,
        error: dict[str, str] | None = None,
        *,
        new: bool = False,
        lost: dict[str, int] | None = None,
        closed_by: str | None = None,
    ) -> None:
        doc = sidecar_doc(self.writer_id, self._pid, self._started, ended, self.status)
        doc.update(counts=dict(self._counts), error=error)
        doc.update({"rows_lost": lost} if lost else {})
        doc.update({"closed_by": closed_by} if closed_by is not None else {})
        text = to_json(doc, "sidecar")
        if new:
            create_sidecar(self.path, self.writer_id, self.run_id, text)
        else:
            write_json_atomic(self.path / WRITERS_DIR / f"{self.writer_id}.json", text)

    @property
    def counts(self) -> dict[str, int]:
        """Rows accepted per table so far, less any lost with a part whose write failed
        (all of this run's writers once the creator closed)."""
        return dict(self._counts)

    @property
    def metadata(self) -> dict[str, Any]:
        """The run's metadata as this writer knows it (a copy)."""
        return dict(self._metadata)

    @property
    def writes_outcome(self) -> bool:
        """Whether this writer writes the run's outcome to ``run.json`` at close (and may
        :meth:`update_metadata`): it made the run, or resumed it."""
        return self._finishes

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has completed."""
        return self._closed

    def append(self, table: str, data: TableLike) -> None:
        """Add rows to ``table`` (created on first use).

        Args:
            table: the table name: ``draws``, ``episodes``, ``steps`` or another name.
            data: a ``pa.Table``, ``pa.RecordBatch`` or an object with ``to_arrow()``.

        The batch is the writer's once this call returns, or once it raises an error
        of an earlier batch (raised after this one was queued) or of its own write;
        it is refused (not taken) when the checks below fail, and when a Ctrl-C or
        SIGTERM arrives while it waits for queue space.

        Raises:
            ValueError: a Table/RecordBatch does not match the table's schema (checked
                here), or a previous batch failed on the writer thread (re-raised).
            TypeError: ``data`` is not one of the accepted types.
            DatasetError: a write failed (disk full, directory gone); the run is then
                marked failed with the rows lost.
            RecorderStateError: the writer is closed, or used in a forked child.
        """
        self._check_open()
        self._sink.check_process()
        check_table_name(table)
        if isinstance(data, (pa.Table, pa.RecordBatch)):
            self._sink.precheck(table, data.schema)
        elif not callable(getattr(data, "to_arrow", None)):
            raise TypeError(
                f"`data` must be a pyarrow Table, RecordBatch or have a to_arrow() method, "
                f"got {type(data).__name__}; wrap it with pyarrow.table(...)"
            )
        with exit_held():
            self._sink.submit(table, data)

    def flush(self) -> None:
        """Write every buffered row and close the open parts, so all rows so far are durable."""
        self._check_open()
        self._sink.check_process()
        with exit_held():
            self._sink.flush()

    def update_metadata(self, **metadata: Any) -> None:
        """Merge ``metadata`` into ``run.json``'s metadata and rewrite it atomically.

        Raises:
            DatasetError: this writer joined the run (only the creator writes run.json).
            TypeError: a value is not JSON-serializable.
        """
        self._check_open()
        if not self._finishes:
            raise DatasetError(
                f"writer {self.writer_id!r} joined run {self.run_id!r} and may not rewrite "
                f"{RUN_JSON}; update metadata from the writer that created the run"
            )
        merged = {**self._metadata, **metadata}
        text = to_json({**self._doc, "metadata": merged}, "metadata")
        self._metadata = self._doc["metadata"] = merged
        write_json_atomic(self.path / RUN_JSON, text)

    def close(self, error: BaseException | None = None, *, closed_by: str = "close") -> None:
        """Write everything, rename the open parts and record the run's outcome.

        Idempotent. Status is ``failed`` (with ``error``'s type and message) when
        ``error`` is given, or an exception is passing by (a close in a ``finally``
        block during a Ctrl-C: see :func:`~varirec.storage.shutdown.propagating`), or
        any write failed (rows lost, even if the caller caught
        that error), else ``complete``; ``rows_lost`` in ``run.json`` counts the rows
        per table that never reached a final part, and ``closed_by`` says whether
        :meth:`close` or the interpreter's exit hook closed the run. A writer thread
        error not raised yet is raised here when ``error`` is None.

        Raises:
            RecorderStateError: called in a forked child of the process that made it.
        """
        if self._closed:
            return
        self._sink.check_process()
        if error is None:  # closed in a `finally` (or `except`) while an error goes by
            error = propagating()
        with exit_held(closing=True):
            pending = self._sink.close()
            failure = self._sink.failure
            record = (
                error_record(error, signal_of(self))
                or error_record(pending, None)
                or error_record(failure, None)
            )
            lost = {t: n for t, n in self._sink.lost.items() if n}
            if lost and record is not None:
                record["message"] += f" ({sum(lost.values())} rows lost: {lost})"
            self.status = "failed" if record or lost else "complete"
            ended = utc_now()
            # Closed even if the bookkeeping cannot be written (e.g. the disk is full).
            self._closed = True
            unregister(self)
            try:
                self._write_sidecar(ended, record, lost=lost, closed_by=closed_by)
            except OSError as exc:  # still try run.json: it is what readers look at first
                unwritten = exc
                self.status = "failed"
                record = record or error_record(exc, None)
            else:
                unwritten = None
            if self._finishes:
                try:
                    self._finish_run_json(ended, record, lost=lost, closed_by=closed_by)
                except OSError as exc:
                    unwritten = unwritten or exc
            if unwritten is not None:
                raise DatasetError(
                    f"run {self.run_id!r} ended ({self.status}) but its record in {self.path} "
                    f"could not be written: {unwritten}; run.json may still say 'running'. "
                    "Free space on that disk or make the directory writable; the final parts "
                    "written are readable"
                ) from unwritten
        logger.info("closed run %s: %s %s", self.run_id, self.status, self._counts)
        if pending is not None:
            if error is None:
                raise pending
            logger.error("the writer thread had also failed", exc_info=pending)

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        self.close(error=exc)

    def __repr__(self) -> str:
        return f"RunWriter({str(self.root)!r}, {self.run_id!r}, writer_id={self.writer_id!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise RecorderStateError(
                f"RunWriter of run {self.run_id!r} is closed; open a new RunWriter "
                "(or RunWriter.join) to add rows"
            )

    def _finish_run_json(
        self,
        ended: str,
        record: dict[str, str] | None,
        *,
        lost: dict[str, int],
        closed_by: str,
    ) -> None:
        sidecars = read_sidecars(self.path)
        # This writer's own record as it is now (its sidecar may not have been written).
        sidecars[self.writer_id] = {"writer_id": self.writer_id, "status": self.status}
        sidecars[self.writer_id]["counts"] = dict(self._counts)
        counts, self.writers, running = sum_sidecars(sidecars)
        self._counts = counts
        doc = {**self._doc, "status": self.status, "ended_utc": ended, "counts": counts}
        doc.update(writers=self.writers, writers_still_running=running, closed_by=closed_by)
        if record is not None:
            doc["error"] = record
        if lost:
            doc["rows_lost"] = lost
        write_json_atomic(self.path / RUN_JSON, to_json(doc, "metadata"))
