"""Replay a recorded episode: the values in force, its reset seed, its interval draws.

:func:`replay_episode` reads one episode of a run back from a dataset and returns an
:class:`EpisodeReplay`: the value of every variation in force during the episode by
the as-of rule (the last draw for that env, or for all envs, with
``seq <= start_seq``), the interval-mode draws made during it (with their steps),
the reset seed and the recorded outcome. :meth:`EpisodeReplay.apply` sets the values
on an env through the variations' ``apply`` callables, without drawing or recording.
For Gymnasium, :func:`varirec.integrations.gym.reset_to_episode` and
:class:`varirec.integrations.gym.ReplayWrapper`
also reset with the seed.

Reading needs only pyarrow (no pandas).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow.compute as pc

from varirec.errors import UnknownNameError
from varirec.storage import Dataset, open_dataset
from varirec.variations.variation import Variation
from varirec.variations.variation_set import VariationSet

__all__ = ["EpisodeReplay", "IntervalDraw", "replay_episode"]

_DRAW_COLUMNS = ["seq", "variation", "component", "env_id", "episode", "step", "phase"]
_DRAW_COLUMNS += ["value", "label"]
_STRINGS = ("variation", "phase", "label")
_OUTCOMES = ("length", "return", "success", "terminated", "truncated")


@dataclass(frozen=True)
class IntervalDraw:
    """An interval-mode draw made during the episode, after ``step`` steps."""

    step: int
    key: str
    value: Any


@dataclass(frozen=True)
class EpisodeReplay:
    """Everything needed to put an env back into one recorded episode.

    Attributes:
        run_id, env_id, episode: which episode.
        seed: its reset seed (None when the run did not know it).
        values: variation key -> value in force at the episode's start: a float (or an
            array for vector variations), or the label of a non-numeric categorical one.
            Variations that had never drawn for the env by then are absent.
        interval: the interval-mode draws made during the episode, by step.
        outcome: the recorded ``length``, ``return``, ``success``, ``terminated``,
            ``truncated``.
        sample_id: the design row (None outside a design).
    """

    run_id: str
    env_id: int
    episode: int
    seed: int | None
    values: dict[str, Any]
    interval: tuple[IntervalDraw, ...] = ()
    outcome: dict[str, Any] = field(default_factory=dict)
    sample_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of the fields (arrays as lists)."""
        out = asdict(self)
        out["values"] = {k: _plain(v) for k, v in self.values.items()}
        out["interval"] = [{**asdict(d), "value": _plain(d.value)} for d in self.interval]
        return out

    def apply(self, env: Any, variations: VariationSet | Mapping[str, Variation]) -> None:
        """Set ``values`` on ``env`` through each variation's ``apply`` (no draw, no record).

        Build-mode values are applied with ``env_ids=None``, the others with
        ``env_ids=[env_id]``, each as an array of shape ``(1, ...)``.

        >>> import varirec as vr
        >>> seen = {}
        >>> mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)),
        ...                     lambda env, ids, values: seen.update(mass=float(values[0])))
        >>> EpisodeReplay("r", 0, 3, seed=7, values={"mass": 1.5}).apply(None, {"mass": mass})
        >>> seen
        {'mass': 1.5}
        """
        applied = []
        for key, value in self.values.items():
            v = _variation(variations, key)
            if v.apply is not None:
                ids = None if v.mode == "build" else np.array([self.env_id])
                v.apply(env, ids, _as_values(v, value))
                applied.append(v.apply)
        _after_writes(env, applied)

    def apply_interval(
        self, env: Any, variations: VariationSet | Mapping[str, Variation], step: int
    ) -> None:
        """Apply the interval draws made after ``step`` steps of the episode."""
        applied = []
        for d in self.interval:
            if d.step == step:
                v = _variation(variations, d.key)
                if v.apply is not None:
                    v.apply(env, np.array([self.env_id]), _as_values(v, d.value))
                    applied.append(v.apply)
        _after_writes(env, applied)


def _after_writes(env: Any, applied: list[Any]) -> None:
    """What the writers of a simulator's model do once after their writes (an mjlab
    model field recomputes the model's derived constants, as mjlab's event manager does
    after its events): ``after_writes(env, writers)`` of each kind of ``apply`` that has
    one."""
    for kind in dict.fromkeys(type(a) for a in applied):
        after = getattr(kind, "after_writes", None)
        if after is not None:
            after(env, [a for a in applied if type(a) is kind])


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def _variation(variations: VariationSet | Mapping[str, Variation], key: str) -> Variation:
    try:
        return variations[key]
    except KeyError:
        raise UnknownNameError(
            f"the episode has a value for variation {key!r}, which `variations` lacks "
            f"(it has {list(variations)}); pass the variations the run recorded"
        ) from None


