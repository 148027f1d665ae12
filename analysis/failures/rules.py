"""The failure region in words: a shallow, cross-validated tree, checked on held-out episodes.

:func:`failure_rules` splits the episodes into a search part and a held-out part. On
the search part a classification tree of depth 1 or 2 (scikit-learn's
``DecisionTreeClassifier``; depth and leaf size picked by 5-fold cross-validated log
loss) cuts the factor space into at most four boxes, if it predicts success better
than the overall rate on the same folds (else there is no region). The box with the
lowest success rate on the search part is the failure region; its rate and the rate
everywhere else are then measured on the held-out episodes only, so the numbers in the
sentence are not the ones the search optimized (a region whose held-out interval
overlaps the rest is reported as not confirmed). A threshold's interval is the set of
split points whose likelihood ratio against the best split, within the tree's node,
stays below Hansen's critical value: the bootstrap of a split point, which it replaced,
is known not to hold its level (its 95 % intervals held a planted threshold in 76 % of
runs; a split point converges at rate N, not sqrt(N)). Refits on bootstrap resamples of
the search part tell how often the first split keeps its factor. The search uses at most
:data:`MAX_SEARCH` episodes (a tree fit grows with N log N); any beyond are held out.

Breiman, Friedman, Olshen & Stone (1984), *Classification and Regression Trees*.
Hansen (2000), *Sample splitting and threshold estimation*, Econometrica 68(3),
doi:10.1111/1468-0262.00124.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats
from scipy.special import xlogy

from varirec.analysis.failures._inputs import Factors, rate_interval

__all__ = ["MAX_SEARCH", "Condition", "FailureRule", "failure_rules"]

MAX_SEARCH = 40_000
"""Most episodes the rule search (cross-validation and refits) uses; the rest are held out."""


@dataclass(frozen=True)
class Condition:
    """One side of one split: ``factor <= threshold`` or ``factor > threshold``.

    For a categorical factor the threshold cuts its codes; :attr:`labels` then lists
    the categories on this side.
    """

    factor: str
    op: str
    threshold: float
    labels: tuple[str, ...] | None = None
    threshold_low: float | None = None
    """Lower end of the threshold's likelihood-ratio interval (None: none computed)."""
    threshold_high: float | None = None

    def text(self) -> str:
        if self.labels is not None:
            return f"{self.factor} in {{{', '.join(self.labels)}}}"
        words = f"{self.factor} {self.op} {self.threshold:.4g}"
        if self.threshold_low is not None and self.threshold_high is not None:
            words += f" [{self.threshold_low:.4g}, {self.threshold_high:.4g}]"
        return words

    def holds(self, x: NDArray[np.float64]) -> NDArray[np.bool_]:
        return x <= self.threshold if self.op == "<=" else x > self.threshold


@dataclass
class FailureRule:
    """The failure region found, and how it held up on held-out episodes.

    Attributes:
        conditions: the region, a conjunction (empty: no region was found).
        rate_inside / rate_outside: held-out success rate in / outside the region.
        conf_*: their intervals; ``episodes_inside/outside``: held-out counts.
        search_rate_inside: the rate in the region on the search part.
        depth: the tree depth chosen by cross-validation.
        leaves: every box of the tree (tidy rows, held-out rates).
        first_split_share: share of bootstrap refits whose first split used the
            same factor (how stable the rule is).
    """

    conditions: list[Condition]
    rate_inside: float
    conf_inside: tuple[float, float]
    episodes_inside: int
    rate_outside: float
    conf_outside: tuple[float, float]
    episodes_outside: int
    search_rate_inside: float
    depth: int
    conf_level: float
    leaves: pd.DataFrame = field(repr=False)
    first_split_share: float | None = None

    @property
    def confirmed(self) -> bool:
        """Whether the held-out episodes confirm the region: its success-rate interval
        lies wholly below the one of the episodes outside it."""
        return bool(self.conditions) and self.conf_inside[1] < self.conf_outside[0]

    @property
    def factors(self) -> list[str]:
        """Factors the region names, in order."""
        return list(dict.fromkeys(c.factor for c in self.conditions))

    def sentence(self) -> str:
        """The region in words, with held-out rates and intervals."""
        if not self.conditions:
            return (
                "no failure region: no split of the factors predicts failure better than the "
                f"overall rate ({_pct(self.rate_outside, self.conf_outside)}, held out)"
            )
        where = " and ".join(c.text() for c in self.conditions)
        return (
            f"success falls from {_pct(self.rate_outside, self.conf_outside)} to "
            f"{_pct(self.rate_inside, self.conf_inside)} when {where} "
            f"(held-out episodes: {self.episodes_inside} inside, {self.episodes_outside} outside"
            + ("" if self.confirmed else "; not confirmed: the intervals overlap")
            + ")"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "sentence": self.sentence(),
            "conditions": [c.__dict__ | {"text": c.text()} for c in self.conditions],
            "rate_inside": self.rate_inside,
            "conf_inside": list(self.conf_inside),
            "episodes_inside": self.episodes_inside,
            "rate_outside": self.rate_outside,
            "conf_outside": list(self.conf_outside),
            "episodes_outside": self.episodes_outside,
            "search_rate_inside": self.search_rate_inside,
            "depth": self.depth,
            "first_split_share": self.first_split_share,
            "confirmed": self.confirmed,
        }


