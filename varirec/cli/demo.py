"""``varirec demo``: the main job on the built-in reach env, start to finish.

1. A design-driven Sobol study: a Saltelli design over the reset-mode variations of
   :mod:`varirec.envs.reach`, each row run ``replicates`` times with common random
   numbers, recorded to a Parquet dataset.
2. A given-data pass: plain random draws of the same variations, recorded as a
   second run.
3. Both analysed (Sobol indices of the success rate; bias-corrected binning of
   success with a dummy threshold), ranked factors printed, and an HTML report.
4. Where it fails, from the plain random draws: the failure region in words (checked
   on held-out episodes), printed and written into the report.

The control factor ``object.color`` is never read by the env: it must come out as
"no effect" by Sobol and "no first-order effect" by binning.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from varirec.cli.args import count_arg, seed_arg

__all__ = ["SIZES", "DemoResult", "add_demo_parser", "run_demo"]

SIZES: dict[str, dict[str, int]] = {
    # base samples N, replicates per design row, plain random episodes, envs per batch
    "tiny": {"base_size": 64, "replicates": 2, "random_episodes": 4_000, "num_envs": 1024},
    "small": {"base_size": 256, "replicates": 4, "random_episodes": 20_000, "num_envs": 4096},
    "default": {"base_size": 1024, "replicates": 4, "random_episodes": 60_000, "num_envs": 4096},
    "large": {"base_size": 4096, "replicates": 8, "random_episodes": 200_000, "num_envs": 8192},
}


@dataclass
class DemoResult:
    """What the demo made: the dataset, its two runs, the studies and the report."""

    dataset: Path
    sobol_run: str
    random_run: str
    studies: list[Any]
    report: Path
    seconds: float
    failures: Any = None
    """The :class:`~varirec.analysis.failures.FailureAnalysis` of the random run."""


def _bar(total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ep", file=sys.stderr, disable=None, smoothing=0.1)


def run_demo(
    out: str | Path = "varirec-demo",
    *,
    size: str = "default",
    seed: int = 0,
    resamples: int = 1000,
    echo: Any = print,
) -> DemoResult:
    """Run the demo study and write its dataset and report under ``out``."""
    from varirec import RecorderManager, open_dataset
    from varirec.analysis.designs import sobol_design
    from varirec.analysis.failures import failures
    from varirec.analysis.reports.report import write_report
    from varirec.analysis.study import analyze
    from varirec.envs import drive_episodes, make_reach_env, make_reach_variations
    from varirec.studies.design import DesignSchedule

    # Every argument is checked before anything is recorded.
    if size not in SIZES:
        raise ValueError(f"`size` must be one of {sorted(SIZES)}, got {size!r}")
    for name, value in (("seed", seed), ("resamples", resamples)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"`{name}` must be an integer >= 0, got {value!r}; e.g. 0 or 1000")
    if resamples == 1:
        raise ValueError("`resamples` must be 0 (no intervals) or at least 2, got 1; e.g. 1000")
    if not str(out).strip():
        raise ValueError("`out` is empty; give a directory for the dataset, e.g. varirec-demo")
    p = SIZES[size]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"`out` must be a directory for the dataset, got the file {str(out)!r}; "
            "pick another path (--out DIR)"
        )
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(
                    f"`out` {str(out)!r} cannot be created: {str(parent)!r} is a file; "
                    "pick another path (--out DIR)"
                )
            break
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    sobol_run, random_run = f"sobol_{stamp}", f"random_{stamp}"
    started = time.perf_counter()
    num_envs = p["num_envs"]

    variations = make_reach_variations()
    design = sobol_design(variations, p["base_size"], seed=seed)
    schedule = DesignSchedule(design, replicates=p["replicates"], seed=seed)
    echo(
        f"Sobol study of the reach env: {design.num_factors} factors, N={design.base_size}, "
        f"{design.num_rows} design rows x {p['replicates']} replicates "
        f"= {schedule.num_episodes} episodes, common random numbers"
    )
    with RecorderManager(
        num_envs,
        variations=variations,
        output=out,
        run_id=sobol_run,
        seed=seed,
        schedule=schedule,
        metadata={"demo": "sobol", "size": size},
    ) as manager:
        design.bind(variations)
        env = make_reach_env(num_envs)
        with _bar(schedule.num_episodes, "sobol study") as bar:
            drive_episodes(env, manager, progress=bar.update)

    variations = make_reach_variations()
    echo(f"Given-data pass: {p['random_episodes']} episodes of plain random draws")
    with RecorderManager(
        num_envs,
        variations=variations,
        output=out,
        run_id=random_run,
        seed=seed + 1,
        metadata={"demo": "random", "size": size},
    ) as manager:
        env = make_reach_env(num_envs)
        with _bar(p["random_episodes"], "random draws") as bar:
            drive_episodes(env, manager, num_episodes=p["random_episodes"], progress=bar.update)

    echo("Analysing...")
    studies = [
        analyze(out, runs=sobol_run, outcome="success", seed=seed, num_resamples=resamples),
        analyze(out, runs=random_run, outcome="success", seed=seed, num_resamples=resamples),
    ]
    where = failures(out, runs=random_run, outcome="success", seed=seed)
    report = write_report(
        studies,
        out / f"report_{stamp}.html",
        title="varirec demo: what moves the reach success rate",
        dataset=open_dataset(out),
        failures=where,
        seed=seed,
    )
    seconds = time.perf_counter() - started
    return DemoResult(out, sobol_run, random_run, studies, report, seconds, where)


def _cmd_demo(args: argparse.Namespace) -> int:
    from varirec.cli.formatting import format_ranking

    result = run_demo(args.out, size=args.size, seed=args.seed, resamples=args.resamples)
    for study in result.studies:
        print()
        print(format_ranking(study))
    if result.failures is not None:
        print()
        print("Where it fails (plain random draws):")
        print(result.failures.summary())
    print()
    print(f"dataset: {result.dataset.resolve()}  (runs {result.sobol_run}, {result.random_run})")
    print(f"report:  {result.report.resolve()}")
    print(
        f"took {result.seconds:.0f} s. Next: varirec inspect {result.dataset}  |  "
        f"varirec analyze {result.dataset} --runs {result.random_run} --method rbd_fast"
    )
    return 0


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="run a complete sensitivity study of the built-in env (30-80 s on 2 cores)",
        description=(
            "Record a Sobol study (common random numbers, replicates) and a plain random "
            "run of the built-in reach env, analyse both, print the ranked factors and "
            "write an HTML report."
        ),
    )
    p.add_argument("--size", default="default", choices=tuple(SIZES), help="study size")
    p.add_argument(
        "--out", default="varirec-demo", help="dataset directory (default ./varirec-demo)"
    )
    p.add_argument("--seed", type=seed_arg, default=0, help="run seed (default 0)")
    p.add_argument(
        "--resamples", type=count_arg, default=1000, help="bootstrap resamples (default 1000)"
    )
    p.set_defaults(run=_cmd_demo)
