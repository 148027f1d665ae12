"""Morris elementary-effects screening, via SALib, with checked inputs and seeds.

Contents:

- :func:`morris_indices`: ``mu``, ``mu_star``, ``sigma`` and the bootstrap
  interval of ``mu_star`` from a Morris trajectory design (``SALib.sample.morris``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from varirec.analysis.estimators._checks import (
    _check_conf_level,
    _check_count,
    _check_factor_names,
    _check_num_resamples,
    _check_numeric,
    _check_outcome,
    _refuse_nonfinite,
)
from varirec.analysis.estimators._rng import Seed, _generator
from varirec.analysis.estimators._salib_call import _call_salib
from varirec.analysis.estimators.results import MorrisResult
from varirec.errors import DesignError

__all__ = ["morris_indices", "per_quantile_range"]

logger = logging.getLogger(__name__)


def morris_indices(
    X: ArrayLike,
    Y: ArrayLike,
    problem_or_bounds: Mapping[str, Any] | ArrayLike,
    *,
    num_levels: int = 4,
    num_resamples: int = 1000,
    conf_level: float = 0.95,
    seed: Seed = None,
    factor_names: Sequence[str] | None = None,
    scaled: bool = False,
    outcome: str | None = None,
) -> MorrisResult:
    """Morris screening statistics from ``r`` trajectories of ``D + 1`` rows each.

    Each trajectory moves one factor at a time by ``Δ = p / (2 (p - 1))`` of its
    range on a ``p``-level grid (``num_levels``); the elementary effect of factor
    ``j`` is the output change over that step divided by ``Δ`` (so in output units
    per unit of the factor's normalized range). ``mu`` is their mean (Morris 1991),
    ``mu_star`` the mean of their absolute values (Campolongo et al. 2007; robust to
    effects of opposite signs), ``sigma`` their standard deviation (non-linearity
    or interactions). ``mu_star_conf`` is SALib's ``Z × SD`` of ``mu_star`` over
    ``num_resamples`` bootstrap resamples of the elementary effects; the interval
    is ``mu_star ± mu_star_conf``, clipped at 0.

    Computed by ``SALib.analyze.morris.analyze``. Its bootstrap draws from a
    Generator built from ``seed`` (SALib 1.6 does not touch numpy's global RNG; the
    global state is nevertheless saved and restored around the call, for older
    SALib versions that did); SALib's warnings become ``notes`` (and log records).
    The problem dict is copied: SALib adds a ``groups`` key to the one it gets.

    Args:
        X: The design, shape ``(r·(D+1), D)``, as sampled by
            ``SALib.sample.morris.sample`` (in the factors' units).
        Y: The outputs, one per row of ``X``; must be finite.
        problem_or_bounds: A SALib problem dict (``num_vars``, ``names``,
            ``bounds``; real ``groups`` are not supported) or ``D`` bounds
            ``(low, high)``.
        num_levels: ``p``, the grid levels the design was sampled with.
        num_resamples: Bootstrap resamples for ``mu_star_conf`` (0: no interval).
        conf_level: Confidence level of the interval.
        seed: An int (``0`` included), a :class:`numpy.random.Generator` or ``None``.
        factor_names: ``D`` names (default: the problem's names, else ``x1..xD``).
        scaled: Scale the effects by ``SD(X) / SD(Y)`` per trajectory (Sin &
            Gernaey 2009); ``X`` must then hold the values the model received.
        outcome: Name of the outcome, recorded in the result.

    Returns:
        A :class:`~varirec.analysis.estimators.results.MorrisResult`; ``num_samples`` is ``r``.

    Raises:
        ValueError: bad shapes, NaN/inf, fewer than 2 trajectories, or names that
            disagree with the problem's.
        DesignError: ``X`` is not a set of one-factor-at-a-time trajectories.

    References:
        Morris, M. D. (1991). Factorial sampling plans for preliminary computational
        experiments. Technometrics 33(2), 161-174.
        doi:10.1080/00401706.1991.10484804

        Campolongo, F., Cariboni, J., Saltelli, A. (2007). An effective screening
        design for sensitivity analysis of large models. Environmental Modelling &
        Software 22(10), 1509-1518. doi:10.1016/j.envsoft.2006.10.004

    Example:
        >>> import numpy as np
        >>> from SALib.sample import morris as morris_sample
        >>> problem = {"num_vars": 3, "names": ["a", "b", "c"], "bounds": [[0, 1]] * 3}
        >>> X = morris_sample.sample(problem, 20, num_levels=4, seed=1)
        >>> Y = 2.0 * X[:, 0] + X[:, 1] ** 2
        >>> res = morris_indices(X, Y, problem, seed=0)
        >>> res.mu_star.round(1).tolist()
        [2.0, 1.0, 0.0]
    """
    problem, names = _problem(problem_or_bounds, factor_names)
    D = len(names)
    num_levels = _check_count(num_levels, "num_levels", 2, "pass the design's num_levels")
    num_resamples = _check_num_resamples(num_resamples)
    conf_level = _check_conf_level(conf_level)
    rng, int_seed = _generator(seed)

    x = _check_numeric(np.asarray(X), "`X`", "pass the design as sampled")
    if x.ndim != 2 or x.shape[1] != D:
        raise ValueError(
            f"`X` must have shape (r*(D+1), D) = (r*{D + 1}, {D}), got {x.shape}; pass the "
            "Morris design with one column per factor"
        )
    _refuse_nonfinite(x, "`X`")
    y = _check_outcome(Y)
    if y.size != x.shape[0]:
        raise ValueError(
            f"`Y` must have one value per row of `X` ({x.shape[0]}), got {y.size}; "
            "evaluate every design row"
        )
    if y.size % (D + 1) != 0 or y.size < 2 * (D + 1):
        raise DesignError(
            f"`X` and `Y` must hold r >= 2 whole trajectories of D+1 = {D + 1} rows, "
            f"got {y.size} rows; check that every design row ran"
        )
    r = y.size // (D + 1)
    _check_trajectories(x, r, D)

    from SALib.analyze import morris as salib_morris

    notes: list[str] = []
    si = _call_salib(
        salib_morris.analyze,
        notes,
        problem,
        x,
        y,
        num_resamples=max(num_resamples, 2),
        conf_level=conf_level,
        scaled=scaled,
        num_levels=num_levels,
        seed=rng,
    )
    mu = np.asarray(si["mu"], dtype=np.float64)
    mu_star = np.asarray(si["mu_star"], dtype=np.float64)
    sigma = np.asarray(si["sigma"], dtype=np.float64)
    if num_resamples:
        conf = np.asarray(si["mu_star_conf"], dtype=np.float64)
    else:
        conf = np.full(D, np.nan)
        notes.append("num_resamples=0: no confidence interval for mu_star.")
    logger.debug("morris_indices: D=%d r=%d levels=%d", D, r, num_levels)
    return MorrisResult(
        method="morris",
        factor_names=names,
        num_samples=r,
        num_evaluations=y.size,
        outcome=outcome,
        conf_level=conf_level,
        num_resamples=num_resamples,
        seed=int_seed,
        notes=notes,
        mu=mu,
        mu_star=mu_star,
        sigma=sigma,
        mu_star_conf=conf,
        mu_star_conf_low=np.clip(mu_star - conf, 0.0, None),
        mu_star_conf_high=mu_star + conf,
        num_levels=num_levels,
    )


def _problem(
    problem_or_bounds: Mapping[str, Any] | ArrayLike, factor_names: Sequence[str] | None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A private SALib problem dict and the factor names."""
    if isinstance(problem_or_bounds, Mapping):
        problem = copy.deepcopy(dict(problem_or_bounds))
        groups = problem.get("groups")
        # SALib's samplers write groups = names into the caller's dict: that is no grouping.
        if groups and list(groups) != list(problem.get("names") or []):
            raise ValueError(
                "`problem_or_bounds` must not define 'groups', got groups "
                f"{problem['groups']!r}; analyse factors one by one"
            )
        if "bounds" not in problem:
            raise ValueError(
                "`problem_or_bounds` must have a 'bounds' key, got keys "
                f"{sorted(problem)}; pass a SALib problem dict or a list of (low, high)"
            )
        num_vars = int(problem.get("num_vars", len(problem["bounds"])))
        given = problem.get("names")
        names = _check_factor_names(given, num_vars)
        if factor_names is not None:
            override = _check_factor_names(factor_names, num_vars)
            if given is not None and tuple(override) != names:
                raise ValueError(
                    f"`factor_names` must match the problem's names {list(names)}, got "
                    f"{list(override)}; pass only one of them"
                )
            names = override
    else:
        bounds = np.asarray(problem_or_bounds, dtype=np.float64)
        if bounds.ndim != 2 or bounds.shape[1] != 2:
            raise ValueError(
                f"`problem_or_bounds` must be a SALib problem dict or D (low, high) pairs, "
                f"got an array of shape {bounds.shape}; pass e.g. [[0, 1], [0, 1]]"
            )
        names = _check_factor_names(factor_names, bounds.shape[0])
        problem = {"num_vars": bounds.shape[0], "names": list(names), "bounds": bounds.tolist()}
    problem["num_vars"] = len(names)
    problem["names"] = list(names)
    problem.pop("groups", None)
    return problem, names


def _check_trajectories(x: NDArray[np.float64], r: int, D: int) -> None:
    """Every step of every trajectory must move exactly one factor, each factor once."""
    moved = np.diff(x.reshape(r, D + 1, D), axis=1) != 0  # (r, D, D): step × factor
    per_step = moved.sum(axis=2)
    per_factor = moved.sum(axis=1)
    if np.any(per_step != 1) or np.any(per_factor != 1):
        bad = sorted(set(np.flatnonzero((per_step != 1).any(axis=1) | (per_factor != 1).any(1))))
        raise DesignError(
            f"`X` must be Morris trajectories of {D + 1} rows in which each step moves "
            f"exactly one factor, got {len(bad)} trajectories that do not (first: "
            f"{bad[:5]}); pass the rows in the order SALib.sample.morris.sample made them"
        )


def per_quantile_range(result: MorrisResult, ends: Any = None) -> MorrisResult:
    """``result`` of a design whose grid levels sit at each factor's quantiles
    ``e + (1 - 2e) i / (L - 1)`` (``ends``: each factor's ``e``; None: ``0.5 / L``, the
    quantiles ``(i + 0.5) / L``; :func:`~varirec.analysis.designs.morris_design`), per
    unit of each factor's quantile range: a step of ``Δ`` on the grid is a step of
    ``Δ (1 - 2e)`` of that range, so the effects are ``1 / (1 - 2e)`` times SALib's
    (SALib's own where ``e = 0``). For a uniform factor they are then per unit of its
    range (``a x`` on ``U(low, high)``: ``mu_star = |a| (high - low)``), whatever ``L``.

    >>> import numpy as np
    >>> r = MorrisResult(method="morris", factor_names=["a"], num_samples=2,
    ...     num_evaluations=4, outcome=None, conf_level=0.95, num_resamples=0, seed=None,
    ...     notes=[], mu=np.array([-0.75]), mu_star=np.array([0.75]), sigma=np.zeros(1),
    ...     mu_star_conf=np.zeros(1), mu_star_conf_low=np.array([0.75]),
    ...     mu_star_conf_high=np.array([0.75]), num_levels=4)
    >>> per_quantile_range(r).mu_star.tolist()
    [1.0]
    """
    if ends is None:
        ends = 0.5 / result.num_levels
    scale = 1.0 / (1.0 - 2.0 * np.asarray(ends, dtype=float))
    fields = ("mu", "mu_star", "sigma", "mu_star_conf", "mu_star_conf_low", "mu_star_conf_high")
    return dataclasses.replace(result, **{f: getattr(result, f) * scale for f in fields})
