"""Continue a study whose process died, into the same run: :func:`resume_point`.

What a resumed process needs from the run, read once, vectorized:

- the ``(row, replicate)`` pairs of the design that already have a finished episode
  (from the episodes' ``sample_id`` and reset ``seed``; see
  :meth:`~varirec.studies.design.DesignSchedule.finished_pairs`), to hand out only the
  others;
- per env, the highest episode index any writer of the run used (finished or not, from
  ``episodes`` and ``draws``), and the highest ``seq``: the resumed writer's tracker
  starts after both, so its episodes never share an ``(env_id, episode)`` with the
  dead writer's and its events come after theirs in ``seq`` order (the as-of join
  stays right).

The values an episode gets depend on its design row and replicate (the design's
values, the reset seed), not on which process ran it: a resumed design study holds the
same values per ``(row, replicate)`` as an uninterrupted one.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.compute as pc

from varirec.errors import DatasetError
from varirec.recording.episodes import EpisodeTracker
from varirec.storage import Dataset, DatasetWarning
from varirec.storage.run_files import to_json
from varirec.studies.design import DesignSchedule

__all__ = ["ResumePoint", "check_same_variations", "resume_point"]


@dataclass(frozen=True)
class ResumePoint:
    """Where a run stands, for a process that continues it."""

    run_id: str
    """The run."""
    episodes_finished: int
    """Episodes the run holds (readable), every writer together."""
    pairs_finished: np.ndarray
    """``(row, replicate)`` pairs with a finished episode, shape ``(k, 2)`` (empty
    without a schedule)."""
    last_episode: np.ndarray
    """Per env id (``0..max``), the highest episode index used; -1 where none."""
    last_seq: int
    """The highest ``seq`` of any event of the run (0 if none)."""

    def tracker(self, num_envs: int) -> EpisodeTracker:
        """An :class:`EpisodeTracker` for ``num_envs`` envs that continues after the run:
        each env's next episode index and the next ``seq`` are unused in it."""
        tracker = EpisodeTracker(num_envs)
        n = min(num_envs, len(self.last_episode))
        tracker.episode[:n] = self.last_episode[:n]
        tracker.seq = int(self.last_seq)
        return tracker


def _max_by_env(env: np.ndarray, episode: np.ndarray, size: int) -> np.ndarray:
    out = np.full(size, -1, np.int64)
    keep = env >= 0
    np.maximum.at(out, env[keep], episode[keep])
    return out


def resume_point(
    dataset: Dataset, run_id: str, schedule: DesignSchedule | None = None
) -> ResumePoint:
    """Read run ``run_id`` of ``dataset``: what finished, and where its counters stand.

    Args:
        dataset: the open dataset.
        run_id: the run to continue.
        schedule: the study's schedule (built as for the first process, same seed);
            its finished pairs are found, not skipped (call ``schedule.skip``).

    Raises:
        UnknownNameError: no such run.
        DatasetError: the run's design differs from ``schedule``'s (another study).

    Example:
        >>> import tempfile, numpy as np, varirec as vr
        >>> root = tempfile.mkdtemp()
        >>> v = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
        >>> with vr.RecorderManager(2, variations=[v], output=root, run_id="r1") as m:
        ...     for _ in range(3):
        ...         m.reset(None, np.arange(2))
        >>> point = resume_point(vr.open_dataset(root), "r1")
        >>> point.episodes_finished, point.last_episode.tolist(), point.tracker(2).episode
        (4, [2, 2], array([2, 2]))
    """
    run = dataset.run(run_id)
    if schedule is not None:
        recorded = dict(run.metadata.get("design") or {})
        mine = schedule.design.to_dict()
        for d in (recorded, mine):
            d["factors"] = [f.get("name") for f in d.get("factors", []) if isinstance(f, dict)]
        for key in ("method", "base_size", "num_rows", "seed", "second_order", "factors"):
            if key in recorded and key in mine and recorded[key] != mine[key]:
                raise DatasetError(
                    f"run {run_id!r} was recorded with another design ({key} differs: "
                    f"{str(recorded[key])[:80]} vs {str(mine[key])[:80]}); resume it with the "
                    "study's own method, n, seed and variations"
                )
    columns = ["env_id", "episode", "sample_id", "seed", "end_seq"]
    episodes = dataset.episodes(run_id, columns=columns)
    damage = dataset.damage_note("episodes", run_id)
    if damage is not None:
        warnings.warn(
            DatasetWarning(
                f"resuming run {run_id!r} past damaged episodes: the episodes the damaged "
                "part(s) held count as not run, and are recorded again; do not put those "
                "parts back afterwards (move them out of the run): the run would then hold "
                f"those episodes twice. {damage.split('. The reader')[0]}"
            ),
            stacklevel=2,
        )
    draws = dataset.draws(run_id, columns=["env_id", "episode", "seq"])
    e_env = episodes.column("env_id").to_numpy().astype(np.int64)
    d_env = draws.column("env_id").to_numpy().astype(np.int64)
    size = int(max(e_env.max(initial=-1), d_env.max(initial=-1))) + 1
    last = np.maximum(
        _max_by_env(e_env, episodes.column("episode").to_numpy().astype(np.int64), size),
        _max_by_env(d_env, draws.column("episode").to_numpy().astype(np.int64), size),
    )
    highest = [pc.max(draws.column("seq")).as_py(), pc.max(episodes.column("end_seq")).as_py()]
    last_seq = max((s for s in highest if s is not None), default=0)
    pairs = np.zeros((0, 2), np.int64)
    if schedule is not None:
        sid = pc.fill_null(episodes.column("sample_id"), -1).to_numpy()
        seed = pc.fill_null(episodes.column("seed"), -1).to_numpy()
        pairs = schedule.finished_pairs(sid, seed)
    return ResumePoint(run_id, episodes.num_rows, pairs, last, int(last_seq))