def _as_values(v: Variation, value: Any) -> np.ndarray:
    """One recorded value as the ``(1, ...)`` array the sampler would have drawn."""
    cfg = v.cfg.sampler
    if cfg.categorical:
        labels = list(cfg.labels)
        cats = list(cfg.categories)
        idx = labels.index(value) if isinstance(value, str) else cats.index(value)
        return np.asarray([cats[idx]])
    return np.asarray(value, dtype=float).reshape(1, *cfg.shape)


def _value(rows: dict[str, np.ndarray], idx: np.ndarray) -> Any:
    """The value of one draw from its component rows (label if non-numeric)."""
    order = idx[np.argsort(rows["component"][idx])]
    labels = rows["label"][order]
    if labels[0] is not None:
        try:
            float(labels[0])
        except ValueError:
            return str(labels[0])
    values = rows["value"][order].astype(float)
    return float(values[0]) if len(values) == 1 and rows["component"][order[0]] == 0 else values


def _as_of(rows: dict[str, np.ndarray], of_key: np.ndarray, start_seq: int) -> np.ndarray:
    """Rows (one per component) of the draw in force at ``start_seq``: the env's last
    draw with ``seq <= start_seq``, unless a draw for all envs came later."""
    before = np.flatnonzero(of_key & (rows["seq"] <= start_seq))
    seq = rows["seq"][before]
    mine = rows["env_id"][before] >= 0
    best_mine = seq[mine].max() if mine.any() else -1
    best_all = seq[~mine].max() if (~mine).any() else -1
    if best_all > best_mine:
        return before[~mine & (seq == best_all)]
    return before[mine & (seq == best_mine)]


def replay_episode(
    dataset: str | os.PathLike[str] | Dataset, run_id: str, env_id: int, episode: int
) -> EpisodeReplay:
    """Read one episode back for replay (see the module docstring).

    Raises:
        UnknownNameError: no such run, or no such finished episode of that env.

    >>> import tempfile, numpy as np, varirec as vr
    >>> root = tempfile.mkdtemp()
    >>> mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    >>> with vr.RecorderManager(1, variations=[mass], output=root, run_id="r") as m:
    ...     m.reset(None, [0]); m.record_step(reward=np.ones(1)); m.record_pre_reset([0])
    >>> r = replay_episode(root, "r", env_id=0, episode=0)
    >>> 1 <= r.values["mass"] <= 2, r.outcome["length"], r.outcome["return"]
    (True, 1, 1.0)
    """
    data = dataset if isinstance(dataset, Dataset) else open_dataset(dataset)
    for name, value in (("env_id", env_id), ("episode", episode)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(
                f"`{name}` must be an int, got {value!r} ({type(value).__name__}); pass the "
                f"{name} as recorded, e.g. {name}=0"
            )
    env_id, episode = int(env_id), int(episode)
    ep = data.episodes(run_id, filter=(pc.field("env_id") == env_id))
    row = ep.filter(pc.equal(ep.column("episode"), episode)).to_pylist()
    if not row:
        have = sorted(ep.column("episode").to_pylist())
        span = f"{have[0]}..{have[-1]}" if have else "none"
        raise UnknownNameError(
            f"run {run_id!r} has no finished episode {episode} of env {env_id} "
            f"(finished episodes of that env: {span}); check env_id and episode"
        )
    rec = row[0]
    start = rec["start_seq"]
    mine = (pc.field("env_id") == env_id) | (pc.field("env_id") == -1)
    table = data.draws(
        run_id, columns=_DRAW_COLUMNS, filter=mine & (pc.field("seq") <= rec["end_seq"])
    )
    rows = {
        c: np.asarray(table.column(c).to_pylist(), dtype=object)
        if c in _STRINGS
        else table.column(c).to_numpy()
        for c in _DRAW_COLUMNS
    }
    values: dict[str, Any] = {}
    for key in dict.fromkeys(rows["variation"].tolist()):
        in_force = _as_of(rows, rows["variation"] == key, start)
        if in_force.size:
            values[key] = _value(rows, in_force)
    during = (rows["phase"] == "interval") & (rows["env_id"] == env_id)
    during &= (rows["episode"] == episode) & (rows["seq"] > start)
    interval = []
    for seq in np.unique(rows["seq"][during]):
        idx = np.flatnonzero(during & (rows["seq"] == seq))
        key = str(rows["variation"][idx[0]])
        interval.append(IntervalDraw(int(rows["step"][idx[0]]), key, _value(rows, idx)))
    return EpisodeReplay(
        run_id=run_id,
        env_id=env_id,
        episode=episode,
        seed=rec.get("seed"),
        values=values,
        interval=tuple(interval),
        outcome={k: rec.get(k) for k in _OUTCOMES},
        sample_id=rec.get("sample_id"),
    )
