"""TableSink: routes batches of several tables to their PartWriters, on background threads.

The simulation loop only enqueues. One thread converts (``to_arrow()``), another
validates, compresses and writes, and closes parts that grew old while no batch
arrived. A batch is converted while the one before it is written (both release the
GIL for most of their work): draws chunks took 83 ns a row to storage instead of 93
on 2 idle cores, and a machine with cores to spare gains up to the conversion's share
(about a quarter). Where the process has fewer than 3 cores the writing thread also
converts: a third busy thread would take time from the simulation's. The items
between the two threads count against ``max_queue``.

pyarrow imports pandas (when installed) the first time it converts an array. A sink
has that import done on the thread that opens it, before any row is taken: on the
writer thread it could come during the interpreter's shutdown (a SIGTERM or Ctrl-C
soon after the run began), where it fails ("can't register atexit after shutdown")
and takes the batch with it, and where the code strings it executes (namedtuples,
dataclasses) make CPython forget that an uncaught KeyboardInterrupt must end the
process by SIGINT (the exit status turns into 1).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from varirec.errors import RecorderStateError

from .location import StorePath
from .parts import PartWriter
from .schema import check_table_name, check_writer_id, conform, table_schema
from .shutdown import raise_if_pending

__all__ = ["TableSink"]

logger = logging.getLogger(__name__)


class TableSink:
    """Routes batches of several tables to one :class:`PartWriter` each.

    With ``background=True`` two daemon threads do the work, in order: one converts
    (``to_arrow()``), the other validates, compresses and writes. :meth:`submit`
    only enqueues, blocking while ``max_queue`` batches wait (back-pressure: at most
    ``max_queue + 1`` batches taken and not yet written, whichever thread holds them,
    as with one thread and a queue of ``max_queue``). An error on a thread is kept
    and re-raised by the next :meth:`submit`, :meth:`flush` or :meth:`close`. The
    writing thread also closes parts whose oldest row is ``max_seconds_per_part``
    old when no batch arrives.

    A part whose write or rename fails is aborted (it keeps its temporary name, see
    :meth:`PartWriter.abort`) and never reused: the table's next batch opens a new
    part. :attr:`counts` then leaves out the rows lost with it, :attr:`lost` counts
    them and :attr:`failure` keeps the first such error (it is never cleared).

    :meth:`submit` hands a batch over exactly once: while it waits for queue space a
    held-back Ctrl-C or SIGTERM (see :func:`~varirec.storage.shutdown.exit_held`) is
    raised before the batch is queued; once queued, the batch is the sink's.

    A sink belongs to the process that made it: used in a forked child (which has no
    writer thread) it raises :class:`~varirec.errors.RecorderStateError`.

    Args:
        directory: the run directory; table ``t`` goes to ``directory/t``.
        writer_id: the writer id in part names.
        background: write on background threads.
        max_queue: items that may wait for the threads (at least 1).
        convert_thread: convert on a thread of its own, beside the writing one
            (default: where the process may run on 3 or more cores; with fewer, a
            third busy thread would take time from the simulation's own).
        schemas: pinned schemas per table; others follow :func:`table_schema`.
        **part_options: passed to every :class:`PartWriter`.

    Raises:
        ValueError: ``max_queue`` is below 1, or an invalid writer id or part option.

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
        directory: str | os.PathLike[str] | StorePath,
        writer_id: str,
        *,
        background: bool = True,
        max_queue: int = 32,
        convert_thread: bool | None = None,
        schemas: dict[str, pa.Schema] | None = None,
        **part_options: Any,
    ) -> None:
        PartWriter.check_options(**part_options)
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError(f"`max_queue` must be a positive integer, got {max_queue!r}")
        self.directory = directory if isinstance(directory, StorePath) else Path(directory)
        self.writer_id = check_writer_id(writer_id)
        self.counts: dict[str, int] = {}
        """Rows per table in final-named parts or still pending (lost rows excluded)."""
        self.lost: dict[str, int] = {}
        """Rows per table that were accepted but never reached a final-named part."""
        self.failure: BaseException | None = None
        """The first error that lost rows (a failed write, rename or conversion)."""
        self._pid = os.getpid()
        self._options = part_options
        self._schemas: dict[str, pa.Schema] = _checked_schemas(schemas)
        self._parts: dict[str, PartWriter] = {}
        self._retired: dict[str, int] = {}  # rows in final parts of aborted PartWriters
        self._checked: dict[str, list[tuple[pa.Schema, pa.Schema]]] = {}
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._errors = threading.Lock()  # the two threads' errors and lost rows
        self._thread: threading.Thread | None = None
        self._converter: threading.Thread | None = None
        pa.array(np.empty(0, np.int64))  # pyarrow's lazy pandas import, now (see above)
        if background:
            # Batches taken and not yet written, wherever they are: one slot each, given
            # back once written. max_queue wait and one is worked on, as with one thread
            # and a queue of max_queue (the bound on what a SIGKILL loses stays the same).
            self._slots = threading.Semaphore(max_queue + 1)
            self._converted: queue.Queue[tuple[Any, ...]] = queue.Queue()
            self._queue = self._converted  # without a converting thread: straight in
            if convert_thread is None:
                convert_thread = _usable_cores() >= 3
            if convert_thread:
                self._queue = queue.Queue()
                self._converter = threading.Thread(
                    target=self._convert_main, name=f"varirec-convert-{writer_id}", daemon=True
                )
                self._converter.start()
            self._thread = threading.Thread(
                target=self._main, name=f"varirec-writer-{writer_id}", daemon=True
            )
            self._thread.start()

    def part_window(self, seconds: float) -> None:
        """``max_seconds_per_part`` of this sink's parts, open or to come."""
        PartWriter.check_options(max_seconds_per_part=seconds)
        self._options["max_seconds_per_part"] = float(seconds)
        for part in list(self._parts.values()):
            part.max_seconds_per_part = float(seconds)

    def precheck(self, table: str, incoming: pa.Schema) -> None:
        """Raise ValueError now if batches of schema ``incoming`` cannot go to ``table``.

        The first schema that passes becomes the table's (for tables without a fixed
        one), so a later batch of another schema fails here even before the writer
        thread has seen the first.
        """
        known = self._schemas.get(table)
        target = table_schema(table, incoming) if known is None else known
        checked = self._checked.setdefault(table, [])
        if any(s.equals(incoming) and t.equals(target) for s, t in checked):
            return  # Schema.equals is ~50 ns; hashing a schema costs ~7 us
        conform(incoming.empty_table(), target, table=table)
        checked.append((incoming, target))
        if known is None:
            self._schemas.setdefault(table, target)

    def submit(self, table: str, data: Any) -> None:
        """Write ``data`` (Table, RecordBatch or object with ``to_arrow()``) to ``table``."""
        self.check_process()
        if self._thread is None:
            with self._lock:
                part = self._write(table, data)
                self._step(table, part, part.maybe_rotate)
        else:
            self._put(("write", table, data))
            self.raise_pending()  # an earlier batch's error; this batch is queued all the same

    def flush(self) -> None:
        """Write buffered rows and close the open parts; returns once they are durable."""
        self.check_process()
        self.raise_pending()
        if self._thread is None:
            with self._lock:
                self._each("flush")
            return
        done = threading.Event()
        self._put(("flush", done))
        while not done.wait(0.05):
            raise_if_pending()  # the flush item is queued: waiting for it is safe to stop
            self._check_thread()
        self.raise_pending()

    def close(self) -> BaseException | None:
        """Close every part and stop the thread; idempotent.

        Returns:
            The first error of the writer thread not yet raised, or None.
        """
        if self._thread is None:
            with self._lock:
                self._guarded(self._each, "close")
        elif self._thread.is_alive():
            self._put(("close",))
            bypassed = False
            while self._thread.is_alive():
                self._thread.join(0.1)
                converter = self._converter
                if not bypassed and converter is not None and not converter.is_alive():
                    # It passed "close" on, or it died: the writer closes its parts either
                    # way (a second "close" is never read).
                    self._converted.put(("close",))
                    bypassed = True
        with self._errors:
            error, self._error = self._error, None
        return error

    def check_process(self) -> None:
        """Raise RecorderStateError in a forked child: the writer thread did not come along."""
        if self._pid != os.getpid():
            raise RecorderStateError(
                f"the writer of {self.directory} was created in process {self._pid} and is "
                f"used in process {os.getpid()}, a fork of it; a forked child has no writer "
                "thread, so its rows would be lost. Create the RunWriter (or RecorderManager) "
                "in the child process, or start workers with "
                "multiprocessing.get_context('spawn') or 'forkserver'"
            )

    def raise_pending(self) -> None:
        """Re-raise (once) an error that happened on a writer thread."""
        with self._errors:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def _check_thread(self) -> None:
        for thread in (self._converter, self._thread):
            if thread is not None and not thread.is_alive():
                raise RuntimeError(
                    f"the writer thread {thread.name} of {self.directory} stopped unexpectedly"
                )

    def _put(self, item: tuple[Any, ...]) -> None:
        while True:
            raise_if_pending()  # nothing is queued yet: the caller still holds the item
            # A batch takes a slot (back-pressure); flush and close take none.
            if item[0] != "write" or self._slots.acquire(timeout=0.05):
                break
            self._check_thread()
        self._queue.put(item)

    def _lose(self, table: str, rows: int, error: BaseException) -> None:
        with self._errors:
            if rows:
                self.lost[table] = self.lost.get(table, 0) + rows
            if self.failure is None:
                self.failure = error

    def _write(self, table: str, data: Any) -> PartWriter:
        try:
            data = _as_table(data)
            part, data = self._conformed(table, data)
        except BaseException as exc:  # taken (RunWriter.append checked it) but not writable
            self._lose(table, _rows(data), exc)
            raise
        self._step(table, part, part._append, data)
        return part

    def _lost(self, table: str, rows: int, error: BaseException) -> None:
        """A batch that failed to convert, accounted for in order on the writing thread
        (an earlier batch's write error stays the first)."""
        self._lose(table, rows, error)
        raise error

    def _conformed(self, table: str, data: pa.Table) -> tuple[PartWriter, pa.Table]:
        part = self._parts.get(table)
        if part is not None:
            data = conform(data, part.schema, table=table)
        else:
            schema = self._schemas.get(table)
            if schema is None:
                schema = table_schema(table, data.schema)
            data = conform(data, schema, table=table)  # before the directory exists
            part = PartWriter(
                self.directory / table, self.writer_id, schema=schema, table=table, **self._options
            )
            if table != "draws":
                part.before_close = self._settle_draws
            self._parts[table] = part
            self._schemas.setdefault(table, schema)
        return part, data

    def _settle_draws(self) -> None:
        """Make the draws taken so far final before a part of another table is: an
        episode row must never be readable while the draws its episode began with are
        not (after a SIGKILL the as-of join would give it the previous episode's values)."""
        draws = self._parts.get("draws")
        if draws is not None and draws.rows_pending:
            self._step("draws", draws, draws.flush)

    def _step(self, table: str, part: PartWriter, step: Callable[..., object], *args: Any) -> None:
        """Run a writing step of ``part``; if it fails, abort the part and drop it."""
        try:
            step(*args)
        except BaseException as exc:
            part.abort()  # its file keeps the temporary name; the next batch opens a new part
            if self._parts.get(table) is part:
                del self._parts[table]
                self._retired[table] = self._retired.get(table, 0) + part.rows_written
                self._lose(table, part.rows_lost, exc)
            raise
        finally:
            live = self._parts.get(table)
            pending = 0 if live is None else live.rows_written + live.rows_pending
            self.counts[table] = self._retired.get(table, 0) + pending

    def _each(self, step: str) -> None:
        """``flush`` or ``close`` every part; raise the first error once all were tried."""
        first: BaseException | None = None
        for table, part in list(self._parts.items()):
            try:
                self._step(table, part, getattr(part, step))
            except BaseException as exc:
                first = first or exc
        if first is not None:
            raise first

    def _guarded(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as exc:
            with self._errors:
                first = self._error is None
                if first:
                    self._error = exc
            if not first:
                logger.error("writer error while another is pending", exc_info=exc)

    def _rotate_due(self) -> float | None:
        waits = []
        for table, part in list(self._parts.items()):
            self._guarded(self._step, table, part, part.maybe_rotate)
            wait = part.seconds_until_rotation()
            if wait is not None:
                waits.append(wait)
        return min(waits, default=None)

    def _convert_main(self) -> None:
        """The converting thread: each batch as a Table, every item passed on in order
        (a batch that fails to convert goes on as its error, for the writing thread to
        record where the batch would have been written)."""
        while True:
            item = self._queue.get()
            if item[0] == "write":
                try:
                    item = ("write", item[1], _as_table(item[2]))
                except BaseException as exc:
                    item = ("lost", item[1], _rows(item[2]), exc)
            self._converted.put(item)
            if item[0] == "close":
                return

    def _main(self) -> None:
        """The writing thread: batches (converted) to their parts, flushes, the close,
        and the age rotation of parts while no batch arrives."""
        timeout = None
        while True:
            try:
                item = self._converted.get(timeout=None if timeout is None else timeout + 0.01)
            except queue.Empty:
                timeout = self._rotate_due()
                continue
            if item[0] in ("write", "lost"):
                try:
                    self._guarded(self._write if item[0] == "write" else self._lost, *item[1:])
                finally:
                    self._slots.release()  # written (or lost): the next batch may come in
            elif item[0] == "flush":
                self._guarded(self._each, "flush")
                item[1].set()
            else:
                self._guarded(self._each, "close")
                return
            timeout = self._rotate_due()


def _usable_cores() -> int:
    """Cores this process may run on (its affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _as_table(data: Any) -> pa.Table:
    """``data`` as a Table: ``to_arrow()`` of an object that has it, a RecordBatch as a
    Table, a Table as it is."""
    if not isinstance(data, (pa.Table, pa.RecordBatch)):
        data = data.to_arrow()
        if not isinstance(data, (pa.Table, pa.RecordBatch)):
            raise TypeError(f"to_arrow() must return a pyarrow Table, got {type(data)}")
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    return data


def _rows(data: Any) -> int:
    """Rows of a batch, for the count of lost rows (0 where it cannot tell)."""
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        return data.num_rows
    return len(data) if callable(getattr(data, "__len__", None)) else 0


def _checked_schemas(schemas: Any) -> dict[str, pa.Schema]:
    """``schemas`` (table name -> pyarrow schema) as a dict, refused before anything is
    written where it is not one (found at the first batch, it failed the run's rows)."""
    if schemas is None:
        return {}
    if not isinstance(schemas, Mapping):
        raise TypeError(
            f"`schemas` must map table names to pyarrow schemas, got {type(schemas).__name__} "
            f"{schemas!r:.60}; e.g. schemas={{'steps': pa.schema([('x', pa.float64())])}}"
        )
    for table, schema in schemas.items():
        check_table_name(table)
        if not isinstance(schema, pa.Schema):
            raise TypeError(
                f"`schemas[{table!r}]` must be a pyarrow schema (pa.schema([...])), got "
                f"{type(schema).__name__} {schema!r:.60}"
            )
    return dict(schemas)
