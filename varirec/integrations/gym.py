"""Gymnasium integration: record the variations and outcomes of Gymnasium envs.

Needs the optional extra ``pip install "varirec[gym]"``; ``import varirec`` never
imports this module.

- :class:`VariationWrapper` — one env: draws and applies the reset-mode variations at
  every reset, the interval-mode ones between steps, and records each episode's
  return, length, flags, success and reset seed.
- :func:`make_env` — an :class:`~varirec.integrations.builder.EnvBuilder` run for one env.
- :func:`cartpole_variations`, :func:`pendulum_variations` — ready-made physics
  variations; :class:`SetAttribute` — the ``apply`` callable they use (defined in
  :mod:`varirec.integrations.gym_variations`, which needs no Gymnasium).
- :func:`reset_to_episode`, :class:`ReplayWrapper` — put an env back into a recorded
  episode (see :mod:`varirec.studies.replay`).
- Vector envs: :mod:`varirec.integrations.gym_vector` (``make_vector_env``).

>>> import tempfile, gymnasium as gym
>>> root = tempfile.mkdtemp()
>>> env = VariationWrapper(gym.make("CartPole-v1"), cartpole_variations(), output=root)
>>> obs, info = env.reset()
>>> 7.0 <= env.unwrapped.gravity <= 12.0, env.unwrapped.varirec is env.manager
(True, True)
>>> env.close()
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, SupportsFloat

import numpy as np

try:
    import gymnasium as gym
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'varirec.integrations.gym needs Gymnasium; install it with pip install "varirec[gym]"'
    ) from exc

from varirec.integrations.builder import (
    EnvBuilder,
    apply_build_values,
    as_variation_set,
    check_not_drawn,
    expose,
)
from varirec.integrations.gym_replay import ReplayWrapper, reset_to_episode, unwrapped_target
from varirec.integrations.gym_variations import (
    SetAttribute,
    cartpole_variations,
    pendulum_variations,
)
from varirec.recording.manager import (
    LifecycleManager,
    NullRecorderManager,
    make_recorder_manager,
)
from varirec.sampling.streams import RESET_SEED_STREAM, CounterStream
from varirec.storage import RunWriter
from varirec.variations.variation import Variation
from varirec.variations.variation_set import VariationSet

__all__ = [
    "ReplayWrapper",
    "SetAttribute",
    "VariationWrapper",
    "cartpole_variations",
    "make_env",
    "pendulum_variations",
    "reset_to_episode",
]

SuccessFn = Callable[[Any, SupportsFloat, bool, bool, dict[str, Any]], Any]
"""``success_fn(obs, reward, terminated, truncated, info)``: True/False, or None (unknown)."""
ManagerFactory = Callable[[], NullRecorderManager]


def reset_seed(run_seed: int, env_id: int, episode: int) -> int:
    """The reset seed of ``(env_id, episode)`` when the caller gives none: the same hash
    of the run seed and those keys as ``RecorderManager.episode_seeds``, in ``[0, 2**31)``.

    >>> reset_seed(0, 3, 5) == reset_seed(0, 3, 5) != reset_seed(0, 3, 6)
    True
    """
    stream = CounterStream(run_seed, RESET_SEED_STREAM)
    return int(stream.seeds(np.array([env_id]), np.array([episode]))[0])


def check_env_attributes(target: Any, variations: Iterable[Any], where: str) -> None:
    """Refuse variations that set (:class:`SetAttribute`) an attribute ``target`` lacks:
    the values would be recorded but never read by the env.

    >>> check_env_attributes(gym.make("CartPole-v1").unwrapped, pendulum_variations().values(),
    ...                      "VariationWrapper")
    Traceback (most recent call last):
    ...
    ValueError: VariationWrapper: the env (CartPoleEnv) has no attribute(s) 'g', 'm', 'l' ...
    """
    obj = getattr(target, "unwrapped", target)
    missing = [
        (v.key, v.apply.name)
        for v in variations
        if isinstance(v.apply, SetAttribute) and not hasattr(obj, v.apply.name)
    ]
    if missing:
        names = ", ".join(repr(name) for _, name in missing)
        keys = [key for key, _ in missing]
        raise ValueError(
            f"{where}: the env ({type(obj).__name__}) has no attribute(s) {names} that "
            f"variation(s) {keys} set, so their values would be recorded but never used; "
            "use variations made for this env (cartpole_variations() for CartPole-v1, "
            "pendulum_variations() for Pendulum-v1), or pass apply_to= the object that "
            "holds these attributes"
        )


def _one_number(value: Any, name: str) -> float:
    """A single env's per-step ``value`` as a float, or an error naming what it was."""
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        shape = getattr(value, "shape", None)
        got = f"{type(value).__name__}" + ("" if shape is None else f" of shape {tuple(shape)}")
        raise ValueError(
            f"the env's step gave a {name} that is not one number: {got} ({exc}); "
            "VariationWrapper wraps one env, whose step returns one number (for a vector "
            "env use varirec.integrations.gym_vector.make_vector_env)"
        ) from None


