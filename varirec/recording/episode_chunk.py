"""Buffered episode rows, turned into the ``episodes`` table on the writer thread.

Terms return plain numpy columns at each pre-reset (cheap on the simulation's hot
path); :meth:`EpisodeChunk.to_arrow` concatenates them and converts each column once:
a float column for a nullable bool (NaN = unknown success), negative ids as nulls,
integer microseconds as UTC timestamps. A term may also return Arrow arrays (cast to
the column's type) or nothing (None: nulls for those episodes).

>>> import numpy as np, pyarrow as pa
>>> schema = pa.schema([("env_id", pa.int32()), ("success", pa.bool_())])
>>> part = {"env_id": np.array([0, 1]), "success": np.array([1.0, np.nan])}
>>> EpisodeChunk([part], schema).to_arrow().column("success").to_pylist()
[True, None]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from varirec.arrays import is_tensor, wait
from varirec.recording.device_outcomes import FLAG_ROWS, OUTCOMES_BLOCK, VALUE_ROWS
from varirec.recording.episodes import FINISHED, FINISHED_BLOCK

__all__ = ["RECORDED_BLOCK", "RECORDED_ROWS", "EpisodeChunk", "part_rows"]

RECORDED_BLOCK = "#recorded"
"""Key of the one block of a part that the compiled reset of a recorder with the outcome
term alone hands over (:meth:`~varirec.recording.compiled_reset.CompiledReset._recorded`):
an int64 array whose rows are :data:`RECORDED_ROWS`, the floats as their bits, the
flags as 0 or 1. One array and one slice on the hot path instead of a dozen; split
into columns here, on the writer thread."""
RECORDED_ROWS = ("env_id", *FINISHED, *VALUE_ROWS, *FLAG_ROWS)
"""The rows of a :data:`RECORDED_BLOCK`, in order (the kernel writes them so:
:func:`~varirec.recording.tracker_kernels.recorded_reset`)."""
_VALUES = slice(1 + len(FINISHED), 1 + len(FINISHED) + len(VALUE_ROWS))
_FLAGS = slice(_VALUES.stop, _VALUES.stop + len(FLAG_ROWS))

_BLOCKS = (FINISHED_BLOCK, RECORDED_BLOCK, OUTCOMES_BLOCK)
"""The keys of a part's blocks: 2-d, one column per episode, split into columns here."""
_NULL_IF_NEGATIVE = ("sample_id", "seed")


def part_rows(part: dict[str, Any]) -> int:
    """The episodes of one hand-over (a dict of columns, or a :data:`RECORDED_BLOCK`)."""
    block = part.get(RECORDED_BLOCK)
    return len(part["env_id"]) if block is None else block.shape[1]


log = logging.getLogger(__name__)
_TOLD: set[str] = set()  # the bool columns whose odd values were logged


def _from_numpy(field: pa.Field, data: Any) -> pa.Array:
    # Arrow copies a strided array holding the GIL; numpy copies it without (a column
    # of a block, a device's host rows): time the simulation's main thread waits for.
    data = np.ascontiguousarray(data)
    if data.ndim == 2 and _is_list(field.type):  # (episodes, k): a list of k per episode
        inner = _from_numpy(pa.field(field.name, field.type.value_type), data.reshape(-1))
        return pa.FixedSizeListArray.from_arrays(inner, data.shape[1]).cast(field.type)
    if data.ndim != 1:
        raise ValueError(
            f"episode column {field.name!r} ({field.type}) got an array of shape "
            f"{data.shape}: return one value per episode, or declare the column as a list "
            f"(e.g. pa.list_(pa.float64(), {data.shape[-1]})) for {data.shape[-1]} per episode"
        )
    if field.name in _NULL_IF_NEGATIVE:
        return pa.array(data, field.type, mask=data < 0)
    if pa.types.is_timestamp(field.type):
        return pa.array(data.astype(np.int64, copy=False), pa.int64()).cast(field.type)
    if data.dtype.kind == "f" and not pa.types.is_floating(field.type):
        missing = np.isnan(data)  # NaN: not reported (e.g. success of a task without one)
        if pa.types.is_boolean(field.type):
            odd = data[~missing & (data != 0.0) & (data != 1.0)]
            if odd.size and field.name not in _TOLD:  # off the step, once per process
                # Logged, not warned: a warning made an error (-W error) would fail the
                # writer's chunk here and lose its rows.
                _TOLD.add(field.name)
                log.warning(
                    "`%s` got values other than 0, 1 and NaN (e.g. %g): recorded as True "
                    "where above 0.5; pass bools, or 1.0 / 0.0 with NaN where unknown",
                    field.name,
                    odd[0],
                )
            data = data > 0.5
        return pa.array(data, field.type, mask=missing if missing.any() else None)
    return pa.array(data, field.type)


