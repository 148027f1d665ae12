"""varirec's mjlab event terms: class-based terms that mjlab builds as
``func(cfg=term_cfg, env=env)`` and calls as ``term(env, env_ids, **params)``.

- :class:`VariationEvent` — draws the varirec variations of one mode with varirec's
  reproducible keyed streams (by run seed, variation, env, episode) and writes them into
  the model through their ``apply`` (a :class:`~varirec.integrations.mjlab.fields.ModelField`):
  ``startup`` (build mode), ``reset``, ``interval`` (one term per variation). It declares
  the model fields it writes on the instance (``model_fields``, ``recompute``), so mjlab
  makes them per env and recomputes the derived constants after it fires.
- :class:`StepEvent` — a ``step`` event that hands the step's reward and termination
  flags to varirec before mjlab resets the finished envs (step events run after the
  rewards and before ``record_pre_reset``), so interval draws carry their episode step.

Why not mjlab's ``dr`` functions with a varirec ``dr.Distribution``: a distribution's
``sample(lo, hi, shape, device)`` gets no env ids and no episode, so it cannot key a draw
by ``(env, episode)``; these terms get the env ids and write the model themselves.

Both take one parameter, ``recording`` (a
:class:`~varirec.integrations.mjlab.session.MjlabRecording`);
:func:`~varirec.integrations.mjlab.instrument` adds them to ``cfg.events``.
"""

from __future__ import annotations

from typing import Any, Literal

from mjlab.managers.event_manager import RecomputeLevel

from varirec.integrations.mjlab.session import MjlabRecording

__all__ = ["StepEvent", "VariationEvent"]

EventMode = Literal["startup", "reset", "interval"]
_VARIREC_MODE = {"startup": "build", "reset": "reset", "interval": "interval"}


class VariationEvent:
    """Draws and applies the varirec variations of one mjlab event mode.

    ``cfg.params``: ``recording``, ``mode`` (``"startup" | "reset" | "interval"``) and,
    for ``interval``, ``key`` (the one variation of this term: each has its own timer).
    """

    def __init__(self, cfg: Any, env: Any) -> None:
        params = cfg.params
        self.recording: MjlabRecording = params["recording"]
        self.mode: EventMode = params["mode"]
        self.key: str | None = params.get("key")
        mode = _VARIREC_MODE[self.mode]
        variations = self.recording.variations
        mine = (
            [variations[self.key]]
            if self.key is not None
            else [v for v in variations.values() if v.mode == mode]
        )
        self.recording.resolve(env)  # a bad entity or name fails here, before any run exists
        if self.key is not None:  # mjlab reads the timer's range after building the term
            low, high = variations[self.key].cfg.interval_steps
            # In the built env's steps (the cfg may have changed since instrument()); mjlab
            # fires when the timer drops below 1e-6 s: n steps of dt, minus a margin.
            cfg.interval_range_s = ((low - 0.5) * env.step_dt, (high - 0.5) * env.step_dt)
        fields: list[str] = []
        level = RecomputeLevel.none
        for v in mine:
            for f in getattr(v.apply, "model_fields", ()):
                if f not in fields:
                    fields.append(f)
            level = max(level, getattr(v.apply, "recompute", RecomputeLevel.none))
        # Read by mjlab from the instance: these fields become per env.
        self.model_fields = tuple(fields)
        self.recompute = RecomputeLevel(level)

    def __call__(self, env: Any, env_ids: Any, recording: MjlabRecording, **_: Any) -> None:
        if self.mode == "startup":
            recording.draw_build(env)
        elif self.mode == "reset":
            recording.draw_reset(env, env_ids)
        else:
            assert self.key is not None
            recording.draw_interval(env, env_ids, self.key)


class StepEvent:
    """Hands each step's reward, flags and success to varirec (``cfg.params``:
    ``recording``)."""

    def __init__(self, cfg: Any, env: Any) -> None:
        self.recording: MjlabRecording = cfg.params["recording"]

    def __call__(self, env: Any, env_ids: Any, recording: MjlabRecording) -> None:
        recording.record_step(env)
