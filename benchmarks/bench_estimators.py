"""Benchmarks of the given-data estimators of issue 12, printed as one table.

Run ``python benchmarks/bench_estimators.py`` (about a minute on 2 cores) or
``--quick``. Each row: the case, its wall time, and what was compared.

Times are wall seconds and process CPU seconds (all threads); on a shared machine
the wall time includes waiting for a core.

- ``knn``: :func:`varirec.analysis.estimators.knn_total.knn_indices` at 20,000 rows
  × 10 factors (Sobol G, ``a = 0, 0.5, 1, 2, 4.5, 9, 99...``) with and without
  Shapley effects (1023 subsets), against the exact indices. No library estimates
  total indices or Shapley effects from given data (SALib's given-data methods give
  first-order indices only), so the comparison is with the truth.
- ``groups``: the group index of a 3-vector acting through its norm, given data
  (``knn_indices`` with a group, 20,000 rows) against SALib's grouped Sobol design
  and analysis (``problem["groups"]``, ``N = 2^13`` base rows, ``N·(G+2)`` model
  runs), the closest library implementation.
- ``hsic``: :func:`varirec.analysis.estimators.hsic.hsic_target_indices` at 20,000 rows
  × 10 factors and 1000 permutations, against a direct O(N²) evaluation of the same
  V-statistic (Gram matrices in blocks) for the statistic alone, timed on one
  factor and multiplied by 10 factors × 1001 evaluations for the permutation test.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata

from varirec.analysis.estimators.hsic import hsic_target_indices
from varirec.analysis.estimators.knn_total import knn_indices
from varirec.envs.analytic import sobol_g, sobol_g_indices

ROWS: list[tuple[str, str, str, str]] = []


CPU: dict[str, float] = {}


def _timed(fn: Callable[[], object]) -> tuple[object, float]:
    """The result and the wall time; the process CPU time (all threads) goes to CPU."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    CPU["last"] = time.process_time() - cpu
    return out, time.perf_counter() - start


def bench_knn(N: int) -> None:
    a = np.array([0.0, 0.5, 1.0, 2.0, 4.5, 9.0, 99.0, 99.0, 99.0, 99.0])
    rng = np.random.default_rng(0)
    X = rng.random((N, a.size))
    Y = sobol_g(X, a)
    truth = sobol_g_indices(a)
    for shapley in (False, True):
        res, seconds = _timed(lambda s=shapley: knn_indices(X, Y, seed=0, shapley=s))
        err = np.abs(res.ST - truth["ST"]).max()
        what = f"max |ST - exact| {err:.3f}"
        if shapley:
            # Independent inputs: Shapley = S1 + shares of interactions; bounded by S1, ST.
            inside = np.all((res.shapley > truth["S1"] - 0.05) & (res.shapley < truth["ST"] + 0.05))
            what += f"; Shapley within [S1, ST] ± 0.05: {bool(inside)}"
        label = "knn S1+ST+Shapley" if shapley else "knn S1+ST"
        ROWS.append(("knn", f"{label} N={N} D=10", f"{seconds:.2f} / {CPU['last']:.2f}", what))


def _norm_model(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x[:, :3] * 2.0 - 1.0, axis=1) + 0.3 * (2.0 * x[:, 3] - 1.0)


def bench_groups(N: int) -> None:
    from SALib.analyze import sobol as sobol_analyze
    from SALib.sample import sobol as sobol_sample

    names = ["cam[0]", "cam[1]", "cam[2]", "w"]
    rng = np.random.default_rng(1)
    X = rng.random((N, 4))
    Y = _norm_model(X)
    res, seconds = _timed(
        lambda: knn_indices(X, Y, factor_names=names, groups={"cam": names[:3]}, seed=0)
    )
    ref = rng.random((2_000_000, 4))
    yref = _norm_model(ref)
    truth = np.linalg.norm(ref[:, :3] * 2 - 1, axis=1).var() / yref.var()
    ROWS.append(
        (
            "groups",
            f"knn group index, given data N={N}",
            f"{seconds:.2f} / {CPU['last']:.2f}",
            f"S1(cam) {res.S1[0]:.3f} ± {res.S1_conf[0]:.3f}, truth {truth:.3f}",
        )
    )
    problem = {"num_vars": 4, "names": names, "bounds": [[0, 1]] * 4, "groups": ["cam"] * 3 + ["w"]}
    base = 2**13

    def salib() -> dict:
        x = sobol_sample.sample(problem, base, calc_second_order=False, seed=0)
        return sobol_analyze.analyze(problem, _norm_model(x), calc_second_order=False, seed=1)

    out, seconds = _timed(salib)
    ROWS.append(
        (
            "groups",
            f"SALib grouped Sobol, N={base} ({base * 4} runs)",
            f"{seconds:.2f} / {CPU['last']:.2f}",
            f"S1(cam) {out['S1'][0]:.3f} ± {out['S1_conf'][0]:.3f}",
        )
    )


def _direct_hsic(u: np.ndarray, c: np.ndarray, block: int = 2000) -> float:
    """``2 cᵀ K c / N²`` with the Gaussian kernel on ranks, in blocks of rows."""
    N = u.size
    bw2 = 2.0 * u.std() ** 2
    total = 0.0
    for start in range(0, N, block):
        k = np.exp(-((u[start : start + block, None] - u[None, :]) ** 2) / bw2)
        total += float(c[start : start + block] @ (k @ c))
    return 2.0 * total / N**2


def bench_hsic(N: int, permutations: int) -> None:
    rng = np.random.default_rng(2)
    X = rng.random((N, 10))
    p = 0.1 + 0.5 * (X[:, 0] > 0.8) + 0.2 * X[:, 1]
    fail = (rng.random(N) < p).astype(float)
    res, seconds = _timed(
        lambda: hsic_target_indices(X, fail, seed=0, num_permutations=permutations)
    )
    ROWS.append(
        (
            "hsic",
            f"hsic_target_indices N={N} D=10, {permutations} permutations",
            f"{seconds:.2f} / {CPU['last']:.2f}",
            f"p-values x1, x2: {res.extra['p_value'][0]:.4f}, {res.extra['p_value'][1]:.4f}",
        )
    )
    u = rankdata(X[:, 0]) / N
    c = fail - fail.mean()
    direct, one = _timed(lambda: _direct_hsic(u, c))
    rel = abs(res.extra["HSIC"][0] - direct) / direct
    ROWS.append(
        (
            "hsic",
            f"direct O(N²) statistic, 1 factor, N={N}",
            f"{one:.2f} / {CPU['last']:.2f}",
            f"relative difference {rel:.1e}; x 10 factors x {permutations + 1} "
            f"evaluations = {one * 10 * (permutations + 1):.0f} s "
            f"({one * 10 * (permutations + 1) / seconds:.0f}x slower)",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 rows, 200 permutations")
    args = parser.parse_args()
    N = 5_000 if args.quick else 20_000
    bench_knn(N)
    bench_groups(N)
    bench_hsic(N, 200 if args.quick else 1000)
    widths = [
        max(len(r[i]) for r in [*ROWS, ("section", "case", "wall / cpu s", "result")])
        for i in range(3)
    ]
    header = ("section", "case", "wall / cpu s", "result")
    for row in [header, *ROWS]:
        print("  ".join(v.ljust(w) for v, w in zip(row[:3], widths, strict=True)) + "  " + row[3])


if __name__ == "__main__":
    main()
