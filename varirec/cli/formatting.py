"""Text the commands print: a study's ranked factors (``analyze`` and ``demo`` share it)."""

from __future__ import annotations

from typing import Any

__all__ = ["format_ranking"]


def format_ranking(study: Any) -> str:
    """The ranked factors of a study as aligned text, with its notes."""
    frame = study.ranking()
    if study.has_intervals:
        kind = f"{study.result.conf_level:.0%} intervals"
    else:  # e.g. PAWN, or no resamples: no interval columns, and no claim of any
        kind = "no confidence intervals"
        frame = frame.drop(columns=["conf_low", "conf_high"])
    lines = [
        f"{study.outcome!r} by {study.method} over {study.num_episodes} episodes "
        f"(runs: {', '.join(study.runs)}; {kind})",
        frame.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"),
    ]
    noise = getattr(study.result, "noise_share", None)
    if noise is not None:
        lines.append(f"noise share: {noise:.2f} of the outcome variance no factor explains")
    lines += [f"note: {n}" for n in study.notes]
    return "\n".join(lines)
