"""Variations: a named, configurable draw and how it is applied to the env.

- :class:`VariationCfg` — enabled flag, sampler cfg, mode (``build | reset | interval``).
- :class:`Variation` — a key, a cfg, the sampler built from it, and an ``apply``
  callable ``apply(env, env_ids, values)``. Listeners added with
  :meth:`Variation.add_sample_listener` follow the variation through
  :meth:`Variation.apply_cfg`: the new sampler gets them all, the old keeps none.
(:class:`~varirec.variations.variation_set.VariationSet` keys them by dotted names.)

>>> from varirec.sampling.sampler_cfgs import UniformCfg
>>> mass = Variation("cube.mass", VariationCfg(sampler=UniformCfg(low=0.5, high=2.0)))
>>> mass.cfg.sampler.high
2.0
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from varirec.errors import ListenerError, RecorderStateError
from varirec.sampling.sampler_cfgs import DesignCfg, SamplerCfg
from varirec.sampling.samplers import DrawContext, SampleListener, Sampler
from varirec.sampling.streams import CounterStream
from varirec.variations.clock import EpisodeClock, _changed, epoch, noise_keys

__all__ = [
    "ApplyFn",
    "EpisodeClock",
    "Mode",
    "Variation",
    "VariationCfg",
    "epoch",
    "noise_keys",
]

Mode = Literal["build", "reset", "interval"]
MODES: tuple[Mode, ...] = ("build", "reset", "interval")
ApplyFn = Callable[[Any, "np.ndarray | None", np.ndarray], None]
"""``apply(env, env_ids, values)``: set the drawn values on the env. ``env_ids`` is
None for a build draw (one row of ``values`` that applies to every env)."""

_KEY = re.compile(r"^[A-Za-z_][\w\-]*(\.[A-Za-z_][\w\-]*)*$")
_ALL_ENVS = np.array([-1], dtype=np.int64)


def _draw_ids(env_ids: Any) -> np.ndarray:
    """Integer ``env_ids`` as a flat int64 copy (recorded rows must not change if the
    caller reuses its array); floats, bools and other types are refused, not cast."""
    raw = np.asarray(env_ids)
    if raw.dtype.kind not in "iu" and raw.size:
        fix = "np.flatnonzero(mask)" if raw.dtype.kind == "b" else "int ids, e.g. [0, 3]"
        raise TypeError(
            f"`env_ids` must be integer env ids, got {raw.dtype} {raw.reshape(-1)[:5].tolist()}; "
            f"pass {fix}"
        )
    return np.array(raw, dtype=np.int64).reshape(-1)


@dataclass(frozen=True, kw_only=True)
class VariationCfg:
    """What a variation draws and when."""

    sampler: SamplerCfg
    """The distribution of the drawn value."""
    mode: Mode = "reset"
    """``build``: drawn once before the env exists, applies to every env; ``reset``:
    drawn for the envs that reset, for the episode they begin; ``interval``: drawn
    mid-episode, every ``interval_steps`` steps of an env."""
    enabled: bool = True
    """A disabled variation draws nothing and records nothing."""
    interval_steps: tuple[int, int] = (50, 50)
    """For ``interval`` mode: steps between draws, drawn uniformly in this range per env."""

    def __post_init__(self) -> None:
        if not isinstance(self.sampler, SamplerCfg):
            raise TypeError(
                f"VariationCfg.sampler must be a SamplerCfg (e.g. UniformCfg(low=0, high=1)), "
                f"got {type(self.sampler).__name__}"
            )
        if self.mode not in MODES:
            raise ValueError(f"VariationCfg.mode must be one of {MODES}, got {self.mode!r}")
        if not isinstance(self.enabled, bool):
            raise ValueError(f"VariationCfg.enabled must be true or false, got {self.enabled!r}")
        given = self.interval_steps
        steps = tuple(given) if isinstance(given, tuple | list) else ()
        if (
            len(steps) != 2
            or not all(
                isinstance(s, int | np.integer) and not isinstance(s, bool) and s >= 1
                for s in steps
            )
            or steps[0] > steps[1]
        ):
            raise ValueError(
                "VariationCfg.interval_steps must be (low, high) with 1 <= low <= high, "
                f"got {given!r}; e.g. interval_steps=(50, 50)"
            )
        object.__setattr__(self, "interval_steps", (int(steps[0]), int(steps[1])))


class Variation:
    """A named draw with a cfg, a sampler built from it, and how it applies to the env.

    Args:
        key: dotted name, e.g. ``"cube.mass"``.
        cfg: the :class:`VariationCfg`.
        apply: ``apply(env, env_ids, values)``, or None to only draw.
    """

    def __init__(self, key: str, cfg: VariationCfg, apply: ApplyFn | None = None) -> None:
        if not isinstance(key, str) or not _KEY.match(key):
            raise ValueError(
                f"`key` must be a dotted name of identifiers like 'cube.mass', got {key!r}"
            )
        if not isinstance(cfg, VariationCfg):
            raise TypeError(f"`cfg` must be a VariationCfg, got {type(cfg).__name__}")
        if apply is not None and not callable(apply):
            raise TypeError(f"`apply` must be callable(env, env_ids, values), got {apply!r}")
        self.key = key
        self._apply = apply
        self._cfg = cfg
        self._sampler = cfg.sampler.build()
        self._listeners: list[SampleListener] = []
        self._stream: CounterStream | None = None
        self._tracker: EpisodeClock | None = None
        self._draw_count = np.zeros(0, dtype=np.int64)
        self._count_episode = np.zeros(0, dtype=np.int64)
        # Set by a driver's draw counters: brings these arrays up to date before a read.
        self._counter_sync: Callable[[np.ndarray, np.ndarray], None] | None = None
        self._build_draws = 0
        self._num_draws = 0  # draws of its own; a driver's reset group counts its batches
        self._batch_draws: list[list[int]] = []  # those groups' counts (ResetGroup.draws)

    @property
    def num_draws(self) -> int:
        """Draws made so far (a recorder attached later would have missed them)."""
        return self._num_draws + sum(cell[0] for cell in self._batch_draws)

    @num_draws.setter
    def num_draws(self, value: int) -> None:
        self._num_draws = int(value) - sum(cell[0] for cell in self._batch_draws)

    @property
    def cfg(self) -> VariationCfg:
        return self._cfg

    @property
    def apply(self) -> ApplyFn | None:
        """``apply(env, env_ids, values)``, or None: the set's ``apply_batch`` (if
        any) applies this variation's reset draws with the others'."""
        return self._apply

    @apply.setter
    def apply(self, apply: ApplyFn | None) -> None:
        if apply is not None and not callable(apply):
            raise TypeError(f"`apply` must be callable(env, env_ids, values), got {apply!r}")
        self._apply = apply
        _changed()

    @property
    def sampler(self) -> Sampler:
        return self._sampler

    @property
    def mode(self) -> Mode:
        return self._cfg.mode

    @property
    def enabled(self) -> bool:
        return self._cfg.enabled

    @property
    def stream(self) -> CounterStream | None:
        """The keyed stream of reproducible draws, once :meth:`seed` was called."""
        return self._stream

    def seed(self, seed: int) -> None:
        """Make draws reproducible: key them by ``(seed, key, env_id, episode, draw_seq)``."""
        self._stream = CounterStream(seed, self.key)
        _changed()

    def bind(self, tracker: EpisodeClock | None) -> None:
        """Attribute draws to ``tracker``'s episodes (None unbinds).

        A bound variation builds the draw context itself: the run ``seq``, each env's
        episode, step, design row, and ``draw_seq`` (the how-many-th draw of this
        variation in that env's episode). Envs that never began an episode begin
        episode 0 here, so the first reset after build needs no pre-reset call.
        """
        self._tracker = tracker
        self._counter_sync = None
        if tracker is not None:
            self._draw_count = np.zeros(tracker.num_envs, dtype=np.int64)
            self._count_episode = np.full(tracker.num_envs, -1, dtype=np.int64)
        _changed()

    def _bound_context(self, ids: np.ndarray | None) -> DrawContext:
        t = self._tracker
        assert t is not None  # only called when bound
        settle = t.before_read
        if settle is not None:  # a reset whose bookkeeping waits (a prefetched GPU reset)
            settle()
        if ids is None:
            seq_in_build = self._build_draws
            self._build_draws += 1
            return DrawContext(self.key, "build", t.next_seq(), None, 0, seq_in_build, None)
        t.begin_unbegun(ids)
        episodes = t.episode[ids]
        rows = t.sample_id[ids]
        return self._episode_context(ids, episodes, rows, bool((rows >= 0).any()), t.next_seq())

    def _episode_context(
        self, ids: np.ndarray, episodes: np.ndarray, rows: np.ndarray, in_design: bool, seq: int
    ) -> DrawContext:
        """The context of a draw for ``ids`` in their current ``episodes``: counts this
        variation's draws per env and episode (``draw_seq``)."""
        if self._counter_sync is not None:
            self._counter_sync(ids, episodes)
        same = self._count_episode[ids] == episodes
        if same.any():  # some env draws again in the same episode
            draw_seq: np.ndarray | int = np.where(same, self._draw_count[ids], 0)
            self._draw_count[ids] = draw_seq + 1
        else:  # the usual case: every env's first draw of its episode
            draw_seq = 0
            self._draw_count[ids] = 1
        self._count_episode[ids] = episodes
        steps = self._tracker.steps(ids) if self.mode == "interval" else 0  # reset: step 0
        return self._context(seq, episodes, steps, draw_seq, rows, in_design)

    def _context(
        self, seq: int, episodes: Any, steps: Any, draw_seq: Any, rows: Any, in_design: bool
    ) -> DrawContext:
        """The context of a bound draw (its phase is the variation's mode); a design
        sampler always gets its rows (-1: replay row 0, not part of the study)."""
        design = in_design or isinstance(self._cfg.sampler, DesignCfg)
        return DrawContext(
            self.key, self.mode, seq, episodes, steps, draw_seq, rows if design else None
        )

    def add_sample_listener(self, listener: SampleListener) -> SampleListener:
        """Attach ``listener`` to this variation's sampler, now and after every cfg swap."""
        self._sampler.add_listener(listener)
        self._listeners.append(listener)
        _changed()
        return listener

    def remove_sample_listener(self, listener: SampleListener) -> None:
        """Detach a listener added with :meth:`add_sample_listener`."""
        if not any(x is listener for x in self._listeners):
            raise ListenerError(
                f"listener {listener!r} was not added to variation {self.key!r}; "
                "pass the handle that add_sample_listener returned"
            )
        self._sampler.remove_listener(listener)
        self._listeners = [x for x in self._listeners if x is not listener]
        _changed()

    def apply_cfg(self, cfg: VariationCfg) -> None:
        """Swap the cfg: rebuild the sampler and move every listener onto it."""
        if not isinstance(cfg, VariationCfg):
            raise TypeError(f"`cfg` must be a VariationCfg, got {type(cfg).__name__}")
        new = cfg.sampler.build()
        old = self._sampler
        for listener in self._listeners:
            old.remove_listener(listener)
            new.add_listener(listener)
        self._sampler, self._cfg = new, cfg
        _changed()

    def enable(self) -> None:
        self._cfg = dataclasses.replace(self._cfg, enabled=True)
        _changed()

    def disable(self) -> None:
        self._cfg = dataclasses.replace(self._cfg, enabled=False)
        _changed()

    def draw(
        self,
        env: Any = None,
        env_ids: np.ndarray | None = None,
        *,
        context: DrawContext | None = None,
        apply: bool = True,
    ) -> np.ndarray | None:
        """Draw for ``env_ids`` (None: one row for every env) and apply it to ``env``.

        ``context`` is built from the bound tracker when not given (see :meth:`bind`).
        ``apply=False`` draws (and notifies) without applying, e.g. before the env exists.
        Returns the values, or None when the variation is disabled (nothing drawn,
        nothing notified, nothing applied).
        """
        if not self._cfg.enabled:
            return None
        ids = None if env_ids is None else _draw_ids(env_ids)
        if context is None:
            if self._tracker is not None:
                context = self._bound_context(ids)
            else:
                context = DrawContext(self.key, "build" if ids is None else "manual")
        source = None
        if self._stream is not None:
            keys = _ALL_ENVS if ids is None else ids
            episodes = _ALL_ENVS if context.episodes is None else context.episodes
            if self.mode == "interval" and ids is not None and self._tracker is not None:
                keys, episodes = noise_keys(ids, episodes, self._tracker.seed[ids])
            source = self._stream.keyed(keys, episodes, context.draw_seq)
        n = 1 if ids is None else len(ids)
        values = self._sampler.sample(n, env_ids=ids, source=source, context=context)
        self._num_draws += 1
        if apply and self.apply is not None:
            self.apply(env, ids, values)
        return values

    def spec(self) -> dict[str, Any]:
        """A JSON-serializable description (stored in ``run.json``)."""
        s = self._cfg.sampler
        return {
            "key": self.key,
            "mode": self.mode,
            "enabled": self.enabled,
            "sampler": s.to_dict(),
            "shape": list(s.shape),
            "components": list(s.component_names) if s.shape else [],
            "categorical": bool(s.categorical),
            "labels": list(getattr(s, "labels", ())) if s.categorical else [],
            "factors": [f.to_dict() for f in s.factor_specs(self.key)],
        }

    def __deepcopy__(self, memo: dict[int, Any]) -> Variation:
        # A copy would carry the listeners' references (a recorder) that nobody removes:
        # draws of the copy would land in the original run, or nowhere.
        if self._listeners:
            raise RecorderStateError(
                f"variation {self.key!r} has {len(self._listeners)} sample listener(s) attached "
                "(a recorder); copy its cfg instead (copy.deepcopy(variation.cfg)) or build a "
                "new Variation(key, cfg, apply)"
            )
        return Variation(self.key, self._cfg, self.apply)

    def __repr__(self) -> str:
        return f"Variation({self.key!r}, mode={self.mode!r}, enabled={self.enabled})"
