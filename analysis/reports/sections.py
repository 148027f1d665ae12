"""HTML sections of the report beyond the per-study tables: the plain-words summary,
the controls (null band, rank stability, convergence), where it fails, and policy
comparisons. Every figure is an embedded PNG; every table is in the order its plot is."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from varirec.analysis.compare import Comparison
from varirec.analysis.controls import Controls
from varirec.analysis.failures import FailureAnalysis
from varirec.analysis.study import Study

__all__ = [
    "comparison_html",
    "controls_html",
    "failures_html",
    "figure_png",
    "ranking_plot_png",
    "summary_html",
    "table_html",
]


def figure_png(draw: Callable[[], Any]) -> str:
    """``draw()`` returns a matplotlib figure (or Axes); its PNG as base64."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    made = draw()
    fig = made if hasattr(made, "savefig") else made.figure
    try:
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
    finally:
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(png: str, alt: str, kind: str) -> str:
    src = f"data:image/png;base64,{png}"
    return f'<img class="plot" data-plot="{kind}" alt="{html.escape(alt)}" src="{src}">'


def table_html(frame: pd.DataFrame, cls: str, digits: int = 3) -> str:
    """``frame`` as an HTML table of class ``cls``: numbers to ``digits`` places,
    text (labels) escaped, booleans as yes/no."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool | np.bool_):
            return "yes" if v else "no"
        if isinstance(v, float | np.floating):
            if not np.isfinite(v):
                return "—"
            return (
                f"{v:.{digits}g}"
                if abs(v) >= 1000 or (v != 0 and abs(v) < 1e-3)
                else (f"{v:.{digits}f}")
            )
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c).replace('_', ' '))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def ranking_plot_png(study: Study, controls: Controls | None) -> str:
    """The main index in the ranking table's order, with intervals and the null band."""
    import matplotlib.pyplot as plt

    rank = study.ranking()

    def draw() -> Any:
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(rank) + 2.2))
        pos = np.arange(len(rank))[::-1]  # the first row of the table on top
        est = rank["estimate"].to_numpy(float)
        lo = rank["conf_low"].to_numpy(float) if "conf_low" in rank else est
        hi = rank["conf_high"].to_numpy(float) if "conf_high" in rank else est
        err = np.vstack([np.nan_to_num(est - lo), np.nan_to_num(hi - est)])
        colors = ["tab:blue" if v == "effect" else "tab:gray" for v in rank["verdict"]]
        ax.barh(pos, np.nan_to_num(est), xerr=err, color=colors, capsize=3)
        if controls is not None and controls.null_band is not None:
            low, high = controls.null_band
            ax.axvspan(low, high, color="tab:red", alpha=0.18, label="shuffled-outcome null band")
            ax.legend(loc="lower right")
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(pos, rank["factor"])
        ax.set_xlabel(str(rank["index"].iloc[0]))
        ax.set_title(f"{study.outcome}: {study.method}, in the table's order")
        return fig

    return figure_png(draw)


def controls_html(controls: Controls) -> str:
    """The controls table and the convergence plot."""
    import matplotlib.pyplot as plt

    band = controls.null_band
    cols = ["factor", "estimate", "in_null_band", "rank", "rank_stability", "top3_stability",
            "half_width", "episodes_needed"]  # fmt: skip
    if band is None:
        cols.remove("in_null_band")
    table = table_html(controls.factors[cols], "controls", 3)
    top = controls.factors["factor"].head(5).tolist()

    def draw() -> Any:
        fig, ax = plt.subplots(figsize=(8, 3.6))
        for name in top:
            c = controls.convergence[controls.convergence["factor"] == name]
            ax.errorbar(c["episodes"], c["estimate"],
                        yerr=[c["estimate"] - c["conf_low"], c["conf_high"] - c["estimate"]],
                        marker="o", capsize=3, label=name)  # fmt: skip
        if band is not None:
            ax.axhspan(*band, color="tab:red", alpha=0.18)
        ax.set_xscale("log")
        ax.set_xlabel(f"{controls.episodes_unit} (nested subsamples)")
        ax.set_ylabel(controls.index)
        ax.set_title("convergence")
        ax.legend(fontsize=8)
        return fig

    if band is None:
        null_text = (
            "Shuffled-outcome null: not defined for a Saltelli design (its rows come in blocks "
            "of one base sample); its control is a factor the env never reads, which gets "
            "exactly 0 with common random numbers."
        )
    else:
        outside = controls.factors[~controls.factors["in_null_band"]]["factor"].tolist()
        null_text = (
            f"Shuffled-outcome null band [{band[0]:.4f}, {band[1]:.4f}] ({controls.num_shuffles} "
            f"shuffles, family-wise {controls.conf_level:.0%}): {len(outside)} factor(s) above "
            f"it{': ' + html.escape(', '.join(outside)) if outside else ''}."
        )
    worst = controls.factors.dropna(subset=["episodes_needed"])
    budget = ""
    if len(worst):
        w = worst.loc[worst["episodes_needed"].idxmax()]
        budget = (
            f" To resolve every index to ±{controls.target:g} you need about "
            f"{int(w['episodes_needed']):,} episodes (set by {html.escape(str(w['factor']))}; "
            f"this study has {controls.num_episodes:,})."
        )
    return (
        '<div class="controls"><h3>Controls</h3>'
        f"<p>{null_text} Rank stability of {html.escape(controls.index)}: share of "
        f"{controls.num_resamples} bootstrap resamples in which a factor keeps its rank."
        f"{budget}</p>"
        f"{table}{_img(figure_png(draw), 'convergence of the indices', 'convergence')}</div>"
    )


