"""One call from a recorded dataset to ranked sensitivity indices: :func:`analyze`.

- A run recorded with a design (``run.json`` has a ``design`` entry) is analysed
  by its method: Sobol indices from the Saltelli rows, or Morris statistics from the
  trajectories. Replicates of a design row are averaged (for a binary outcome that
  is the row's success rate). Rows without a finished episode are an error that
  names them.
- Runs of plain random draws are analysed from the given data: bias-corrected
  binning first-order indices (default), RBD-FAST, or PAWN, with a dummy-factor
  threshold and, for noisy outcomes, the noise share.

Outcomes that are missing, NaN or infinite are counted, reported in the notes and
left out; they never reach an estimator.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from varirec import open_dataset
from varirec.analysis.design_check import check_design_values
from varirec.analysis.design_rows import independent_rows, run_designs
from varirec.analysis.duplicate_runs import check_duplicate_runs
from varirec.analysis.estimators._given_data_inputs import _MIN_ROWS
from varirec.analysis.estimators.categories import category_effects
from varirec.analysis.estimators.given_data import given_data_indices
from varirec.analysis.estimators.hsic import hsic_target_indices
from varirec.analysis.estimators.knn_result import KnnResult
from varirec.analysis.estimators.knn_total import knn_indices
from varirec.analysis.estimators.morris import morris_indices, per_quantile_range
from varirec.analysis.estimators.results import GivenDataResult, MorrisResult, SobolResult
from varirec.analysis.estimators.sobol import FEW_BASE_SAMPLES, sobol_indices
from varirec.analysis.failures import FailureAnalysis, failures
from varirec.analysis.study_inputs import (
    check_outcome_values,
    checked_groups,
    complete_factors,
    design_run,
    per_row_outputs,
    pick_outcome,
    study_groups,
)
from varirec.analysis.tables.episode_table import episode_table
from varirec.errors import DatasetError, DesignError, UnknownNameError
from varirec.storage import Dataset
from varirec.variations.overrides import nearest_names

__all__ = ["METHODS", "Study", "analyze"]

log = logging.getLogger(__name__)

Method = Literal["auto", "sobol", "morris", "binning", "rbd_fast", "pawn", "delta", "knn", "hsic"]
METHODS: tuple[str, ...] = (
    "auto",
    "sobol",
    "morris",
    "binning",
    "rbd_fast",
    "pawn",
    "delta",
    "knn",
    "hsic",
)
DESIGN_METHODS = ("sobol", "morris")
NEGLIGIBLE = 0.005
"""Design-driven verdicts: an index whose whole interval lies above this is an effect,
below it no effect; an interval across it is uncertain. A given-data index is an
effect where its estimator's own null (a dummy threshold, an interval off 0) says so and
its interval lies above this too."""
FEW_GIVEN = 1000
"""Below this many episodes a factor that a given-data method without intervals (PAWN,
HSIC) finds not significant reads "uncertain", not "no effect"."""
SMALL_GIVEN = 0.05
"""A given-data index that is not significant reads "no effect" where its whole interval
stays below this share of the outcome's variance, else "uncertain": with few episodes an
interval (and the dummies' reach) can be far wider."""
FEW_EVENTS = 30
"""Below this many episodes on the rarer side of a 0/1 outcome (successes, or failures),
a given-data factor found not significant reads "uncertain", not "no effect": 4
successes in 5,000 episodes cannot show that a factor decides every one of them."""
FEW_KNN = 300
"""Below this many episodes no kNN factor gets a verdict but "uncertain": its linearized
intervals run narrow there (an inert factor read "effect" in 10-15 % of seeds at 16 to
100 episodes, 2 % at 300, against 2.5 % meant)."""
FIRST_ORDER = ("binning", "rbd_fast")
"""Given-data methods of first-order indices (S1): a factor they find small reads "no
first-order effect", as one that acts through interactions only reads there too (the
demo's ``joint.friction``: S1 0.001 by binning, ST 0.13 by Sobol)."""
RESAMPLED = ("binning", "rbd_fast", "delta", "knn")
FEW_TRAJECTORIES = 10
"""Morris trajectories below which factors get no verdict: a bootstrap of a few resamples
its own handful of elementary effects (2 trajectories gave a zero-width interval and
"effect")."""
DEFAULT_RESAMPLES = 1000
"""Bootstrap resamples of :func:`analyze` when none are given."""
RBD_HARMONICS = 10
"""RBD-FAST's harmonics in :func:`analyze` (its estimator's default)."""
DELTA_RESAMPLES = 100
"""Delta's: each of its resamples fits every factor's densities again."""
"""Given-data methods whose indices get intervals (bootstrap resamples; kNN's
linearized errors): where one has none, none could be computed (too few events)."""
Result = SobolResult | MorrisResult | GivenDataResult | KnnResult


@dataclass
class Study:
    """A sensitivity study of one outcome: the estimator's result and its context.

    Attributes:
        dataset: the dataset path.
        runs: the runs analysed.
        outcome: the outcome column.
        method: the estimator used (``sobol``, ``morris``, ``binning``, ...).
        result: the typed result (``to_frame()``, ``plot()``).
        num_episodes: episodes behind the result.
        design: the design's ``run.json`` entry, for design-driven studies.
        notes: what was dropped or is worth knowing, in words.
        category_effects: for given-data studies with categorical factors, the
            outcome's mean per label with its interval
            (:func:`~varirec.analysis.estimators.categories.category_effects`).
        rarer: for a given-data study of a 0/1 outcome, ``(count, value)`` of its rarer
            value among the episodes analysed (see :data:`FEW_EVENTS`).
    """

    dataset: str
    runs: list[str]
    outcome: str
    method: str
    result: Result
    num_episodes: int
    design: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    category_effects: pd.DataFrame | None = None
    rarer: tuple[int, float] | None = None

    def to_frame(self) -> pd.DataFrame:
        """The tidy result: factor, index, estimate, conf_low, conf_high (and more)."""
        return self.result.to_frame()

    def ranking(self) -> pd.DataFrame:
        """Factors ranked by their main index, with interval and a plain verdict."""
        rows = self.ranking_frame().copy()
        rows = rows.sort_values("estimate", ascending=False, na_position="last")
        rows["verdict"] = [self._verdict(r) for _, r in rows.iterrows()]
        keep = [c for c in ("factor", "index", "estimate", "conf_low", "conf_high", "verdict")]
        return rows[keep].reset_index(drop=True)

    @property
    def groups(self) -> dict[str, list[str]]:
        """Factors that are groups of columns, with their columns: the groups of a
        ``knn`` study, or of a Sobol group design (empty when every factor is one column)."""
        found: dict[str, list[str]] = {
            g: list(m) for g, m in (getattr(self.result, "groups", None) or {}).items()
        }
        if not found and self.design and self.design.get("groups"):
            for group, factor in zip(self.design["groups"], self.design["factors"], strict=True):
                found.setdefault(group, []).append(factor["name"])
        return {g: m for g, m in found.items() if m != [g]}

    @property
    def has_intervals(self) -> bool:
        """Whether any index of the main ranking has a confidence interval."""
        frame = self.ranking_frame()
        return bool(frame["conf_low"].notna().any())

    def ranking_frame(self) -> pd.DataFrame:
        """The tidy rows of the main index (``ST``, ``mu_star`` or the given-data index)."""
        frame = self.to_frame()
        main = {"sobol": "ST", "morris": "mu_star"}.get(self.method)
        if main is None:
            main = getattr(self.result, "index", frame["index"].iloc[0])
        return frame[frame["index"] == main]

    def _verdict(self, row: pd.Series) -> str:
        if pd.isna(row["estimate"]):
            # An estimate that was not made has no verdict (not "no effect").
            reasons = getattr(self.result, "not_estimated", {})
            reason = reasons.get(row["factor"], "the estimator gave no value")
            return f"not estimated: {reason}"
        if isinstance(self.result, GivenDataResult | KnnResult) and (
            self.result.significant is not None
        ):
            j = list(self.result.factor_names).index(row["factor"])
            n = self.result.num_samples
            if isinstance(self.result, KnnResult) and n < FEW_KNN:
                return f"uncertain: only {n} episodes (kNN's intervals need {FEW_KNN})"
            low = row.get("conf_low")
            # Significant against the estimator's own null, and not negligible: kNN's
            # total index of a factor without effect ran 0.003 above 0 with intervals
            # as narrow, where several factors were discrete.
            if self.result.significant[j] and (pd.isna(low) or low > NEGLIGIBLE):
                return "effect"
            # Not significant: "no effect" only where the whole interval is small; a wide
            # one (few episodes, or few on one side of a 0/1 outcome) leaves it open.
            if self.rarer is not None and self.rarer[0] < FEW_EVENTS:
                k, value = self.rarer
                return f"uncertain: only {k} episode(s) with {self.outcome} = {value:g}"
            high = row.get("conf_high")
            if (
                pd.isna(high)
                and self.method in RESAMPLED
                and (self.method == "knn" or getattr(self.result, "num_resamples", 0))
            ):
                return "uncertain: no interval could be computed"
            if pd.isna(high):  # no interval (PAWN, HSIC): the episodes must be many
                n = self.result.num_samples
                return "no effect" if n >= FEW_GIVEN else f"uncertain: only {n} episodes"
            if high > SMALL_GIVEN:
                return "uncertain"
            # S1 alone cannot show a factor that acts through interactions only.
            return "no first-order effect" if self.method in FIRST_ORDER else "no effect"
        low, high = row.get("conf_low"), row.get("conf_high")
        if pd.isna(low) or pd.isna(high):
            return "no verdict: no interval"
        if isinstance(self.result, SobolResult) and self.result.num_samples < FEW_BASE_SAMPLES // 4:
            return f"no verdict: only N={self.result.num_samples} base samples"
        if isinstance(self.result, MorrisResult) and self.result.num_samples < FEW_TRAJECTORIES:
            return f"no verdict: only {self.result.num_samples} trajectories"
        if low > NEGLIGIBLE:
            return "effect"
        return "no effect" if high < NEGLIGIBLE else "uncertain"

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "runs": self.runs,
            "outcome": self.outcome,
            "method": self.method,
            "num_episodes": self.num_episodes,
            "notes": self.notes,
            "design": self.design,
            "groups": self.groups,
            "result": self.result.to_dict(),
            "category_effects": None
            if self.category_effects is None
            else self.category_effects.to_dict("records"),
        }

    def plot(self, ax: Any = None) -> Any:
        """Indices with their intervals (Morris: mu* against sigma)."""
        return self.result.plot(ax)

    def failures(self, **options: Any) -> FailureAnalysis:
        """Where the outcome fails, on the same runs
        (:func:`~varirec.analysis.failures.failures`; ``options`` go there, e.g.
        ``threshold=`` for a non-0/1 outcome). The runs were vetted (or pooled on
        purpose) by :func:`analyze`: they are not refused again as duplicates."""
        options.setdefault("allow_duplicate_runs", True)
        return failures(self.dataset, runs=self.runs, outcome=self.outcome, **options)


