"""Reference Sobol' indices and Shapley effects of the Borehole function, by brute force.

Run ``python benchmarks/borehole_reference.py [--log2n 20] [--seed 0]``; prints the
first-order and total indices, the Shapley effects and their Monte Carlo standard
errors. The values stored in :data:`varirec.envs.analytic.BOREHOLE_REFERENCE` came
from ``--log2n 22 --seed 0``; ``--estimator saltelli --seed 1`` checks them with a
different formula and independent draws.

Every closed index ``E[Var(Y | X_u)]`` of the 8 independent uniform inputs
(all 256 subsets ``u``) is estimated by Jansen's pick-freeze form
``E[(Y(A) - Y(A_u, B_-u))²] / 2`` over ``N`` independent pairs of rows ``A, B``;
Shapley effects are the exact subset-weighted sums of those (Song, Nelson & Staum
2016), so no permutation sampling adds error. Standard errors: the spread over
16 independent batches.
"""

from __future__ import annotations

import argparse
import itertools
import math

import numpy as np

from varirec.envs.analytic import BOREHOLE_BOUNDS, borehole


def closed_indices(
    log2n: int, seed: int, batches: int = 16, estimator: str = "jansen"
) -> np.ndarray:
    """``(batches, 2**8)`` estimates of ``E[Var(Y | X_u)] / Var(Y)``, ``u`` as bitmask.

    ``estimator="jansen"``: ``E[(Y(A) - Y(A_u, B_-u))²] / 2``; ``"saltelli"``: one
    minus the closed explained variance ``E[Y(A) (Y(A_u, B_-u) - Y(B))]`` (Saltelli
    et al. 2010), a different formula, for an independent check.
    """
    D = len(BOREHOLE_BOUNDS)
    lo, hi = np.array(BOREHOLE_BOUNDS).T
    rng = np.random.default_rng(seed)
    n = (1 << log2n) // batches
    out = np.empty((batches, 1 << D))
    for b in range(batches):
        A = lo + (hi - lo) * rng.random((n, D))
        B = lo + (hi - lo) * rng.random((n, D))
        yA, yB = borehole(A), borehole(B)
        var = np.var(np.r_[yA, yB])
        for mask in range(1 << D):
            keep = np.array([(mask >> j) & 1 for j in range(D)], dtype=bool)
            y_mixed = borehole(np.where(keep, A, B))
            if estimator == "jansen":
                out[b, mask] = 0.5 * np.mean((yA - y_mixed) ** 2) / var
            else:
                out[b, mask] = 1.0 - np.mean(yA * (y_mixed - yB)) / var
    return out


def summarize(ev: np.ndarray) -> dict[str, np.ndarray]:
    """S1, ST and Shapley from closed indices ``ev[mask] = E[Var(Y|X_mask)]/Var(Y)``."""
    D = int(math.log2(ev.size))
    full = (1 << D) - 1
    s1 = np.array([1.0 - ev[1 << j] for j in range(D)])
    st = np.array([ev[full & ~(1 << j)] for j in range(D)])
    sh = np.zeros(D)
    for j in range(D):
        others = [i for i in range(D) if i != j]
        for size in range(D):
            w = 1.0 / (D * math.comb(D - 1, size))
            for sub in itertools.combinations(others, size):
                mask = sum(1 << i for i in sub)
                sh[j] += w * (ev[mask] - ev[mask | (1 << j)])
    return {"S1": s1, "ST": st, "Shapley": sh}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log2n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--estimator", choices=("jansen", "saltelli"), default="jansen")
    args = parser.parse_args()
    ev = closed_indices(args.log2n, args.seed, estimator=args.estimator)
    per_batch = [summarize(row) for row in ev]
    mean = summarize(ev.mean(axis=0))
    for key in ("S1", "ST", "Shapley"):
        se = np.std([p[key] for p in per_batch], axis=0, ddof=1) / math.sqrt(len(per_batch))
        print(f"{key:8s}", np.round(mean[key], 4).tolist())
        print(f"{'  SE':8s}", np.round(se, 4).tolist())


if __name__ == "__main__":
    main()
