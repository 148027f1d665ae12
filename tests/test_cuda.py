"""A CUDA env end to end (skipped without a GPU; run on one with ``pytest tests/test_cuda.py``):
ids, step arrays and applied values as tensors on the device record exactly what a numpy
env records (prefetched resets too), a prefetched reset adds no host sync and the step
after it at most the wait for its ids' copy (which does not wait for the step queued
since), and tensors on another device are refused."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
from same_tables import assert_same_tables

import varirec as vr

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

CUDA = torch.device("cuda", torch.cuda.current_device())
CFGS = {
    "uniform": vr.UniformCfg(low=1, high=2),
    "loguniform": vr.LogUniformCfg(low=(0.1, 1), high=(10, 5)),
    "normal": vr.NormalCfg(mean=(0, 1), std=(1, 2)),
    "truncnormal": vr.TruncNormalCfg(mean=0, std=1, low=-0.5, high=3),
    "integer": vr.IntegerCfg(low=-2, high=5),
    "choice_text": vr.ChoiceCfg(choices=("a", "bb", "c"), weights=(0.2, 0.5, 0.3)),
    "choice_num": vr.ChoiceCfg(choices=(1.5, 2.5, 4.0)),
    "bernoulli": vr.BernoulliCfg(p=0.3),
    "constant": vr.ConstantCfg(value=(1.0, -0.5)),
}


def _host(x):
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _run(
    tmp_path, name: str, arrays, device, applied: dict, num_envs: int = 64, cfgs=CFGS, masks=True
):
    def keep(key):
        def apply(env, ids, values):
            if device is not None and not isinstance(values[0], str):
                assert values.device == CUDA and ids.device == CUDA, key
                assert values.dtype in (torch.float32, torch.int64, torch.bool), key
            applied.setdefault(key, []).append((_host(ids).copy(), _host(values).copy()))

        return apply

    variations = [vr.Variation(k, vr.VariationCfg(sampler=c), keep(k)) for k, c in cfgs.items()]
    rng = np.random.default_rng(0)
    m = vr.RecorderManager(num_envs, variations=variations, output=tmp_path / name, seed=3,
                           run_id="r", device=device, step_keys=("reward",))  # fmt: skip
    m.reset(None, arrays(np.arange(num_envs)))
    for step in range(60):
        done = rng.random(num_envs) < 0.1
        won = done & (rng.random(num_envs) < 0.5)
        m.record_step(reward=arrays(rng.random(num_envs).astype(np.float32)),
                      terminated=arrays(done), success=arrays(won))  # fmt: skip
        if done.any():
            # ids on even steps, a bool mask on odd ones: both are env ids
            m.reset(None, arrays(np.flatnonzero(done) if step % 2 or not masks else done))
        m.record_post_step()
    m.close()
    ds = vr.open_dataset(tmp_path / name)
    return ds.episodes().to_pandas(), ds.draws().to_pandas(), ds.steps().to_pandas()


@pytest.mark.parametrize("inference", [False, True])
def test_a_cuda_env_records_what_a_numpy_env_records_and_applies_the_same_values(
    tmp_path, inference
):
    """``inference``: every tensor made in ``torch.inference_mode`` (rsl_rl's rollouts)."""
    on_host: dict = {}
    on_cuda: dict = {}
    numpy_run = _run(tmp_path, "numpy", np.asarray, None, on_host)
    with torch.inference_mode(inference):
        cuda_run = _run(
            tmp_path, "cuda", lambda a: torch.as_tensor(a, device=CUDA), "cuda", on_cuda
        )
    assert_same_tables(numpy_run, cuda_run, min_rows=100)
    assert on_host.keys() == on_cuda.keys() == CFGS.keys()
    for key in CFGS:
        assert len(on_host[key]) == len(on_cuda[key]) > 5, key
        for (ids_h, v_h), (ids_c, v_c) in zip(on_host[key], on_cuda[key], strict=True):
            assert np.array_equal(ids_h, ids_c), key
            if v_h.dtype.kind == "f":  # float32 on the device: the float64 draw rounded once
                assert np.array_equal(v_h.astype(np.float32), v_c), key
            else:
                assert np.array_equal(v_h, v_c.astype(v_h.dtype)), key


@pytest.mark.parametrize("inference", [False, True])
def test_prefetched_cuda_resets_record_and_apply_what_numpy_does(tmp_path, monkeypatch, inference):
    """Continuous kinds and id tensors: every reset after the first is prefetched (its
    values taken from the table on the device, its bookkeeping at the next step)."""
    from varirec.recording.prefetched_reset import PrefetchedReset

    call, taken = PrefetchedReset.__call__, []
    monkeypatch.setattr(
        PrefetchedReset, "__call__", lambda self, e, i: taken.append(call(self, e, i)) or taken[-1]
    )
    cfgs = {k: CFGS[k] for k in ("uniform", "loguniform", "normal", "truncnormal")}
    on_host: dict = {}
    on_cuda: dict = {}
    numpy_run = _run(tmp_path, "numpy", np.asarray, None, on_host, cfgs=cfgs, masks=False)
    with torch.inference_mode(inference):
        cuda_run = _run(tmp_path, "cuda", lambda a: torch.as_tensor(a, device=CUDA), "cuda",
                        on_cuda, cfgs=cfgs, masks=False)  # fmt: skip
    assert sum(taken) > 40, taken
    assert_same_tables(numpy_run, cuda_run, min_rows=100)
    for key in cfgs:
        assert len(on_host[key]) == len(on_cuda[key]) > 40, key
        for (ids_h, v_h), (ids_c, v_c) in zip(on_host[key], on_cuda[key], strict=True):
            assert np.array_equal(ids_h, ids_c), key
            assert np.array_equal(v_h.astype(np.float32), v_c), key


def test_prefetched_resets_of_every_size_send_through_the_kept_pinned_buffer(tmp_path, monkeypatch):
    """The refills send the next values through a pinned buffer kept between settles (made
    larger for a larger reset), with the device idle or busy: every value applied and
    recorded is numpy's. The buffer's last send precedes the next reset's gather on the
    stream, and a settle waits for that gather, so on one stream the buffer is always free
    by the next send (a new one is taken only where the tables moved to another stream)."""
    from varirec.recording.prefetched_reset import PrefetchedReset

    kept, pinned = [], PrefetchedReset._pinned
    monkeypatch.setattr(PrefetchedReset, "_pinned", lambda self, name, *a: (
        kept.append(name), pinned(self, name, *a))[1])  # fmt: skip
    n, cfgs = 512, {k: CFGS[k] for k in ("uniform", "normal")}
    sizes = [1, 3, 70, 2, 300, 5, 130, 9, 400, 4] * 3
    runs, applied = [], [{}, {}]
    for device, seen in zip((None, CUDA), applied, strict=True):
        arrays = np.asarray if device is None else (lambda a: torch.as_tensor(a, device=CUDA))
        variations = [
            vr.Variation(k, vr.VariationCfg(sampler=c),
                         lambda env, ids, v, k=k, seen=seen: seen.setdefault(k, []).append(
                             (_host(ids).copy(), _host(v).copy())))
            for k, c in cfgs.items()
        ]  # fmt: skip
        m = vr.RecorderManager(n, variations=variations, output=tmp_path / str(device), seed=1,
                               run_id="r", device=device, step_keys=("reward",))  # fmt: skip
        m.reset(None, arrays(np.arange(n)))
        rng = np.random.default_rng(0)
        for step, k in enumerate(sizes):
            if device is not None:  # the step queued behind the last refill's send, or none
                torch.cuda._sleep(50_000_000) if step % 3 else torch.cuda.synchronize()
            done = np.zeros(n, bool)
            done[rng.choice(n, k, replace=False)] = True
            m.record_step(reward=arrays(rng.random(n)), terminated=arrays(done))
            m.reset(None, arrays(np.flatnonzero(done)))
            m.record_post_step()
        m.close()
        ds = vr.open_dataset(tmp_path / str(device))
        runs.append([ds.episodes().to_pandas(), ds.draws().to_pandas(), ds.steps().to_pandas()])
    assert_same_tables(*runs, min_rows=100)
    for key in cfgs:
        assert len(applied[0][key]) == len(applied[1][key]) == len(sizes) + 1, key
        for (ids_h, v_h), (ids_c, v_c) in zip(applied[0][key], applied[1][key], strict=True):
            assert np.array_equal(ids_h, ids_c) and np.array_equal(v_h.astype(np.float32), v_c)
    assert kept.count("values") == kept.count("ids") == len(sizes), kept  # every settle's


def _syncs(call) -> list[str]:
    """The synchronizing CUDA operations ``call`` made on this thread (torch's sync debug
    mode warns at each; the writer thread's waits are its own and not counted)."""
    me, seen = threading.get_ident(), []

    def record(message, *args, **kwargs):
        if threading.get_ident() == me and "called a synchronizing" in str(message):
            seen.append(str(message))

    with warnings.catch_warnings():  # restores the filters and showwarning
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")  # (it warns that it is a prototype)
        try:
            call()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return seen


def _twenty_uniforms(tmp_path, recording: bool, n: int):
    """A null or recording manager of ``n`` CUDA envs x 20 uniforms, after its first reset."""
    mass = [vr.Variation(f"p{j}", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)))
            for j in range(20)]  # fmt: skip
    cls = vr.RecorderManager if recording else vr.NullRecorderManager
    kw = {"output": tmp_path / "run", "run_id": "r"} if recording else {}
    m = cls(n, variations=mass, seed=0, device="cuda", **kw)
    m.reset(None, torch.arange(n, device=CUDA))
    return m