def _pct(rate: float, conf: tuple[float, float]) -> str:
    if not np.isfinite(rate):
        return "n/a"
    return f"{rate:.0%} [{conf[0] * 100:.0f}, {conf[1] * 100:.0f}]"


def _leaf_paths(tree: Any, factors: Factors) -> dict[int, list[Condition]]:
    """Conditions from the root to each leaf, one per factor and side merged."""
    t = tree.tree_
    paths: dict[int, list[Condition]] = {}
    stack: list[tuple[int, list[Condition]]] = [(0, [])]
    while stack:
        node, conds = stack.pop()
        if t.children_left[node] == -1:
            paths[node] = _merge(conds)
            continue
        name, thr = factors.names[t.feature[node]], float(t.threshold[node])
        for child, op in ((t.children_left[node], "<="), (t.children_right[node], ">")):
            stack.append((child, [*conds, _condition(factors, name, op, thr)]))
    return paths


def _condition(factors: Factors, name: str, op: str, thr: float) -> Condition:
    labels = None
    if name in factors.labels:
        codes = np.arange(len(factors.labels[name]))
        side = codes <= thr if op == "<=" else codes > thr
        labels = tuple(np.asarray(factors.labels[name])[side].tolist())
    return Condition(name, op, thr, labels)


def _merge(conds: list[Condition]) -> list[Condition]:
    """Keep the tightest bound per (factor, side)."""
    best: dict[tuple[str, str], Condition] = {}
    for c in conds:
        key = (c.factor, c.op)
        old = best.get(key)
        tighter = old is None or (
            c.threshold < old.threshold if c.op == "<=" else c.threshold > old.threshold
        )
        if tighter:
            best[key] = c
    return list(best.values())


def _smoothed_log_loss(tree: Any, x: NDArray[np.float64], y: NDArray[np.bool_]) -> float:
    """The negative mean log loss on ``(x, y)`` of a fitted tree's leaf rates, each
    Laplace-corrected: ``(k + 1) / (n + 2)`` for ``k`` successes of ``n`` training
    episodes in the leaf (a scorer for scikit-learn's model selection)."""
    from sklearn.metrics import log_loss

    leaves = tree.apply(x)
    counts = tree.tree_.value[leaves, 0, :]  # per class: counts, or fractions (newer sklearn)
    n = tree.tree_.n_node_samples[leaves]
    column = list(tree.classes_).index(True) if True in tree.classes_ else None
    k = 0.0 if column is None else counts[:, column] / counts.sum(axis=1) * n
    return -float(log_loss(y, (k + 1.0) / (n + 2.0), labels=[False, True]))


def _choose_tree(
    x: NDArray[np.float64], y: NDArray[np.bool_], seed: int, conf_level: float
) -> Any | None:
    """The cross-validated tree, or None when no tree beats the overall rate.

    A tree must lower the held-out log loss of the constant (overall rate) prediction
    on the same folds, by more than the one-sided ``conf_level`` t bound of the
    per-fold differences; otherwise a region found in noise would always be reported.
    A leaf's rate is Laplace-corrected (:func:`_smoothed_log_loss`): a leaf pure in its
    training fold would otherwise predict 0 or 1, and one held-out episode of the other
    outcome there cost that fold a loss of ~35, whose spread then hid a real region.
    """
    from sklearn.dummy import DummyClassifier
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
    from sklearn.tree import DecisionTreeClassifier

    folds = 5
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    leaf = max(20, int(0.02 * len(y)))
    grid = {"max_depth": [1, 2], "min_samples_leaf": [leaf, 2 * leaf]}
    search = GridSearchCV(
        DecisionTreeClassifier(random_state=seed), grid, scoring=_smoothed_log_loss, cv=cv
    )
    search.fit(x, y)
    best = search.best_index_
    tree_scores = np.array([search.cv_results_[f"split{k}_test_score"][best] for k in range(folds)])
    constant = cross_val_score(DummyClassifier(strategy="prior"), x, y, cv=cv,
                               scoring="neg_log_loss")  # fmt: skip
    gain = tree_scores - constant
    bound = stats.t.ppf(conf_level, folds - 1) * gain.std(ddof=1) / np.sqrt(folds)
    return search.best_estimator_ if gain.mean() > bound else None


