"""The on-disk format: table schemas, the check that batches match them, and the layout.

Contents:
    SCHEMA_VERSION: version of the on-disk format, stored in every ``run.json``.
    PHASES: the values of the ``phase`` column of ``draws``.
    draws_schema: the schema of the ``draws`` table.
    episodes_schema: the schema of the ``episodes`` table, plus user-term columns.
    canonical_schema: the fixed schema of a table name, or None (``steps``, custom).
    table_schema: the schema a table takes given its first batch.
    conform: validate a table against a schema and cast it to exactly that schema.
    DICT_STRING, UTC_TIMESTAMP: the types of string and time columns.
    RUN_PREFIX, RUN_JSON, WRITERS_DIR, TMP_SUFFIX: names of the dataset layout (below).
    part_name, parse_part_name: the final file name of a part, and back.
    check_part_schema: why a part's schema is not that of its table (foreign parts).
    check_run_id, check_writer_id, check_table_name: validate names that become paths.

Layout of a dataset directory::

    DATASET/run_id=<run_id>/run.json                  run metadata, written atomically
    DATASET/run_id=<run_id>/writers/<writer_id>.json  one sidecar per writer process
    DATASET/run_id=<run_id>/<table>/part-<writer_id>-<n:05d>.parquet
    DATASET/run_id=<run_id>/<table>/.part-<writer_id>-<n:05d>.parquet.tmp  (being written)

A ``steps`` table (or any other table name) has the schema its producer chooses;
the writer only checks that it stays the same within one run writer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DICT_STRING",
    "PHASES",
    "RUN_JSON",
    "RUN_PREFIX",
    "SCHEMA_VERSION",
    "TMP_SUFFIX",
    "UTC_TIMESTAMP",
    "WRITERS_DIR",
    "canonical_schema",
    "check_part_schema",
    "check_run_id",
    "check_table_name",
    "check_writer_id",
    "conform",
    "draws_schema",
    "episodes_schema",
    "parse_part_name",
    "part_name",
    "table_schema",
]

SCHEMA_VERSION = 1
"""Version of the dataset layout and the table schemas; bump on incompatible change."""

PHASES = ("build", "reset", "interval", "manual")
"""When a draw happened: before the env existed, at a reset, mid-episode, or by hand."""

RUN_PREFIX = "run_id="
"""Prefix of a run directory: ``run_id=<run_id>`` (hive partitioning)."""
RUN_JSON = "run.json"
"""Name of the run metadata file in a run directory."""
WRITERS_DIR = "writers"
"""Directory of the per-writer sidecars in a run directory; not a table name."""

TMP_SUFFIX = ".tmp"
"""Suffix of a part still being written (its name also starts with ``.``)."""

_WRITER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.]{0,99}$")
_PART_RE = re.compile(r"^part-(?P<writer>.+)-(?P<index>\d{5,})\.parquet$")
DICT_STRING = pa.dictionary(pa.int32(), pa.string())
"""Type of the string columns (``variation``, ``phase``, ``label``, ``run_id``)."""
UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")
"""Type of the time columns: UTC microseconds."""
_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError)


# Built once: pa.Schema is immutable, and callers compare it on every batch.
_DRAWS = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("variation", DICT_STRING, nullable=False),
        pa.field("component", pa.int16(), nullable=False),
        pa.field("env_id", pa.int32(), nullable=False),  # -1: applies to every env
        pa.field("episode", pa.int64(), nullable=False),  # -1: build-mode draw
        pa.field("step", pa.int64(), nullable=False),
        pa.field("phase", DICT_STRING, nullable=False),  # one of PHASES
        pa.field("draw_seq", pa.int32(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("label", DICT_STRING),  # null unless the variation is categorical
        pa.field("sample_id", pa.int64()),  # design row; null outside a design
        pa.field("time", UTC_TIMESTAMP, nullable=False),
    ]
)


def draws_schema() -> pa.Schema:
    """The schema of the ``draws`` table: one row per drawn value (per component).

    Returns:
        The schema; ``label`` and ``sample_id`` are the only nullable columns.

    Example:
        >>> draws_schema().field("variation").type
        DictionaryType(dictionary<values=string, indices=int32, ordered=0>)
        >>> draws_schema().names[:4]
        ['seq', 'variation', 'component', 'env_id']
    """
    return _DRAWS


_EPISODES_CORE = [
    pa.field("env_id", pa.int32(), nullable=False),
    pa.field("episode", pa.int64(), nullable=False),
    pa.field("start_seq", pa.int64(), nullable=False),
    pa.field("end_seq", pa.int64(), nullable=False),
    pa.field("length", pa.int64(), nullable=False),
    pa.field("return", pa.float64(), nullable=False),
    pa.field("success", pa.bool_()),  # null when the task defines no success
    pa.field("terminated", pa.bool_(), nullable=False),
    pa.field("truncated", pa.bool_(), nullable=False),
    pa.field("sample_id", pa.int64()),
    pa.field("seed", pa.int64()),  # the episode's reset seed, when known
    pa.field("time_start", UTC_TIMESTAMP, nullable=False),
    pa.field("time_end", UTC_TIMESTAMP, nullable=False),
]
_EPISODES = pa.schema(_EPISODES_CORE)


def episodes_schema(extra_fields: Iterable[pa.Field | tuple[str, pa.DataType]] = ()) -> pa.Schema:
    """The schema of the ``episodes`` table: one row per finished episode.

    Args:
        extra_fields: columns that user terms add, appended after the core columns,
            as ``pa.field`` objects or ``(name, type)`` pairs.

    Returns:
        The core columns followed by ``extra_fields``.

    Raises:
        ValueError: an extra field reuses a core column name or another extra's name.

    Example:
        >>> import pyarrow as pa
        >>> episodes_schema([("max_force", pa.float32())]).names[-3:]
        ['time_start', 'time_end', 'max_force']
    """
    extras = [f if isinstance(f, pa.Field) else pa.field(f[0], f[1]) for f in extra_fields]
    if not extras:
        return _EPISODES
    names = [f.name for f in _EPISODES_CORE + extras]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(
            f"`extra_fields` must not reuse column names, got duplicates {dupes}; "
            "rename the user-term columns"
        )
    return pa.schema(_EPISODES_CORE + extras)


_CANONICAL = {"draws": draws_schema, "episodes": episodes_schema}


def canonical_schema(table: str) -> pa.Schema | None:
    """The fixed schema of ``table`` (``draws``, ``episodes`` core), or None if it has none.

    Example:
        >>> canonical_schema("steps") is None
        True
    """
    make = _CANONICAL.get(table)
    return None if make is None else make()


def part_name(writer_id: str, index: int) -> str:
    """The final file name of part ``index`` of ``writer_id``.

    Example:
        >>> part_name("host_12_ab", 3)
        'part-host_12_ab-00003.parquet'
    """
    return f"part-{writer_id}-{index:05d}.parquet"


def parse_part_name(name: str) -> tuple[str, int] | None:
    """``(writer_id, index)`` of a final part name, or None if ``name`` is not one.

    Example:
        >>> parse_part_name("part-host_12_ab-00003.parquet")
        ('host_12_ab', 3)
        >>> parse_part_name(".part-host_12_ab-00003.parquet.tmp") is None
        True
    """
    match = _PART_RE.match(name)
    return None if match is None else (match["writer"], int(match["index"]))


def check_part_schema(table: str, schema: pa.Schema) -> list[str]:
    """Why ``schema``, a part's, is not a schema of ``table``; empty if it is one.

    ``draws`` must have exactly its columns and types; ``episodes`` its core columns
    and types, plus any user-term columns. Other tables have no fixed schema (the
    reader checks that their parts share columns). A part that fails this was not
    written by varirec (e.g. by ``DataFrame.to_parquet``) or by an incompatible
    version: read as the table, its rows would be rows of nulls.

    Example:
        >>> import pyarrow as pa
        >>> check_part_schema("episodes", pa.schema([("env_id", pa.int64())]))[0]
        "missing columns ['episode', 'start_seq', 'end_seq', 'length', 'return', ...]"
    """
    expected = canonical_schema(table)
    if expected is None:
        return []
    names = set(schema.names)
    missing = [n for n in expected.names if n not in names]
    problems = []
    if missing:
        shown = ", ".join(repr(n) for n in missing[:5]) + (", ..." if len(missing) > 5 else "")
        problems.append(f"missing columns [{shown}]")
    if table == "draws":
        extra = [n for n in schema.names if n not in set(expected.names)]
        if extra:
            problems.append(f"unexpected columns {extra}")
    for field in expected:
        if field.name in names and schema.field(field.name).type != field.type:
            found = schema.field(field.name).type
            problems.append(f"column {field.name!r} is {found}, expected {field.type}")
    return problems


def check_writer_id(writer_id: str) -> str:
    """Return ``writer_id`` if it is a valid writer id, else raise ValueError.

    A writer id is letters, digits, ``_`` and ``.`` (no ``-``, so part names parse
    unambiguously; no path separators).

    Example:
        >>> check_writer_id("gpu01_4242_9f3a")
        'gpu01_4242_9f3a'
    """
    if not isinstance(writer_id, str) or not _WRITER_RE.match(writer_id):
        raise ValueError(
            f"`writer_id` must be letters, digits, '_' and '.' (not starting with '.'), "
            f"got {writer_id!r}; e.g. 'node3_rank0'"
        )
    return writer_id


_TABLE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_RUN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,119}$")


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is a valid run id, else raise ValueError.

    Example:
        >>> check_run_id("ablation_mass-01")
        'ablation_mass-01'
    """
    if not isinstance(run_id, str) or not _RUN_RE.match(run_id):
        raise ValueError(
            f"`run_id` must start with a letter or digit and hold only letters, digits, "
            f"'_', '.' and '-', got {run_id!r}; e.g. 'ablation_mass_01'"
        )
    return run_id


