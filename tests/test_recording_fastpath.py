"""The recording hot path's shortcuts record exactly what the checked paths recorded.

Each shortcut (the outcome term's unchecked numpy step, the tracker's one-take
columns, a reset block's events kept as one entry, the per-hook term lists) is run
against the path it short-cuts, or against values worked out here by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import varirec as vr
from varirec.recording.draw_chunk import DrawChunk
from varirec.recording.episodes import EpisodeTracker
from varirec.recording.terms import OutcomeTerm, RecorderTerm, RecorderTermCfg
from varirec.sampling.samplers import DrawContext


def _run(path, monkeypatch, checked: bool):
    """A loop whose steps hand every kind the outcome term takes (ints, bools, NaN
    success, missing keys), with envs that start late: the episodes table."""
    if checked:  # the path every step took before the shortcut
        monkeypatch.setattr(OutcomeTerm, "_host_step", lambda self, data: None)
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    rng = np.random.default_rng(5)
    n = 12
    with vr.RecorderManager(n, variations=[mass], output=path, run_id="r", seed=1) as m:
        m.reset(None, np.arange(8))  # envs 8..11 start later: not every env runs
        for step in range(40):
            data = {
                "reward": rng.integers(-3, 4, n) if step % 3 else rng.normal(size=n),
                "terminated": rng.random(n) < 0.2,
            }
            if step % 4 == 1:
                data["truncated"] = (rng.random(n) < 0.1).astype(np.int8)
            if step % 5 == 2:
                success = rng.random(n)
                success[rng.random(n) < 0.3] = np.nan
                data["success"] = success
            elif step % 5 == 3:
                data["success"] = rng.random(n) < 0.5
            m.record_step(**data)
            done = np.flatnonzero(data["terminated"] & m.tracker.started)
            if step == 10:
                done = np.union1d(done, [8, 9, 10, 11])
            if done.size:
                m.reset(None, done)
            m.record_post_step()
    monkeypatch.undo()
    eps = vr.open_dataset(path).episodes().to_pandas()
    return eps.drop(columns=["time_start", "time_end"]).sort_values("end_seq")


def test_the_numpy_step_shortcut_records_the_checked_paths_episodes(tmp_path, monkeypatch):
    fast = _run(tmp_path / "fast", monkeypatch, checked=False)
    calls = []
    real = OutcomeTerm._host_step
    monkeypatch.setattr(OutcomeTerm, "_host_step", lambda self, d: calls.append(1) or real(self, d))
    _run(tmp_path / "probe", monkeypatch, checked=False)
    slow = _run(tmp_path / "slow", monkeypatch, checked=True)
    assert len(calls) == 40  # the shortcut did run in the first run's loop
    assert len(fast) > 30 and fast.reset_index(drop=True).equals(slow.reset_index(drop=True))
    assert fast["success"].isna().any() and fast["success"].notna().any()
    assert (fast["env_id"] >= 8).any()  # the late starters finished episodes too


def test_the_shortcut_leaves_what_it_does_not_take_to_the_checked_path():
    m = vr.RecorderManager(4, output=None)
    m.reset(None, None)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        m.record_step(reward=np.ones(5))
    with pytest.raises(TypeError, match="must hold bools"):
        m.record_step(terminated=np.ones(4))
    m.record_step(reward=[1, 2, 3, 4])  # a list: converted by the checked path
    m.record_step(reward=np.ones(4, np.float32))
    assert m.terms["outcome"]._acc.acc[0].tolist() == [2.0, 3.0, 4.0, 5.0]
    m.close()


def test_finish_takes_every_counter_of_the_finished_envs():
    t = EpisodeTracker(5)
    ids = np.arange(1, 5)  # env 0 never starts: finished with the others, it is skipped
    t.begin(ids)
    t.sample_id[:] = [0, -1, 9, 3, 4]
    t.seed[:] = [0, 12, -1, 14, 15]
    t.start(ids)
    start_time = t.start_time.copy()
    for _ in range(3):
        t.advance_steps()
    for _ in range(6):
        t.advance_steps(np.array([1, 1, 0]))  # env 1 alone counts on (0 is stopped)
    cols = t.finish(np.array([0, 3, 1, 4]))
    assert {k: v.tolist() for k, v in cols.items() if k != "time_end"} == {
        "env_id": [3, 1, 4],
        "episode": [0, 0, 0],
        "start_seq": [1, 1, 1],
        "end_seq": [2, 2, 2],
        "length": [3, 9, 3],
        "sample_id": [3, -1, 4],
        "seed": [14, 12, 15],
        "time_start": start_time[[3, 1, 4]].tolist(),
    }
    assert t.started.tolist() == [False, False, True, False, False]
    # The counters are views of one block: a write through either name is seen by both.
    t.episode[2] = 41
    assert t._ints[2, 0] == 41
    assert t.finish(np.array([2]), started=True)["episode"].tolist() == [41]


def test_a_block_entry_expands_to_the_events_of_its_variations_in_order():
    chunk = DrawChunk(100, ["a", "b", "c"], [])
    ctx = DrawContext("a", "reset", 5, np.array([0, 1]), 0, 0)
    assert chunk.add(0, ctx, np.array([0.5, 0.6]), np.array([0, 1]), 1000)
    codes = np.array([[1, 1], [2, 1]])
    ids, eps = np.array([2, 3, 4]), np.array([7, 8, 9])
    assert chunk.add_block(codes, 6, np.arange(6.0).reshape(3, 2), ids, eps, None, 2000)
    ctx = DrawContext("c", "interval", 8, np.array([9]), 4, 1)
    assert chunk.add(2, ctx, np.array([[1.5, 2.5]]), np.array([4]), 3000)
    assert chunk.add_block(codes, 9, np.ones((1, 2)), ids[:1], eps[:1], None, 4000)
    table = chunk.to_arrow().to_pydict()
    assert table["seq"] == [5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 9, 10]
    assert [str(v) for v in table["variation"]] == ["a"] * 2 + ["b"] * 3 + ["c"] * 5 + ["b", "c"]
    assert table["env_id"] == [0, 1, 2, 3, 4, 2, 3, 4, 4, 4, 2, 2]
    assert table["value"] == [0.5, 0.6, 0, 2, 4, 1, 3, 5, 1.5, 2.5, 1, 1]
    assert table["component"] == [0] * 8 + [0, 1] + [0, 0]
    assert [str(p) for p in table["phase"]] == ["reset"] * 8 + ["interval"] * 2 + ["reset"] * 2
    us = [t.timestamp() * 1e6 for t in table["time"]]
    assert us == [1000] * 2 + [2000] * 6 + [3000] * 2 + [4000] * 2
    assert table["step"] == [0] * 8 + [4, 4, 0, 0] and table["draw_seq"] == [0] * 8 + [1, 1, 0, 0]


def test_a_chunk_refuses_event_codes_outside_its_keys_or_phases():
    """The dictionary columns skip Arrow's check of every row; the chunk checks the
    codes per event instead, so a bad code never reaches a part."""
    chunk = DrawChunk(100, ["a", "b"], [])
    ids, eps = np.array([2, 3]), np.array([7, 8])
    assert chunk.add_block(np.array([[0, 1], [2, 1]]), 6, np.ones((2, 2)), ids, eps, None, 1)
    with pytest.raises(ValueError, match=r"variation code outside 0\.\.1"):
        chunk.to_arrow()
    chunk = DrawChunk(100, ["a"], [])
    ctx = DrawContext("a", "reset", 5, np.array([0]), 0, 0)
    assert chunk.add(0, ctx, np.array([0.5]), np.array([0]), 1000)
    chunk.events[0] = (0, 9, *chunk.events[0][2:])  # a phase code past PHASES
    with pytest.raises(ValueError, match="phase code outside"):
        chunk.to_arrow()


@pytest.mark.parametrize("blocks_only", [True, False])
def test_a_pooled_chunk_hands_arrow_rows_the_pool_never_overwrites(blocks_only):
    """Rows of reset blocks equal the same draws added one by one; the chunk's pooled
    buffers go back to the pool (untouched where the chunk holds only blocks: its rows
    are laid out in new arrays), and no later chunk's writes into them reach the table."""
    from collections import deque

    rng = np.random.default_rng(2)
    codes = np.array([[0, 1], [1, 1], [2, 1]])
    resets = [(rng.permutation(9)[:4], rng.integers(0, 5, 4), rng.random((4, 3))) for _ in range(5)]
    pool: deque = deque()
    block_chunk = DrawChunk(200, ["a", "b", "c"], [], pool)
    buffers = (block_chunk._env_id, block_chunk._episode, block_chunk._value)
    one_by_one = DrawChunk(200, ["a", "b", "c"], [])
    seq = 1
    for ids, eps, values in resets:
        assert block_chunk.add_block(codes, seq, values, ids, eps, None, 1000)
        for j, key in enumerate("abc"):
            ctx = DrawContext(key, "reset", seq + j, eps, 0, 0)
            assert one_by_one.add(j, ctx, values[:, j].copy(), ids, 1000)
        seq += 3
    if not blocks_only:  # a draw copied in on the hot path: the buffers hold rows
        ctx = DrawContext("a", "interval", seq, np.array([3]), 2, 1)
        assert block_chunk.add(0, ctx, np.array([0.25]), np.array([8]), 1000)
        assert one_by_one.add(0, ctx, np.array([0.25]), np.array([8]), 1000)
    before = [b.copy() for b in buffers]
    table = block_chunk.to_arrow()
    assert table.equals(one_by_one.to_arrow())
    assert len(pool) == 1  # env_id, episode, step, draw_seq, value: back for the next chunk
    assert all(a is b for a, b in zip(buffers, (pool[0][0], pool[0][1], pool[0][4]), strict=True))
    if blocks_only:  # nothing was laid out in them
        for b, old in zip(buffers, before, strict=True):
            np.testing.assert_array_equal(b, old)
    expected = table.to_pydict()
    for b in buffers:  # the next chunk writes into the pooled buffers
        b[:] = -7
    assert table.to_pydict() == expected


