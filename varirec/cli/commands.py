"""The ``varirec`` command line: ``demo``, ``analyze``, ``inspect``.

Errors print one line naming the problem and the fix, and exit with status 2.
The analysis package is imported inside the commands that need it, so the core
stays light.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from varirec._version import __version__
from varirec.cli.args import count_arg, level_arg, seed_arg
from varirec.cli.formatting import format_ranking, strict_json
from varirec.cli.groups import add_group_arguments, groups_for_analyze
from varirec.errors import VarirecError
from varirec.paths import check_output_file

__all__ = ["build_parser", "main"]

EXIT_ERROR = 2


_FIXES = {
    errno.ENOENT: "check the path (for an output, create its folder first)",
    errno.EISDIR: "it is a directory: give a file path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: pick another path",
    errno.EACCES: "check its permissions (reading needs read access, recording write access)",
    errno.EPERM: "check its permissions (reading needs read access, recording write access)",
    errno.ENOSPC: "free disk space or write elsewhere",
    errno.EROFS: "write to a writable file system",
    errno.EEXIST: "pick another path, or remove the existing one",
}


def describe_os_error(exc: OSError) -> str:
    """An OSError as one line naming the path and the fix (no bare ``[Errno N]``)."""
    if isinstance(exc, VarirecError) or exc.errno is None:
        return str(exc)
    reason = exc.strerror or str(exc)
    where = f"{exc.filename!s}" if exc.filename is not None else "a file"
    fix = _FIXES.get(exc.errno, "check the path and try again")
    reason = reason[:1].lower() + reason[1:]  # only the first letter: it may hold a path
    return f"cannot use {where!r}: {reason}; {fix}"


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="sensitivity of an outcome to every recorded variation",
        description=(
            "Rank the recorded variations by their effect on an outcome, with confidence "
            "intervals. A run recorded with a design is analysed by its method (Sobol or "
            "Morris); plain random draws by given-data methods."
        ),
    )
    p.add_argument("dataset", help="dataset directory (or a pyarrow filesystem URI)")
    p.add_argument(
        "--outcome", help="outcome column (default: success if recorded, else the first)"
    )
    p.add_argument(
        "--method",
        default="auto",
        choices=("auto", "sobol", "morris", "binning", "rbd_fast", "pawn", "delta", "knn", "hsic"),
        help="estimator (auto: the run's design decides; no design means binning; knn: "
        "total indices and Shapley effects from plain random draws; hsic: target "
        "sensitivity of a binary success)",
    )
    p.add_argument("--runs", nargs="+", metavar="RUN_ID", help="runs to analyse (default: all)")
    p.add_argument(
        "--allow-duplicate-runs",
        action="store_true",
        help="pool runs that repeat each other's draws (same seed and episodes); refused "
        "by default",
    )
    p.add_argument(
        "--format", default="table", choices=("table", "csv", "json"), help="output format"
    )
    p.add_argument(
        "--output", "-o", metavar="FILE", help="write the table/CSV/JSON here, not stdout"
    )
    p.add_argument("--report", metavar="FILE.html", help="also write a self-contained HTML report")
    p.add_argument(
        "--failures",
        action="store_true",
        help="also find where the outcome fails (0/1 outcomes; see varirec failures), "
        "printed after the table and written into the report",
    )
    p.add_argument("--seed", type=seed_arg, default=0, help="bootstrap seed (default 0)")
    p.add_argument(
        "--resamples",
        type=count_arg,
        default=None,
        help="bootstrap resamples (default 1000; 100 for delta, slow per resample)",
    )
    p.add_argument(
        "--conf-level", type=level_arg, default=0.95, help="interval level (default 0.95)"
    )
    add_group_arguments(p)
    p.set_defaults(run=_cmd_analyze, parser=p)


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="what a dataset holds: runs, variations, episodes, outcomes",
        description="Summarize a dataset: its runs, their variations and specs, episode "
        "counts, outcome summaries, and any part that was skipped.",
    )
    p.add_argument("dataset", help="dataset directory (or a pyarrow filesystem URI)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(run=_cmd_inspect)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="varirec",
        description=(
            "Record what domain randomization drew, per (env, episode), and find which "
            "variation moves the outcome."
        ),
    )
    parser.add_argument("--version", action="version", version=f"varirec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from varirec.cli.demo import add_demo_parser

    add_demo_parser(sub)
    _add_analyze(sub)
    _add_inspect(sub)
    from varirec.cli.policy_commands import add_compare_parser, add_failures_parser

    add_failures_parser(sub)
    add_compare_parser(sub)
    from varirec.cli.resume import add_resume_parser

    add_resume_parser(sub)
    return parser


def _emit(text: str, output: str | None) -> None:
    if output is None:
        print(text)
    else:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        with open(output, "w", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
        print(f"wrote {output}", file=sys.stderr)


def _stage_bar(total: int, desc: str) -> tuple[Callable[[str], None], Any]:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="stage", leave=False, file=sys.stderr, disable=None)

    def step(message: str) -> None:
        bar.set_postfix_str(message)
        bar.update(1)

    return step, bar


def _cmd_analyze(args: argparse.Namespace) -> int:
    from varirec.analysis.reports.report import check_report_path, write_report
    from varirec.analysis.study import analyze

    if args.output is not None:
        check_output_file(args.output, "--output", dataset=args.dataset)
    if args.report is not None:
        check_report_path(args.report, "--report", args.dataset)
    if (
        args.output is not None
        and args.report is not None
        and os.path.abspath(args.output) == os.path.abspath(args.report)
    ):
        raise ValueError(
            f"`--output` and `--report` name the same file {args.output!r}: the report "
            "would replace the table; give each its own path, e.g. -o ranking.csv "
            "--report report.html"
        )
    groups = groups_for_analyze(args, args.runs)  # names checked before any work
    step, bar = _stage_bar(2, "analyzing")
    try:
        study = analyze(
            args.dataset,
            outcome=args.outcome,
            method=args.method,
            runs=args.runs,
            seed=args.seed,
            num_resamples=args.resamples,
            conf_level=args.conf_level,
            progress=step,
            allow_duplicate_runs=args.allow_duplicate_runs,
            groups=groups,
        )
    finally:
        bar.close()
    where = None
    if args.failures:  # before anything is written: it may refuse the outcome
        try:
            where = study.failures(seed=args.seed, conf_level=args.conf_level)
        except ValueError as exc:
            raise ValueError(
                f"--failures: {exc}. (`varirec analyze --failures` takes a 0/1 outcome; for "
                f"another, run `varirec failures {args.dataset} --outcome {study.outcome} "
                "--threshold T`)"
            ) from None
    if args.format == "json":
        _emit(strict_json(study.to_dict()), args.output)
    elif args.format == "csv":
        _emit(study.to_frame().to_csv(index=False), args.output)
    else:
        _emit(format_ranking(study), args.output)
    if where is not None:
        print(
            f"\nWhere it fails:\n{where.summary()}",
            file=sys.stderr if args.format != "table" else sys.stdout,
        )
    if args.report:
        from varirec import open_dataset

        path = write_report(
            [study], args.report, dataset=open_dataset(args.dataset), failures=where, seed=args.seed
        )
        print(f"report: {path}", file=sys.stderr)
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from varirec.cli.inspection import format_inspection, inspect_dataset

    info = inspect_dataset(args.dataset)
    print(strict_json(info) if args.json else format_inspection(info))
    return 0


EXIT_PIPE = 141
"""The exit status where the reader of the output left early, a shell's for SIGPIPE."""


def _quiet_stdout() -> None:
    """Point stdout at the null device: the interpreter's last flush of what the gone
    reader did not take would fail again, with a traceback, at exit."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture)
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = args.run(args)
        except (VarirecError, ValueError) as exc:
            print(f"varirec {args.command}: error: {exc}", file=sys.stderr)
            code = EXIT_ERROR
        except MemoryError as exc:
            print(
                f"varirec {args.command}: error: out of memory{f' ({exc})' if str(exc) else ''}; "
                "ask for less at once (fewer envs, a smaller study, fewer runs)",
                file=sys.stderr,
            )
            code = EXIT_ERROR
        except BrokenPipeError:  # the reader left (`varirec analyze ... | head`): no error
            _quiet_stdout()
            code = EXIT_PIPE
        except OSError as exc:
            print(f"varirec {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
            code = EXIT_ERROR
        finally:
            for message in dict.fromkeys(str(w.message) for w in caught):  # each once
                print(f"varirec {args.command}: warning: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
