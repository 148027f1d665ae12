"""Record Gymnasium vector envs (``SyncVectorEnv``, ``AsyncVectorEnv``), any autoreset mode.

:func:`make_vector_env` builds the vector env through an
:class:`~varirec.integrations.builder.EnvBuilder`: the parent process applies the overrides, creates
the run (``run.json``) and draws the build-mode variations; then every sub-env is
wrapped, *inside its own env factory*, in a :class:`~varirec.integrations.gym.VariationWrapper` with
``env_id`` = its index. So the variations are drawn and applied where the sub-env
lives (the worker process of an ``AsyncVectorEnv``), each sub-env joins the run with
its own writer (``RunWriter.join``), and all rows land in one run.

Why every autoreset mode is recorded correctly: the wrapper only sees its sub-env's
own ``reset()`` and ``step()`` calls, and records an episode at the step that ends it.

- ``NEXT_STEP`` (default): the sub-env is reset during the next vector step, whose
  action is ignored and whose reward is 0 with flags False; the sub-env's ``step`` is
  not called then, so that step counts into no episode.
- ``SAME_STEP``: the sub-env is reset inside the step that ended the episode, right
  after the wrapper recorded it.
- ``DISABLED``: the caller resets with ``options={"reset_mask": mask}``; only the
  masked sub-envs' ``reset`` runs.

A reset of a running episode (``vector_env.reset()`` mid-episode) records it with
``terminated = truncated = False``; episodes still running at ``close`` are not recorded.

Event numbers (``seq``) are per writer: each sub-env's draws and episodes share one
increasing counter that starts after the parent's build draws, which is all the
as-of rule compares (a draw of that env, or a build draw for all envs).

Closing the vector env closes the sub-envs first (their writers write their counts),
then the parent's run, whose ``run.json`` then sums every writer's counts.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

try:
    from gymnasium.vector import (
        AsyncVectorEnv,
        AutoresetMode,
        SyncVectorEnv,
        VectorEnv,
        VectorWrapper,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "varirec.integrations.gym_vector needs Gymnasium; "
        'install it with pip install "varirec[gym]"'
    ) from exc

from varirec.integrations.builder import EnvBuilder, apply_build_values
from varirec.integrations.gym import (
    SuccessFn,
    VariationWrapper,
    _call_env_fn,
    _premade_env,
    check_env_attributes,
)
from varirec.recording.manager import NullRecorderManager, RecorderManager
from varirec.storage import RunWriter
from varirec.variations.variation import Variation, VariationCfg
from varirec.variations.variation_set import VariationSet

__all__ = ["RecordedVectorEnv", "make_vector_env"]

EnvFn = str | Callable[[dict[str, np.ndarray]], Any]
_WORKER_KWARGS = ("terms", "step_keys", "max_rows", "flush_seconds")


class RecordedVectorEnv(VectorWrapper):
    """A vector env whose sub-envs record into the builder's run.

    :meth:`close` closes the sub-envs (their writers) first, then the run: always
    close it, or ``run.json`` misses the sub-envs' counts. ``unwrapped.varirec`` is
    the parent's manager; with ``sync`` each sub-env's own manager is
    ``unwrapped.envs[i].unwrapped.varirec`` (with ``async`` it lives in the worker).

    Attributes:
        builder: the :class:`~varirec.integrations.builder.EnvBuilder` that made the run.
    """

    def __init__(self, env: VectorEnv, builder: EnvBuilder) -> None:
        super().__init__(env)
        self.builder = builder

    @property
    def manager(self) -> NullRecorderManager | None:
        """The parent's manager (it records the build draws; sub-envs record the rest)."""
        return self.builder.manager

    def close(self, **kwargs: Any) -> None:
        try:
            self.env.close(**kwargs)
        finally:
            self._close_run()

    def _close_run(self) -> None:
        m = self.builder.manager
        writer = getattr(m, "writer", None)
        if m is None or writer is None or writer.closed:
            return
        self.builder.close()


@dataclass(frozen=True)
class _VariationSpec:
    """What a sub-env needs to rebuild a variation: no sampler, listener or tracker."""

    key: str
    cfg: VariationCfg
    apply: Callable[..., None] | None

    def build(self) -> Variation:
        return Variation(self.key, self.cfg, self.apply)


@dataclass
class _SubEnvFactory:
    """Makes sub-env ``index`` (runs in the worker process of an AsyncVectorEnv)."""

    env_fn: EnvFn
    index: int
    build_values: dict[str, np.ndarray]
    specs: tuple[_VariationSpec, ...]
    root: str | None
    run_id: str | None
    seed: int
    base_seq: int
    manager_kwargs: dict[str, Any] = field(default_factory=dict)
    writer_options: dict[str, Any] = field(default_factory=dict)
    wrapper_kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> VariationWrapper:
        env = _call_env_fn(self.env_fn, {k: v.copy() for k, v in self.build_values.items()})
        wrapper = VariationWrapper(
            env, manager=self._manager, env_id=self.index, **self.wrapper_kwargs
        )
        try:
            check_env_attributes(wrapper.apply_to(env), self.specs, "make_vector_env")
        except BaseException:
            env.close()
            raise
        apply_build_values(self.specs, wrapper.apply_to(env), self.build_values)
        return wrapper

    def _manager(self) -> NullRecorderManager:
        """Called at the sub-env's first reset, in its process: join the run."""
        variations = VariationSet(s.build() for s in self.specs if s.cfg.mode != "build")
        if self.root is None:
            manager: NullRecorderManager = NullRecorderManager(
                self.index + 1, variations=variations, seed=self.seed
            )
        else:
            assert self.run_id is not None
            writer = RunWriter.join(
                self.root,
                self.run_id,
                writer_id=f"env{self.index}_{secrets.token_hex(4)}",
                **self.writer_options,
            )
            try:
                manager = RecorderManager(
                    self.index + 1,
                    variations=variations,
                    output=writer,
                    seed=self.seed,
                    **self.manager_kwargs,
                )
            except BaseException as exc:
                writer.close(error=exc)
                raise
        manager.tracker.seq = max(manager.tracker.seq, self.base_seq)
        return manager


