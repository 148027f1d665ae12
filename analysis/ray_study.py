"""A study fanned out on Ray: :func:`run_study_on_ray`.

The design is cut into chunks of ``(row, replicate)`` pairs (or, for
``method="random"``, of episode counts). Each Ray actor builds one batched env from the
user's factory, then runs the chunks it is handed: it replays the chunk's design rows
through its own :class:`~varirec.RecorderManager`, writing into the same run under its
own writer id (:meth:`~varirec.storage.RunWriter.join`). An actor that dies (a crash, a
lost node) is replaced, and the pairs of its chunk that have no finished episode in the
dataset are handed out again, under a new writer id.

Why the result equals the single-process run: an episode's factor values and reset seed
depend only on its design row and replicate (the design's values, the schedule's common
random numbers), not on the process or env that ran it. Each chunk attempt gets
``seq`` numbers and episode indices of its own (a range no other attempt uses), so the
as-of join of draws to episodes never mixes two writers' events, even though several
actors record the same env ids at once. Plain random draws (``method="random"``) are
keyed by ``(env, episode)``: reproducible for the same chunking, but not those of a
single process.

Ray is imported when the function runs, never by ``import varirec``; install it with
``pip install 'varirec[ray]'``.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from varirec import RecorderManager, Variation, VariationSet, open_dataset
from varirec.analysis.designs import morris_design, sobol_design
from varirec.analysis.runner import Method, StudyRun
from varirec.recording.episodes import EpisodeTracker
from varirec.storage import DatasetWarning, RunWriter
from varirec.studies.design import Design, DesignSchedule
from varirec.studies.driver import BatchedEnv, StudyStats, drive_episodes

__all__ = ["run_study_on_ray"]

log = logging.getLogger(__name__)

SEQ_STRIDE = 1 << 32
"""``seq`` numbers per chunk attempt; attempt ``a`` starts at ``a * SEQ_STRIDE``."""
MAX_ATTEMPTS = 255
"""Chunk attempts per run: ``seq`` stays below 2**40 (the as-of join's packing)."""


@dataclass(frozen=True)
class _Chunk:
    """One attempt at a chunk: what an actor needs to run it."""

    index: int
    """The chunk (stable across attempts)."""
    attempt: int
    """A run-wide attempt number: the writer id, the seq range."""
    pairs: np.ndarray
    """``(row, replicate)`` pairs to run, shape ``(k, 2)``; for random, ``(k, 0)``."""
    episode_offset: int
    """First episode index of every env in this attempt (no other attempt uses it)."""


class _StudyActor:
    """A Ray actor's state: one batched env, and the study it works for."""

    def __init__(
        self,
        make_env: Callable[[int], BatchedEnv],
        num_envs: int,
        study: dict[str, Any],
    ) -> None:
        self.env = make_env(num_envs)
        self.num_envs = num_envs
        self.study = study

    def run(self, chunk: _Chunk) -> tuple[int, int]:
        """Run one chunk into the run; returns ``(episodes, steps)``."""
        # A fresh copy per chunk: a recorder refuses variations that already drew.
        s = copy.deepcopy(self.study)
        variations: VariationSet = s["variations"]
        design: Design | None = s["design"]
        schedule = None
        num_episodes = None
        if design is not None:
            schedule = DesignSchedule(design, replicates=s["replicates"], seed=s["seed"])
            mine = {tuple(p) for p in chunk.pairs.tolist()}
            everything = [(r, k) for r in range(design.num_rows) for k in range(s["replicates"])]
            schedule.skip(np.array([p for p in everything if p not in mine], np.int64))
            design.bind(variations)
        else:
            num_episodes = len(chunk.pairs)
        tracker = EpisodeTracker(self.num_envs)
        tracker.episode[:] = chunk.episode_offset - 1
        tracker.seq = chunk.attempt * SEQ_STRIDE
        writer = RunWriter.join(
            s["output"], s["run_id"], writer_id=f"ray{chunk.attempt}", **s["writer_options"]
        )
        with RecorderManager(
            self.num_envs,
            variations=variations,
            output=writer,
            run_id=s["run_id"],
            seed=s["seed"],
            schedule=schedule,
            tracker=tracker,
            **s["manager_options"],
        ) as manager:
            stats = drive_episodes(self.env, manager, num_episodes=num_episodes)
        if design is not None:
            design.unbind(variations)
        return stats.episodes, stats.steps


def _finished_pairs(output: str, run_id: str, schedule: DesignSchedule) -> set[tuple[int, int]]:
    with warnings.catch_warnings():
        # A dead actor left an unfinished part and no final count: expected here.
        warnings.simplefilter("ignore", DatasetWarning)
        episodes = open_dataset(output).episodes(run_id, columns=["sample_id", "seed"])
    sid = episodes.column("sample_id").to_numpy(zero_copy_only=False)
    seed = episodes.column("seed").to_numpy(zero_copy_only=False)
    sid = np.nan_to_num(sid.astype(float), nan=-1).astype(np.int64)
    seed = np.nan_to_num(seed.astype(float), nan=-1).astype(np.int64)
    return {tuple(p) for p in schedule.finished_pairs(sid, seed).tolist()}


def run_study_on_ray(
    make_env: Callable[[int], BatchedEnv],
    variations: VariationSet | Iterable[Variation],
    *,
    method: Method = "sobol",
    n: int,
    output: str | os.PathLike[str],
    num_actors: int = 2,
    num_envs: int = 256,
    num_chunks: int | None = None,
    replicates: int = 1,
    second_order: bool = False,
    num_levels: int = 4,
    seed: int = 0,
    run_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    actor_options: Mapping[str, Any] | None = None,
    max_actor_failures: int = 8,
    progress: bool = True,
    **manager_options: Any,
) -> StudyRun:
    """:func:`~varirec.analysis.runner.run_study` fanned out on Ray actors, one run.

    Connects to the Ray instance already initialized (``ray.init(...)``), or starts a
    local one. Arguments as in :func:`~varirec.analysis.runner.run_study`, and:

    Args:
        num_actors: actors, each with a batched env of ``num_envs`` envs.
        num_chunks: chunks the work is cut into (default ``2 * num_actors``): the unit
            handed out, and handed out again when an actor dies.
        actor_options: Ray ``.options()`` for the actors (``num_gpus=1``, ``num_cpus``,
            ``resources``...); default ``num_cpus=1``.
        max_actor_failures: actor deaths tolerated before the study gives up.

    Raises:
        ValueError: a bad ``method``, ``n``, ``num_actors``, ``num_chunks`` or
            ``replicates``, before anything is written.
        RuntimeError: more than ``max_actor_failures`` actors died.

    Example (a 2-actor Sobol study of the Ishigami function; needs ``ray``)::

        import ray
        from varirec.envs import ishigami_variations, make_ishigami_env
        ray.init(num_cpus=2)
        study = run_study_on_ray(make_ishigami_env, ishigami_variations(), n=64,
                                 num_envs=32, output="out", num_actors=2)
        study.analyze(outcome="return").to_frame()
    """
    import ray

    if method not in ("sobol", "morris", "random"):
        raise ValueError(f"`method` must be 'sobol', 'morris' or 'random', got {method!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be a positive int, got {n!r}")
    if isinstance(num_actors, bool) or not isinstance(num_actors, int) or num_actors < 1:
        raise ValueError(f"`num_actors` must be a positive int, got {num_actors!r}")
    num_chunks = 2 * num_actors if num_chunks is None else num_chunks
    if isinstance(num_chunks, bool) or not isinstance(num_chunks, int) or num_chunks < 1:
        raise ValueError(f"`num_chunks` must be a positive int, got {num_chunks!r}")
    if not isinstance(variations, VariationSet):
        variations = VariationSet(variations)
    design: Design | None = None
    schedule: DesignSchedule | None = None
    if method == "random":
        if replicates != 1:
            raise ValueError("`replicates` applies to design rows; method='random' has none")
        pairs = np.zeros((n, 0), np.int64)
    else:
        if method == "sobol":
            design = sobol_design(variations, n, second_order=second_order, seed=seed)
        else:
            design = morris_design(variations, n, num_levels=num_levels, seed=seed)
        schedule = DesignSchedule(design, replicates=replicates, seed=seed)
        pairs = np.array(
            [(r, k) for r in range(design.num_rows) for k in range(replicates)], np.int64
        )
    num_chunks = min(num_chunks, len(pairs))
    if num_chunks > MAX_ATTEMPTS // 2:
        raise ValueError(
            f"`num_chunks` must be at most {MAX_ATTEMPTS // 2} (seq ranges per run), got "
            f"{num_chunks}; use fewer, larger chunks"
        )
    run_id = run_id or f"{method}_{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
    study_meta = {"method": method, "n": n, "replicates": replicates}
    study_meta.update(second_order=second_order, num_levels=num_levels, ray_actors=num_actors)
    meta = {"study": study_meta, **(metadata or {})}
    output = os.fspath(output)
    writer_options = dict(manager_options.pop("writer_options", None) or {})
    study = {
        "variations": variations,
        "design": design,
        "replicates": replicates,
        "seed": seed,
        "output": output,
        "run_id": run_id,
        "writer_options": writer_options,
        "manager_options": manager_options,
    }
    if not ray.is_initialized():
        ray.init()
    # Shipped before the head attaches its recorder to the variations (a writer does
    # not pickle): each actor gets its own unattached copy.
    study_ref = ray.put(study)
    if design is not None:
        design.bind(variations)
    # The head creates the run (run.json with the variations and the design); it closes
    # last, with every writer's counts.
    head = RecorderManager(
        num_envs,
        variations=variations,
        output=output,
        run_id=run_id,
        seed=seed,
        schedule=schedule,
        metadata=meta,
        writer_options=writer_options,
        **manager_options,
    )
    error: BaseException | None = None
    try:
        episodes, steps, seconds = _fan_out(
            ray,
            make_env,
            num_envs,
            study,
            study_ref,
            schedule,
            np.array_split(pairs, num_chunks),
            num_actors=num_actors,
            actor_options=dict(actor_options or {"num_cpus": 1}),
            max_actor_failures=max_actor_failures,
            progress=progress,
        )
    except BaseException as exc:
        error = exc
        raise
    finally:
        head.close(error)
    dataset = open_dataset(output)
    return StudyRun(dataset, run_id, method, StudyStats(steps, episodes, seconds, True))


def _fan_out(
    ray: Any,
    make_env: Callable[[int], BatchedEnv],
    num_envs: int,
    study: dict[str, Any],
    study_ref: Any,
    schedule: DesignSchedule | None,
    chunks: list[np.ndarray],
    *,
    num_actors: int,
    actor_options: dict[str, Any],
    max_actor_failures: int,
    progress: bool,
) -> tuple[int, int, float]:
    """Hand the chunks to actors until all ran; replace dead actors, rerun their rest."""
    import time

    clock = time.perf_counter()
    remote_actor = ray.remote(_StudyActor).options(max_restarts=0, **actor_options)
    idle = [remote_actor.remote(make_env, num_envs, study_ref) for _ in range(num_actors)]
    attempts = 0
    episode_offset = 0
    queue: deque[tuple[int, np.ndarray]] = deque(enumerate(chunks))
    in_flight: dict[Any, tuple[Any, _Chunk]] = {}
    failures = episodes = steps = 0
    total = sum(len(c) for c in chunks)
    with tqdm(total=total, desc="ray study", unit="episode", disable=not progress) as bar:
        while queue or in_flight:
            while queue and idle:
                index, pairs = queue.popleft()
                chunk = _Chunk(index, attempts, pairs, episode_offset)
                attempts += 1
                # No env runs more episodes in an attempt than it has pairs.
                episode_offset += len(pairs)
                actor = idle.pop()
                in_flight[actor.run.remote(chunk)] = (actor, chunk)
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            actor, chunk = in_flight.pop(ready[0])
            try:
                got_episodes, got_steps = ray.get(ready[0])
            except ray.exceptions.RayActorError as exc:
                if exc.actor_init_failed:  # make_env raised: another actor would too
                    raise RuntimeError(
                        f"a Ray actor could not be built (make_env({num_envs}) or unpickling "
                        f"the study failed): {exc}"
                    ) from exc
                failures += 1
                if failures > max_actor_failures:
                    raise RuntimeError(
                        f"{failures} Ray actors died (more than max_actor_failures="
                        f"{max_actor_failures}); the last: {exc}"
                    ) from exc
                left = _unfinished(study, schedule, chunk)
                log.warning(
                    "actor running chunk %d died (%s); %d of its %d episodes go to another",
                    chunk.index,
                    type(exc).__name__,
                    len(left),
                    len(chunk.pairs),
                )
                if len(left):
                    queue.append((chunk.index, left))
                idle.append(remote_actor.remote(make_env, num_envs, study_ref))
                if attempts + len(queue) > MAX_ATTEMPTS:
                    raise RuntimeError("too many chunk attempts for one run") from exc
                continue
            episodes += got_episodes
            steps += got_steps
            bar.update(got_episodes)
            idle.append(actor)
    for actor in idle:
        ray.kill(actor)
    return episodes, steps, time.perf_counter() - clock


def _unfinished(
    study: dict[str, Any], schedule: DesignSchedule | None, chunk: _Chunk
) -> np.ndarray:
    """The pairs of ``chunk`` without a finished episode in the run (random: a count)."""
    if schedule is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DatasetWarning)
            got = open_dataset(study["output"]).episodes(study["run_id"], columns=["episode"])
        episode = got.column("episode").to_numpy()
        lo, hi = chunk.episode_offset, chunk.episode_offset + len(chunk.pairs)
        done = int(((episode >= lo) & (episode < hi)).sum())
        return np.zeros((len(chunk.pairs) - done, 0), np.int64)
    finished = _finished_pairs(study["output"], study["run_id"], schedule)
    keep = [p not in finished for p in map(tuple, chunk.pairs.tolist())]
    return chunk.pairs[np.asarray(keep, bool)]