def failure_rules(
    factors: Factors,
    success: NDArray[np.bool_],
    *,
    holdout: float = 0.3,
    num_resamples: int = 20,
    conf_level: float = 0.95,
    rng: np.random.Generator,
) -> FailureRule:
    """Find the failure region on a search part; measure it on the held-out rest.

    Args:
        factors: the episodes' factor values (no missing values).
        success: whether each episode succeeded.
        holdout: share of episodes held out of the search (0 < holdout < 1).
        num_resamples: bootstrap refits behind the first split's stability (0: none).
        conf_level: interval level.
        rng: the random source of the split and the resamples.
    """
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"`holdout` must be between 0 and 1, got {holdout!r}; e.g. 0.3")
    n = len(success)
    order = rng.permutation(n)
    n_test = round(holdout * n)
    test, search = order[:n_test], order[n_test:]
    x, y = factors.values, success
    if y[search].all() or not y[search].any():
        return _no_region(y[test], conf_level)
    if search.size > MAX_SEARCH:
        # Beyond this a split is placed within a fraction of a percent already; the rest
        # of the episodes join the held-out part, which then measures the rule better.
        test, search = np.concatenate([test, search[MAX_SEARCH:]]), search[:MAX_SEARCH]
        n_test = test.size
    seed = int(rng.integers(2**31 - 1))
    tree = _choose_tree(x[search], y[search], seed, conf_level)
    if tree is None:
        return _no_region(y[test], conf_level)
    paths = _leaf_paths(tree, factors)
    leaf_search = tree.apply(x[search])
    leaf_test = tree.apply(x[test])
    rows = []
    for leaf, conds in paths.items():
        ins, int_ = leaf_search == leaf, leaf_test == leaf
        k, m = float(y[test][int_].sum()), int(int_.sum())
        lo, hi = rate_interval(k, m, conf_level)
        rows.append({
            "leaf": leaf,
            "conditions": " and ".join(c.text() for c in conds) or "all episodes",
            "search_episodes": int(ins.sum()),
            "search_rate": float(y[search][ins].mean()) if ins.any() else np.nan,
            "episodes": m,
            "rate": k / m if m else np.nan,
            "conf_low": float(lo),
            "conf_high": float(hi),
        })  # fmt: skip
    leaves = pd.DataFrame(rows, columns=LEAF_COLUMNS).sort_values("search_rate")
    leaves = leaves.reset_index(drop=True)
    worst = int(leaves["leaf"].iloc[0])
    conds = paths[worst]
    if tree.get_depth() == 0:
        conds = []
    refits = _refits(tree, x[search], y[search], num_resamples, rng) if conds else []
    conds = _threshold_intervals(tree, worst, factors, x[search], y[search], conds, conf_level)
    share = _first_split_share(tree, refits)
    inside = leaf_test == worst if conds else np.zeros(n_test, bool)
    k_in, n_in = float(y[test][inside].sum()), int(inside.sum())
    k_out, n_out = float(y[test][~inside].sum()), int((~inside).sum())
    lo_in, hi_in = rate_interval(k_in, n_in, conf_level)
    lo_out, hi_out = rate_interval(k_out, n_out, conf_level)
    return FailureRule(
        conds,
        k_in / n_in if n_in else np.nan,
        (float(lo_in), float(hi_in)),
        n_in,
        k_out / n_out if n_out else np.nan,
        (float(lo_out), float(hi_out)),
        n_out,
        float(leaves["search_rate"].iloc[0]) if conds else np.nan,
        int(tree.get_depth()),
        conf_level,
        leaves,
        share,
    )


LEAF_COLUMNS = ("leaf", "conditions", "search_episodes", "search_rate", "episodes", "rate",
                "conf_low", "conf_high")  # fmt: skip
"""The columns of :attr:`FailureRule.leaves`, one row per box of the tree."""


