"""The as-of join of draws to episodes, for one run, vectorized.

The value a variation had during an episode is the last draw of that variation
component for that env, or for all envs (``env_id = -1``), with ``seq <= start_seq``.
:func:`run_factors` computes it for every factor of a run at once: episodes get dense
positions (:class:`_Dense`), draws are scattered to them, a forward fill covers
resets that skipped a variation, and a search over ``(env, seq)`` covers the rare
cases the scatter cannot (draws made mid-episode, or both per-env and all-env draws
of one variation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DRAW_COLUMNS",
    "Codes",
    "all_numeric",
    "as_of",
    "column_name",
    "dictionary_codes",
    "fill_and_pick",
    "has_nan",
    "keep_text_labels",
    "run_factors",
    "search_pick",
]

DRAW_COLUMNS = ("seq", "variation", "component", "env_id", "episode", "phase", "value", "label")
"""The draw columns the join reads."""
_SHIFT = np.int64(40)  # seq < 2**40 events per run; env ids < 2**23
_FEW = 8  # build draws a column takes a pass over the episodes each for, not a search


def column_name(key: str, spec: dict[str, Any] | None, component: int, vector: bool = False) -> str:
    """The factor column name of ``component`` of variation ``key`` (``key[x]``, ``key[0]``;
    ``vector``: the draws hold other components of it, where no spec tells its shape).

    >>> column_name("mass", None, 0), column_name("offset", None, 0, vector=True)
    ('mass', 'offset[0]')
    """
    comps = (spec or {}).get("components") or []
    if not comps:
        scalar = component == 0 and not (spec or {}).get("shape") and not vector
        return key if scalar else f"{key}[{component}]"
    return f"{key}[{comps[component]}]"


def as_of(d_env: np.ndarray, d_seq: np.ndarray, e_env: np.ndarray, e_seq: np.ndarray) -> np.ndarray:
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
    if not env_draws.any() and len(d_env) <= _FEW:  # a few build draws: a pass each
        for row in np.argsort(d_seq, kind="stable"):  # the latest (then last) wins
            np.copyto(found, row, where=e_seq >= d_seq[row])
    elif (~env_draws).any():  # draws for all envs (build mode)
        where = np.flatnonzero(~env_draws)
        order = np.argsort(d_seq[where], kind="stable")
        seqs = d_seq[where][order]
        pos = np.searchsorted(seqs, e_seq, side="right") - 1
        ok = (pos >= 0) & (seqs[np.maximum(pos, 0)] > best_seq)
        found[ok] = where[order[pos[ok]]]
    return found


def search_pick(
    d_env: np.ndarray,
    d_seq: np.ndarray,
    d_value: np.ndarray,
    d_label: np.ndarray | None,
    e_env: np.ndarray,
    e_seq: np.ndarray,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Each episode's :func:`as_of` draw value (NaN where none) and label code (-1 where
    none; None without ``d_label``). At least one draw."""
    idx = as_of(d_env, d_seq, e_env, e_seq)
    got = idx >= 0
    safe = np.maximum(idx, 0)
    value = np.where(got, d_value[safe], np.nan)
    return value, None if d_label is None else np.where(got, d_label[safe], -1)


def all_numeric(labels: Sequence[str]) -> bool:
    """Labels that are numbers (numeric choices, integers, booleans) stay numeric."""
    try:
        [float(x) for x in labels if x not in ("True", "False")]
    except ValueError:
        return False
    return True


def dictionary_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Indices and dictionary of a dictionary column (chunks unified)."""
    column = column.unify_dictionaries()
    if column.num_chunks == 0:
        return np.zeros(0, np.int32), []
    dictionary = column.chunk(0).dictionary.to_pylist()
    indices = pa.chunked_array([c.indices for c in column.chunks], type=column.type.index_type)
    indices = pc.fill_null(indices, -1)
    return indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False), dictionary


class Codes:
    """Strings seen in batch dictionaries, numbered in order of first appearance (as
    ``ChunkedArray.unify_dictionaries`` numbers them)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.code: dict[str, int] = {}

    def lut(self, dictionary: pa.Array) -> np.ndarray:
        """Global code of each entry of a batch dictionary."""
        out = np.empty(len(dictionary), np.int64)
        for i, name in enumerate(dictionary.to_pylist()):
            if name not in self.code:
                self.code[name] = len(self.names)
                self.names.append(name)
            out[i] = self.code[name]
        return out


