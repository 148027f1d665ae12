"""Gymnasium replay: put an env back into a recorded episode (values and seed).

Needs the optional extra ``pip install "varirec[gym]"``; re-exported by
:mod:`varirec.integrations.gym`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, SupportsFloat

try:
    import gymnasium as gym
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'varirec.integrations.gym needs Gymnasium; install it with pip install "varirec[gym]"'
    ) from exc

from varirec.integrations.builder import as_variation_set
from varirec.studies.replay import EpisodeReplay
from varirec.variations.variation import Variation
from varirec.variations.variation_set import VariationSet

__all__ = ["ReplayWrapper", "reset_to_episode", "unwrapped_target"]


def unwrapped_target(env: gym.Env) -> Any:
    """The object variations are applied to by default: ``env.unwrapped``."""
    return env.unwrapped


def reset_to_episode(
    env: gym.Env,
    replay: EpisodeReplay,
    variations: VariationSet | Iterable[Variation],
    *,
    options: dict[str, Any] | None = None,
    apply_to: Callable[[gym.Env], Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Apply a recorded episode's values to ``apply_to(env)`` (default ``env.unwrapped``)
    and reset with its seed; returns ``env.reset(...)``'s ``(obs, info)``.

    Use a plain env (no :class:`VariationWrapper`: it would draw new values). For
    interval-mode variations use :class:`ReplayWrapper`, which also re-applies them
    at their steps.

    >>> from varirec.integrations.gym import cartpole_variations
    >>> from varirec.studies.replay import EpisodeReplay
    >>> env = gym.make("CartPole-v1")
    >>> replay = EpisodeReplay("r", 0, 0, seed=5, values={"gravity": 11.0, "masspole": 0.2})
    >>> obs, info = reset_to_episode(env, replay, cartpole_variations())
    >>> env.unwrapped.gravity, round(env.unwrapped.total_mass, 6)
    (11.0, 1.2)
    """
    replay.apply((apply_to or unwrapped_target)(env), as_variation_set(variations, "variations"))
    return env.reset(seed=replay.seed, options=options)


class ReplayWrapper(gym.Wrapper):
    """Replays one recorded episode: :meth:`reset` puts the env into it (values, seed),
    and :meth:`step` re-applies the interval-mode draws after the step they followed.

    >>> import numpy as np
    >>> from varirec.integrations.gym import pendulum_variations
    >>> from varirec.studies.replay import EpisodeReplay, IntervalDraw
    >>> replay = EpisodeReplay("r", 0, 4, seed=3, values={"g": 9.0},
    ...                        interval=(IntervalDraw(step=1, key="m", value=1.2),))
    >>> env = ReplayWrapper(gym.make("Pendulum-v1"), replay, pendulum_variations())
    >>> _ = env.reset()
    >>> env.unwrapped.g, env.unwrapped.m
    (9.0, 1.0)
    >>> _ = env.step(np.zeros(1, dtype=np.float32)); env.unwrapped.m
    1.2
    """

    def __init__(
        self,
        env: gym.Env,
        replay: EpisodeReplay,
        variations: VariationSet | Iterable[Variation],
        *,
        apply_to: Callable[[gym.Env], Any] | None = None,
    ) -> None:
        super().__init__(env)
        self.replay = replay
        self.variations = as_variation_set(variations, "variations")
        self.apply_to = apply_to or unwrapped_target
        self._steps = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is not None and seed != self.replay.seed:
            raise ValueError(
                f"ReplayWrapper resets with the recorded seed {self.replay.seed}, got "
                f"seed={seed}; call reset() without a seed"
            )
        self._steps = 0
        return reset_to_episode(
            self.env, self.replay, self.variations, options=options, apply_to=self.apply_to
        )

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        out = self.env.step(action)
        self._steps += 1
        self.replay.apply_interval(self.apply_to(self.env), self.variations, self._steps)
        return out
