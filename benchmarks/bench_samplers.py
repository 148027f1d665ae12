"""What drawing through varirec costs, against the bare draw and against plain numpy.

For a uniform, a normal and a weighted-choice sampler at batch sizes 1, 64 and 4096:

- ``numpy``: the plain numpy Generator draw of the same distribution (the baseline);
- ``_sample``: the concrete draw called directly, uniforms from a Generator;
- ``sample()``: the template method with no listener, and with one no-op listener;
- ``keyed``: a reproducible draw, uniforms hashed from (seed, key, env, episode).

Goals at 4096: ``sample()`` with no listener <= 1.10 x ``_sample``; keyed <= 3 x numpy.
At batch 1 the table reports the template's overhead in microseconds.

Run: ``python benchmarks/bench_samplers.py`` (about 20 s).
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

import numpy as np

from varirec import ChoiceCfg, CounterStream, NormalCfg, UniformCfg
from varirec.sampling.samplers import SampleEvent
from varirec.sampling.streams import GeneratorSource


def _best_us(fn: Callable[[], object], budget_s: float) -> float:
    """Best per-call time in microseconds over repeated timing rounds."""
    number = max(1, int(budget_s / 7 / max(timeit.timeit(fn, number=3) / 3, 1e-7)))
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def _noop(event: SampleEvent) -> None:
    pass


def _cases(rng: np.random.Generator) -> dict[str, tuple[object, Callable[[int], object]]]:
    labels = np.array(["kitchen", "garage", "office", "lab"])
    weights = [0.4, 0.3, 0.2, 0.1]
    return {
        "uniform": (UniformCfg(low=0.5, high=2.0), lambda n: rng.uniform(0.5, 2.0, n)),
        "normal": (NormalCfg(mean=1.0, std=0.1), lambda n: rng.normal(1.0, 0.1, n)),
        "choice": (
            ChoiceCfg(choices=tuple(labels), weights=tuple(weights)),
            lambda n: rng.choice(labels, n, p=weights),
        ),
    }


def _time_one(cfg: object, numpy_draw: Callable[[int], object], n: int, budget_s: float) -> dict:
    bare = cfg.build(seed=0)
    heard = cfg.build(seed=0)
    heard.add_listener(_noop)
    source = GeneratorSource(0)
    keyed = CounterStream(0, "bench").keyed(np.arange(n), np.full(n, 3))
    return {
        "numpy": _best_us(lambda: numpy_draw(n), budget_s),
        "_sample": _best_us(lambda: bare._sample(n, source, None), budget_s),
        "sample": _best_us(lambda: bare.sample(n), budget_s),
        "sample+1": _best_us(lambda: heard.sample(n), budget_s),
        "keyed": _best_us(lambda: bare._sample(n, keyed, None), budget_s),
    }


def run(sizes: tuple[int, ...], budget_s: float) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    rows = []
    for name, (cfg, numpy_draw) in _cases(rng).items():
        for n in sizes:
            rows.append({"sampler": name, "n": n, **_time_one(cfg, numpy_draw, n, budget_s)})
    return rows


def print_table(rows: list[dict[str, object]]) -> None:
    head = (
        f"{'sampler':8} {'batch':>6} {'numpy us':>9} {'_sample':>9} {'sample()':>9} "
        f"{'+1 lstn':>9} {'keyed':>9} {'tmpl x':>7} {'tmpl +us':>8} {'keyed/np':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['sampler']:8} {r['n']:>6} {r['numpy']:9.2f} {r['_sample']:9.2f} "
            f"{r['sample']:9.2f} {r['sample+1']:9.2f} {r['keyed']:9.2f} "
            f"{r['sample'] / r['_sample']:7.3f} {r['sample'] - r['_sample']:8.2f} "
            f"{r['keyed'] / r['numpy']:8.2f}"
        )
    big = [r for r in rows if r["n"] == max(x["n"] for x in rows)]
    worst_t = max(r["sample"] / r["_sample"] for r in big)
    worst_k = max(r["keyed"] / r["numpy"] for r in big)
    print(
        f"\nat batch {big[0]['n']}: sample()/_sample worst {worst_t:.3f} (goal <= 1.10), "
        f"keyed/numpy worst {worst_k:.2f} (goal <= 3)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=0.7, help="seconds per timing")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 4096])
    args = parser.parse_args()
    print_table(run(tuple(args.sizes), args.budget))


if __name__ == "__main__":
    main()
