"""torch tensors through every entry point (CPU here; the same code runs on CUDA):
env ids and masks, record_step arrays, values handed to apply; and the errors for
tensors varirec cannot take."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from same_tables import assert_same_tables

import varirec as vr
from varirec.arrays import is_tensor

torch = pytest.importorskip("torch")


def _variations(applied: list) -> list[vr.Variation]:
    def keep(env, ids, values):
        applied.append((ids, values))

    return [
        vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)), keep),
        vr.Variation("color", vr.VariationCfg(sampler=vr.IntegerCfg(low=0, high=3)), keep),
    ]


def test_tensor_ids_and_masks_reset_and_apply_gets_float32_tensors_on_the_device():
    applied: list = []
    m = vr.NullRecorderManager(4, variations=_variations(applied), seed=0)
    m.reset(None, torch.arange(4))
    ids, mass = applied[0]
    assert isinstance(mass, torch.Tensor) and mass.dtype == torch.float32
    assert mass.device.type == "cpu" and ids.tolist() == [0, 1, 2, 3]
    assert applied[1][1].dtype == torch.int64  # integers stay integers
    # the float32 values are the float64 draws, rounded once
    expect = vr.UniformCfg(low=1, high=2).ppf(
        vr.CounterStream(0, "mass").uniforms(np.arange(4), np.zeros(4, np.int64))
    )
    assert np.array_equal(mass.numpy(), expect.astype(np.float32))
    applied.clear()
    m.reset(None, torch.tensor([False, True, False, True]))
    assert applied[0][0].tolist() == [1, 3] and m.tracker.episode.tolist() == [0, 1, 0, 1]


def test_apply_dtype_is_configurable():
    applied: list = []
    m = vr.NullRecorderManager(2, variations=_variations(applied), dtype=torch.float64)
    m.reset(None, torch.arange(2))
    assert applied[0][1].dtype == torch.float64


def test_record_step_with_tensors_accumulates_on_the_device_and_records_the_same(tmp_path):
    def run(arrays, out):
        m = vr.RecorderManager(3, output=tmp_path / out, run_id="r", seed=0, step_keys=("reward",))
        m.reset(None, arrays(np.arange(3)))
        for step in range(4):
            reward = np.array([1.0, 0.5, 2.0]) * (step + 1)
            done = np.array([step == 1, False, step == 3])
            m.record_step(
                reward=arrays(reward.astype(np.float32)),
                terminated=arrays(done),
                success=arrays(np.array([1.0, np.nan, 0.0])),
            )
            if done.any():
                m.reset(None, arrays(np.flatnonzero(done)))
        m.close()
        return vr.open_dataset(tmp_path / out)

    with_tensors = run(torch.as_tensor, "torch")
    with_numpy = run(np.asarray, "numpy")
    cols = ["env_id", "episode", "length", "return", "success", "terminated"]
    a = with_tensors.episodes().to_pandas()[cols].sort_values(cols[:2]).reset_index(drop=True)
    b = with_numpy.episodes().to_pandas()[cols].sort_values(cols[:2]).reset_index(drop=True)
    assert a.equals(b) and a["return"].tolist() == [3.0, 20.0]  # env 0: 1 + 2; env 2: 2 + 4 + 6 + 8
    steps = with_tensors.steps().to_pandas().sort_values(["env_id", "step"])
    assert steps.equals(with_numpy.steps().to_pandas().sort_values(["env_id", "step"]))
    assert len(steps) == 12


class Capsule:  # a producer that speaks only DLPack (as JAX and CuPy arrays do)
    def __init__(self, a):
        self._a = a

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def test_dlpack_arrays_are_accepted_as_env_ids_and_step_arrays(tmp_path):
    m = vr.RecorderManager(4, output=tmp_path, run_id="r", seed=0)
    m.reset(None, Capsule(np.array([1, 2])))
    assert m.tracker.started.tolist() == [False, True, True, False]
    m.record_step(reward=Capsule(np.array([0.0, 1.5, 2.5, 0.0])))
    m.reset(None, Capsule(np.array([2])))
    m.close()
    assert vr.open_dataset(tmp_path).episodes().to_pandas()["return"].tolist() == [2.5]


def test_interval_draws_reach_a_torch_env_as_tensors():
    applied: list = []
    gust = vr.Variation(
        "gust",
        vr.VariationCfg(sampler=vr.NormalCfg(), mode="interval", interval_steps=(1, 1)),
        lambda env, ids, values: applied.append((ids, values)),
    )
    m = vr.NullRecorderManager(3, variations=[gust], seed=0)
    m.reset(None, torch.arange(3))
    m.record_step()
    m.draw_interval(None)
    ids, values = applied[0]
    assert ids.tolist() == [0, 1, 2] and values.dtype == torch.float32


@pytest.mark.parametrize("continuous", [False, True])
def test_bad_tensors_get_errors_that_name_the_tensor_the_device_and_the_fix(continuous):
    # A continuous variation takes the compiled reset, which reads an int64 id tensor
    # in place and leaves the range to its kernels: the same errors, nothing moved.
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    m = vr.RecorderManager(4, seed=0, device="cpu", variations=[mass] if continuous else None)
    m.reset(None, torch.arange(4))
    for bad in ([1, 4], [-1], [2, 9, 0]):
        with pytest.raises(ValueError, match=r"`env_ids` must be in \[0, 4\)"):
            m.reset(None, torch.tensor(bad))
    with pytest.raises(
        TypeError, match=r"`env_ids` must be integer ids .* float tensor .*\.long\(\)"
    ):
        m.reset(None, torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match=r"float tensor .*\.long\(\)"):  # .long() mends both
        m.reset(None, torch.tensor([0.0, 1.0], requires_grad=True))
    with pytest.raises(ValueError, match=r"got env 1 2 times .*env_ids\.unique\(\)"):
        m.reset(None, torch.tensor([1, 3, 1]))
    with pytest.raises(TypeError, match=r"`reset_fn` must be callable .* got int 3"):
        m.reset(None, torch.tensor([1]), reset_fn=3)
    with pytest.raises(ValueError, match=r"mask `env_ids` must have shape \(4,\), got \(3,\)"):
        m.reset(None, torch.tensor([True, False, True]))
    with pytest.raises(ValueError, match=r"`reward` is a tensor that requires grad.*\.detach\(\)"):
        m.record_step(reward=torch.ones(4, requires_grad=True))
    with pytest.raises(
        ValueError,
        match=r"`env_ids` is on device meta but the env's arrays are on cpu; "
        r"pass env_ids.to\('cpu'\)",
    ):
        m.reset(None, torch.arange(4, device="meta"))
    with pytest.raises(ValueError, match=r"`reward` must have shape \(4,\).*tensor on cpu"):
        m.record_step(reward=torch.ones(2, 2))
    assert m.tracker.episode.tolist() == [0, 0, 0, 0]  # refused before anything moved
    m.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dtype": "float32"}, TypeError, r"`dtype` must be a torch dtype, got 'float32' \(str\)"),
        ({"dtype": np.float32}, TypeError, r"`dtype` must be a torch dtype.*torch\.float32"),
        ({"dtype": torch.int64}, ValueError, r"floating dtype, got torch\.int64.*1\.35 -> 1"),
        ({"device": "tpu:0"}, ValueError, r"`device` must name a torch device, got 'tpu:0'"),
        ({"device": 3.5}, ValueError, r"`device` must name a torch device.*device='cuda:0'"),
        (
            {"device": f"cuda:{torch.cuda.device_count()}"},  # one past the last, or no CUDA
            ValueError,
            r"names a CUDA device, but this torch \(.*\) sees .*; pass the device",
        ),
    ],
)
def test_a_bad_dtype_or_device_is_refused_before_the_run_exists(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        vr.RecorderManager(4, output=tmp_path / "d", **kwargs)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("device", ["cpu", None], ids=["torch-env", "numpy-env"])
def test_a_bfloat16_reward_is_recorded_as_its_values(tmp_path, device):
    """numpy has no bfloat16: the values arrive as float32, which holds each exactly."""
    m = vr.RecorderManager(2, device=device, output=tmp_path, run_id="r")
    m.reset(None, None)
    for _ in range(2):
        m.record_step(reward=torch.tensor([1.5, 2.25], dtype=torch.bfloat16))
    m.reset(None, None)
    m.close()
    assert vr.open_dataset(tmp_path).episodes("r").to_pandas()["return"].tolist() == [3.0, 4.5]


def test_idle_envs_accumulate_nothing_from_tensors(tmp_path):
    def run(arrays, out):
        m = vr.RecorderManager(3, output=tmp_path / out, run_id="r", seed=0)
        m.reset(None, arrays(np.array([0, 1])))  # env 2 never starts: it is idle
        for _ in range(2):
            m.record_step(
                reward=arrays(np.array([1.0, 2.0, np.nan])),
                truncated=arrays(np.array([False, False, True])),
                success=arrays(np.array([1.0, 0.0, 1.0])),
            )
        m.reset(None, arrays(np.array([0, 1, 2])))
        m.close()
        return vr.open_dataset(tmp_path / out).episodes().to_pandas().sort_values("env_id")

    with_tensors, with_numpy = run(torch.as_tensor, "torch"), run(np.asarray, "numpy")
    cols = ["env_id", "return", "success", "truncated"]
    assert with_tensors[cols].reset_index(drop=True).equals(with_numpy[cols].reset_index(drop=True))
    assert with_tensors["return"].tolist() == [2.0, 4.0]
    assert with_tensors["truncated"].tolist() == [False, False]


def test_draws_of_a_torch_env_are_recorded_as_the_numpy_env_records_them(tmp_path):
    """Float draws leave the device through the non-blocking path (host buffers read on the
    writer thread); categorical ones through label codes: both equal the numpy run's."""

    def run(arrays, out):
        variations = _variations([])
        variations.append(
            vr.Variation("com", vr.VariationCfg(sampler=vr.NormalCfg(mean=(0, 1), std=1)))
        )
        with vr.RecorderManager(4, variations=variations, output=tmp_path / out, run_id="r") as m:
            m.reset(None, arrays(np.arange(4)))
            for _ in range(3):
                m.record_step(reward=arrays(np.ones(4)))
                m.reset(None, arrays(np.array([1, 3])))
        draws = vr.open_dataset(tmp_path / out).draws().to_pandas()
        return draws.drop(columns=["time"]).sort_values(["seq", "env_id", "component"])

    with_tensors, with_numpy = run(torch.as_tensor, "torch"), run(np.asarray, "numpy")
    assert len(with_tensors) == 4 * 4 + 3 * 2 * 4
    assert with_tensors.reset_index(drop=True).equals(with_numpy.reset_index(drop=True))


