"""Design-driven studies in the simulator: the design, its binding, and its schedule.

- :class:`Design` — a matrix of design rows in the unit cube (built by SALib in
  :mod:`varirec.analysis.designs`), the factors its columns are, and how each variation's
  values follow from them (the cfg's inverse CDF). :meth:`Design.bind` swaps design
  samplers into the variations through ``apply_cfg``, so an attached recorder keeps
  recording, and every recorded draw carries its ``sample_id`` (design row).
- :class:`DesignSchedule` — hands ``(row, replicate)`` pairs out to resetting envs
  through an :class:`~varirec.studies.episode_iterator.EpisodeIterator`, and sets each
  episode's seed. With common random numbers (the default) the rows of a base sample
  built on one base row share their episode seeds (:meth:`Design.noise_of`), so
  episode noise does not masquerade as sensitivity, nor add to a factor's S1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import ArrayLike

from varirec.errors import DesignError, UnknownNameError
from varirec.recording.episodes import EpisodeTracker
from varirec.sampling.sampler_cfgs import DesignCfg, FactorSpec, SamplerCfg
from varirec.sampling.streams import DESIGN_SEED_STREAM, CounterStream
from varirec.studies.episode_iterator import EpisodeIterator
from varirec.variations.overrides import nearest_names
from varirec.variations.variation import Variation
from varirec.variations.variation_set import VariationSet

__all__ = ["Design", "DesignSchedule"]


@dataclass(frozen=True, eq=False)
class Design:
    """Design rows in the unit cube and the variations they drive.

    Attributes:
        method: ``"sobol"`` (Saltelli layout) or ``"morris"`` (trajectories).
        factors: one :class:`FactorSpec` per column of ``unit``.
        unit: ``(rows, D)`` points in [0, 1]; column ``j`` is factor ``j``'s quantile.
        variations: for each variation key, its sampler cfg and its factor columns.
        base_size: N (base samples, or trajectories for Morris).
        seed: the seed SALib used to build the design.
        second_order: Sobol designs with the BA blocks for second-order indices.
        num_levels: Morris grid levels.
        grid_ends: Morris designs: each factor's grid end ``e``, its levels being the
            quantiles ``e + (1 - 2e) i / (L - 1)`` (None: ``0.5 / L`` for every
            factor, as designs made before these ends were kept).
        groups: Sobol designs by groups: the group name of each factor (SALib's
            ``problem["groups"]``); a base sample then has ``G + 2`` rows for ``G``
            groups, and the indices are the groups'. ``None``: every factor alone.
    """

    method: str
    factors: tuple[FactorSpec, ...]
    unit: np.ndarray
    variations: Mapping[str, tuple[SamplerCfg, tuple[int, ...]]]
    base_size: int
    seed: int | None = None
    second_order: bool = False
    num_levels: int | None = None
    groups: tuple[str, ...] | None = None
    grid_ends: tuple[float, ...] | None = None
    _originals: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.method not in ("sobol", "morris"):
            raise ValueError(f"`method` must be 'sobol' or 'morris', got {self.method!r}")
        unit = np.asarray(self.unit, dtype=float)
        if unit.ndim != 2 or unit.shape[1] != len(self.factors):
            raise ValueError(
                f"`unit` must have shape (rows, {len(self.factors)}), got {unit.shape}"
            )
        if self.groups is not None and (
            self.method != "sobol" or len(self.groups) != len(self.factors)
        ):
            raise ValueError(
                f"`groups` must name a group for each of the {len(self.factors)} factors of "
                f"a sobol design, got {len(self.groups)} names for a {self.method} design"
            )
        if self.num_rows % self.group_size:
            raise ValueError(
                f"a {self.method} design with D={self.num_factors} has rows in groups of "
                f"{self.group_size}; got {self.num_rows} rows"
            )

    @property
    def num_rows(self) -> int:
        return len(self.unit)

    @property
    def num_factors(self) -> int:
        return len(self.factors)

    @property
    def factor_names(self) -> list[str]:
        return [f.name for f in self.factors]

    @property
    def group_size(self) -> int:
        """Rows per base sample (Sobol) or per trajectory (Morris)."""
        d = self.num_factors if self.groups is None else len(self.group_names)
        if self.method == "morris":
            return d + 1
        return 2 * d + 2 if self.second_order else d + 2

    @property
    def group_names(self) -> list[str]:
        """The units the indices are for: the groups in order, else the factors."""
        if self.groups is None:
            return self.factor_names
        return list(dict.fromkeys(self.groups))

    def base_of(self, rows: np.ndarray) -> np.ndarray:
        """The base sample (or trajectory) of each design row."""
        return np.asarray(rows) // self.group_size

    def noise_of(self, rows: np.ndarray) -> np.ndarray:
        """Which episode noise each design row shares under common random numbers.

        Sobol: a base sample's rows built on its A row (A and every AB_i) share one, those
        built on its B row (B and every BA_i) another. The noise is then a column of
        each base matrix that no row swaps: S1 of a factor is its share alone (a B row
        and an AB_i row, which hold the same x_i, do not share the noise), ST its share
        with its interactions, with the noise among them (A and AB_i differ in x_i
        only). One noise for all the rows of a base sample would count the noise's
        share into every S1. Morris: one per trajectory (each step's effect is a
        difference at the same noise).

        >>> import varirec as vr
        >>> from varirec.analysis.designs import sobol_design
        >>> x = [vr.Variation(k, vr.VariationCfg(sampler=vr.UniformCfg())) for k in "ab"]
        >>> sobol_design(x, 2, seed=0).noise_of(range(8)).tolist()  # A, AB_a, AB_b, B
        [0, 0, 0, 1, 2, 2, 2, 3]
        """
        rows = np.asarray(rows)
        base = rows // self.group_size
        if self.method != "sobol":
            return base
        built_on_b = rows % self.group_size > len(self.group_names)  # BA_i and B
        return 2 * base + built_on_b

    def values(self, key: str) -> np.ndarray:
        """The native values of variation ``key`` for every row, ``(rows, *shape)``."""
        if key not in self.variations:
            raise UnknownNameError(
                f"the design has no variation {key!r}; {nearest_names(key, self.variations)}"
            )
        cfg, columns = self.variations[key]
        values = cfg.ppf(self.unit[:, list(columns)])
        # A Morris grid's ends are the quantiles 0 and 1 of a uniform or log-uniform
        # factor, where low + 1 * (high - low) (or its exp-log) may round past the range.
        ends = {c: self.factors[j].bounds for c, j in enumerate(columns)}
        ends = {c: b for c, b in ends.items() if b is not None}
        if ends and values.dtype.kind == "f":
            flat = values.reshape(len(values), -1)
            if flat.shape[1] == len(columns):
                for c, (low, high) in ends.items():
                    np.clip(flat[:, c], low, high, out=flat[:, c])
                values = flat.reshape(values.shape)
        return values

    def bind(self, variations: VariationSet) -> None:
        """Swap a design sampler into each variation of the design (listeners kept)."""
        missing = [k for k in self.variations if k not in variations]
        if missing:
            raise UnknownNameError(
                f"the design drives variations {missing} that the env does not have; "
                f"{nearest_names(missing[0], variations)}"
            )
        for key, (cfg, _) in self.variations.items():
            v: Variation = variations[key]
            self._originals[key] = v.cfg
            design_cfg = DesignCfg(values=self.values(key), base=cfg)
            v.apply_cfg(dataclasses.replace(v.cfg, sampler=design_cfg))

    def unbound(self, variations: Mapping[str, Variation]) -> list[str]:
        """Keys of this design's variations that do not replay its rows: never bound,
        unbound again, bound to another design, or missing from ``variations``."""
        out = []
        for key in self.variations:
            v = variations.get(key)
            cfg = None if v is None else v.cfg.sampler
            if not (
                isinstance(cfg, DesignCfg)
                and cfg.values.shape[:1] == (self.num_rows,)
                and np.array_equal(cfg.values, self.values(key))
            ):
                out.append(key)
        return out

    def unbind(self, variations: VariationSet) -> None:
        """Give the variations back the cfgs they had before :meth:`bind`."""
        for key, cfg in self._originals.items():
            variations[key].apply_cfg(cfg)
        self._originals.clear()

    def to_dict(self) -> dict[str, Any]:
        """What ``run.json`` stores (the matrix itself goes to the ``design`` table)."""
        return {
            "method": self.method,
            "base_size": self.base_size,
            "num_rows": self.num_rows,
            "seed": self.seed,
            "second_order": self.second_order,
            "num_levels": self.num_levels,
            "grid_ends": None if self.grid_ends is None else list(self.grid_ends),
            "group_size": self.group_size,
            "groups": None if self.groups is None else list(self.groups),
            "factors": [f.to_dict() for f in self.factors],
            "variations": {
                k: {"sampler": cfg.to_dict(), "columns": list(cols)}
                for k, (cfg, cols) in self.variations.items()
            },
        }

    def to_table(self) -> pa.Table:
        """The unit matrix, one row per ``sample_id`` (the ``design`` table)."""
        cols = {"sample_id": np.arange(self.num_rows)}
        cols.update({f.name: self.unit[:, j] for j, f in enumerate(self.factors)})
        return pa.table(cols)


class DesignSchedule:
    """Hands design rows (each ``replicates`` times) to the envs that reset.

    Args:
        design: the design.
        replicates: episodes per design row (their mean outcome is the row's output).
        common_random_numbers: episode seeds shared by the rows of a base sample built
            on one base row (:meth:`Design.noise_of`).
        seed: the run seed the episode seeds derive from.
        group_by: a factor name; rows with one value of it run consecutively (e.g. the
            scene, expensive to switch). Other keyword arguments go to
            :class:`EpisodeIterator` (``shuffle``, ``max_repeat_episodes``, ...).
    """

    def __init__(
        self,
        design: Design,
        *,
        replicates: int = 1,
        common_random_numbers: bool = True,
        seed: int = 0,
        group_by: str | None = None,
        **iterator_options: Any,
    ) -> None:
        if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
            raise ValueError(f"`replicates` must be an int >= 1, got {replicates!r}")
        self.design = design
        self.replicates = replicates
        self.common_random_numbers = common_random_numbers
        self.seed = int(seed)
        pairs = [(r, k) for r in range(design.num_rows) for k in range(replicates)]
        key = None
        if group_by is not None:
            if group_by not in design.factor_names:
                raise UnknownNameError(
                    f"cannot group by {group_by!r}: not a design factor; "
                    f"{nearest_names(group_by, design.factor_names)}"
                )
            column = design.unit[:, design.factor_names.index(group_by)]
            spec = design.factors[design.factor_names.index(group_by)]
            levels = len(spec.categories) if spec.categories else 16
            group_of = np.minimum((column * levels).astype(int), levels - 1)

            def key(pair: tuple[int, int]) -> Hashable:
                return int(group_of[pair[0]])

        iterator_options.setdefault("cycle", False)
        iterator_options.setdefault("seed", self.seed)
        self.iterator: EpisodeIterator[tuple[int, int]] = EpisodeIterator(
            pairs, group_by=key, id_of=lambda p: p, **iterator_options
        )
        self._seeds = CounterStream(self.seed, DESIGN_SEED_STREAM)
        self.handed_out = 0
        self._variations: Mapping[str, Variation] | None = None
        self._bound_checked = False

    def attach(self, variations: Mapping[str, Variation]) -> None:
        """Hand out rows to episodes of ``variations`` (a manager calls this).

        Raises:
            DesignError: the design drives variations that ``variations`` lacks.
        """
        missing = [k for k in self.design.variations if k not in variations]
        if missing:
            raise DesignError(
                f"the design drives variations {missing} that the manager does not have "
                f"({nearest_names(missing[0], variations)}); build the design from the "
                "variations you record"
            )
        self._variations = variations
        self._bound_checked = False

    def check_bound(self) -> None:
        """Raise :class:`DesignError` if the attached variations do not replay the
        design's rows (``Design.bind`` forgotten): the episodes would run plain random
        draws labelled with design rows. Checked once, at the first rows handed out,
        so the design may be bound after the recorder attached."""
        if self._bound_checked or self._variations is None:
            return
        unbound = self.design.unbound(self._variations)
        if unbound:
            d = self.design
            factors = [d.factors[j].name for k in unbound for j in d.variations[k][1]]
            raise DesignError(
                f"the design is not bound to variations {unbound} (factors {factors[:10]}): "
                "their samplers draw at random, not the design's rows; call "
                "design.bind(variations) first (before the first reset)"
            )
        self._bound_checked = True

    @property
    def num_episodes(self) -> int:
        return self.design.num_rows * self.replicates

    @property
    def remaining(self) -> int:
        """Pairs not yet handed out in this pass (before any cycling)."""
        return len(self.iterator)

    @property
    def exhausted(self) -> bool:
        """No pair is left to hand out (a non-cycling iterator ran out)."""
        return not self.iterator.cycle and len(self.iterator) == 0

    def episode_seeds(self, rows: np.ndarray, replicates: np.ndarray) -> np.ndarray:
        """Reset seeds: by (noise of the row, replicate) with common random numbers
        (:meth:`Design.noise_of`), else by (row, replicate)."""
        keys = self.design.noise_of(rows) if self.common_random_numbers else np.asarray(rows)
        return self._seeds.seeds(keys, replicates)

    def assign(self, tracker: EpisodeTracker, env_ids: np.ndarray) -> np.ndarray:
        """Give the next design rows to ``env_ids``' new episodes; returns the rows.

        Envs left without a row (the schedule ran out) get ``sample_id = -1``: they
        replay row 0 and their episodes are not part of the study.
        """
        self.check_bound()
        pairs = self.iterator.take(len(env_ids))
        rows = np.full(len(env_ids), -1, dtype=np.int64)
        seeds = np.full(len(env_ids), -1, dtype=np.int64)
        if pairs:
            got = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
            rows[: len(got)] = got[:, 0]
            seeds[: len(got)] = self.episode_seeds(got[:, 0], got[:, 1])
        tracker.sample_id[env_ids] = rows
        tracker.seed[env_ids] = seeds
        self.handed_out += len(pairs)
        return rows

    def finished_pairs(self, sample_ids: ArrayLike, seeds: ArrayLike) -> np.ndarray:
        """The ``(row, replicate)`` pairs of finished episodes, from their design rows and
        reset seeds (each pair has its own seed); shape ``(k, 2)``, sorted, unique.

        Episodes outside the design (``sample_id = -1``) or whose seed is no replicate's
        of their row are left out.
        """
        sid = np.asarray(sample_ids, dtype=np.int64).reshape(-1)
        seed = np.asarray(seeds, dtype=np.int64).reshape(-1)
        ok = (sid >= 0) & (sid < self.design.num_rows)
        sid, seed = sid[ok], seed[ok]
        reps = self.replicates
        expected = self.episode_seeds(
            np.repeat(sid, reps), np.tile(np.arange(reps, dtype=np.int64), len(sid))
        ).reshape(-1, reps)
        match = expected == seed[:, None]
        found = match.any(axis=1)
        pairs = np.stack([sid[found], match.argmax(axis=1)[found]], axis=1)
        return np.unique(pairs, axis=0).reshape(-1, 2)

    def skip(self, pairs: np.ndarray) -> int:
        """Hand out none of ``pairs`` (``(row, replicate)``, e.g. from
        :meth:`finished_pairs` of a run being resumed); returns how many were skipped."""
        return self.iterator.discard(map(tuple, np.asarray(pairs, np.int64).tolist()))

    def missing_rows(self, finished_sample_ids: Iterable[int]) -> np.ndarray:
        """Design rows with fewer finished episodes than ``replicates``."""
        counts = np.bincount(
            np.asarray([s for s in finished_sample_ids if s >= 0], dtype=np.int64),
            minlength=self.design.num_rows,
        )
        return np.flatnonzero(counts[: self.design.num_rows] < self.replicates)

    def check_complete(self, finished_sample_ids: Iterable[int]) -> None:
        """Raise :class:`DesignError` naming the rows that did not all run."""
        missing = self.missing_rows(finished_sample_ids)
        if missing.size:
            raise DesignError(
                f"{missing.size} of {self.design.num_rows} design rows have fewer than "
                f"{self.replicates} finished episodes (first: {missing[:10].tolist()}); "
                "run more steps, or analyse with the rows that ran"
            )
