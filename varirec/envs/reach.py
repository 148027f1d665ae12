"""A vectorized 3-D reach task with a scripted controller, for sensitivity studies.

A force-controlled end effector carries a payload from a start point to a target in
3-D. The controller is fixed (no learning): a PD law with gravity compensation for
the *nominal* payload (1 kg under 9.81 m/s²), a per-axis force limit of 40 N, and
an actuation delay. Gravity, viscous joint friction (times a per-scene multiplier)
and a lateral wind gust act on the payload. An episode succeeds (``terminated``)
when the payload rests within 5 cm of the target (speed below 0.1 m/s) within 100
steps of 0.02 s, and is ``truncated`` otherwise. Reward per step is minus the
distance to the target. Each env is one numpy row: thousands step together (with
8192 envs, about 20,000 episodes per second on one core; 15,000 recorded to Parquet).

Variations (:func:`make_reach_variations`):

===============  ========  ====================================  =====================
key              mode      sampler                               acts on
===============  ========  ====================================  =====================
payload.mass     reset     UniformCfg(0.8, 2.0) kg               sag, inertia
joint.friction   reset     LogUniformCfg(0.5, 20) N·s/m          viscous drag
controller.gain  reset     LogUniformCfg(40, 400) N/m            stiffness (kp)
actuator.delay   reset     IntegerCfg(0, 3) steps                phase lag
scene            reset     ChoiceCfg(lab, factory, outdoor)      friction × 1, 4, 0.25
target.offset    reset     UniformCfg(±0.1 m) (x, y, z)          the target
world.gravity    build     UniformCfg(9.6, 10.0) m/s²            weight (one per run)
wind.gust        interval  UniformCfg(-3, 3) N, every 10-20      lateral force along y
object.color     reset     UniformCfg(0, 1)                      nothing (control)
===============  ========  ====================================  =====================

Episode noise: a per-episode calibration offset of the position sensor (1.2 cm SD
per axis), sensor noise, 5 % actuation noise and a start jitter, all a hash of the
episode's noise seed (``reset_idx(env_ids, seeds)``) and the step. With a
:class:`~varirec.studies.design.DesignSchedule` and common random numbers, every row of one
base sample sees the same noise.

Ground truth (numbers below):

- ``controller.gain`` and ``payload.mass`` matter most, largely *together*: the
  gravity compensation assumes 1 kg, so a heavier payload sags ``(m - 1) g / kp``
  below the target, which fails the 5 cm tolerance when the gain is low; a high
  gain with a long ``actuator.delay`` rings and fails too. So the gain acts both
  ways: a small first-order and a large total index.
- ``actuator.delay`` comes third. Then ``joint.friction`` and ``scene`` (its
  friction multiplier), which act only through interactions (first order about 0):
  high friction slows a low-gain approach past the time limit, and damps a delayed
  stiff loop. Then the three ``target.offset`` components (the distance to go
  changes a little).
- ``object.color`` is drawn and recorded but never read: its effect is exactly
  zero (outcomes are bitwise identical for any color; its Sobol indices are 0.0).
- ``world.gravity`` is a build-mode draw, constant within a run: a single-run
  analysis drops it (the episode table notes it as constant), and a design should
  leave it out (build the design from the reset-mode variations).
- ``wind.gust`` is interval-mode: not a factor, it is episode noise (small: the
  gust-off column barely differs). The episode table gives it no column (its draws
  happen mid-episode, and how many an episode gets depends on how long it runs).
  With a schedule, its draws and timers are keyed by the episode seed, so common
  random numbers cover it too.

Measured with ``python tests/test_envs.py`` (one minute): a Saltelli design of the
seven reset-mode variations, N = 16384 base samples, 4 replicates per row with
common random numbers (720,896 episodes), gravity 9.81. Outcomes: each row's
success rate and mean return; ± is the bootstrap ``conf`` (500 resamples).
*Given*: ``first_order_binning`` of success on 200,000 episodes of plain random
draws recorded to Parquet (success rate 0.518; ``*`` = above the dummy threshold
of 0.0001; noise share 0.23, given all nine factors). *No gust*: success ST of a Saltelli study with
N = 4096 and the gust disabled.

================  ==============  ==============  ==============  ==============  =======  =======
factor            success S1      success ST      return S1       return ST       given    no gust
================  ==============  ==============  ==============  ==============  =======  =======
controller.gain    0.074 ± 0.018   0.668 ± 0.015   0.206 ± 0.019   0.629 ± 0.017   0.065*    0.677
payload.mass       0.138 ± 0.017   0.612 ± 0.014   0.077 ± 0.013   0.317 ± 0.010   0.126*    0.630
actuator.delay     0.127 ± 0.014   0.404 ± 0.013   0.136 ± 0.014   0.395 ± 0.019   0.106*    0.391
joint.friction     0.003 ± 0.008   0.123 ± 0.007   0.013 ± 0.008   0.135 ± 0.007   0.001*    0.122
scene              0.001 ± 0.008   0.118 ± 0.007   0.011 ± 0.008   0.138 ± 0.006   0.001*    0.123
target.offset[x]  -0.001 ± 0.002   0.007 ± 0.001   0.010 ± 0.003   0.015 ± 0.001    0.000    0.006
target.offset[y]   0.001 ± 0.001   0.004 ± 0.001  -0.000 ± 0.001   0.001 ± 0.000   -0.000    0.004
target.offset[z]   0.001 ± 0.002   0.008 ± 0.001   0.008 ± 0.002   0.012 ± 0.001   -0.000    0.007
object.color       0.000 ± 0.000   0.000 ± 0.000   0.000 ± 0.000   0.000 ± 0.000    0.000    0.000
================  ==============  ==============  ==============  ==============  =======  =======

>>> import varirec as vr
>>> from varirec.studies.driver import drive_episodes
>>> env = make_reach_env(256)
>>> manager = vr.NullRecorderManager(256, variations=make_reach_variations(), seed=0)
>>> stats = drive_episodes(env, manager, num_episodes=512)
>>> stats.episodes, stats.complete
(512, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from varirec.recording.episodes import check_num_envs
from varirec.sampling.sampler_cfgs import (
    ChoiceCfg,
    IntegerCfg,
    LogUniformCfg,
    SamplerCfg,
    UniformCfg,
)
from varirec.sampling.streams import CounterStream
from varirec.studies.driver import StepOutput, label_values, require_env
from varirec.variations.variation import Mode, Variation, VariationCfg
from varirec.variations.variation_set import VariationSet

__all__ = ["SCENE_FRICTION", "ReachCfg", "ReachEnv", "make_reach_env", "make_reach_variations"]

SCENE_FRICTION: dict[str, float] = {"lab": 1.0, "factory": 4.0, "outdoor": 0.25}
"""Joint-friction multiplier of each scene."""


@dataclass(frozen=True, kw_only=True)
class ReachCfg:
    """Fixed constants of the task (the variations set the rest)."""

    dt: float = 0.02
    """Simulation and control step, s."""
    max_steps: int = 100
    """Steps before truncation."""
    start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Nominal start position, m."""
    target: tuple[float, float, float] = (0.3, 0.0, 0.2)
    """Nominal target, m (``target.offset`` moves it)."""
    tolerance: float = 0.05
    """Success radius, m."""
    settle_speed: float = 0.1
    """Speed below which the payload counts as settled, m/s."""
    nominal_mass: float = 1.0
    """The payload mass the controller compensates, kg."""
    nominal_gravity: float = 9.81
    """The gravity the controller compensates, m/s²."""
    damping_ratio: float = 1.0
    """Derivative gain ``kd = 2 ζ sqrt(kp · nominal_mass)``."""
    max_force: float = 40.0
    """Per-axis actuator limit, N."""
    max_delay: int = 4
    """Longest actuation delay the delay line holds, steps."""
    calibration_error: float = 0.012
    """SD of the per-episode offset of the position sensor, per axis, m."""
    sensor_noise: float = 0.004
    """Position sensor noise SD per step, m (velocity: 5× this, m/s)."""
    actuation_noise: float = 0.05
    """Relative SD of the applied force."""
    start_jitter: float = 0.01
    """SD of the start position, m."""