class _Dense:
    """Episodes of one run as dense positions, so draws scatter to them without a sort.

    Episode-major (``pos = episode * num_envs + env``) when the envs ran similar numbers
    of episodes: draws of one reset batch then land side by side in memory. Env-major
    (``pos = offset[env] + episode``) otherwise. Sparse (a search over the sorted
    ``(env, episode)`` keys of the finished episodes) where episode indices leave large
    gaps, as a study fanned out on Ray does (each chunk has its own range of indices):
    the layout never outgrows the data.
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
        self.keys: np.ndarray | None = None
        if self.size > 4 * len(e_env) + self.num_envs:
            self.keys = np.unique((e_env.astype(np.int64) << _SHIFT) | e_episode)
            self.size = len(self.keys)

    def pos(self, env: np.ndarray, episode: np.ndarray) -> np.ndarray:
        """Positions of (env, episode) pairs that belong to the layout; -1 elsewhere.

        Episode-major positions past an env's last finished episode are harmless (no
        finished episode reads them: the forward fill only looks back), so only the
        grid bounds are checked there.
        """
        if self.keys is not None:
            inside = (env >= 0) & (env < self.num_envs) & (episode >= 0)
            key = (np.where(inside, env, 0).astype(np.int64) << _SHIFT) | episode
            pos = np.minimum(np.searchsorted(self.keys, key), self.size - 1)
            inside &= self.keys[pos] == key
            return np.where(inside, pos, -1)
        if self.episode_major:
            inside = (env >= 0) & (env < self.num_envs) & (episode >= 0)
            inside &= episode < self.max_episodes
            pos = episode * self.num_envs
            pos += env
            return pos if inside.all() else np.where(inside, pos, -1)
        inside = (env >= 0) & (env < self.num_envs) & (episode >= 0)
        safe_env = np.where(inside, env, 0)
        inside &= episode < self.count[safe_env]
        return np.where(inside, self.offset[safe_env] + episode, -1)

    def forward_fill(self, has: np.ndarray) -> np.ndarray:
        """For a ``(columns, size)`` mask of cells with a draw, each cell's source cell:
        itself, or the latest earlier episode of the same env that has a draw (or the
        env's first episode, which then has none either)."""
        cols = has.shape[0]
        if self.keys is not None:
            env = self.keys >> _SHIFT
            block_start = np.r_[True, env[1:] != env[:-1]]
            ramp = np.arange(self.size)[None, :]
            return np.maximum.accumulate(np.where(has | block_start[None, :], ramp, 0), axis=1)
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


def fill_and_pick(
    dense: _Dense,
    value: np.ndarray,
    label: np.ndarray | None,
    pos_e: np.ndarray | slice,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One column's value per episode, from its ``dense.size`` scatter, and its label
    codes per episode (None without ``label``).

    ``pos_e``: the episodes' dense positions, or a slice where they are ``0..n-1`` (then,
    without ``out``, the values are a view of ``value``). Episodes whose reset skipped
    the variation take the env's previous draw (a forward fill, only for a column with
    such gaps).
    """
    picked = _pick(value, pos_e, out)
    if has_nan(picked):
        src = dense.forward_fill(~np.isnan(value)[None, :])[0]
        picked = _pick(value[src], pos_e, out)
        if label is not None:
            label = label[src]
    return picked, None if label is None else _pick(label, pos_e, None)


def has_nan(values: np.ndarray) -> bool:
    """Whether float ``values`` hold a NaN. A sum is NaN wherever a NaN is (or +inf meets
    -inf, checked then), and needs no mask of every value (1 M episodes: 1 MB)."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, an overflowing sum
        total = values.sum()
    return bool(np.isnan(total) and np.isnan(values).any())


