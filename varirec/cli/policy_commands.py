"""``varirec failures`` (where a policy fails) and ``varirec compare`` (two policies over
the same conditions). The analysis is imported inside each command: ``varirec --help``
loads none of it."""

from __future__ import annotations

import argparse
import sys

from varirec.cli.args import count_arg, level_arg, seed_arg
from varirec.cli.formatting import strict_json

__all__ = ["add_compare_parser", "add_failures_parser"]


def _frame_text(frame, columns) -> str:  # type: ignore[no-untyped-def]
    if frame.empty:
        return "  (none)"
    return frame[list(columns)].to_string(index=False, float_format=lambda v: f"{v:.4g}")


def _cmd_failures(args: argparse.Namespace) -> int:
    from varirec import open_dataset
    from varirec.analysis.failures import failures
    from varirec.analysis.reports.report import check_report_path, write_report

    if args.report is not None:
        check_report_path(args.report, "--report", args.dataset)
    fa = failures(args.dataset, runs=args.runs, outcome=args.outcome, threshold=args.threshold,
                  seed=args.seed, conf_level=args.conf_level,
                  allow_duplicate_runs=args.allow_duplicate_runs)  # fmt: skip
    if args.format == "json":
        print(strict_json(fa.to_dict()))
    elif args.format == "csv":
        print(fa.curves.to_csv(index=False), end="")
    else:
        print(fa.summary())
        print()
        print("Failure region's boxes (held-out rates):")
        print(_frame_text(fa.rule.leaves, ["conditions", "episodes", "rate", "conf_low",
                                           "conf_high"]))  # fmt: skip
        print()
        print("Failures vs successes:")
        print(_frame_text(fa.regional, ["factor", "test", "statistic", "p_value", "p_adjusted"]))
    if args.report:
        path = write_report([], args.report, title="varirec: where it fails",
                            dataset=open_dataset(args.dataset), failures=fa)  # fmt: skip
        print(f"report: {path}", file=sys.stderr)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from varirec import open_dataset
    from varirec.analysis.compare import compare
    from varirec.analysis.reports.report import check_report_path, write_report

    if args.report is not None:
        check_report_path(args.report, "--report", args.dataset)
    c = compare(args.dataset, args.runs, outcome=args.outcome, num_resamples=args.resamples,
                conf_level=args.conf_level, seed=args.seed)  # fmt: skip
    if args.format == "json":
        print(strict_json(c.to_dict()))
    else:
        print(c.summary())
        for note in c.notes:
            print(f"note: {note}")
        print()
        print(_frame_text(c.explaining(), ["factor", "estimate", "conf_low", "conf_high",
                                           "disagreement", "disagreement_p"]))  # fmt: skip
    if args.report:
        path = write_report([], args.report, title="varirec: how two policies differ",
                            dataset=open_dataset(args.dataset), comparisons=[c])  # fmt: skip
        print(f"report: {path}", file=sys.stderr)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="dataset directory (or a pyarrow filesystem URI)")
    p.add_argument("--outcome", default="success", help="outcome column (default success)")
    p.add_argument("--report", metavar="FILE.html", help="also write a self-contained HTML report")
    p.add_argument("--seed", type=seed_arg, default=0, help="random seed (default 0)")
    p.add_argument(
        "--conf-level", type=level_arg, default=0.95, help="interval level (default 0.95)"
    )


def add_failures_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``varirec failures``."""
    p = sub.add_parser(
        "failures",
        help="where the policy fails: the failure region in words, success curves",
        description="Success rate along each factor, the failure region found by a "
        "cross-validated depth-2 tree and measured on held-out episodes, failures vs "
        "successes per factor, and the 2-D success map of the strongest interaction.",
    )
    _common(p)
    p.add_argument("--runs", nargs="+", metavar="RUN_ID", help="runs to use (default: all)")
    p.add_argument(
        "--allow-duplicate-runs",
        action="store_true",
        help="pool runs that repeat each other's draws (same seed and episodes, e.g. two "
        "policies); refused by default",
    )
    p.add_argument(
        "--threshold", type=float, help="success = outcome >= THRESHOLD (for a non-0/1 outcome)"
    )
    p.add_argument("--format", default="table", choices=("table", "csv", "json"),
                   help="output: summary and tables, the curves as CSV, or JSON")  # fmt: skip
    p.set_defaults(run=_cmd_failures)


def add_compare_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``varirec compare``."""
    p = sub.add_parser(
        "compare",
        help="two policies over the same conditions: the gap and what explains it",
        description="Pair the episodes of two runs recorded with the same seed and "
        "variations (the same draws), give the gap B - A with a paired interval, "
        "McNemar's test (for design runs, a bootstrap and a sign-flip test over base "
        "samples), and the factors that explain it. Runs whose conditions differ "
        "are refused, naming the first mismatch.",
    )
    _common(p)
    p.add_argument("--runs", nargs=2, required=True, metavar=("A", "B"), help="the two runs")
    p.add_argument(
        "--resamples", type=count_arg, default=1000, help="bootstrap resamples (default 1000)"
    )
    p.add_argument("--format", default="table", choices=("table", "json"), help="output format")
    p.set_defaults(run=_cmd_compare)
