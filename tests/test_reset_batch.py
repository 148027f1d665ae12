"""The reset batch as a whole: ``VariationSet(apply_batch=)`` gets exactly what each
variation's ``apply`` would, the driver's cached reset plan follows every change, and
the recorder's one-block copy of a reset writes the rows the per-variation copy wrote.

The truth is each variation's own counter stream: ``cfg.ppf(CounterStream(seed,
key).uniforms(env_ids, episodes, width))``.
"""

from __future__ import annotations

import numpy as np
import pytest

import varirec as vr
from varirec.recording.draw_chunk import DrawChunk
from varirec.recording.recorder import VariationRecorder
from varirec.sampling.streams import CounterStream
from varirec.variations.batch import draw_reset_batch

CFGS = [
    vr.UniformCfg(low=0.5, high=2.0),
    vr.NormalCfg(mean=1, std=2),
    vr.UniformCfg(low=(0, -1), high=(1, 1)),
    vr.LogUniformCfg(low=0.1, high=10),
    vr.IntegerCfg(low=-2, high=5),
    vr.ChoiceCfg(choices=(1.5, 2.5)),
]
SCALAR = [CFGS[0], CFGS[1], CFGS[3], vr.TruncNormalCfg(mean=0, std=1, low=-1, high=2)]


def _set(cfgs, apply=None) -> vr.VariationSet:
    return vr.VariationSet(
        vr.Variation(f"v{i}", vr.VariationCfg(sampler=c), apply) for i, c in enumerate(cfgs)
    )


def _truth(seed: int, key: str, cfg, ids, episodes) -> np.ndarray:
    return cfg.ppf(
        CounterStream(seed, key).uniforms(np.asarray(ids), np.asarray(episodes), cfg.width)
    )


def _resets(driver, steps: int = 5, n: int = 16):
    rng = np.random.default_rng(4)
    for step in range(steps):
        ids = np.arange(n) if step == 0 else np.flatnonzero(rng.random(n) < 0.4)
        driver.record_step()
        driver.reset(None, ids)
        yield ids


@pytest.mark.parametrize("cfgs", [SCALAR, CFGS], ids=["scalar", "mixed"])
def test_apply_batch_gets_the_values_each_apply_gets(cfgs):
    per_var: list[tuple[str, np.ndarray, np.ndarray]] = []
    one = _set(cfgs)
    for v in one.values():
        v.apply = lambda env, ids, x, key=v.key: per_var.append((key, ids.copy(), x.copy()))
    batches: list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]] = []

    def apply_all(env, ids, batch):
        values = {k: batch.value(k).copy() for k in batch.keys}
        batches.append((ids.copy(), batch.matrix.copy(), values))

    d1 = vr.NullRecorderManager(16, variations=one, seed=5)
    d2 = vr.NullRecorderManager(16, variations=_set(cfgs), seed=5)
    d2.variations.apply_batch = apply_all
    episodes = []
    for ids in _resets(d1):
        episodes.append((ids, d1.tracker.episode[ids].copy()))
    list(_resets(d2))
    assert len(batches) == len(episodes) == 5 and len(per_var) == 5 * len(cfgs)
    for r, ((ids, eps), (bids, matrix, values)) in enumerate(zip(episodes, batches, strict=True)):
        assert np.array_equal(bids, ids)
        col = 0
        for j, cfg in enumerate(cfgs):
            key, pids, x = per_var[r * len(cfgs) + j]
            expect = _truth(5, key, cfg, ids, eps)
            assert key == f"v{j}" and np.array_equal(pids, ids)
            assert np.array_equal(x, expect) and np.array_equal(values[key], expect)
            w = cfg.width
            block = matrix[:, col : col + w].reshape(expect.shape)
            assert np.array_equal(block, expect.astype(np.float64)), key
            col += w
        assert matrix.shape == (len(ids), col)


