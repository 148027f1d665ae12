"""Typed results of the sensitivity estimators: tidy frames, JSON dicts and plots.

Contents:

- :class:`SobolResult`: first, total and (optionally) second-order Sobol' indices.
- :class:`MorrisResult`: Morris screening statistics ``mu``, ``mu_star``, ``sigma``.
- :class:`GivenDataResult`: first-order (or distribution-based) indices estimated
  from plain random draws, with a dummy-factor threshold and a noise share.
- :data:`FRAME_COLUMNS`, :data:`PAIR_SEPARATOR`: the tidy frame schema.

Every result has ``to_frame()`` (a tidy :class:`pandas.DataFrame`, one row per
factor and index), ``to_dict()`` (JSON-serializable, NaN written as ``None``) and
``plot(ax=None)`` (matplotlib, imported only when called).

The tidy frame has the columns of :data:`FRAME_COLUMNS`:

``factor``
    The factor name; for a second-order index the pair ``"a×b"``
    (:data:`PAIR_SEPARATOR`). Filter pairs with ``factor_a``/``factor_b``.
``index``
    What was estimated: ``"S1"``, ``"ST"``, ``"S2"`` (Sobol'), ``"mu"``, ``"mu_star"``,
    ``"sigma"`` (Morris), ``"S1_binning"``, ``"S1_rbd_fast"``, ``"pawn_median"``,
    ``"delta"``... (given data).
``estimate``
    The point estimate.
``conf_low``, ``conf_high``
    The interval at ``conf_level`` (its kind is documented by each estimator;
    NaN when the estimator gives none).
``conf``
    The symmetric half-width ``Z × bootstrap SD`` that SALib reports as ``*_conf``.
``factor_a``, ``factor_b``
    The factor (``factor_b`` missing) or the two factors of a pair.

:class:`GivenDataResult` frames add a ``significant`` column (nullable boolean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from varirec.analysis.estimators._plotting import _error_bars, _new_axes
from varirec.analysis.estimators._records import _jsonable, _or_nan, _row

if TYPE_CHECKING:
    from matplotlib.axes import Axes


__all__ = [
    "FRAME_COLUMNS",
    "PAIR_SEPARATOR",
    "GivenDataResult",
    "MorrisResult",
    "SobolResult",
]

FRAME_COLUMNS: tuple[str, ...] = (
    "factor",
    "index",
    "estimate",
    "conf_low",
    "conf_high",
    "conf",
    "factor_a",
    "factor_b",
)
"""Columns of every ``to_frame()``, in order (given-data frames add ``significant``)."""

PAIR_SEPARATOR = "×"
"""Joins the two factor names of a second-order index in the ``factor`` column."""


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class _ResultBase:
    """What every result records about the study that produced it."""

    method: str
    """The estimator, e.g. ``"sobol"``, ``"morris"``, ``"binning"``, ``"rbd_fast"``."""
    factor_names: tuple[str, ...]
    """Factor names, in the column order of the design or data."""
    num_samples: int
    """Sample size in the estimator's own unit (documented by each result class)."""
    num_evaluations: int
    """Number of outcome values analysed (rows of ``Y``)."""
    outcome: str | None = None
    """Name of the analysed outcome, if known."""
    conf_level: float = 0.95
    """Confidence level of the intervals."""
    num_resamples: int = 0
    """Bootstrap resamples behind the intervals (0: no intervals)."""
    seed: int | None = None
    """The integer seed, if one was given (``None`` for a Generator or no seed)."""
    notes: list[str] = field(default_factory=list)
    """Plain-language remarks: dropped rows, binning choices, caveats."""

    def _rows(self) -> list[dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _extra_columns(self) -> dict[str, str]:
        return {}

    def _summary(self) -> dict[str, Any]:
        return {}

    def to_frame(self) -> pd.DataFrame:
        """The indices as a tidy frame, one row per factor (or pair) and index.

        Returns:
            A :class:`pandas.DataFrame` with the columns of :data:`FRAME_COLUMNS`
            (plus ``significant`` for :class:`GivenDataResult`).
        """
        extra = self._extra_columns()
        columns = list(FRAME_COLUMNS) + list(extra)
        frame = pd.DataFrame(self._rows(), columns=columns)
        for name in ("factor", "index", "factor_a", "factor_b"):
            frame[name] = frame[name].astype("string")
        for name in ("estimate", "conf_low", "conf_high", "conf"):
            frame[name] = frame[name].astype("float64")
        for name, dtype in extra.items():
            frame[name] = frame[name].astype(dtype)
        return frame

    def to_dict(self) -> dict[str, Any]:
        """The study and its indices as plain Python objects (``json.dumps`` works).

        NaN becomes ``None``; arrays become lists; ``"indices"`` holds the rows of
        :meth:`to_frame` as records.
        """
        out: dict[str, Any] = {
            "method": self.method,
            "outcome": self.outcome,
            "factor_names": list(self.factor_names),
            "num_samples": self.num_samples,
            "num_evaluations": self.num_evaluations,
            "conf_level": self.conf_level,
            "num_resamples": self.num_resamples,
            "seed": self.seed,
            "notes": list(self.notes),
        }
        out.update(self._summary())
        out["indices"] = [
            {key: _jsonable(value) for key, value in row.items()} for row in self._rows()
        ]
        return {key: _jsonable(value) for key, value in out.items()}

    def _title(self, what: str) -> str:
        outcome = f" of {self.outcome}" if self.outcome else ""
        return f"{what}{outcome} (N={self.num_samples})"


@dataclass(kw_only=True)
class SobolResult(_ResultBase):
    """Sobol' indices from a Saltelli design (see
    :func:`varirec.analysis.estimators.sobol.sobol_indices`).

    ``num_samples`` is the number of base samples ``N``; the design had
    ``N·(2D+2)`` (second order) or ``N·(D+2)`` rows. Arrays are ``(D,)``; second-order
    arrays are ``(D, D)`` with the pair ``(j, k)``, ``j < k``, in the upper triangle
    and NaN elsewhere (SALib's layout). ``*_conf`` is SALib's symmetric
    ``Z × bootstrap SD``; ``*_conf_low``/``*_conf_high`` are bootstrap percentile
    bounds.
    """

    S1: NDArray[np.float64]
    S1_conf: NDArray[np.float64]
    S1_conf_low: NDArray[np.float64]
    S1_conf_high: NDArray[np.float64]
    ST: NDArray[np.float64]
    ST_conf: NDArray[np.float64]
    ST_conf_low: NDArray[np.float64]
    ST_conf_high: NDArray[np.float64]
    S2: NDArray[np.float64] | None = None
    S2_conf: NDArray[np.float64] | None = None
    S2_conf_low: NDArray[np.float64] | None = None
    S2_conf_high: NDArray[np.float64] | None = None

    @property
    def second_order(self) -> bool:
        """Whether second-order indices were estimated."""
        return self.S2 is not None

    def _rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for index in ("S1", "ST"):
            est, conf = getattr(self, index), getattr(self, f"{index}_conf")
            low, high = getattr(self, f"{index}_conf_low"), getattr(self, f"{index}_conf_high")
            for j, name in enumerate(self.factor_names):
                rows.append(_row(name, index, est[j], low[j], high[j], conf[j], name, None))
        if self.S2 is not None:
            s2_conf = _or_nan(self.S2_conf, self.S2)
            s2_low = _or_nan(self.S2_conf_low, self.S2)
            s2_high = _or_nan(self.S2_conf_high, self.S2)
            names = self.factor_names
            for j, k in zip(*np.triu_indices(len(names), k=1), strict=True):
                rows.append(
                    _row(
                        f"{names[j]}{PAIR_SEPARATOR}{names[k]}",
                        "S2",
                        self.S2[j, k],
                        s2_low[j, k],
                        s2_high[j, k],
                        s2_conf[j, k],
                        names[j],
                        names[k],
                    )
                )
        return rows

    def _summary(self) -> dict[str, Any]:
        return {"second_order": self.second_order}

    def plot(self, ax: Axes | None = None) -> Axes:
        """Bar plot of S1 and ST per factor with their percentile intervals.

        Args:
            ax: Axes to draw into; a new figure is created when ``None``.

        Returns:
            The Axes drawn into.
        """
        ax = _new_axes(ax)
        positions = np.arange(len(self.factor_names))
        width = 0.4
        for offset, index in ((-width / 2, "S1"), (width / 2, "ST")):
            est = getattr(self, index)
            err = _error_bars(
                est, getattr(self, f"{index}_conf_low"), getattr(self, f"{index}_conf_high")
            )
            ax.bar(positions + offset, est, width, yerr=err, capsize=3, label=index)
        ax.set_xticks(positions, self.factor_names, rotation=45, ha="right")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_ylabel("Sobol' index")
        ax.set_title(self._title("Sobol' indices"))
        ax.legend()
        return ax


@dataclass(kw_only=True)
class MorrisResult(_ResultBase):
    """Morris elementary-effect statistics (see
    :func:`varirec.analysis.estimators.morris.morris_indices`).

    ``num_samples`` is the number of trajectories ``r``; the design had ``r·(D+1)``
    rows. ``mu_star_conf`` is SALib's ``Z × bootstrap SD`` of ``mu_star``; the
    interval is ``mu_star ± mu_star_conf`` clipped at 0. ``mu`` and ``sigma`` have no
    interval.
    """

    mu: NDArray[np.float64]
    mu_star: NDArray[np.float64]
    sigma: NDArray[np.float64]
    mu_star_conf: NDArray[np.float64]
    mu_star_conf_low: NDArray[np.float64]
    mu_star_conf_high: NDArray[np.float64]
    num_levels: int = 4
    """Grid levels of the Morris design."""

    def _rows(self) -> list[dict[str, Any]]:
        nan = math.nan
        rows: list[dict[str, Any]] = []
        for j, name in enumerate(self.factor_names):
            rows.append(_row(name, "mu", self.mu[j], nan, nan, nan, name, None))
        for j, name in enumerate(self.factor_names):
            rows.append(
                _row(
                    name,
                    "mu_star",
                    self.mu_star[j],
                    self.mu_star_conf_low[j],
                    self.mu_star_conf_high[j],
                    self.mu_star_conf[j],
                    name,
                    None,
                )
            )
        for j, name in enumerate(self.factor_names):
            rows.append(_row(name, "sigma", self.sigma[j], nan, nan, nan, name, None))
        return rows

    def _summary(self) -> dict[str, Any]:
        return {"num_levels": self.num_levels}

    def plot(self, ax: Axes | None = None) -> Axes:
        """Scatter of ``mu_star`` (with its interval) against ``sigma``, labelled.

        Factors to the right matter; factors high above the diagonal act through
        interactions or non-linearity (Morris 1991).

        Args:
            ax: Axes to draw into; a new figure is created when ``None``.

        Returns:
            The Axes drawn into.
        """
        ax = _new_axes(ax)
        err = _error_bars(self.mu_star, self.mu_star_conf_low, self.mu_star_conf_high)
        ax.errorbar(self.mu_star, self.sigma, xerr=err, fmt="o", capsize=3)
        for name, x, y in zip(self.factor_names, self.mu_star, self.sigma, strict=True):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4))
        top = float(np.nanmax(np.r_[self.mu_star, self.sigma, 0.0]))
        ax.plot([0.0, top], [0.0, top], linestyle=":", color="grey", linewidth=0.8)
        ax.set_xlabel("mu* (mean |elementary effect|)")
        ax.set_ylabel("sigma (SD of elementary effects)")
        ax.set_title(self._title("Morris screening"))
        return ax