def test_device_async_sends_host_arrays_as_tensors_on_the_device():
    """Keys and ids go to the env's device through ``device_async``: with no device the
    array itself, on the CPU a tensor over the same memory, elsewhere a tensor of the
    same shape and dtype on that device (pinned and not waited for where CUDA is)."""
    from varirec.arrays import ArrayWorld, device_async, is_tensor

    x = np.arange(6, dtype=np.int64).reshape(2, 3)
    assert device_async(x, None) is x
    on_cpu = device_async(x, torch.device("cpu"))
    assert on_cpu.dtype == torch.int64 and on_cpu.tolist() == x.tolist()
    assert on_cpu.data_ptr() == x.ctypes.data  # shared, not copied
    elsewhere = device_async(x[:, ::2], torch.device("meta"))  # strided: laid out anew
    assert elsewhere.device.type == "meta" and elsewhere.shape == (2, 2)
    assert elsewhere.dtype == torch.int64
    ids = ArrayWorld("cpu").env_ids(np.array([2, 0]))  # the ids apply gets, the same way
    assert is_tensor(ids) and ids.dtype == torch.int64 and ids.tolist() == [2, 0]


@pytest.mark.parametrize("mode", ["device_draw", "host_draw", "compiled", "prefetched"])
def test_the_device_branches_run_on_cpu_torch_record_what_numpy_records(
    tmp_path, monkeypatch, gpu, mode
):
    """The GPU code forced to run on CPU torch: the episodes and draws tables equal a
    numpy run's. Outcomes accumulate with torch ops; step rows are gathered on the
    device; the draws are made, per ``mode``: with torch on the device (a large reset),
    on the host and sent in one copy (a GPU env's usual reset), by the compiled reset
    on the host (every variation continuous), or taken from the prefetch table on the
    device, the bookkeeping done at the next step (an id tensor's reset)."""
    from varirec import arrays
    from varirec.recording import prefetched_reset
    from varirec.recording.compiled_reset import CompiledReset
    from varirec.sampling.accel import compiled_draws, kernels
    from varirec.sampling.batch_draw import ColumnPlan
    from varirec.variations import batch

    if mode in ("compiled", "prefetched") and kernels() is None:
        pytest.skip("the compiled reset needs numba (the fast extra)")

    def variations():
        vs = [
            vr.Variation("a", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2))),
            vr.Variation("b", vr.VariationCfg(sampler=vr.NormalCfg(mean=(0, 0), std=(1, 2)))),
            vr.Variation("g", vr.VariationCfg(sampler=vr.LogUniformCfg(low=0.1, high=10))),
        ]
        if mode in ("compiled", "prefetched"):
            return vs
        return [
            *vs,
            vr.Variation("c", vr.VariationCfg(sampler=vr.ChoiceCfg(choices=("x", "y")))),
            vr.Variation("d", vr.VariationCfg(sampler=vr.IntegerCfg(low=0, high=5))),
            vr.Variation("e", vr.VariationCfg(sampler=vr.ChoiceCfg(choices=(0.5, 1.5, 4.0)))),
            vr.Variation("f", vr.VariationCfg(sampler=vr.BernoulliCfg(p=0.3))),
        ]

    applied: dict[str, list] = {}
    masks: list[bool] = []

    def run(arrays, name):
        n, rng = 8, np.random.default_rng(0)
        device = "cpu" if arrays is torch.as_tensor else None
        vs = variations()
        for v in vs:
            v.apply = lambda env, ids, x, k=(name, v.key): applied.setdefault(k, []).append(x)
        m = vr.RecorderManager(n, variations=vs, output=tmp_path / name, seed=1,
                               run_id="r", device=device, step_keys=("reward",))  # fmt: skip
        m.reset(None, arrays(np.arange(n)))
        for _ in range(40):
            done = rng.random(n) < 0.2
            m.record_step(reward=arrays(rng.random(n)), terminated=arrays(done),
                          success=arrays(done))  # fmt: skip
            if done.any():  # ids, or a mask every other time
                mask = rng.random() < 0.5
                masks.append(mask)
                m.reset(None, arrays(done if mask else np.flatnonzero(done)))
        m.close()
        ds = vr.open_dataset(tmp_path / name)
        return ds.episodes().to_pandas(), ds.draws().to_pandas(), ds.steps().to_pandas()

    numpy_run = run(np.asarray, "numpy")
    taken: list[str] = []  # what drew: "numpy" or "torch" (ColumnPlan), "compiled"
    sent: list[str] = []  # the functions that sent host arrays to the "device"
    draw_columns, call = ColumnPlan.draw_columns, CompiledReset.__call__
    device_async = arrays.device_async
    prefetched = gpu  # the resets taken from the prefetch table (the fixture counts them)

    def spy_draw(self, ids, eps, ds, xp, device=None):
        taken.append(xp.__name__)
        return draw_columns(self, ids, eps, ds, xp, device)

    def spy_call(self, env, env_ids):
        done = call(self, env, env_ids)
        taken.extend(["compiled"] if done else [])
        return done

    def spy_send(x, device, dtype=None):
        sent.append(sys._getframe(1).f_code.co_name)
        return device_async(x, device, dtype)

    monkeypatch.setattr(arrays, "device_async", spy_send)
    monkeypatch.setattr(batch, "device_async", spy_send)
    monkeypatch.setattr(ColumnPlan, "draw_columns", spy_draw)
    monkeypatch.setattr(CompiledReset, "__call__", spy_call)
    monkeypatch.setattr(prefetched_reset, "device_async", spy_send)
    monkeypatch.setattr(prefetched_reset, "PREFETCH", mode == "prefetched")
    if mode == "device_draw":
        monkeypatch.setattr(batch, "HOST_DRAW_MAX", 0)
    masks.clear()  # the device run's
    with compiled_draws(mode in ("compiled", "prefetched")):
        device_run = run(torch.as_tensor, "device")
    if mode == "prefetched":  # id tensors after an id reset; masks and the first: compiled
        assert prefetched[0] > 8 and taken.count("compiled") > 8, (prefetched, taken)
        # The tables: built after a compiled reset of ids (not after a mask's), refilled
        # (the values, at the reset's device ids) for the envs of each prefetched reset,
        # which sends nothing.
        assert 0 < sent.count("build") < taken.count("compiled"), sent
        assert sent.count("_sent") == prefetched[0], sent  # the refills
        assert sent.count("values") + sent.count("send") == taken.count("compiled"), sent
    else:
        want = {"device_draw": {"torch"}, "host_draw": {"numpy"}, "compiled": {"compiled"}}
        assert set(taken) == want[mode] and len(taken) > 20, taken
    if mode in (
        "host_draw",
        "compiled",
    ):  # every float in one copy per reset (and the first reset);
        # with coded kinds too, one copy per variation (text stays on the host)
        per_reset = 1 if mode == "compiled" else 6
        copies = sent.count("values") + sent.count("send")
        assert copies == per_reset * (len(masks) + 1), sent
    # Ids go to the device only where the env handed a mask: an id tensor is used as it
    # is, by apply and by the outcome term (its pre-reset and restart).
    assert 0 < sent.count("on_device") <= sum(masks) + prefetched[0], sent
    assert isinstance(device_run[0], pd.DataFrame)
    assert_same_tables(numpy_run, device_run, min_rows=30)
    for (name, key), got in applied.items():  # apply took the numpy run's values
        if name == "device":
            host = applied["numpy", key]
            assert len(got) == len(host) > 5, key
            for x, y in zip(got, host, strict=True):
                if is_tensor(x) and x.ndim == 2:  # a vector variation's block: .view() works
                    assert x.is_contiguous(), key
                x = np.asarray(x.numpy() if is_tensor(x) else x)
                y = y.astype(np.float32) if y.dtype.kind == "f" else y
                assert np.array_equal(x, y.astype(x.dtype)), key


