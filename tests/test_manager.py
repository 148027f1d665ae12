"""The RecorderManager: terms at hooks, collisions, the null manager, steps, run.json."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

import varirec as vr
from varirec.recording.manager import NullRecorderManager, RecorderManager, make_recorder_manager


class Log(vr.RecorderTerm):
    """A user term that logs every hook and adds one episode column."""

    def __init__(self, cfg, manager) -> None:
        super().__init__(cfg, manager)
        self.calls: list[str] = []
        self.peak = np.zeros(manager.num_envs)

    def columns(self):
        return {self.cfg.params.get("column", "peak_reward"): pa.float64()}

    def record_step(self, data) -> None:
        self.calls.append("step")
        self.peak = np.maximum(self.peak, data["reward"])

    def record_pre_reset(self, env_ids):
        self.calls.append(f"pre:{env_ids.tolist()}")
        out = {self.cfg.params.get("column", "peak_reward"): self.peak[env_ids].copy()}
        self.peak[env_ids] = 0
        return out

    def record_post_reset(self, env_ids) -> None:
        self.calls.append(f"post:{env_ids.tolist()}")

    def record_post_step(self) -> None:
        self.calls.append("end")

    def close(self) -> None:
        self.calls.append("close")


def test_terms_run_in_order_at_each_hook_and_add_columns(tmp_path) -> None:
    m = RecorderManager(
        2,
        output=tmp_path,
        run_id="r",
        terms={
            "log": vr.RecorderTermCfg(term=Log),
            "log2": vr.RecorderTermCfg(term=Log, params={"column": "p2"}),
        },
    )
    assert list(m.terms) == ["outcome", "variations", "log", "log2"]
    m.reset(None, None)
    m.record_step(reward=np.array([3.0, 1.0]))
    m.record_pre_reset([0])
    m.record_post_reset([0])
    m.record_post_step()
    log = m.terms["log"]
    m.close()
    # pre-reset reaches only envs whose episode started: the first reset reached none.
    assert log.calls == ["post:[0, 1]", "step", "pre:[0]", "post:[0]", "end", "close"]
    ep = vr.open_dataset(tmp_path).episodes().to_pandas()
    assert ep["peak_reward"].tolist() == [3.0] and ep["p2"].tolist() == [3.0]


def test_column_collisions_are_errors_at_registration(tmp_path) -> None:
    with pytest.raises(
        ValueError, match="adds episode column 'return', which 'outcome' already records"
    ):
        RecorderManager(2, terms={"x": vr.RecorderTermCfg(term=Log, params={"column": "return"})})
    with pytest.raises(ValueError, match="'log2' adds episode column 'peak_reward', which 'log'"):
        RecorderManager(
            2, terms={"log": vr.RecorderTermCfg(term=Log), "log2": vr.RecorderTermCfg(term=Log)}
        )
    with pytest.raises(ValueError, match="adds episode column 'episode', which 'tracker'"):
        RecorderManager(2, terms={"x": vr.RecorderTermCfg(term=Log, params={"column": "episode"})})
    with pytest.raises(ValueError, match="taken by built-in terms"):
        RecorderManager(2, terms={"outcome": vr.RecorderTermCfg(term=Log)})
    with pytest.raises(TypeError, match="must be a RecorderTerm subclass"):
        vr.RecorderTermCfg(term=lambda cfg, m: None)  # type: ignore[arg-type]


class _Schedule:
    """The smallest EpisodeSchedule: the manager only hands it on."""

    def attach(self, variations: object) -> None:
        pass

    def check_bound(self) -> None:
        pass

    def assign(self, tracker: object, env_ids: np.ndarray) -> np.ndarray:
        return env_ids


def test_null_manager_when_nothing_is_recorded(tmp_path) -> None:
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    m = make_recorder_manager(3, variations=[mass], seed=1)
    assert type(m) is NullRecorderManager
    assert mass.sampler.listeners == ()  # nothing listens: draws cost nothing extra
    m.reset(None, None)
    m.record_step(reward=np.ones(3))
    m.record_pre_reset([1])
    m.record_post_reset([1])
    m.close()
    # It still tracks episodes, so draws stay reproducible and keyed.
    assert m.tracker.episode.tolist() == [0, 1, 0]
    assert isinstance(make_recorder_manager(3, output=tmp_path), RecorderManager)
    schedule = _Schedule()
    assert make_recorder_manager(3, schedule=schedule).schedule is schedule  # type: ignore[arg-type]


def test_attach_after_a_draw_and_duplicate_keys_are_refused() -> None:
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg()))
    mass.draw(env_ids=[0])
    with pytest.raises(
        vr.RecorderStateError, match="already drew 1 time\\(s\\) before the recorder"
    ):
        vr.VariationRecorder().attach([mass])
    a = vr.Variation("a", vr.VariationCfg(sampler=vr.UniformCfg()))
    recorder = vr.VariationRecorder().attach([a])
    with pytest.raises(ValueError, match="'a' is already attached"):
        recorder.attach([a])
    twin = vr.Variation("b", vr.VariationCfg(sampler=vr.UniformCfg()))
    with pytest.raises(ValueError, match="two variations share the key 'b'"):
        vr.VariationRecorder().attach([twin, twin])


def test_disabled_variations_record_nothing_until_enabled() -> None:
    # Attached while disabled (it draws nothing then), so a later enable() is recorded.
    chunks: list = []
    off = vr.Variation("off", vr.VariationCfg(sampler=vr.UniformCfg(), enabled=False))
    on = vr.Variation("on", vr.VariationCfg(sampler=vr.UniformCfg()))
    recorder = vr.VariationRecorder(chunks.append).attach([off, on])
    assert recorder.keys == ["off", "on"]
    off.draw(env_ids=[0])
    recorder.flush()
    assert chunks == []
    off.enable()
    off.draw(env_ids=[0])
    recorder.flush()
    assert chunks[0].to_arrow().column("variation").to_pylist() == ["off"]


def test_recorder_buffer_is_bounded_by_max_rows() -> None:
    chunks = []
    v = vr.Variation("v", vr.VariationCfg(sampler=vr.UniformCfg(low=(0, 0), high=(1, 1))))
    recorder = vr.VariationRecorder(chunks.append, max_rows=100).attach([v])
    for _ in range(30):
        v.draw(env_ids=np.arange(10))  # 20 rows per draw
    # A full chunk goes to the sink when the next draw no longer fits in it.
    assert [len(c) for c in chunks] == [100] * 5 and recorder._chunk.rows == 100
    recorder.flush()
    assert [len(c) for c in chunks] == [100] * 6 and recorder.rows_recorded == 600
    v.draw(env_ids=np.arange(80))  # one draw larger than a chunk goes over alone
    assert len(chunks[-1]) == 160 and chunks[-1].to_arrow().num_rows == 160


def test_steps_term_records_chosen_arrays_per_env_step(tmp_path) -> None:
    m = RecorderManager(2, output=tmp_path, run_id="r", step_keys=("reward", "action"))
    m.reset(None, None)
    for t in range(3):
        m.record_step(reward=np.array([t, 10 + t], float), action=np.full((2, 3), t, np.float32))
    m.record_pre_reset([1])
    m.record_post_reset([1])
    m.record_step(reward=np.array([3.0, 0.0]), action=np.zeros((2, 3), np.float32))
    m.close()
    steps = vr.open_dataset(tmp_path).steps().to_pandas().sort_values(["env_id", "episode", "step"])
    assert steps[["env_id", "episode", "step"]].values.tolist() == [
        [0, 0, 0],
        [0, 0, 1],
        [0, 0, 2],
        [0, 0, 3],
        [1, 0, 0],
        [1, 0, 1],
        [1, 0, 2],
        [1, 1, 0],
    ]
    assert steps["reward"].tolist() == [0, 1, 2, 3, 10, 11, 12, 0]
    assert list(steps["action"].iloc[1]) == [1, 1, 1]
    with pytest.raises(ValueError, match="params\\['keys'\\] must name"):
        RecorderManager(2, step_keys=())


def test_steps_term_names_missing_keys(tmp_path) -> None:
    m = RecorderManager(1, step_keys=("obs",))
    m.reset(None, None)
    with pytest.raises(KeyError, match="got no \\['obs'\\]"):
        m.record_step(reward=np.ones(1))


def test_run_json_holds_config_and_ends_with_counts_or_error(tmp_path) -> None:
    mass = vr.Variation("cube.mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    with RecorderManager(
        4, variations=[mass], output=tmp_path, run_id="ok", seed=9, metadata={"task": "lift"}
    ) as m:
        m.reset(None, None)
        m.record_step(reward=np.ones(4))
        m.record_pre_reset(None)
    doc = json.loads((tmp_path / "run_id=ok" / "run.json").read_text())
    assert doc["status"] == "complete"
    assert doc["metadata"]["seed"] == 9 and doc["metadata"]["num_envs"] == 4
    assert doc["metadata"]["user"] == {"task": "lift"}
    assert doc["metadata"]["variations"][0]["key"] == "cube.mass"
    assert doc["metadata"]["variations"][0]["factors"][0]["dist"] == "unif"
    assert doc["counts"] == {"draws": 4, "episodes": 4}
    assert doc["ended_utc"].endswith("Z")

    with (
        pytest.raises(RuntimeError, match="simulator crashed"),
        RecorderManager(2, output=tmp_path, run_id="bad") as m,
    ):
        m.reset(None, None)
        m.record_step(reward=np.ones(2))
        m.record_pre_reset([0])
        raise RuntimeError("simulator crashed")
    doc = json.loads((tmp_path / "run_id=bad" / "run.json").read_text())
    assert doc["status"] == "failed" and "simulator crashed" in json.dumps(doc["error"])
    assert vr.open_dataset(tmp_path).episodes(runs=["bad"]).num_rows == 1  # nothing lost


def test_variation_keys_may_not_shadow_episode_columns() -> None:
    length = vr.Variation("length", vr.VariationCfg(sampler=vr.UniformCfg()))
    with pytest.raises(ValueError, match="'length' is also an episodes column; rename"):
        vr.VariationRecorder().attach([length])


def test_a_term_column_of_k_values_per_episode_is_recorded_as_a_list(tmp_path):

    class FinalPos(vr.RecorderTerm):
        def columns(self):
            return {"final_pos": pa.list_(pa.float64(), 2)}

        def record_pre_reset(self, ids):
            return {"final_pos": np.stack([ids * 1.0, ids + 0.5], axis=1)}

    n = 4
    with vr.RecorderManager(
        n, output=tmp_path, run_id="r", terms={"pos": vr.RecorderTermCfg(term=FinalPos)}
    ) as m:
        m.reset(None, None)
        for _ in range(3):
            m.record_step(reward=np.ones(n), terminated=np.ones(n, bool))
            m.reset(None, np.arange(n))
    episodes = (
        vr.open_dataset(tmp_path)
        .episodes("r")
        .sort_by([("episode", "ascending"), ("env_id", "ascending")])
    )
    assert episodes.num_rows == 3 * n  # before: every episode row lost with the column
    assert episodes.column("final_pos").to_pylist()[:n] == [[i, i + 0.5] for i in range(n)]


class OnceBad(vr.RecorderTerm):
    """A term whose ``record_pre_reset`` returns ``cfg.params['bad']`` at its 3rd call."""

    calls = 0

    def columns(self):
        return {"peak": pa.float64()}

    def record_pre_reset(self, ids):
        OnceBad.calls += 1
        if OnceBad.calls == 3:
            return self.cfg.params["bad"](ids)
        return {"peak": ids * 1.0}


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (lambda ids: {"peak": np.ones(len(ids) + 2)}, "with 6 value\\(s\\) for 4 finished"),
        (lambda ids: {"peak": np.array(["x"] * len(ids))}, "type double cannot hold"),
        (lambda ids: {"peak": np.ones((len(ids), 2))}, "type double cannot hold"),
        (lambda ids: {"peak": ids * 1.0, "other": ids}, "which its columns\\(\\) does not declare"),
    ],
)
def test_a_term_s_bad_column_is_refused_at_its_reset_and_the_buffered_episodes_kept(
    tmp_path, bad, says
):
    """Found only at the hand-over, the bad column failed the buffered episodes with it
    (every good one before it)."""
    OnceBad.calls = 0
    n = 4
    cfg = vr.RecorderTermCfg(term=OnceBad, params={"bad": bad})
    with vr.RecorderManager(n, output=tmp_path, run_id="r", terms={"t": cfg}) as m:
        m.reset(None, None)
        for i in range(4):
            m.record_step(reward=np.ones(n), terminated=np.ones(n, bool))
            if i == 2:
                with pytest.raises(ValueError, match=f"OnceBad.record_pre_reset returned .*{says}"):
                    m.reset(None, np.arange(n))
            else:
                m.reset(None, np.arange(n))
    ds = vr.open_dataset(tmp_path)
    episodes = ds.episodes("r").to_pandas()
    assert ds.run("r").status == "complete"
    # 2 resets before the bad one and 1 after it (the bad reset's episodes ended there)
    assert len(episodes) == 3 * n and not episodes.duplicated(["env_id", "episode"]).any()
    assert episodes["peak"].notna().all()


def test_step_keys_and_term_columns_may_not_take_a_table_s_own_names(tmp_path):
    """``step_keys=["env_id"]`` overwrote every steps row's env id; a term column
    ``run_id`` made the whole dataset unreadable; one named as a variation broke every
    episode table of the run. Each is refused before the run exists."""

    def term(column):
        class Named(vr.RecorderTerm):
            def columns(self):
                return {column: pa.float64()}

        return {"t": vr.RecorderTermCfg(term=Named)}

    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    cases = [
        ({"step_keys": ["reward", "step"]}, "step_keys \\['step'\\] are the steps table's own"),
        ({"terms": term("run_id")}, "'run_id', which the dataset \\(the run's partition\\)"),
        ({"terms": term("mass")}, "'mass', which variation 'mass' already records"),
    ]
    for kw, says in cases:
        with pytest.raises(ValueError, match=says):
            RecorderManager(2, variations=[mass], output=tmp_path, run_id="r", **kw)
        assert not (tmp_path / "run_id=r").exists()  # nothing written


def test_a_tracker_of_another_size_and_more_envs_than_int32_ids_are_refused() -> None:
    from varirec.recording.episodes import EpisodeTracker

    with pytest.raises(ValueError, match=r"`num_envs` is 4 but the `tracker` given counts 8"):
        RecorderManager(4, tracker=EpisodeTracker(8))
    with pytest.raises(ValueError, match=r"`num_envs` must be at most 2,147,483,647"):
        RecorderManager(2**40)  # was a MemoryError


def test_a_step_before_any_reset_is_logged_once(caplog) -> None:
    """Those steps counted toward no episode, silently (found by a bad-input probe)."""
    m = RecorderManager(2)
    with caplog.at_level("WARNING", logger="varirec.recording.manager"):
        m.record_step(reward=np.ones(2))
        m.record_step(reward=np.ones(2))
    assert [r.message.startswith("record_step before any reset") for r in caplog.records] == [True]
    caplog.clear()
    fresh = RecorderManager(2)
    fresh.reset(None, None)
    with caplog.at_level("WARNING", logger="varirec.recording.manager"):
        fresh.record_step(reward=np.ones(2))
    assert not caplog.records


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda torch, n: torch.ones(n, requires_grad=True), r"requires grad; return peak.detach"),
        (lambda torch, n: torch.ones(n, device="meta"), r"a tensor on meta, and the term has no"),
    ],
)
def test_a_term_s_tensor_the_writer_cannot_read_is_refused_at_its_reset(tmp_path, make, says):
    """A device tensor with no copy_out() failed the hand-over's episodes at the writer;
    a tensor with a grad raised torch's own error (found by a torch probe). (meta stands
    in for a GPU: no copy of it can be read either.)"""
    torch = pytest.importorskip("torch")

    class Peak(vr.RecorderTerm):
        def columns(self):
            return {"peak": pa.float64()}

        def record_pre_reset(self, ids):
            return {"peak": make(torch, len(ids))}

    with RecorderManager(4, output=tmp_path, run_id="r",
                         terms={"t": vr.RecorderTermCfg(term=Peak)}) as m:  # fmt: skip
        m.reset(None, None)
        m.record_step(reward=np.ones(4), terminated=np.ones(4, bool))
        returned = "Peak.record_pre_reset returned column 'peak'"
        with pytest.raises(ValueError, match=f"{returned} .*{says}"):
            m.reset(None, None)
