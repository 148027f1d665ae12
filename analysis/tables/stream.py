"""The as-of join of one run's draws, streamed: decoded batches are joined as they come.

:func:`stream_factors` gives what :func:`~varirec.analysis.tables.as_of.run_factors`
gives, without first reading the whole draws table: pyarrow decodes the parts in its
threads while each batch is scattered to its episode's dense position (the scatter of
``run_factors``), so the join's work hides behind the read, and the draws are never held
in memory at once. Strings are never decoded per row: a batch's small dictionaries
(variation, label) map to integer column and label codes, and names are attached at
the end.

It covers the common case (one writer, draws in ``seq`` order, every variation with a
spec, no draw made after its own episode began, no variation drawn both per env and for
all envs) and returns None otherwise; the caller then takes ``run_factors`` on the
whole table, which handles every case.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from varirec.analysis.tables.as_of import (
    Codes,
    _Dense,
    column_name,
    fill_and_pick,
    keep_text_labels,
    search_pick,
)
from varirec.analysis.tables.duckdb_table import draw_parts
from varirec.storage import Dataset

__all__ = ["stream_factors"]

_COLUMNS = ["seq", "variation", "component", "env_id", "episode", "value"]
_NEVER = np.iinfo(np.int64).max  # start of a cell with no finished episode: no draw is late
Factors = tuple[list[str], list[np.ndarray], dict[str, tuple[np.ndarray, list[str]]]]


class _Unsupported(Exception):
    """The run needs ``run_factors`` (a case the stream does not cover)."""


def _batches(
    ds: Dataset, files: list[str], columns: list[str], batch_size: int
) -> Iterator[pa.RecordBatch]:
    import pyarrow.dataset as pads

    fmt = pads.ParquetFileFormat(
        default_fragment_scan_options=pads.ParquetFragmentScanOptions(
            page_checksum_verification=True  # as the dataset reader: damage is not data
        )
    )
    dataset = pads.dataset(files, format=fmt, filesystem=ds.filesystem)
    # A short read-ahead: decoded batches wait for the join, not for memory to run out.
    yield from dataset.to_batches(
        columns=columns,
        batch_size=batch_size,
        batch_readahead=4,
        fragment_readahead=2,
        use_threads=True,
    )


def _indices(column: pa.Array) -> np.ndarray:
    """The int32 dictionary indices of ``column``, nulls as -1."""
    indices = column.indices
    if indices.null_count:
        indices = pc.fill_null(indices, -1)
    return indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)


class _Join:
    """The dense scatter of :func:`run_factors`, fed batch by batch."""

    def __init__(self, episodes: pa.Table, specs: dict[str, dict[str, Any]]) -> None:
        self.specs = specs
        self.e_env = episodes.column("env_id").to_numpy().astype(np.int64)
        e_episode = episodes.column("episode").to_numpy()
        self.e_start = episodes.column("start_seq").to_numpy()
        self.dense = _Dense(self.e_env, e_episode)
        self.pos_e = self.dense.pos(self.e_env, e_episode)
        self.start = np.full(self.dense.size, _NEVER, np.int64)
        self.start[self.pos_e] = self.e_start
        self.variations, self.labels = Codes(), Codes()
        self.cols: dict[tuple[int, int], int] = {}  # (variation code, component) -> column
        self.interval: list[bool] = []
        self.n_own = np.zeros(0, np.int64)
        width = sum(
            max(1, len(s.get("components") or []), *(s.get("shape") or [1])) for s in specs.values()
        )
        self.value = np.full((max(width, 1), self.dense.size), np.nan)
        self.label: np.ndarray | None = None
        self.build: list[tuple[np.ndarray, ...]] = []  # (col, seq, value, label) of env -1
        self.last_seq = -1
        # Per-batch scratch, reused: a fresh 1 MB temporary per batch is a fresh mmap, and
        # its page faults cost more than the arithmetic. Rows: col, pos, start, flat.
        self._ints = np.empty((4, 0), np.int64)
        self._flag = np.empty(0, bool)

    def _columns_of(self, var_lut: np.ndarray, pairs: np.ndarray, width: int) -> np.ndarray:
        """Column of each (batch variation code * width + component) present."""
        lut = np.full(len(var_lut) * width, -1, np.int64)
        for key in pairs:
            var, comp = int(var_lut[key // width]), int(key % width)
            col = self.cols.get((var, comp))
            if col is None:
                name = self.variations.names[var]
                spec = self.specs.get(name)
                if spec is None or not spec.get("mode"):
                    raise _Unsupported(f"{name!r} has no spec: its phases tell its mode")
                col = self.cols[var, comp] = len(self.interval)
                self.interval.append(spec["mode"] == "interval")
                self.n_own = np.r_[self.n_own, 0]
                if col >= len(self.value):
                    raise _Unsupported("more columns than the specs' shapes say")
            lut[key] = col
        return lut

    def add(self, batch: pa.RecordBatch) -> None:
        seq = batch.column(0).to_numpy()
        n = len(seq)
        if n == 0:
            return
        if self._ints.shape[1] < n:
            self._ints, self._flag = np.empty((4, n), np.int64), np.empty(n, bool)
        col_buf, pos_buf, start_buf, flat_buf = self._ints[:, :n]
        flag = self._flag[:n]
        if seq[0] < self.last_seq or np.less(seq[1:], seq[:-1], out=flag[1:]).any():
            raise _Unsupported("draws are not in seq order")
        self.last_seq = int(seq[-1])
        var = batch.column(1)
        var_lut = self.variations.lut(var.dictionary)
        codes = _indices(var)
        comp = batch.column(2).to_numpy()
        width = int(comp.max()) + 1
        key = codes if width == 1 else codes * width + comp
        counts = np.bincount(key, minlength=len(var_lut) * width)
        col_lut = self._columns_of(var_lut, np.flatnonzero(counts), width)
        col = np.take(col_lut, key, out=col_buf, mode="clip")  # clip: unbuffered
        env = batch.column(3).to_numpy()
        episode = batch.column(4).to_numpy()
        value = batch.column(5).to_numpy()
        label = None
        lab = batch.column(6) if batch.num_columns > 6 else None
        if lab is not None and (lab.null_count < n or self.label is not None):
            lab_lut = np.r_[self.labels.lut(lab.dictionary), -1]
            label = lab_lut[_indices(lab)].astype(np.int32)
            if self.label is None:
                self.label = np.full(self.value.shape, -1, np.int32)
        dense, interval = self.dense, np.array(self.interval, bool)
        fast = (
            dense.keys is None
            and dense.episode_major
            and not interval[col_lut[counts > 0]].any()
            and env.min() >= 0
            and env.max() < dense.num_envs
            and episode.min() >= 0
            and episode.max() < dense.max_episodes
        )
        if fast:  # every row is the env's own draw of a finished episode's cell
            pos = np.multiply(episode, dense.num_envs, out=pos_buf)
            pos += env
            np.add.at(self.n_own, col_lut[np.flatnonzero(counts)], counts[counts > 0])
        else:
            build = (env < 0) & ~interval[col]
            if build.any():
                rows = np.flatnonzero(build)
                lab_rows = np.full(len(rows), -1, np.int32) if label is None else label[rows]
                self.build.append((col[rows], seq[rows], value[rows], lab_rows))
            pos = dense.pos(env, episode)
            keep = np.flatnonzero((pos >= 0) & ~interval[col])
            col, pos, seq, value = col[keep], pos[keep], seq[keep], value[keep]
            label = None if label is None else label[keep]
            self.n_own += np.bincount(col, minlength=len(self.n_own))
            start_buf, flat_buf, flag = (
                start_buf[: len(keep)],
                flat_buf[: len(keep)],
                flag[: len(keep)],
            )
        start = np.take(self.start, pos, out=start_buf, mode="clip")
        if np.greater(seq, start, out=flag).any():
            raise _Unsupported("a draw made after its own episode began")
        flat = np.multiply(col, dense.size, out=flat_buf)
        flat += pos
        self.value.reshape(-1)[flat] = value
        if label is not None and self.label is not None:
            self.label.reshape(-1)[flat] = label

    def result(self, skipped: list[str]) -> Factors:
        """The factors, as ``run_factors`` gives them; interval columns go to ``skipped``."""
        n_cols = len(self.interval)
        interval = np.array(self.interval, bool)
        b_col, b_seq, b_value, b_label = (
            [np.concatenate(p) for p in zip(*self.build, strict=True)]
            if self.build
            else [np.zeros(0, np.int64)] * 4
        )
        n_build = np.bincount(b_col, minlength=n_cols)
        if ((self.n_own > 0) & (n_build > 0)).any():
            raise _Unsupported("a variation drawn per env and for all envs")
        n = len(self.e_env)
        # Episodes stored in layout order (episode-major, every cell): views, no gather.
        # Distinct positions, so increasing from 0 to n - 1 is exactly 0..n-1.
        pos_e = self.pos_e
        in_order = pos_e[0] == 0 and pos_e[-1] == n - 1 and bool(np.all(pos_e[1:] > pos_e[:-1]))
        pos_e = slice(0, n) if in_order else self.pos_e
        values: list[np.ndarray] = []
        names: list[str] = []
        labels: dict[str, tuple[np.ndarray, list[str]]] = {}
        vectors = {var for var, comp in self.cols if comp}  # several components
        for var, comp in sorted(self.cols):  # (variation, component): run_factors' order
            c, key = self.cols[var, comp], self.variations.names[var]
            name = column_name(key, self.specs.get(key), comp, vector=var in vectors)
            if interval[c]:
                skipped.append(name)
                continue
            names.append(name)
            lab: np.ndarray | None = None
            if self.n_own[c] > 0:
                own_label = None if self.label is None else self.label[c]
                out, lab = fill_and_pick(self.dense, self.value[c], own_label, pos_e)
            elif n_build[c] == 0:  # only draws of unfinished episodes
                out = np.full(n, np.nan)
            else:
                rc = np.flatnonzero(b_col == c)
                b_env = np.full(len(rc), -1, np.int64)
                lab_rc = None if self.label is None else b_label[rc]
                out, lab = search_pick(
                    b_env, b_seq[rc], b_value[rc], lab_rc, self.e_env, self.e_start
                )
            values.append(out)
            if lab is not None:
                labels[name] = (lab, self.labels.names)
        return names, values, keep_text_labels(labels, self.specs)


def stream_factors(
    ds: Dataset,
    run_id: str,
    episodes: pa.Table,
    specs: dict[str, dict[str, Any]],
    *,
    batch_size: int = 1 << 20,
) -> tuple[Factors, list[str]] | None:
    """Factor values of run ``run_id``'s ``episodes`` (names, one values array per
    factor, text labels) and the interval-mode column names; None where the stream does
    not cover the run (then use :func:`~varirec.analysis.tables.as_of.run_factors`).
    ``batch_size``: the most rows joined at once.

    >>> import tempfile, numpy as np, varirec as vr
    >>> root = tempfile.mkdtemp()
    >>> v = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    >>> with vr.RecorderManager(2, variations=[v], output=root, run_id="r") as m:
    ...     m.reset(None, None); m.record_step(reward=np.ones(2)); m.record_pre_reset(None)
    >>> ds = vr.open_dataset(root)
    >>> spec = {s["key"]: s for s in ds.run("r").metadata["variations"]}
    >>> (names, values, labels), skipped = stream_factors(ds, "r", ds.episodes("r"), spec)
    >>> names, len(values), values[0].shape, skipped
    (['mass'], 1, (2,), [])
    """
    if any(h.skipped or h.damaged for h in ds.health("draws", run_id)):
        return None  # the reader warns about them and reads the rest
    files = draw_parts(ds, run_id)
    writers = {f.rsplit("/", 1)[-1][len("part-") :].rsplit("-", 1)[0] for f in files}
    if len(writers) != 1 or episodes.num_rows == 0:
        return None  # several writers: seq is per writer, run_factors sorts
    text = any(s.get("categorical") or s.get("labels") for s in specs.values())
    join = _Join(episodes, specs)  # before the scan: its page faults then meet no decoding
    try:
        for batch in _batches(ds, files, _COLUMNS + (["label"] if text else []), batch_size):
            join.add(batch)
        skipped: list[str] = []
        return join.result(skipped), skipped
    except (_Unsupported, OSError, pa.ArrowException):
        return None