def _alone(key: str, apply) -> vr.Variation:
    """A variation of a sampler of one's own (a subclass): drawn alone, after the batch."""
    from varirec.sampling.samplers import InverseCdfSampler

    class Own(InverseCdfSampler):
        pass

    class OwnCfg(vr.UniformCfg):
        kind = "own_of_test_torch_arrays"

        def build(self, seed=None):
            return Own(self, seed=seed)

    return vr.Variation(key, vr.VariationCfg(sampler=OwnCfg(low=0, high=1)), apply=apply)


def test_a_variation_drawn_alone_is_applied_with_tensors_on_a_torch_env():
    """A variation of a sampler of one's own is drawn alone, after the batch: its
    ``apply`` gets the env's id tensor and float32 values, as the batch's do."""
    from varirec.arrays import is_tensor

    got = []
    alone = _alone("jitter", lambda env, ids, x: got.append((ids, x)))
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    m = vr.NullRecorderManager(4, variations=[mass, alone], seed=0, device="cpu")
    m.reset(None, torch.tensor([3, 1]))
    ((ids, x),) = got
    assert is_tensor(ids) and ids.dtype == torch.int64 and ids.tolist() == [3, 1]
    assert is_tensor(x) and x.dtype == torch.float32 and x.shape == (2,)


