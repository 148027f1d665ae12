"""Assemble a manager's recorder terms: the built-in ones, the user's, their columns.

The built-in terms come first (``outcome``, ``variations``, ``steps`` when step keys
are given), then the user's in the order given. A term name taken by a built-in
term, or an episode column that another term (or the tracker) already records, is an
error before anything is written.

>>> from varirec.recording.term_set import builtin_term_cfgs
>>> list(builtin_term_cfgs(max_rows=1024, step_keys=("obs",)))
['outcome', 'variations', 'steps']
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from varirec.recording.terms import (
    OUTCOME_NAMES,
    OutcomeTerm,
    RecorderTerm,
    RecorderTermCfg,
    StepsTerm,
    TermHost,
    VariationsTerm,
)
from varirec.storage.schema import episodes_schema

__all__ = ["TermHooks", "build_terms", "builtin_term_cfgs"]

_HOOKS = ("record_step", "record_pre_reset", "record_post_reset", "record_post_step")


def _implements(term: RecorderTerm, hook: str) -> bool:
    """Whether ``term`` does something at ``hook`` (the base class's hooks do nothing)."""
    return getattr(type(term), hook) is not getattr(RecorderTerm, hook) or hook in getattr(
        term, "__dict__", ()
    )


class TermHooks:
    """Per lifecycle hook, the terms that implement it, in order: a step calls only
    those (the base's hooks do nothing). Worked out again whenever the terms change.

    >>> terms = {"outcome": RecorderTerm(RecorderTermCfg(term=OutcomeTerm), None)}
    >>> TermHooks(terms)("record_step")
    []
    """

    __slots__ = ("_by_hook", "_source", "_terms")

    def __init__(self, terms: Mapping[str, RecorderTerm]) -> None:
        self._source = terms
        self._terms: tuple[RecorderTerm, ...] | None = None
        self._by_hook: dict[str, list[Any]] = {}

    def __call__(self, hook: str) -> list[Any]:
        """The terms that implement ``hook``; ``"batch"``: the variations terms."""
        return self.all()[hook]

    def all(self) -> dict[str, list[Any]]:
        """Per hook, the terms that implement it (one check of the terms for several)."""
        terms = tuple(self._source.values())
        if terms != self._terms:  # identity per term: RecorderTerm defines no __eq__
            self._terms = terms
            self._by_hook = {h: [t for t in terms if _implements(t, h)] for h in _HOOKS}
            self._by_hook["batch"] = [t for t in terms if isinstance(t, VariationsTerm)]
        return self._by_hook

    def check_step_names(self, data: Mapping[str, Any]) -> None:
        """Refuse ``record_step`` names that no term reads (a typo would record a return
        of 0 and no success), naming the one meant; any name goes where a term of the
        user's reads step data."""
        readers = self("record_step")
        if any(type(t) not in (OutcomeTerm, StepsTerm) for t in readers):
            return
        known = set(OUTCOME_NAMES).union(*(t.keys for t in readers if type(t) is StepsTerm))
        unknown = sorted(set(data) - known)
        if not unknown:
            return
        hints = [
            f"{name!r} -> {close[0]!r}"
            for name in unknown
            if (close := difflib.get_close_matches(name, sorted(known), n=1))
        ]
        hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
        raise TypeError(
            f"record_step got {unknown} that no term records{hint}; the outcome term takes "
            f"{', '.join(OUTCOME_NAMES)}: to keep other per-step arrays, name them at "
            "construction (step_keys=(...)) or read them in a term of your own"
        )


def builtin_term_cfgs(
    *, max_rows: int, step_keys: Iterable[str] | None
) -> dict[str, RecorderTermCfg]:
    """The built-in terms' cfgs: outcome, variations, and steps for ``step_keys``."""
    if isinstance(step_keys, str):
        raise TypeError(
            f"`step_keys` must be a sequence of names, got the string {step_keys!r}; "
            f"pass e.g. step_keys=({step_keys!r},)"
        )
    cfgs = {
        "outcome": RecorderTermCfg(term=OutcomeTerm),
        "variations": RecorderTermCfg(term=VariationsTerm, params={"max_rows": max_rows}),
    }
    if step_keys is not None:
        cfgs["steps"] = RecorderTermCfg(
            term=StepsTerm, params={"keys": tuple(step_keys), "max_rows": max_rows}
        )
    return cfgs


def build_terms(
    builtin: Mapping[str, RecorderTermCfg],
    user: Mapping[str, RecorderTermCfg] | None,
    host: TermHost,
    into: dict[str, RecorderTerm],
) -> pa.Schema:
    """Build every term into ``into`` (filled as they are built, so a caller can detach
    the ones already built when a later one is refused); returns the episodes schema
    with the columns the terms add."""
    user = dict(user or {})
    clash = set(user) & set(builtin)
    if clash:
        raise ValueError(f"term names {sorted(clash)} are taken by built-in terms; rename them")
    # Core episode columns not recorded by the outcome term come from the tracker.
    outcome = set(OutcomeTerm.COLUMNS)
    owners: dict[str, str] = {c: "'tracker'" for c in episodes_schema().names if c not in outcome}
    owners["run_id"] = "the dataset (the run's partition)"
    # The episode table puts each variation's value in a column of its key.
    for key in getattr(host, "variations", None) or ():
        if key not in outcome:  # those are refused with the variation's own names check
            owners.setdefault(key, f"variation {key!r}")
    for name, cfg in {**builtin, **user}.items():
        into[name] = _build_term(name, cfg, host, owners)
    core = set(episodes_schema().names)
    extra = [
        pa.field(c, t) for term in into.values() for c, t in term.columns().items() if c not in core
    ]
    return episodes_schema(extra)


def _build_term(name: str, cfg: Any, host: TermHost, owners: dict[str, str]) -> RecorderTerm:
    if not isinstance(cfg, RecorderTermCfg):
        raise TypeError(f"term {name!r} must be given as a RecorderTermCfg, got {cfg!r}")
    term = cfg.term(cfg, host)
    for column in term.columns():
        owner = owners.get(column)
        if owner is not None:
            raise ValueError(
                f"term {name!r} adds episode column {column!r}, which {owner} already "
                "records; rename the column"
            )
        owners[column] = repr(name)
    return term
