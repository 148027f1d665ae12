"""The one-call study: the same run as the five pieces assembled by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import varirec as vr
from varirec.analysis import analyze, run_study, sobol_design
from varirec.envs import ishigami_variations, make_ishigami_env
from varirec.studies.design import DesignSchedule
from varirec.studies.driver import drive_episodes


def _by_episode(ds: vr.storage.Dataset, run_id: str) -> dict[str, np.ndarray]:
    eps = ds.episodes(runs=run_id).to_pandas().sort_values(["sample_id", "seed"])
    return {"sample_id": eps["sample_id"].to_numpy(), "return": eps["return"].to_numpy()}


def test_one_call_equals_the_pieces(tmp_path: Path) -> None:
    one = run_study(
        make_ishigami_env,
        ishigami_variations(),
        method="sobol",
        n=8,
        replicates=2,
        num_envs=16,
        output=tmp_path,
        run_id="one",
        seed=3,
        progress=False,
    )
    variations = ishigami_variations()
    design = sobol_design(variations, 8, seed=3)
    schedule = DesignSchedule(design, replicates=2, seed=3)
    design.bind(variations)
    with vr.RecorderManager(
        16, variations=variations, output=tmp_path, run_id="pieces", seed=3, schedule=schedule
    ) as manager:
        drive_episodes(make_ishigami_env(16), manager)
    assert one.stats.episodes == schedule.num_episodes == 8 * 5 * 2
    ds = vr.open_dataset(tmp_path)
    a, b = _by_episode(ds, "one"), _by_episode(ds, "pieces")
    np.testing.assert_array_equal(a["sample_id"], b["sample_id"])
    np.testing.assert_allclose(a["return"], b["return"])
    assert ds.run("one").metadata["design"]["method"] == "sobol"


def test_random_method_records_n_episodes_of_plain_draws(tmp_path: Path) -> None:
    study = run_study(
        make_ishigami_env,
        ishigami_variations(),
        method="random",
        n=50,
        num_envs=8,
        output=tmp_path,
        progress=False,
    )
    eps = study.dataset.episodes(runs=study.run_id)
    assert eps.num_rows == 50
    assert eps.column("sample_id").null_count == 50 or set(eps.column("sample_id").to_pylist()) == {
        -1
    }


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "saltelli", "n": 8}, "`method` must be"),
        ({"method": "sobol", "n": 0}, "`n` must be a positive int"),
        ({"method": "random", "n": 8, "replicates": 2}, "`replicates` applies"),
    ],
)
def test_bad_arguments_write_nothing(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        run_study(
            make_ishigami_env,
            ishigami_variations(),
            output=tmp_path / "d",
            progress=False,
            **kwargs,
        )
    assert not (tmp_path / "d").exists()


def test_a_sobol_study_over_every_run_names_the_runs_it_left_out(tmp_path: Path) -> None:
    """Without ``runs`` a design study reads its design run only: the plain random run
    beside it is named in a note, not dropped in silence."""
    common = {"output": tmp_path, "progress": False, "num_envs": 32}
    run_study(make_ishigami_env, ishigami_variations(), method="sobol", n=64, run_id="s", **common)
    run_study(make_ishigami_env, ishigami_variations(), method="random", n=64, run_id="r", **common)
    result = analyze(tmp_path, outcome="return")
    assert result.runs == ["s"]
    assert "a sobol study reads its design run 's' only: run(s) ['r'] left out" in " ".join(
        result.notes
    )


def test_one_set_of_variations_for_two_runs_is_refused_with_the_fix(tmp_path: Path) -> None:
    """The second run of one set (a second policy, say) was refused with a message about
    the order of calls only (found by a numbers probe)."""
    variations = ishigami_variations()
    kw = dict(method="random", n=32, num_envs=16, output=tmp_path, progress=False)
    run_study(make_ishigami_env, variations, run_id="a", **kw)
    with pytest.raises(vr.errors.RecorderStateError, match="a fresh set of variations"):
        run_study(make_ishigami_env, variations, run_id="b", **kw)
    assert vr.open_dataset(tmp_path).run_ids() == ["a"]
