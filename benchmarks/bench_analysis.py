"""Benchmarks of the analysis package, printed as one plain-text table.

Run ``python benchmarks/bench_analysis.py`` (full size; SALib alone takes about 8
minutes there) or ``--quick`` (seconds). ``--only sobol`` runs one section.

Sections (one function each, returning table rows):

- ``sobol``: :func:`varirec.analysis.estimators.sobol.sobol_indices` against SALib's
  ``sobol.analyze`` on the same outputs: Saltelli design with second order,
  ``D=30``, ``N=2^14`` base samples (1,015,808 rows), 1000 bootstrap resamples.
  Each implementation runs in its own subprocess so that the peak resident memory
  (``ru_maxrss``) of one does not hide the other's; "Δ RSS" is the growth of the
  peak during the analysis (after imports and loading ``Y``). The last row gives
  the speed ratio (goal >= 50×) and the largest absolute difference of the point
  estimates S1, ST and S2.
- ``episode_table``: :func:`varirec.analysis.tables.episode_table.episode_table` on a dataset of 20
  million draw rows (20 reset-mode variations, 4096 envs, 1 M episodes), recorded
  through the real recorder, against the time pyarrow takes to read those draw rows
  (the columns the table needs). Goal: at most 2x. Then the DuckDB path (``engine=
  "duckdb"``, out of core) on the same dataset, once: its time against the in-memory
  path's, and whether the tables are equal. ``bench_out_of_core.py`` goes to 200 M rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Row:
    """One line of the table."""

    section: str
    case: str
    time_s: float | None = None
    peak_mb: float | None = None
    delta_mb: float | None = None
    result: str = ""


# --------------------------------------------------------------------------------------
# Section: Sobol' indices, varirec vs SALib
# --------------------------------------------------------------------------------------


def _saltelli_outputs(D: int, N: int, seed: int) -> np.ndarray:
    """Sobol G outputs in SALib's second-order row layout, without building the design."""
    from varirec.envs.analytic import sobol_g

    a = np.array([0.0, 0.5, 1.0, 2.0, 4.5, 9.0] + [99.0] * max(D - 6, 0))[:D]
    rng = np.random.default_rng(seed)
    A, B = rng.random((N, D)), rng.random((N, D))
    Y = np.empty((N, 2 * D + 2))
    Y[:, 0], Y[:, -1] = sobol_g(A, a), sobol_g(B, a)
    for j in range(D):
        AB = A.copy()
        AB[:, j] = B[:, j]
        Y[:, 1 + j] = sobol_g(AB, a)
        BA = B.copy()
        BA[:, j] = A[:, j]
        Y[:, 1 + D + j] = sobol_g(BA, a)
    return Y.ravel()


def _worker_sobol(impl: str, y_path: str, out_path: str, D: int, R: int) -> None:
    """Run one implementation on the saved outputs; write timings and estimates."""
    if impl == "varirec":
        from varirec.analysis.estimators.sobol import sobol_indices
    else:
        from SALib.analyze import sobol as salib_sobol
    Y = np.load(y_path)
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if impl == "varirec":
        res = sobol_indices(Y, D, second_order=True, num_resamples=R, seed=1)
        S1, ST, S2 = res.S1, res.ST, res.S2
    else:
        problem = {"num_vars": D, "names": [f"x{j}" for j in range(D)], "bounds": [[0, 1]] * D}
        si = salib_sobol.analyze(problem, Y, calc_second_order=True, num_resamples=R, seed=1)
        S1, ST, S2 = si["S1"], si["ST"], si["S2"]
    elapsed = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.savez(out_path + ".npz", S1=S1, ST=ST, S2=S2)
    Path(out_path + ".json").write_text(
        json.dumps({"time_s": elapsed, "peak_kb": peak_kb, "base_kb": base_kb})
    )


