"""The episode table: one row per episode, one column per factor, and the outcomes.

A factor's value for an episode follows the as-of rule of DESIGN.md: the last draw
of that variation component for that env, or for all envs (``env_id = -1``), with
``seq <= start_seq``. That one rule covers reset draws, build draws, resets that
skipped a variation (the env keeps its previous value) and cfg swaps. Interval-mode
variations change mid-episode: their factor is the mean of the episode's draws.

Vector variations give one column per component (``key[x]``); categorical factors
keep their labels (a pandas ``Categorical``). Factors constant over the selection
are dropped with a note.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from varirec import open_dataset
from varirec.errors import DatasetError, UnknownNameError
from varirec.overrides import nearest_names
from varirec.storage import Dataset

__all__ = ["EpisodeTable", "episode_table"]

log = logging.getLogger(__name__)

_ID_COLUMNS = ("run_id", "env_id", "episode", "sample_id", "seed")
_NOT_OUTCOMES = {
    "env_id", "episode", "start_seq", "end_seq", "sample_id", "seed",
    "time_start", "time_end", "run_id",
}  # fmt: skip
_DRAW_COLUMNS = ("seq", "variation", "component", "env_id", "episode", "phase", "value", "label")
_SHIFT = np.int64(40)  # seq < 2**40 events per run; env ids < 2**23


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


def _column_name(key: str, spec: dict[str, Any] | None, component: int) -> str:
    comps = (spec or {}).get("components") or []
    if not comps:
        return key if component == 0 and not (spec or {}).get("shape") else f"{key}[{component}]"
    return f"{key}[{comps[component]}]"


def _as_of(
    d_env: np.ndarray, d_seq: np.ndarray, e_env: np.ndarray, e_seq: np.ndarray
) -> np.ndarray:
    """Index of the last draw of each episode's env with ``seq <= start_seq``, or -1."""
    env_draws = d_env >= 0
    found = np.full(len(e_env), -1, dtype=np.int64)
    best_seq = np.full(len(e_env), -1, dtype=np.int64)
    if env_draws.any():
        where = np.flatnonzero(env_draws)
        keys = (d_env[where].astype(np.int64) << _SHIFT) | d_seq[where]
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        probe = (e_env.astype(np.int64) << _SHIFT) | e_seq
        pos = np.searchsorted(keys, probe, side="right") - 1
        ok = (pos >= 0) & ((keys[np.maximum(pos, 0)] >> _SHIFT) == e_env)
        found[ok] = where[order[pos[ok]]]
        best_seq[ok] = d_seq[found[ok]]
    if (~env_draws).any():  # draws for all envs (build mode)
        where = np.flatnonzero(~env_draws)
        order = np.argsort(d_seq[where], kind="stable")
        seqs = d_seq[where][order]
        pos = np.searchsorted(seqs, e_seq, side="right") - 1
        ok = (pos >= 0) & (seqs[np.maximum(pos, 0)] > best_seq)
        found[ok] = where[order[pos[ok]]]
    return found


def _is_constant(column: pd.Series) -> bool:
    """At most one distinct non-missing value (numpy min/max, not a hash of every row)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        codes = codes[codes >= 0]
        return codes.size == 0 or codes.min() == codes.max()
    if column.dtype == object:
        return column.nunique(dropna=True) <= 1
    values = column.to_numpy(dtype=float, na_value=np.nan)
    values = values[~np.isnan(values)]
    return values.size == 0 or values.min() == values.max()


def _all_numeric(labels: Sequence[str]) -> bool:
    """Labels that are numbers (numeric choices, integers, booleans) stay numeric."""
    try:
        [float(x) for x in labels if x not in ("True", "False")]
    except ValueError:
        return False
    return True


def _dictionary_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Indices and dictionary of a dictionary column (chunks unified)."""
    column = column.unify_dictionaries()
    if column.num_chunks == 0:
        return np.zeros(0, np.int32), []
    dictionary = column.chunk(0).dictionary.to_pylist()
    indices = pa.chunked_array([c.indices for c in column.chunks], type=column.type.index_type)
    indices = pc.fill_null(indices, -1)
    return indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False), dictionary


