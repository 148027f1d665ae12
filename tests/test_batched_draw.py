"""One batched draw per reset: bit-identical to each variation drawing alone, in numpy and
in torch (CPU here; CUDA where present), for every distribution kind."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

import varirec as vr
from varirec.recording.recorder import VariationRecorder
from varirec.sampling import portable
from varirec.sampling.batch_draw import ColumnPlan
from varirec.sampling.streams import CounterStream

torch = pytest.importorskip("torch")

CFGS = {
    "uniform": vr.UniformCfg(low=1, high=2),
    "uniform_vec": vr.UniformCfg(low=(0, -1, 2), high=(1, 1, 5)),
    "loguniform": vr.LogUniformCfg(low=(0.1, 1), high=(10, 5)),
    "normal": vr.NormalCfg(mean=1, std=2),
    "truncnormal_lower": vr.TruncNormalCfg(mean=0, std=1, low=0.5, high=3),
    "truncnormal_vec": vr.TruncNormalCfg(mean=(0, 1), std=1, low=-3, high=(-0.5, 2)),
    "integer": vr.IntegerCfg(low=-2, high=5),
    "choice_text": vr.ChoiceCfg(choices=("a", "bb", "c"), weights=(0.2, 0.5, 0.3)),
    "choice_num": vr.ChoiceCfg(choices=(1.5, 2.5)),
    "bernoulli": vr.BernoulliCfg(p=0.3),
    "constant": vr.ConstantCfg(value=(1.0, -0.0)),
}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _bits(a) -> np.ndarray:
    a = np.ascontiguousarray(a.cpu().numpy() if hasattr(a, "cpu") else a)
    return a.view(np.int64) if a.dtype.kind == "f" else a


def _keys(k: int = 300, seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 65_536, k), rng.integers(0, 2**33, k), rng


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("repeat", [False, True], ids=["first_draw", "draw_seq"])
def test_every_kind_batched_equals_its_own_counter_stream_draw_bit_for_bit(device, repeat):
    ids, eps, rng = _keys()
    cfgs = list(CFGS.values())
    streams = [CounterStream(7, key) for key in CFGS]
    draw_seq = [rng.integers(0, 3, len(ids)) if repeat else 0 for _ in cfgs]
    plan = ColumnPlan(cfgs, [s.base for s in streams])
    batched = plan.draw(ids, eps, draw_seq, np)
    on_device = plan.draw(
        torch.as_tensor(ids, device=device), torch.as_tensor(eps, device=device),
        draw_seq, torch, device=device,
    )  # fmt: skip
    for key, cfg, stream, ds, b, d in zip(
        CFGS, cfgs, streams, draw_seq, batched, on_device, strict=True
    ):
        alone = cfg.ppf(stream.uniforms(ids, eps, cfg.width, ds))  # the per-variation path
        assert b.dtype == alone.dtype and b.shape == alone.shape, key
        assert np.array_equal(_bits(b), _bits(alone)), key
        assert np.array_equal(_bits(d), _bits(alone)), f"{key} on {device}"


def test_design_rows_are_replayed_by_sample_id_and_refused_past_the_design():
    design = vr.DesignCfg(
        values=np.array([[1.0, 2.0], [3.0, 4.0]]), base=vr.UniformCfg(low=(0, 0), high=(5, 5))
    )
    plan = ColumnPlan([design, CFGS["uniform"]], [np.uint64(1), np.uint64(2)])
    ids = np.array([0, 1, 2])
    values = plan.draw(ids, ids, [0, 0], np, sample_ids=np.array([1, 0, -1]))
    assert values[0].tolist() == [[3.0, 4.0], [1.0, 2.0], [1.0, 2.0]]  # -1 replays row 0
    with pytest.raises(ValueError, match=r"design rows in \[0, 2\), got \[5\]"):
        plan.draw(ids, ids, [0, 0], np, sample_ids=np.array([5, 0, 0]))
    for device in DEVICES:  # on the env's device: the same rows, as tensors there
        t = torch.as_tensor(ids, device=device)
        on = plan.draw(t, t, [0, 0], torch, sample_ids=np.array([1, 0, -1]), device=device)
        assert on[0].device.type == device and on[0].tolist() == values[0].tolist()
        assert np.array_equal(_bits(on[1]), _bits(values[1]))


def test_portable_functions_match_the_libraries_and_agree_across_backends():
    rng = np.random.default_rng(0)
    u = np.concatenate([rng.random(50_000) + 2.0**-54, [2.0**-54, 1 - 2.0**-53, 0.5, 0.975]])
    x = rng.uniform(-30, 30, 50_000)
    y = rng.uniform(1e-6, 1e6, 50_000)

    def ulps(a, b):
        return int(np.abs(a.view(np.int64) - b.view(np.int64)).max())

    assert ulps(portable.exp(x, np), np.exp(x)) <= 1
    assert ulps(portable.log(y, np), np.log(y)) <= 1
    assert np.array_equal(portable.sqrt(y, np), np.sqrt(y))  # rounded to nearest
    ref = special.ndtri(u)
    assert np.max(np.abs(portable.ndtri(u, np) - ref) / np.maximum(np.abs(ref), 1e-300)) < 2e-15
    for f, arg in ((portable.exp, x), (portable.log, y), (portable.sqrt, y), (portable.ndtri, u)):
        assert np.array_equal(_bits(f(arg, np)), _bits(f(torch.from_numpy(arg), torch)))


def _variations(n: int = 20) -> list[vr.Variation]:
    kinds = list(CFGS.values())
    return [vr.Variation(f"v{i}", vr.VariationCfg(sampler=kinds[i % len(kinds)])) for i in range(n)]


def test_driver_reset_draws_what_each_variation_drew_alone_before():
    batched, alone = _variations(), _variations()
    seen: dict[str, list] = {v.key: [] for v in batched}
    for v in batched:  # a user's listener still sees each variation's draw
        v.add_sample_listener(lambda e, key=v.key: seen[key].append(e.values.copy()))
    driver = vr.NullRecorderManager(64, variations=batched, seed=3)
    tracker = vr.EpisodeTracker(64)
    for v in alone:
        v.bind(tracker)
        v.seed(3)
    rng = np.random.default_rng(0)
    for step in range(6):
        ids = np.arange(64) if step == 0 else np.flatnonzero(rng.random(64) < 0.3)
        driver.reset(None, ids)
        if step:
            tracker.finish(ids)
            tracker.begin(ids)
        for again in range(1 + (step == 3)):  # step 3 draws twice in one episode
            if again:
                driver.draw_reset(None, ids)  # draw_seq 1: counted per variation
            for v in alone:
                expect = v.draw(None, ids)
                got = seen[v.key][-1]
                assert np.array_equal(_bits(got), _bits(expect)), (v.key, step, again)
        tracker.start(ids)
    assert driver.tracker.seq > 0 and all(len(x) == 7 for x in seen.values())


def test_the_recorder_takes_one_event_per_reset_batch(tmp_path, monkeypatch):
    calls = []
    real = VariationRecorder.record_batch
    monkeypatch.setattr(
        VariationRecorder, "record_batch", lambda self, b: (calls.append(len(b)), real(self, b))
    )
    taps = []
    monkeypatch.setattr(
        "varirec.recording.recorder._Tap.__call__", lambda self, event: taps.append(self.key)
    )
    variations = _variations()
    with vr.RecorderManager(8, variations=variations, output=tmp_path, run_id="r", seed=0) as m:
        m.reset(None, np.arange(8))
        m.record_step(reward=np.ones(8))
        m.reset(None, np.array([2, 5]))
    assert calls == [20, 20] and taps == []  # no per-variation event reached the recorder
    draws = vr.open_dataset(tmp_path).draws().to_pandas()
    assert len(draws[draws.env_id == 5]) == 2 * sum(v.cfg.sampler.width for v in variations)
    # the recorded values are the draws: replayable from the counter stream
    mass = draws[(draws.variation == "v0") & (draws.env_id == 5)].sort_values("episode")
    expect = CFGS["uniform"].ppf(
        CounterStream(0, "v0").uniforms(np.array([5, 5]), np.array([0, 1]))
    )
    assert mass.value.tolist() == expect.tolist()