def _pick(a: np.ndarray, where: np.ndarray | slice, out: np.ndarray | None) -> np.ndarray:
    if isinstance(where, slice):
        if out is None:
            return a[where]
        out[:] = a[where]
        return out
    return np.take(a, where, out=out, mode="clip")  # clip: no buffered copy; all valid


def keep_text_labels(
    label_out: dict[str, tuple[np.ndarray, list[str]]], specs: dict[str, dict[str, Any]]
) -> dict[str, tuple[np.ndarray, list[str]]]:
    """The factors that keep their labels: those whose labels are not numbers."""
    kept = {}
    for name, (codes, labs) in label_out.items():
        spec_labels = specs.get(name.split("[")[0], {}).get("labels") or []
        used = [labs[x] for x in np.unique(codes) if x >= 0]
        if used and not all_numeric(spec_labels or used):
            kept[name] = (codes, labs)
    return kept


def _numpy(draws: pa.Table, name: str) -> np.ndarray:
    column = draws.column(name)
    return column.to_numpy() if column.num_chunks != 1 else column.chunk(0).to_numpy()


def run_factors(
    draws: pa.Table,
    episodes: pa.Table,
    specs: dict[str, dict[str, Any]],
    skipped: list[str] | None = None,
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
    (env, seq).

    Interval-mode variations give no column: they are drawn mid-episode, and how many
    draws an episode gets depends on how long it runs, so on its outcome. A factor must
    be fixed before the outcome could influence it, so they are episode noise (their
    draws stay in the ``draws`` table). Their column names are appended to ``skipped``.
    """
    var_codes, var_names = dictionary_codes(draws.column("variation"))
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
        phase_codes, phase_names = dictionary_codes(draws.column("phase"))
        interval = phase_names.index("interval") if "interval" in phase_names else -1
        all_interval = np.bincount(col, weights=phase_codes == interval, minlength=len(present))
        per_col = np.bincount(col, minlength=len(present))
        modes = [
            m or ("interval" if all_interval[c] == per_col[c] > 0 else "reset")
            for c, m in enumerate(modes)
        ]
    vectors = {int(c) // width for c in present if c % width}
    names = [
        column_name(
            var_names[c // width],
            specs.get(var_names[c // width]),
            int(c % width),
            vector=int(c) // width in vectors,
        )
        for c in present
    ]
    is_interval = np.array([m == "interval" for m in modes], bool)
    has_labels = draws.column("label").null_count < draws.num_rows
    label_codes = dictionary_codes(draws.column("label"))[0] if has_labels else None
    label_names = dictionary_codes(draws.column("label"))[1] if has_labels else []

    dense = _Dense(e_env, e_episode)
    size = dense.size
    pos_e = dense.pos(e_env, e_episode)
    pos_d = dense.pos(env, d_episode)
    out = np.full((len(names), len(e_env)), np.nan)
    label_out: dict[str, tuple[np.ndarray, list[str]]] = {}

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
        for c in np.flatnonzero(fast):
            own_label = None if dense_label is None else dense_label[c]
            _, lab = fill_and_pick(dense, dense_value[c], own_label, pos_e, out[c])
            if lab is not None:
                label_out[names[c]] = (lab, label_names)

    # Build-mode columns and the rare ones: a search over (env, seq) per column.
    for c in np.flatnonzero((n_build > 0) & ~fast & ~is_interval | slow):
        rc = np.flatnonzero(col == c)
        lab_rc = None if label_codes is None else label_codes[rc]
        out[c], lab = search_pick(
            env[rc].astype(np.int64), seq[rc], value[rc], lab_rc, e_env, e_start
        )
        if lab is not None:
            label_out[names[c]] = (lab, label_names)

    label_out = keep_text_labels(label_out, specs)
    if is_interval.any():
        if skipped is not None:
            skipped += [n for n, i in zip(names, is_interval, strict=True) if i]
        names = [n for n, i in zip(names, is_interval, strict=True) if not i]
        out = out[~is_interval]
    return names, out, label_out
