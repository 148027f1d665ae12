"""varirec's mjlab recorder term: registered in ``cfg.recorders``, it drives the varirec
manager from mjlab's recorder hooks.

- ``__init__`` (mjlab builds recorder terms after the event terms, before the startup
  events): makes the varirec manager and the run.
- ``record_pre_reset(env_ids)`` (only in ``step()`` with ``cfg.auto_reset``): the
  finished episodes are recorded (length, return, terminated, truncated, success, the
  applied values) while they are intact, and their next index is reserved.
- ``record_post_reset(env_ids)``: the new episodes start, after their reset draws. The
  first ``env.reset()`` fires only this hook: it starts episode 0 and records no
  episode.
- ``record_post_step()``: with ``cfg.auto_reset=False`` the finished envs' episodes
  are recorded here (mjlab fires no ``record_pre_reset`` then).
- ``close()``: ``env.close()`` closes the run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mjlab.managers.recorder_manager import RecorderTerm, RecorderTermCfg

from varirec.arrays import to_host
from varirec.integrations.mjlab.session import MjlabRecording

__all__ = ["VarirecRecorder"]


class VarirecRecorder(RecorderTerm):
    """The mjlab recorder term of a varirec recording (``cfg.params``: ``recording``)."""

    def __init__(self, cfg: RecorderTermCfg, env: Any) -> None:
        super().__init__(cfg, env)
        self.recording: MjlabRecording = cfg.params["recording"]
        self.manager = self.recording.attach(env)

    def record_pre_reset(self, env_ids: Any) -> None:
        self.manager.record_pre_reset(env_ids)  # a tensor on the env's device

    def record_post_reset(self, env_ids: Any) -> None:
        self.manager.record_post_reset(env_ids)

    def record_post_step(self) -> None:
        env = self._env
        if not env.cfg.auto_reset:  # no record_pre_reset comes: finish them here
            done = np.flatnonzero(to_host(env.reset_buf, "reset_buf"))
            done = done[self.manager.tracker.started[done]]
            if done.size:
                self.manager.record_pre_reset(done)
        self.manager.record_post_step()

    def close(self) -> None:
        self.manager.close()
