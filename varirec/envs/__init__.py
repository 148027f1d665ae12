"""Batched test environments and analytic test functions for sensitivity studies.

- :mod:`varirec.envs.analytic` — Ishigami and Sobol G with their exact indices,
  Borehole with brute-force reference indices.
- :mod:`varirec.envs.one_step` — those functions as one-step batched envs.
- :mod:`varirec.envs.reach` — a vectorized 3-D reach task with a scripted
  controller, every kind of variation, and a documented ground truth.
- :mod:`varirec.studies.driver` — :func:`drive_episodes`, which steps any of them through a
  recorded study.

Only numpy (and the core package) is imported: these run in the simulator process.
"""

from __future__ import annotations

from varirec.envs.analytic import (
    BOREHOLE_BOUNDS,
    BOREHOLE_NAMES,
    BOREHOLE_REFERENCE,
    borehole,
    ishigami,
    ishigami_indices,
    sobol_g,
    sobol_g_indices,
)
from varirec.envs.one_step import (
    OneStepEnv,
    borehole_variations,
    ishigami_variations,
    make_borehole_env,
    make_ishigami_env,
    make_sobol_g_env,
    sobol_g_variations,
)
from varirec.envs.reach import (
    SCENE_FRICTION,
    ReachCfg,
    ReachEnv,
    make_reach_env,
    make_reach_variations,
)
from varirec.studies.driver import BatchedEnv, StepOutput, StudyStats, drive_episodes

__all__ = [
    "BOREHOLE_BOUNDS",
    "BOREHOLE_NAMES",
    "BOREHOLE_REFERENCE",
    "SCENE_FRICTION",
    "BatchedEnv",
    "OneStepEnv",
    "ReachCfg",
    "ReachEnv",
    "StepOutput",
    "StudyStats",
    "borehole",
    "borehole_variations",
    "drive_episodes",
    "ishigami",
    "ishigami_indices",
    "ishigami_variations",
    "make_borehole_env",
    "make_ishigami_env",
    "make_reach_env",
    "make_reach_variations",
    "make_sobol_g_env",
    "sobol_g",
    "sobol_g_indices",
    "sobol_g_variations",
]