class _Dense:
    """Episodes of one run as dense positions, so draws scatter to them without a sort.

    Episode-major (``pos = episode * num_envs + env``) when the envs ran similar numbers
    of episodes: draws of one reset batch then land side by side in memory. Env-major
    (``pos = offset[env] + episode``) otherwise, so the layout never outgrows the data.
    """

    def __init__(self, e_env: np.ndarray, e_episode: np.ndarray) -> None:
        self.num_envs = int(e_env.max()) + 1 if len(e_env) else 0
        self.count = np.zeros(self.num_envs, np.int64)
        np.maximum.at(self.count, e_env, e_episode + 1)
        self.max_episodes = int(self.count.max()) if self.num_envs else 0
        self.episode_major = self.max_episodes * self.num_envs <= 2 * len(e_env) + self.num_envs
        self.offset = np.cumsum(self.count) - self.count
        self.size = (
            self.max_episodes * self.num_envs if self.episode_major else int(self.count.sum())
        )

    def pos(self, env: np.ndarray, episode: np.ndarray) -> np.ndarray:
        """Positions of (env, episode) pairs that belong to the layout; -1 elsewhere.

        Episode-major positions past an env's last finished episode are harmless (no
        finished episode reads them: the forward fill only looks back), so only the
        grid bounds are checked there.
        """
        if self.episode_major:
            inside = (env >= 0) & (env < self.num_envs) & (episode >= 0)
            inside &= episode < self.max_episodes
            pos = episode * self.num_envs
            pos += env
            return np.where(inside, pos, -1)
        inside = (env >= 0) & (env < self.num_envs) & (episode >= 0)
        safe_env = np.where(inside, env, 0)
        inside &= episode < self.count[safe_env]
        pos = (
            episode * self.num_envs + env if self.episode_major else self.offset[safe_env] + episode
        )
        return np.where(inside, pos, -1)

    def forward_fill(self, has: np.ndarray) -> np.ndarray:
        """For a ``(columns, size)`` mask of cells with a draw, each cell's source cell:
        itself, or the latest earlier episode of the same env that has a draw (or the
        env's first episode, which then has none either)."""
        cols = has.shape[0]
        if self.episode_major:
            ramp = np.arange(self.max_episodes)[None, :, None]
            grid = has.reshape(cols, self.max_episodes, self.num_envs)
            last = np.maximum.accumulate(np.where(grid, ramp, 0), axis=1)
            src = last * self.num_envs + np.arange(self.num_envs)[None, None, :]
            return src.reshape(cols, self.size)
        block_start = np.zeros(self.size, bool)
        block_start[self.offset[self.count > 0]] = True
        ramp = np.arange(self.size)[None, :]
        return np.maximum.accumulate(np.where(has | block_start[None, :], ramp, 0), axis=1)


def _numpy(draws: pa.Table, name: str) -> np.ndarray:
    column = draws.column(name)
    return column.to_numpy() if column.num_chunks != 1 else column.chunk(0).to_numpy()


