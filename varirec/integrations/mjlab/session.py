"""One recording of one mjlab env: the state that varirec's event terms and recorder
term share.

mjlab deep-copies its env cfg, and the term parameters in it, when it builds the managers;
:class:`MjlabRecording` survives that as itself (``__deepcopy__`` returns it), so the
event terms and the recorder term of one env reach the same varirec
:class:`~varirec.recording.manager.RecorderManager`.

- :class:`MjlabRecording` — the variations, the run options, and (once the env is built)
  the manager; the lifecycle steps the terms call.
- :class:`AppliedTerm` — a varirec recorder term: the value read back from the model after
  each build and reset draw, as episode columns ``<factor>@applied``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from varirec.arrays import to_host
from varirec.errors import RecorderStateError
from varirec.recording.manager import NullRecorderManager, make_recorder_manager
from varirec.recording.terms import RecorderTerm, RecorderTermCfg, TermHost
from varirec.storage import RunWriter
from varirec.variations.variation import Variation
from varirec.variations.variation_set import VariationSet

__all__ = ["APPLIED_SUFFIX", "AppliedTerm", "MjlabRecording", "SuccessFn"]

APPLIED_SUFFIX = "@applied"
"""Suffix of the episode columns that hold the applied value of a factor."""

SuccessFn = Callable[[Any], Any]
"""``success(env)`` -> one bool (or float, NaN: unknown) per env, read every step; the
value at an episode's last step is its success."""


def _readable(v: Variation) -> bool:
    return v.mode in ("build", "reset") and callable(getattr(v.apply, "read", None))


def _factor_names(v: Variation) -> list[str]:
    comps = v.spec()["components"]
    return [v.key] if not comps else [f"{v.key}[{c}]" for c in comps]


class AppliedTerm(RecorderTerm):
    """The applied value of every build- and reset-mode variation whose ``apply`` can
    ``read`` the env back (a :class:`~varirec.integrations.mjlab.fields.ModelField`),
    per episode, in columns ``<factor>@applied`` (``pole.mass@applied``,
    ``cart.friction[x]@applied``). The value is read from the model right after the
    draw is written, so it is the value in force from the episode's start; NaN where the
    variation never drew for the env.
    """

    def __init__(self, cfg: RecorderTermCfg, manager: TermHost) -> None:
        super().__init__(cfg, manager)
        n = manager.num_envs
        self.keys = [v.key for v in manager.variations.values() if _readable(v)]
        self.names = {k: _factor_names(manager.variations[k]) for k in self.keys}
        self.values = {k: np.full((n, len(self.names[k])), np.nan) for k in self.keys}

    def columns(self) -> Mapping[str, pa.DataType]:
        return {
            f"{name}{APPLIED_SUFFIX}": pa.float64() for k in self.keys for name in self.names[k]
        }

    def capture(self, env: Any, env_ids: np.ndarray | None, variations: list[Variation]) -> None:
        """Read back what ``variations`` wrote for ``env_ids`` (None: every env)."""
        for v in variations:
            if v.key in self.values:
                rows = slice(None) if env_ids is None else env_ids
                self.values[v.key][rows] = v.apply.read(env, env_ids)

    def record_pre_reset(self, env_ids: np.ndarray) -> Mapping[str, np.ndarray]:
        out = {}
        for k in self.keys:
            for j, name in enumerate(self.names[k]):
                out[f"{name}{APPLIED_SUFFIX}"] = self.values[k][env_ids, j]
        return out


