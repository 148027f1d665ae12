"""The typed result of the nearest-neighbour estimators: :class:`KnnResult`.

First-order and total indices and Shapley effects from given data, with the tidy
frame of :mod:`varirec.analysis.estimators.results` (:data:`FRAME_COLUMNS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from varirec.analysis.estimators._plotting import _error_bars, _new_axes
from varirec.analysis.estimators._records import _or_nan, _row
from varirec.analysis.estimators.results import _ResultBase

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["KnnResult"]


@dataclass(kw_only=True)
class KnnResult(_ResultBase):
    """First-order and total indices and Shapley effects from given data by nearest
    neighbours (see :func:`varirec.analysis.estimators.knn_total.knn_indices`).

    ``num_samples`` is the number of rows. Factors may be groups of columns
    (``groups``). Arrays are ``(D,)``; intervals are the estimate ± ``*_conf``, the
    normal quantile times a linearized standard error. ``significant[i]``: the lower
    bound of ``ST`` is above 0. Shapley effects sum to ``1 - noise_share``.
    """

    index: str = "ST"
    """The main index (the ranking uses it)."""
    groups: dict[str, list[str]] = field(default_factory=dict)
    """Each factor's columns (one column unless a group)."""
    S1: NDArray[np.float64]
    S1_conf: NDArray[np.float64]
    S1_conf_low: NDArray[np.float64]
    S1_conf_high: NDArray[np.float64]
    ST: NDArray[np.float64]
    ST_conf: NDArray[np.float64]
    ST_conf_low: NDArray[np.float64]
    ST_conf_high: NDArray[np.float64]
    shapley: NDArray[np.float64] | None = None
    shapley_conf: NDArray[np.float64] | None = None
    shapley_conf_low: NDArray[np.float64] | None = None
    shapley_conf_high: NDArray[np.float64] | None = None
    significant: NDArray[np.bool_] | None = None
    noise_share: float | None = None
    """``E[Var(Y | X)] / Var(Y)``: the share no factor explains (episode noise)."""
    noise_share_conf_low: float | None = None
    noise_share_conf_high: float | None = None
    num_subsets: int = 0
    """Subsets of factors whose conditional variance was estimated."""

    def _extra_columns(self) -> dict[str, str]:
        return {"significant": "boolean"}

    def _rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for index, attr in (("S1", "S1"), ("ST", "ST"), ("Shapley", "shapley")):
            est = getattr(self, attr)
            if est is None:
                continue
            low = _or_nan(getattr(self, f"{attr}_conf_low"), est)
            high = _or_nan(getattr(self, f"{attr}_conf_high"), est)
            conf = _or_nan(getattr(self, f"{attr}_conf"), est)
            for j, name in enumerate(self.factor_names):
                row = _row(name, index, est[j], low[j], high[j], conf[j], name, None)
                verdict = index == "ST" and self.significant is not None
                row["significant"] = bool(self.significant[j]) if verdict else None
                rows.append(row)
        return rows

    def _summary(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "groups": self.groups,
            "noise_share": self.noise_share,
            "noise_share_conf_low": self.noise_share_conf_low,
            "noise_share_conf_high": self.noise_share_conf_high,
            "num_subsets": self.num_subsets,
        }

    def plot(self, ax: Axes | None = None) -> Axes:
        """Bars of S1, ST and Shapley effects per factor with their intervals.

        Args:
            ax: Axes to draw into; a new figure is created when ``None``.

        Returns:
            The Axes drawn into.
        """
        ax = _new_axes(ax)
        positions = np.arange(len(self.factor_names))
        kinds = [k for k in ("S1", "ST", "shapley") if getattr(self, k) is not None]
        width = 0.8 / len(kinds)
        for n, attr in enumerate(kinds):
            est = getattr(self, attr)
            err = _error_bars(
                est,
                _or_nan(getattr(self, f"{attr}_conf_low"), est),
                _or_nan(getattr(self, f"{attr}_conf_high"), est),
            )
            offset = (n - (len(kinds) - 1) / 2) * width
            ax.bar(positions + offset, est, width, yerr=err, capsize=3, label=attr)
        ax.set_xticks(positions, self.factor_names, rotation=45, ha="right")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_ylabel("index")
        title = self._title("nearest-neighbour indices")
        if self.noise_share is not None:
            title += f"; noise share {self.noise_share:.2f}"
        ax.set_title(title)
        ax.legend()
        return ax