@pytest.mark.parametrize("device", [None, "cpu"])
def test_a_variation_drawn_alone_and_disabled_during_the_reset_is_not_applied(device):
    """``apply_batch`` disables the alone variation during a reset: its draw gives
    nothing and its ``apply`` is not called (the reset goes on)."""
    got = []
    alone = _alone("own", lambda env, ids, x: got.append(x))
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    vs = vr.VariationSet([mass, alone])
    vs.apply_batch = lambda env, ids, batch: alone.disable()
    m = vr.NullRecorderManager(4, variations=vs, seed=0, device=device)
    ids = np.array([3, 1])
    m.reset(None, torch.as_tensor(ids) if device else ids)
    assert got == [] and not alone.enabled


def test_a_short_step_tensor_is_refused_on_the_host_not_gathered_on_the_device(
    tmp_path, monkeypatch
):
    """A ``step_keys`` tensor without a row per env never reaches the device gather
    (out of range there, it would break a CUDA context for good): the host path names
    it, before the step is counted."""
    from varirec import arrays

    monkeypatch.setattr(arrays, "off_host", lambda dev: dev is not None)
    m = vr.RecorderManager(4, output=tmp_path, run_id="r", seed=0, step_keys=("obs",),
                           device="cpu")  # fmt: skip
    m.reset(None, torch.arange(4))
    with pytest.raises(ValueError, match=r"`obs` \(a steps column\) must have a row per env"):
        m.record_step(reward=torch.ones(4), obs=torch.ones(1))
    m.record_step(reward=torch.ones(4), obs=torch.arange(4.0))
    m.close()
    steps = vr.open_dataset(tmp_path).steps()
    assert steps.column("obs").to_pylist() == [0.0, 1.0, 2.0, 3.0]
    assert set(steps.column("step").to_pylist()) == {0}  # the refused call took no step