def test_apply_batch_applies_only_variations_without_their_own_apply():
    own: list[str] = []
    calls: list[list[str]] = []
    vs = _set(SCALAR)
    vs["v1"].apply = lambda env, ids, x: own.append("v1")
    vs.apply_batch = lambda env, ids, batch: calls.append(batch.keys)
    d = vr.NullRecorderManager(4, variations=vs, seed=0)
    d.reset(None, [0, 1])
    assert own == ["v1"] and calls == [["v0", "v1", "v2", "v3"]]
    for v in vs.values():  # every variation applies itself: nothing left for the batch
        v.apply = lambda env, ids, x: own.append("x")
    d.reset(None, [0])
    assert len(calls) == 1 and own.count("x") == 4
    with pytest.raises(TypeError, match="apply_batch"):
        vs.apply_batch = 3  # type: ignore[assignment]


def test_num_draws_counts_every_batch_across_rebuilt_reset_groups():
    """A reset group counts its batches once for all its variations; a rebuilt group
    (any change to the variations) folds the old count in, so each variation's
    ``num_draws`` stays exact and it reads one count per live driver."""
    vs = _set(SCALAR)
    d = vr.NullRecorderManager(8, variations=vs, seed=2)
    expected = dict.fromkeys(vs.keys(), 0)
    rng = np.random.default_rng(0)
    for i in range(40):
        if i % 3 == 0:  # a change: the next reset builds a new group
            v = vs[f"v{int(rng.integers(0, len(SCALAR)))}"]
            v.disable() if v.enabled else v.enable()
        d.reset(None, rng.choice(8, 3, replace=False))
        for key, v in vs.items():
            expected[key] += bool(v.enabled)
    assert {k: v.num_draws for k, v in vs.items()} == expected
    assert all(len(v._batch_draws) <= 1 for v in vs.values())
    vs["v0"].enable()
    vs["v0"].draw(None, np.arange(2))  # a draw of its own counts too
    assert vs["v0"].num_draws == expected["v0"] + 1
    # A batch drawn without a driver's group counts on each variation, keeping none.
    cells = len(vs["v0"]._batch_draws)
    batch = draw_reset_batch([vs["v0"]], np.array([1, 2]), d.tracker)
    batch.notify_and_apply(None)
    assert vs["v0"].num_draws == expected["v0"] + 2 and len(vs["v0"]._batch_draws) == cells


def test_drivers_closed_or_dropped_leave_num_draws_exact_and_nothing_behind():
    """A sweep of many runs over one VariationSet: each closed (or dropped) driver's
    count of batches folds into the variations, which keep no count of it."""
    import gc

    vs = _set(SCALAR)
    for run in range(30):
        d = vr.NullRecorderManager(8, variations=vs, seed=run)
        d.reset(None, np.arange(8))
        d.reset(None, np.array([1, 2]))
        if run % 2:
            d.close()
            d.reset(None, np.array([3]))  # used after its close: counts anew
            d.close()
        del d
    gc.collect()
    assert all(v.num_draws == 30 * 2 + 15 for v in vs.values())
    assert all(not v._batch_draws for v in vs.values())
    vs["v0"].num_draws = 0  # assignable, as before (e.g. to reattach a recorder)
    assert vs["v0"].num_draws == 0


def test_the_cached_reset_plan_follows_every_change():
    vs = _set(SCALAR)
    d = vr.NullRecorderManager(8, variations=vs, seed=2)
    seen: list[tuple[str, np.ndarray]] = []
    d.reset(None, np.arange(8))
    vs["v1"].disable()
    d.reset(None, [3])  # a retried reset: episode 1 of env 3
    assert vs["v1"].num_draws == 1 and vs["v0"].num_draws == 2
    vs["v1"].enable()
    vs.override("v0.sampler.high=9.0")
    vs["v2"].apply = lambda env, ids, x: seen.append(("apply", x.copy()))
    vs["v3"].add_sample_listener(lambda e: seen.append(("listener", e.values.copy())))
    vs.apply_batch = lambda env, ids, batch: seen.append(("batch", batch.matrix.copy()))
    d.reset(None, [5])
    ep = d.tracker.episode[[5]]
    assert vs["v1"].num_draws == 2 and ep.tolist() == [1]
    kinds = [k for k, _ in seen]
    assert kinds == ["apply", "listener", "batch"]
    high9 = vr.UniformCfg(low=0.5, high=9.0)
    assert np.array_equal(seen[0][1], _truth(2, "v2", SCALAR[2], [5], ep))
    assert np.array_equal(seen[1][1], _truth(2, "v3", SCALAR[3], [5], ep))
    assert np.array_equal(seen[2][1][:, 0], _truth(2, "v0", high9, [5], ep))