class VariationWrapper(gym.Wrapper):
    """Applies and records variations on one Gymnasium env, and records its episodes.

    At :meth:`reset`: the finished (or abandoned) episode is recorded if it was not
    already; the next episode index is reserved; the reset seed is chosen (a design
    schedule's seed, else the caller's ``seed``, else :func:`reset_seed` of the run
    seed, ``env_id`` and the episode) and stored as the episode's ``seed``; the
    reset-mode variations draw and are applied to ``apply_to(env)``; *then* the inner
    env resets with that seed, so every episode can be replayed. At :meth:`step`: the
    step is recorded; a step that terminates or truncates records the episode at once
    (so the last episodes before ``close`` are kept, and a vector env's ignored
    autoreset step counts into no episode); otherwise due interval-mode variations draw.

    The manager's tracker holds ``env_id + 1`` slots and this env uses slot ``env_id``,
    so every row and every reproducible draw is keyed by ``env_id``. A manager serves
    one open wrapper: its step clock and interval timers run for every env it tracks,
    so a second wrapper on it is refused (:func:`make_vector_env` gives each sub-env a
    manager of its own, in one run). Put a ``TimeLimit`` inside this wrapper (as
    ``gym.make`` does): one outside truncates episodes this wrapper never sees end.

    This wrapper does not record its constructor arguments (``RecordConstructorArgs``):
    Gymnasium deep-copies them into ``env.spec``, which would copy the live recorder.

    Args:
        env: the env to wrap.
        variations: the variations (give this or ``manager``); none may have drawn.
        manager: a manager whose tracker has a slot for ``env_id``, or a zero-argument
            callable returning one, called at the first reset (the vector helpers do
            this, so the spaces-probing copy of the env in the parent writes nothing).
        env_id: this env's index in its run.
        output, run_id, seed, metadata, **manager_kwargs: for the manager this wrapper
            makes from ``variations`` (see
            :func:`~varirec.recording.manager.make_recorder_manager`).
        success_fn: ``success_fn(obs, reward, terminated, truncated, info)`` -> bool or
            None; default: ``info.get(success_key)``. The last step's value is the
            episode's success (None/NaN: unknown, stored as null).
        apply_to: what the ``apply`` callables receive (default: ``env.unwrapped``).
        close_manager: close the manager in :meth:`close` (default: True when this
            wrapper made it, or got a factory).
    """

    def __init__(
        self,
        env: gym.Env,
        variations: VariationSet | Iterable[Variation] | None = None,
        *,
        manager: NullRecorderManager | ManagerFactory | None = None,
        env_id: int = 0,
        output: str | os.PathLike[str] | RunWriter | None = None,
        run_id: str | None = None,
        seed: int = 0,
        metadata: Mapping[str, Any] | None = None,
        success_fn: SuccessFn | None = None,
        success_key: str = "is_success",
        apply_to: Callable[[gym.Env], Any] | None = None,
        close_manager: bool | None = None,
        **manager_kwargs: Any,
    ) -> None:
        super().__init__(env)
        if isinstance(env_id, bool) or not isinstance(env_id, int | np.integer) or env_id < 0:
            raise ValueError(f"`env_id` must be an int >= 0, got {env_id!r}")
        if success_fn is not None and not callable(success_fn):
            raise TypeError(f"`success_fn` must be callable(obs, reward, ...), got {success_fn!r}")
        if apply_to is not None and not callable(apply_to):
            raise TypeError(f"`apply_to` must be callable(env) -> target, got {apply_to!r}")
        self.env_id = int(env_id)
        self.success_fn = success_fn
        self.success_key = success_key
        self.apply_to = apply_to or unwrapped_target
        self._ids = np.array([self.env_id], dtype=np.int64)
        self._factory: ManagerFactory | None = None
        self._manager: NullRecorderManager | None = None
        self._reserved = False
        made = manager is None
        if manager is not None and (variations is not None or output is not None):
            raise TypeError(
                "give either `variations` (the wrapper makes its manager) or `manager` "
                "(which carries its variations), not both"
            )
        if made:
            if variations is None:
                raise TypeError("give `variations` (e.g. cartpole_variations()) or `manager`")
            vs = as_variation_set(variations, "variations")
            check_not_drawn(vs, "VariationWrapper")
            check_env_attributes(self.apply_to(self.env), vs.values(), "VariationWrapper")
            manager = make_recorder_manager(
                self.env_id + 1,
                variations=vs,
                output=output,
                seed=seed,
                run_id=run_id,
                metadata=metadata,
                **manager_kwargs,
            )
        elif manager_kwargs or run_id is not None or metadata is not None:
            raise TypeError(
                f"{sorted([*manager_kwargs, 'run_id', 'metadata'])[:4]} configure a manager "
                "this wrapper makes; with `manager=` configure that manager instead"
            )
        self.close_manager = (made or callable(manager)) if close_manager is None else close_manager
        if isinstance(manager, LifecycleManager):
            check_env_attributes(
                self.apply_to(self.env), manager.variations.values(), "VariationWrapper"
            )
            self._use(manager)
            if made and manager.variations.enabled("build"):
                manager.draw_build(self.apply_to(self.env))  # the env exists: apply now
        elif callable(manager):
            self._factory = manager
        else:
            raise TypeError(f"`manager` must be a RecorderManager or a factory, got {manager!r}")

    @property
    def manager(self) -> NullRecorderManager | None:
        """The manager (None until the first reset when it comes from a factory)."""
        return self._manager

    def _use(self, manager: NullRecorderManager) -> None:
        if manager.num_envs <= self.env_id:
            raise ValueError(
                f"the manager tracks {manager.num_envs} env(s), so it has no slot for "
                f"env_id={self.env_id}; make it with num_envs >= {self.env_id + 1}"
            )
        holder = _WRAPPERS.get(manager)
        other = None if holder is None else holder()
        if other is not None and other is not self:
            raise ValueError(
                f"this manager already records the open VariationWrapper of env_id="
                f"{other.env_id}: a manager serves one wrapper (a step of either would "
                "count a step and run the interval timers of both envs); give each env a "
                "manager of its own, e.g. make_vector_env(...) for several envs in one "
                "run, or close the other wrapper first"
            )
        _WRAPPERS[manager] = weakref.ref(self)
        n = manager.num_envs
        self._reward = np.zeros(n)
        self._terminated = np.zeros(n, dtype=bool)
        self._truncated = np.zeros(n, dtype=bool)
        self._success = np.full(n, np.nan)
        # Armed at the manager's init, disabled ones too: they may be enabled later.
        self._interval = any(v.mode == "interval" for v in manager.variations.values())
        self._manager = manager
        expose(self.env, manager)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Record the previous episode, draw and apply the new one's values, then reset
        the inner env with the episode's seed (see the class docstring)."""
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0
        ):  # before the episode ends: a refused reset leaves the running one as it was
            raise ValueError(
                f"`seed` must be None or an int >= 0 (gymnasium's reset seed), got {seed!r} "
                f"({type(seed).__name__}); e.g. env.reset(seed=0), or env.reset() for the "
                "episode's own reproducible seed"
            )
        if self._manager is None:
            assert self._factory is not None
            self._use(self._factory())
        m, ids, k = self._manager, self._ids, self.env_id
        assert m is not None
        t = m.tracker
        if self._reserved:
            self._reserved = False  # the step that ended the episode recorded it already
        else:
            m.record_pre_reset(ids)
        planned = -1
        if m.schedule is not None:
            m.schedule.assign(t, ids)
            planned = int(t.seed[k])
        if planned >= 0:
            episode_seed = planned
        elif seed is not None:
            episode_seed = int(seed)
        else:
            episode_seed = reset_seed(m.seed, k, int(t.episode[k]))
        t.seed[k] = episode_seed
        m.draw_reset(self.apply_to(self.env), ids)
        obs, info = self.env.reset(seed=episode_seed, options=options)
        m.record_post_reset(ids)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the inner env and record the step (and the episode, if it ended)."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        m, k = self._manager, self.env_id
        if m is None or not m.tracker.started[k]:
            return obs, reward, terminated, truncated, info  # stepped outside an episode
        self._reward[k] = _one_number(reward, "reward")
        self._terminated[k] = bool(terminated)
        self._truncated[k] = bool(truncated)
        if self.success_fn is not None:
            success = self.success_fn(obs, reward, terminated, truncated, info)
        else:
            success = info.get(self.success_key)
        self._success[k] = np.nan if success is None else _one_number(success, "success")
        m.record_step(
            reward=self._reward,
            terminated=self._terminated,
            truncated=self._truncated,
            success=self._success,
        )
        if terminated or truncated:
            m.record_pre_reset(self._ids)
            self._reserved = True
        elif self._interval:
            m.draw_interval(self.apply_to(self.env))
        m.record_post_step()
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        """Close the inner env, then the manager if this wrapper owns it."""
        try:
            super().close()
        finally:
            m = self._manager
            if m is not None:
                holder = _WRAPPERS.get(m)
                if holder is not None and holder() is self:
                    del _WRAPPERS[m]  # another wrapper may use the manager now
                if self.close_manager:
                    m.close()


