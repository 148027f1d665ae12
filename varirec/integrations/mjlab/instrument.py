"""One call that wires a varirec recording into an mjlab env cfg.

:func:`instrument` adds to ``cfg.events``: ``varirec_startup`` (build-mode variations;
only if there are some), ``varirec_reset`` (reset-mode variations; always, since it also
finishes the episodes an explicit ``env.reset`` cuts short), ``varirec_step`` (the step's
reward and flags, before the finished envs reset) and one ``varirec_interval:<key>`` per
interval-mode variation; and to ``cfg.recorders``: ``varirec``
(:class:`~varirec.integrations.mjlab.recorder.VarirecRecorder`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from mjlab.managers.event_manager import EventTermCfg
from mjlab.managers.recorder_manager import RecorderTermCfg

from varirec.integrations.builder import as_variation_set, check_not_drawn
from varirec.integrations.mjlab.events import StepEvent, VariationEvent
from varirec.integrations.mjlab.recorder import VarirecRecorder
from varirec.integrations.mjlab.session import MjlabRecording, SuccessFn
from varirec.storage import RunWriter
from varirec.variations.variation import Variation
from varirec.variations.variation_set import VariationSet

__all__ = ["instrument", "time_out_success"]

_NAMES = ("varirec_startup", "varirec_reset", "varirec_step")


def time_out_success(env: Any) -> Any:
    """Success = the episode ended by its time limit and by no failure termination
    (``env.reset_time_outs & ~env.reset_terminated``; False at every earlier step).

    >>> import types, torch
    >>> env = types.SimpleNamespace(reset_time_outs=torch.tensor([True, True, False]),
    ...                             reset_terminated=torch.tensor([False, True, True]))
    >>> time_out_success(env).tolist()
    [True, False, False]
    """
    return env.reset_time_outs & ~env.reset_terminated


def instrument(
    cfg: Any,
    variations: VariationSet | Iterable[Variation],
    *,
    output: str | os.PathLike[str] | RunWriter | None = None,
    seed: int | None = None,
    run_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    success: SuccessFn | None = None,
    **manager_options: Any,
) -> MjlabRecording:
    """Add varirec's event terms and recorder term to the mjlab env cfg ``cfg`` (in place).

    Build the env from ``cfg`` afterwards (``ManagerBasedRlEnv(cfg, device=...)``): the
    run starts when the env is built, and ``env.close()`` closes it.

    Args:
        cfg: an mjlab ``ManagerBasedRlEnvCfg`` (e.g. ``load_env_cfg("Mjlab-Cartpole-Balance")``).
        variations: the variations to draw and record (:func:`model_variation` makes
            ones that write model fields); none may have drawn yet.
        output: a dataset directory (or a ``RunWriter``); None records nothing (the
            variations are still drawn reproducibly).
        seed: the run seed of the draws (default: ``cfg.seed``, else 0).
        run_id, metadata, **manager_options: for the varirec
            :class:`~varirec.recording.manager.RecorderManager`.
        success: ``success(env)`` -> one bool per env, read every step (the last step's
            value is the episode's); e.g. :func:`time_out_success`. None: success is
            unknown (null), as for tasks such as cartpole that define none.

    Interval-mode variations fire on mjlab's per-env timers, every
    ``VariationCfg.interval_steps`` env steps (as ``interval_range_s`` in seconds); their
    values are keyed by varirec, the moments by mjlab's timers (torch's global RNG).
    """
    for attr in ("events", "recorders", "scene", "decimation"):
        if not hasattr(cfg, attr):
            raise TypeError(
                f"`cfg` must be an mjlab env cfg (ManagerBasedRlEnvCfg), got "
                f"{type(cfg).__name__} without `{attr}`; e.g. "
                "load_env_cfg('Mjlab-Cartpole-Balance')"
            )
    taken = [n for n in _NAMES if n in cfg.events] + (
        ["varirec"] if "varirec" in cfg.recorders else []
    )
    if taken:
        raise ValueError(
            f"`cfg` already has varirec terms {taken}: instrument a fresh cfg "
            "(load_env_cfg(...) again) for each recording"
        )
    vs = as_variation_set(variations, "variations")
    check_not_drawn(vs, "instrument")
    entities = set(getattr(cfg.scene, "entities", {}) or {})
    for v in vs.values():
        entity = getattr(v.apply, "entity", None)
        if entity is not None and entity not in entities:
            raise ValueError(
                f"variation {v.key!r} writes to entity {entity!r}, which the scene of `cfg` "
                f"lacks; pick one of {sorted(entities)}"
            )
    if manager_options.get("schedule") is not None:
        raise TypeError(
            "`schedule` (a design-driven study) is not supported by the mjlab integration "
            "yet; record plain random draws and analyze them with a given-data method"
        )
    if success is not None and not callable(success):
        raise TypeError(f"`success` must be callable(env) -> bools per env, got {success!r}")
    run_seed = seed if seed is not None else (cfg.seed if cfg.seed is not None else 0)
    recording = MjlabRecording(
        vs,
        output=output,
        seed=run_seed,
        run_id=run_id,
        metadata=metadata,
        success=success,
        manager_options=manager_options,
    )
    params = {"recording": recording}
    step_dt = cfg.sim.mujoco.timestep * cfg.decimation
    if any(v.mode == "build" for v in vs.values()):
        cfg.events["varirec_startup"] = EventTermCfg(
            func=VariationEvent, mode="startup", params={**params, "mode": "startup"}
        )
    cfg.events["varirec_reset"] = EventTermCfg(
        func=VariationEvent, mode="reset", params={**params, "mode": "reset"}
    )
    cfg.events["varirec_step"] = EventTermCfg(func=StepEvent, mode="step", params=params)
    for v in vs.values():
        if v.mode == "interval":
            low, high = v.cfg.interval_steps
            # mjlab fires when the timer drops below 1e-6 s: n steps of dt, minus a margin.
            cfg.events[f"varirec_interval:{v.key}"] = EventTermCfg(
                func=VariationEvent,
                mode="interval",
                interval_range_s=((low - 0.5) * step_dt, (high - 0.5) * step_dt),
                params={**params, "mode": "interval", "key": v.key},
            )
    cfg.recorders["varirec"] = RecorderTermCfg(func=VarirecRecorder, params=params)
    return recording
