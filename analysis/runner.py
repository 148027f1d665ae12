"""One call from an env factory and its variations to a recorded study: :func:`run_study`.

It does, in order, what a design-driven study takes five pieces for: the SALib design
(:func:`~varirec.analysis.designs.sobol_design` or
:func:`~varirec.analysis.designs.morris_design`), binding it to the variations through
``apply_cfg`` (:meth:`~varirec.studies.design.Design.bind`), the
:class:`~varirec.studies.design.DesignSchedule` (replicates, common random numbers), the
:class:`~varirec.RecorderManager` writing the run, and the study driver
(:func:`~varirec.studies.driver.drive_episodes`). ``method="random"`` records plain
random draws instead, for the given-data estimators. The pieces stay public for
those who need another arrangement.

``resume=True`` continues a run whose process died: the same call (same ``run_id``,
``method``, ``n``, ``replicates``, ``seed``) runs only the design rows (or, for
``method="random"``, the number of episodes) that have no finished episode yet, in a
new writer of the same run (:func:`~varirec.studies.resume.resume_point`,
:meth:`~varirec.storage.RunWriter.resume`).

>>> import tempfile
>>> from varirec.envs import ishigami_variations, make_ishigami_env
>>> out = tempfile.mkdtemp()
>>> study = run_study(make_ishigami_env, ishigami_variations(), method="sobol", n=16,
...                   num_envs=32, output=out, progress=False)
>>> study.stats.episodes, study.run_id in study.dataset.run_ids()
(80, True)
>>> sorted(study.analyze(outcome="return").ranking()["factor"])
['x1', 'x2', 'x3']
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from varirec import RecorderManager, Variation, VariationSet, open_dataset
from varirec.analysis.designs import morris_design, sobol_design
from varirec.analysis.study import Study, analyze
from varirec.errors import DatasetError, EnvError
from varirec.recording.episodes import EpisodeTracker
from varirec.storage import Dataset, RunWriter
from varirec.studies.design import DesignSchedule
from varirec.studies.driver import BatchedEnv, StudyStats, drive_episodes
from varirec.studies.resume import check_same_variations, resume_point

__all__ = ["StudyRun", "run_study"]

Method = Literal["sobol", "morris", "random"]


@dataclass(frozen=True)
class StudyRun:
    """A recorded study: where it is, and what the driver did."""

    dataset: Dataset
    """The dataset the run was written to."""
    run_id: str
    """The run's id in :attr:`dataset`."""
    method: Method
    """How the episodes' values were chosen."""
    stats: StudyStats
    """Steps, episodes and time of the recording."""

    def analyze(self, **options: Any) -> Study:
        """:func:`~varirec.analysis.study.analyze` on this run (``options`` go there)."""
        return analyze(self.dataset, runs=self.run_id, **options)


