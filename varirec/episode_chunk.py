"""Buffered episode rows, turned into the ``episodes`` table on the writer thread.

Terms return plain numpy columns at each pre-reset (cheap on the simulation's hot
path); :meth:`EpisodeChunk.to_arrow` concatenates them and converts each column once:
a float column for a nullable bool (NaN = unknown success), negative ids as nulls,
integer microseconds as UTC timestamps.

>>> import numpy as np, pyarrow as pa
>>> schema = pa.schema([("env_id", pa.int32()), ("success", pa.bool_())])
>>> part = {"env_id": np.array([0, 1]), "success": np.array([1.0, np.nan])}
>>> EpisodeChunk([part], schema).to_arrow().column("success").to_pylist()
[True, None]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["EpisodeChunk"]

_NULL_IF_NEGATIVE = ("sample_id", "seed")


def _column(field: pa.Field, values: list[Any], n: int) -> pa.Array:
    if all(v is None for v in values):
        return pa.nulls(n, field.type)
    if any(isinstance(v, pa.Array | pa.ChunkedArray) for v in values):
        return pa.concat_arrays([pa.array(v, field.type) for v in values])
    data = np.concatenate([np.asarray(v) for v in values])
    if field.name in _NULL_IF_NEGATIVE:
        return pa.array(data, field.type, mask=data < 0)
    if pa.types.is_timestamp(field.type):
        return pa.array(data.astype(np.int64, copy=False), pa.int64()).cast(field.type)
    if data.dtype.kind == "f" and not pa.types.is_floating(field.type):
        missing = np.isnan(data)  # NaN: not reported (e.g. success of a task without one)
        if pa.types.is_boolean(field.type):
            data = data > 0.5
        return pa.array(data, field.type, mask=missing if missing.any() else None)
    return pa.array(data, field.type)


class EpisodeChunk:
    """Episode columns of several pre-resets; :meth:`to_arrow` runs on the writer thread."""

    __slots__ = ("parts", "schema")

    def __init__(self, parts: list[dict[str, Any]], schema: pa.Schema) -> None:
        self.parts = parts
        self.schema = schema

    def __len__(self) -> int:
        return sum(len(p["env_id"]) for p in self.parts)

    def to_arrow(self) -> pa.Table:
        n = len(self)
        arrays = [_column(f, [p.get(f.name) for p in self.parts], n) for f in self.schema]
        return pa.Table.from_arrays(arrays, schema=self.schema)
