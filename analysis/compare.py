"""How two policies differ under the same conditions: :func:`compare`.

Two runs recorded with the same seed and the same variations (and design) drew the
same values and the same reset seeds for every episode key they share (draws are a
hash of the run seed, the variation and the key): run them with two policies
(``run_study(..., policy="new")``) and each matched pair of episodes differs only by
the policy. :func:`compare` then gives

- the success-rate gap ``B - A`` with a paired bootstrap interval over the matched
  episodes, and for a 0/1 outcome McNemar's exact test on the discordant pairs (for
  design runs, whose rows of one base sample share values: a bootstrap over base
  samples and a sign-flip test over them);
- the gap along every factor (equal-frequency bins, paired t intervals);
- which factors explain the gap: first-order indices of the paired difference
  (bias-corrected binning with its dummy threshold).

It refuses runs whose conditions differ (seed, variations, design) or whose matched
episodes drew different values, naming the first mismatch. Episodes are matched on
``(env_id, episode)``, or on ``(sample_id, seed)`` for design runs (a schedule hands
rows to whichever env is free, and that depends on the policy). With plain random
draws, an env runs as many episodes as fit in the budget, which depends on the
policy; pairing keeps the keys both runs finished (``num_envs >= n`` makes every key
match).

McNemar (1947), *Note on the sampling error of the difference between correlated
proportions or percentages*, Psychometrika 12, doi:10.1007/BF02295996.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from varirec import open_dataset
from varirec.analysis.design_rows import base_samples, independent_rows
from varirec.analysis.estimators._bootstrap import _resample_counts
from varirec.analysis.estimators._checks import _check_conf_level, _check_num_resamples
from varirec.analysis.estimators._rng import Seed, _generator
from varirec.analysis.estimators.binning import first_order_binning
from varirec.analysis.estimators.results import GivenDataResult
from varirec.analysis.failures._inputs import Factors, bin_codes
from varirec.analysis.failures.curves import default_curve_bins
from varirec.analysis.failures.regional import regional_sensitivity
from varirec.analysis.tables.episode_table import episode_table
from varirec.errors import DatasetError, UnknownNameError
from varirec.storage import Dataset

__all__ = ["Comparison", "ConditionsMismatchError", "check_same_conditions", "compare"]


class ConditionsMismatchError(ValueError):
    """Two runs that cannot be paired: their conditions differ (the message says where)."""


@dataclass
class Comparison:
    """Run B against run A over matched episodes.

    Attributes:
        runs: ``(A, B)``.
        policies: the ``policy`` each run's metadata names (None: not recorded).
        outcome: the outcome compared.
        num_pairs: matched episodes.
        unmatched: per run, its episodes with no partner (left out).
        mean_a, mean_b: the outcome's mean (the success rate) over the pairs.
        gap: ``mean_b - mean_a``; ``gap_conf``: its paired bootstrap interval.
        discordant: for a 0/1 outcome, pairs (A succeeded, B failed) and (A failed,
            B succeeded); ``mcnemar_p``: McNemar's exact p-value (None otherwise, and
            for design runs: it takes the pairs as independent).
        curves: the gap per (factor, bin), with paired t intervals.
        explained: first-order indices of the paired difference (None: it never varies).
        disagreement: per factor, its values where the two runs' outcomes differ vs
            where they agree (KS / chi-square, strongest first): where the policies
            part, which first-order indices of the difference miss when the gap lives
            in an interaction.
        notes: what was left out, in words.
        sign_flip_p: for design runs, the p-value of a zero gap from a sign-flip test
            over whole base samples (None otherwise); ``base_samples``: their number.
            The gap's interval then resamples base samples, not pairs, and the curves,
            disagreement and explained indices read the independent pairs only
            (:func:`~varirec.analysis.design_rows.independent_rows`).
    """

    runs: tuple[str, str]
    policies: tuple[str | None, str | None]
    outcome: str
    num_pairs: int
    unmatched: dict[str, int]
    mean_a: float
    mean_b: float
    gap: float
    gap_conf: tuple[float, float]
    conf_level: float
    discordant: tuple[int, int] | None
    mcnemar_p: float | None
    curves: pd.DataFrame
    explained: GivenDataResult | None
    disagreement: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    sign_flip_p: float | None = None
    base_samples: int | None = None

    def names(self) -> tuple[str, str]:
        """Each run as its policy's name when recorded, else its run id."""
        return tuple(p or r for p, r in zip(self.policies, self.runs, strict=True))  # type: ignore[return-value]

    def explaining(self) -> pd.DataFrame:
        """Factors ranked by how much of the paired difference they explain."""
        if self.explained is None:
            return pd.DataFrame(columns=["factor", "estimate", "conf_low", "conf_high", "effect",
                                         "disagreement", "disagreement_p"])  # fmt: skip
        frame = self.explained.to_frame()
        frame = frame[frame["index"] == self.explained.index]
        out = frame[["factor", "estimate", "conf_low", "conf_high"]].copy()
        out["effect"] = (
            list(self.explained.significant)
            if self.explained.significant is not None
            else [None] * len(out)
        )
        part = self.disagreement.set_index("factor")
        out["disagreement"] = out["factor"].map(part["statistic"])
        out["disagreement_p"] = out["factor"].map(part["p_value"])
        return out.sort_values("estimate", ascending=False).reset_index(drop=True)

    def summary(self) -> str:
        """The gap and what explains it, in plain words."""
        a, b = self.names()
        lo, hi = self.gap_conf
        what = "success rate" if self.discordant is not None else f"mean {self.outcome}"
        over = (
            "paired bootstrap"
            if self.base_samples is None
            else f"bootstrap over {self.base_samples} base samples"
        )
        interval = (
            f"[{lo:+.3g}, {hi:+.3g}] ({self.conf_level:.0%} {over})"
            if np.isfinite(lo) and np.isfinite(hi)
            else "(no interval: no resamples)"
        )
        lines = [
            f"{b} vs {a} over {self.num_pairs} matched episodes: {what} "
            f"{self.mean_b:.3g} vs {self.mean_a:.3g}, gap {self.gap:+.3g} {interval}."
        ]
        test = (
            f"McNemar p = {self.mcnemar_p:.3g}"
            if self.mcnemar_p is not None
            else f"sign-flip test over {self.base_samples} base samples p = {self.sign_flip_p:.3g}"
            if self.sign_flip_p is not None
            else None
        )
        if self.discordant is not None:
            lines.append(
                f"Discordant pairs: {self.discordant[1]} where only {b} succeeded, "
                f"{self.discordant[0]} where only {a} did" + (f" ({test})." if test else ".")
            )
        elif test is not None and self.mcnemar_p is None:
            lines.append(f"A zero gap: {test}.")
        # Adjusted for testing every factor: raw p-values name some inert factor in a
        # third of the comparisons of 8 factors.
        part = self.disagreement[self.disagreement["p_adjusted"] < 1 - self.conf_level].head(3)
        if len(part):
            words = [f"{r.factor} ({r.test} {r.statistic:.2f})" for r in part.itertuples()]
            lines.append("The runs disagree mostly along " + ", ".join(words) + ".")
        ranked = self.explaining()
        top = ranked[ranked["effect"] == True].head(3)  # noqa: E712 - a nullable column
        if len(top):
            parts = [f"{r.factor} (S1 {r.estimate:.2f})" for r in top.itertuples()]
            lines.append("The size of the gap moves with " + ", ".join(parts) + ".")
        elif self.explained is not None and not self.explained.num_resamples:
            lines.append("What explains the gap: no verdict without resamples (--resamples).")
        elif self.explained is not None:
            lines.append("No factor explains the gap beyond the dummy threshold.")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": list(self.runs),
            "policies": list(self.policies),
            "outcome": self.outcome,
            "num_pairs": self.num_pairs,
            "unmatched": self.unmatched,
            "mean_a": self.mean_a,
            "mean_b": self.mean_b,
            "gap": self.gap,
            "gap_conf": list(self.gap_conf),
            "conf_level": self.conf_level,
            "discordant": None if self.discordant is None else list(self.discordant),
            "mcnemar_p": self.mcnemar_p,
            "sign_flip_p": self.sign_flip_p,
            "base_samples": self.base_samples,
            "summary": self.summary(),
            "explaining": self.explaining().to_dict(orient="records"),
            "disagreement": self.disagreement.to_dict(orient="records"),
            "curves": self.curves.to_dict(orient="records"),
            "notes": self.notes,
        }

    def plot_curves(self, factors: Sequence[str] | None = None) -> Any:
        """The gap along each factor (default order: what explains it most first)."""
        import math

        import matplotlib.pyplot as plt

        names = list(self.explaining()["factor"]) if factors is None else list(factors)
        names = names or list(dict.fromkeys(self.curves["factor"]))
        cols = min(3, max(1, len(names)))
        rows = math.ceil(len(names) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.9 * rows), squeeze=False)
        for ax, name in zip(axes.flat, names, strict=False):
            c = self.curves[self.curves["factor"] == name]
            err = np.vstack([c["gap"] - c["conf_low"], c["conf_high"] - c["gap"]])
            ax.errorbar(np.arange(len(c)), c["gap"], yerr=err, marker="o", capsize=3)
            ax.set_xticks(np.arange(len(c)), c["label"], rotation=30, ha="right", fontsize=7)
            ax.axhline(0.0, color="black", linewidth=0.8)
            ax.axhline(self.gap, color="gray", linestyle="--", linewidth=0.8)
            ax.set_title(name, fontsize=10)
            ax.set_ylabel("gap (B - A)")
        for ax in list(axes.flat)[len(names) :]:
            ax.set_visible(False)
        fig.tight_layout()
        return fig


