"""Build Sobol (Saltelli) and Morris designs from an env's variations, with SALib.

Every factor is sampled in the unit cube and mapped to its distribution by its
sampler cfg's inverse CDF (:meth:`varirec.SamplerCfg.ppf`): continuous factors get
their quantiles, integer and categorical factors are floored into their categories
(SALib has no categorical inputs). Sensitivity indices are invariant to these
monotone maps of each input, so the study measures the variations as the env sees
them.

>>> import varirec as vr
>>> vs = vr.VariationSet([
...     vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2))),
...     vr.Variation("scene", vr.VariationCfg(sampler=vr.ChoiceCfg(choices=("a", "b")))),
... ])
>>> d = sobol_design(vs, 8, seed=0)
>>> d.num_rows, d.factor_names
(32, ['mass', 'scene'])
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from SALib.sample import morris as morris_sample
from SALib.sample import sobol as sobol_sample

from varirec import DesignCfg, FactorSpec, SamplerCfg, Variation, VariationSet
from varirec.analysis.estimators.groups import salib_groups, vector_groups
from varirec.sampling.streams import as_generator
from varirec.studies.design import Design

__all__ = ["design_factors", "morris_design", "sobol_design"]

log = logging.getLogger(__name__)

# Keep quantiles off 0 and 1: the inverse CDF of an unbounded distribution is infinite there.
_EPS = 1e-12


def design_factors(
    variations: VariationSet | Iterable[Variation],
) -> tuple[list[FactorSpec], dict[str, tuple[SamplerCfg, tuple[int, ...]]]]:
    """The factors of the enabled reset-mode variations, in order.

    A design varies factors per episode: build-mode variations (one draw per run),
    interval-mode ones (drawn mid-episode, episode noise) and constants cannot be
    design factors and are left out (and logged).
    """
    items = variations.values() if isinstance(variations, VariationSet) else variations
    factors: list[FactorSpec] = []
    mapping: dict[str, tuple[SamplerCfg, tuple[int, ...]]] = {}
    for v in items:
        if not v.enabled:
            continue
        cfg = v.cfg.sampler
        if isinstance(cfg, DesignCfg):
            if cfg.base is None:
                raise ValueError(f"variation {v.key!r} replays a design with no base cfg")
            cfg = cfg.base
        if v.mode != "reset":
            log.info("variation %r is %s-mode: not a design factor", v.key, v.mode)
            continue
        specs = cfg.factor_specs(v.key)
        if not specs:
            log.info("variation %r is constant: not a design factor", v.key)
            continue
        start = len(factors)
        factors.extend(specs)
        mapping[v.key] = (cfg, tuple(range(start, len(factors))))
    if not factors:
        raise ValueError(
            "the variations have no factors to vary per episode (all disabled, constant, "
            "build- or interval-mode)"
        )
    return factors, mapping


def _problem(factors: list[FactorSpec], groups: list[str] | None = None) -> dict:
    problem = {
        "num_vars": len(factors),
        "names": [f.name for f in factors],
        "bounds": [[0.0, 1.0]] * len(factors),
    }
    if groups is not None:
        problem["groups"] = groups
    return problem


def _design_groups(
    factors: list[FactorSpec], groups: Mapping[str, Sequence[str]] | str | None
) -> list[str] | None:
    """One group name per factor, or ``None`` when every factor stands alone."""
    names = [f.name for f in factors]
    if groups is None or groups == "none":
        return None
    if groups == "vectors":
        groups = vector_groups(names)
    elif isinstance(groups, str):
        raise ValueError(
            f'`groups` must be "vectors", "none", None or a mapping, got {groups!r}; '
            'pass e.g. groups={"cam": ["cam[x]", "cam[y]", "cam[z]"]}'
        )
    labels = salib_groups(names, groups)
    return None if len(set(labels)) == len(labels) else labels


def sobol_design(
    variations: VariationSet | Iterable[Variation],
    base_size: int,
    *,
    second_order: bool = False,
    seed: int | None = 0,
    scramble: bool = True,
    groups: Mapping[str, Sequence[str]] | str | None = None,
) -> Design:
    """A Saltelli design for Sobol indices: ``N * (D + 2)`` rows (``N * (2D + 2)`` with
    second order), built by :func:`SALib.sample.sobol.sample`.

    Args:
        variations: the env's variations.
        base_size: N, a power of two (Sobol sequences balance only at powers of two).
        second_order: include the BA blocks for second-order indices.
        seed: the scrambling seed (0 is a seed).
        scramble: scramble the Sobol sequence (Owen scrambling).
        groups: factors varied and analysed as one: ``"vectors"`` (the components of
            each vector variation), ``{group: [factor names]}``, or ``None``/``"none"``
            (every factor alone, the default). A group design has ``N * (G + 2)``
            rows for ``G`` groups (SALib's ``problem["groups"]``): fewer runs, and
            the indices are the groups'.

    >>> import varirec as vr
    >>> cam = vr.VariationCfg(sampler=vr.UniformCfg(low=(0.0,) * 3, high=(1.0,) * 3))
    >>> vs = vr.VariationSet([vr.Variation("cam", cam), vr.Variation("mass", cam)])
    >>> d = sobol_design(vs, 8, groups="vectors")
    >>> d.num_rows, d.group_names
    (32, ['cam', 'mass'])
    """
    if isinstance(base_size, bool) or not isinstance(base_size, int | np.integer) or base_size < 1:
        raise ValueError(f"`base_size` must be a positive int, got {base_size!r}")
    if not isinstance(second_order, bool | np.bool_):  # "yes" would be taken as True
        raise TypeError(f"`second_order` must be True or False, got {second_order!r}")
    if base_size & (base_size - 1):
        lower = 1 << (int(base_size).bit_length() - 1)
        raise ValueError(
            f"`base_size` must be a power of two for a Sobol design, got {base_size}; "
            f"use {lower} or {lower * 2}"
        )
    factors, mapping = design_factors(variations)
    labels = _design_groups(factors, groups)
    x = sobol_sample.sample(
        _problem(factors, labels),
        int(base_size),
        calc_second_order=second_order,
        scramble=scramble,
        seed=as_generator(seed),
    )
    return Design(
        method="sobol",
        factors=tuple(factors),
        unit=np.clip(x, _EPS, 1 - _EPS),
        variations=mapping,
        base_size=int(base_size),
        seed=seed,
        second_order=second_order,
        groups=None if labels is None else tuple(labels),
    )


_DISCRETE_END = 1e-9
"""A discrete factor's grid end: its levels reach its first and last categories (a
quantile of exactly 1 is past the last for some kinds)."""


def grid_ends(factors: list[FactorSpec], num_levels: int) -> np.ndarray:
    """Each factor's Morris grid end ``e`` (its levels are the quantiles ``e + (1 - 2e)
    i / (L - 1)``): 0 for a continuous uniform or log-uniform factor, whose quantile 1
    is its high end; :data:`_DISCRETE_END` for a discrete one, whose levels must reach
    its end categories (at ``(i + 0.5) / L`` a Bernoulli(0.1) never drew 1 and read no
    effect); else (infinite ends, a normal) ``0.5 / L``.

    >>> from varirec.sampling.cfg_base import FactorSpec
    >>> grid_ends([FactorSpec("a", "unif", (0, 1)), FactorSpec("b", "norm", (0, 1))], 4)
    array([0.   , 0.125])
    """
    return np.array(
        [
            0.0
            if f.bounds is not None
            else _DISCRETE_END
            if f.categories is not None
            else 0.5 / num_levels
            for f in factors
        ]
    )


def morris_design(
    variations: VariationSet | Iterable[Variation],
    trajectories: int,
    *,
    num_levels: int = 4,
    optimal_trajectories: int | None = None,
    seed: int | None = 0,
) -> Design:
    """A Morris design: ``trajectories * (D + 1)`` rows on a ``num_levels`` grid.

    The grid points ``g = 0, 1/(L-1), ..., 1`` are each factor's quantiles
    ``e + (1 - 2e) g``: SALib's own grid (``e = 0``: low to high) for a uniform or
    log-uniform factor, ``e`` just above 0 for the discrete kinds (their levels reach the
    first and last categories), and ``e = 0.5 / L`` (the quantiles ``(i + 0.5) / L``)
    for the others, whose ends may be infinite (a normal). The ends are kept
    (``Design.grid_ends``), and
    :func:`varirec.analysis.estimators.morris.per_quantile_range` maps the steps back.
    (With ``e = 0.5 / L`` on every factor, every step was exactly half a factor's
    range at ``L = 4``: an effect of period half the range, as Ishigami's
    ``sin(x2)**2`` on ``[-pi, pi]``, read as none.)

    Args:
        trajectories: N, the number of trajectories (or candidates, with
            ``optimal_trajectories``).
        num_levels: grid levels (even; 4 is the usual choice).
        optimal_trajectories: keep this many maximally spread trajectories out of N
            (Campolongo et al. 2007); slow past about 200 candidates.
        seed: the design seed (0 is a seed).
    """
    if isinstance(trajectories, bool) or not isinstance(trajectories, int) or trajectories < 2:
        raise ValueError(f"`trajectories` must be an int >= 2, got {trajectories!r}")
    bad = isinstance(num_levels, bool) or not isinstance(num_levels, int | np.integer)
    if bad or num_levels < 2 or num_levels % 2:
        raise ValueError(f"`num_levels` must be an even int >= 2, got {num_levels!r}")
    if optimal_trajectories is not None and not 2 <= optimal_trajectories < trajectories:
        raise ValueError(
            f"`optimal_trajectories` must be in [2, trajectories={trajectories}), "
            f"got {optimal_trajectories}"
        )
    factors, mapping = design_factors(variations)
    grid = morris_sample.sample(
        _problem(factors),
        trajectories,
        num_levels=num_levels,
        optimal_trajectories=optimal_trajectories,
        seed=as_generator(seed),
    )
    ends = grid_ends(factors, num_levels)
    unit = ends + (1.0 - 2.0 * ends) * (np.rint(grid * (num_levels - 1)) / (num_levels - 1))
    return Design(
        method="morris",
        factors=tuple(factors),
        unit=unit,
        variations=mapping,
        base_size=optimal_trajectories or trajectories,
        seed=seed,
        num_levels=num_levels,
        grid_ends=tuple(ends.tolist()),
    )
