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


def _run_factors(
    draws: pa.Table, episodes: pa.Table, specs: dict[str, dict[str, Any]]
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Factor columns of one run's episodes: numeric arrays, or label codes + labels."""
    var_codes, var_names = _dictionary_codes(draws.column("variation"))
    phase_codes, phase_names = _dictionary_codes(draws.column("phase"))
    label_codes, label_names = _dictionary_codes(draws.column("label"))
    label_valid = label_codes >= 0
    component = draws.column("component").to_numpy()
    env = draws.column("env_id").to_numpy()
    seq = draws.column("seq").to_numpy()
    value = draws.column("value").to_numpy()
    d_episode = draws.column("episode").to_numpy()
    e_env = episodes.column("env_id").to_numpy()
    e_episode = episodes.column("episode").to_numpy()
    e_start = episodes.column("start_seq").to_numpy()
    interval = phase_names.index("interval") if "interval" in phase_names else -1

    group = var_codes.astype(np.int64) * 65536 + component
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    numeric: dict[str, np.ndarray] = {}
    labels: dict[str, list[str]] = {}
    for rows in np.split(order, bounds) if len(order) else []:
        key = var_names[var_codes[rows[0]]]
        name = _column_name(key, specs.get(key), int(component[rows[0]]))
        spec = specs.get(key, {})
        is_interval = spec.get("mode") == "interval" or (
            "mode" not in spec and interval >= 0 and np.all(phase_codes[rows] == interval)
        )
        if is_interval:
            ep_key = (env[rows].astype(np.int64) << _SHIFT) | d_episode[rows]
            probe = (e_env.astype(np.int64) << _SHIFT) | e_episode
            uniq, inv = np.unique(ep_key, return_inverse=True)
            means = np.bincount(inv, weights=value[rows]) / np.bincount(inv)
            pos = np.clip(np.searchsorted(uniq, probe), 0, max(len(uniq) - 1, 0))
            hit = len(uniq) > 0
            numeric[name] = np.where(hit & (uniq[pos] == probe), means[pos], np.nan)
            continue
        idx = _as_of(env[rows], seq[rows], e_env, e_start)
        got = idx >= 0
        spec_labels = spec.get("labels") or [
            label_names[c] for c in np.unique(label_codes[rows]) if c >= 0
        ]
        if label_valid[rows].any() and not _all_numeric(spec_labels):
            codes = np.full(len(e_env), -1, dtype=np.int64)
            codes[got] = np.where(label_valid[rows][idx[got]], label_codes[rows][idx[got]], -1)
            numeric[name] = codes
            labels[name] = label_names
        else:
            col = np.full(len(e_env), np.nan)
            col[got] = value[rows][idx[got]]
            numeric[name] = col
    return numeric, labels


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
        draws = ds.draws(
            run_id,
            columns=[
                "seq",
                "variation",
                "component",
                "env_id",
                "episode",
                "phase",
                "value",
                "label",
            ],
        )
        numeric, labels = _run_factors(draws, episodes, specs)
        frame = episodes.drop_columns(["run_id"]).to_pandas()
        frame.insert(0, "run_id", run_id)
        outcome_names += [
            c for c in frame.columns if c not in _NOT_OUTCOMES and c not in outcome_names
        ]
        factor_names += [n for n in numeric if n not in factor_names]
        for name, col in numeric.items():
            if name in labels:
                names = np.asarray(labels[name] + [None], dtype=object)
                frame[name] = names[np.where(col >= 0, col, len(labels[name]))]
                label_sets.setdefault(name, [])
                for lab in labels[name]:
                    if lab not in label_sets[name]:
                        label_sets[name].append(lab)
            else:
                frame[name] = col
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
            if table[name].nunique(dropna=True) <= 1:
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
