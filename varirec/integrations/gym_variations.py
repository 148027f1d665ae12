"""Ready-made physics variations for Gymnasium's classic-control envs.

- :class:`SetAttribute` — an ``apply`` callable that sets an attribute of
  ``env.unwrapped`` (and keeps derived attributes consistent).
- :func:`cartpole_variations` (``CartPole-v1``), :func:`pendulum_variations`
  (``Pendulum-v1``).

This module does not import Gymnasium; :mod:`varirec.integrations.gym` re-exports it all.

>>> variations = pendulum_variations()
>>> variations.override("g.sampler.high=11")
>>> variations["g"].cfg.sampler.high
11.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from varirec.sampling.sampler_cfgs import UniformCfg
from varirec.variations.variation import Mode, Variation, VariationCfg
from varirec.variations.variation_set import VariationSet

__all__ = ["SetAttribute", "cartpole_variations", "pendulum_variations"]


class SetAttribute:
    """An ``apply`` callable: set ``env.unwrapped.<name>`` to the drawn value.

    ``then(target)`` runs afterwards, to keep derived attributes consistent. It applies
    to one env (values of shape ``(1, ...)``): wrap each sub-env of a vector env. With
    no env (a build draw, made before the env exists) it does nothing: the builder
    applies the build values once the env exists.

    >>> import gymnasium as gym
    >>> env = gym.make("Pendulum-v1")
    >>> SetAttribute("g")(env, None, np.array([9.0]))
    >>> env.unwrapped.g
    9.0
    """

    def __init__(self, name: str, then: Callable[[Any], None] | None = None) -> None:
        self.name = name
        self.then = then

    def __call__(self, env: Any, env_ids: np.ndarray | None, values: np.ndarray) -> None:
        if env is None:
            return
        if len(values) != 1:
            raise ValueError(
                f"SetAttribute({self.name!r}) sets one env's attribute, got values for "
                f"{len(values)} envs; wrap each sub-env with VariationWrapper"
            )
        target = getattr(env, "unwrapped", env)
        value = np.asarray(values[0])
        setattr(target, self.name, value.item() if value.ndim == 0 else value.copy())
        if self.then is not None:
            self.then(target)

    def __repr__(self) -> str:
        return f"SetAttribute({self.name!r})"


def _cartpole_derived(env: Any) -> None:
    env.total_mass = env.masspole + env.masscart
    env.polemass_length = env.masspole * env.length


def _uniform_set(
    ranges: Mapping[str, tuple[float, float]],
    mode: Mode,
    then: Callable[[Any], None] | None,
    attributes: Mapping[str, str] | None = None,
) -> VariationSet:
    names = attributes or {}
    return VariationSet(
        Variation(
            key,
            VariationCfg(sampler=UniformCfg(low=low, high=high), mode=mode),
            SetAttribute(names.get(key, key), then),
        )
        for key, (low, high) in ranges.items()
    )


def cartpole_variations(*, mode: Mode = "reset") -> VariationSet:
    """CartPole physics, uniform around the defaults: ``gravity``, ``masscart``,
    ``masspole``, ``pole_length`` (sets ``length``, half the pole's length: the key
    differs so it cannot clash with the episodes' ``length`` column), ``force_mag``.
    ``total_mass`` and ``polemass_length`` follow. Change ranges with
    ``.override("gravity.sampler.high=12")``.

    >>> list(cartpole_variations())
    ['gravity', 'masscart', 'masspole', 'pole_length', 'force_mag']
    """
    ranges = {
        "gravity": (7.0, 12.0),
        "masscart": (0.5, 2.0),
        "masspole": (0.05, 0.5),
        "pole_length": (0.25, 1.0),
        "force_mag": (5.0, 15.0),
    }
    return _uniform_set(ranges, mode, _cartpole_derived, {"pole_length": "length"})


def pendulum_variations(*, mode: Mode = "reset") -> VariationSet:
    """Pendulum physics: gravity ``g``, mass ``m``, length ``l``, uniform around the
    defaults (10, 1, 1).

    >>> [v.cfg.sampler.low for v in pendulum_variations().values()]
    [8.0, 0.5, 0.5]
    """
    return _uniform_set({"g": (8.0, 12.0), "m": (0.5, 1.5), "l": (0.5, 1.5)}, mode, None)