def failures_html(fa: FailureAnalysis) -> str:
    """Where it fails: the rule, its leaves, curves, regional sensitivity and the map."""
    rule = fa.rule
    regional = fa.regional.copy()
    curves = _img(figure_png(fa.plot_curves), "success rate along each factor", "curves")
    parts = [
        '<section id="failures"><h2>Where it fails</h2>',
        f'<p class="rule">{html.escape(rule.sentence())}</p>',
        f'<p class="meta">depth-{rule.depth} tree chosen by 5-fold cross-validation; rates '
        f"measured on held-out episodes; threshold intervals from the likelihood ratio"
        + (
            f"; the first split keeps its factor in {rule.first_split_share:.0%} of "
            "bootstrap refits"
            if rule.first_split_share is not None
            else ""
        )
        + "</p>",
    ]
    if len(rule.leaves):
        parts.append(table_html(rule.leaves.drop(columns=["leaf"]), "leaves", 3))
    parts.append("<h3>Regional sensitivity (failures vs successes)</h3>")
    parts.append(table_html(regional, "regional", 3))
    parts.append("<h3>Success rate along each factor</h3><p class='meta'>in the order of the "
                 "table above</p>" + curves)  # fmt: skip
    if fa.map_pair is not None:
        parts.append("<h3>Strongest interaction</h3>")
        parts.append(table_html(fa.interactions.head(5), "interactions", 3))
        parts.append(_img(figure_png(fa.plot_map), "2-D success map", "map"))
    parts.append("</section>")
    return "".join(parts)


def comparison_html(c: Comparison) -> str:
    """One policy comparison: the gap, what explains it, the gap curves."""
    a, b = c.names()
    explaining = c.explaining()
    plot = _img(figure_png(lambda: c.plot_curves(list(explaining["factor"]) or None)),
                "gap along each factor", "gap")  # fmt: skip
    lines = "".join(f"<li>{html.escape(s)}</li>" for s in c.summary().splitlines())
    return (
        f'<section class="comparison"><h2>{html.escape(b)} vs {html.escape(a)}</h2>'
        f"<ul>{lines}</ul>{table_html(explaining, 'explaining', 3)}{plot}</section>"
    )


def summary_html(
    studies: Sequence[Study],
    controls: Sequence[Controls | None],
    failures: FailureAnalysis | None,
    comparisons: Sequence[Comparison],
) -> str:
    """The summary at the top: what matters, where it fails, what to do next."""
    items = []
    for study in studies:
        rank = study.ranking()
        effects = rank[rank["verdict"] == "effect"].head(3)
        if len(effects):
            words = ", ".join(
                f"{r.factor} ({r.index} {r.estimate:.2f})" for r in effects.itertuples()
            )
            items.append(f"What moves {study.outcome} ({study.method}): {words}.")
        else:
            items.append(f"No factor has a clear effect on {study.outcome} ({study.method}).")
    if failures is not None:
        items.append(f"Where it fails: {failures.rule.sentence()}.")
    for c in comparisons:
        items.append(c.summary().splitlines()[0])
    todo = []
    for ctl in controls:
        if ctl is None:
            continue
        need = ctl.factors["episodes_needed"].dropna()
        if len(need) and need.max() > ctl.num_episodes:
            todo.append(
                f"record about {int(need.max()):,} episodes to resolve every index to "
                f"±{ctl.target:g} (now {ctl.num_episodes:,})"
            )
    if failures is not None and failures.rule.confirmed:
        todo.append(
            "make the policy robust where "
            + " and ".join(c.text() for c in failures.rule.conditions)
            + ", then check the fix with varirec compare over the same conditions"
        )
    if not todo and any(ctl is not None for ctl in controls):
        todo.append("the indices are resolved; no further episodes needed for ±0.02")
    if todo:  # a report of comparisons alone measured no index to resolve
        items.append("Next: " + "; ".join(todo) + ".")
    body = "".join(f"<li>{html.escape(i)}</li>" for i in items)
    return f'<section id="summary"><h2>Summary</h2><ul>{body}</ul></section>'