def _no_region(y_test: NDArray[np.bool_], conf_level: float) -> FailureRule:
    """No region: the held-out success rate overall."""
    k, n = float(y_test.sum()), int(y_test.size)
    low, high = rate_interval(k, n, conf_level)
    empty = pd.DataFrame(columns=LEAF_COLUMNS)
    return FailureRule([], np.nan, (np.nan, np.nan), 0, k / n if n else np.nan,
                       (float(low), float(high)), n, np.nan, 0, conf_level, empty)  # fmt: skip


def _refits(tree: Any, x: NDArray[np.float64], y: NDArray[np.bool_], num: int,
            rng: np.random.Generator) -> list[Any]:  # fmt: skip
    from sklearn.base import clone

    fits = []
    for _ in range(num):  # a loop over resamples, not over episodes
        rows = rng.integers(0, len(y), len(y))
        if y[rows].all() or not y[rows].any():
            continue
        fits.append(clone(tree).fit(x[rows], y[rows]))
    return fits


def _threshold_intervals(
    tree: Any, leaf: int, factors: Factors, x: NDArray[np.float64], y: NDArray[np.bool_],
    conds: list[Condition], conf_level: float,
) -> list[Condition]:  # fmt: skip
    """Each numeric condition of the path to ``leaf`` with its threshold's interval:
    the split points of its node's episodes (of ``x``, ``y``: the search part) whose
    likelihood ratio against the best split point stays within Hansen's critical value
    ``-2 log(1 - sqrt(conf_level))`` (7.35 at 95 %), widened to the tree's own
    threshold. A split point keeps the tree's smallest leaf on each side."""
    t = tree.tree_
    path = tree.decision_path(x)  # which nodes each episode passes
    critical = -2.0 * np.log(1.0 - np.sqrt(conf_level))
    least = max(1, int(tree.get_params()["min_samples_leaf"]))
    # The nodes from the root to the leaf: those an episode of the leaf passed (a leaf
    # of a tree fitted on these episodes holds some).
    on_path = path[int(np.flatnonzero(tree.apply(x) == leaf)[0])].indices
    out = []
    for c in conds:
        j = factors.names.index(c.factor)
        split = next((v for v in on_path if t.feature[v] == j and t.threshold[v] == c.threshold),
                     None)  # fmt: skip
        if c.labels is not None or split is None:
            out.append(c)
            continue
        inside = path[:, split].toarray().ravel().astype(bool)
        bounds = _likelihood_set(x[inside, j], y[inside], least, critical)
        if bounds is not None:
            lo, hi = min(bounds[0], c.threshold), max(bounds[1], c.threshold)
            c = Condition(c.factor, c.op, c.threshold, None, float(lo), float(hi))
        out.append(c)
    return out


def _likelihood_set(
    values: NDArray[np.float64], y: NDArray[np.bool_], least: int, critical: float
) -> tuple[float, float] | None:
    """The thresholds of the split points whose two-sided Bernoulli log likelihood is
    within ``critical / 2`` of the best one's, as ``(low, high)``: from the value below
    the lowest such split to the value above the highest (a split between two adjacent
    values splits the episodes alike wherever it lies between them; the tree places it
    at their midpoint). None: no split point."""
    order = np.argsort(values, kind="stable")
    v, k = values[order], np.cumsum(y[order].astype(float))
    n = len(v)
    left = np.arange(1, n)  # episodes on the left of a split after position i - 1
    ok = (v[1:] > v[:-1]) & (left >= least) & (n - left >= least)
    if not ok.any():
        return None
    kl, kr = k[:-1][ok], k[-1] - k[:-1][ok]
    nl = left[ok].astype(float)
    nr = n - nl
    ll = _bernoulli_ll(kl, nl) + _bernoulli_ll(kr, nr)
    inside = 2.0 * (ll.max() - ll) <= critical
    return float(v[:-1][ok][inside].min()), float(v[1:][ok][inside].max())


def _bernoulli_ll(k: NDArray[np.float64], n: NDArray[np.float64]) -> NDArray[np.float64]:
    """The maximized log likelihood of ``k`` successes in ``n`` (0 log 0 = 0)."""
    return xlogy(k, k / n) + xlogy(n - k, 1.0 - k / n)


def _first_split_share(tree: Any, refits: list[Any]) -> float | None:
    """Share of refits whose first split uses the same factor as the tree's."""
    if not refits:
        return None
    root = tree.tree_.feature[0]
    return float(np.mean([f.tree_.feature[0] == root for f in refits]))
