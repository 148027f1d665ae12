"""Samplers: draw a batch of values and tell listeners about it.

- :class:`Sampler` — the base: :meth:`Sampler.sample` is a template method around the
  concrete :meth:`Sampler._sample`, and notifies listeners; subclasses never notify.
- :class:`InverseCdfSampler` — every distribution of :mod:`varirec.sampling.sampler_cfgs`:
  uniforms from a source pushed through the cfg's inverse CDF.
- :class:`DesignSampler` — replays the rows of a design (design-driven studies).
- :class:`SampleEvent`, :class:`DrawContext` — what a listener receives.

Uniforms come from a source (:mod:`varirec.sampling.streams`): the sampler's own seeded
Generator by default, or a keyed counter stream that a variation passes in so that
each ``(env_id, episode, draw_seq)`` gets the same value whatever else happens.

>>> from varirec.sampling.sampler_cfgs import NormalCfg
>>> sampler = NormalCfg(mean=1.0, std=0.1).build(seed=0)
>>> seen = []
>>> handle = sampler.add_listener(lambda event: seen.append(event.values.shape))
>>> sampler.sample(4).shape, seen
((4,), [(4,)])
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np

from varirec.errors import ListenerError
from varirec.sampling.streams import GeneratorSource, UniformSource

__all__ = [
    "DesignSampler",
    "DrawContext",
    "InverseCdfSampler",
    "Phase",
    "SampleEvent",
    "SampleListener",
    "Sampler",
]

log = logging.getLogger(__name__)

Phase = Literal["build", "reset", "interval", "manual"]


class DrawContext(NamedTuple):
    """Where a draw belongs: filled in by the variation that asks for it.

    Arrays are aligned with the draw's rows (one entry per env id). Immutable, and a
    tuple because one is made per draw on the simulation's hot path.
    """

    variation: str = ""
    """The key of the variation that drew."""
    phase: Phase = "manual"
    seq: int = -1
    """The run's event sequence number of this draw (-1 outside a recorded run)."""
    episodes: np.ndarray | None = None
    """The episode each row belongs to; None for build draws (episode -1)."""
    steps: np.ndarray | int = 0
    """The step within the episode (interval draws); 0 at build and reset."""
    draw_seq: np.ndarray | int = 0
    """Index of this draw of the variation within the env's episode."""
    sample_ids: np.ndarray | None = None
    """Design row of each draw row, in design-driven studies."""


class SampleEvent(NamedTuple):
    """What listeners receive after a draw. Treat ``values`` as read-only."""

    sampler: Sampler
    values: np.ndarray
    env_ids: np.ndarray | None
    """The envs the rows belong to; None for one draw that applies to every env."""
    context: DrawContext | None


@runtime_checkable
class SampleListener(Protocol):
    """A listener: called with each :class:`SampleEvent` after the draw.

    It may also define ``before_sample(sampler, n, env_ids, context)``, called before it.
    """

    def __call__(self, event: SampleEvent) -> None: ...


listener_edits = 0
"""How many times a sampler's listeners changed, in this process (a cache of who listens
is current while this stays the same)."""


def _notify(calls: tuple[Callable[..., Any], ...], *args: Any) -> None:
    """Call every listener; if some raise, raise the first after all were called."""
    errors: list[BaseException] = []
    for call in calls:
        try:
            call(*args)
        except Exception as exc:
            errors.append(exc)
    if errors:
        first = errors[0]
        for other in errors[1:]:
            first.add_note(f"another sample listener also raised: {other!r}")
        raise first


