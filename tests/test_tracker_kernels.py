"""The compiled reset steps (tracker and first-draw kernels, the driver's one-pass reset)
leave every array as numpy does.

Two drivers with the same variations run the same random resets, one with the kernels
on and one with numpy only (``compiled_draws(False)``): ids in any order, bool masks,
draws again within an episode, design rows, resets split into their hooks. After
every operation the tracker's counters, the draw counters and the values applied
agree. With only continuous kinds and nothing listening, a reset takes the driver's
compiled path (``compiled_reset.CompiledReset``); with a choice among them, the general one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import varirec as vr
from varirec.errors import RecorderStateError
from varirec.recording.driver import VariationDriver
from varirec.sampling import accel
from varirec.sampling.accel import compiled_draws

pytest.importorskip("numba")

KERNELS = ("varirec.recording.tracker_kernels",)


@pytest.fixture
def calls(monkeypatch):
    """The kernels on, with the names of the calls made through them."""
    with compiled_draws(True) as kern:
        if kern is None:
            pytest.skip("the compiled kernels are off")
        names: list[str] = []
        for module in KERNELS:
            real = accel.kernels_of(module)
            assert real is not None
            monkeypatch.setitem(accel._companions, module, _Spy(real, names))
        yield names


class _Spy:
    def __init__(self, module: object, names: list[str]) -> None:
        self.module, self.names = module, names

    def __getattr__(self, name: str) -> object:
        fn = getattr(self.module, name)
        if not callable(fn):
            return fn

        def call(*args: object) -> object:
            self.names.append(name)
            return fn(*args)

        return call


class _Env:
    """Keeps every value ``apply`` got, per variation (and the batches' matrices)."""

    def __init__(self) -> None:
        self.applied: list[tuple[str, np.ndarray, np.ndarray]] = []


def _host(x) -> np.ndarray:
    """A copy on the host of numpy values or a CPU tensor (its type kept in the dtype)."""
    return x.numpy().copy() if hasattr(x, "numpy") else np.array(x)


def _driver(n: int, continuous: bool = True, device: str | None = None) -> VariationDriver:
    cfgs = {
        "mass": vr.UniformCfg(low=1, high=2),
        "com": vr.NormalCfg(mean=(0, 0), std=(1, 2)),
        "size": vr.TruncNormalCfg(mean=0, std=1, low=-1, high=2),
        "gain": vr.LogUniformCfg(low=1e-2, high=10),
        "fixed": vr.ConstantCfg(value=1.5),
    }
    if not continuous:
        cfgs["shape"] = vr.ChoiceCfg(choices=("box", "ball"))

    def keep(key: str):
        return lambda env, ids, x: env.applied.append((key, _host(ids), _host(x)))

    variations = vr.VariationSet(
        vr.Variation(k, vr.VariationCfg(sampler=c), apply=keep(k) if k == "com" else None)
        for k, c in cfgs.items()
    )
    variations.apply_batch = lambda env, ids, batch: env.applied.append(
        ("batch", _host(ids), _host(batch.matrix if continuous else batch.values[0]))
    )
    return VariationDriver(n, variations=variations, seed=3, device=device)


def _state(d: VariationDriver) -> tuple:
    t = d.tracker
    d._counters.flush()
    return (
        t._ints[:, [0, 1, 2, 4, 5]].T.copy(),  # every counter but the start time (a clock)
        t.started.copy(),
        t.seq,
        t.episodes_finished,
        t._clock,
        d._counters.count.copy(),
        d._counters.episode.copy(),
        d._counters.last.copy(),
    )


def _same(a: tuple, b: tuple) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def _step(d: VariationDriver, op: str, ids, env: _Env) -> None:
    if op != "design" and d.world.device is not None:  # a torch env hands tensors
        import torch

        ids = torch.as_tensor(ids)
    if op == "reset":
        d.reset(env, ids)
    elif op == "hooks":
        d.record_pre_reset(ids)
        d.draw_reset(env, ids)
        d.record_post_reset(ids)
    elif op == "again":  # a second draw within the same episodes: no first draw
        d.draw_reset(env, ids)
    elif op == "design":
        d.tracker.sample_id[ids] = np.arange(np.size(d.tracker.sample_id[ids])) % 3
    else:
        d.record_step()


@pytest.mark.parametrize(("continuous", "device"), [(True, None), (False, None), (True, "cpu")])
def test_random_resets_leave_the_arrays_as_numpy_does(calls, continuous, device) -> None:
    if device is not None:
        pytest.importorskip("torch")
    n = 40
    fast, slow = _driver(n, continuous, device), _driver(n, continuous, device)
    fast_env, slow_env = _Env(), _Env()
    rng = np.random.default_rng(11)
    for i in range(300):
        op = rng.choice(["reset", "hooks", "again", "design", "step", "step"], p=None)
        k = int(rng.integers(0, 9))
        ids = rng.permutation(n)[:k]  # in any order (an env named twice is refused)
        if i % 7 == 3:
            ids = rng.random(n) < 0.2  # a bool mask
        elif i % 11 == 5:
            ids = ids[::-1][::2]  # a strided view
        for driver, env, on in ((fast, fast_env, True), (slow, slow_env, False)):
            with compiled_draws(on):
                _step(driver, str(op), ids.copy(), env)
        _same(_state(fast), _state(slow))
    assert len(fast_env.applied) == len(slow_env.applied) > 100
    for (key, ids, x), (key_, ids_, x_) in zip(fast_env.applied, slow_env.applied, strict=True):
        assert key == key_
        np.testing.assert_array_equal(ids, ids_)
        np.testing.assert_array_equal(x, x_)
    # The fast side ran the kernels, not numpy again; the one-pass reset where it applies.
    for name in ("finish_and_begin", "start", "first_draw_keys"):
        assert name in calls
    assert ("reset_draws" in calls) == continuous


def test_a_refused_start_changes_nothing_and_names_the_envs(calls) -> None:
    d = _driver(6)
    d.reset(_Env(), np.array([0, 1, 2]))
    before = _state(d)
    with pytest.raises(RecorderStateError, match=r"envs \[1\] were reset again"):
        d.tracker.start(np.array([4, 1]), begun=True)
    _same(_state(d), before)
    assert "start" in calls


def test_out_of_range_ids_are_refused_before_the_tracker_moves(calls) -> None:
    d = _driver(6)
    d.reset(_Env(), np.arange(6))
    before = _state(d)
    # The tracker's own steps, called with unchecked ids: each kernel refuses before it
    # writes (no write past the arrays), and numpy raises as it always did.
    t = d.tracker
    for call in (
        lambda: t.finish_and_begin(np.array([1, 6])),
        lambda: t.finish(np.array([2, 7]), started=True),
        lambda: t.start(np.array([0, 60]), begun=True),
    ):
        with pytest.raises(IndexError):
            call()
        _same(_state(d), before)
    assert {"finish_and_begin", "finish_columns", "start"} <= set(calls)
    with pytest.raises(ValueError, match=r"in \[0, 6\)"):
        d.reset(_Env(), np.array([-1]))
    _same(_state(d), before)


class _Peak(vr.RecorderTerm):
    """A user's term with work at the pre-reset: the recorder's hooks run in Python."""

    def __init__(self, cfg, manager) -> None:
        super().__init__(cfg, manager)
        self.peak = np.zeros(manager.num_envs)

    def columns(self):
        return {"peak": pa.float64()}

    def record_step(self, data) -> None:
        np.maximum(self.peak, data["reward"], out=self.peak)

    def record_pre_reset(self, env_ids):
        return {"peak": self.peak[env_ids]}


def _terms(user_term: bool) -> dict | None:
    return {"peak": vr.RecorderTermCfg(term=_Peak)} if user_term else None


def _outcomes(rng: np.random.Generator, n: int, i: int) -> dict[str, np.ndarray]:
    success = rng.random(n)
    success[rng.random(n) < 0.3] = np.nan  # unknown
    return {
        "reward": np.full(n, float(i)),
        "terminated": rng.random(n) < 0.2,
        "truncated": rng.random(n) < 0.2,
        "success": success,
    }


@pytest.mark.parametrize("user_term", [False, True])
def test_finished_episodes_columns_are_the_numpy_paths(calls, user_term) -> None:
    """A recording manager's finished-episode rows equal the numpy path's, ids in any
    order: with the outcome term alone, gathered in the compiled reset's kernels
    (every column in one block); with a user's term, by the terms in Python and the
    tracker's compiled ``finish``."""
    from varirec.recording.episode_chunk import RECORDED_BLOCK, _split
    from varirec.recording.episodes import FINISHED_BLOCK

    n = 30
    managers = []
    for _ in range(2):
        d = _driver(n)
        managers.append(
            vr.RecorderManager(
                variations=d.variations,
                tracker=d.tracker,
                flush_seconds=1e6,
                terms=_terms(user_term),
            )
        )
    rng = np.random.default_rng(4)
    for i in range(120):
        ids = rng.permutation(n)[: int(rng.integers(0, 8))]
        outcomes = _outcomes(rng, n, i)
        for m, on in zip(managers, (True, False), strict=True):
            with compiled_draws(on):
                if i % 3:
                    m.record_step(**outcomes)
                else:
                    m.reset(_Env(), ids.copy())
    fast, slow = ([_split(p) for p in m._episode_parts] for m in managers)
    assert len(fast) == len(slow) > 20
    # The compiled side keeps columns as blocks (split where written).
    blocks = {FINISHED_BLOCK} if user_term else {RECORDED_BLOCK}
    assert all(blocks <= set(p) for p in managers[0]._episode_parts)
    if not user_term:  # one block and nothing else: a single slice on the hot path
        assert all(set(p) == blocks for p in managers[0]._episode_parts)
    assert not any(set(p) & blocks for p in managers[1]._episode_parts)
    for a, b in zip(fast, slow, strict=True):
        assert sorted(a) == sorted(b)
        for key in a:
            if key != "time_end" and key != "time_start":  # clocks
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
                assert a[key].dtype == b[key].dtype, key
    if user_term:
        assert "finish_columns" in calls and "recorded_reset" not in calls
    else:
        assert "recorded_reset" in calls  # the start and the outcomes' restart in it
        assert not {"finish_columns", "start", "start_outcomes"} & set(calls)


@pytest.mark.parametrize("user_term", [False, True])
@pytest.mark.parametrize("device", [None, "cpu"])
def test_a_recorded_run_writes_the_numpy_paths_tables(calls, tmp_path, device, user_term) -> None:
    """A recording manager's reset takes the one-pass path too, numpy or torch on the
    CPU, with the outcome term's work in its kernels or (a user's term beside it) the
    recorder's hooks around it: the draws and episodes tables equal the numpy path's,
    row for row."""
    wrap = np.asarray
    if device is not None:
        wrap = pytest.importorskip("torch").as_tensor
    n = 24
    rng = np.random.default_rng(8)
    plan = [
        (i % 4 == 0, rng.permutation(n)[: int(rng.integers(0, 9))], _outcomes(rng, n, i))
        for i in range(200)
    ]
    for on in (True, False):
        d = _driver(n, device=device)
        with (
            compiled_draws(on),
            vr.RecorderManager(
                variations=d.variations,
                tracker=d.tracker,
                output=tmp_path / str(on),
                run_id="r",
                terms=_terms(user_term),
            ) as m,
        ):
            m.reset(_Env(), wrap(np.arange(n)))
            for reset, ids, outcomes in plan:
                if reset:
                    m.reset(_Env(), wrap(ids.copy()))
                else:
                    m.record_step(**{k: wrap(v) for k, v in outcomes.items()})
    clocks = ["time", "time_start", "time_end"]
    for table in ("draws", "episodes"):
        fast, slow = (
            getattr(vr.open_dataset(tmp_path / str(on)), table)().to_pandas()
            for on in (True, False)
        )
        fast, slow = (x.drop(columns=[c for c in clocks if c in x]) for x in (fast, slow))
        assert len(fast) > 100
        pd.testing.assert_frame_equal(fast, slow)
        if table == "episodes":  # every outcome column recorded, nulls for unknown success
            assert fast["success"].isna().any() and fast["success"].notna().any()
            assert fast["terminated"].any() and fast["truncated"].any()
    fused = {"recorded_reset"}
    if user_term:
        assert {"started_among", "reset_draws", "finish_columns"} <= set(calls)
        assert not fused & set(calls)
    else:
        assert fused <= set(calls)


def test_the_one_pass_kernel_is_compiled_again_when_the_draw_kernels_change() -> None:
    """numba's cache keys a kernel by its own file; ``reset_draws`` calls a kernel of
    ``compiled.py`` and carries a hash of that file in its closure. numba's cache key
    (the key it looks compiled code up by) must hold it: the shipped kernel's key is
    the one of that file's hash, and another content of the file gives another key."""
    import hashlib
    from pathlib import Path

    from varirec.sampling import compiled

    with compiled_draws(True):  # warm() compiles the signature read below
        tk = accel.kernels_of(KERNELS[0])
    if tk is None:
        pytest.skip("the compiled kernels are off")
    source = Path(compiled.__file__).read_bytes()
    codegen = tk.reset_draws.targetctx.codegen()

    for i, kernel in enumerate((tk.reset_draws, tk.recorded_reset)):
        sig = kernel.signatures[0]  # compiled by warm()

        def key(stamp: str, i: int = i, sig: tuple = sig) -> tuple:
            return tk._with_draw_kernels(stamp)[i]._cache._index_key(sig, codegen)

        shipped = kernel._cache._index_key(sig, codegen)
        assert shipped == key(hashlib.sha256(source).hexdigest())
        assert shipped != key(hashlib.sha256(source + b"# an edit").hexdigest())


def test_a_hand_over_that_fails_in_a_recorded_reset_is_raised_once_the_reset_is_whole(
    calls, monkeypatch
) -> None:
    """The compiled reset has begun the new episodes when the recorder takes the
    finished ones: a failed hand-over then (a full disk) is raised after the draws are
    applied and the episodes started, so no episode is left begun and never started,
    and the next reset goes on from the next index."""
    n = 6
    d = _driver(n)
    m = vr.RecorderManager(variations=d.variations, tracker=d.tracker, max_rows=1)
    m.reset(_Env(), np.arange(n))
    m.record_step(reward=np.ones(n))

    def refuse(table: str):
        def send(chunk: object) -> None:
            if table == "episodes":
                raise OSError(28, "No space left on device")

        return send

    monkeypatch.setattr(m, "sink", refuse)
    env = _Env()
    with pytest.raises(OSError, match="No space left"):
        m.reset(env, np.array([1, 4]))
    t = m.tracker
    assert t.episode[[1, 4]].tolist() == [1, 1] and t.started[[1, 4]].all()
    assert [key for key, *_ in env.applied] == ["com", "batch"]  # drawn and applied
    assert "recorded_reset" in calls
    monkeypatch.undo()
    m.record_step(reward=np.ones(n))
    m.reset(_Env(), np.array([1, 4]))
    assert t.episode[[1, 4]].tolist() == [2, 2]
    m.close()


def test_hooks_without_outcome_accumulators_are_called_in_python(calls) -> None:
    """``DriverHooks`` of one's own (without ``outcome_accumulators``) get every hook."""

    class Hooks:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def finishing(self, done):
            self.seen.append(f"finishing {sorted(done.tolist())}")
            return {}

        def finished(self, row):
            self.seen.append(f"finished {sorted(row['env_id'].tolist())}")

        def reset_drawn(self, batch):
            self.seen.append("drawn")

        def started(self, ids):
            self.seen.append(f"started {sorted(ids.tolist())}")

    d = _driver(4)
    d.hooks = hooks = Hooks()
    d.reset(_Env(), np.arange(4))
    d.reset(_Env(), np.array([2, 0]))
    assert hooks.seen == [
        "drawn", "started [0, 1, 2, 3]",
        "finishing [0, 2]", "finished [0, 2]", "drawn", "started [0, 2]",
    ]  # fmt: skip
    assert "reset_draws" in calls and "recorded_reset" not in calls


@pytest.mark.parametrize("recorded", [False, True])
def test_an_apply_that_raises_leaves_the_episodes_as_the_general_path_does(calls, recorded) -> None:
    """The compiled reset starts the episodes in its kernel, before ``apply``: when
    ``apply`` raises, ``unstart`` takes the start back, so the tracker (and a recorder's
    rows) are as the general path leaves them, begun but not started, and both go on
    alike."""
    from varirec.recording.episode_chunk import _split

    def refuse(env, ids, batch):
        raise RuntimeError("apply failed")

    runs = []
    for on in (True, False):
        d = _driver(6)
        m = vr.RecorderManager(variations=d.variations, tracker=d.tracker) if recorded else None
        target = m if recorded else d
        keep = d.variations.apply_batch
        with compiled_draws(on):
            target.reset(_Env(), np.arange(6))
            target.record_step(reward=np.arange(6.0))
            d.variations.apply_batch = refuse
            with pytest.raises(RuntimeError, match="apply failed"):
                target.reset(_Env(), np.array([1, 4]))
            failed = _state(d)
            d.variations.apply_batch = keep
            target.record_step(reward=np.ones(6))
            target.reset(_Env(), np.array([1, 4, 5]))
            target.record_step(reward=np.ones(6))
            target.reset(_Env(), np.array([4, 0]))
            after = _state(d)
        parts = [_split(p) for p in m._episode_parts] if recorded else []
        if m is not None:
            m.close()
        runs.append((failed, after, parts))
    (failed, after, parts), (failed0, after0, parts0) = runs
    assert not failed[1][[1, 4]].any() and failed[0][0][[1, 4]].tolist() == [1, 1]
    for ints, started, *_ in (failed, failed0):  # unread until the episode starts
        ints[2, ~started] = -1
    _same(failed, failed0)
    _same(after, after0)
    assert len(parts) == len(parts0) == (3 if recorded else 0)  # the failed reset ended 1, 4
    for a, b in zip(parts, parts0, strict=True):
        assert sorted(a) == sorted(b)
        for key in a:
            if key not in ("time_end", "time_start"):
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert "unstart" in calls


@pytest.mark.parametrize("recorded", [False, True])
def test_draws_that_apply_makes_come_before_the_start_as_in_the_general_path(recorded) -> None:
    """The kernel stamps the start before ``apply``; an ``apply`` that draws (here a
    dependent interval-mode variation) takes seqs first, and the start follows them:
    the seqs of both paths are the same, the draw before the episode it belongs to."""
    runs = []
    for on in (True, False):
        extra = vr.Variation(
            "friction",
            vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1), mode="interval",
                            interval_steps=(1000, 1000)),
        )  # fmt: skip
        drawn: list[int] = []
        box: list[VariationDriver] = []  # the driver, once made

        def apply_mass(env, ids, x, extra=extra, drawn=drawn, box=box):
            extra.draw(env, ids)
            drawn.append(box[0].tracker.seq)

        mass = vr.Variation(
            "mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)), apply=apply_mass
        )
        kind = vr.RecorderManager if recorded else vr.NullRecorderManager
        d = kind(4, variations=[mass, extra], seed=0)
        box.append(d)
        with compiled_draws(on):
            d.reset(None, np.arange(4))
            d.record_step()
            d.reset(None, np.array([1, 2]))
        t = d.tracker
        runs.append((t.start_seq.tolist(), drawn, t.seq))
        assert (t.start_seq[[1, 2]] > drawn[-1]).all()
        d.close()
    assert runs[0] == runs[1]


