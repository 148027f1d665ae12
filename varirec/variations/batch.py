"""One batched draw of every enabled reset-mode variation of a reset.

:func:`draw_reset_batch` keys the draws of all variations for the resetting envs at
once (one SplitMix64 pass over k envs x D columns, then each column's inverse CDF:
:class:`~varirec.sampling.batch_draw.ColumnPlan`), numpy or torch on the env's device,
bit-identical to each variation drawing alone (a GPU env's reset of up to
:data:`HOST_DRAW_MAX` values is drawn on the host and sent in one copy: see there).
The result, a :class:`ResetBatch`, goes to a recorder in one piece; then every
variation's own listeners see its draw (the sampler template's events) and its
``apply`` runs.

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

from varirec import arrays
from varirec.arrays import ArrayWorld, device_async, to_host
from varirec.sampling import samplers as samplers_module
from varirec.sampling.samplers import DrawContext
from varirec.variations.counters import DrawCounters, first_draws
from varirec.variations.reset_group import PlanCache, ResetGroup
from varirec.variations.variation import EpisodeClock, Variation

__all__ = [
    "HOST_DRAW_MAX",
    "BatchKeys",
    "ResetBatch",
    "column_views",
    "draw_reset_batch",
    "draws_on_host",
]


class BatchKeys:
    """What a reset batch answers from its variations alone (a
    :class:`ResetBatch`, and a prefetched GPU reset's batch)."""

    __slots__ = ()
    variations: Sequence[Variation]

    def __len__(self) -> int:
        return len(self.variations)

    @property
    def keys(self) -> list[str]:
        """The variations' keys, in order."""
        return [v.key for v in self.variations]

    def _index(self, key: str) -> int:
        for j, v in enumerate(self.variations):
            if v.key == key:
                return j
        raise KeyError(f"no variation {key!r} in this reset batch; it has {self.keys}")


def column_views(plan: Any, m: Any) -> list[Any]:
    """Each variation's columns of the ``(k, width)`` tensor ``m`` of ``plan``'s draw: a
    scalar variation's a strided view (as numpy's column is), a vector variation's a
    contiguous block (so that ``.view()`` works on it)."""
    return [
        m[:, s:e].contiguous() if vector else m[:, s]
        for (s, e), vector in zip(plan._bounds, plan._vector, strict=True)
    ]


class ResetBatch(BatchKeys):
    """The draws of one reset: for each variation its context and values.

    Attributes:
        variations: the variations that drew, in order.
        ids: the resetting envs (host int64).
        contexts: one :class:`~varirec.sampling.samplers.DrawContext` per variation
            (built when first read).
        values: one array per variation, shape ``(k, *shape)``: numpy, or torch on the
            env's device.
        host: the same values as numpy arrays where they were drawn on the host
            (numpy, or a torch env on the CPU), else None.
        fed: listeners that took the whole batch (a recorder): the per-variation
            events skip them (a frozenset: a recorder hands in the same one each reset,
            told apart from the last in one compare).
        time: the reset's wall-clock time in microseconds where it was taken before
            the batch was made (a prefetched GPU reset, keyed at the next step); None: now.
    """

    __slots__ = (
        "_contexts", "_env_matrix", "_host", "_lazy", "_matrix", "_parts", "_values", "fed",
        "group", "ids", "time", "variations", "world",
    )  # fmt: skip

    def __init__(
        self,
        variations: list[Variation],
        ids: np.ndarray,
        contexts: list[DrawContext] | None,
        values: list[Any] | None,
        world: ArrayWorld,
        *,
        host: list[np.ndarray] | None = None,
        matrix: Any = None,
        parts: tuple[Any, ...] | None = None,
        lazy: tuple[int, np.ndarray, np.ndarray, bool] | None = None,
        group: ResetGroup | None = None,
    ) -> None:
        self.variations = variations
        self.ids = ids
        self._contexts = contexts
        self._values = values
        self._host = host
        self.world = world
        self._matrix = matrix
        self._env_matrix: Any = None  # the matrix as the env takes it, made once
        self._parts = parts  # (plan, uniforms, columns, xp, design rows, device): split on demand
        self._lazy = lazy  # (first seq, episodes, design rows, in a design) of first draws
        self.group = group
        self.fed: frozenset[Any] = frozenset()
        self.time: int | None = None  # the reset's time (us) where it was taken earlier

    @property
    def contexts(self) -> list[DrawContext]:
        if self._contexts is None:
            seq0, episodes, rows, in_design = self._lazy  # type: ignore[misc]
            self._contexts = [
                v._context(seq0 + j, episodes, 0, 0, rows, in_design)
                for j, v in enumerate(self.variations)
            ]
        return self._contexts

    @property
    def host(self) -> list[np.ndarray] | None:
        """The values as numpy arrays where they were drawn on the host (numpy, or a
        torch env on the CPU), else None."""
        if self._host is None and self._parts is not None and self._parts[3] is np:
            plan, u, out, xp, rows, dev = self._parts
            self._host = plan.split(u, out, xp, rows, dev)
        return self._host

    @property
    def values(self) -> list[Any]:
        if self._values is None:
            host = self.host
            if host is None:  # drawn on a device
                plan, u, out, xp, rows, dev = self._parts  # type: ignore[misc]
                self._values = plan.split(u, out, xp, rows, dev)
            elif self.world.device is None:
                self._values = host
            elif arrays.off_host(self.world.device):  # a GPU env's reset drawn on the host
                send = self.world.send
                self._values = [x if x.dtype.kind in "USO" else send(x) for x in host]
            else:  # a torch env on the CPU: the host values, not copied
                torch = _torch()
                self._values = [x if x.dtype.kind in "USO" else torch.from_numpy(x) for x in host]
        return self._values

    def value(self, key: str) -> Any:
        """The values of variation ``key`` as the env takes them (see ``matrix``)."""
        return self.world.values(self.values[self._index(key)])

    @property
    def matrix(self) -> Any:
        """Every variation's values side by side, shape ``(k, C)`` (a ``w``-component
        variation takes ``w`` adjacent columns, in the order of ``variations``), as the
        env takes them: numpy float64, or a torch tensor on the env's device (float32
        unless the manager's ``dtype`` says otherwise). Text categories have no column:
        they raise TypeError (use :meth:`value`)."""
        m = self._matrix
        if m is None:
            cols = []
            for v, x in zip(self.variations, self.host or self.values, strict=True):
                x = to_host(x, v.key)
                if x.dtype.kind in "USO":
                    raise TypeError(
                        f"variation {v.key!r} draws text categories, which have no column in "
                        f"`batch.matrix`; read them with batch.value({v.key!r})"
                    )
                cols.append(x.reshape(len(self.ids), -1).astype(np.float64, copy=False))
            m = np.concatenate(cols, axis=1) if cols else np.zeros((len(self.ids), 0))
            self._matrix = m
        if self.world.device is None:
            return m
        if self._env_matrix is None:
            self._env_matrix = _to_env(self.world, m)
        return self._env_matrix

    def _sources(self, gpu: bool) -> list[Any]:
        """The values to convert for the env: on a GPU env whose reset was drawn on the
        host, the host's (one copy each, in the env's dtype); else :attr:`values`."""
        host = self.host if gpu else None
        return host if host is not None else self.values

    def _matrix_views(self) -> list[Any] | None:
        """What ``apply`` takes (the caller checked the env is on a GPU), where its reset
        was drawn on the host with every value a float: each variation's columns of
        :attr:`matrix` (one copy to the device for all of them, in the env's dtype); None
        otherwise."""
        parts = self._parts
        if (
            parts is None
            or parts[3] is not np
            or not isinstance(self._matrix, np.ndarray)
            or not parts[0].continuous
        ):
            return None
        return column_views(parts[0], self.matrix)

    def host_values(self, j: int) -> np.ndarray:
        """The values of variation ``j`` on the host (numpy)."""
        if self.host is not None:
            return self.host[j]
        return to_host(self.values[j], self.variations[j].key)

    def notify_and_apply(self, env: Any, env_ids: Any = None, *, apply: bool = True) -> None:
        """Each variation's listeners (but ``fed``) see its draw; then it is applied
        (values as the env takes them: tensors on its device for a torch env), by its
        own ``apply`` or, with the others, by the set's ``apply_batch``. ``apply=False``:
        the listeners only (the values were applied before they were known here: a
        prefetched GPU reset)."""
        ids = self.ids if env_ids is None else env_ids
        vs = self.variations
        g = self.group
        fed = self.fed
        # Listeners that the batch did not already feed (a recorder takes it whole).
        samplers = g.samplers if g is not None else [v.sampler for v in vs]
        listened = _listened(g, samplers, fed)
        appliers = (
            ()
            if not apply
            else g.appliers
            if g is not None
            else [(j, v.apply) for j, v in enumerate(vs) if v.apply is not None]
        )
        if g is not None and g.draws is not None:
            g.draws[0] += 1  # every member's num_draws, in one add
        else:
            for v in vs:
                v._num_draws += 1
        to_env = self.world.values
        dev = self.world.device
        gpu = dev is not None and arrays.off_host(dev)
        views = self._matrix_views() if gpu and appliers else None
        if listened:
            values, contexts = self.values, self.contexts
            sources = self._sources(gpu) if appliers and views is None else values
            applied = dict(appliers)
            for j, v in enumerate(vs):  # in order: variation j's listeners, then its apply
                if j in listened:
                    v.sampler.notify(values[j], self.ids, contexts[j], fed)
                fn = applied.get(j)
                if fn is not None:
                    fn(env, ids, views[j] if views is not None else to_env(sources[j]))
        elif views is not None:
            for j, fn in appliers:
                fn(env, ids, views[j])
        elif appliers:
            sources = self._sources(gpu)
            for j, fn in appliers:
                fn(env, ids, to_env(sources[j]))
        if apply and g is not None and g.apply_batch is not None:
            g.apply_batch(env, ids, self)


def _listened(g: ResetGroup | None, samplers: list[Any], fed: frozenset[Any]) -> frozenset[int]:
    """The variations with listeners that ``fed`` lacks (a set: each variation asks
    whether it is in it); the group keeps the answer while no sampler's listeners
    changed (``listener_edits``) and the fed set stays the same (each reset of a
    recording loop: two compares instead of a set test per variation)."""
    edits = samplers_module.listener_edits
    cached = None if g is None else g.fed_cache
    if cached is not None and cached[0] == edits and (cached[1] is fed or cached[1] == fed):
        return cached[2]
    listened = frozenset(
        j for j, s in enumerate(samplers) if s._after and not (fed and fed.issuperset(s._after))
    )
    if g is not None:
        g.fed_cache = (edits, frozenset(fed), listened)
    return listened


def _torch() -> Any:
    import torch

    return torch


def _to_env(world: ArrayWorld, x: Any) -> Any:
    """``world.values(x)``; for host float64 values on a CPU torch env, cast by numpy
    (the same IEEE rounding, a few torch ops less) and shared with torch."""
    dev = world.device
    on_cpu = dev is not None and not arrays.off_host(dev)
    if on_cpu and isinstance(x, np.ndarray) and x.dtype == np.float64:
        cast = world.host_float()
        if cast is not None:
            return _torch().from_numpy(x.astype(cast))
    return world.values(x)


HOST_DRAW_MAX = 1 << 16
"""The most values (envs x columns) of a reset that a GPU env has drawn on the host and
sent in one non-blocking copy; larger resets are drawn on its device. Each torch op
costs the host 7-25 us to launch whatever its size, and the device draw takes some 80:
on an H100 that put 1.2 ms on every reset of a few dozen envs while the GPU idled. The
host draws 65,536 values in 0.13 ms (compiled) to 0.4 ms (numpy), the same bits."""


def draws_on_host(k: int, width: int) -> bool:
    """Whether a GPU env's reset of ``k`` envs x ``width`` columns is drawn on the host
    (read at each call: a test sets :data:`HOST_DRAW_MAX` to 0 to run the device draw).

    >>> draws_on_host(64, 20), draws_on_host(65_536, 20)
    (True, False)
    """
    return k * width <= HOST_DRAW_MAX


def draw_reset_batch(
    variations: Sequence[Variation],
    ids: np.ndarray,
    tracker: EpisodeClock,
    world: ArrayWorld | None = None,
    cache: PlanCache | None = None,
    counters: DrawCounters | None = None,
    *,
    group: ResetGroup | None = None,
    begun: bool = False,
    keys: tuple[np.ndarray, np.ndarray, bool, bool] | None = None,
) -> ResetBatch | None:
    """Draw every variation (enabled, reset mode,
    :func:`~varirec.variations.reset_group.batchable`) for ``ids`` at once.

    The tracker's episodes of ``ids`` must be reserved (envs that never began one begin
    episode 0 here). Listeners' ``before_sample`` hooks run before the draw; their
    after-draw events come with :meth:`ResetBatch.notify_and_apply`. ``group``: the
    driver's cached :class:`ResetGroup` of these variations; ``begun``: every env of
    ``ids`` began an episode already; ``keys``: the episodes and design rows of ``ids``,
    whether one is in a design, and :func:`first_draws` (noted), if the caller has them.
    """
    if group is None:
        group = ResetGroup(list(variations), cache=cache, counters=counters, counted=False)
    vs = group.together
    if not vs:
        return None
    world = world or ArrayWorld()
    if not begun:
        tracker.begin_unbegun(ids)
    contexts: list[DrawContext] | None = None
    draw_seq: list[Any] | None = None
    lazy = None
    if keys is not None:
        episodes, rows, in_design, is_first = keys
    else:
        episodes = tracker.episode[ids]
        rows = tracker.sample_id[ids]
        in_design = bool((rows >= 0).any())
        is_first = first_draws(group.rows, counters, ids, episodes)
    if is_first:
        lazy = (tracker.take_seqs(len(vs)), episodes, rows, in_design)
    else:
        contexts = [
            v._episode_context(ids, episodes, rows, in_design, tracker.next_seq()) for v in vs
        ]
        draw_seq = [c.draw_seq for c in contexts]
    n = len(ids)
    batch = ResetBatch(vs, ids, contexts, None, world, lazy=lazy, group=group)
    hooked = [j for j, s in enumerate(group.samplers) if s._before]  # before_sample hooks
    if hooked:
        contexts = batch.contexts
        for j in hooked:
            vs[j].sampler.notify_before(n, ids, contexts[j])
    plan = group.plan
    assert plan is not None
    dev = world.device
    if arrays.off_host(dev) and not draws_on_host(n, plan.width):
        import torch

        # One transfer of the keys that does not wait for the queued work (pinned).
        both = device_async(np.stack((ids, episodes)).astype(np.int64, copy=False), dev)
        u, out = plan.draw_columns(both[0], both[1], draw_seq, torch, dev)
        batch._parts = (plan, u, out, torch, rows, dev)
    else:  # numpy, torch on the CPU (a torch op costs more), and a GPU's usual resets
        u, out = plan.draw_columns(ids, episodes, draw_seq, np)
        batch._parts = (plan, u, out, np, rows, None)
    if plan.continuous:
        batch._matrix = out
    if plan.eager:  # design rows are checked, a custom ppf runs, here
        _ = batch.values
    return batch