def run_study(
    make_env: Callable[[int], BatchedEnv],
    variations: VariationSet | Iterable[Variation],
    *,
    method: Method = "sobol",
    n: int,
    output: str | os.PathLike[str],
    num_envs: int = 256,
    replicates: int = 1,
    second_order: bool = False,
    num_levels: int = 4,
    seed: int = 0,
    run_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    policy: str | None = None,
    progress: bool = True,
    resume: bool = False,
    **manager_options: Any,
) -> StudyRun:
    """Build the design, bind it, schedule it, record it; return the dataset.

    Args:
        make_env: ``make_env(num_envs)`` builds the batched env (a
            :class:`~varirec.studies.driver.BatchedEnv`). It is called after the
            design is bound, so build-mode variations are drawn for the new env.
        variations: the env's variations (the enabled reset-mode ones are the factors).
        method: ``"sobol"`` (a Saltelli design, ``n`` base samples, a power of two),
            ``"morris"`` (``n`` trajectories on ``num_levels`` levels) or ``"random"``
            (``n`` episodes of plain random draws, for the given-data estimators).
        n: the design's size (see ``method``).
        output: the dataset directory.
        num_envs: envs in the batch.
        replicates: episodes per design row; their mean is the row's outcome.
        second_order: a Sobol design that also gives second-order indices.
        num_levels: the Morris grid.
        seed: the run seed (design, draws and episode seeds).
        run_id: the run's id (default ``<method>_<UTC time>``).
        metadata: user metadata for ``run.json``.
        policy: the name of the policy this run evaluates, recorded as
            ``metadata["policy"]``. Two runs with the same ``seed`` and variations draw
            the same values and reset seeds per episode: change only ``make_env`` (the
            policy) and :func:`~varirec.analysis.compare.compare` pairs their episodes.
        progress: show a progress bar.
        resume: continue run ``run_id`` (whose process died) instead of creating it:
            only the ``(row, replicate)`` pairs without a finished episode run (for
            ``method="random"``, ``n`` minus the finished episodes). The other
            arguments must be those of the first call; the values per pair are then
            those an uninterrupted run records.
        **manager_options: more :class:`~varirec.RecorderManager` arguments.

    Raises:
        ValueError: a bad ``method``, ``n`` or ``replicates``, or ``resume`` without
            ``run_id``, before anything is written.
        DatasetError: ``resume`` of a run recorded with other study arguments.
    """
    if method not in ("sobol", "morris", "random"):
        raise ValueError(f"`method` must be 'sobol', 'morris' or 'random', got {method!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be a positive int, got {n!r}")
    if resume and run_id is None:
        raise ValueError(
            "`resume=True` needs the `run_id` of the run to continue; pass run_id=... "
            "(varirec inspect DATASET lists the runs)"
        )
    if not isinstance(variations, VariationSet):
        variations = VariationSet(variations)
    schedule = None
    if method == "random":
        if replicates != 1:
            raise ValueError("`replicates` applies to design rows; method='random' has none")
        total = n
    else:
        if method == "sobol":
            design = sobol_design(variations, n, second_order=second_order, seed=seed)
        else:
            design = morris_design(variations, n, num_levels=num_levels, seed=seed)
        schedule = DesignSchedule(design, replicates=replicates, seed=seed)
        design.bind(variations)
        total = schedule.num_episodes
    run_id = run_id or f"{method}_{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
    study = {"method": method, "n": n, "replicates": replicates}
    study.update(second_order=second_order, num_levels=num_levels)
    meta = {"study": study, **(metadata or {})}
    if policy is not None:
        if not isinstance(policy, str) or not policy:
            raise ValueError(f"`policy` must be a non-empty name, got {policy!r}")
        meta["policy"] = policy
    tracker: EpisodeTracker | None = None
    target: str | os.PathLike[str] | RunWriter = output
    if resume:
        dataset = open_dataset(output)
        _check_same_study(dataset, run_id, study, seed)
        check_same_variations(dataset, run_id, variations.specs())
        point = resume_point(dataset, run_id, schedule)
        if schedule is not None:
            schedule.skip(point.pairs_finished)
            total = schedule.remaining
        else:
            total = n = max(0, n - point.episodes_finished)
        # Killed before its design part was written (within the first flush window):
        # the same schedule rebuilds the same design, which a design analysis reads.
        stored = dataset.read("design", run_id) if schedule is not None else None
        lost_design = stored is not None and stored.num_rows == 0
        if lost_design:  # the draws recorded so far must be the rebuilt design's rows
            _check_draws_follow(dataset, run_id, schedule.design)
        elif stored is not None and total > 0:
            _check_same_design(stored, schedule.design, run_id)
        if total == 0:
            if lost_design:
                with RunWriter.resume(output, run_id) as writer:
                    writer.append("design", schedule.design.to_table())
                dataset = open_dataset(output)
            return StudyRun(dataset, run_id, method, StudyStats(0, 0, 0.0, True))
        tracker = point.tracker(num_envs)
    # Before the run is made or joined: an env that cannot be built leaves no run behind.
    env = _built_env(make_env, num_envs)
    if resume:
        options = {
            "max_queue": 4,
            "max_seconds_per_part": manager_options.get("flush_seconds", 5.0) / 2,
            **dict(manager_options.pop("writer_options", None) or {}),
        }
        target = RunWriter.resume(output, run_id, **options)
        if lost_design:
            target.append("design", schedule.design.to_table())
    with (
        RecorderManager(
            num_envs,
            variations=variations,
            output=target,
            run_id=run_id,
            seed=seed,
            schedule=schedule,
            metadata=meta,
            tracker=tracker,
            **manager_options,
        ) as manager,
        tqdm(total=total, desc=f"{method} study", unit="episode", disable=not progress) as bar,
    ):
        stats = drive_episodes(
            env,
            manager,
            num_episodes=n if method == "random" else None,
            progress=bar.update,
        )
    return StudyRun(open_dataset(output), run_id, method, stats)


