"""What a driver's reset draws need from its variations, worked out once and kept.

- :class:`ResetGroup` — the enabled reset-mode variations of a driver, those drawn in
  one batch (:func:`batchable`), their column plan, counters and ``apply`` callables,
  and the count of batches they drew (one add per reset for all of them).
- :class:`PlanCache` — the column plan of the last set of cfgs and stream bases.

>>> import varirec as vr
>>> from varirec.recording.episodes import EpisodeTracker
>>> mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
>>> mass.bind(EpisodeTracker(2)); mass.seed(0)
>>> [v.key for v in ResetGroup([mass]).together]
['mass']
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from varirec.sampling.batch_draw import ColumnPlan
from varirec.sampling.samplers import DesignSampler, InverseCdfSampler
from varirec.variations.counters import DrawCounters
from varirec.variations.variation import Variation, epoch

__all__ = ["PlanCache", "ResetGroup", "batchable"]


class ResetGroup:
    """What a driver's reset draws need from its variations, worked out once and kept
    until a variation or the set changes (:func:`~varirec.variations.variation.epoch`):
    the enabled reset-mode variations, those drawn in one batch, the column plan,
    their rows of the draw counters, the ``apply`` callables."""

    __slots__ = (
        "__weakref__", "_fold", "alone", "appliers", "apply_batch", "draws", "enabled", "epoch",
        "fed_cache", "plan", "rows", "samplers", "together",
    )  # fmt: skip

    def __init__(
        self,
        enabled: Sequence[Variation],
        apply_batch: Any = None,
        cache: PlanCache | None = None,
        counters: DrawCounters | None = None,
        counted: bool = True,
    ) -> None:
        self.epoch = epoch()
        self.enabled = list(enabled)
        self.together = [v for v in self.enabled if batchable(v)]
        self.alone = [v for v in self.enabled if not batchable(v)]
        self.appliers = [(j, v.apply) for j, v in enumerate(self.together) if v.apply is not None]
        unapplied = len(self.appliers) < len(self.together)
        self.apply_batch = apply_batch if unapplied else None
        self.plan = (cache or PlanCache()).get(self.together) if self.together else None
        self.rows = None if counters is None else counters.rows_of(self.together)
        if counters is not None:  # the counters now follow this group's batch draws
            counters.track(self.together, self.rows)
        self.samplers = [v.sampler for v in self.together]
        self.draws: list[int] | None = None
        """The batches this group drew: a count that each member's ``num_draws`` reads
        (one add per reset instead of one per variation; :meth:`retire` folds it in);
        None for a group of one call, which counts on each member."""
        self._fold: Any = None
        if counted:
            self.draws = [0]
            for v in self.together:
                v._batch_draws.append(self.draws)
            # A group dropped with its driver folds its count in too (retire: at once).
            self._fold = weakref.finalize(self, _fold_draws, self.draws, list(self.together))
        self.fed_cache: tuple[int, frozenset[Any], frozenset[int]] | None = None
        """``listener_edits``, the last batch's fed set and unfed variations (see _listened)."""

    def retire(self) -> None:
        """The driver replaced this group: its batches become part of each member's own
        count (the members stop reading this group's)."""
        if self._fold is not None:
            self._fold()  # once: later calls, and the collection of this group, do nothing

    def fusable(self) -> bool:
        """Whether a reset of these variations can be drawn in one compiled pass: every
        member is batched and of a continuous kind, and no sampler has a hook before
        the draw (a caller checks again when ``listener_edits`` moves)."""
        return (
            bool(self.together)
            and not self.alone
            and self.plan is not None
            and self.plan.fused_form is not None
            and not any(s._before for s in self.samplers)
        )


def _fold_draws(cell: list[int], variations: list[Variation]) -> None:
    """A retired group's count of batches (``cell``) into each member's own count."""
    for v in variations:
        v._num_draws += cell[0]
        cells = v._batch_draws
        for i, c in enumerate(cells):
            if c is cell:
                del cells[i]
                break
    cell[0] = 0


class PlanCache:
    """The column plan of the last set of cfgs and stream bases (rebuilt when a cfg is
    swapped or a variation is seeded again)."""

    __slots__ = ("bases", "cfgs", "plan")

    def __init__(self) -> None:
        self.cfgs: tuple[Any, ...] = ()
        self.bases: list[Any] = []
        self.plan: ColumnPlan | None = None

    def get(self, variations: Sequence[Variation]) -> ColumnPlan:
        cfgs = tuple(v.cfg.sampler for v in variations)
        bases = [v.stream.base for v in variations]  # type: ignore[union-attr]
        if (
            self.plan is None
            or len(cfgs) != len(self.cfgs)
            or any(a is not b for a, b in zip(cfgs, self.cfgs, strict=True))
            or bases != self.bases
        ):
            self.plan = ColumnPlan(cfgs, bases)
            self.cfgs, self.bases = cfgs, bases
        return self.plan


def batchable(v: Variation) -> bool:
    """Drawn by a built-in sampler, keyed by a stream and bound to a tracker."""
    return (
        v.stream is not None
        and v._tracker is not None
        and type(v.sampler) in (InverseCdfSampler, DesignSampler)
    )
