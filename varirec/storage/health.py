"""What of a table reads: the part scan, skipped parts and the health of each table.

Contents:
    SkippedPart: a file of a table that the reader does not read, and why.
    TableHealth: how much of one table of one run reads, against what its writers recorded.
    PartScanner: lists a table's parts and reads their footers (cached), sorting the
        readable parts from the skipped ones; :meth:`PartScanner.health` compares them
        with the writers' counts.

What is skipped (a DatasetWarning names each file and the reason):
    * ``.part-*.parquet.tmp``: an unfinished part of a writer that died (or is still
      writing).
    * a final-named part whose footer cannot be read (truncated, empty, not Parquet).
    * a foreign part: a ``draws``/``episodes`` part without the table's columns and
      types (e.g. written by ``DataFrame.to_parquet``), or a part of another table
      that shares no column with the run's other parts of it. Read as the table, its
      rows would be rows of nulls.
    * a corrupt part: its data fails a page checksum or does not decompress (found by
      the reader, recorded here with :meth:`PartScanner.mark_corrupt`).
    * a table path that is a file, not a directory.
    * other names starting with ``.`` or ``_``: logged at debug level.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .schema import TMP_SUFFIX, canonical_schema, check_part_schema, parse_part_name

__all__ = ["Part", "PartScanner", "SkippedPart", "TableHealth"]

logger = logging.getLogger(__name__)


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
            a page checksum or decompression), ``duplicate`` (the same bytes as another
            part: a copy, whose rows would be read twice) or ``not a directory`` (the
            table path).
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
        """Whether a part was skipped (a copy of another aside: no row is lost with it) or
        recorded rows are not readable."""
        return any(s.kind != "duplicate" for s in self.skipped) or bool(self.rows_missing)

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


class Part(NamedTuple):
    """A readable part: its path, schema (from the footer), rows and writer id."""

    path: str
    schema: pa.Schema
    num_rows: int
    writer: str | None


class PartScanner:
    """Lists the parts of a dataset's tables and reads their footers, caching them.

    Footers are cached by (path, size, mtime): a file that changes is read again.

    Example:
        >>> import tempfile, pyarrow as pa, pyarrow.fs as pafs
        >>> from varirec.storage import RunWriter
        >>> root = tempfile.mkdtemp()
        >>> with RunWriter(root, "r0", background=False) as w:
        ...     w.append("steps", pa.table({"reward": [1.0, 2.0]}))
        >>> parts, skipped = PartScanner(pafs.LocalFileSystem()).scan(
        ...     "r0", f"{root}/run_id=r0", "steps")
        >>> [p.num_rows for p in parts], skipped
        ([2], [])
    """

    def __init__(self, filesystem: pafs.FileSystem) -> None:
        self.filesystem = filesystem
        self._footers: dict[tuple[str, int, int | None], Any] = {}
        self._digests: dict[tuple[str, int, int | None], str] = {}  # see _drop_copies
        # Parts whose data failed to read (checksum, decompression): (kind, reason).
        self._bad_data: dict[tuple[str, int, int | None], tuple[str, str]] = {}

    def mark_corrupt(self, path: str, reason: str) -> None:
        """Skip ``path`` from now on (until it changes): its data failed to read."""
        info = self.filesystem.get_file_info(path)
        self._bad_data[(path, info.size, info.mtime_ns)] = ("corrupt", reason)

    def health(
        self,
        run_id: str,
        run_path: str,
        table: str,
        writer_counts: dict[str, dict[str, int] | None],
        closed_counts: dict[str, int],
    ) -> TableHealth:
        """The :class:`TableHealth` of ``table`` in one run, from the footers (cheap).

        Args:
            writer_counts: per writer, the counts it wrote when it closed (None: unknown).
            closed_counts: run.json's closing counts, used when no writer is counted.
        """
        parts, skipped = self.scan(run_id, run_path, table)
        readable: dict[str | None, int] = {}
        for part in parts:
            readable[part.writer] = readable.get(part.writer, 0) + part.num_rows
        with_files = {p.writer for p in parts} | {s.writer for s in skipped}
        with_files.discard(None)
        counted = {w: c for w, c in writer_counts.items() if c is not None}
        uncounted = sorted(w for w in with_files if w not in counted)
        if counted:
            recorded: int | None = sum(c.get(table, 0) for c in counted.values())
            missing: int | None = sum(
                max(0, c.get(table, 0) - readable.get(w, 0)) for w, c in counted.items()
            )
        elif table in closed_counts:
            # No usable sidecar: run.json's total stands for all writers.
            recorded = closed_counts[table]
            missing = max(0, recorded - sum(readable.values()))
            uncounted = []
        else:
            recorded = missing = None
        return TableHealth(
            run_id,
            table,
            sum(readable.values()),
            recorded,
            missing,
            tuple(skipped),
            tuple(uncounted),
        )

    def scan(self, run_id: str, run_path: str, table: str) -> tuple[list[Part], list[SkippedPart]]:
        """The readable parts of ``table`` in run ``run_id`` (footers only), and the rest."""
        parts: list[Part] = []
        skipped: list[SkippedPart] = []
        sizes: dict[str, tuple[int, int | None]] = {}
        for info in self._part_infos(run_id, run_path, table, skipped):
            sizes[info.path] = (info.size, info.mtime_ns)
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
                    parts.append(Part(info.path, footer[0], footer[1], writer))
                    continue
            skipped.append(SkippedPart(run_id, table, info.path, *problem, writer))
        if canonical_schema(table) is None and len(parts) > 1:
            parts = self._drop_disjoint(parts, skipped, run_id, table)
        if len(parts) > 1:
            parts = self._drop_copies(parts, sizes, skipped, run_id, table)
        return parts, skipped

    def _drop_copies(
        self,
        parts: list[Part],
        sizes: dict[str, tuple[int, int | None]],
        skipped: list[SkippedPart],
        run_id: str,
        table: str,
    ) -> list[Part]:
        """``parts`` less the byte-for-byte copies of an earlier one (a part copied under
        a second name: its rows would be read twice). Only parts of one writer with the
        same size and row count are read and compared, which real parts never are."""
        groups: dict[tuple[Any, ...], list[Part]] = {}
        for part in parts:
            groups.setdefault((part.writer, part.num_rows, sizes[part.path][0]), []).append(part)
        copies: set[str] = set()
        for group in groups.values():
            if len(group) < 2:
                continue
            seen: dict[str, str] = {}
            for part in sorted(group, key=lambda p: p.path):
                digest = self._digest(part.path, sizes[part.path])
                if digest in seen:
                    copies.add(part.path)
                    reason = (
                        f"the same bytes as {seen[digest]}, a copy of that part: its rows "
                        "would be read twice; remove one of the two files"
                    )
                    skipped.append(
                        SkippedPart(run_id, table, part.path, "duplicate", reason, part.writer)
                    )
                else:
                    seen[digest] = part.path
        return [p for p in parts if p.path not in copies]

    def _digest(self, path: str, stamp: tuple[int, int | None]) -> str:
        key = (path, *stamp)
        found = self._digests.get(key)
        if found is None:
            h = hashlib.sha256()
            with self.filesystem.open_input_stream(path) as f:
                while chunk := f.read(1 << 22):
                    h.update(chunk)
            found = self._digests[key] = h.hexdigest()
        return found

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
        parts: list[Part], skipped: list[SkippedPart], run_id: str, table: str
    ) -> list[Part]:
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
