"""``varirec resume``: continue a study whose process died, into the same run.

The study's arguments (method, ``n``, replicates, second order, Morris levels, seed,
envs) come from the run's ``run.json``; the env factory and the variations, which a
dataset cannot hold, are named as ``module:function``::

    varirec resume DATASET --run-id sobol_1 \\
        --env varirec.envs:make_ishigami_env --variations varirec.envs:ishigami_variations

Only the design rows (or random episodes) without a finished episode run
(:func:`varirec.analysis.runner.run_study` with ``resume=True``).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["add_resume_parser", "load_callable"]


def load_callable(spec: str, what: str) -> Callable[..., Any]:
    """The callable that ``module:attribute`` names.

    Raises:
        ValueError: ``spec`` is not ``module:attribute``, or names nothing callable.

    Example:
        >>> load_callable("varirec.envs:make_ishigami_env", "--env").__name__
        'make_ishigami_env'
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(
            f"`{what}` must be 'module:function', got {spec!r}; e.g. "
            "'varirec.envs:make_ishigami_env'"
        )
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"`{what}` {spec!r} names nothing importable ({exc})") from None
    if not callable(target):
        raise ValueError(f"`{what}` {spec!r} is a {type(target).__name__}, not a function")
    return target


def _cmd_resume(args: argparse.Namespace) -> int:
    from varirec.analysis.runner import run_study
    from varirec.storage import open_dataset
    from varirec.variations import VariationSet

    make_env = load_callable(args.env, "--env")
    make_variations = load_callable(args.variations, "--variations")
    _check_call(make_env, 1, "--env", args.env, "make_env(num_envs)")
    _check_call(make_variations, 0, "--variations", args.variations, "make_variations()")
    run = open_dataset(args.dataset).run(args.run_id)
    study = dict(run.metadata.get("user", {}).get("study") or {})
    if "method" not in study or "n" not in study:
        raise ValueError(
            f"run {args.run_id!r} records no study arguments (it was not made by run_study "
            "or varirec resume); resume it from Python with the arguments of its first call"
        )
    num_envs = run.metadata.get("num_envs") or 256 if args.num_envs is None else args.num_envs
    if num_envs < 1:
        raise ValueError(f"`--num-envs` must be a positive number of envs, got {num_envs}")
    made = make_variations()
    try:
        variations = made if isinstance(made, VariationSet) else VariationSet(made)
    except TypeError as exc:
        raise ValueError(
            f"`--variations` {args.variations!r} must return the env's variations (a "
            f"VariationSet or a list of Variation), got {type(made).__name__}: {exc}"
        ) from None
    result = run_study(
        make_env,
        variations,
        method=study["method"],
        n=study["n"],
        replicates=study.get("replicates", 1),
        second_order=study.get("second_order", False),
        num_levels=study.get("num_levels", 4),
        seed=run.metadata.get("seed", 0),
        num_envs=int(num_envs),
        output=args.dataset,
        run_id=args.run_id,
        progress=not args.quiet,
        resume=True,
    )
    episodes = result.dataset.episodes(args.run_id, columns=["env_id"]).num_rows
    print(
        f"resumed run {args.run_id!r}: {result.stats.episodes} episode(s) recorded now, "
        f"{episodes} in the run"
    )
    return 0


def _check_call(fn: Callable[..., Any], count: int, what: str, spec: str, call: str) -> None:
    """Refuse a factory that cannot be called with ``count`` positional arguments, by its
    signature, before anything is opened (a call would fail later, in a traceback)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature to read (some builtins): try the call
        return
    try:
        signature.bind(*range(count))
    except TypeError:
        raise ValueError(
            f"`{what}` {spec!r} is called as {call}, but its signature is {signature}; "
            f"name a function that takes {count or 'no'} argument{'s' * (count != 1)}"
        ) from None


def add_resume_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``varirec resume`` to the command's sub-parsers."""
    p = sub.add_parser(
        "resume",
        help="continue a study whose process died, running only what has not finished",
        description="Continue a study recorded by run_study (or varirec resume) into the "
        "same run: only the design rows or episodes without a finished episode run.",
    )
    p.add_argument("dataset", help="dataset directory (or a pyarrow filesystem URI)")
    p.add_argument("--run-id", required=True, help="the run to continue")
    p.add_argument(
        "--env", required=True, metavar="MODULE:FUNCTION", help="make_env(num_envs) factory"
    )
    p.add_argument(
        "--variations",
        required=True,
        metavar="MODULE:FUNCTION",
        help="a function returning the env's variations",
    )
    p.add_argument("--num-envs", type=int, default=None, help="envs (default: the run's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_cmd_resume)