@pytest.mark.parametrize("recording", [False, True])
def test_step_and_reset_add_no_host_sync_beyond_the_reset_ids_copy(tmp_path, recording):
    n = 4096
    m = _twenty_uniforms(tmp_path, recording, n)
    reward = torch.rand(n, device=CUDA)
    done = torch.rand(n, device=CUDA) < 0.02
    for _ in range(3):  # warm: pinned buffers, cached tables
        m.record_step(reward=reward, terminated=done, success=done)
        m.reset(None, done.nonzero().squeeze(-1))
    getattr(m, "driver", m).settle()  # the last reset's bookkeeping: a step's is timed alone
    torch.cuda.synchronize()
    step = _syncs(lambda: m.record_step(reward=reward, terminated=done, success=done))
    assert step == [], step
    ids = done.nonzero().squeeze(-1)
    torch.cuda.synchronize()
    reset = _syncs(lambda: m.reset(None, ids))
    assert reset == [], reset  # prefetched: the ids' copy to the host waits for nothing
    post = _syncs(m.record_post_step)
    assert post == [], post
    torch.cuda.synchronize()
    settle = _syncs(lambda: m.record_step(reward=reward, terminated=done, success=done))
    assert len(settle) <= 1, settle  # the reset's bookkeeping: a wait for its ids' copy only
    if recording:
        m.close()
        assert vr.open_dataset(tmp_path / "run").draws().num_rows == 20 * (n + 4 * len(ids))