@dataclass(kw_only=True)
class GivenDataResult(_ResultBase):
    """Indices estimated from plain random draws (see
    :mod:`varirec.analysis.estimators.given_data`).

    ``num_samples`` is the number of rows. ``index`` names the main statistic
    (``"S1_binning"``, ``"S1_rbd_fast"``, ``"pawn_median"``, ``"delta"``) whose
    ``estimate``/``conf``/``conf_low``/``conf_high`` arrays are ``(D,)``. Dummy
    factors (random columns independent of the outcome) give ``dummy_threshold``;
    ``significant[j]`` follows the rule of the estimator that built the result.
    """

    index: str
    estimate: NDArray[np.float64]
    conf: NDArray[np.float64]
    conf_low: NDArray[np.float64]
    conf_high: NDArray[np.float64]
    significant: NDArray[np.bool_] | None = None
    """Per factor, whether it beats the dummy threshold (``None``: no verdict, e.g.
    without dummies, or binning with ``num_resamples=0``)."""
    dummy_threshold: float | None = None
    """The ``conf_level`` quantile of the dummy factors' estimates."""
    dummy_estimates: NDArray[np.float64] | None = None
    """The dummy factors' point estimates (their null distribution)."""
    noise_share: float | None = None
    """Share of Var(Y) that the significant factors, jointly, do not explain."""
    noise_share_conf_low: float | None = None
    noise_share_conf_high: float | None = None
    num_bins: NDArray[np.int_] | None = None
    """Bins (or distinct levels) used per factor, for binning estimators."""
    extra: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    """Further per-factor statistics without intervals (e.g. ``"pawn_maximum"``)."""
    not_estimated: dict[str, str] = field(default_factory=dict)
    """Factors the estimator did not estimate (NaN), with the reason in words. They
    have no verdict: ``significant`` is missing for them in the frame."""

    def _extra_columns(self) -> dict[str, str]:
        return {"significant": "boolean"}

    def _rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for j, name in enumerate(self.factor_names):
            row = _row(
                name,
                self.index,
                self.estimate[j],
                self.conf_low[j],
                self.conf_high[j],
                self.conf[j],
                name,
                None,
            )
            row["significant"] = (
                None
                if self.significant is None or not np.isfinite(self.estimate[j])
                else bool(self.significant[j])
            )
            rows.append(row)
        nan = math.nan
        for index, values in self.extra.items():
            for j, name in enumerate(self.factor_names):
                row = _row(name, index, values[j], nan, nan, nan, name, None)
                row["significant"] = None
                rows.append(row)
        return rows

    def _summary(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "dummy_threshold": self.dummy_threshold,
            "dummy_estimates": self.dummy_estimates,
            "noise_share": self.noise_share,
            "noise_share_conf_low": self.noise_share_conf_low,
            "noise_share_conf_high": self.noise_share_conf_high,
            "num_bins": self.num_bins,
            "not_estimated": self.not_estimated,
        }

    def plot(self, ax: Axes | None = None) -> Axes:
        """Bar plot of the main index with intervals and the dummy threshold line.

        Args:
            ax: Axes to draw into; a new figure is created when ``None``.

        Returns:
            The Axes drawn into.
        """
        ax = _new_axes(ax)
        positions = np.arange(len(self.factor_names))
        err = _error_bars(self.estimate, self.conf_low, self.conf_high)
        colors = None
        if self.significant is not None:
            colors = ["tab:blue" if s else "tab:gray" for s in self.significant]
        ax.bar(positions, self.estimate, yerr=err, capsize=3, color=colors)
        if self.dummy_threshold is not None:
            ax.axhline(
                self.dummy_threshold,
                color="tab:red",
                linestyle="--",
                label=f"dummy threshold ({self.dummy_threshold:.3g})",
            )
            ax.legend()
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(positions, self.factor_names, rotation=45, ha="right")
        ax.set_ylabel(self.index)
        title = self._title(self.index)
        if self.noise_share is not None:
            title += f"; noise share {self.noise_share:.2f}"
        ax.set_title(title)
        return ax