def test_a_listener_sees_consecutive_seqs_and_first_draw_contexts():
    vs = _set(SCALAR)
    contexts = []
    for v in vs.values():
        v.add_sample_listener(lambda e: contexts.append(e.context))
    d = vr.NullRecorderManager(4, variations=vs, seed=0)
    d.reset(None, [0, 2])
    d.draw_reset(None, [2])  # a second draw in the same episode: draw_seq 1
    first, again = contexts[:4], contexts[4:]
    # seq 1 ends the (never started) episodes, seq 6 starts the new ones
    assert [c.seq for c in first] == [2, 3, 4, 5] and [c.seq for c in again] == [7, 8, 9, 10]
    assert all(c.draw_seq == 0 and c.steps == 0 and c.phase == "reset" for c in first)
    assert all(c.episodes.tolist() == [0, 0] for c in first)
    assert all(np.asarray(c.draw_seq).tolist() == [1] for c in again)


def test_torch_cpu_batch_hands_float32_tensors_of_the_numpy_values():
    torch = pytest.importorskip("torch")
    got = {}
    vs = _set(CFGS)
    vs.apply_batch = lambda env, ids, batch: got.update(
        ids=ids, matrix=batch.matrix, v4=batch.value("v4"), values=batch.values
    )
    d = vr.NullRecorderManager(8, variations=vs, seed=1, device="cpu")
    d.reset(None, torch.tensor([1, 6]))
    ref = _set(CFGS)
    dn = vr.NullRecorderManager(8, variations=ref, seed=1)
    host = {}
    ref.apply_batch = lambda env, ids, batch: host.update(matrix=batch.matrix, values=batch.values)
    dn.reset(None, np.array([1, 6]))
    assert isinstance(got["ids"], torch.Tensor) and got["ids"].tolist() == [1, 6]
    assert got["matrix"].dtype == torch.float32
    assert np.array_equal(got["matrix"].numpy(), host["matrix"].astype(np.float32))
    assert got["v4"].dtype == torch.int64 and got["v4"].tolist() == host["values"][4].tolist()
    for t, x in zip(got["values"], host["values"], strict=True):
        assert isinstance(t, torch.Tensor) and np.array_equal(t.numpy(), x)


def _draw_rows(path, per_variation: bool, monkeypatch, max_rows: int):
    blocks = []
    if per_variation:  # the copy of each variation's draw on its own, as before
        monkeypatch.setattr(VariationRecorder, "_record_block", lambda self, b, now: False)
    else:
        real = DrawChunk.add_block
        monkeypatch.setattr(
            DrawChunk, "add_block", lambda self, *a: blocks.append(real(self, *a)) or blocks[-1]
        )
    vs = _set([*SCALAR, vr.UniformCfg(low=-1, high=0)])
    with vr.RecorderManager(
        16, variations=vs, output=path, run_id="r", seed=3, max_rows=max_rows
    ) as m:
        rng = np.random.default_rng(0)
        for step in range(12):
            ids = np.arange(16) if step in (0, 7) else np.flatnonzero(rng.random(16) < 0.3)
            m.record_step(reward=np.ones(16), terminated=np.zeros(16, bool))
            m.reset(None, ids)
            if step == 4:
                m.draw_reset(None, ids)  # a second draw in the episode: draw_seq 1
    monkeypatch.undo()
    d = vr.open_dataset(path).draws().to_pandas().drop(columns="time")
    return d.sort_values(["seq", "env_id"]).reset_index(drop=True), blocks