def _run_factors(
    draws: pa.Table, episodes: pa.Table, specs: dict[str, dict[str, Any]]
) -> tuple[list[str], np.ndarray, dict[str, tuple[np.ndarray, list[str]]]]:
    """Factor values of one run's episodes.

    Returns the factor names, their numeric values as a ``(factors, episodes)`` matrix,
    and for text-categorical factors ``name -> (label codes, labels)``.

    The as-of rule without sorting: episodes get dense positions (:class:`_Dense`);
    every draw is scattered to its own episode's position (a draw is made before its
    episode starts, and draws are stored in ``seq`` order, so the last write is the
    latest draw); a forward fill within each env gives episodes whose reset skipped
    the variation the previous value. Build-mode columns (env -1) take the latest
    build draw at or before each episode's start. A column with a draw made after its
    own episode's start, or with both kinds of draws, falls back to a search over
    (env, seq). Interval-mode columns are the mean of the episode's draws.
    """
    var_codes, var_names = _dictionary_codes(draws.column("variation"))
    env = _numpy(draws, "env_id")
    seq = _numpy(draws, "seq")
    value = _numpy(draws, "value")
    d_episode = _numpy(draws, "episode")
    component = _numpy(draws, "component")
    e_env = episodes.column("env_id").to_numpy().astype(np.int64)
    e_episode = episodes.column("episode").to_numpy()
    e_start = episodes.column("start_seq").to_numpy()

    # Columns: one per (variation, component) present, in (variation, component) order.
    width = int(component.max()) + 1 if len(component) else 1
    code = var_codes if width == 1 else var_codes.astype(np.int32) * width + component
    rows_of_code = np.bincount(code, minlength=len(var_names) * width)
    present = np.flatnonzero(rows_of_code)
    col_of_code = np.full(len(var_names) * width, -1, np.int32)
    col_of_code[present] = np.arange(len(present))
    col = col_of_code[code]
    modes = [specs.get(var_names[c // width], {}).get("mode") for c in present]
    if None in modes:  # no spec for some variation: its phases tell
        phase_codes, phase_names = _dictionary_codes(draws.column("phase"))
        interval = phase_names.index("interval") if "interval" in phase_names else -1
        all_interval = np.bincount(col, weights=phase_codes == interval, minlength=len(present))
        per_col = np.bincount(col, minlength=len(present))
        modes = [
            m or ("interval" if all_interval[c] == per_col[c] > 0 else "reset")
            for c, m in enumerate(modes)
        ]
    names = [
        _column_name(var_names[c // width], specs.get(var_names[c // width]), int(c % width))
        for c in present
    ]
    is_interval = np.array([m == "interval" for m in modes], bool)
    has_labels = draws.column("label").null_count < draws.num_rows
    label_codes = _dictionary_codes(draws.column("label"))[0] if has_labels else None
    label_names = _dictionary_codes(draws.column("label"))[1] if has_labels else []

    dense = _Dense(e_env, e_episode)
    size = dense.size
    pos_e = dense.pos(e_env, e_episode)
    pos_d = dense.pos(env, d_episode)
    out = np.full((len(names), len(e_env)), np.nan)
    label_out: dict[str, tuple[np.ndarray, list[str]]] = {}

    # Interval-mode columns: the mean of the episode's draws.
    if is_interval.any():
        rows = (pos_d >= 0) & is_interval[col]
        flat = col[rows].astype(np.int64) * size + pos_d[rows]
        sums = np.bincount(flat, weights=value[rows], minlength=len(names) * size)
        hits = np.bincount(flat, minlength=len(names) * size)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (sums / hits).reshape(len(names), size)
        out[is_interval] = means[is_interval][:, pos_e]

    # As-of columns whose draws are the env's own: one scatter for all of them.
    # (Masks that select every row are skipped: boolean indexing copies 20 M rows.)
    any_interval = bool(is_interval.any())
    own = (pos_d >= 0) & ~is_interval[col] if any_interval else pos_d >= 0
    all_own = bool(own.all())
    col_own = col if all_own else col[own]
    pos_own = pos_d if all_own else pos_d[own]
    seq_own = seq if all_own else seq[own]
    if all_own:
        n_own, n_build = rows_of_code[present], np.zeros(len(names), np.int64)
    else:
        build = (env < 0) & ~is_interval[col] if any_interval else env < 0
        n_own = np.bincount(col_own, minlength=len(names))
        n_build = np.bincount(col[build], minlength=len(names))
    dense_start = np.full(size, -1, np.int64)
    dense_start[pos_e] = e_start
    start_of_own = dense_start[pos_own]
    late = (start_of_own >= 0) & (seq_own > start_of_own)
    slow = np.zeros(len(names), bool)
    if late.any():
        slow[np.unique(col_own[late])] = True
    slow |= (n_own > 0) & (n_build > 0)
    fast = (n_own > 0) & ~slow & ~is_interval
    if fast.any():
        every = all_own and bool(fast.all())
        rows = None if every else np.flatnonzero(own & fast[col])
        if np.any(seq[1:] < seq[:-1]):  # several writers: scatter in seq order
            rows = np.arange(len(seq)) if rows is None else rows
            rows = rows[np.argsort(seq[rows], kind="stable")]
        c_r = col if rows is None else col[rows]
        flat = np.multiply(c_r, size, dtype=np.int64)
        flat += pos_d if rows is None else pos_d[rows]
        dense_value = np.full(len(names) * size, np.nan)
        dense_value[flat] = value if rows is None else value[rows]
        dense_value = dense_value.reshape(len(names), size)
        dense_label = None
        if label_codes is not None:
            dense_label = np.full(len(names) * size, -1, np.int32)
            dense_label[flat] = label_codes if rows is None else label_codes[rows]
            dense_label = dense_label.reshape(len(names), size)
        del flat
        picked = dense_value[:, pos_e]
        # Episodes whose reset skipped a variation take the env's previous draw.
        gaps = np.flatnonzero(fast & np.isnan(picked).any(axis=1))
        if gaps.size:
            src = dense.forward_fill(~np.isnan(dense_value[gaps]))
            picked[gaps] = np.take_along_axis(dense_value[gaps], src, axis=1)[:, pos_e]
            if dense_label is not None:
                dense_label[gaps] = np.take_along_axis(dense_label[gaps], src, axis=1)
        if fast.all():
            out = picked
        else:
            out[fast] = picked[fast]
        if dense_label is not None:
            for c in np.flatnonzero(fast):
                label_out[names[c]] = (dense_label[c, pos_e], label_names)

    # Build-mode columns and the rare ones: a search over (env, seq) per column.
    for c in np.flatnonzero((n_build > 0) & ~fast & ~is_interval | slow):
        rc = np.flatnonzero(col == c)
        idx = _as_of(env[rc].astype(np.int64), seq[rc], e_env, e_start)
        got = idx >= 0
        out[c] = np.where(got, value[rc][np.maximum(idx, 0)], np.nan)
        if label_codes is not None:
            label_out[names[c]] = (
                np.where(got, label_codes[rc][np.maximum(idx, 0)], -1),
                label_names,
            )

    # Categorical factors keep their labels when the labels are not numbers.
    for name in list(label_out):
        codes, labs = label_out[name]
        spec_labels = specs.get(name.split("[")[0], {}).get("labels") or []
        used = [labs[x] for x in np.unique(codes) if x >= 0]
        if not used or _all_numeric(spec_labels or used):
            del label_out[name]
    return names, out, label_out


def episode_table(
    dataset: str | os.PathLike[str] | Dataset,
    runs: str | Sequence[str] | None = None,
    *,
    outcomes: Sequence[str] | None = None,
    drop_constant: bool = True,
) -> EpisodeTable:
    """One row per episode of the selected runs, with factor values and outcomes.

    Args:
        dataset: a dataset path or an open :class:`~varirec.storage.Dataset`.
        runs: run id(s); None: every run.
        outcomes: outcome columns to keep (default: all).
        drop_constant: drop factors with a single value over the selection (noted).

    Raises:
        DatasetError: the selection holds no episodes.
        UnknownNameError: an unknown run or outcome name.

    >>> import tempfile, numpy as np, varirec as vr
    >>> root = tempfile.mkdtemp()
    >>> v = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    >>> with vr.RecorderManager(2, variations=[v], output=root, run_id="r") as m:
    ...     m.reset(None, None); m.record_step(reward=np.ones(2)); m.record_pre_reset(None)
    >>> t = episode_table(root)
    >>> t.factors, len(t)
    (['mass'], 2)
    """
    ds = dataset if isinstance(dataset, Dataset) else open_dataset(dataset)
    run_ids = ds.run_ids if runs is None else ([runs] if isinstance(runs, str) else list(runs))
    specs = _specs(ds, run_ids)
    frames = []
    label_sets: dict[str, list[str]] = {}
    factor_names: list[str] = []
    outcome_names: list[str] = []
    for run_id in run_ids:
        episodes = ds.episodes(run_id)
        if episodes.num_rows == 0:
            continue
        draws = ds.draws(run_id, columns=list(_DRAW_COLUMNS))
        names, values, label_cols = _run_factors(draws, episodes, specs)
        frame = episodes.drop_columns(["run_id"]).to_pandas()
        frame.insert(0, "run_id", run_id)
        outcome_names += [
            c for c in frame.columns if c not in _NOT_OUTCOMES and c not in outcome_names
        ]
        factor_names += [n for n in names if n not in factor_names]
        factors: dict[str, np.ndarray] = {}
        for name, row in zip(names, values, strict=True):
            if name in label_cols:
                codes, labs = label_cols[name]
                lookup = np.asarray([*labs, None], dtype=object)
                factors[name] = lookup[np.where(codes >= 0, codes, len(labs))]
                known = label_sets.setdefault(name, [])
                known += [lab for lab in labs if lab not in known]
            else:
                factors[name] = row
        frame = pd.concat([frame, pd.DataFrame(factors, index=frame.index)], axis=1)
        frames.append(frame)
    if not frames:
        raise DatasetError(
            f"no episodes in run(s) {run_ids} of {ds.path}; record finished episodes "
            "(record_pre_reset) before analysing"
        )
    table = pd.concat(frames, ignore_index=True)
    categorical = [f for f in factor_names if f in label_sets]
    for name in categorical:
        order = list(specs.get(name.split("[")[0], {}).get("labels") or label_sets[name])
        order += [lab for lab in label_sets[name] if lab not in order]
        table[name] = pd.Categorical(table[name], categories=order)
    notes: list[str] = []
    if drop_constant:
        for name in list(factor_names):
            if _is_constant(table[name]):
                notes.append(f"factor {name!r} is constant over the selection: dropped")
                factor_names.remove(name)
                table = table.drop(columns=name)
                if name in categorical:
                    categorical.remove(name)
    for name in factor_names:
        missing = int(table[name].isna().sum())
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