def analyze(
    dataset: str | os.PathLike[str] | Dataset,
    *,
    outcome: str | None = None,
    method: Method = "auto",
    runs: str | Sequence[str] | None = None,
    seed: int | None = 0,
    num_resamples: int | None = None,
    conf_level: float = 0.95,
    progress: Callable[[str], None] | None = None,
    allow_duplicate_runs: bool = False,
    groups: Mapping[str, Sequence[str]] | Literal["vectors", "none"] = "vectors",
) -> Study:
    """Sensitivity of ``outcome`` to every recorded factor of a dataset.

    Args:
        dataset: a dataset path or an open dataset.
        outcome: the outcome column (default: ``success`` if recorded, else the first).
        method: ``auto`` (the run's design decides; no design: ``binning``),
            ``sobol``, ``morris``, ``binning``, ``rbd_fast``, ``pawn``, ``delta``,
            ``knn`` (total indices and Shapley effects from given data) or ``hsic``
            (HSIC target sensitivity of a binary outcome, permutation p-values).
        runs: run id(s) to analyse (default: all).
        seed: seed of the bootstrap and dummy factors (0 is a seed).
        num_resamples: bootstrap resamples behind the intervals (None: 1000, or 100 for
            delta, whose every resample fits each factor's densities again: ~1 s a
            resample at 1,000 episodes x 3 factors).
        conf_level: confidence level of the intervals.
        progress: called with a short description as each stage starts.
        allow_duplicate_runs: pool runs that repeat each other's draws (same seed,
            variations and episode keys, e.g. a script run twice); refused by default.
        groups: factors analysed as one, for ``knn``: ``"vectors"`` (default: the
            components of a vector variation form one factor), ``"none"`` (every
            column its own factor) or ``{group: [variations or factor columns]}``
            (a vector variation's name stands for all its components; components
            outside every group are factors of their own). Groups are checked
            against the runs' variations before anything is read; with ``method=
            "auto"`` and no design, a mapping means ``knn``.

    Raises:
        UnknownNameError: an unknown run, outcome or method, or a group member that
            is no variation of the runs.
        ValueError: an empty group, a variation in two groups, or groups with a
            method that does not take them.
        DuplicateRunsError: runs that repeat each other's draws, unless
            ``allow_duplicate_runs``.
        DesignError: a design whose rows did not all run, draws that are not the
            stored design's rows (the design was never bound), or a design method
            asked of runs that hold no design.
    """
    if method not in METHODS:
        raise UnknownNameError(f"no method {method!r}; {nearest_names(method, METHODS)}")
    step = progress or (lambda message: None)
    ds = dataset if isinstance(dataset, Dataset) else open_dataset(dataset)
    run_ids = ds.selected(runs)
    for r in run_ids:
        ds.run(r)  # unknown run ids fail here, with the known ones listed
    if not allow_duplicate_runs:
        check_duplicate_runs(ds, run_ids)
    design_id = design_run(ds, run_ids)
    notes: list[str] = []
    if isinstance(groups, Mapping):
        groups = checked_groups(ds, run_ids, groups)  # refused here, before anything is read
        if method == "auto" and design_id is None:
            method = "knn"
            notes.append("groups declared: analysed by knn, the given-data method that groups")
    if method == "auto":
        method = ds.run(design_id).metadata["design"]["method"] if design_id else "binning"
    if num_resamples is None:
        num_resamples = DELTA_RESAMPLES if method == "delta" else DEFAULT_RESAMPLES
    if method != "knn" and (isinstance(groups, Mapping) or groups not in ("vectors", "none")):
        raise ValueError(
            f"`groups` applies to method='knn', got groups={groups!r} with method={method!r}; "
            "pass method='knn', or for a Sobol design pass groups to sobol_design(...)"
        )
    if method == "knn" and design_id is not None:
        kind = ds.run(design_id).metadata["design"]["method"]
        plain = [r for r in run_ids if not ds.run(r).metadata.get("design")]
        fix = (
            f"pick the runs of plain random draws for knn: --runs {' '.join(plain)} "
            f"(runs={plain!r})"
            if plain
            else "record a run of plain random draws for knn"
        )
        raise DesignError(
            f"run {design_id!r} holds a {kind} design, whose rows are quasi-random points or "
            "grid levels, not random draws: kNN's neighbours among them are biased (on a "
            "Sobol design of Ishigami, x3's first-order index read -0.12 where it is 0); "
            f"analyse it with --method {kind} (its own) or binning, or {fix}"
        )
    categories = None
    rarer: tuple[int, float] | None = None  # given-data 0/1 outcomes only
    if method in DESIGN_METHODS:
        if design_id is None:
            raise DesignError(
                f"method {method!r} needs a run recorded with a {method} design; these runs hold "
                "plain random draws: use --method binning (or auto)"
            )
        design = ds.run(design_id).metadata["design"]
        if design["method"] != method:
            raise DesignError(
                f"run {design_id!r} holds a {design['method']} design, not {method}; "
                f"use --method {design['method']} (or auto)"
            )
        others = [r for r in run_ids if r != design_id]
        if others:
            notes.append(
                f"a {method} study reads its design run {design_id!r} only: run(s) {others} "
                "left out (pick runs with --runs, or pool every run with --method binning)"
            )
        run_ids = [design_id]
        check_design_values(ds, design_id, design)
    step("reading episodes")
    table = episode_table(ds, run_ids)
    # The study says itself what it does about factors with missing values.
    notes += [n for n in table.notes if "has no value in" not in n]
    name = pick_outcome(table, outcome)
    check_outcome_values(table, name, run_ids, method in DESIGN_METHODS)
    if not table.factors:
        damage = ds.damage_note("draws", run_ids)
        if damage is not None:
            raise DatasetError(f"no factor has a value: the draws are damaged: {damage}")
        dropped = [n.split("'")[1] for n in table.notes if "is constant over" in n]
        raise ValueError(
            f"no factor varies over the {len(table)} episode(s) of run(s) {run_ids}"
            + (f" (constant, so dropped: {', '.join(dropped)})" if dropped else "")
            + "; record more episodes, with reset-mode variations that draw anew each episode"
        )
    step(f"estimating {method} indices of {name!r}")
    if method in DESIGN_METHODS:
        try:
            y = per_row_outputs(table, name, design, notes)
        except DesignError as exc:
            damage = ds.damage_note("episodes", run_ids)
            if damage is None:
                raise
            raise DatasetError(f"{exc}. The episodes are damaged: {damage}") from exc
        factor_names = [f["name"] for f in design["factors"]]
        if method == "sobol":
            if design.get("groups"):  # a group design: the indices are the groups'
                factor_names = list(dict.fromkeys(design["groups"]))
            result: Result = sobol_indices(
                y,
                len(factor_names),
                second_order=bool(design["second_order"]),
                factor_names=factor_names,
                num_resamples=num_resamples,
                conf_level=conf_level,
                seed=seed,
                outcome=name,
            )
        else:
            unit = ds.read("design", design_id).to_pandas().sort_values("sample_id")
            levels = int(design["num_levels"])
            # Designs of earlier versions kept no ends: theirs were 0.5 / L throughout.
            ends = np.asarray(design.get("grid_ends") or [0.5 / levels] * len(factor_names))
            grid = (unit[factor_names].to_numpy() - ends) / (1.0 - 2.0 * ends)
            result = morris_indices(
                grid,
                y,
                [[0.0, 1.0]] * len(factor_names),
                num_levels=levels,
                num_resamples=num_resamples,
                conf_level=conf_level,
                seed=seed,
                factor_names=factor_names,
                outcome=name,
            )
            result = per_quantile_range(result, ends)
        num_episodes = int(
            np.isfinite(pd.to_numeric(table.frame["sample_id"], errors="coerce")).sum()
        )
    else:
        design = None
        y, valid = table.outcome(name)
        if (~valid).any():
            notes.append(f"{int((~valid).sum())} episode(s) with no finite {name!r} were left out")
        if design_id is not None:  # its other rows repeat values: intervals would shrink
            alone = independent_rows(table.frame, run_designs(ds, run_ids))
            designed = (table.frame["run_id"] == design_id).to_numpy()
            read, of = int((alone & designed).sum()), int(designed.sum())
            valid &= alone
            if valid.sum() < _MIN_ROWS:
                kind = ds.run(design_id).metadata["design"]["method"]
                raise DesignError(
                    f"a design run analysed as given data reads its independent draws only "
                    f"(each base sample's A and B rows, or each trajectory's first): {read} "
                    f"of its {of} episodes, and a given-data method needs {_MIN_ROWS}; "
                    f"analyse it with --method {kind} (its own), or record more base samples"
                )
            notes.append(
                f"a design run analysed as given data: {read} of its {of} episodes read, "
                "the independent draws (each base sample's A and B rows, or each "
                "trajectory's first; one replicate each), since its other rows repeat "
                "their values"
            )
        try:
            factors = complete_factors(table, valid, notes)
        except DesignError as exc:
            damage = ds.damage_note("draws", run_ids)
            if damage is None:
                raise
            raise DatasetError(
                f"no factor has a value in enough episodes: the draws are damaged: {damage}"
            ) from exc
        x = table.factor_matrix(factors)
        valid &= np.isfinite(x).all(axis=1)
        x = x[valid]
        options = {"seed": seed, "conf_level": conf_level, "outcome": name}
        if method != "pawn":  # PAWN's intervals come from its slices, not a bootstrap
            options["num_resamples"] = num_resamples
        # Categorical factors keep their labels, so these estimators match them exactly.
        labelled = table.frame.loc[valid, factors].reset_index(drop=True)
        if method == "knn":
            # Intervals come from linearized standard errors, not from resamples.
            del options["num_resamples"]
            chosen = study_groups(groups, factors, notes)
            result = knn_indices(labelled, y[valid], groups=chosen, shapley=True, **options)
        elif method == "hsic":
            del options["num_resamples"]  # p-values come from permutations
            levels = np.unique(y[valid]).size
            if levels != 2:  # analyze has no threshold to make it one
                raise ValueError(
                    f"method='hsic' targets a 0/1 outcome, and {name!r} has {levels} distinct "
                    "value(s); pass outcome='success' (or another 0/1 outcome), or use "
                    "method='knn' or 'binning' for a continuous one (hsic_target_indices "
                    "takes threshold=... in Python)"
                )
            result = hsic_target_indices(labelled, y[valid], **options)
        else:
            if method == "rbd_fast" and x.shape[0] // 2 <= 2 * RBD_HARMONICS:
                raise ValueError(
                    f"method='rbd_fast' needs at least {4 * RBD_HARMONICS + 2} episodes with "
                    f"the outcome and every factor (for its {RBD_HARMONICS} harmonics), got "
                    f"{x.shape[0]}; record more episodes, or use method='binning'"
                )
            result = given_data_indices(x, y[valid], method=method, factor_names=factors, **options)
        num_episodes = int(valid.sum())
        rarer = _rarer_value(y[valid])
        labels = [f for f in factors if f in table.categorical]
        if labels:
            categories = category_effects(labelled, y[valid], factors=labels, conf_level=conf_level)
    notes += [n for n in result.notes if n not in notes]
    for note in notes:
        log.info(note)
    return Study(
        dataset=str(ds.path),
        runs=run_ids,
        outcome=name,
        method=method,
        result=result,
        num_episodes=num_episodes,
        design=design,
        notes=notes,
        category_effects=categories,
        rarer=rarer,
    )


def _rarer_value(y: np.ndarray) -> tuple[int, float] | None:
    """``(count, value)`` of the rarer value of a 0/1 outcome ``y``; None for another."""
    ones = int(np.count_nonzero(y == 1.0))
    zeros = int(np.count_nonzero(y == 0.0))
    if ones + zeros != len(y):
        return None
    return (ones, 1.0) if ones <= zeros else (zeros, 0.0)