def test_on_device_gives_back_the_env_s_own_id_tensor_until_it_changes(monkeypatch):
    """On a GPU the ids a reset took are the env's own int64 tensor: the outcome term
    gathers with it instead of sending the ids again; a tensor changed in place since,
    a mask, or other ids are sent (ids sent are kept, and sent once)."""
    from varirec import arrays

    monkeypatch.setattr(arrays, "off_host", lambda dev: dev is not None)
    world = arrays.ArrayWorld("cpu")
    given = torch.tensor([3, 1])
    host = world.ids(given, num_envs=4)
    assert world.on_device(host) is given and world.env_ids(host.copy()) is given
    other = world.on_device(np.array([0, 2]))
    assert other is not given and other.tolist() == [0, 2]
    assert world.on_device(np.array([0, 2])) is other  # sent once
    world.ids(given, num_envs=4)
    given.add_(0)  # changed in place (its version moved): not trusted any more
    again = world.on_device(np.array([3, 1]))
    assert again is not given and again.tolist() == [3, 1]
    world.ids(torch.tensor([True, False, False, True]), num_envs=4)  # a mask: not kept
    assert world.on_device(np.array([0, 3])).tolist() == [0, 3]


def test_an_inference_tensor_is_reused_only_within_the_call_that_handed_it_in(monkeypatch):
    """torch keeps no version of an inference tensor (rsl_rl's rollouts run in
    ``torch.inference_mode``): the env's ids are reused by the reset they came with,
    not by a later call, which sends them."""
    from varirec import arrays

    monkeypatch.setattr(arrays, "off_host", lambda dev: dev is not None)
    world = arrays.ArrayWorld("cpu")
    with torch.inference_mode():
        given = torch.tensor([3, 1])
        host = world.ids(given, num_envs=4)
        assert world.on_device(host) is given  # the outcome term, within the reset
        handed = world.env_ids(host)  # to an apply of a later draw: sent, not reused
        assert handed is not given and handed.tolist() == [3, 1]
        world.ids(torch.tensor([True, False, False, False]), num_envs=4)  # the next call
        assert world.on_device(np.array([3, 1])) is not handed