@pytest.mark.parametrize("max_rows", [50, 10_000])
def test_block_copy_records_the_rows_the_per_variation_copy_did(tmp_path, monkeypatch, max_rows):
    block, blocks = _draw_rows(tmp_path / "block", False, monkeypatch, max_rows)
    alone, none = _draw_rows(tmp_path / "alone", True, monkeypatch, max_rows)
    assert block.equals(alone) and none == []
    assert blocks.count(True) >= 8 and (False in blocks) == (max_rows == 50)  # full chunks
    cfgs = {f"v{i}": c for i, c in enumerate([*SCALAR, vr.UniformCfg(low=-1, high=0)])}
    first = block[block.draw_seq == 0]
    for key, rows in first.groupby("variation", observed=True):
        expect = _truth(3, key, cfgs[key], rows.env_id, rows.episode)
        assert np.array_equal(rows.value.to_numpy(), expect), key
    assert (block.draw_seq == 1).sum() > 0 and (block.step == 0).all()
    # each reset's variations take consecutive seqs, in the set's order
    per_seq = block.groupby("seq").variation.first().astype(str).tolist()
    assert per_seq[:5] == ["v0", "v1", "v2", "v3", "v4"]


def test_a_variation_seeded_again_draws_from_its_new_stream():
    vs = _set(SCALAR)
    got = []
    vs.apply_batch = lambda env, ids, batch: got.append(batch.matrix.copy())
    d = vr.NullRecorderManager(4, variations=vs, seed=0)
    d.reset(None, [1])
    vs["v2"].seed(99)
    d.reset(None, [1])  # episode 1
    assert d.tracker.episode[1] == 1
    assert np.array_equal(got[0][:, 2], _truth(0, "v2", SCALAR[2], [1], [0]))
    assert np.array_equal(got[1][:, 2], _truth(99, "v2", SCALAR[2], [1], [1]))
    assert np.array_equal(got[1][:, 0], _truth(0, "v0", SCALAR[0], [1], [1]))


def test_outcomes_in_torch_ops_give_the_numpy_columns():
    """The accumulator's torch code (what runs on CUDA), run here on CPU tensors."""
    torch = pytest.importorskip("torch")
    from varirec.recording import episode_chunk
    from varirec.recording.device_outcomes import DeviceOutcomes

    rng = np.random.default_rng(2)
    host, dev = DeviceOutcomes(6), DeviceOutcomes(6, torch.device("cpu"), in_torch=True)
    out = {"host": [], "dev": []}
    for step in range(5):
        reward = rng.normal(size=6)
        flags = rng.random((2, 6)) < 0.3
        success = np.where(rng.random(6) < 0.5, np.nan, 1.0)
        given = [reward, flags[0], None if step == 1 else flags[1], success]
        host.record_step(*given)
        dev.record_step(*(None if x is None else torch.as_tensor(x) for x in given))
        if step in (2, 4):
            ids = np.array([0, 2, 5])
            out["host"].append(host.record_pre_reset(ids))
            out["dev"].append(dev.record_pre_reset(ids))
            host.restart(ids)
            dev.restart(ids)
    # The device's rows reach their host buffers in one copy, started at the hand-over.
    dev.copy_out()
    for a, b in zip(out["host"], out["dev"], strict=True):
        b = episode_chunk._split(b)  # one block of the host rows: its columns
        for key in ("return", "success", "terminated", "truncated"):
            assert np.array_equal(a[key], np.asarray(b[key]), equal_nan=True), key
    assert out["host"][1]["terminated"].dtype == np.bool_
    # on a device one float64 tensor, a row per env: return, success, the flags as 0/1
    assert np.array_equal(host.acc, dev.acc[:, :2].numpy().T, equal_nan=True)
    assert np.array_equal(host.flags, dev.flags.numpy().T != 0) and dev.flags.numpy().any()


