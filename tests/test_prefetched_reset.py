"""A GPU env's prefetched reset (the GPU code forced to run on CPU torch): the values
come from a table on the device, the bookkeeping is done at the next step, and every
table, tracker state and value handed to ``apply`` equals a numpy run's."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from same_tables import assert_same_episodes_and_draws, assert_same_tables, random_resets

import varirec as vr
from varirec.recording.prefetched_reset import PendingBatch, PrefetchedReset
from varirec.sampling.accel import kernels

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(kernels() is None, reason="prefetching needs numba (fast extra)")

N = 8


def _variations(applied: dict, name: str) -> list[vr.Variation]:
    vs = [
        vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2))),
        vr.Variation("pos", vr.VariationCfg(sampler=vr.NormalCfg(mean=(0, 0, 0), std=(1, 2, 3)))),
        vr.Variation("fric", vr.VariationCfg(sampler=vr.LogUniformCfg(low=0.1, high=10))),
    ]
    for v in vs:
        v.apply = lambda env, ids, x, k=v.key: applied.setdefault((name, k), []).append(
            (np.asarray(ids.tolist() if hasattr(ids, "tolist") else ids), np.asarray(x).copy())
        )
    return vs


def _tables(path, steps: bool = False):
    ds = vr.open_dataset(path)
    tables = [ds.episodes().to_pandas(), ds.draws().to_pandas()]
    return [*tables, ds.steps().to_pandas()] if steps else tables


def _same_applied(applied: dict, least: int = 5) -> None:
    keys = {k for name, k in applied if name == "numpy"}
    for k in keys:
        want, got = applied["numpy", k], applied["device", k]
        assert len(got) == len(want) > least
        for (ids_a, a), (ids_b, b) in zip(want, got, strict=True):
            assert ids_a.tolist() == ids_b.tolist()
            assert np.array_equal(a.astype(np.float32), b), k


def _tracker_state(t) -> tuple:
    return (t.episode.copy(), t.started.copy(), t.start_seq.copy(), t.step.copy(), t.seq)


def _same_state(a: tuple, b: tuple) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_recorded_gpu_loop_records_and_applies_what_numpy_does(tmp_path, gpu):
    applied: dict = {}
    runs = {}
    for name, arrays, device in (("numpy", np.asarray, None), ("device", torch.as_tensor, "cpu")):
        vs = _variations(applied, name)
        m = vr.RecorderManager(N, variations=vs, output=tmp_path / name, seed=3, run_id="r",
                               device=device, step_keys=("reward",))  # fmt: skip
        random_resets(m, arrays)
        state = _tracker_state(m.tracker)
        m.close()
        runs[name] = (_tables(tmp_path / name, steps=True), state)
    assert gpu[0] > 10
    assert_same_tables(runs["numpy"][0], runs["device"][0], min_rows=20)
    assert _same_state(runs["numpy"][1], runs["device"][1])
    _same_applied(applied)


def _null_pair(applied: dict) -> tuple:
    """A device and a numpy null manager, each after a reset of all and one of [2, 5]
    (the device one's tables exist after the first), and the arrays each takes."""
    d = vr.NullRecorderManager(N, variations=_variations(applied, "device"), seed=1, device="cpu")
    numpy = vr.NullRecorderManager(N, variations=_variations(applied, "numpy"), seed=1)
    for m, arrays in ((numpy, np.asarray), (d, torch.as_tensor)):
        m.reset(None, arrays(np.arange(N)))
        m.record_step()
        m.reset(None, arrays(np.array([2, 5])))
        m.record_step()
    return d, numpy


def test_the_null_manager_settles_when_the_tracker_is_read(gpu):
    applied: dict = {}
    d, numpy = _null_pair(applied)
    for m, arrays in ((numpy, np.asarray), (d, torch.as_tensor)):
        m.reset(None, arrays(np.array([5, 7])))
    assert gpu[0] == 2 and d._prefetched.pending is not None  # waits for the next step
    assert _same_state(_tracker_state(d.tracker), _tracker_state(numpy.tracker))
    assert d._prefetched.pending is None
    assert d.tracker.episode.tolist() == [0, 0, 1, 0, 0, 2, 0, 1]
    _same_applied(applied, least=2)


def test_apply_batch_gets_the_device_matrix_and_reading_ids_settles(gpu):
    seen = []

    def apply_batch(env, ids, batch):
        seen.append((type(batch), batch.matrix.clone(), ids.tolist(), batch.ids.tolist()))
        assert batch.value("pos").shape == (len(ids), 3)

    def unapplied(name):  # the set's apply_batch applies them
        vs = _variations({}, name)
        for v in vs:
            v.apply = None
        return vs

    vs = vr.VariationSet(unapplied("device"), apply_batch=apply_batch)
    d = vr.NullRecorderManager(N, variations=vs, seed=4, device="cpu")
    d.reset(None, torch.arange(N))
    d.record_step()
    d.reset(None, torch.tensor([6, 1]))
    d.record_step()
    d.reset(None, torch.tensor([3]))
    assert gpu[0] == 2
    kind, matrix, given, host = seen[-1]
    assert kind is PendingBatch and given == host == [3]
    assert d._prefetched.pending is None  # batch.ids settled the reset inside apply_batch
    batches = []
    vs = vr.VariationSet(unapplied("x"), apply_batch=lambda e, i, b: batches.append(b))
    want = vr.NullRecorderManager(N, variations=vs, seed=4)
    for ids in ([*range(N)], [6, 1], [3]):
        want.reset(None, np.array(ids))
    assert np.array_equal(matrix.numpy(), batches[-1].matrix.astype(np.float32))


def test_listeners_see_each_draw_with_its_context_at_the_next_step(gpu):
    def run(arrays, device):
        events = []
        vs = _variations({}, "x")
        for v in vs:
            v.sampler.add_listener(lambda e, k=v.key: events.append(
                (k, np.asarray(e.values.tolist()), e.env_ids.tolist(),
                 e.context.episodes.tolist(), e.context.seq)))  # fmt: skip
        m = vr.NullRecorderManager(N, variations=vs, seed=2, device=device)
        random_resets(m, arrays, steps=20)
        m.settle()
        return events

    want, got = run(np.asarray, None), run(torch.as_tensor, "cpu")
    assert gpu[0] > 5 and len(got) == len(want) > 20
    for a, b in zip(want, got, strict=True):
        assert a[0] == b[0] and a[2:] == b[2:]
        assert np.array_equal(a[1].astype(np.float32), b[1].astype(np.float32))


def _every_env_reset_last(out, arrays, device) -> vr.RecorderManager:
    """A recorder after 12 steps and a last reset of every env (on a GPU env, its
    bookkeeping still waits)."""
    m = vr.RecorderManager(N, variations=_variations({}, "x"), output=out, seed=3, run_id="r",
                           device=device)  # fmt: skip
    random_resets(m, arrays, steps=12)
    m.record_step(reward=arrays(np.ones(N)), terminated=arrays(np.ones(N, bool)))
    m.reset(None, arrays(np.arange(N)))
    return m


def test_close_writes_the_rows_of_a_reset_still_pending(tmp_path, gpu):
    rows = {}
    for name, arrays, device in (("numpy", np.asarray, None), ("device", torch.as_tensor, "cpu")):
        m = _every_env_reset_last(tmp_path / name, arrays, device)
        pending = m.driver._prefetched.pending
        m.close()
        rows[name] = (_tables(tmp_path / name)[:2], pending)
    assert rows["numpy"][1] is None and rows["device"][1] is not None
    a, b = rows["numpy"][0], rows["device"][0]
    assert_same_episodes_and_draws(a, b)
    assert len(a[0]) > 10


def test_an_episode_ends_when_the_next_starts_though_recorded_a_step_later(tmp_path, gpu):
    m = vr.RecorderManager(N, variations=_variations({}, "d"), output=tmp_path / "d", seed=3,
                           run_id="r", device="cpu")  # fmt: skip
    random_resets(m, torch.as_tensor, steps=30)
    m.close()
    assert gpu[0] > 5
    ep = _tables(tmp_path / "d")[0].sort_values(["env_id", "episode"])
    nxt = ep.groupby("env_id")["time_start"].shift(-1)
    has_next = nxt.notna()
    assert has_next.sum() > 10
    assert (ep["time_end"][has_next] == nxt[has_next]).all()


@pytest.mark.parametrize("bad", [N + 3, N, -1, -N - 5])
def test_an_id_out_of_range_is_named_at_the_next_step_and_nothing_recorded_is_lost(
    tmp_path, gpu, bad
):
    applied: dict = {}
    m = vr.RecorderManager(N, variations=_variations(applied, "d"), output=tmp_path / "d",
                           seed=3, run_id="r", device="cpu")  # fmt: skip
    random_resets(m, torch.as_tensor, steps=20)
    m.record_step(reward=torch.ones(N), terminated=torch.ones(N, dtype=torch.bool))
    m.reset(None, torch.arange(N))
    m.record_step(reward=torch.ones(N), terminated=torch.zeros(N, dtype=torch.bool))
    before = _tracker_state(m.tracker)
    m.reset(None, torch.tensor([1, bad]))  # applied with a clamped id; named at the next step
    ids, mass = applied["d", "mass"][-1]
    assert ids.tolist() == [1, bad] and np.isfinite(mass[0]) and np.isnan(mass[1])
    with pytest.raises(
        ValueError, match=rf"in \[0, {N}\), got 1 id\(s\) outside it .* position\(s\) \[1\]"
    ):
        m.record_step(reward=torch.ones(N))
    assert _same_state(_tracker_state(m.tracker), before)  # nothing moved
    m.reset(None, torch.tensor([1]))  # the run goes on: tables made again
    m.close()
    ep = _tables(tmp_path / "d")[0]
    assert len(ep) >= N + 10 and not ep.duplicated(["env_id", "episode"]).any()


def test_an_env_named_twice_is_named_at_the_next_step_and_nothing_recorded_twice(tmp_path, gpu):
    m = vr.RecorderManager(N, variations=_variations({}, "d"), output=tmp_path / "d", seed=3,
                           run_id="r", device="cpu")  # fmt: skip
    random_resets(m, torch.as_tensor, steps=20)
    m.record_step(reward=torch.ones(N), terminated=torch.zeros(N, dtype=torch.bool))
    before = _tracker_state(m.tracker)
    m.reset(None, torch.tensor([5, 2, 5]))  # applied from the tables; named at the next step
    with pytest.raises(ValueError, match=r"got env 5 2 times \(at positions \[0, 2\]\).*GPU"):
        m.record_step(reward=torch.ones(N))
    assert _same_state(_tracker_state(m.tracker), before)  # nothing moved
    m.reset(None, torch.tensor([2, 5]))  # the run goes on: tables made again
    m.close()
    ep = _tables(tmp_path / "d")[0]
    assert len(ep) >= 10 and not ep.duplicated(["env_id", "episode"]).any()


def _around_a_failed_reset(vs, arrays, device, fail: list, first: list, failing: list):
    """Tracker states of a null manager of ``vs`` after a reset of ``failing`` whose
    apply raised (``fail`` switched on), and after the same reset done again."""
    d = vr.NullRecorderManager(N, variations=vs, seed=1, device=device)
    d.reset(None, arrays(np.arange(N)))
    d.record_step()
    d.reset(None, arrays(np.array(first)))
    d.record_step()
    fail[0] = True
    with pytest.raises(RuntimeError, match="refused"):
        d.reset(None, arrays(np.array(failing)))
    fail[0] = False
    states = [_tracker_state(d.tracker)]
    d.reset(None, arrays(np.array(failing)))
    d.record_step()
    return [*states, _tracker_state(d.tracker)]


@pytest.mark.parametrize("via", ["apply", "apply_batch"])
def test_a_raising_apply_leaves_the_episodes_begun_not_started_as_numpy_does(gpu, via):
    """``apply_batch`` reads ``batch.contexts`` before it raises, which settles a
    prefetched reset inside it: the start is taken back all the same."""
    states = []
    for arrays, device in ((np.asarray, None), (torch.as_tensor, "cpu")):
        fail = [False]

        def refuse(env, ids, x, fail=fail):
            if fail[0]:
                if via == "apply_batch":
                    _ = x.contexts  # x is the batch
                raise RuntimeError("the env refused")

        vs = _variations({}, "x")
        if via == "apply":
            vs[0].apply = refuse
        else:
            for v in vs:
                v.apply = None
            vs = vr.VariationSet(vs, apply_batch=refuse)
        states += _around_a_failed_reset(vs, arrays, device, fail, [4], [0, 4])
    assert gpu[0] == 2  # [4] and the reset after the one that raised (not counted)
    assert _same_state(states[0], states[2]) and _same_state(states[1], states[3])
    assert not states[0][1][[0, 4]].any() and not states[2][1][[0, 4]].any()


def test_a_changed_variation_and_hooks_called_by_hand_make_the_tables_again(tmp_path, gpu):
    def between(m, i):
        if i == 10:  # a new range: the cached plan and the prefetch tables are stale
            m.variations.override("mass.sampler.high=6", "mass.sampler.low=5")
        if i == 20:  # the mjlab order, by hand, for two envs
            ids = np.array([0, 1]) if m.world.device is None else torch.tensor([0, 1])
            m.record_pre_reset(ids)
            m.draw_reset(None, ids)
            m.record_post_reset(ids)

    runs = []
    for name, arrays, device in (("numpy", np.asarray, None), ("device", torch.as_tensor, "cpu")):
        m = vr.RecorderManager(N, variations=_variations({}, name), output=tmp_path / name,
                               seed=7, run_id="r", device=device)  # fmt: skip
        random_resets(m, arrays, steps=30, between=between)
        m.close()
        runs.append(_tables(tmp_path / name)[:2])
    assert gpu[0] > 8
    draws = runs[1][1]
    assert draws[draws.variation == "mass"].value.max() > 5  # the new range reached the env
    assert_same_episodes_and_draws(*runs)


def test_prefetched_resets_inside_inference_mode_record_the_same(tmp_path, gpu):
    runs = []
    for name, mode in (("plain", False), ("inference", True)):
        m = vr.RecorderManager(N, variations=_variations({}, name), output=tmp_path / name,
                               seed=2, run_id="r", device="cpu")  # fmt: skip
        with torch.inference_mode(mode):
            random_resets(m, torch.as_tensor, steps=15)
        random_resets(m, torch.as_tensor, steps=15, seed=1)  # and out of it, on the same tables
        m.close()
        runs.append(_tables(tmp_path / name)[:2])
    assert gpu[0] > 10
    assert_same_episodes_and_draws(*runs)


def test_an_id_tensor_changed_after_its_reset_is_recorded_as_it_was_applied(gpu):
    """The ids reach the host at the next step: a tensor the env reuses in between
    (changed in place) does not change which envs the reset is recorded for."""
    d, numpy = _null_pair({})
    for m, arrays in ((numpy, np.asarray), (d, torch.as_tensor)):
        ids = arrays(np.array([5, 7]))
        m.reset(None, ids)
        ids[:] = -1  # the env's buffer, cleared with a sentinel before the next step
        m.record_step()
    assert gpu[0] == 2
    assert _same_state(_tracker_state(d.tracker), _tracker_state(numpy.tracker))
    assert d.tracker.episode.tolist() == [0, 0, 1, 0, 0, 2, 0, 1]


def test_values_drawn_for_another_episode_stop_the_settle_with_the_fix(tmp_path, gpu):
    """The settle checks that the table's rows were drawn for the episodes the reset
    begins (varirec's own bookkeeping gone wrong, here forced): the error names the
    episodes and the switch that resets without the tables."""
    m = vr.RecorderManager(N, variations=_variations({}, "d"), output=tmp_path / "d", seed=1,
                           run_id="r", device="cpu")  # fmt: skip
    random_resets(m, torch.as_tensor, steps=5)
    m.record_step()
    m.reset(None, torch.tensor([3]))  # applied from the tables
    m.driver._prefetched.episode[3] += 1  # as if the row were another episode's
    with pytest.raises(vr.RecorderStateError, match="VARIREC_NO_PREFETCH=1") as err:
        m.record_step()
    assert "drawn for episodes" in str(err.value)
    assert not m.tracker.started[3]  # begun, not started: as a failed reset leaves it
    m.reset(None, torch.tensor([3]))  # made again from the tracker, and recorded
    m.record_step()
    assert m.tracker.started[3]
    m.close()


def test_the_settle_sends_the_device_only_the_next_values(tmp_path, gpu, monkeypatch):
    """The outcome term's gather and restart at the settle take the reset's own device
    ids (``ArrayWorld.sent``): the one copy to the device is the refill's values."""
    from varirec import arrays
    from varirec.recording import prefetched_reset

    m = vr.RecorderManager(N, variations=_variations({}, "d"), output=tmp_path / "d", seed=1,
                           run_id="r", device="cpu")  # fmt: skip
    random_resets(m, torch.as_tensor, steps=5)
    m.record_step(reward=torch.ones(N), terminated=torch.ones(N, dtype=torch.bool))
    before = gpu[0]
    m.reset(None, torch.tensor([2, 5, 6]))  # three episodes finish: gathered at the settle
    sends = []

    def spy(x, device, dtype=None, send=arrays.device_async):
        sends.append(sys._getframe(1).f_code.co_name)
        return send(x, device, dtype)

    monkeypatch.setattr(arrays, "device_async", spy)
    monkeypatch.setattr(prefetched_reset, "device_async", spy)
    finished = m.tracker.episodes_finished  # reading the tracker settles the reset
    assert gpu[0] == before + 1 and sends == ["_sent"], sends  # the refill's
    m.close()
    episodes = _tables(tmp_path / "d")[0]
    assert finished == len(episodes) and episodes["env_id"].isin([2, 5, 6]).sum() >= 3


def test_no_prefetch_in_the_environment_turns_it_off():
    code = "from varirec.recording import prefetched_reset as p; print(p.PREFETCH)"
    env = {**os.environ, "VARIREC_NO_PREFETCH": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
    env["VARIREC_NO_PREFETCH"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "True", out.stderr


def test_a_term_that_reads_the_env_at_a_reset_keeps_resets_synchronous(tmp_path, gpu):
    seen = []

    class Final(vr.RecorderTerm):
        def columns(self):
            import pyarrow as pa

            return {"final": pa.float64()}

        def record_pre_reset(self, env_ids):
            seen.append(len(env_ids))
            return {"final": np.ones(len(env_ids))}

    m = vr.RecorderManager(N, variations=_variations({}, "d"), output=tmp_path / "d", seed=1,
                           run_id="r", device="cpu",
                           terms={"final": vr.RecorderTermCfg(term=Final)})  # fmt: skip
    random_resets(m, torch.as_tensor, steps=15)
    m.close()
    assert gpu[0] == 0 and sum(seen) > 5


def test_a_listener_moved_by_an_override_before_the_next_step_hears_the_draw(gpu):
    def run(arrays, device):
        events = []
        vs = _variations({}, "x")
        vs[0].add_sample_listener(lambda e: events.append((e.env_ids.tolist(), e.context.seq)))
        d = vr.NullRecorderManager(N, variations=vs, seed=2, device=device)

        def between(m, i):
            if i % 7 == 3:  # apply_cfg moves the listener to the new sampler
                m.variations.override(f"mass.sampler.high={3 + i}")

        random_resets(d, arrays, steps=30, between=between)
        d.settle()
        return events

    want, got = run(np.asarray, None), run(torch.as_tensor, "cpu")
    assert gpu[0] > 5 and got == want and len(want) > 10


def test_a_variation_drawn_by_hand_after_a_reset_sees_the_new_episode(gpu):
    out = []
    for arrays, device in ((np.asarray, None), (torch.as_tensor, "cpu")):
        vs = _variations({}, "x")
        d = vr.NullRecorderManager(N, variations=vs, seed=2, device=device)
        d.reset(None, arrays(np.arange(N)))
        d.record_step()
        d.reset(None, arrays(np.array([3, 5])))
        d.record_step()
        d.reset(None, arrays(np.array([3])))  # prefetched: its bookkeeping waits
        by_hand = vs[0].draw(None, np.array([3]), apply=False)  # settles it first
        d.record_step()
        d.reset(None, arrays(np.array([3, 6])))
        out.append((by_hand.tolist(), _tracker_state(d.tracker)))
    assert gpu[0] == 2 and out[0][0] == out[1][0] and _same_state(out[0][1], out[1][1])


def test_an_env_begun_by_hand_makes_the_tables_again(gpu):
    applied: dict = {}
    for name, arrays, device in (("numpy", np.asarray, None), ("device", torch.as_tensor, "cpu")):
        vs = _variations(applied, name)
        d = vr.NullRecorderManager(N, variations=vs, seed=2, device=device)
        d.reset(None, arrays(np.arange(N - 1)))  # env N-1 never reset
        d.record_step()
        vs[0].draw(None, np.array([N - 1]), apply=False)  # begins its episode 0 by hand
        d.record_step()
        d.reset(None, arrays(np.array([N - 1, 2])))  # its next is episode 1
        d.record_step()
        for _ in range(3):
            d.reset(None, arrays(np.array([N - 1])))
            d.record_step()
    assert gpu[0] == 3
    _same_applied(applied, least=4)


def test_draw_rows_carry_the_reset_time_not_the_step_that_settled_it(tmp_path, gpu):
    import time

    m = vr.RecorderManager(N, variations=_variations({}, "d"), output=tmp_path / "d", seed=3,
                           run_id="r", device="cpu")  # fmt: skip
    random_resets(m, torch.as_tensor, steps=10, between=lambda m, i: time.sleep(0.02))
    m.close()
    episodes, draws = _tables(tmp_path / "d")
    rows = draws.merge(episodes, left_on=["env_id", "episode"], right_on=["env_id", "episode"])
    lag = (rows["time"] - rows["time_start"]).dt.total_seconds()
    assert gpu[0] > 3 and len(rows) > 20 and lag.abs().max() < 0.01


def test_a_failure_before_the_bookkeeping_keeps_the_reset_for_the_close(tmp_path, gpu, monkeypatch):
    rows = {}
    for name, arrays, device in (("numpy", np.asarray, None), ("device", torch.as_tensor, "cpu")):
        m = _every_env_reset_last(tmp_path / name, arrays, device)
        if device is not None:
            broken = [True]
            host_ids = PrefetchedReset._host_ids

            def copy_fails_once(self, p, broken=broken, host_ids=host_ids):  # as a copy would
                if broken[0]:
                    broken[0] = False
                    raise RuntimeError("the device fell over")
                return host_ids(self, p)

            monkeypatch.setattr(PrefetchedReset, "_host_ids", copy_fails_once)
            with pytest.raises(RuntimeError, match="fell over"):
                m.record_step(reward=arrays(np.ones(N)))
            assert m.driver._prefetched.pending is not None
        m.close()
        rows[name] = _tables(tmp_path / name)
    assert_same_episodes_and_draws(rows["numpy"], rows["device"])


def test_draw_interval_without_interval_variations_leaves_the_reset_pending(gpu):
    d = vr.NullRecorderManager(N, variations=_variations({}, "x"), seed=1, device="cpu")
    d.reset(None, torch.arange(N))
    d.record_step()
    d.reset(None, torch.tensor([1]))
    d.draw_interval(None)  # nothing to draw: the bookkeeping still waits for the step
    assert gpu[0] == 1 and d._prefetched.pending is not None
    d.record_step()
    assert d._prefetched.pending is None and d.tracker.episode[1] == 1


@pytest.mark.parametrize("recording", [False, True])
def test_a_prefetched_reset_runs_two_torch_ops(tmp_path, gpu, recording):
    """The clamp and the gather: on CUDA, with one event recorded, all the launches the
    GPU waits for (the ids' copy and the bookkeeping's ops run at the next step)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    vs = _variations({}, "d")
    for v in vs:
        v.apply = None
    kw = {"output": tmp_path / "d", "run_id": "r"} if recording else {}
    m = (vr.RecorderManager if recording else vr.NullRecorderManager)(
        N, variations=vs, seed=0, device="cpu", **kw
    )
    m.reset(None, torch.arange(N))
    m.record_step(reward=torch.ones(N), terminated=torch.ones(N, dtype=torch.bool))
    m.reset(None, torch.arange(N))
    m.record_step(reward=torch.ones(N), terminated=torch.ones(N, dtype=torch.bool))
    ids = torch.tensor([1, 6])
    with Ops() as ops:
        m.reset(None, ids)
    assert gpu[0] == 2 and ops.names == ["clamp", "index"], ops.names
    m.close()


def test_a_ctrl_c_during_a_settle_that_hands_rows_over_waits_for_its_end(
    tmp_path, gpu, monkeypatch
):
    """Small buffers: the settle hands rows to the writer, where a held Ctrl-C would be
    raised early; it comes once the reset is settled whole, and nothing is lost."""
    import os
    import signal

    from varirec.recording.episodes import EpisodeTracker

    m = vr.RecorderManager(N, variations=_variations({}, "d"), output=tmp_path / "d", seed=1,
                           run_id="r", device="cpu", max_rows=4)  # fmt: skip
    for _ in range(3):
        m.reset(None, torch.arange(N))
        m.record_step(reward=torch.ones(N), terminated=torch.ones(N, dtype=torch.bool))
    m.reset(None, torch.arange(N))  # episode 3 everywhere: its bookkeeping waits
    finish = EpisodeTracker.finish_block

    def interrupted(self, done, now=None, out=None, env_out=None):
        monkeypatch.setattr(EpisodeTracker, "finish_block", finish)
        os.kill(os.getpid(), signal.SIGINT)  # arrives inside the settle: held back
        return finish(self, done, now, out, env_out)

    monkeypatch.setattr(EpisodeTracker, "finish_block", interrupted)
    with pytest.raises(KeyboardInterrupt):
        m.record_step(reward=torch.ones(N), terminated=torch.zeros(N, dtype=torch.bool))
    t = m.driver._tracker
    assert m.driver._prefetched.pending is None and t.started.all() and (t.episode == 3).all()
    m.close()
    episodes, draws = _tables(tmp_path / "d")
    assert gpu[0] == 3 and sorted(set(episodes.episode)) == [0, 1, 2]
    # mass, the 3 components of pos, fric: 5 rows per env and episode, episode 3's too
    assert draws.groupby("episode").size().to_dict() == {e: 5 * N for e in range(4)}


def test_a_device_fault_at_close_still_closes_the_run_with_the_error(tmp_path, gpu, monkeypatch):
    m = vr.RecorderManager(N, variations=_variations({}, "d"), output=tmp_path / "d", seed=1,
                           run_id="r", device="cpu")  # fmt: skip
    random_resets(m, torch.as_tensor, steps=10)
    m.reset(None, torch.arange(N))

    def fault(self, p):  # as the ids' copy raises after a fault
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(PrefetchedReset, "_host_ids", fault)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        m.close()
    assert m.writer.closed
    run = vr.open_dataset(tmp_path / "d").runs()[0]
    assert "illegal memory access" in str(run), run


def test_interval_draws_between_resets_keep_the_tables(tmp_path, gpu):
    """Interval draws take seqs but begin no episode: the resets after them are still
    prefetched, and every table equals a numpy run's."""
    runs = []
    for name, arrays, device in (("numpy", np.asarray, None), ("device", torch.as_tensor, "cpu")):
        vs = _variations({}, name)
        cfg = vr.VariationCfg(
            sampler=vr.UniformCfg(low=0, high=1), mode="interval", interval_steps=(2, 4)
        )
        gust = vr.Variation("gust", cfg, lambda env, ids, x: None)
        m = vr.RecorderManager(N, variations=[*vs, gust], output=tmp_path / name, seed=4,
                               run_id="r", device=device)  # fmt: skip
        random_resets(m, arrays, steps=40, between=lambda m, i: m.draw_interval(None))
        m.close()
        runs.append(_tables(tmp_path / name))
    assert gpu[0] > 20
    draws = runs[1][1]
    assert (draws.variation == "gust").sum() > 20
    assert_same_episodes_and_draws(*runs)


def test_resets_with_no_ids_between_resets_keep_the_tables(tmp_path, gpu, monkeypatch):
    """A loop that resets every step, often with no ids: those resets begin no episode,
    so the tables stay (one build for the run) and every table equals a numpy run's."""
    builds = []
    build = PrefetchedReset.build
    monkeypatch.setattr(PrefetchedReset, "build", lambda self: builds.append(1) or build(self))
    runs, applied = [], {}
    for name, arrays, device in (("numpy", np.asarray, None), ("device", torch.as_tensor, "cpu")):
        m = vr.RecorderManager(N, variations=_variations(applied, name), output=tmp_path / name,
                               seed=4, run_id="r", device=device)  # fmt: skip

        def between(m, i, arrays=arrays):
            m.reset(None, arrays(np.zeros(0, np.int64)))

        random_resets(m, arrays, steps=40, between=between)
        m.close()
        runs.append(_tables(tmp_path / name))
    assert gpu[0] > 20 and len(builds) == 1
    assert_same_episodes_and_draws(*runs)
    _same_applied(applied)


def test_a_reset_with_no_ids_that_begins_an_episode_by_hand_makes_the_tables_again(gpu):
    """Its ``reset_fn`` draws a variation for an env that never began an episode, which
    begins one: the tables' row of that env is stale, and the next resets of it apply
    what a numpy run applies."""
    applied: dict = {}
    for name, arrays, device in (("numpy", np.asarray, None), ("device", torch.as_tensor, "cpu")):
        vs = _variations(applied, name)
        m = vr.NullRecorderManager(4, variations=vs, seed=2, device=device)
        m.reset(None, arrays(np.arange(3)))  # env 3 never reset
        m.record_step()
        m.reset(None, arrays(np.array([0])))  # the tables are made: prefetched from here
        m.record_step()

        def begin_3(ids, seeds, mass=vs[0]):
            mass.draw(None, np.array([3]), apply=False)

        m.reset(None, arrays(np.zeros(0, np.int64)), reset_fn=begin_3)
        m.record_step()
        for _ in range(3):
            m.reset(None, arrays(np.array([3])))
            m.record_step()
        assert m.tracker.episode.tolist() == [1, 0, 0, 3]
    assert gpu[0] > 0
    _same_applied(applied, least=3)


@pytest.mark.parametrize("prefetch", [True, False])
def test_a_write_error_raised_at_a_reset_loses_no_episode(tmp_path, gpu, monkeypatch, prefetch):
    """A failed write of the steps table is raised again at the next hand-over, which
    comes inside a reset's bookkeeping (the episode rows fill their buffer): the
    reset is finished first, so every episode is still recorded and only the steps
    rows count as lost (the device-accumulator path once left the next episodes
    unstarted, and lost them with no count)."""
    import json

    import torch

    from varirec.recording import prefetched_reset
    from varirec.storage.parts import PartWriter

    monkeypatch.setattr(prefetched_reset, "PREFETCH", prefetch)
    write = PartWriter._write_row_group

    def fail_steps_once(self, rows):
        if self.table == "steps" and not failed:
            failed.append(True)
            raise OSError(28, "No space left on device")
        return write(self, rows)

    failed: list[bool] = []
    monkeypatch.setattr(PartWriter, "_write_row_group", fail_steps_once)
    n, steps = 4, 20
    m = vr.RecorderManager(
        n, variations=[vr.Variation("a", vr.VariationCfg(sampler=vr.UniformCfg()))],
        output=tmp_path, seed=0, run_id="r", step_keys=("x",), max_rows=8, device="cpu",
        writer_options={"row_group_size": 4},  # each hand-over writes: the failure comes early
    )  # fmt: skip
    ids = torch.arange(n)
    m.reset(None, ids)
    raised = []
    for _ in range(steps):
        for call in (
            lambda: m.record_step(reward=torch.ones(n), x=torch.ones(n)),
            lambda: m.reset(None, ids),  # every env's episode ends here
        ):
            try:
                call()
            except Exception as exc:
                raised.append(exc)
        m.record_post_step()
    m.close()  # the error was raised once already
    assert failed and any("No space left" in str(e) for e in raised)
    episodes = vr.open_dataset(tmp_path).episodes("r").to_pandas()
    assert len(episodes) == n * steps  # every finished episode, once
    assert (episodes.groupby("env_id")["episode"].nunique() == steps).all()
    doc = json.loads((tmp_path / "run_id=r" / "run.json").read_text())
    assert set(doc["rows_lost"]) == {"steps"}
