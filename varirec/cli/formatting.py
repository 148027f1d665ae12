"""Text the commands print: a study's ranked factors (``analyze`` and ``demo`` share it)."""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["format_ranking"]


def strict_json(data: Any) -> str:
    """``data`` as strict JSON: NaN and infinities become null (a bare ``NaN`` is not
    JSON: strict parsers refuse the whole output); other values by ``str``.

    >>> strict_json({"gap": float("nan"), "n": [1, float("inf")]})
    '{\\n  "gap": null,\\n  "n": [\\n    1,\\n    null\\n  ]\\n}'
    """
    return json.dumps(_finite(data), indent=2, default=str, allow_nan=False)


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(value) for value in data]
    if hasattr(data, "item") and getattr(data, "ndim", None) == 0:  # a numpy scalar
        return _finite(data.item())
    if hasattr(data, "tolist"):  # a numpy array
        return _finite(data.tolist())
    return data


def format_ranking(study: Any) -> str:
    """The ranked factors of a study as aligned text, with its notes; a group's row
    lists its columns under ``members``."""
    frame = study.ranking()
    if study.has_intervals:
        kind = f"{study.result.conf_level:.0%} intervals"
    else:  # e.g. PAWN, or no resamples: no interval columns, and no claim of any
        kind = "no confidence intervals"
        frame = frame.drop(columns=["conf_low", "conf_high"])
    groups = getattr(study, "groups", {})
    if groups:  # a group's row says which columns it holds
        frame["members"] = [", ".join(groups.get(f, [])) for f in frame["factor"]]
    lines = [
        f"{study.outcome!r} by {study.method} over {study.num_episodes} episodes "
        f"(runs: {', '.join(study.runs)}; {kind})",
        *(
            line.rstrip()
            for line in frame.to_string(
                index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"
            ).splitlines()
        ),
    ]
    noise = getattr(study.result, "noise_share", None)
    if noise is not None:
        lines.append(f"noise share: {noise:.2f} of the outcome variance no factor explains")
    lines += _category_lines(study)
    lines += [f"note: {n}" for n in study.notes]
    return "\n".join(lines)


def _category_lines(study: Any) -> list[str]:
    """Per categorical factor: the outcome's mean per label, with its interval."""
    effects = getattr(study, "category_effects", None)
    if effects is None or not len(effects):
        return []
    lines = []
    for factor, rows in effects.groupby("factor", sort=False):
        lines.append(
            f"{study.outcome!r} per category of {factor} ({study.result.conf_level:.0%} intervals):"
        )
        shown = rows.drop(columns=["factor"])
        text = shown.to_string(index=False, float_format=lambda v: f"{v:.3f}")
        lines += ["  " + line.rstrip() for line in text.splitlines()]
    return lines