def _autoreset_mode(mode: AutoresetMode | str) -> AutoresetMode:
    """An AutoresetMode from itself, its value (``"NextStep"``) or its name (``"next_step"``)."""
    if isinstance(mode, AutoresetMode):
        return mode
    for m in AutoresetMode:
        if isinstance(mode, str) and mode.lower() in (m.value.lower(), m.name.lower()):
            return m
    raise ValueError(
        f"`autoreset_mode` must be one of {[m.name for m in AutoresetMode]} (or their values "
        f"{[m.value for m in AutoresetMode]}), got {mode!r}"
    )


def make_vector_env(
    env_fn: EnvFn,
    builder: EnvBuilder,
    *,
    vectorization_mode: Literal["sync", "async"] = "sync",
    autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    success_fn: SuccessFn | None = None,
    success_key: str = "is_success",
    apply_to: Callable[[Any], Any] | None = None,
    vector_kwargs: dict[str, Any] | None = None,
) -> RecordedVectorEnv:
    """Build a recorded vector env of ``builder.num_envs`` sub-envs.

    Args:
        env_fn: a registered env id (``"CartPole-v1"``), or ``env_fn(build_values)``
            returning one sub-env (for ``async`` it must be picklable by cloudpickle).
        builder: the run: variations, overrides, output directory, seed, ``num_envs``.
        vectorization_mode: ``"sync"`` (one process) or ``"async"`` (one worker
            process per sub-env).
        autoreset_mode: any :class:`gymnasium.vector.AutoresetMode` (module docstring).
        success_fn, success_key, apply_to: as in
        :class:`~varirec.integrations.gym.VariationWrapper`.
        vector_kwargs: more arguments for ``SyncVectorEnv``/``AsyncVectorEnv``.

    Raises:
        ValueError: the builder's output is a RunWriter or the builder has a design
            schedule (sub-envs cannot share one), or a mode is unknown.

    >>> import tempfile
    >>> from varirec.integrations.gym import cartpole_variations
    >>> builder = EnvBuilder(cartpole_variations(), output=tempfile.mkdtemp(), num_envs=2)
    >>> envs = make_vector_env("CartPole-v1", builder)
    >>> obs, info = envs.reset(seed=0)
    >>> obs.shape, envs.unwrapped.varirec is builder.manager
    ((2, 4), True)
    >>> envs.close()
    """
    if vectorization_mode not in ("sync", "async"):
        raise ValueError(
            f"`vectorization_mode` must be 'sync' or 'async', got {vectorization_mode!r}"
        )
    mode = _autoreset_mode(autoreset_mode)
    if isinstance(builder.output, RunWriter):
        raise ValueError(
            "make_vector_env needs the builder's `output` as a dataset directory (sub-envs "
            "join the run from their own processes), got a RunWriter; pass its root"
        )
    if builder.manager_kwargs.get("schedule") is not None:
        raise ValueError(
            "make_vector_env cannot share one design schedule between sub-envs in different "
            "processes; run a design with a single env or a batched simulator"
        )
    probe = _premade_env(env_fn, builder, apply_to, "make_vector_env")  # before the run exists
    if probe is not None:
        probe.close()
    worker_kwargs = {k: v for k, v in builder.manager_kwargs.items() if k in _WORKER_KWARGS}
    writer_options = dict(builder.manager_kwargs.get("writer_options") or {})
    wrapper_kwargs = {"success_fn": success_fn, "success_key": success_key, "apply_to": apply_to}

    def make(values: dict[str, np.ndarray]) -> RecordedVectorEnv:
        m = builder.manager
        assert m is not None
        writer = getattr(m, "writer", None)
        specs = tuple(_VariationSpec(v.key, v.cfg, v.apply) for v in builder.variations.values())
        factories = [
            _SubEnvFactory(
                env_fn,
                i,
                values,
                specs,
                None if writer is None else str(Path(writer.root)),
                None if writer is None else writer.run_id,
                builder.seed,
                m.tracker.seq,
                worker_kwargs,
                writer_options,
                wrapper_kwargs,
            )
            for i in range(builder.num_envs)
        ]
        cls = SyncVectorEnv if vectorization_mode == "sync" else AsyncVectorEnv
        vec = cls(factories, autoreset_mode=mode, **dict(vector_kwargs or {}))
        return RecordedVectorEnv(vec, builder)

    return builder.build(make, apply_build=False)
