"""What drawing through varirec costs, against the bare draw and against plain numpy.

(1) For a uniform, a normal and a weighted-choice sampler at batch sizes 1, 64 and 4096:

- ``numpy``: the plain numpy Generator draw of the same distribution (the baseline);
- ``_sample``: the concrete draw called directly, uniforms from a Generator;
- ``sample()``: the template method with no listener, and with one no-op listener;
- ``keyed``: a reproducible draw, uniforms hashed from (seed, key, env, episode);
- ``hash``: the keyed uniforms alone (no inverse CDF), and ``1 call``: one in-place
  numpy multiply of the batch. At small batches every numpy call costs about the same
  whatever it does, so the hash (18 calls: SplitMix64 on uint64, then 53 bits to a
  float) is the floor of any keyed draw in numpy, about 18 x ``1 call``.

(2) A reset batch: 20 uniform reset-mode variations for k = 64 and 4096 envs: the
    batched keyed draw alone (k x 20 uniforms hashed in one pass, then the inverse
    CDFs), and the null manager's whole ``reset`` (episode tracking, draw contexts,
    the draw; nothing applied), against plain numpy drawing the (k, 20) block in one
    call and in 20.

Keyed draws go through the compiled kernels where numba is installed (the ``fast``
extra); every keyed case is also timed with them off (``np path``), interleaved.

Goals: ``sample()`` with no listener <= 1.10 x ``_sample`` at 4096; keyed <= 3 x numpy
at batch 64 and 4096. Times are main-thread CPU time (steady on a shared machine);
the functions of one case are timed in turn within each of 7 repeats, and each ratio
is the median over repeats of the ratio within a repeat, with its spread.

Run: ``python benchmarks/bench_samplers.py`` (about 1 minute).
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit
from collections.abc import Callable

import numpy as np

import varirec as vr
from varirec import ChoiceCfg, CounterStream, NormalCfg, UniformCfg
from varirec.recording.manager import NullRecorderManager
from varirec.sampling.accel import compiled_draws
from varirec.sampling.batch_draw import ColumnPlan
from varirec.sampling.samplers import SampleEvent
from varirec.sampling.streams import GeneratorSource

REPEATS = 7
NUMPY = " np"
"""The suffix of a case timed on the numpy path (compiled kernels off)."""


def _timed(fns: dict[str, Callable[[], object]], budget_s: float) -> dict[str, list[float]]:
    """Per-call microseconds of each function in each of ``REPEATS`` interleaved repeats;
    a name ending in ``NUMPY`` runs with the compiled kernels off (the numpy path)."""
    timers = {}
    for name, fn in fns.items():
        timer = timeit.Timer(fn, timer=time.thread_time)
        with compiled_draws(not name.endswith(NUMPY)):
            one = max(timer.timeit(number=3) / 3, 1e-7)
        timers[name] = (timer, max(1, int(budget_s / REPEATS / one)))
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(REPEATS):
        for name, (timer, number) in timers.items():
            with compiled_draws(not name.endswith(NUMPY)):
                out[name].append(timer.timeit(number=number) / number * 1e6)
    return out


def _ratio(times: dict[str, list[float]], a: str, b: str) -> tuple[float, float, float]:
    """Median over repeats of ``a / b`` within a repeat, and its min and max."""
    r = [x / y for x, y in zip(times[a], times[b], strict=True)]
    return statistics.median(r), min(r), max(r)


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
    buf = np.ones(n)
    times = _timed(
        {
            "numpy": lambda: numpy_draw(n),
            "_sample": lambda: bare._sample(n, source, None),
            "sample": lambda: bare.sample(n),
            "sample+1": lambda: heard.sample(n),
            "keyed": lambda: bare._sample(n, keyed, None),
            "keyed np": lambda: bare._sample(n, keyed, None),
            "hash": lambda: keyed.uniforms(n, 1),
            "1 call": lambda: np.multiply(buf, 1.0, out=buf),
        },
        budget_s,
    )
    return {
        **{k: statistics.median(v) for k, v in times.items()},
        "tmpl": _ratio(times, "sample", "_sample"),
        "keyed/np": _ratio(times, "keyed", "numpy"),
        "np path/np": _ratio(times, "keyed np", "numpy"),
        "hash/np": _ratio(times, "hash", "numpy"),
    }


def run(sizes: tuple[int, ...], budget_s: float) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    rows = []
    for name, (cfg, numpy_draw) in _cases(rng).items():
        for n in sizes:
            rows.append({"sampler": name, "n": n, **_time_one(cfg, numpy_draw, n, budget_s)})
    return rows


def _spread(r: tuple[float, float, float], width: int = 5) -> str:
    return f"{r[0]:{width}.2f} ({r[1]:.2f}..{r[2]:.2f})"


def print_table(rows: list[dict[str, object]]) -> None:
    head = (
        f"{'sampler':8} {'batch':>6} {'numpy us':>9} {'_sample':>9} {'sample()':>9} "
        f"{'+1 lstn':>9} {'keyed':>9} {'tmpl x (min..max)':>20} {'keyed/np (min..max)':>22} "
        f"{'hash':>7} {'1 call':>7} {'hash/np':>8} {'np path':>8} {'np path/np':>11}"
    )
    print("(1) one sampler: median us per call (main-thread CPU time)")
    print(f"keyed and hash: {_path()}; np path: the keyed draw with the kernels off")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['sampler']:8} {r['n']:>6} {r['numpy']:9.2f} {r['_sample']:9.2f} "
            f"{r['sample']:9.2f} {r['sample+1']:9.2f} {r['keyed']:9.2f} "
            f"{_spread(r['tmpl']):>20} {_spread(r['keyed/np'], 6):>22} "
            f"{r['hash']:7.2f} {r['1 call']:7.2f} {r['hash/np'][0]:8.2f} "
            f"{r['keyed np']:8.2f} {r['np path/np'][0]:11.2f}"
        )
    big = max(x["n"] for x in rows)
    worst_t = max(r["tmpl"][0] for r in rows if r["n"] == big)
    print(f"\nat batch {big}: sample()/_sample worst {worst_t:.3f} (goal <= 1.10)")
    for n in sorted({x["n"] for x in rows if x["n"] > 1}):
        worst = max((r for r in rows if r["n"] == n), key=lambda r: r["keyed/np"][0])
        print(
            f"at batch {n}: keyed/numpy worst {worst['keyed/np'][0]:.2f} "
            f"({worst['sampler']}) (goal <= 3); the hash alone (its floor) "
            f"{worst['hash/np'][0]:.2f} x numpy"
        )


def reset_batch(sizes: tuple[int, ...], budget_s: float, num_envs: int = 4096) -> list[dict]:
    """(2) 20 uniform reset-mode variations for ``k`` envs: varirec's reset vs numpy."""
    variations = vr.VariationSet(
        vr.Variation(f"object{i}.param", vr.VariationCfg(sampler=UniformCfg(low=0.5, high=2.0)))
        for i in range(20)
    )
    manager = NullRecorderManager(max(num_envs, *sizes), variations=variations, seed=0)
    manager.reset(None, None)
    # The keyed draw alone: every column hashed in one pass, each kind's inverse CDF once.
    plan = ColumnPlan(
        [v.cfg.sampler for v in variations.values()], [v.stream.base for v in variations.values()]
    )
    rng = np.random.default_rng(0)
    rows = []
    for k in sizes:
        ids = np.sort(rng.choice(manager.num_envs, k, replace=False))
        episodes = np.full(k, 3)
        times = _timed(
            {
                "numpy1": lambda k=k: rng.uniform(0.5, 2.0, (k, 20)),
                "numpy20": lambda k=k: [rng.uniform(0.5, 2.0, k) for _ in range(20)],
                "keyed": lambda ids=ids, e=episodes: plan.draw(ids, e, [0] * 20, np),
                "keyed np": lambda ids=ids, e=episodes: plan.draw(ids, e, [0] * 20, np),
                "varirec": lambda ids=ids: manager.reset(None, ids),
                "varirec np": lambda ids=ids: manager.reset(None, ids),
            },
            budget_s,
        )
        rows.append(
            {
                "k": k,
                **{name: statistics.median(v) for name, v in times.items()},
                "keyed1": _ratio(times, "keyed", "numpy1"),
                "keyed20": _ratio(times, "keyed", "numpy20"),
                "x1": _ratio(times, "varirec", "numpy1"),
                "x20": _ratio(times, "varirec", "numpy20"),
                "keyed np1": _ratio(times, "keyed np", "numpy1"),
                "keyed np20": _ratio(times, "keyed np", "numpy20"),
                "x np1": _ratio(times, "varirec np", "numpy1"),
                "x np20": _ratio(times, "varirec np", "numpy20"),
            }
        )
    return rows