class ReachEnv:
    """``num_envs`` reach envs stepped together (every array has ``num_envs`` rows).

    Parameters that variations set (defaults in brackets): ``mass`` [1.0],
    ``friction`` [1.0], ``gain`` [100.0], ``delay`` [0], ``friction_scale`` [1.0,
    from the scene], ``target_offset`` [(0, 0, 0)], ``gravity`` [9.81, one float for
    all envs], ``gust`` [0.0; back to 0 at each episode start], ``color`` [0.5,
    never read].

    State: ``pos``, ``vel`` ``(num_envs, 3)``; ``steps``; ``done`` (the episode
    ended: the env holds still until :meth:`reset_idx`); ``seed`` (noise seeds).

    Args:
        num_envs: envs in the batch.
        cfg: task constants (default :class:`ReachCfg`).
    """

    def __init__(self, num_envs: int, cfg: ReachCfg | None = None) -> None:
        check_num_envs(num_envs)
        self.cfg = cfg = ReachCfg() if cfg is None else cfg
        if not isinstance(cfg, ReachCfg):
            raise TypeError(f"`cfg` must be a ReachCfg, got {type(cfg).__name__}")
        n = self.num_envs = int(num_envs)
        self.mass = np.full(n, 1.0)
        self.friction = np.full(n, 1.0)
        self.gain = np.full(n, 100.0)
        self.delay = np.zeros(n, dtype=np.int64)
        self.friction_scale = np.full(n, 1.0)
        self.target_offset = np.zeros((n, 3))
        self.gravity = cfg.nominal_gravity
        self.gust = np.zeros(n)
        self.color = np.full(n, 0.5)
        self.pos = np.zeros((n, 3))
        self.vel = np.zeros((n, 3))
        self.steps = np.zeros(n, dtype=np.int64)
        self.done = np.ones(n, dtype=bool)
        self.seed = np.zeros(n, dtype=np.int64)
        self.bias = np.zeros((n, 3))
        self._hold = np.array([0.0, 0.0, cfg.nominal_mass * cfg.nominal_gravity])
        self._line = np.zeros((n, cfg.max_delay + 1, 3))
        self._rows = np.arange(n)
        self._step_noise = CounterStream(0, "reach.step_noise")
        self._episode_noise = CounterStream(0, "reach.episode_noise")

    @property
    def target(self) -> np.ndarray:
        """Each env's target, ``(num_envs, 3)``."""
        return np.asarray(self.cfg.target) + self.target_offset

    def reset_idx(self, env_ids: np.ndarray, seeds: np.ndarray) -> None:
        """Start episodes for ``env_ids`` at rest, with noise seeded by ``seeds``.

        Call it after the reset draws were applied (the parameters are read at
        every step; only the noise and the state are set here).
        """
        ids = np.asarray(env_ids, dtype=np.int64)
        seeds = np.asarray(seeds, dtype=np.int64)
        if np.any(self.delay[ids] > self.cfg.max_delay) or np.any(self.delay[ids] < 0):
            raise ValueError(
                f"`delay` must be in [0, {self.cfg.max_delay}] steps, got "
                f"{np.unique(self.delay[ids]).tolist()}; raise ReachCfg.max_delay"
            )
        z = special.ndtri(self._episode_noise.uniforms(seeds, np.zeros_like(seeds), k=6))
        self.seed[ids] = seeds
        self.pos[ids] = np.asarray(self.cfg.start) + self.cfg.start_jitter * z[:, :3]
        self.bias[ids] = self.cfg.calibration_error * z[:, 3:]
        self.vel[ids] = 0.0
        self.steps[ids] = 0
        self.done[ids] = False
        self.gust[ids] = 0.0
        self._line[ids] = self._hold

    def step(self) -> StepOutput:
        """One control and physics step of every running env (ended ones hold)."""
        c = self.cfg
        active = ~self.done
        z = special.ndtri(self._step_noise.uniforms(self.seed, self.steps, k=9))
        target = self.target
        pos_obs = self.pos + self.bias + c.sensor_noise * z[:, 0:3]
        vel_obs = self.vel + 5.0 * c.sensor_noise * z[:, 3:6]
        kp = self.gain[:, None]
        kd = 2.0 * c.damping_ratio * np.sqrt(kp * c.nominal_mass)
        command = kp * (target - pos_obs) - kd * vel_obs + self._hold
        command = np.clip(command, -c.max_force, c.max_force)
        size = c.max_delay + 1
        self._line[self._rows, self.steps % size] = command
        applied = self._line[self._rows, (self.steps - self.delay) % size]
        force = applied * (1.0 + c.actuation_noise * z[:, 6:9])
        force -= (self.friction * self.friction_scale)[:, None] * self.vel
        force[:, 2] -= self.mass * self.gravity
        force[:, 1] += self.gust
        vel = self.vel + force / self.mass[:, None] * c.dt
        self.vel = np.where(active[:, None], vel, self.vel)
        self.pos = np.where(active[:, None], self.pos + self.vel * c.dt, self.pos)
        self.steps += active
        dist = np.linalg.norm(self.pos - target, axis=1)
        speed = np.linalg.norm(self.vel, axis=1)
        success = active & (dist < c.tolerance) & (speed < c.settle_speed)
        truncated = active & ~success & (self.steps >= c.max_steps)
        self.done |= success | truncated
        return StepOutput(
            reward=np.where(active, -dist, 0.0),
            terminated=success,
            truncated=truncated,
            success=success.astype(float),
        )