def column_kinds(term: Any, schema: pa.Schema) -> dict[str, tuple[bool, bool, bool, str]]:
    """Per column a term declares: ``(list, text, number or bool, name)`` of its type in
    ``schema``, what :func:`check_term_columns` compares a returned array with (worked
    out once: pyarrow's type tests cost a microsecond each)."""
    kinds = {}
    for name in term.columns():
        kind = schema.field(name).type
        text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
        number = pa.types.is_integer(kind) or pa.types.is_floating(kind)
        kinds[name] = (_is_list(kind), text, number or pa.types.is_boolean(kind), str(kind))
    return kinds


def check_term_columns(
    term: Any,
    returned: Mapping[str, Any],
    kinds: Mapping[str, tuple[bool, bool, bool, str]],
    n: int,
) -> None:
    """Refuse what a term's ``record_pre_reset`` returned for ``n`` episodes where the
    episodes table could not take it (a column it does not declare, another length, text
    for a number column or numbers for a text one, a table where one value per episode
    goes, a tensor the writer thread cannot read), before it joins the buffered
    episodes: found later, at the hand-over, it would fail the run's buffered rows with
    it. ``kinds``: :func:`column_kinds` of the term. Shapes and dtypes only: the values
    are converted on the writer thread."""
    for name, value in returned.items():
        kind = kinds.get(name)
        if kind is None:
            raise ValueError(
                f"{type(term).__name__}.record_pre_reset returned column {name!r}, which its "
                f"columns() does not declare ({sorted(kinds)}); declare it there (name -> "
                "Arrow type) or do not return it"
            )
        if value is None:
            continue
        if type(value) is np.ndarray:
            arr = value
        elif isinstance(value, pa.Array | pa.ChunkedArray):
            _check_length(term, name, len(value), n)
            continue
        elif is_tensor(value):
            _check_tensor(term, name, value)
            _check_length(term, name, value.shape[0] if value.ndim else 0, n)
            continue
        else:
            arr = np.asarray(value)
        listed, text, number, declared = kind
        dtype = arr.dtype.kind
        if (
            (arr.ndim != 1 and not (listed and arr.ndim == 2))
            or (number and dtype in "US")
            or (text and dtype in "biuf")
        ):
            raise ValueError(
                f"{type(term).__name__}.record_pre_reset returned column {name!r} as "
                f"{arr.dtype} values of shape {arr.shape}, which its declared type "
                f"{declared} cannot hold; return one value of that type per episode, aligned "
                "with env_ids"
            )
        _check_length(term, name, arr.shape[0], n)


def _check_length(term: Any, name: str, got: int, n: int) -> None:
    if got != n:
        raise ValueError(
            f"{type(term).__name__}.record_pre_reset returned column {name!r} with {got} "
            f"value(s) for {n} finished episode(s); return one value per env of env_ids, in "
            "its order"
        )