def _first_difference(a: Any, b: Any, where: str) -> str | None:
    """Where two JSON-like values first differ, as ``where.key: A vs B``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(dict.fromkeys([*a, *b])):
            if key not in a or key not in b:
                return f"{where}.{key}: {'missing' if key not in a else 'present'} in A, " + (
                    "missing in B" if key not in b else "present in B"
                )
            found = _first_difference(a[key], b[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        keyed = all(isinstance(x, dict) and "key" in x for x in [*a, *b])
        if keyed and len({x["key"] for x in a}) == len(a) and len({x["key"] for x in b}) == len(b):
            # Variations by key: their order does not change a draw (keyed by the key).
            by_a, by_b = {x["key"]: x for x in a}, {x["key"]: x for x in b}
            for key in sorted(by_a.keys() ^ by_b.keys()):
                side = "A" if key in by_a else "B"
                return f"{where}[{key}]: only in {side}"
            for key in by_a:
                found = _first_difference(by_a[key], by_b[key], f"{where}[{key}]")
                if found:
                    return found
            return None
        if len(a) != len(b):
            return f"{where}: {len(a)} entries in A vs {len(b)} in B"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            label = x.get("key", i) if isinstance(x, dict) else i
            found = _first_difference(x, y, f"{where}[{label}]")
            if found:
                return found
        return None
    if json.dumps(a, default=str) != json.dumps(b, default=str):
        return f"{where}: {a!r} in A vs {b!r} in B"
    return None


def check_same_conditions(ds: Dataset, run_a: str, run_b: str) -> None:
    """Refuse two runs whose seed, variations or design differ (names the first)."""
    for run in (run_a, run_b):
        info = ds.run(run)
        if info.status == "unknown" and not info.metadata:  # run.json gone or unreadable
            raise DatasetError(
                f"run {run!r} has no readable run.json (see the warning above), so its seed "
                "and variations cannot be checked against the other run's; restore run.json "
                "from a copy, or compare runs whose conditions are on record"
            )
    ma, mb = ds.run(run_a).metadata, ds.run(run_b).metadata
    for key in ("seed", "variations", "design"):
        found = _first_difference(ma.get(key), mb.get(key), key)
        if found:
            raise ConditionsMismatchError(
                f"runs {run_a!r} (A) and {run_b!r} (B) were not recorded under the same "
                f"conditions: {found}. Record both with the same seed and variations "
                "(run_study(..., seed=S, policy=...)) so each episode pair differs only by "
                "the policy"
            )


def _keys(frame: pd.DataFrame, design: bool) -> pd.MultiIndex:
    cols = ["sample_id", "seed"] if design else ["env_id", "episode"]
    return pd.MultiIndex.from_frame(frame[cols].astype("int64"))


def _paired_bootstrap(
    d: NDArray[np.float64],
    num_resamples: int,
    conf_level: float,
    rng: np.random.Generator,
    clusters: NDArray[np.int64] | None = None,
) -> tuple[float, float]:
    """Percentile interval of mean(d) over resamples of the pairs, or of whole
    ``clusters`` (int codes: a design's base samples, whose pairs are not independent),
    in blocks of resamples (:func:`_resample_counts`)."""
    if num_resamples == 0:
        return (np.nan, np.nan)
    if clusters is None:
        sums, sizes = d, np.ones(d.size)
    else:
        sums, sizes = np.bincount(clusters, weights=d), np.bincount(clusters).astype(float)
    means = [c @ sums / (c @ sizes) for c in _resample_counts(rng, sums.size, num_resamples)]
    alpha = 1.0 - conf_level
    lo, hi = np.quantile(np.concatenate(means), [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _sign_flip_p(
    d: NDArray[np.float64], clusters: NDArray[np.int64], rng: np.random.Generator,
    num_flips: int = 9999,
) -> float:  # fmt: skip
    """Two-sided p-value of a zero gap: the sum of ``d`` against its sums with each
    cluster's sign flipped at random (exact under the null that A and B are exchangeable
    within each cluster, however its pairs depend on each other)."""
    sums = np.bincount(clusters, weights=d)
    observed = abs(sums.sum())
    if observed == 0.0:
        return 1.0
    block = max(1, 4_000_000 // sums.size)
    beyond = 0
    for start in range(0, num_flips, block):
        k = min(block, num_flips - start)
        signs = rng.integers(0, 2, (k, sums.size)) * 2.0 - 1.0
        beyond += int((np.abs(signs @ sums) >= observed * (1 - 1e-12)).sum())
    return (1 + beyond) / (1 + num_flips)


def _gap_curves(
    factors: Factors, ya: NDArray[np.float64], yb: NDArray[np.float64], num_bins: int,
    conf_level: float,
) -> pd.DataFrame:  # fmt: skip
    d = yb - ya
    rows = []
    for j, name in enumerate(factors.names):
        codes, edges = bin_codes(factors.values[:, j], num_bins)
        m = int(codes.max()) + 1
        by_value = edges.size == m
        n = np.bincount(codes, minlength=m).astype(float)
        mean_d = np.bincount(codes, weights=d, minlength=m) / n
        sq = np.bincount(codes, weights=d**2, minlength=m)
        var = np.maximum(sq - n * mean_d**2, 0.0) / np.maximum(n - 1, 1)
        half = stats.t.ppf(0.5 + conf_level / 2, np.maximum(n - 1, 1)) * np.sqrt(var / n)
        mean_a = np.bincount(codes, weights=ya, minlength=m) / n
        mean_b = np.bincount(codes, weights=yb, minlength=m) / n
        for b in range(m):
            lo, hi = (edges[b], edges[b]) if by_value else (edges[b], edges[b + 1])
            label = factors.describe(name, lo) if by_value else f"[{lo:.3g}, {hi:.3g}]"
            rows.append((name, b, label, lo, hi, int(n[b]), mean_a[b], mean_b[b], mean_d[b],
                         mean_d[b] - half[b], mean_d[b] + half[b]))  # fmt: skip
    columns = ["factor", "bin", "label", "low", "high", "episodes", "mean_a", "mean_b", "gap",
               "conf_low", "conf_high"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def compare(
    dataset: str | os.PathLike[str] | Dataset,
    runs: Sequence[str],
    *,
    outcome: str = "success",
    num_bins: int | None = None,
    num_resamples: int = 1000,
    conf_level: float = 0.95,
    seed: Seed = 0,
) -> Comparison:
    """Compare run ``B = runs[1]`` against run ``A = runs[0]`` over matched episodes.

    Args:
        dataset: a dataset path or an open dataset.
        runs: the two run ids, ``(A, B)``.
        outcome: the outcome compared (0/1 success, or any number).
        num_bins: bins per factor of the gap curves (default: about 400 pairs per bin).
        num_resamples: paired bootstrap resamples (0: no interval).
        conf_level: interval level.
        seed: bootstrap and dummy-factor seed (0 is a seed).

    Raises:
        ValueError: not two distinct runs, or no matched episodes.
        ConditionsMismatchError: the runs' seed, variations or design differ, or a
            matched episode drew different values (the first mismatch is named).
        UnknownNameError: an unknown run or outcome.
    """
    runs = [runs] if isinstance(runs, str) else list(runs)
    if len(runs) != 2 or runs[0] == runs[1]:
        raise ValueError(f"`runs` must be two distinct run ids (A, B), got {runs!r}")
    num_resamples = _check_num_resamples(num_resamples)
    conf_level = _check_conf_level(conf_level)
    rng, _ = _generator(seed)
    ds = dataset if isinstance(dataset, Dataset) else open_dataset(dataset)
    run_a, run_b = runs
    for r in runs:
        ds.run(r)
    check_same_conditions(ds, run_a, run_b)
    design = bool(ds.run(run_a).metadata.get("design"))
    ta = episode_table(ds, run_a, drop_constant=False)
    tb = episode_table(ds, run_b, drop_constant=False)
    for t, r in ((ta, run_a), (tb, run_b)):
        if outcome not in t.outcomes:
            raise UnknownNameError(f"no outcome {outcome!r} in run {r!r}; outcomes: {t.outcomes}")
    fa, fb = (
        ta.frame.set_index(_keys(ta.frame, design)),
        tb.frame.set_index(_keys(tb.frame, design)),
    )
    for f, r in ((fa, run_a), (fb, run_b)):
        if f.index.has_duplicates:
            raise ConditionsMismatchError(
                f"run {r!r} has several episodes with the same key {f.index.names}; "
                "it cannot be paired"
            )
    shared = fa.index.intersection(fb.index)
    if shared.empty:
        raise ValueError(
            f"runs {run_a!r} and {run_b!r} share no episode key {list(fa.index.names)}; "
            "record both with the same seed and enough envs"
        )
    notes = []
    unmatched = {run_a: int(len(fa) - len(shared)), run_b: int(len(fb) - len(shared))}
    if any(unmatched.values()):
        notes.append(f"episodes without a partner left out: {unmatched}")
    fa, fb = fa.loc[shared], fb.loc[shared]
    damage = {r: ds.damage_note("draws", [r]) for r in runs}
    for r, t, other in ((run_a, ta, tb), (run_b, tb, ta)):
        if damage[r] is not None and not t.factors and other.factors:
            raise DatasetError(
                f"run {r!r} has no readable draws, so its episodes cannot be checked against "
                f"those of the other run (paired on the same draws): {damage[r]}"
            )
    factors = [f for f in ta.factors if f in tb.factors]
    if any(damage.values()):  # pairs whose draws one run lost with a damaged part: left out
        lost = np.zeros(len(fa), bool)
        for name in factors:
            lost |= fa[name].isna().to_numpy() ^ fb[name].isna().to_numpy()
        if lost.any():
            fa, fb = fa[~lost], fb[~lost]
            which = [r for r in runs if damage[r] is not None]
            notes.append(
                f"{int(lost.sum())} pair(s) left out: the draws of one side were lost with a "
                f"damaged draws part of run(s) {which}"
            )
    for name in factors:
        a, b = fa[name].to_numpy(), fb[name].to_numpy()
        same = (a == b) | (pd.isna(a) & pd.isna(b))
        if not same.all():
            i = int(np.flatnonzero(~same)[0])
            raise ConditionsMismatchError(
                f"episode {dict(zip(fa.index.names, fa.index[i], strict=True))} drew {name} = "
                f"{a[i]!r} in run {run_a!r} (A) but {b[i]!r} in run {run_b!r} (B): the runs "
                "do not share their draws, so their episodes cannot be paired"
            )
    ya = pd.to_numeric(fa[outcome], errors="coerce").to_numpy(float, na_value=np.nan)
    yb = pd.to_numeric(fb[outcome], errors="coerce").to_numpy(float, na_value=np.nan)
    ok = np.isfinite(ya) & np.isfinite(yb)
    if (~ok).any():
        notes.append(f"{int((~ok).sum())} pair(s) with a missing {outcome!r} left out")
    if not ok.any():
        present = [c for c in ("success", "return", "length") if c in fa and c != outcome]
        hint = f"; pick one that was, e.g. --outcome {present[0]}" if present else ""
        raise ValueError(
            f"outcome {outcome!r} has no value in any of the {len(ok)} matched pair(s) of "
            f"runs {run_a!r} and {run_b!r} (never recorded, or NaN throughout){hint}"
        )
    ya, yb = ya[ok], yb[ok]
    frame = fa.loc[ok]
    d = yb - ya
    n = int(ok.sum())
    clusters = None
    alone = np.ones(n, bool)  # the pairs read as independent draws
    if design:  # the rows of a base sample share values: resampled, tested as one
        keys = pd.DataFrame({"run_id": run_a, "sample_id": frame.index.get_level_values(0),
                             "seed": frame.index.get_level_values(1)})  # fmt: skip
        meta = {run_a: ds.run(run_a).metadata["design"]}
        clusters, alone = base_samples(keys, meta), independent_rows(keys, meta)
        notes.append(
            f"a design run: the gap's interval and test resample its {clusters.max() + 1} base "
            f"samples (their rows share values, and are not independent pairs); the curves, "
            f"the disagreement and what explains the gap read its {int(alone.sum())} "
            "independent pairs (each base sample's A and B rows, or each trajectory's first, "
            "one replicate each)"
        )
    binary = bool(np.isin(np.unique(np.concatenate([ya, yb])), (0.0, 1.0)).all())
    discordant = mcnemar = sign_flip = None
    if binary:
        only_a = int(((ya == 1) & (yb == 0)).sum())
        only_b = int(((ya == 0) & (yb == 1)).sum())
        discordant = (only_a, only_b)
    if clusters is not None:
        sign_flip = _sign_flip_p(d, clusters, rng)
    elif discordant is not None:  # McNemar's exact test takes the pairs as independent
        only_a, only_b = discordant
        mcnemar = (
            float(stats.binomtest(only_b, only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0
        )
    gap_conf = _paired_bootstrap(d, num_resamples, conf_level, rng, clusters)
    if clusters is not None and clusters.max() < 1:  # one base sample: no spread to read
        gap_conf = (np.nan, np.nan)
        notes.append("one base sample: no interval of the gap (record more base samples)")
    frame, sa, sb, sd = frame[alone], ya[alone], yb[alone], d[alone]
    varying = [f for f in factors if frame[f].nunique(dropna=True) > 1]
    fx = Factors.from_frame(frame, varying)
    bins = default_curve_bins(len(sd)) if num_bins is None else int(num_bins)
    curves = _gap_curves(fx, sa, sb, bins, conf_level)
    explained = None
    if len(sd) >= 10 and sd.min() != sd.max() and varying:
        explained = first_order_binning(
            frame[varying], sd, factor_names=varying, num_resamples=min(num_resamples, 500),
            conf_level=conf_level, seed=rng, noise_share=False, outcome=f"{outcome} gap",
        )  # fmt: skip
    elif len(sd) < 10:
        notes.append(f"{len(sd)} independent pair(s): too few to say what explains the gap")
    else:
        notes.append("the paired difference never varies: nothing to explain")
    policies = tuple(ds.run(r).metadata.get("user", {}).get("policy") for r in runs)
    return Comparison(
        (run_a, run_b), policies, outcome, n, unmatched, float(ya.mean()), float(yb.mean()),
        float(d.mean()), gap_conf, conf_level, discordant, mcnemar, curves, explained,
        regional_sensitivity(fx, sd == 0), notes, sign_flip,
        None if clusters is None else int(clusters.max() + 1),
    )  # fmt: skip
