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

The module also holds the small input checks the estimators share (private).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm

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

Seed = int | np.random.Generator | None


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
    """Sobol' indices from a Saltelli design (see :func:`analysis.sobol.sobol_indices`).

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
    """Morris elementary-effect statistics (see :func:`analysis.morris.morris_indices`).

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
    """Indices estimated from plain random draws (see :mod:`analysis.given_data`).

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
    """Per factor, whether it beats the dummy threshold (``None`` without dummies)."""
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
            row["significant"] = None if self.significant is None else bool(self.significant[j])
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


# --------------------------------------------------------------------------------------
# Frame, JSON and plot helpers
# --------------------------------------------------------------------------------------


def _row(
    factor: str,
    index: str,
    estimate: float,
    low: float,
    high: float,
    conf: float,
    factor_a: str,
    factor_b: str | None,
) -> dict[str, Any]:
    return {
        "factor": factor,
        "index": index,
        "estimate": float(estimate),
        "conf_low": float(low),
        "conf_high": float(high),
        "conf": float(conf),
        "factor_a": factor_a,
        "factor_b": factor_b,
    }


def _or_nan(values: NDArray[np.float64] | None, like: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.full_like(like, np.nan) if values is None else values


def _jsonable(value: Any) -> Any:
    """Plain Python value for ``json.dumps``: arrays to lists, NaN to ``None``."""
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _new_axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt  # lazy: matplotlib is optional and slow to import

    _, new_ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    return new_ax


def _error_bars(
    est: NDArray[np.float64], low: NDArray[np.float64], high: NDArray[np.float64]
) -> NDArray[np.float64] | None:
    """Asymmetric error bars ``[est - low, high - est]`` (``None`` if no interval)."""
    if np.all(np.isnan(low)) and np.all(np.isnan(high)):
        return None
    lower = np.nan_to_num(np.clip(est - low, 0.0, None))
    upper = np.nan_to_num(np.clip(high - est, 0.0, None))
    return np.vstack([lower, upper])


# --------------------------------------------------------------------------------------
# Input checks and bootstrap helpers shared by the estimators (private)
# --------------------------------------------------------------------------------------

_CHUNK_ELEMENTS = 1 << 22
"""Elements of one bootstrap count block (4 Mi float64 = 32 MiB)."""


def _generator(seed: Seed) -> tuple[np.random.Generator, int | None]:
    """A Generator for ``seed`` and the integer seed to record (``seed=0`` is a seed)."""
    if isinstance(seed, np.random.Generator):
        return seed, None
    if seed is None:
        return np.random.default_rng(), None
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(
            "`seed` must be an int, a numpy.random.Generator or None, got "
            f"{type(seed).__name__}; pass e.g. seed=0"
        )
    if seed < 0:
        raise ValueError(f"`seed` must be a non-negative int, got {seed}; pass e.g. seed=0")
    return np.random.default_rng(int(seed)), int(seed)


def _check_conf_level(conf_level: float) -> float:
    if not isinstance(conf_level, float | int) or not 0.0 < float(conf_level) < 1.0:
        raise ValueError(
            f"`conf_level` must be a number strictly between 0 and 1, got {conf_level!r}; "
            "pass e.g. conf_level=0.95"
        )
    return float(conf_level)


def _check_count(value: int, name: str, minimum: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}; {hint}")
    return int(value)


def _check_num_resamples(num_resamples: int) -> int:
    value = _check_count(num_resamples, "num_resamples", 0, "pass 0 for no intervals or e.g. 1000")
    if value == 1:
        raise ValueError(
            "`num_resamples` must be 0 (no intervals) or at least 2, got 1; pass e.g. 1000"
        )
    return value


def _check_outcome(Y: ArrayLike, name: str = "Y") -> NDArray[np.float64]:
    """``Y`` as a 1-D float array; NaN/inf refused with the first offending rows."""
    arr = np.asarray(Y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"`{name}` must be a 1-D array with one value per row, got shape {arr.shape}; "
            "analyse one outcome at a time"
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(
            f"`{name}` must be numeric, got dtype {arr.dtype}; encode the outcome as numbers"
        )
    values = arr.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        first = ", ".join(str(i) for i in bad[:10])
        more = ", ..." if bad.size > 10 else ""
        raise ValueError(
            f"`{name}` must be finite, got {bad.size} NaN/inf value(s) at rows [{first}{more}]; "
            "re-run or drop those rows (SALib would silently return zeros)"
        )
    return values


def _check_factor_names(factor_names: Sequence[str] | None, num_factors: int) -> tuple[str, ...]:
    if factor_names is None:
        return tuple(f"x{j + 1}" for j in range(num_factors))
    if isinstance(factor_names, str):
        raise TypeError(
            f"`factor_names` must be a sequence of strings, got the string {factor_names!r}; "
            "pass a list such as ['mass', 'friction']"
        )
    names = tuple(str(n) for n in factor_names)
    if len(names) != num_factors:
        raise ValueError(
            f"`factor_names` must have {num_factors} names (one per factor), got {len(names)}; "
            "pass one name per column"
        )
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"`factor_names` must be unique, got duplicates {dupes}; rename them")
    return names


def _resample_counts(
    rng: np.random.Generator, num_rows: int, num_resamples: int
) -> Iterator[NDArray[np.float64]]:
    """Bootstrap resamples as blocks of multinomial count rows.

    Yields float arrays of shape ``(block, num_rows)``; row ``r`` counts how often
    each of the ``num_rows`` rows is drawn in resample ``r`` (rows sum to
    ``num_rows``). A statistic that is a ratio of row sums is then a matrix product
    ``counts @ terms``. Blocks hold at most ``_CHUNK_ELEMENTS`` counts.
    """
    block = max(1, min(num_resamples, _CHUNK_ELEMENTS // max(num_rows, 1)))
    done = 0
    while done < num_resamples:
        size = min(block, num_resamples - done)
        draws = rng.integers(0, num_rows, size=(size, num_rows))
        draws += (np.arange(size) * num_rows)[:, np.newaxis]
        counts = np.bincount(draws.ravel(), minlength=size * num_rows)
        del draws
        yield counts.reshape(size, num_rows).astype(np.float64)
        done += size


def _bootstrap_summary(
    samples: NDArray[np.float64], conf_level: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """``(Z × SD, lower percentile, upper percentile)`` over axis 0 of ``samples``."""
    z = norm.ppf(0.5 + conf_level / 2.0)
    conf = z * samples.std(axis=0, ddof=1)
    low, high = np.quantile(samples, [(1.0 - conf_level) / 2.0, (1.0 + conf_level) / 2.0], axis=0)
    return conf, low, high


@contextlib.contextmanager
def _global_rng_untouched() -> Iterator[None]:
    """Restore numpy's legacy global RNG state on exit.

    Some SALib analyzers call ``np.random.seed`` or draw from the global RNG
    (``delta``; ``pawn`` with a seed); the caller's global stream must not notice.
    """
    state = np.random.get_state()  # noqa: NPY002 - saving the legacy global state is the point
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002
