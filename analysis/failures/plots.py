"""Plots of a :class:`~varirec.analysis.failures.study.FailureAnalysis`: success curves
(bars for categories and few-level factors) and the 2-D success map."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# Typed as Any: importing FailureAnalysis here would make a circle with study.py, which
# imports this module to draw.
FailureAnalysis = Any

__all__ = ["plot_curves", "plot_map"]


def plot_curves(fa: FailureAnalysis, factors: Sequence[str] | None = None) -> Any:
    """One panel per factor (``factors``: which, in this order; default: the regional
    ranking's order, strongest first): rate per bin with its interval; the overall
    rate dashed."""
    import matplotlib.pyplot as plt

    names = list(fa.regional["factor"]) if factors is None else list(factors)
    cols = min(3, max(1, len(names)))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.9 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        c = fa.curves[fa.curves["factor"] == name]
        err = np.vstack([c["rate"] - c["conf_low"], c["conf_high"] - c["rate"]])
        if c["categorical"].iloc[0]:
            pos = np.arange(len(c))
            ax.bar(pos, c["rate"], yerr=err, capsize=3, color="tab:blue", alpha=0.8)
            ax.set_xticks(pos, c["label"], rotation=30, ha="right")
        else:
            ax.errorbar(c["center"], c["rate"], yerr=err, marker="o", capsize=3)
            ax.set_xlabel(name)
        ax.axhline(fa.success_rate, color="gray", linestyle="--", linewidth=0.8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("success rate")
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def plot_map(fa: FailureAnalysis, ax: Any = None) -> Any:
    """Heat map of the success rate on the grid of the strongest pair (rates printed)."""
    import matplotlib.pyplot as plt

    if fa.success_map is None or fa.map_pair is None:
        raise ValueError("this analysis has no 2-D map (fewer than two factors)")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.8))
    m = fa.success_map
    ma, mb = int(m["bin_a"].max()) + 1, int(m["bin_b"].max()) + 1
    grid = m["rate"].to_numpy().reshape(ma, mb)
    image = ax.imshow(grid, origin="lower", cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=8)
    ax.set_yticks(range(ma), m.drop_duplicates("bin_a")["label_a"])
    ax.set_xticks(range(mb), m.drop_duplicates("bin_b")["label_b"], rotation=30, ha="right")
    ax.set_ylabel(fa.map_pair[0])
    ax.set_xlabel(fa.map_pair[1])
    ax.set_title(f"success rate: {fa.map_pair[0]} × {fa.map_pair[1]}")
    ax.figure.colorbar(image, ax=ax, label="success rate")
    return ax