@pytest.mark.parametrize("compiled", [True, False])
def test_reset_blocks_laid_out_by_the_kernel_equal_the_numpy_layout(compiled, monkeypatch):
    """The writer thread lays reset blocks out with a kernel that lets the GIL go (numba),
    else with numpy: both give the rows of the same draws added one by one, values
    still on their way from a device (``pending``) included."""
    from varirec.recording.draw_chunk import CHUNK_KERNELS
    from varirec.sampling import accel

    rng = np.random.default_rng(5)
    codes = np.array([[2, 1], [0, 1], [1, 1], [3, 1]])
    codes.flags.writeable = False  # as the recorder keeps them
    block_chunk = DrawChunk(400, list("abcd"), [])
    one_by_one = DrawChunk(400, list("abcd"), [])
    seq = 3
    for r in range(6):
        k = int(rng.integers(1, 12))
        ids, eps, values = rng.permutation(40)[:k], rng.integers(0, 9, k), rng.random((k, 4))
        if r % 3 == 2:  # a device's values: a flat variation-major host buffer
            flat = np.ascontiguousarray(values.T).reshape(-1)
            assert block_chunk.add_block(codes, seq, flat, ids, eps, None, 10 * r, pending=True)
        else:
            assert block_chunk.add_block(codes, seq, values, ids, eps, None, 10 * r)
        for j, code in enumerate(codes[:, 0]):
            ctx = DrawContext("abcd"[code], "reset", seq + j, eps, 0, 0)
            assert one_by_one.add(int(code), ctx, values[:, j].copy(), ids, 10 * r)
        seq += len(codes)
    with accel.compiled_draws(compiled) as kern:
        if compiled and kern is None:
            pytest.skip("the compiled kernels are off (numba missing or VARIREC_NO_COMPILE)")
        layout = accel.kernels_of(CHUNK_KERNELS)
        calls = []
        if layout is not None:
            spy = type(
                "Spy",
                (),
                {"lay_out_block": lambda *a: calls.append(1) or layout.lay_out_block(*a[1:])},
            )()
            monkeypatch.setitem(accel._companions, CHUNK_KERNELS, spy)
        table = block_chunk.to_arrow()
    assert len(calls) == (6 if compiled else 0)
    assert table.equals(one_by_one.to_arrow())