def _check_tensor(term: Any, name: str, value: Any) -> None:
    where = f"{type(term).__name__}.record_pre_reset returned column {name!r}"
    if value.requires_grad:
        raise ValueError(
            f"{where} as a tensor that requires grad; return {name}.detach() (the recorded "
            "values need no graph)"
        )
    copies = type(term).copy_out.__qualname__ != "RecorderTerm.copy_out"
    if value.device.type != "cpu" and not copies:
        raise ValueError(
            f"{where} as a tensor on {value.device}, and the term has no copy_out() to bring "
            "it to the host; return it with .cpu() (a wait for the device), or gather it "
            "there and copy it out in copy_out() (see OutcomeTerm)"
        )


def _is_list(kind: pa.DataType) -> bool:
    return (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )


def _part(field: pa.Field, value: Any, n: int) -> pa.Array:
    if value is None:  # the term returned nothing for these episodes
        return pa.nulls(n, field.type)
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if isinstance(value, pa.Array):  # Arrow carries its own nulls: a safe cast only
        return value.cast(field.type)
    return _from_numpy(field, value)


def _column(field: pa.Field, values: list[Any], lengths: list[int]) -> pa.Array:
    if not values:
        return pa.nulls(0, field.type)
    if all(isinstance(v, np.ndarray) for v in values):  # the usual case: convert once
        return _from_numpy(field, np.concatenate(values))
    return pa.concat_arrays([_part(field, v, n) for v, n in zip(values, lengths, strict=True)])


def _split(part: dict[str, Any]) -> dict[str, Any]:
    """A part with columns kept as blocks (the tracker's, ``FINISHED_BLOCK``; a
    compiled recorded reset's, :data:`RECORDED_BLOCK`; a device's outcomes,
    ``OUTCOMES_BLOCK``), as columns."""
    block = part.get(FINISHED_BLOCK)
    recorded = part.get(RECORDED_BLOCK)
    outcomes = part.get(OUTCOMES_BLOCK)
    if block is None and recorded is None and outcomes is None:
        return part
    split = {k: v for k, v in part.items() if k not in _BLOCKS}
    if block is not None:
        split.update(zip(FINISHED, block, strict=True))
    if outcomes is not None:
        split.update(zip(VALUE_ROWS, outcomes[: len(VALUE_ROWS)], strict=True))
        split.update(zip(FLAG_ROWS, _flag_rows(outcomes[len(VALUE_ROWS) :]), strict=True))
    if recorded is not None:
        split["env_id"] = recorded[0].astype(np.int32)
        split.update(zip(FINISHED, recorded[1 : 1 + len(FINISHED)], strict=True))
        split.update(zip(VALUE_ROWS, recorded[_VALUES].view(np.float64), strict=True))
        split.update(zip(FLAG_ROWS, recorded[_FLAGS] != 0, strict=True))
    return split


def _flag_rows(rows: np.ndarray) -> np.ndarray:
    """A device's flag rows (the values ``record_step`` got, unchecked there: a check
    would wait for the device) as bools; a value other than 0 and 1 is set, and logged
    once per flag per process, off the step."""
    flags = rows != 0
    for name, row, on in zip(FLAG_ROWS, rows, flags, strict=True):
        odd = row[on & (row != 1.0)]
        if odd.size and name not in _TOLD:
            _TOLD.add(name)
            log.warning(
                "record_step `%s` got values other than 0 and 1 on the device (e.g. %g): "
                "recorded as True where not 0; pass bools (e.g. %s=(x == 1))",
                name,
                odd[0],
                name,
            )
    return flags


def _joined(values: list[np.ndarray]) -> np.ndarray:
    """``values`` joined along their last axis. Runs of views that lie side by side in
    one buffer (a :class:`~varirec.recording.block_pool.BlockPool`'s, a device's host
    rows) are joined as one view of it, without a copy: the hand-over's bulk is laid
    out once, on the main thread, as it comes. The rest is concatenated."""
    runs: list[np.ndarray] = []
    first = values[0]
    size = first.shape[-1]
    end = _end(first)
    for v in values[1:]:
        # The cheap checks first: an address costs microseconds, hundreds of parts a key.
        at = _address(v) if end is not None and _alike(first, v) else None
        if at is not None and at == end:
            size += v.shape[-1]
        else:
            runs.append(_extended(first, size))
            first, size = v, v.shape[-1]
            at = _address(v) if v.base is not None else None
        end = None if at is None else at + v.shape[-1] * v.strides[-1]
    runs.append(_extended(first, size))
    return runs[0] if len(runs) == 1 else np.concatenate(runs, axis=-1)