@pytest.mark.parametrize("recording", [False, True])
def test_the_bookkeeping_of_a_reset_does_not_wait_for_the_step_queued_after_it(tmp_path, recording):
    """The ids come to the host on a side stream: the settle at the next step returns
    while the work queued on the env's stream since the reset still runs."""
    n = 4096
    m = _twenty_uniforms(tmp_path, recording, n)
    done = torch.rand(n, device=CUDA) < 0.02
    for _ in range(3):
        m.record_step(reward=torch.ones(n, device=CUDA), terminated=done)
        m.reset(None, done.nonzero().squeeze(-1))
    assert getattr(m, "driver", m)._prefetched.pending is not None
    stream = torch.cuda.current_stream()
    torch.cuda._sleep(2_000_000_000)  # the next step: about a second of GPU time
    m.record_step(reward=torch.ones(n, device=CUDA), terminated=done)  # settles the reset
    assert getattr(m, "driver", m)._prefetched.pending is None
    assert not stream.query()  # the step still runs: the settle did not wait for it
    torch.cuda.synchronize()
    assert m.tracker.episode.sum() == 3 * len(done.nonzero())
    if recording:
        m.close()


def test_the_ids_copy_waits_for_the_reset_ids_queued_behind_other_work():
    """The side stream copies the ids only once the reset's gather ran: ids written on
    the env's stream behind a long kernel are the ones recorded."""
    n = 64
    mass = [vr.Variation("m", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)))]
    m = vr.NullRecorderManager(n, variations=mass, seed=0, device="cuda")
    m.reset(None, torch.arange(n, device=CUDA))
    m.record_step()
    m.reset(None, torch.tensor([3], device=CUDA))  # the tables exist after the first
    m.record_step()
    ids = torch.zeros(4, dtype=torch.int64, device=CUDA)  # env 0, until the copy below
    real = torch.tensor([5, 9, 17, 40], device=CUDA)
    torch.cuda._sleep(400_000_000)  # about 0.2 s of GPU time before the ids are written
    ids.copy_(real)
    m.reset(None, ids)
    assert m._prefetched.pending is not None
    m.record_step()  # settles: its copy must wait for the gather, behind the sleep
    episode = m.tracker.episode
    assert episode[[5, 9, 17, 40]].tolist() == [1, 1, 1, 1] and episode[0] == 0


def test_current_stream_is_the_same_object_for_the_same_stream():
    from varirec.arrays import current_stream

    main = current_stream(CUDA)
    assert main == torch.cuda.current_stream() and current_stream(CUDA) is main
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        assert current_stream(CUDA) == side and current_stream(CUDA) is not main
    assert current_stream(torch.device("cuda")) is main


def test_tensors_on_another_device_than_the_env_are_refused_before_anything_moves():
    m = vr.RecorderManager(4, seed=0, device="cuda")
    m.reset(None, torch.arange(4, device=CUDA))
    with pytest.raises(
        ValueError, match=r"`env_ids` is on device cpu .* on cuda.*pass env_ids\.to"
    ):
        m.reset(None, torch.arange(2))
    with pytest.raises(ValueError, match=r"`reward` is on device cpu .* on cuda.*pass reward\.to"):
        m.record_step(reward=torch.ones(4))
    assert m.tracker.episode.tolist() == [0, 0, 0, 0]
    m.close()