class _Counting(RecorderTerm):
    def record_post_step(self) -> None:
        self.manager.seen.append("post_step")


def test_each_hook_calls_the_terms_that_implement_it_also_when_terms_change():
    m = vr.RecorderManager(
        2, output=None, terms={"count": RecorderTermCfg(term=_Counting, params={})}
    )
    m.seen = []
    m.reset(None, None)
    assert [type(t).__name__ for t in m._hooks("record_post_step")] == ["_Counting"]
    assert [type(t).__name__ for t in m._hooks("record_step")] == ["OutcomeTerm"]
    m.record_post_step()
    late = RecorderTerm(RecorderTermCfg(term=RecorderTerm), m)
    late.record_step = lambda data: m.seen.append(sorted(data))  # an instance's own hook
    m.terms["late"] = late  # added after the first hook call: found at the next
    m.record_step(reward=np.ones(2))
    m.record_post_step()
    assert m.seen == ["post_step", ["reward"], "post_step"]
    del m.terms["count"]
    m.record_post_step()
    assert m.seen[-1] == "post_step" and len(m.seen) == 3
    m.close()


def test_listeners_added_to_a_sampler_between_resets_hear_the_next_batch(tmp_path):
    vs = vr.VariationSet(
        vr.Variation(f"v{i}", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)))
        for i in range(3)
    )
    heard = []
    m = vr.RecorderManager(4, variations=vs, output=tmp_path / "d", run_id="r")
    m.reset(None, None)  # the recorder takes the batch whole: no variation is told
    m.reset(None, [1])
    listener = vs["v1"].sampler.add_listener(lambda e: heard.append(e.env_ids.tolist()))
    m.reset(None, [2, 3])  # same group, same fed set: the new listener is still told
    vs["v1"].sampler.remove_listener(listener)
    m.reset(None, [0])
    m.close()
    assert heard == [[2, 3]]
    assert m.counts["draws"] == 3 * (4 + 1 + 2 + 1)