def print_reset_table(rows: list[dict]) -> None:
    head = (
        f"{'envs':>6} {'what':>28} {'us':>8} {'/ numpy 1 call (min..max)':>27} "
        f"{'/ numpy 20 calls (min..max)':>28}"
    )
    print("\n(2) a reset batch of 20 uniform variations: median us (main-thread CPU time)")
    print(f"keyed and reset: {_path()}; (np path): the same with the kernels off")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['k']:>6} {'numpy, one (k, 20) call':>28} {r['numpy1']:8.1f}")
        print(f"{r['k']:>6} {'numpy, 20 calls':>28} {r['numpy20']:8.1f}")
        for name, key, x in (
            ("keyed batch draw (k x 20)", "keyed", ""),
            ("keyed batch draw (np path)", "keyed np", ""),
            ("null manager reset", "varirec", "x"),
            ("null manager reset (np path)", "varirec np", "x np"),
        ):
            a, b = (f"{key}1", f"{key}20") if not x else (f"{x}1", f"{x}20")
            print(
                f"{r['k']:>6} {name:>28} {r[key]:8.1f} {_spread(r[a], 6):>27} "
                f"{_spread(r[b], 6):>28}"
            )
    print("goal: the keyed draw <= 3 x plain numpy at 64 and 4096 envs")


def _path() -> str:
    with compiled_draws(True) as kern:
        return "compiled (numba)" if kern is not None else "numpy (numba absent or off)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=0.7, help="seconds per timing")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 4096])
    parser.add_argument("--reset-sizes", type=int, nargs="+", default=[64, 4096])
    args = parser.parse_args()
    print_table(run(tuple(args.sizes), args.budget))
    print_reset_table(reset_batch(tuple(args.reset_sizes), args.budget))


if __name__ == "__main__":
    main()
