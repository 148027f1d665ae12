"""The report's per-category sections: for each categorical factor of a study, the
outcome's mean (the success rate for a 0/1 outcome) per label with its interval, as a
table and a bar plot with error bars. Labels, never codes, on every row and tick.

- :func:`categories_html`: the sections of one study (empty when it has no
  categorical factor).
- :func:`category_figure`: the bar plot of one factor (a matplotlib figure).
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from varirec.analysis.reports.sections import figure_png, table_html
from varirec.analysis.study import Study

__all__ = ["categories_html", "category_figure"]


def _binary(effects: pd.DataFrame) -> bool:
    """Whether the means are success rates (a 0/1 outcome, Wilson intervals)."""
    return bool(effects.attrs.get("binary", False))


def category_figure(rows: pd.DataFrame, factor: str, ylabel: str) -> Any:
    """Bars of ``rows`` (one factor of ``Study.category_effects``) with their
    intervals as error bars and the labels on the axis; returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(rows) + 2.5), 3.4))
    pos = np.arange(len(rows))
    mean = rows["mean"].to_numpy(float)
    err = np.vstack([mean - rows["conf_low"].to_numpy(float), rows["conf_high"] - mean])
    ax.bar(pos, mean, yerr=np.nan_to_num(err), capsize=4, color="tab:blue")
    overall = float(np.average(mean, weights=rows["n"].to_numpy(float)))
    ax.axhline(overall, color="black", linewidth=0.8, linestyle="--", label="all episodes")
    ax.set_xticks(pos, [str(c) for c in rows["category"]], rotation=30, ha="right")
    ax.set_xlabel(factor)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return fig


def categories_html(study: Study) -> str:
    """One section per categorical factor, in the ranking's order, with its verdict."""
    effects = study.category_effects
    if effects is None or not len(effects):
        return ""
    what = "success rate" if _binary(effects) else f"mean {study.outcome}"
    interval = effects.attrs.get("interval", "")
    ranking = study.ranking()
    verdicts = dict(zip(ranking["factor"], ranking["verdict"], strict=True))
    order = [f for f in verdicts if f in set(effects["factor"])]
    order += [f for f in dict.fromkeys(effects["factor"]) if f not in order]
    parts = []
    for factor in order:
        rows = effects[effects["factor"] == factor].reset_index(drop=True)
        shown = rows.drop(columns=["factor"]).rename(columns={"n": "episodes", "mean": what})
        png = figure_png(lambda rows=rows, factor=factor: category_figure(rows, factor, what))
        verdict = verdicts.get(factor, "")
        name = html.escape(factor)
        parts.append(
            f'<div class="categories" data-factor="{name}">'
            f"<h3>{name}: {html.escape(what)} per category</h3>"
            f'<p class="meta">{interval} {study.result.conf_level:.0%} intervals; difference: '
            f"from the mean over all {study.num_episodes} episodes"
            + (f"; the study's verdict on {name}: {html.escape(str(verdict))}" if verdict else "")
            + "</p>"
            + table_html(shown, "categories", 3)
            + f'<img class="plot" data-plot="categories" data-factor="{name}" '
            f'alt="{html.escape(what)} per category of {name}" '
            f'src="data:image/png;base64,{png}"></div>'
        )
    return "".join(parts)
