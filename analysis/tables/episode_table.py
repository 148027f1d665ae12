"""The episode table: one row per episode, one column per factor, and the outcomes.

A factor's value for an episode follows the as-of rule of DESIGN.md: the last draw
of that variation component for that env, or for all envs (``env_id = -1``), with
``seq <= start_seq``. That one rule covers reset draws, build draws, resets that
skipped a variation (the env keeps its previous value) and cfg swaps.

Interval-mode variations give no factor. A factor must be fixed before the episode's
outcome could influence it; an interval variation is drawn mid-episode, and how many
draws an episode gets (and so any summary of them, such as their mean) depends on how
long the episode runs, which depends on its outcome: successful episodes that end early
would see fewer, more extreme draws. They are episode noise, like sensor noise; the
table notes them, and their draws stay in the dataset's ``draws`` table (with ``step``).

Vector variations give one column per component (``key[x]``); categorical factors
keep their labels (a pandas ``Categorical``). Factors constant over the selection
are dropped with a note.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from varirec import open_dataset
from varirec.analysis.tables.as_of import DRAW_COLUMNS, has_nan, run_factors
from varirec.analysis.tables.gaps import gap_notes
from varirec.analysis.tables.pages import no_hugepage_advice
from varirec.analysis.tables.repeated import refuse_repeated_episodes, repeated_pairs
from varirec.analysis.tables.stream import stream_factors
from varirec.errors import DatasetError, UnknownNameError
from varirec.storage import Dataset, DatasetWarning
from varirec.variations.overrides import nearest_names

__all__ = ["EpisodeTable", "episode_table"]

log = logging.getLogger(__name__)

_ID_COLUMNS = ("run_id", "env_id", "episode", "sample_id", "seed")
_NOT_OUTCOMES = {
    "env_id", "episode", "start_seq", "end_seq", "sample_id", "seed",
    "time_start", "time_end", "run_id",
}  # fmt: skip


@dataclass
class EpisodeTable:
    """Episodes with their factor values and outcomes.

    Attributes:
        frame: one row per episode: ``run_id, env_id, episode, sample_id, seed``, the
            factor columns, then the outcome columns.
        factors: factor column names, in variation order.
        categorical: the factors whose values are labels.
        outcomes: outcome column names (``success``, ``return``, ``length``, ...).
        notes: what was dropped or is odd, in words.
    """

    frame: pd.DataFrame
    factors: list[str]
    categorical: list[str] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frame)

    def factor_matrix(self, factors: Sequence[str] | None = None) -> np.ndarray:
        """Factors as floats; categorical ones as their category codes."""
        names = list(self.factors if factors is None else factors)
        cols = [
            self.frame[f].cat.codes.to_numpy(float)
            if f in self.categorical
            else self.frame[f].to_numpy(float)
            for f in names
        ]
        return np.column_stack(cols) if cols else np.empty((len(self.frame), 0))

    def outcome(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(y, valid)`` for outcome ``name``: floats, and which rows are finite.

        Missing outcomes (e.g. ``success`` of a task that reports none) and NaN/inf
        are invalid; callers must report and drop them, never pass them on silently.
        """
        if name not in self.outcomes:
            raise UnknownNameError(f"no outcome {name!r}; {nearest_names(name, self.outcomes)}")
        y = pd.to_numeric(self.frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        return y, np.isfinite(y)


def _specs(ds: Dataset, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Variation specs by key, from the runs' ``run.json`` (first run wins)."""
    specs: dict[str, dict[str, Any]] = {}
    for run_id in run_ids:
        for spec in ds.run(run_id).metadata.get("variations", []):
            specs.setdefault(spec["key"], spec)
    return specs


def _is_constant(column: pd.Series) -> bool:
    """At most one distinct non-missing value (numpy min/max, not a hash of every row)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        codes = codes[codes >= 0]
        return codes.size == 0 or codes.min() == codes.max()
    if column.dtype == object:
        return column.nunique(dropna=True) <= 1
    values = column.to_numpy(dtype=float, na_value=np.nan)
    if values.size == 0:
        return True
    low, high = np.fmin.reduce(values), np.fmax.reduce(values)  # NaN only if all are
    return bool(np.isnan(low) or low == high)


def _missing(column: pd.Series) -> int:
    """Missing values in ``column`` (a float column without NaN needs no mask)."""
    if column.dtype == np.float64 and not has_nan(column.to_numpy()):
        return 0
    return int(column.isna().sum())


Engine = Literal["auto", "memory", "duckdb"]
_ENGINES = ("auto", "memory", "duckdb")
BYTES_PER_DRAW_ROW = 120
"""Peak memory of the in-memory path per draw row of the largest run (measured: 20 M rows)."""


def _available_memory() -> int:
    """Memory available now, in bytes (Linux ``sysconf``; 8 GiB where unknown)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def _choose_engine(
    engine: str, ds: Dataset, run_ids: list[str], memory_budget: int | None
) -> tuple[str, int]:
    """The engine to use, and the memory budget in bytes.

    ``auto`` takes the in-memory path (the faster one) while the largest run's draws
    fit the budget at :data:`BYTES_PER_DRAW_ROW`, and DuckDB above it.
    """
    if engine not in _ENGINES:
        raise ValueError(f"`engine` must be one of {list(_ENGINES)}, got {engine!r}")
    if memory_budget is not None and (isinstance(memory_budget, bool) or memory_budget <= 0):
        raise ValueError(
            f"`memory_budget` must be a positive number of bytes (or None for half the "
            f"available memory), got {memory_budget!r}"
        )
    budget = int(memory_budget) if memory_budget is not None else _available_memory() // 2
    if engine != "auto":
        return engine, budget
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)  # the read warns once, later
        largest = max((h.rows_readable for h in ds.health("draws", run_ids)), default=0)
    return ("memory" if largest * BYTES_PER_DRAW_ROW <= budget else "duckdb"), budget


def _table_bytes(episodes: int, specs: dict[str, dict[str, Any]]) -> int:
    """What the episode table holds: a float per factor and about 80 bytes of ids and
    outcomes per episode (at 10 M episodes x 20 factors, 2.4 GB)."""
    factors = sum(
        int(np.prod(spec.get("shape") or [1]))
        for spec in specs.values()
        if spec.get("mode") != "interval"
    )
    return episodes * (8 * factors + 80)


def _episodes_frame(episodes: pa.Table, run_id: str | None) -> pd.DataFrame:
    """``episodes`` (read once, with its ``run_id`` column) as a frame, ``run_id`` first
    (``run_id``, or each row's if None), converted one column at a time, each Arrow column
    let go once converted: the Arrow table and the frame are never both held whole (at
    10 M episodes each is about 1 GB)."""
    columns: dict[str, Any] = {}
    run_col = episodes.column("run_id")
    for name in [n for n in episodes.column_names if n != "run_id"]:
        columns[name] = episodes.column(name).to_pandas()
        episodes = episodes.drop_columns([name])
    frame = pd.DataFrame(columns, copy=False)
    if run_id is None:
        frame.insert(0, "run_id", run_col.cast(pa.string()).to_pandas().array)
    else:
        frame.insert(0, "run_id", run_id)
    return frame


def _add_factors(
    frame: pd.DataFrame,
    names: list[str],
    values: Sequence[np.ndarray],
    label_cols: dict[str, tuple[np.ndarray, list[str]]],
    label_sets: dict[str, list[str]],
) -> pd.DataFrame:
    """``frame`` with one column per factor (``values[i]`` for ``names[i]``); categorical
    ones as labels (object).

    The numeric factors are the arrays given, not copies (at 10 M episodes x 20 factors
    a copy is 1.6 GB)."""
    factors: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        if name not in label_cols:
            factors[name] = values[i]
            continue
        codes, labs = label_cols[name]
        lookup = np.asarray([*labs, None], dtype=object)
        factors[name] = lookup[np.where(codes >= 0, codes, len(labs))]
        known = label_sets.setdefault(name, [])
        known += [labs[c] for c in np.unique(codes) if c >= 0 and labs[c] not in known]
    added = pd.DataFrame(factors, index=frame.index, columns=names, copy=False)
    return pd.concat([frame, added], axis=1)


def _join_in_memory(
    ds: Dataset, run_id: str, specs: dict[str, dict[str, Any]], interval_names: list[str]
) -> tuple[pd.DataFrame, list[str], Sequence[np.ndarray], dict[str, Any]] | None:
    """Run ``run_id``'s episodes frame and its factors (names, values, text labels), joined
    in memory; None where it has no episodes. Interval-mode names go to ``interval_names``."""
    # The join's columns while it runs; the whole episodes table after it, in one read
    # (a read per column cost a scan each, a tenth of the whole table's time at 1 M
    # episodes).
    key_columns = ["env_id", "episode", "start_seq"]
    keys = ds.episodes(run_id, columns=key_columns)
    if keys.num_rows == 0:
        return None
    skipped: list[str] = []
    names, values, label_cols = _join(ds, run_id, keys, specs, skipped)
    rows = keys.num_rows
    del keys
    episodes = ds.episodes(run_id)
    if episodes.num_rows != rows:
        # A part whose key columns read but whose other columns did not (a damaged page):
        # the whole read skipped it, so join again on the episodes it kept.
        if episodes.num_rows == 0:
            return None
        skipped = []
        names, values, label_cols = _join(ds, run_id, episodes.select(key_columns), specs, skipped)
    interval_names += skipped
    return _episodes_frame(episodes, run_id), names, values, label_cols


def _join(
    ds: Dataset, run_id: str, keys: pa.Table, specs: dict[str, dict[str, Any]], skipped: list[str]
) -> tuple[list[str], Sequence[np.ndarray], dict[str, Any]]:
    """The factors of the episodes ``keys`` (names, values, text labels); the
    interval-mode names go to ``skipped``."""
    streamed = stream_factors(ds, run_id, keys, specs)
    if streamed is not None:  # the common case, joined while the parts decode
        joined, interval = streamed
        skipped += interval
        return joined
    draws = ds.draws(run_id, columns=list(DRAW_COLUMNS))
    return run_factors(draws, keys, specs, skipped)


def episode_table(
    dataset: str | os.PathLike[str] | Dataset,
    runs: str | Sequence[str] | None = None,
    *,
    outcomes: Sequence[str] | None = None,
    drop_constant: bool = True,
    engine: Engine = "auto",
    memory_budget: int | None = None,
    temp_directory: str | os.PathLike[str] | None = None,
) -> EpisodeTable:
    """One row per episode of the selected runs, with factor values and outcomes.

    Args:
        dataset: a dataset path or an open :class:`~varirec.storage.Dataset`.
        runs: run id(s); None: every run.
        outcomes: outcome columns to keep (default: all).
        drop_constant: drop factors with a single value over the selection (noted).
        engine: ``memory`` joins in memory, run by run (the faster path);
            ``duckdb`` pushes the as-of join down to DuckDB over the Parquet parts,
            out of core (needs ``pip install 'varirec[duckdb]'``); ``auto`` takes
            ``memory`` while the largest run's draws fit ``memory_budget`` and
            ``duckdb`` above it. Both give the same table.
        memory_budget: bytes the join may use; None: half the available memory.
            DuckDB gets what the table itself (:func:`_table_bytes`) leaves of it, and
            at least a quarter of it, and spills to disk above that.
        temp_directory: where DuckDB spills (default: DuckDB's, ``.tmp`` in the
            working directory).

    Raises:
        DatasetError: the selection holds no episodes.
        UnknownNameError: an unknown run or outcome name.
        ValueError: an unknown engine or a memory budget that is not positive.

    >>> import tempfile, numpy as np, varirec as vr
    >>> root = tempfile.mkdtemp()
    >>> v = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    >>> with vr.RecorderManager(2, variations=[v], output=root, run_id="r") as m:
    ...     m.reset(None, None); m.record_step(reward=np.ones(2)); m.record_pre_reset(None)
    >>> t = episode_table(root)
    >>> t.factors, len(t)
    (['mass'], 2)
    >>> episode_table(root, engine="duckdb").frame.equals(t.frame)
    True
    """
    ds = dataset if isinstance(dataset, Dataset) else open_dataset(dataset)
    run_ids = ds.selected(runs)
    specs = _specs(ds, run_ids)
    engine, budget = _choose_engine(engine, ds, run_ids, memory_budget)
    frames = []
    label_sets: dict[str, list[str]] = {}
    factor_names: list[str] = []
    outcome_names: list[str] = []
    interval_names: list[str] = []
    if engine == "duckdb":
        from varirec.analysis.tables.duckdb_table import duckdb_factors

        # The probe columns only while DuckDB works; the whole episodes table after.
        probe = ds.episodes(run_ids, columns=["env_id", "start_seq"])

        def factors_of(keys: pa.Table) -> Any:
            return duckdb_factors(
                ds,
                run_ids,
                keys,
                specs,
                memory_limit=max(budget // 4, budget - _table_bytes(keys.num_rows, specs)),
                temp_directory=temp_directory,
            )

        rows = probe.num_rows
        got = factors_of(probe) if rows else None
        del probe
        episodes = ds.episodes(run_ids) if rows else None
        if episodes is not None and episodes.num_rows != rows:
            # A damaged page outside the probe's columns: the whole read skipped its part.
            keys = episodes.select(["run_id", "env_id", "start_seq"])
            got = factors_of(keys) if keys.num_rows else None
        if got is not None and episodes is not None:
            interval_names += got.skipped
            frame = _episodes_frame(episodes, None)
            outcome_names += [c for c in frame.columns if c not in _NOT_OUTCOMES]
            factor_names += got.names
            frames.append(_add_factors(frame, got.names, got.values, got.labels, label_sets))
    for run_id in run_ids if engine == "memory" else []:
        with no_hugepage_advice():  # pages.py: once-written arrays, 4 KB pages are cheaper
            got_run = _join_in_memory(ds, run_id, specs, interval_names)
        if got_run is None:
            continue
        frame, names, values, label_cols = got_run
        outcome_names += [
            c for c in frame.columns if c not in _NOT_OUTCOMES and c not in outcome_names
        ]
        factor_names += [n for n in names if n not in factor_names]
        frames.append(_add_factors(frame, names, values, label_cols, label_sets))
    if not frames:
        damage = ds.damage_note("episodes", run_ids)
        if damage is not None:
            raise DatasetError(f"no readable episodes in run(s) {run_ids} of {ds.path}: {damage}")
        raise DatasetError(
            f"no episodes in run(s) {run_ids} of {ds.path}; record finished episodes "
            "(record_pre_reset) before analysing"
        )
    table = pd.concat(frames, ignore_index=True)
    refuse_repeated_episodes(ds, table)
    lost_notes = repeated_pairs(table) + gap_notes(ds, run_ids, table, factor_names)
    if "length" in table:  # an env reset again before it stepped: no outcome of its own
        idle = (pd.to_numeric(table["length"], errors="coerce") == 0).to_numpy()
        if idle.all():
            raise DatasetError(
                f"every episode of run(s) {run_ids} of {ds.path} ran no step (length 0); "
                "call record_step between an env's resets"
            )
        if idle.any():
            table = table[~idle].reset_index(drop=True)
            lost_notes.append(
                f"{int(idle.sum())} episode(s) that ran no step left out (an env reset "
                "again before it stepped: a return of 0 and no outcome of its own)"
            )
    categorical = [f for f in factor_names if f in label_sets]
    for name in categorical:
        # Spec labels in their order, then any other label drawn, sorted (both engines).
        order = list(specs.get(name.split("[")[0], {}).get("labels") or [])
        order += sorted(lab for lab in label_sets[name] if lab not in order)
        table[name] = pd.Categorical(table[name], categories=order)
    notes: list[str] = [
        f"{name!r} is an interval-mode variation, drawn mid-episode: episode noise, "
        "not a factor (its draws are in the draws table)"
        for name in dict.fromkeys(interval_names)
    ] + lost_notes
    if drop_constant:
        for name in list(factor_names):
            if _is_constant(table[name]):
                notes.append(f"factor {name!r} is constant over the selection: dropped")
                factor_names.remove(name)
                table = table.drop(columns=name)
                if name in categorical:
                    categorical.remove(name)
    for name in factor_names:
        missing = _missing(table[name])
        if missing:
            notes.append(f"factor {name!r} has no value in {missing} episode(s)")
    known_outcomes = [c for c in outcome_names if c not in factor_names]
    if outcomes is not None:
        for name in outcomes:
            if name not in known_outcomes:
                raise UnknownNameError(
                    f"no outcome {name!r}; {nearest_names(name, known_outcomes)}"
                )
        known_outcomes = list(outcomes)
    ids = [c for c in _ID_COLUMNS if c in table.columns]
    table = table[ids + factor_names + known_outcomes]
    for note in notes:
        log.info(note)
    return EpisodeTable(table, factor_names, categorical, known_outcomes, notes)