def test_a_gpu_env_records_the_same_inside_inference_mode(tmp_path, gpu):
    """The GPU code (forced on CPU torch) with every tensor made in inference mode, as
    in an rsl_rl rollout: the same episodes and draws as outside it."""

    def run(name):
        n, rng = 6, np.random.default_rng(5)
        vs = _variations([])
        m = vr.RecorderManager(n, variations=vs, output=tmp_path / name, seed=2, run_id="r",
                               device="cpu")  # fmt: skip
        m.reset(None, torch.arange(n))
        for _ in range(30):
            done = rng.random(n) < 0.3
            m.record_step(reward=torch.as_tensor(rng.random(n)),
                          terminated=torch.as_tensor(done))  # fmt: skip
            if done.any():
                m.reset(None, torch.as_tensor(np.flatnonzero(done)))
        m.close()
        ds = vr.open_dataset(tmp_path / name)
        return [t.to_pandas().drop(columns=[c for c in t.column_names if c.startswith("time")])
                for t in (ds.episodes(), ds.draws())]  # fmt: skip

    outside = run("outside")
    with torch.inference_mode():
        inside = run("inside")
    for a, b in zip(outside, inside, strict=True):
        assert len(a) > 10
        pd.testing.assert_frame_equal(a, b)


def test_a_large_gpu_reset_copies_its_ids_to_the_host_once(monkeypatch):
    """A reset too large to draw on the host leaves the compiled reset before the ids'
    copy to the host (each copy waits for the device): the general path makes the one
    copy. (Not prefetched: that reset copies its ids at the next step.)"""
    from varirec import arrays
    from varirec.recording import prefetched_reset
    from varirec.sampling.accel import kernels
    from varirec.variations import batch

    if kernels() is None:
        pytest.skip("the compiled reset needs numba (the fast extra)")
    monkeypatch.setattr(prefetched_reset, "PREFETCH", False)
    copies = []
    to_host = arrays.to_host
    monkeypatch.setattr(arrays, "off_host", lambda dev: dev is not None)
    monkeypatch.setattr(
        arrays, "to_host", lambda x, name="array": copies.append(name) or to_host(x, name)
    )
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    m = vr.NullRecorderManager(8, variations=[mass], seed=0, device="cpu")
    monkeypatch.setattr(batch, "HOST_DRAW_MAX", 4)  # 8 envs x 1 column: too many
    m.reset(None, torch.arange(8))
    assert copies == ["env_ids"]
    copies.clear()
    m.reset(None, torch.arange(4))  # small enough: the compiled reset, one copy too
    assert copies == ["env_ids"] and m.tracker.episode.tolist() == [1] * 4 + [0] * 4


