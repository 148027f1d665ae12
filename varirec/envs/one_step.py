"""Analytic test functions as one-step batched envs, for end-to-end validation.

Each env's inputs ``x`` are set by reset-mode variations; an episode is one step
whose reward (so its return) is ``f(x)``. A Sobol study run through the recorder,
written to Parquet and read back then recovers the analytic indices of
:mod:`varirec.envs.analytic` — the whole chain (design binding, schedule,
attribution, storage, episode table, estimator) is checked against known numbers.

- :class:`OneStepEnv` — ``num_envs`` envs evaluating a function of their inputs;
  success is ``f(x) > success_threshold``, or a Bernoulli draw with probability
  ``success_prob(x)`` from the episode's noise seed (a binary outcome with a known
  success probability), or unknown.
- :func:`make_ishigami_env` / :func:`ishigami_variations` — Ishigami on
  ``[-pi, pi]^3``, three scalar variations ``x1, x2, x3``.
- :func:`make_borehole_env` / :func:`borehole_variations` — the Borehole function,
  eight scalar variations on its usual uniform ranges.
- :func:`make_sobol_g_env` / :func:`sobol_g_variations` — Sobol G on ``[0, 1]^D``,
  one vector variation ``x`` (factors ``x[0] .. x[D-1]``).

>>> import varirec as vr
>>> from varirec.studies.driver import drive_episodes
>>> env = make_ishigami_env(4)
>>> m = vr.NullRecorderManager(4, variations=ishigami_variations(), seed=0)
>>> drive_episodes(env, m, num_episodes=4).steps
1
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from varirec.envs.analytic import BOREHOLE_BOUNDS, BOREHOLE_NAMES, borehole, ishigami, sobol_g
from varirec.recording.episodes import check_num_envs
from varirec.sampling.sampler_cfgs import UniformCfg
from varirec.sampling.streams import CounterStream
from varirec.studies.driver import StepOutput, label_values, require_env
from varirec.variations.variation import Variation, VariationCfg
from varirec.variations.variation_set import VariationSet

__all__ = [
    "OneStepEnv",
    "borehole_variations",
    "ishigami_variations",
    "make_borehole_env",
    "make_ishigami_env",
    "make_sobol_g_env",
    "sobol_g_variations",
]

_NOISE_KEY = "one_step.success"


class OneStepEnv:
    """A batch of one-step episodes: reward ``fn(x)`` with ``x`` set by variations.

    Args:
        num_envs: envs in the batch.
        fn: ``fn(x) -> y``, ``x`` of shape ``(n, num_inputs)``, ``y`` of shape ``(n,)``.
        num_inputs: columns of ``x``.
        success_threshold: success is ``fn(x) > success_threshold``.
        success_prob: success is ``u < success_prob(x)``, with ``u`` uniform from the
            episode's noise seed (common random numbers make ``u`` equal across the
            rows of one base sample). Exclusive with ``success_threshold``.

    Attributes:
        x: ``(num_envs, num_inputs)`` inputs (NaN until a variation sets them).
    """

    def __init__(
        self,
        num_envs: int,
        fn: Callable[[np.ndarray], np.ndarray],
        num_inputs: int,
        *,
        success_threshold: float | None = None,
        success_prob: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        check_num_envs(num_envs)
        if success_threshold is not None and success_prob is not None:
            raise ValueError(
                "give `success_threshold` or `success_prob`, not both; "
                "a success is either a threshold on f(x) or a Bernoulli draw"
            )
        self.num_envs = int(num_envs)
        self.fn = fn
        self.x = np.full((self.num_envs, num_inputs), np.nan)
        self.success_threshold = success_threshold
        self.success_prob = success_prob
        self.seed = np.zeros(self.num_envs, dtype=np.int64)
        self._done = np.ones(self.num_envs, dtype=bool)
        self._noise = CounterStream(0, _NOISE_KEY)

    @staticmethod
    def setter(
        columns: Sequence[int] | int, lookup: Mapping[Any, float] | None = None
    ) -> Callable[[OneStepEnv, np.ndarray | None, np.ndarray], None]:
        """An ``apply`` callable writing a variation's values into ``x[:, columns]``.

        ``lookup`` maps drawn labels (a categorical variation's choices) to numbers.

        >>> env = OneStepEnv(2, lambda x: x[:, 0], 1)
        >>> OneStepEnv.setter(0, {"a": 0.0, "b": 1.0})(env, np.array([1]), np.array(["b"]))
        >>> env.x[:, 0].tolist()
        [nan, 1.0]
        """
        return _Setter(np.atleast_1d(np.asarray(columns, dtype=np.int64)), lookup)

    def reset_idx(self, env_ids: np.ndarray, seeds: np.ndarray) -> None:
        """Start one-step episodes for ``env_ids`` with noise seeds ``seeds``."""
        self._done[env_ids] = False
        self.seed[env_ids] = seeds

    def step(self) -> StepOutput:
        """Evaluate ``fn`` for every env; every running episode ends here."""
        active = ~self._done
        x = np.where(active[:, None], self.x, 0.0)
        y = np.where(active, self.fn(x), 0.0)
        if self.success_threshold is not None:
            success = (y > self.success_threshold).astype(float)
        elif self.success_prob is not None:
            u = self._noise.uniforms(self.seed, np.zeros(self.num_envs, dtype=np.int64))[:, 0]
            success = (u < self.success_prob(x)).astype(float)
        else:
            success = np.full(self.num_envs, np.nan)
        terminated = active.copy()
        self._done[:] = True
        return StepOutput(
            reward=y,
            terminated=terminated,
            truncated=np.zeros(self.num_envs, dtype=bool),
            success=success,
        )


class _Setter:
    """``apply(env, env_ids, values)`` writing into ``env.x[env_ids][:, cols]``."""

    def __init__(self, cols: np.ndarray, lookup: Mapping[Any, float] | None = None) -> None:
        self.cols = cols
        self.lookup = None if lookup is None else dict(lookup)

    def __call__(self, env: OneStepEnv, env_ids: np.ndarray | None, values: np.ndarray) -> None:
        require_env(env, f"inputs {self.cols.tolist()}")
        if self.lookup is not None:
            values = label_values(values, self.lookup)
        vals = np.asarray(values, dtype=float).reshape(len(values), -1)
        if env_ids is None:  # a build draw: one row for every env
            env.x[:, self.cols] = vals[0]
        else:
            env.x[np.ix_(env_ids, self.cols)] = vals


def make_ishigami_env(
    num_envs: int, a: float = 7.0, b: float = 0.1, *, success_threshold: float | None = None
) -> OneStepEnv:
    """One-step envs with reward ``ishigami(x, a, b)``; inputs from :func:`ishigami_variations`.

    >>> env = make_ishigami_env(2)
    >>> env.x.shape
    (2, 3)
    """
    return OneStepEnv(num_envs, lambda x: ishigami(x, a, b), 3, success_threshold=success_threshold)


def ishigami_variations() -> VariationSet:
    """Reset-mode variations ``x1, x2, x3``, each uniform on ``[-pi, pi]``.

    >>> list(ishigami_variations())
    ['x1', 'x2', 'x3']
    """
    cfg = VariationCfg(sampler=UniformCfg(low=-np.pi, high=np.pi))
    return VariationSet(Variation(f"x{j + 1}", cfg, _Setter(np.array([j]))) for j in range(3))


def make_sobol_g_env(
    num_envs: int, a: ArrayLike, *, success_threshold: float | None = None
) -> OneStepEnv:
    """One-step envs with reward ``sobol_g(x, a)``; inputs from :func:`sobol_g_variations`.

    >>> make_sobol_g_env(2, a=[0, 1, 9]).x.shape
    (2, 3)
    """
    coef = np.asarray(a, dtype=float)
    sobol_g(np.zeros((1, coef.size)), coef)  # checks the coefficients
    return OneStepEnv(
        num_envs, lambda x: sobol_g(x, coef), coef.size, success_threshold=success_threshold
    )


def sobol_g_variations(a: ArrayLike) -> VariationSet:
    """One reset-mode vector variation ``x``, uniform on ``[0, 1]^D`` (``D = len(a)``).

    >>> sobol_g_variations([0, 1, 9])["x"].spec()["components"]
    ['0', '1', '2']
    """
    d = int(np.asarray(a).size)
    cfg = VariationCfg(sampler=UniformCfg(low=(0.0,) * d, high=(1.0,) * d))
    return VariationSet([Variation("x", cfg, _Setter(np.arange(d)))])


def make_borehole_env(num_envs: int, *, success_threshold: float | None = None) -> OneStepEnv:
    """One-step envs with reward ``borehole(x)``; inputs from :func:`borehole_variations`.

    >>> make_borehole_env(2).x.shape
    (2, 8)
    """
    return OneStepEnv(num_envs, borehole, 8, success_threshold=success_threshold)


def borehole_variations() -> VariationSet:
    """Eight scalar reset-mode variations ``rw, r, Tu, Hu, Tl, Hl, L, Kw``, each uniform
    on its :data:`~varirec.envs.analytic.BOREHOLE_BOUNDS` range.

    >>> list(borehole_variations())[:3]
    ['rw', 'r', 'Tu']
    """
    return VariationSet(
        Variation(name, VariationCfg(sampler=UniformCfg(low=lo, high=hi)), _Setter(np.array([j])))
        for j, (name, (lo, hi)) in enumerate(zip(BOREHOLE_NAMES, BOREHOLE_BOUNDS, strict=True))
    )
