"""Factor groups on the command line: ``--group``, ``--groups-file``, ``--split-vectors``.

``--group grip=gripper.force,gripper.width`` (repeatable) analyses the two variations
as one factor; a vector variation's name stands for all its components (``--group
pose=cam,gripper.width``), a single component is named as the episode table names
it (``cam[x]``). ``--groups-file FILE`` reads the same from JSON or TOML::

    {"grip": ["gripper.force", "gripper.width"]}          # groups.json

    [groups]                                               # groups.toml
    grip = ["gripper.force", "gripper.width"]

A vector variation is one factor by default; ``--split-vectors`` makes each component
a factor of its own. The syntax is checked as the arguments are parsed; the names
against the dataset's variations before anything is computed or written. Either
failure is an argparse error (usage, one line naming the problem and the fix, exit 2).
"""

from __future__ import annotations

import argparse
import json
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_group_arguments", "group_arg", "groups_file_arg", "groups_for_analyze"]

_EXAMPLE = "e.g. --group grip=gripper.force,gripper.width"


def group_arg(text: str) -> tuple[str, list[str]]:
    """argparse type of ``--group``: ``NAME=VARIATION[,VARIATION...]``.

    Example:
        >>> group_arg("grip = gripper.force, gripper.width")
        ('grip', ['gripper.force', 'gripper.width'])
    """
    name, sep, rest = text.partition("=")
    name = name.strip()
    members = [m.strip() for m in rest.split(",")]
    if not sep or not name:
        raise argparse.ArgumentTypeError(
            f"must be NAME=VARIATION,VARIATION..., got {text!r}; {_EXAMPLE}"
        )
    if not rest.strip():
        raise argparse.ArgumentTypeError(
            f"group {name!r} is empty; list its variations after '=', {_EXAMPLE}"
        )
    if "" in members:
        raise argparse.ArgumentTypeError(
            f"group {name!r} has an empty name in {rest!r} (two commas, or one at an end); "
            f"{_EXAMPLE}"
        )
    return name, members


def _members(name: str, value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise argparse.ArgumentTypeError(
            f"group {name!r} in {path} must be a list of variation names, got {value!r}; "
            'e.g. grip = ["gripper.force", "gripper.width"]'
        )
    if not value or any(not m.strip() for m in value):
        raise argparse.ArgumentTypeError(
            f"group {name!r} in {path} is empty or names an empty variation ({value!r}); "
            "list its variations"
        )
    return [m.strip() for m in value]


def groups_file_arg(path: str) -> dict[str, list[str]]:
    """argparse type of ``--groups-file``: a JSON or TOML table ``{group: [variations]}``
    (in TOML optionally under ``[groups]``)."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".json", ".toml"):
        raise argparse.ArgumentTypeError(
            f"must be a .json or .toml file, got {path!r}; e.g. groups.toml holding "
            '[groups] grip = ["gripper.force", "gripper.width"]'
        )
    try:
        text = Path(path).read_text(encoding="utf-8")
        doc = json.loads(text) if suffix == ".json" else tomllib.loads(text)
    except OSError as exc:
        raise argparse.ArgumentTypeError(
            f"cannot read {path!r}: {(exc.strerror or str(exc)).lower()}; check the path"
        ) from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"{path!r} is not valid {suffix[1:]}: {exc}") from None
    if isinstance(doc, dict) and isinstance(doc.get("groups"), dict) and len(doc) == 1:
        doc = doc["groups"]
    if not isinstance(doc, dict) or not doc:
        raise argparse.ArgumentTypeError(
            f"{path!r} must hold a table of groups, got {type(doc).__name__} {doc!r}; "
            'e.g. {"grip": ["gripper.force", "gripper.width"]}'
        )
    return {str(name): _members(str(name), value, path) for name, value in doc.items()}


def add_group_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--group``, ``--groups-file`` and ``--split-vectors`` to a command."""
    p.add_argument(
        "--group",
        action="append",
        type=group_arg,
        metavar="NAME=VAR,VAR",
        help="analyse these variations as one factor NAME (repeatable; a vector variation's "
        "name stands for its components, cam[x] for one); needs --method knn, which auto "
        f"picks for plain random draws; {_EXAMPLE}",
    )
    p.add_argument(
        "--groups-file",
        type=groups_file_arg,
        metavar="FILE",
        help='groups from a JSON or TOML file: {"grip": ["gripper.force", "gripper.width"]}',
    )
    p.add_argument(
        "--split-vectors",
        action="store_true",
        help="each component of a vector variation is a factor of its own (default for knn: "
        "a vector variation is one factor)",
    )


def _source(args: argparse.Namespace) -> str:
    """The argument(s) the groups came from, as an error names them."""
    given = [a for a, v in (("--group", args.group), ("--groups-file", args.groups_file)) if v]
    return "/".join(given) or "--group"


def _declared(args: argparse.Namespace) -> dict[str, list[str]]:
    declared: dict[str, list[str]] = dict(args.groups_file or {})
    for name, members in args.group or []:
        if name in declared:
            args.parser.error(
                f"argument --group: group {name!r} is declared twice; give all its variations "
                f"in one --group {name}=VAR,VAR"
            )
        declared[name] = members
    return declared


def groups_for_analyze(
    args: argparse.Namespace, runs: Sequence[str] | None
) -> Mapping[str, list[str]] | str:
    """The ``groups`` argument of :func:`varirec.analysis.analyze` from the command's
    arguments, checked against the dataset's variations (nothing is computed yet).

    A problem ends the command through ``args.parser.error`` (exit status 2).
    """
    from varirec import open_dataset
    from varirec.analysis.study_inputs import checked_groups, design_run
    from varirec.errors import UnknownNameError

    declared = _declared(args)
    if not declared:
        return "none" if args.split_vectors else "vectors"
    if args.method not in ("auto", "knn"):
        args.parser.error(
            f"argument {_source(args)}: groups are analysed by --method knn (total indices "
            f"and Shapley effects per group); --method {args.method} takes one column at a "
            "time: pass --method knn (or leave --method out), or leave the groups out"
        )
    ds = open_dataset(args.dataset)
    run_ids = list(runs) if runs else ds.run_ids()
    design = design_run(ds, run_ids)
    if args.method == "auto" and design is not None:
        args.parser.error(
            f"argument {_source(args)}: run {design!r} holds a design, whose groups are fixed "
            "when it is built (sobol_design(groups=...)); leave the groups out, or pass "
            "--method knn to analyse its rows as given data"
        )
    try:
        return checked_groups(ds, run_ids, declared, vectors=not args.split_vectors)
    except (ValueError, UnknownNameError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) else str(exc)
        args.parser.error(f"argument {_source(args)}: {message}")