class MjlabRecording:
    """What :func:`~varirec.integrations.mjlab.instrument` puts into an mjlab env cfg.

    Attributes:
        variations: the recorded variations (the same objects the caller passed).
        manager: the varirec manager, once the env is built (None before).
        env: the env it records (None before it is built).
    """

    def __init__(
        self,
        variations: VariationSet,
        *,
        output: str | os.PathLike[str] | RunWriter | None,
        seed: int,
        run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        success: SuccessFn | None = None,
        manager_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.variations = variations
        self.output = output
        self.seed = int(seed)
        self.run_id = run_id
        self.metadata = dict(metadata or {})
        self.success = success
        self.manager_options = dict(manager_options or {})
        self.manager: NullRecorderManager | None = None
        self.env: Any = None
        self.applied: AppliedTerm | None = None
        self._checked = False

    def __deepcopy__(self, memo: dict[int, Any]) -> MjlabRecording:
        return self  # mjlab copies its cfg: every copy of a term must share this recording

    # -- build -------------------------------------------------------------------------
    def resolve(self, env: Any) -> None:
        """Check every variation's target against ``env`` (before any run exists)."""
        if self.env is not None and self.env is not env:
            raise RecorderStateError(
                "this varirec recording already records another mjlab env; call "
                "varirec.integrations.mjlab.instrument on a fresh env cfg for each env"
            )
        written: dict[tuple[str, int, int | None], str] = {}
        for v in self.variations.values():
            resolve = getattr(v.apply, "resolve", None)
            targets = getattr(v.apply, "targets", None)
            try:  # a bad entity, name or field fails here
                if resolve is not None:
                    resolve(env)
                found = targets(env) if targets is not None else ()
            except ValueError as exc:
                raise ValueError(f"variation {v.key!r}: {exc}") from None
            for target in found:
                other = written.setdefault(target, v.key)
                if other != v.key:
                    raise ValueError(
                        f"variations {other!r} and {v.key!r} both write {target[0]} of the "
                        f"same element{'' if target[2] is None else f' (axis {target[2]})'}: "
                        "the last write wins, and the other's applied value is not its own "
                        "(scale and add combine with the compiled default, not with each "
                        "other); give each element one variation"
                    )

    def attach(self, env: Any) -> NullRecorderManager:
        """Make the manager for ``env`` (once; the recorder term calls this)."""
        if self.manager is not None and self.env is env:
            return self.manager
        self.resolve(env)
        options = dict(self.manager_options)
        terms = dict(options.pop("terms", None) or {})  # the user's varirec terms
        if self.output is not None and any(_readable(v) for v in self.variations.values()):
            if "applied" in terms:
                raise ValueError(
                    "the varirec term name 'applied' is taken by the mjlab integration's "
                    "applied values; rename your term"
                )
            terms["applied"] = RecorderTermCfg(term=AppliedTerm)
        meta = {"simulator": "mjlab", "num_envs": int(env.num_envs), **self.metadata}
        options.setdefault("device", env.device)  # reset draws and applied values live there
        self.manager = make_recorder_manager(
            int(env.num_envs),
            variations=self.variations,
            output=self.output,
            terms=terms or None,
            seed=self.seed,
            run_id=self.run_id,
            metadata=meta,
            env=env,
            **options,
        )
        self.env = env
        found = getattr(self.manager, "terms", {}).get("applied")
        self.applied = found if isinstance(found, AppliedTerm) else None
        return self.manager

    def _manager(self) -> NullRecorderManager:
        if self.manager is None:
            raise RecorderStateError(
                "the varirec recorder term did not run: instrument() adds it to "
                "cfg.recorders; do not remove it"
            )
        return self.manager

    def _check_fields(self, env: Any) -> None:
        if not self._checked:  # once: mjlab expands the fields after building the terms
            for v in self.variations.values():
                check = getattr(v.apply, "check_per_env", None)
                if check is not None:
                    check(env)
            self._checked = True

    # -- lifecycle steps (called by the terms) ----------------------------------------
    def draw_build(self, env: Any) -> None:
        """The startup event: build-mode variations, one value for every env."""
        self._check_fields(env)
        m = self._manager()
        m.draw_build(env)
        if self.applied is not None:
            self.applied.capture(env, None, self.variations.enabled("build"))

    def draw_reset(self, env: Any, env_ids: Any) -> None:
        """The reset event for ``env_ids``: finish episodes that no ``record_pre_reset``
        finished (an explicit ``env.reset``), then draw and apply the reset-mode
        variations for the episodes that begin, and read back what was applied."""
        self._check_fields(env)
        m = self._manager()
        ids = m.tracker.ids(to_host(env_ids, "env_ids"))  # host ids key the episode counters
        running = ids[m.tracker.started[ids]]
        if running.size:
            m.record_pre_reset(running)
        m.draw_reset(env, ids)
        if self.applied is not None:
            self.applied.capture(env, ids, self.variations.enabled("reset"))

    def draw_interval(self, env: Any, env_ids: Any, key: str) -> None:
        """An interval event of variation ``key`` fired for ``env_ids`` (None: all)."""
        self._check_fields(env)
        m = self._manager()
        ids = m.tracker.ids(None if env_ids is None else to_host(env_ids, "env_ids"))
        v = self.variations[key]
        ids = ids[m.tracker.started[ids]]  # mjlab's timers run before the first reset too
        if v.enabled and ids.size:
            v.draw(env, ids)

    def record_step(self, env: Any) -> None:
        """The step event: this step's reward, termination flags and success, for
        every env, before finished envs reset."""
        data = {  # tensors on the env's device: varirec accumulates them there
            "reward": env.reward_buf,
            "terminated": env.reset_terminated,
            "truncated": env.reset_time_outs,
        }
        if self.success is not None:
            data["success"] = self.success(env)
        self._manager().record_step(**data)

    def close(self) -> None:
        """Close the run (mjlab's ``env.close()`` does this through the recorder term)."""
        if self.manager is not None:
            self.manager.close()