def _built_env(make_env: Callable[[int], BatchedEnv], num_envs: int) -> BatchedEnv:
    """``make_env(num_envs)``, checked for what :func:`drive_episodes` needs."""
    if not callable(make_env):
        raise EnvError(
            f"`make_env` must be a callable that builds the batched env, got {make_env!r}; "
            "e.g. make_env=lambda n: MyEnv(num_envs=n)"
        )
    env = make_env(num_envs)
    lacking = [a for a in ("reset_idx", "step") if not callable(getattr(env, a, None))]
    if lacking or getattr(env, "num_envs", None) != num_envs:
        got = (
            f"without {' and '.join(lacking)}()"
            if lacking
            else f"with num_envs={getattr(env, 'num_envs', None)!r}"
        )
        raise EnvError(
            f"make_env({num_envs}) must return a batched env with num_envs == {num_envs}, "
            f"reset_idx(env_ids, seeds) and step() (varirec.studies.driver.BatchedEnv), got "
            f"{type(env).__name__} {got}; nothing was recorded"
        )
    return env


_OTHER_DESIGN = (
    "the variations' distributions or the design's options differ from this call's, or "
    "another varirec version began it (Morris designs made before `Design.grid_ends` "
    "was kept put a uniform factor's levels at the quantiles (i + 0.5) / L); finish it "
    "with the variations and the varirec that began it, or start a new run"
)


def _check_same_design(stored: Any, design: Any, run_id: str) -> None:
    """Refuse to resume a run whose stored design rows are not the ones this call
    rebuilds: its new episodes would follow other rows."""
    frame = stored.to_pandas().sort_values("sample_id")
    names = design.factor_names
    same = len(frame) == design.num_rows and set(names) <= set(frame.columns)
    if same:
        same = bool(np.allclose(frame[names].to_numpy(float), design.unit, rtol=0, atol=1e-12))
    if not same:
        raise DatasetError(
            f"run {run_id!r} holds other design rows than this call rebuilds: {_OTHER_DESIGN}"
        )


def _check_draws_follow(dataset: Dataset, run_id: str, design: Any) -> None:
    """Refuse to resume a run that lost its design table where the draws it recorded
    are not the rows this call rebuilds (the table is written from them)."""
    from varirec.analysis.design_check import check_design_values
    from varirec.errors import DesignError

    try:
        check_design_values(dataset, run_id, design.to_dict(), rows=design.to_table())
    except DesignError:
        raise DatasetError(
            f"run {run_id!r} lost its design table, and its recorded draws are not the rows "
            f"this call rebuilds: {_OTHER_DESIGN}"
        ) from None


def _check_same_study(dataset: Dataset, run_id: str, study: dict[str, Any], seed: int) -> None:
    """Refuse to resume a run that another study (method, n, replicates, seed) recorded."""
    metadata = dataset.run(run_id).metadata
    recorded = {**(metadata.get("user", {}).get("study") or {}), "seed": metadata.get("seed")}
    given = {**study, "seed": seed}
    differ = [k for k in given if k in recorded and recorded[k] != given[k]]
    if differ:
        shown = ", ".join(f"{k}={recorded[k]!r} (given {given[k]!r})" for k in differ)
        raise DatasetError(
            f"run {run_id!r} was recorded by another study: {shown}; resume it with the "
            "arguments of its first call"
        )