_SAME = ("mode", "sampler", "shape", "components", "categorical", "labels")
"""What a variation's spec must keep for a run to be resumed with it (``enabled`` may
change: a variation enabled later is marked so in ``run.json``)."""


def check_same_variations(dataset: Dataset, run_id: str, specs: Iterable[dict[str, Any]]) -> None:
    """Refuse to resume run ``run_id`` with variations (``specs``: their
    :meth:`~varirec.variations.variation.Variation.spec`) other than those it began with:
    the resumed episodes would be drawn from other distributions than ``run.json`` names,
    and a design's unit rows would map to other values.

    Raises:
        DatasetError: a variation is missing, added, or its mode or sampler differs.

    Example:
        >>> import tempfile, numpy as np, varirec as vr
        >>> root = tempfile.mkdtemp()
        >>> cfg = lambda hi: vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=hi))
        >>> with vr.RecorderManager(2, variations=[vr.Variation("mass", cfg(2))],
        ...                         output=root, run_id="r1") as m:
        ...     m.reset(None, np.arange(2))
        >>> same, other = ([vr.Variation("mass", cfg(hi)).spec()] for hi in (2, 3))
        >>> check_same_variations(vr.open_dataset(root), "r1", same)
        >>> try:
        ...     check_same_variations(vr.open_dataset(root), "r1", other)
        ... except vr.DatasetError as e:
        ...     print(str(e).split(":")[0])
        run 'r1' began with other variations
    """
    recorded = dataset.run(run_id).metadata.get("variations")
    if not isinstance(recorded, list):  # a run made by a bare RunWriter: nothing to compare
        return
    # As run.json holds them (tuples become lists, floats round-trip exactly).
    mine = json.loads(to_json({"specs": list(specs)}, "variations"))["specs"]
    then = {s.get("key"): s for s in recorded if isinstance(s, dict)}
    now = {s["key"]: s for s in mine}
    problems = [f"{k!r} is not among this call's variations" for k in then if k not in now]
    problems += [f"{k!r} was not among the run's" for k in now if k not in then]
    for key in sorted(then.keys() & now.keys()):
        for field in _SAME:
            was, is_ = _drawn_from(then[key].get(field)), _drawn_from(now[key].get(field))
            if was != is_:
                problems.append(f"{key!r} had {field} {was!r:.120}, this call has {is_!r:.120}")
    if problems:
        raise DatasetError(
            f"run {run_id!r} began with other variations: {'; '.join(problems[:5])}; "
            "resume it with the variations of its first call (their keys, modes and "
            "distributions), or start a new run; nothing was written"
        )


def _drawn_from(sampler: Any) -> Any:
    """A design sampler's base distribution (its rows are checked with the design);
    anything else as it is."""
    if isinstance(sampler, dict) and sampler.get("kind") == "design":
        return sampler.get("base")
    return sampler