@pytest.mark.parametrize("kernel", ["reset_draws", "recorded_reset"])
def test_an_interrupt_as_the_kernel_returns_leaves_the_episodes_unstarted(
    kernel, monkeypatch
) -> None:
    """A Ctrl-C that lands as the kernel returns (before a line of Python after it):
    the episodes it started are taken back, begun but not started, and the run goes
    on with every seq handed out once."""
    with compiled_draws(True) as kern:
        if kern is None:
            pytest.skip("the compiled kernels are off")
        d = _driver(5)
        m = (
            vr.RecorderManager(variations=d.variations, tracker=d.tracker)
            if kernel == "recorded_reset"
            else d
        )
        m.reset(_Env(), np.arange(5))
        m.record_step(reward=np.ones(5)) if m is not d else m.record_step()
        real = accel.kernels_of(KERNELS[0])

        class Interrupted:
            def __getattr__(self, name: str) -> object:
                fn = getattr(real, name)
                if name != kernel:
                    return fn

                def call(*args: object) -> object:
                    fn(*args)
                    raise KeyboardInterrupt

                return call

        driver = d if m is d else m.driver
        monkeypatch.setitem(accel._companions, KERNELS[0], Interrupted())
        driver._compiled.plan = None  # made again: with the kernels above
        with pytest.raises(KeyboardInterrupt):
            m.reset(_Env(), np.array([1, 3]))
        monkeypatch.undo()
        driver._compiled.plan = None
        t = d.tracker
        assert not t.started[[1, 3]].any() and t.started[[0, 2, 4]].all()
        seen = {int(s) for s in t.start_seq[[0, 2, 4]]}
        for ids in ([1, 3], [0, 2]):
            m.record_step(reward=np.ones(5)) if m is not d else m.record_step()
            m.reset(_Env(), np.array(ids))
            new = {int(s) for s in t.start_seq[ids]}
            assert len(new) == 1 and not new & seen  # a fresh seq for each start
            seen |= new
        assert t.started.all()
        if m is not d:
            m.close()