def test_device_outcome_rows_leave_in_one_copy_per_hand_over_into_fresh_buffers():
    """Gathered rows wait on the device; copy_out sends them to the buffer their views
    point into and starts a new buffer (the writer may still read the last); a gather
    that would overflow the ring copies out first; one larger than the ring at once."""
    torch = pytest.importorskip("torch")
    from varirec.recording.device_outcomes import DeviceOutcomes
    from varirec.recording.episode_chunk import _split

    dev = DeviceOutcomes(4, torch.device("cpu"), in_torch=True)
    dev._cap = 3  # a small ring (made for 256 rows): its edges
    dev._ring = dev._ring[:3]
    dev._new_host_rows()
    dev.record_step(torch.tensor([1.0, 2.0, 3.0, 4.0]), None, None, None)
    first = _split(dev.record_pre_reset(np.array([0, 1])))
    second = _split(dev.record_pre_reset(np.array([2, 3])))  # overflows: first two copied out
    assert first["return"].tolist() == [1.0, 2.0] and dev._used == 2
    big = _split(dev.record_pre_reset(np.array([3, 2, 1, 0])))  # larger than the ring: at once
    assert big["return"].tolist() == [4.0, 3.0, 2.0, 1.0]
    dev.restart(np.array([0]))
    dev.copy_out()
    assert second["return"].tolist() == [3.0, 4.0] and dev._used == 0
    assert first["return"].base is not second["return"].base  # separate buffers
    restarted = _split(dev.record_pre_reset(np.array([0])))
    dev.copy_out()
    assert restarted["return"].tolist() == [0.0] and np.isnan(restarted["success"]).all()


def test_batch_and_solo_draws_interleaved_count_draw_seq_exactly():
    """Batched first draws are noted, not written; every later read of a counter
    (a solo draw, a second batch in the episode, a changed batch) sees them."""
    vs = _set(SCALAR)
    seen: dict[str, list] = {k: [] for k in vs}
    for v in vs.values():
        v.add_sample_listener(lambda e, k=v.key: seen[k].append(e))
    d = vr.NullRecorderManager(6, variations=vs, seed=1)
    calls = [
        (lambda: d.reset(None, np.arange(6)), None, {k: [0] * 6 for k in vs}),
        (lambda: vs["v1"].draw(None, [2, 3]), None, {"v1": [1, 1]}),
        (lambda: d.draw_reset(None, [3, 4]), None,
         {"v0": [1, 1], "v1": [2, 1], "v2": [1, 1], "v3": [1, 1]}),
        (lambda: d.draw_reset(None, [4, 5]), "v2",
         {"v0": [2, 1], "v1": [2, 1], "v3": [2, 1]}),
        (lambda: d.reset(None, [4]), None, {k: [0] for k in vs}),
        (lambda: vs["v2"].draw(None, [4]), None, {"v2": [1]}),
        (lambda: d.draw_reset(None, [4, 0]), None,
         {"v0": [1, 1], "v1": [1, 1], "v2": [2, 1], "v3": [1, 1]}),
    ]  # fmt: skip
    for call, disabled, expect in calls:
        if disabled:
            vs[disabled].disable()
        before = {k: len(x) for k, x in seen.items()}
        call()
        if disabled:
            vs[disabled].enable()
        assert {k for k in seen if len(seen[k]) > before[k]} == set(expect)
        for key, draw_seq in expect.items():
            e = seen[key][-1]
            ds = np.broadcast_to(np.asarray(e.context.draw_seq), len(e.env_ids))
            assert ds.tolist() == draw_seq, (key, ds)
            cfg = vs[key].cfg.sampler
            stream = CounterStream(1, key)
            truth = cfg.ppf(stream.uniforms(e.env_ids, e.context.episodes, 1, ds))
            assert np.array_equal(e.values, truth), key


def test_an_interrupt_in_copy_out_leaves_the_rows_to_copy_again():
    """A Ctrl-C inside copy_out (after the copy was started, before the next buffer is
    in place) loses nothing: the close's copy_out sends the rows again, to the same
    buffer that the returned views read."""
    torch = pytest.importorskip("torch")
    from varirec.recording.device_outcomes import DeviceOutcomes
    from varirec.recording.episode_chunk import _split

    dev = DeviceOutcomes(3, torch.device("cpu"), in_torch=True)
    dev.record_step(torch.tensor([7.0, 8.0, 9.0]), None, None, None)
    rows = _split(dev.record_pre_reset(np.array([2, 0])))
    new_buffer = dev._new_host_rows

    def interrupted():
        dev._new_host_rows = new_buffer
        raise KeyboardInterrupt

    dev._new_host_rows = interrupted
    with pytest.raises(KeyboardInterrupt):
        dev.copy_out()
    dev._out[:] = -1.0  # what a later copy into this buffer would find: overwritten again
    dev.copy_out()
    assert rows["return"].tolist() == [9.0, 7.0] and dev._used == 0
