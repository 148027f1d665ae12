"""Build an env with its variations recorded from the very first draw: :class:`EnvBuilder`.

:meth:`EnvBuilder.build` runs, in this order (and nothing else may reorder it):

1. the Hydra-style overrides are applied to the variations (``cube.mass.sampler.high=2``);
2. the :class:`~varirec.recording.manager.RecorderManager` is created and its recorder attaches to
   every variation (the overridden cfgs are what ``run.json`` describes);
3. the build-mode variations draw, once, for every env (``env_id = -1``);
4. ``make_env(build_values)`` constructs the env; then the ``apply`` callables of the
   build-mode variations run once on it (unless ``apply_build=False``);
5. the env exposes the manager as ``env.unwrapped.varirec`` (or ``env.varirec``).

The recorder lives on the builder's manager, never inside a cfg: cfgs are frozen and
hold no listeners, so deep-copying a variation's cfg or the env's cfg (as Isaac Lab
and Gymnasium's ``env.spec`` do) cannot orphan the recorder.

Contents: :class:`EnvBuilder`, :func:`check_not_drawn`, :func:`expose`.

>>> import tempfile, varirec as vr
>>> scene = vr.Variation(
...     "scene", vr.VariationCfg(sampler=vr.ChoiceCfg(choices=("a", "b")), mode="build")
... )
>>> builder = EnvBuilder([scene], output=tempfile.mkdtemp(), run_id="r")
>>> env = builder.build(lambda values: {"scene": str(values["scene"][0])})
>>> env["scene"] in ("a", "b"), env["varirec"] is builder.manager
(True, True)
>>> builder.close()
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from varirec.errors import RecorderStateError
from varirec.recording.episodes import check_num_envs
from varirec.recording.manager import NullRecorderManager, make_recorder_manager
from varirec.recording.recorder import VariationRecorder
from varirec.storage import RunWriter
from varirec.variations.variation import Variation, VariationCfg
from varirec.variations.variation_set import VariationSet

__all__ = ["EXPOSED_ATTRIBUTE", "EnvBuilder", "apply_build_values", "check_not_drawn", "expose"]

EnvT = TypeVar("EnvT")

EXPOSED_ATTRIBUTE = "varirec"
"""Name of the attribute that holds the manager on the (unwrapped) env."""


def as_variation_set(variations: VariationSet | Iterable[Variation], what: str) -> VariationSet:
    """``variations`` as a :class:`VariationSet` holding the *same* Variation objects."""
    if isinstance(variations, VariationSet):
        return variations
    if isinstance(variations, Variation | str) or not isinstance(variations, Iterable):
        raise TypeError(
            f"`{what}` must be a VariationSet or an iterable of Variation, got "
            f"{type(variations).__name__}; e.g. VariationSet([mass, friction])"
        )
    return VariationSet(variations)


def check_not_drawn(variations: VariationSet, where: str) -> None:
    """Raise :class:`RecorderStateError` if any variation drew before recording began.

    >>> import varirec as vr
    >>> v = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    >>> _ = v.draw(env_ids=[0])
    >>> check_not_drawn(vr.VariationSet([v]), "EnvBuilder.build")
    Traceback (most recent call last):
    ...
    varirec.errors.RecorderStateError: EnvBuilder.build: variation(s) 'mass' (1 draw(s)) ...
    """
    drawn = [f"{v.key!r} ({v.num_draws} draw(s))" for v in variations.values() if v.num_draws]
    if drawn:
        raise RecorderStateError(
            f"{where}: variation(s) {', '.join(drawn)} already drew before the recorder was "
            "attached, so those draws would be missing from the dataset; create the "
            "variations afresh and attach the recorder (build the env) before any draw"
        )


def expose(env: Any, manager: NullRecorderManager) -> None:
    """Set ``manager`` as ``env.unwrapped.varirec`` (``env.varirec`` without ``unwrapped``).

    A ``dict`` env (handy in tests and examples) gets a ``"varirec"`` key instead.

    Raises:
        TypeError: the env takes no new attributes (``__slots__``); give it a ``varirec``
            slot or keep the builder around and use ``builder.manager``.
    """
    if isinstance(env, dict):
        env[EXPOSED_ATTRIBUTE] = manager
        return
    target = getattr(env, "unwrapped", env)
    try:
        setattr(target, EXPOSED_ATTRIBUTE, manager)
    except (AttributeError, TypeError) as exc:
        raise TypeError(
            f"cannot set `{EXPOSED_ATTRIBUTE}` on the env ({type(target).__name__}): {exc}; "
            f"give the class a `{EXPOSED_ATTRIBUTE}` attribute or slot, or use builder.manager"
        ) from None


class _HasBuildCfg(Protocol):
    key: str
    cfg: VariationCfg
    apply: Callable[..., None] | None


def apply_build_values(
    variations: Iterable[_HasBuildCfg], target: Any, values: Mapping[str, np.ndarray]
) -> None:
    """Run each enabled build-mode variation's ``apply(target, None, values)`` once, on the
    env (or the object its values go to) that exists now."""
    for v in variations:
        if v.cfg.mode == "build" and v.cfg.enabled and v.apply is not None:
            v.apply(target, None, values[v.key].copy())


class EnvBuilder(Generic[EnvT]):
    """Builds one env (or one vector env) whose variations are recorded from the start.

    One builder builds one run: :meth:`build` may be called once. The manager is
    created in :meth:`build`, not here, so overrides can still be changed until then.

    Args:
        variations: the env's variations (a :class:`VariationSet`; the *same* objects
            are used and their cfgs swapped by the overrides). None of them may have
            drawn yet.
        overrides: Hydra-style ``"key.path=value"`` strings (one string is one override).
        output: the dataset directory or a :class:`~varirec.storage.RunWriter`; None
            records nothing (episodes are still tracked and draws still keyed).
        seed: the run seed of the reproducible draws.
        run_id: the run's id (default: a UTC timestamp).
        num_envs: envs in the batch the manager tracks.
        metadata: user metadata for ``run.json``.
        **manager_kwargs: passed to :func:`~varirec.recording.manager.make_recorder_manager`
            (``terms``, ``step_keys``, ``schedule``, ``max_rows``, ``writer_options``).

    Attributes:
        manager: the manager, from step 2 of :meth:`build` on (None before).
        build_values: key -> values (shape ``(1, ...)``) of the build-mode draws.
        env: the built env (None before :meth:`build` returns).
        stages: the build steps done so far, in order (for logs and tests).
    """

    def __init__(
        self,
        variations: VariationSet | Iterable[Variation],
        *,
        overrides: Sequence[str] | str = (),
        output: str | os.PathLike[str] | RunWriter | None = None,
        seed: int = 0,
        run_id: str | None = None,
        num_envs: int = 1,
        metadata: Mapping[str, Any] | None = None,
        **manager_kwargs: Any,
    ) -> None:
        self.variations = as_variation_set(variations, "variations")
        overrides = (overrides,) if isinstance(overrides, str) else tuple(overrides)
        bad = [o for o in overrides if not isinstance(o, str)]
        if bad:
            raise TypeError(
                f"`overrides` must be strings like 'mass.sampler.high=2.0', got {bad[:3]!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise TypeError(f"`seed` must be an int, got {seed!r}")
        check_num_envs(num_envs)
        if "variations" in manager_kwargs or "num_envs" in manager_kwargs:
            raise TypeError("pass `variations` and `num_envs` to EnvBuilder itself, once")
        self.overrides = overrides
        self.output = output
        self.seed = int(seed)
        self.run_id = run_id
        self.num_envs = int(num_envs)
        self.metadata = dict(metadata or {})
        self.manager_kwargs = dict(manager_kwargs)
        self.manager: NullRecorderManager | None = None
        self.build_values: dict[str, np.ndarray] = {}
        self.env: EnvT | None = None
        self.stages: list[str] = []

    @property
    def recorder(self) -> VariationRecorder | None:
        """The :class:`VariationRecorder` attached to the variations (None: no output)."""
        term = getattr(self.manager, "terms", {}).get("variations")
        return None if term is None else term.recorder

    @property
    def run_path(self) -> str | None:
        """The run directory (None before :meth:`build`, or without output)."""
        writer = getattr(self.manager, "writer", None)
        return None if writer is None else os.fspath(writer.path)

    def build(
        self, make_env: Callable[[dict[str, np.ndarray]], EnvT], *, apply_build: bool = True
    ) -> EnvT:
        """Run the five build steps (module docstring) and return the env.

        Args:
            make_env: called once as ``make_env(build_values)`` with a fresh copy of the
                build draws (key -> array of shape ``(1, ...)``); returns the env. When
                it runs, the manager exists and records, and the draws are made.
            apply_build: run the build-mode variations' ``apply(env, None, values)`` on
                the built env (False: ``make_env`` applies them itself, e.g. to each
                sub-env of a vector env).

        Raises:
            RecorderStateError: the builder already built, or a variation already drew
                (nothing is written then).
        """
        if self.stages:
            raise RecorderStateError(
                f"this EnvBuilder already built (stages done: {self.stages}); make a new "
                "EnvBuilder (with fresh variations) for each run"
            )
        if not callable(make_env):
            raise TypeError(f"`make_env` must be callable(build_values) -> env, got {make_env!r}")
        check_not_drawn(self.variations, "EnvBuilder.build")
        self.variations.override(*self.overrides)
        self.stages.append("overrides")
        try:
            manager = make_recorder_manager(
                self.num_envs,
                variations=self.variations,
                output=self.output,
                seed=self.seed,
                run_id=self.run_id,
                metadata=self.metadata,
                **self.manager_kwargs,
            )
        except RecorderStateError as exc:
            raise RecorderStateError(f"EnvBuilder could not attach the recorder: {exc}") from exc
        self.manager = manager
        self.stages.append("attach")
        try:
            # Drawn and recorded now; applied once the env exists.
            self.build_values = manager.draw_build(None, apply=False)
            self.stages.append("build_draws")
            env = make_env({k: v.copy() for k, v in self.build_values.items()})
            if env is None:
                raise TypeError("`make_env` returned None; it must return the env it built")
            if apply_build:
                apply_build_values(self.variations.values(), env, self.build_values)
            self.stages.append("make_env")
            expose(env, manager)
            if manager.env is None:
                manager.env = env
            self.stages.append("expose")
        except BaseException as exc:
            manager.close(error=exc)
            raise
        self.env = env
        return env

    def close(self, error: BaseException | None = None) -> None:
        """Close the run (``error``: why it ended early). Idempotent."""
        if self.manager is not None:
            self.manager.close(error=error)

    def __enter__(self) -> EnvBuilder[EnvT]:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        self.close(error=exc)

    def __repr__(self) -> str:
        return (
            f"EnvBuilder({list(self.variations)}, num_envs={self.num_envs}, "
            f"seed={self.seed}, stages={self.stages})"
        )
