"""The benchmarks' loops do what their tables claim: every mode randomizes the env, and
the recording mode records the values the env holds. (Speed is not asserted here.)"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import varirec as vr

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
pytestmark = pytest.mark.skipif(
    not BENCHMARKS.is_dir(), reason="the benchmarks are not shipped with the wheel"
)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_loop():
    pytest.importorskip("torch")
    return _load("bench_gpu_loop")


@pytest.mark.parametrize("mode", ["bare", "null", "recording"])
def test_gpu_loop_randomizes_every_env(gpu_loop, mode: str, tmp_path: Path) -> None:
    import torch

    env = gpu_loop.TorchEnv(64, 4, 0, 2, torch.device("cpu"))
    out = tmp_path / "run" if mode == "recording" else None
    tensors = gpu_loop.takes_tensors(env.device)
    stats = gpu_loop.run_loop(mode, env, 200, 0, tensors, out)
    # Episodes last at most 90 steps: after 200 every env has reset and holds draws.
    params = env.params.numpy()
    assert ((params >= gpu_loop.LOW) & (params <= gpu_loop.HIGH) & (params != 1.0)).all()
    # Renewal: envs reset at 1 / mean length = 1/60 per step (64 envs x 200 steps).
    assert 1 / 75 < stats["resets"] / 64 < 1 / 50
    if mode == "recording":
        draws = vr.open_dataset(out).draws().to_pandas()
        last = draws.sort_values("seq").groupby(["variation", "env_id"])["value"].last()
        for j in range(4):
            recorded = last[f"object{j}.param"].sort_index().to_numpy()
            np.testing.assert_allclose(recorded, params[:, j], rtol=1e-6)


@pytest.mark.parametrize("mode", ["plain", "plain20", "null", "recording"])
def test_recording_loop_resets_a_realistic_share(mode: str, tmp_path: Path) -> None:
    bench = _load("bench_recording")
    env = bench.BusyEnv(1)
    stats = bench._loop(mode, 120, env, tmp_path)
    # Episodes of 30-90 steps, start times spread: 1/60 of the envs reset per step.
    assert 1 / 70 < stats["resets"] / bench.NUM_ENVS < 1 / 52
    # The calls timed in the loop are a part of the step (the clock read sits in each).
    assert 0 < stats["own"] < stats["cpu"]
    # A loop restarts the env: the same env, run again, ends where it ended.
    first = env.params.copy(), env.state.copy()
    again = bench._loop(mode, 120, env, tmp_path)
    assert again["resets"] == stats["resets"]
    np.testing.assert_array_equal(env.state, first[1])
    np.testing.assert_array_equal(env.params, first[0])
    if mode == "recording":  # one draw row per variation and resetting env
        assert stats["rows"] == bench.NUM_VARIATIONS * stats["resets"]


def test_gpu_breakdown_times_each_call_of_the_loop_and_unwraps_them(gpu_loop) -> None:
    import torch

    breakdown = _load("gpu_breakdown")
    before = [owner.__dict__[name] for owner, name in breakdown.WRAPPED]
    out = breakdown.breakdown(64, 40, torch.device("cpu"))
    rows = out["recording"]["calls"]
    assert rows["RecorderManager.record_step"][1] == 1.0  # one call per step, every step
    # at most one a step (a step with no env done has none), and the first of every env
    assert 0 < rows["RecorderManager.reset"][1] <= 41 / 40
    # Inclusive times: a callee's time is part of its caller's.
    assert rows["RecorderManager.record_step"][0] >= rows["DeviceOutcomes.record_step"][0] > 0
    assert "ArrayWorld.on_device" not in rows  # a CPU env takes no GPU-only call
    null = out["null"]
    assert null["loop"]["inside"] > 0 and "RecorderManager.reset" not in null["calls"]
    after = [owner.__dict__[name] for owner, name in breakdown.WRAPPED]
    assert all(a is b for a, b in zip(before, after, strict=True))  # nothing left wrapped


def test_gil_loop_resets_a_realistic_share_and_records_every_reset(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    bench = _load("bench_gil")
    args = argparse.Namespace(variations=3, warmup=0, step_ms=0.0, calls=2)
    out = tmp_path / "run"
    stats = bench.run_loop("recording", 600, 200, args, out)
    assert 1 / 75 < stats["resets"] / (600 * 200) < 1 / 50  # episodes of 30-90 steps
    # The first reset of every env, then one row per variation and resetting env.
    assert vr.open_dataset(out).draws().num_rows == 3 * (600 + stats["resets"])
    assert 0 < stats["mean"] <= stats["p99"]


def test_gpu_timeline_splits_a_step_into_busy_and_idle_by_region(gpu_loop) -> None:
    timeline = _load("gpu_timeline").timeline
    events = [
        {"cat": "kernel", "name": "a", "ts": 0, "dur": 10},
        {"cat": "kernel", "name": "b", "ts": 5, "dur": 10},  # overlaps a: busy 0-15
        {"cat": "gpu_memcpy", "name": "c", "ts": 40, "dur": 5},  # idle 15-40, in "reset"
        {"cat": "kernel", "name": "a", "ts": 100, "dur": 20},  # idle 45-100, unlabelled
        {"cat": "user_annotation", "name": "reset", "ts": 30, "dur": 20},
        {"cat": "cpu_op", "name": "aten::add", "ts": 0, "dur": 200},
    ]
    t = timeline(events, steps=2)
    assert t["busy"] == (15 + 5 + 20) / 2 and t["idle"] == (25 + 55) / 2
    assert t["idle_in"] == {"reset": 12.5, _load("gpu_timeline").UNLABELLED: 27.5}
    assert t["kernels"] == {"a": 15.0, "b": 5.0, "c": 2.5}


def test_gpu_timeline_labels_the_loop_parts_once_each(gpu_loop, tmp_path: Path) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    tl = _load("gpu_timeline")
    env = gpu_loop.TorchEnv(16, 4, 0, 2, torch.device("cpu"))
    prof = profile(activities=[ProfilerActivity.CPU])
    before = vr.RecorderManager.__dict__["reset"]
    with tl.labelled():
        gpu_loop.run_loop("recording", env, 20, 5, True, tmp_path / "r", (prof.start, prof.stop))
    assert vr.RecorderManager.__dict__["reset"] is before  # put back
    names = [e.key for e in prof.events() if e.key.startswith(("env ", "varirec "))]
    assert names.count("env physics") == 20 and names.count("varirec record_step") == 20
    # the manager's reset calls the driver's: one label, not two
    assert names.count("varirec reset") == names.count("env reset") > 0


@pytest.mark.parametrize("n", [6, 7, 9, 15, 16, 30])
def test_gpu_loop_s_median_interval_is_the_binomial_order_statistics(gpu_loop, n: int) -> None:
    """The interval is the narrowest pair of order statistics (x[k], x[n-1-k]) whose
    coverage under Binomial(n, 1/2) is at least 95 %: computed here from the binomial
    distribution directly."""
    from scipy.stats import binom

    rng = np.random.default_rng(n)
    values = rng.normal(3.0, 2.0, n).tolist()
    x = np.sort(values)
    k = max(j for j in range(n // 2) if 1 - 2 * binom.cdf(j, n, 0.5) >= 0.95)
    assert gpu_loop.median_ci(values) == (x[k], x[n - 1 - k])


def test_gpu_loop_s_verdict_needs_the_whole_interval_on_one_side_of_the_goal(gpu_loop) -> None:
    assert gpu_loop.verdict((0.5, 1.9), 2.0) == "met"
    assert gpu_loop.verdict((2.1, 6.0), 2.0) == "missed"
    assert gpu_loop.verdict((1.0, 3.0), 2.0).startswith("undecided: the interval")
    assert np.isnan(gpu_loop.median_ci([1.0, 2.0, 3.0, 4.0, 5.0])).all()  # 5 repeats: none
    assert gpu_loop.verdict((np.nan, np.nan), 2.0).startswith("undecided: too few")