def bench_sobol(quick: bool) -> list[Row]:
    """Sobol with second order: varirec vs SALib on the same outputs."""
    D, N, R = (10, 2**11, 200) if quick else (30, 2**14, 1000)
    label = f"D={D} N={N} R={R} S2"
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        y_path = str(Path(tmp) / "y.npy")
        np.save(y_path, _saltelli_outputs(D, N, seed=0))
        stats, est = {}, {}
        for impl in ("varirec", "salib"):
            out = str(Path(tmp) / impl)
            subprocess.run(
                [sys.executable, __file__, "--worker", "sobol", impl, y_path, out, str(D), str(R)],
                check=True,
            )
            stats[impl] = json.loads(Path(out + ".json").read_text())
            with np.load(out + ".npz") as data:
                est[impl] = {key: data[key] for key in ("S1", "ST", "S2")}
            name = "varirec sobol_indices" if impl == "varirec" else "SALib sobol.analyze"
            rows.append(
                Row(
                    "sobol",
                    f"{name} {label}",
                    stats[impl]["time_s"],
                    stats[impl]["peak_kb"] / 1024,
                    (stats[impl]["peak_kb"] - stats[impl]["base_kb"]) / 1024,
                )
            )
    upper = np.triu_indices(D, k=1)
    diff = {
        key: float(np.max(np.abs(est["varirec"][key] - est["salib"][key]))) for key in ("S1", "ST")
    }
    diff["S2"] = float(np.max(np.abs(est["varirec"]["S2"][upper] - est["salib"]["S2"][upper])))
    ratio = stats["salib"]["time_s"] / stats["varirec"]["time_s"]
    rows.append(
        Row(
            "sobol",
            "varirec vs SALib",
            result=(
                f"speed {ratio:.0f}x (goal >= 50x); max |diff| "
                + " ".join(f"{k} {v:.1e}" for k, v in diff.items())
            ),
        )
    )
    return rows


# --------------------------------------------------------------------------------------
# Section: the episode table against pyarrow reading the same rows
# --------------------------------------------------------------------------------------

_TABLE_COLUMNS = ["seq", "variation", "component", "env_id", "episode", "phase", "value", "label"]


def _record_dataset(root: Path, draw_rows: int) -> int:
    import varirec as vr

    num_envs, num_vars = 4096, 20
    variations = vr.VariationSet(
        vr.Variation(f"object{i}.param", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)))
        for i in range(num_vars)
    )
    rounds = max(1, draw_rows // (num_envs * num_vars))
    with vr.RecorderManager(num_envs, variations=variations, output=root, run_id="r") as m:
        for _ in range(rounds):
            m.reset(None, None)
            m.record_step(reward=np.ones(num_envs), success=np.ones(num_envs))
        m.record_pre_reset(None)
    return rounds * num_envs * num_vars


def bench_episode_table(quick: bool) -> list[Row]:
    import pyarrow.dataset as pads

    from varirec.analysis.tables.episode_table import episode_table

    rows_wanted = 2_000_000 if quick else 20_000_000
    with tempfile.TemporaryDirectory(prefix="varirec-bench-") as tmp:
        root = Path(tmp)
        rows = _record_dataset(root, rows_wanted)
        draws_dir = root / "run_id=r" / "draws"
        read_best = table_best = float("inf")
        for _ in range(3):  # best of 3: a shared machine is noisy
            t0 = time.perf_counter()
            read = pads.dataset(draws_dir, format="parquet").to_table(columns=_TABLE_COLUMNS)
            read_best = min(read_best, time.perf_counter() - t0)
            assert read.num_rows == rows
            t0 = time.perf_counter()
            table = episode_table(root, engine="memory")
            table_best = min(table_best, time.perf_counter() - t0)
        t0 = time.perf_counter()
        duck = episode_table(root, engine="duckdb", temp_directory=tmp)
        duck_s = time.perf_counter() - t0
        same = duck.frame.equals(table.frame)
        ratio = table_best / read_best
    return [
        Row("episodes", f"pyarrow reads {rows / 1e6:.0f} M draw rows", read_best),
        Row(
            "episodes",
            f"episode_table: {len(table):,} episodes x {len(table.factors)} factors",
            table_best,
        ),
        Row("episodes", "episode_table / pyarrow read", result=f"{ratio:.2f}x (goal <= 2x)"),
        Row(
            "episodes",
            "episode_table(engine='duckdb'), out of core",
            duck_s,
            result=f"{duck_s / table_best:.1f}x the in-memory path; same table: {same}",
        ),
    ]


# --------------------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------------------

SECTIONS: dict[str, Callable[[bool], list[Row]]] = {
    "sobol": bench_sobol,
    "episode_table": bench_episode_table,
}
"""Section name -> function(quick) returning rows, in print order."""


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def print_table(rows: Sequence[Row]) -> None:
    header = f"{'section':<8} {'case':<46} {'time [s]':>9} {'peak RSS [MB]':>14} "
    header += f"{'Δ RSS [MB]':>11}  result"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.section:<8} {row.case:<46} {_fmt(row.time_s, '9.2f'):>9} "
            f"{_fmt(row.peak_mb, '14.0f'):>14} {_fmt(row.delta_mb, '11.0f'):>11}  {row.result}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--only", choices=sorted(SECTIONS), help="run one section")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        section, impl, y_path, out, D, R = args.worker
        if section == "sobol":
            _worker_sobol(impl, y_path, out, int(D), int(R))
        return 0
    rows: list[Row] = []
    for name, bench in SECTIONS.items():
        if args.only in (None, name):
            rows.extend(bench(args.quick))
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