class Distribution(Protocol):
    """What a sampler needs of its cfg (every :class:`~varirec.sampling.cfg_base.SamplerCfg`):
    the shape of one draw, the uniforms it takes, and the inverse CDF."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def width(self) -> int: ...

    def ppf(self, u: np.ndarray) -> np.ndarray: ...


class DesignRows(Distribution, Protocol):
    """What a :class:`DesignSampler` needs of its cfg (a ``DesignCfg``): the design rows."""

    @property
    def values(self) -> np.ndarray: ...


class Sampler(ABC):
    """Base of every sampler: a template :meth:`sample` over the concrete :meth:`_sample`.

    Listeners are notified around the draw: ``before_sample`` hooks first, then the
    concrete draw, then each listener with a :class:`SampleEvent`. A listener that
    raises does not stop the others: every listener is still notified, then the first
    error propagates (with the others attached as notes). The drawn values are
    already final when listeners run, so a failing listener cannot change them.
    """

    def __init__(self, cfg: Distribution, *, seed: int | np.random.Generator | None = None) -> None:
        self.cfg = cfg
        self.source: UniformSource = GeneratorSource(seed)
        self._listeners: tuple[SampleListener, ...] = ()
        # Copy-on-write tuples: notifying never sees a list changed under it, and the
        # no-listener check on the hot path is one truth test.
        self._after: tuple[Callable[[SampleEvent], None], ...] = ()
        self._before: tuple[Callable[..., None], ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one draw (``()`` for scalars)."""
        return self.cfg.shape

    @property
    def listeners(self) -> tuple[SampleListener, ...]:
        return self._listeners

    def add_listener(self, listener: SampleListener) -> SampleListener:
        """Attach ``listener``; returns it, as the handle :meth:`remove_listener` takes."""
        if not callable(listener):
            raise TypeError(
                f"`listener` must be callable with a SampleEvent, got {type(listener).__name__}"
            )
        self._listeners = (*self._listeners, listener)
        self._rebind()
        return listener

    def remove_listener(self, listener: SampleListener) -> None:
        """Detach ``listener``; raises :class:`ListenerError` if it is not attached."""
        if not any(existing is listener for existing in self._listeners):
            raise ListenerError(
                f"listener {listener!r} is not attached to this {type(self).__name__}; "
                "pass the handle that add_listener returned"
            )
        self._listeners = tuple(x for x in self._listeners if x is not listener)
        self._rebind()

    def _rebind(self) -> None:
        global listener_edits
        listener_edits += 1
        self._after = self._listeners
        self._before = tuple(
            hook for x in self._listeners if callable(hook := getattr(x, "before_sample", None))
        )

    def sample(
        self,
        n: int | None = None,
        *,
        env_ids: np.ndarray | None = None,
        source: UniformSource | None = None,
        context: DrawContext | None = None,
    ) -> np.ndarray:
        """Draw ``n`` values (``n`` defaults to ``len(env_ids)``, else 1).

        Args:
            n: number of rows.
            env_ids: the env each row belongs to, or None for a draw that applies to
                every env.
            source: where uniforms come from (default: this sampler's own Generator).
            context: passed through to listeners.

        Returns:
            An array of shape ``(n, *self.shape)``.
        """
        if env_ids is not None:
            env_ids = np.asarray(env_ids)
            if n is None:
                n = len(env_ids)
            elif n != len(env_ids):
                raise ValueError(f"`n` ({n}) must equal len(env_ids) ({len(env_ids)})")
        elif n is None:
            n = 1
        if self._before:
            _notify(self._before, self, n, env_ids, context)
        values = self._sample(n, self.source if source is None else source, context)
        if self._after:
            _notify(self._after, SampleEvent(self, values, env_ids, context))
        return values

    def notify_before(self, n: int, env_ids: Any, context: DrawContext | None) -> None:
        """The ``before_sample`` hooks of a draw made elsewhere (a batched draw of many
        samplers: :mod:`varirec.sampling.batch_draw`)."""
        if self._before:
            _notify(self._before, self, n, env_ids, context)

    def notify(
        self,
        values: Any,
        env_ids: Any,
        context: DrawContext | None,
        skip: frozenset[Any] | set[Any] = frozenset(),
    ) -> None:
        """Tell the listeners (but those in ``skip``, already fed the whole batch) about
        values drawn elsewhere, as :meth:`sample` does after its own draw."""
        calls = self._after
        if skip and calls:
            calls = tuple(x for x in calls if x not in skip)
        if calls:
            _notify(calls, SampleEvent(self, values, env_ids, context))

    @abstractmethod
    def _sample(self, n: int, source: UniformSource, context: DrawContext | None) -> np.ndarray:
        """Draw ``n`` values; the concrete distribution. Never notifies."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cfg!r}, listeners={len(self._listeners)})"


class InverseCdfSampler(Sampler):
    """Any cfg of :mod:`varirec.sampling.sampler_cfgs`: uniforms through the cfg's inverse CDF."""

    def _sample(self, n: int, source: UniformSource, context: DrawContext | None) -> np.ndarray:
        return self.cfg.ppf(source.uniforms(n, self.cfg.width))


class DesignSampler(Sampler):
    """Replays the rows of a design, chosen by the context's ``sample_ids``.

    Without ``sample_ids`` it hands out rows in order and cycles. A row of -1 (an env
    the schedule had no row for) replays row 0; its draw is recorded with a null
    ``sample_id`` and is not part of the study.
    """

    cfg: DesignRows

    def __init__(self, cfg: DesignRows, *, seed: int | np.random.Generator | None = None) -> None:
        super().__init__(cfg, seed=seed)
        self._cursor = 0

    def _sample(self, n: int, source: UniformSource, context: DrawContext | None) -> np.ndarray:
        rows = None if context is None else context.sample_ids
        values = self.cfg.values
        if rows is None:
            rows = np.arange(self._cursor, self._cursor + n) % len(values)
            self._cursor = int(rows[-1] + 1) if n else self._cursor
            return values[rows]
        if np.any(rows >= len(values)):
            bad = rows[rows >= len(values)][:5]
            raise ValueError(
                f"`sample_ids` must be design rows in [0, {len(values)}), got {bad.tolist()}; "
                "the design has fewer rows than the schedule asked for"
            )
        return values[np.maximum(rows, 0)]