def check_table_name(table: str) -> str:
    """Return ``table`` if it is a valid table name, else raise ValueError.

    Example:
        >>> check_table_name("steps")
        'steps'
    """
    if not isinstance(table, str) or not _TABLE_RE.match(table) or table == WRITERS_DIR:
        raise ValueError(
            f"`table` must be a lowercase name of letters, digits and '_' other than "
            f"{WRITERS_DIR!r}, got {table!r}; e.g. 'draws', 'episodes' or 'steps'"
        )
    return table


def table_schema(table: str, incoming: pa.Schema) -> pa.Schema:
    """The schema a new ``table`` takes when its first batch has schema ``incoming``.

    ``draws`` is fixed; ``episodes`` is the core plus ``incoming``'s other columns (user
    terms); any other table takes ``incoming`` as it is.

    Example:
        >>> import pyarrow as pa
        >>> table_schema("steps", pa.schema([("x", pa.int8())])).names
        ['x']
    """
    if table == "episodes":
        core = set(episodes_schema().names)
        return episodes_schema([f for f in incoming if f.name not in core])
    canonical = canonical_schema(table)
    return canonical if canonical is not None else incoming.remove_metadata()


def _describe(table: str, problems: list[str], schema: pa.Schema) -> str:
    expected = ", ".join(f"{f.name}: {f.type}" for f in schema)
    return (
        f"batch for table {table!r} does not match its schema: {'; '.join(problems)}. "
        f"Expected columns ({expected}); build the batch with these names and types"
    )