def test_step_counts_follow_every_tracker_operation_as_a_per_env_counter_would():
    """The tracker counts steps from a clock; a plain counter per env, advanced for the
    running envs at every step (what the tracker did before), is the truth."""
    n = 7
    t = EpisodeTracker(n)
    step = np.zeros(n, np.int64)
    running = np.zeros(n, bool)
    rng = np.random.default_rng(3)
    lengths = []
    for _ in range(1000):
        ids = rng.choice(n, size=rng.integers(1, 4))  # repeats on purpose
        op = rng.integers(6)
        if op == 0:
            t.begin(ids)
            step[ids], running[ids] = 0, False
        elif op == 1 and not running[ids].any():
            t.start(ids)
            running[ids] = True
        elif op == 2:
            got = t.finish(ids)
            lengths.append((got["length"].tolist(), step[ids[running[ids]]].tolist()))
            running[ids] = False
        elif op == 3:
            t.advance_steps(ids)
            step[np.unique(ids)] += running[np.unique(ids)]
        elif op == 4:
            t.finish(ids, columns=False)
            running[ids] = False
        else:
            t.advance_steps()
            step += running
        assert t.step.tolist() == step.tolist() and t.started.tolist() == running.tolist()
        assert t.steps(ids).tolist() == step[ids].tolist()
    assert all(a == b for a, b in lengths) and sum(len(a) for a, _ in lengths) > 50