class _SetParam:
    """``apply(env, env_ids, values)``: write a draw into parameter ``name``.

    A build draw (``env_ids`` None) sets the value for every env. ``lookup`` maps
    labels to numbers (the scene's friction multiplier), one lookup per distinct
    label, not per env.
    """

    def __init__(self, name: str, lookup: Mapping[str, float] | None = None) -> None:
        self.name = name
        self.lookup = lookup

    def __call__(self, env: ReachEnv, env_ids: np.ndarray | None, values: np.ndarray) -> None:
        require_env(env, repr(self.name))
        if self.lookup is not None:
            values = label_values(values, self.lookup)
        if env_ids is None:
            current = getattr(env, self.name)
            if np.ndim(current) == 0:
                setattr(env, self.name, float(values[0]))
            else:
                current[...] = values[0]
        else:
            getattr(env, self.name)[env_ids] = values


def make_reach_variations() -> VariationSet:
    """The variations of :class:`ReachEnv`: every mode and sampler kind (table above).

    >>> vs = make_reach_variations()
    >>> [vs[k].mode for k in ("world.gravity", "wind.gust", "object.color")]
    ['build', 'interval', 'reset']
    """

    def var(
        key: str, sampler: SamplerCfg, param: str, mode: Mode = "reset", **kw: Any
    ) -> Variation:
        return Variation(key, VariationCfg(sampler=sampler, mode=mode, **kw), _SetParam(param))

    offset = UniformCfg(low=(-0.1,) * 3, high=(0.1,) * 3, names=("x", "y", "z"))
    return VariationSet(
        [
            var("payload.mass", UniformCfg(low=0.8, high=2.0), "mass"),
            var("joint.friction", LogUniformCfg(low=0.5, high=20.0), "friction"),
            var("controller.gain", LogUniformCfg(low=40.0, high=400.0), "gain"),
            var("actuator.delay", IntegerCfg(low=0, high=3), "delay"),
            Variation(
                "scene",
                VariationCfg(sampler=ChoiceCfg(choices=tuple(SCENE_FRICTION))),
                _SetParam("friction_scale", SCENE_FRICTION),
            ),
            var("target.offset", offset, "target_offset"),
            var("world.gravity", UniformCfg(low=9.6, high=10.0), "gravity", mode="build"),
            var(
                "wind.gust",
                UniformCfg(low=-3.0, high=3.0),
                "gust",
                mode="interval",
                interval_steps=(10, 20),
            ),
            var("object.color", UniformCfg(low=0.0, high=1.0), "color"),
        ]
    )


def make_reach_env(num_envs: int, cfg: ReachCfg | None = None) -> ReachEnv:
    """A :class:`ReachEnv` of ``num_envs`` envs (``cfg``: the task constants).

    >>> make_reach_env(3).pos.shape
    (3, 3)
    """
    return ReachEnv(num_envs, cfg)