_WRAPPERS: weakref.WeakKeyDictionary[Any, weakref.ref[VariationWrapper]] = (
    weakref.WeakKeyDictionary()
)
"""Each manager in use and the open wrapper that records with it (see
:meth:`VariationWrapper._use`)."""


def _call_env_fn(env_fn: str | Callable[[dict[str, np.ndarray]], gym.Env], values: dict) -> Any:
    return gym.make(env_fn) if isinstance(env_fn, str) else env_fn(values)


def make_env(
    env_fn: str | Callable[[dict[str, np.ndarray]], gym.Env],
    builder: EnvBuilder,
    **wrapper_kwargs: Any,
) -> VariationWrapper:
    """Build one recorded env with ``builder``: overrides, recorder, build draws, then
    ``env_fn(build_values)`` (or ``gym.make(env_fn)``), the build values applied to it,
    wrapped in a :class:`VariationWrapper` that owns the builder's manager.

    >>> import tempfile
    >>> builder = EnvBuilder(cartpole_variations(), overrides=["gravity.sampler.low=11"],
    ...                      output=tempfile.mkdtemp())
    >>> env = make_env("CartPole-v1", builder)
    >>> _ = env.reset(); env.unwrapped.gravity >= 11
    True
    >>> env.close()
    """
    if builder.num_envs != 1:
        raise ValueError(
            f"make_env builds one env, but the builder has num_envs={builder.num_envs}; "
            "use varirec.integrations.gym_vector.make_vector_env for vector envs"
        )

    premade = _premade_env(env_fn, builder, wrapper_kwargs.get("apply_to"), "make_env")

    def make(values: dict[str, np.ndarray]) -> VariationWrapper:
        env = premade if premade is not None else _call_env_fn(env_fn, values)
        wrapper = VariationWrapper(
            env, manager=builder.manager, close_manager=True, **wrapper_kwargs
        )
        apply_build_values(builder.variations.values(), wrapper.apply_to(env), values)
        return wrapper

    try:
        return builder.build(make, apply_build=False)
    except BaseException:
        if premade is not None:
            premade.close()
        raise


def _premade_env(
    env_fn: str | Callable[[dict[str, np.ndarray]], gym.Env],
    builder: EnvBuilder,
    apply_to: Any,
    where: str,
) -> gym.Env | None:
    """For a registered env id (built without the build values): the env, made and
    checked against the variations before the builder creates the run, so a mismatch
    leaves nothing in the dataset. None for an ``env_fn`` callable (checked when built)."""
    if not isinstance(env_fn, str):
        return None
    env = gym.make(env_fn)
    try:
        target = (apply_to if callable(apply_to) else unwrapped_target)(env)
        check_env_attributes(target, builder.variations.values(), where)
    except BaseException:
        env.close()
        raise
    return env