def test_a_return_sums_only_the_steps_its_episode_ran(tmp_path):
    """Steps add to stopped envs too (no mask); their start resets them. The truth is
    summed here per episode from the rewards handed in while it ran."""
    n = 6
    rng = np.random.default_rng(8)
    running = np.zeros(n, bool)
    ret = np.zeros(n)
    last_term = np.zeros(n, bool)
    last_succ = np.full(n, np.nan)  # NaN: unknown (a null in the table)
    truth = []
    with vr.RecorderManager(n, output=tmp_path / "d", run_id="r") as m:
        m.record_step(reward=np.full(n, 100.0))  # nothing runs yet
        m.reset(None, [0, 1, 2])
        running[[0, 1, 2]] = True
        for step in range(60):
            reward = rng.normal(size=n)
            term = rng.random(n) < 0.25
            outcomes = {"reward": reward, "terminated": term}
            if step % 3 == 0:  # success told on some steps: an episode may end unknown
                succ = outcomes["success"] = rng.choice([0.0, 1.0, np.nan], n)
                last_succ[running] = succ[running]
            m.record_step(**outcomes)
            ret[running] += reward[running]
            last_term[running] = term[running]
            done = np.flatnonzero(term & running)
            if step % 7 == 3:  # pre-reset, a step while stopped, then the start
                m.record_pre_reset(done)
                truth += [(e, ret[e], last_term[e], last_succ[e]) for e in done]
                running[done] = False
                m.record_step(
                    reward=np.full(n, 1e6), terminated=np.ones(n, bool), success=np.ones(n)
                )
                ret[running] += 1e6
                last_term[running] = True
                last_succ[running] = 1.0
                m.draw_reset(None, done)
                m.record_post_reset(done)
            else:
                truth += [(e, ret[e], last_term[e], last_succ[e]) for e in done]
                m.reset(None, done)
            running[done] = True
            ret[done], last_term[done], last_succ[done] = 0.0, False, np.nan
            if step == 20:  # envs 3..5 start late: what they got before is dropped
                m.reset(None, [3, 4, 5])
                running[[3, 4, 5]] = True
    eps = vr.open_dataset(tmp_path / "d").episodes().to_pandas().sort_values("end_seq")
    succ = [None if pd.isna(x) else bool(x) for x in eps.success]
    got = list(zip(eps.env_id, eps["return"], eps.terminated, succ, strict=True))
    assert len(got) == len(truth) > 40
    for (e, r, t, s), (e2, r2, t2, s2) in zip(got, truth, strict=True):
        assert (e, t) == (e2, t2) and r == pytest.approx(r2, abs=1e-12)
        assert s == (None if np.isnan(s2) else bool(s2)), (e, s, s2)
    assert {s for *_, s in got} == {None, True, False}


def test_an_interval_draw_is_stamped_with_each_envs_own_step_count():
    gust = vr.Variation("gust", vr.VariationCfg(sampler=vr.UniformCfg(), mode="interval"))
    t = EpisodeTracker(4)
    gust.bind(t)
    t.begin(np.arange(4))
    t.start(np.arange(3))  # env 3 never starts: its count stays 0
    for _ in range(3):
        t.advance_steps()
    t.advance_steps(np.array([1]))
    t.advance_steps(np.array([1, 2]))
    ids = np.array([2, 1, 3, 0])
    ctx = gust._episode_context(ids, t.episode[ids], t.sample_id[ids], False, t.next_seq())
    assert np.asarray(ctx.steps).tolist() == [4, 5, 0, 3]


def test_finish_and_begin_leaves_the_tracker_as_finish_then_begin_does():
    rng = np.random.default_rng(3)
    a, b = EpisodeTracker(16), EpisodeTracker(16)
    for _ in range(60):
        ids = np.unique(rng.integers(0, 16, rng.integers(1, 8)))
        a.finish(ids, columns=False)
        a.begin(ids)
        b.finish_and_begin(ids)
        some = np.unique(rng.integers(0, 16, 3))
        for t in (a, b):
            t.start(ids)
            t.advance_steps()
            t.advance_steps(some[t.started[some]])
        for row in ("episode", "_base", "start_seq", "sample_id", "seed"):  # not the clock time
            np.testing.assert_array_equal(getattr(a, row), getattr(b, row))
        np.testing.assert_array_equal(a.started, b.started)
        np.testing.assert_array_equal(a.step, b.step)
        assert (a.seq, a.episodes_finished) == (b.seq, b.episodes_finished)
    assert a.episodes_finished > 0
