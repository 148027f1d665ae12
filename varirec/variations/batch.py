"""One batched draw of every enabled reset-mode variation of a reset.

:func:`draw_reset_batch` keys the draws of all variations for the resetting envs at
once (one SplitMix64 pass over k envs x D columns, then each column's inverse CDF:
:class:`~varirec.sampling.batch_draw.ColumnPlan`), numpy or torch on the env's device,
bit-identical to each variation drawing alone. The result, a :class:`ResetBatch`, goes
to a recorder in one piece; then every variation's own listeners see its draw (the
sampler template's events) and its ``apply`` runs.

>>> import numpy as np, varirec as vr
>>> from varirec.recording.episodes import EpisodeTracker
>>> mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
>>> t = EpisodeTracker(4); mass.bind(t); mass.seed(0)
>>> batch = draw_reset_batch([mass], np.array([1, 3]), t)
>>> batch.values[0].shape, batch.contexts[0].episodes.tolist()
((2,), [0, 0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from varirec.arrays import ArrayWorld, to_host
from varirec.sampling.batch_draw import ColumnPlan
from varirec.sampling.sampler_cfgs import DesignCfg
from varirec.sampling.samplers import DesignSampler, DrawContext, InverseCdfSampler
from varirec.variations.variation import EpisodeClock, Variation

__all__ = ["DrawCounters", "PlanCache", "ResetBatch", "batchable", "draw_reset_batch"]


class ResetBatch:
    """The draws of one reset: for each variation its context and values.

    Attributes:
        variations: the variations that drew, in order.
        ids: the resetting envs (host int64).
        contexts: one :class:`~varirec.sampling.samplers.DrawContext` per variation.
        values: one array per variation, shape ``(k, *shape)``: numpy, or torch on the
            env's device.
        fed: listeners that took the whole batch (a recorder): the per-variation
            events skip them.
    """

    __slots__ = ("contexts", "fed", "ids", "values", "variations", "world")

    def __init__(
        self,
        variations: list[Variation],
        ids: np.ndarray,
        contexts: list[DrawContext],
        values: list[Any],
        world: ArrayWorld,
    ) -> None:
        self.variations = variations
        self.ids = ids
        self.contexts = contexts
        self.values = values
        self.world = world
        self.fed: set[Any] = set()

    def __len__(self) -> int:
        return len(self.variations)

    def host_values(self, j: int) -> np.ndarray:
        """The values of variation ``j`` on the host (numpy)."""
        return to_host(self.values[j], self.variations[j].key)

    def notify_and_apply(self, env: Any, env_ids: Any = None) -> None:
        """Each variation's listeners (but ``fed``) see its draw; then it is applied
        (values as the env takes them: tensors on its device for a torch env)."""
        ids = self.ids if env_ids is None else env_ids
        for v, context, values in zip(self.variations, self.contexts, self.values, strict=True):
            v.sampler.notify(values, self.ids, context, self.fed)
            v.num_draws += 1
            if v.apply is not None:
                v.apply(env, ids, self.world.values(values))


class PlanCache:
    """The column plan of the last set of cfgs (rebuilt when a cfg is swapped)."""

    __slots__ = ("cfgs", "plan")

    def __init__(self) -> None:
        self.cfgs: tuple[Any, ...] = ()
        self.plan: ColumnPlan | None = None

    def get(self, variations: Sequence[Variation]) -> ColumnPlan:
        cfgs = tuple(v.cfg.sampler for v in variations)
        if (
            self.plan is None
            or len(cfgs) != len(self.cfgs)
            or any(a is not b for a, b in zip(cfgs, self.cfgs, strict=True))
        ):
            self.plan = ColumnPlan(cfgs, [v.stream.base for v in variations])
            self.cfgs = cfgs
        return self.plan


class DrawCounters:
    """The per-env draw counters (``draw_seq``) of a driver's variations, as rows of two
    ``(variations, envs)`` matrices that each variation uses as its own arrays: a reset
    checks and advances them for all its variations in one gather and one scatter."""

    __slots__ = ("count", "episode", "rows", "views")

    def __init__(self, variations: Sequence[Variation], num_envs: int) -> None:
        vs = list(variations)
        self.count = np.zeros((len(vs), num_envs), np.int64)
        self.episode = np.full((len(vs), num_envs), -1, np.int64)
        self.views: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for j, v in enumerate(vs):
            count, episode = self.count[j], self.episode[j]
            count[:] = v._draw_count
            episode[:] = v._count_episode
            v._draw_count, v._count_episode = count, episode
            self.views[v.key] = (count, episode)
        self.rows: dict[tuple[str, ...], np.ndarray] = {}

    def rows_of(self, variations: Sequence[Variation]) -> np.ndarray | None:
        """The matrix rows of ``variations``, or None if one does not use its row (it
        was bound again, or is not this driver's)."""
        for v in variations:
            view = self.views.get(v.key)
            if view is None or v._count_episode is not view[1] or v._draw_count is not view[0]:
                return None
        keys = tuple(v.key for v in variations)
        rows = self.rows.get(keys)
        if rows is None:
            order = list(self.views)
            rows = self.rows[keys] = np.array([order.index(k) for k in keys], np.int64)
        return rows


def _first_draw_contexts(
    vs: list[Variation],
    counters: DrawCounters | None,
    ids: np.ndarray,
    episodes: np.ndarray,
    rows: np.ndarray,
    in_design: bool,
    tracker: EpisodeClock,
) -> list[DrawContext] | None:
    """The contexts when every env draws each variation for the first time in its
    episode (the usual reset), with the counters advanced in one go; else None."""
    at = None if counters is None else counters.rows_of(vs)
    if at is None:
        return None
    cell = (at[:, None], ids[None, :])
    if (counters.episode[cell] == episodes).any():
        return None  # some env draws again in the same episode: count per variation
    counters.count[cell] = 1
    counters.episode[cell] = episodes
    return [
        DrawContext(
            v.key,
            v.mode,
            tracker.next_seq(),
            episodes,
            0,
            0,
            rows if in_design or isinstance(v.cfg.sampler, DesignCfg) else None,
        )
        for v in vs
    ]


def batchable(v: Variation) -> bool:
    """Drawn by a built-in sampler, keyed by a stream and bound to a tracker."""
    return (
        v.stream is not None
        and v._tracker is not None
        and type(v.sampler) in (InverseCdfSampler, DesignSampler)
    )


def draw_reset_batch(
    variations: Sequence[Variation],
    ids: np.ndarray,
    tracker: EpisodeClock,
    world: ArrayWorld | None = None,
    cache: PlanCache | None = None,
    counters: DrawCounters | None = None,
) -> ResetBatch | None:
    """Draw every variation (enabled, reset mode, :func:`batchable`) for ``ids`` at once.

    The tracker's episodes of ``ids`` must be reserved (envs that never began one begin
    episode 0 here). Listeners' ``before_sample`` hooks run before the draw; their
    after-draw events come with :meth:`ResetBatch.notify_and_apply`.
    """
    vs = list(variations)
    if not vs:
        return None
    world = world or ArrayWorld()
    tracker.begin_unbegun(ids)
    episodes = tracker.episode[ids]
    rows = tracker.sample_id[ids]
    in_design = bool((rows >= 0).any())
    contexts = _first_draw_contexts(vs, counters, ids, episodes, rows, in_design, tracker)
    if contexts is None:
        contexts = [
            v._episode_context(ids, episodes, rows, in_design, tracker.next_seq()) for v in vs
        ]
    n = len(ids)
    for v, context in zip(vs, contexts, strict=True):
        v.sampler.notify_before(n, ids, context)
    plan = (cache or PlanCache()).get(vs)
    draw_seq = [c.draw_seq for c in contexts]
    if world.is_torch:
        import torch

        dev = world.device
        keys = torch.as_tensor(ids, device=dev), torch.as_tensor(episodes, device=dev)
        values = plan.draw(*keys, draw_seq, torch, rows, dev)
    else:
        values = plan.draw(ids, episodes, draw_seq, np, rows)
    return ResetBatch(vs, ids, contexts, values, world)