def conform(data: pa.Table, schema: pa.Schema, *, table: str = "table") -> pa.Table:
    """Check ``data`` against ``schema`` and return it cast to exactly ``schema``.

    Columns may come in any order; a column of another type is cast when the cast
    is safe (no overflow, truncation or parse failure).

    Args:
        data: the incoming batch.
        schema: the schema the table must have.
        table: the table name, used in the error message.

    Returns:
        ``data`` with the columns of ``schema``, in its order, with its types.

    Raises:
        ValueError: columns are missing or unexpected, a type cannot be cast safely, or
            a non-nullable column holds nulls. The message names every such column
            and the expected schema. Nothing is returned, so nothing gets written.

    Example:
        >>> import pyarrow as pa
        >>> s = pa.schema([("a", pa.int32()), ("b", pa.float64())])
        >>> conform(pa.table({"b": [1.5], "a": [2]}), s).schema == s
        True
        >>> conform(pa.table({"a": [1]}), s, table="steps")
        Traceback (most recent call last):
        ...
        ValueError: batch for table 'steps' does not match its schema: missing columns ['b']...
    """
    if data.schema.equals(schema, check_metadata=False):
        return data
    present = set(data.column_names)
    missing = [n for n in schema.names if n not in present]
    extra = [n for n in data.column_names if n not in set(schema.names)]
    problems = []
    if missing:
        problems.append(f"missing columns {missing}")
    if extra:
        problems.append(f"unexpected columns {extra}")
    if problems:
        raise ValueError(_describe(table, problems, schema))
    columns = []
    for field in schema:
        column = data.column(field.name)
        if column.type != field.type:
            try:
                column = pc.cast(column, field.type, safe=True)
            except _CAST_ERRORS as exc:
                problems.append(f"column {field.name!r} has type {column.type} ({exc})")
                continue
        if not field.nullable and column.null_count:
            problems.append(f"column {field.name!r} holds {column.null_count} nulls")
        columns.append(column)
    if problems:
        raise ValueError(_describe(table, problems, schema))
    return pa.Table.from_arrays(columns, schema=schema)