def _address(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def _end(a: np.ndarray) -> int | None:
    """Where a view ends along its last axis (None: not a view, nothing can follow)."""
    return None if a.base is None else _address(a) + a.shape[-1] * a.strides[-1]


def _alike(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``b`` may continue ``a``: views of the same array, with the same dtype,
    strides and other axes (then ``b`` continues ``a`` where it starts at ``a``'s end)."""
    return (
        b.base is a.base
        and a.dtype == b.dtype
        and a.strides == b.strides
        and a.shape[:-1] == b.shape[:-1]
    )


def _extended(first: np.ndarray, size: int) -> np.ndarray:
    """``first`` extended along its last axis to ``size`` (the views that follow it,
    checked by :func:`_joined`, lie there); read-only, like the rows it joins."""
    if size == first.shape[-1]:
        return first
    shape = (*first.shape[:-1], size)
    return np.lib.stride_tricks.as_strided(first, shape, first.strides, writeable=False)


def _merged(parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The parts as one part, each key's arrays joined (the rows of a block are its
    columns, so blocks join along their last axis), then split: where every part has
    the same keys and only numpy arrays (the usual hand-over, hundreds of resets).
    Converted once, it holds the GIL a fraction of the time of a split per part
    (``benchmarks/bench_convert_gil.py``), time the simulation's main thread waits for
    (see :mod:`varirec.storage.sink`). None where
    the parts differ (the general path joins them column by column). Arrow may keep an
    array without a copy: a concatenation, or a view of memory that nothing writes
    again (a pool's buffer is left for a new one at each hand-over, a device's host
    rows for a new buffer at each copy)."""
    if len(parts) < 2:
        return None
    keys = parts[0].keys()
    if any(p.keys() != keys for p in parts):
        return None
    merged: dict[str, Any] = {}
    for key in keys:
        values = [p[key] for p in parts]
        ndim = 2 if key in _BLOCKS else 1
        if any(type(v) is not np.ndarray or v.ndim != ndim for v in values):
            return None
        merged[key] = values
    try:
        joined = {k: _joined(v) for k, v in merged.items()}
    except ValueError:  # shapes that do not join: the general path says what is wrong
        return None
    split = _split(joined)
    if "env_id" not in split:
        return None
    return split


class EpisodeChunk:
    """Episode columns of several pre-resets; :meth:`to_arrow` runs on the writer thread."""

    __slots__ = ("event", "parts", "schema")

    def __init__(self, parts: list[dict[str, Any]], schema: pa.Schema, event: Any = None) -> None:
        self.parts = parts
        self.schema = schema
        self.event = event
        """A CUDA event after the parts' device-to-host copies (None: nothing pending)."""

    def __len__(self) -> int:
        return sum(part_rows(p) for p in self.parts)

    def to_arrow(self) -> pa.Table:
        """The ``episodes`` rows of every part, one column per schema field.

        A column a part lacks (its term returned None) is null for that part's rows;
        numpy columns follow the conventions above, Arrow arrays are cast as they are.
        """
        wait(self.event)  # the parts' non-blocking copies from the device are complete
        merged = _merged(self.parts)
        if merged is not None:
            return pa.Table.from_arrays(
                [
                    pa.nulls(len(merged["env_id"]), f.type)
                    if merged.get(f.name) is None
                    else _from_numpy(f, merged[f.name])
                    for f in self.schema
                ],
                schema=self.schema,
            )
        parts = [_split(p) for p in self.parts]
        lengths = [len(p["env_id"]) for p in parts]
        arrays = [_column(f, [p.get(f.name) for p in parts], lengths) for f in self.schema]
        return pa.Table.from_arrays(arrays, schema=self.schema)