def _steps_manager(root, n: int = 4) -> vr.RecorderManager:
    v = vr.Variation("a", vr.VariationCfg(sampler=vr.UniformCfg()))
    m = vr.RecorderManager(
        n, variations=[v], output=root, seed=0, run_id="r", step_keys=("x",), device="cpu"
    )
    m.reset(None, torch.arange(n))
    return m


@pytest.mark.parametrize("as_tensor", [True, False])
def test_a_complex_steps_column_is_refused_before_the_step_counts(tmp_path, as_tensor):
    m = _steps_manager(tmp_path)
    x = np.ones(4, np.complex64)
    with pytest.raises(TypeError, match=r"`x` .* real numbers, bools or text, got dtype complex"):
        m.record_step(reward=torch.ones(4), x=torch.as_tensor(x) if as_tensor else x)
    assert m.tracker.steps(np.arange(4)).tolist() == [0, 0, 0, 0]  # not counted
    m.record_step(reward=torch.ones(4), x=torch.ones(4))
    m.close()
    run = vr.open_dataset(tmp_path).run("r")
    assert run.status == "complete"
    assert vr.open_dataset(tmp_path).read("steps", "r").num_rows == 4


@pytest.mark.parametrize("path", ["gpu", "cpu"])
def test_a_bfloat16_steps_column_is_recorded_as_float32_on_either_path(tmp_path, path, request):
    if path == "gpu":
        request.getfixturevalue("gpu")  # the device code (host_async) on CPU torch
    m = _steps_manager(tmp_path)
    m.record_step(reward=torch.full((4,), 5.0), x=torch.full((4, 2), 1.5).bfloat16())
    m.reset(None, torch.arange(4))
    m.close()
    steps = vr.open_dataset(tmp_path).read("steps", "r").to_pandas()
    assert [list(v) for v in steps["x"]] == [[1.5, 1.5]] * 4
    assert steps["x"].iloc[0].dtype == np.float32
    episodes = vr.open_dataset(tmp_path).episodes("r").to_pandas()
    assert episodes["return"].tolist() == [5.0] * 4 and episodes["length"].tolist() == [1] * 4


