"""Crash-safe Parquet storage of varirec runs.

Contents:
    RunWriter: one process's writer of one run (``draws``, ``episodes``, ``steps``...).
    PartWriter: the rotating, crash-safe Parquet part files of one table.
    open_dataset, Dataset, RunInfo: read a dataset directory (or URI) back.
    TableHealth, SkippedPart: what of a table reads, and which files do not (and why).
    DatasetWarning: a temporary or unreadable part, or odd run metadata, was skipped.
    draws_schema, episodes_schema, SCHEMA_VERSION: the on-disk schemas.
    install_hooks: varirec's SIGTERM handler, installed from the main thread before a
        thread of yours records (the first writer installs it where it is made there).

Layout: ``DATASET/run_id=<run_id>/{run.json, writers/, <table>/part-<writer>-<n>.parquet}``,
a hive-partitioned directory that pyarrow, pandas and DuckDB read directly.
"""

from __future__ import annotations

from .health import SkippedPart, TableHealth
from .parts import PartWriter
from .reader import Dataset, open_dataset
from .run_info import DatasetWarning, RunInfo
from .schema import SCHEMA_VERSION, draws_schema, episodes_schema
from .shutdown import install_hooks
from .writer import RunWriter

__all__ = [
    "SCHEMA_VERSION",
    "Dataset",
    "DatasetWarning",
    "PartWriter",
    "RunInfo",
    "RunWriter",
    "SkippedPart",
    "TableHealth",
    "draws_schema",
    "episodes_schema",
    "install_hooks",
    "open_dataset",
]