def test_a_lazily_negated_reward_tensor_is_read_as_its_values(tmp_path):
    """`.conj().imag` of a complex tensor is a real tensor with torch's negative bit set,
    which numpy cannot read in place: it is resolved, not refused with torch's error."""
    m = _steps_manager(tmp_path)
    reward = torch.complex(torch.zeros(4), torch.arange(4.0)).conj().imag
    assert reward.is_neg()
    m.record_step(reward=reward, x=torch.ones(4))
    m.reset(None, torch.arange(4))
    m.close()
    episodes = vr.open_dataset(tmp_path).episodes("r").to_pandas().sort_values("env_id")
    assert episodes["return"].tolist() == [0.0, -1.0, -2.0, -3.0]


def test_integer_flag_tensors_on_the_host_hold_0_or_1(tmp_path) -> None:
    """numpy's were checked and CPU tensors' not: 2 and -1 were read as True (found by a
    torch probe). A GPU's are not read on the host at each step: see the next test."""
    m = vr.RecorderManager(3, output=tmp_path, run_id="r")
    m.reset(None, None)
    for dtype in (torch.int64, torch.int32, torch.uint8):
        with pytest.raises(ValueError, match=r"`terminated` must hold bools or 0/1 integers"):
            m.record_step(reward=torch.ones(3), terminated=torch.tensor([2, 0, 1], dtype=dtype))
    m.record_step(reward=torch.ones(3), terminated=torch.tensor([1, 0, 1]))
    m.close()
    assert vr.open_dataset(tmp_path).episodes("r").num_rows == 0  # none ended by a reset


def test_integer_flag_tensors_on_a_device_other_than_0_or_1_are_logged(
    tmp_path, gpu, caplog
) -> None:
    """A device's flags are not read at each step (a check would wait for the device):
    the writer thread logs a value other than 0 and 1 once, and records it as set."""
    from varirec.recording import episode_chunk

    episode_chunk._TOLD.discard("truncated")
    m = vr.RecorderManager(4, output=tmp_path, run_id="r", device="cpu")
    m.reset(None, torch.arange(4))
    flags = torch.tensor([2, 0, 1, -1])
    with caplog.at_level("WARNING", logger="varirec.recording.episode_chunk"):
        m.record_step(reward=torch.ones(4), truncated=flags, terminated=flags.clamp(0, 1))
        m.reset(None, torch.arange(4))
        m.close()
    rows = vr.open_dataset(tmp_path).episodes("r").to_pandas().sort_values("env_id")
    assert rows["truncated"].tolist() == [True, False, True, True]
    assert rows["terminated"].tolist() == [True, False, True, False]
    told = [r.getMessage() for r in caplog.records if "`truncated`" in r.getMessage()]
    assert len(told) == 1 and "other than 0 and 1 on the device (e.g. 2)" in told[0]
    assert not any("`terminated`" in r.getMessage() for r in caplog.records)
