"""`varirec demo`, end to end at the smallest size: dataset, report, and the control factor."""

from __future__ import annotations

import html
import subprocess
import sys
from pathlib import Path

import pytest

import varirec as vr
from varirec.cli.demo import run_demo

SCRIPT = Path(sys.executable).parent / "varirec"


def test_demo_finds_the_real_factors_and_not_the_control(tmp_path) -> None:
    result = run_demo(tmp_path / "demo", size="tiny", seed=0, resamples=200, echo=lambda *a: None)
    sobol, given = result.studies
    assert sobol.method == "sobol" and given.method == "binning"
    for study, none in ((sobol, "no effect"), (given, "no first-order effect")):
        verdicts = dict(zip(study.ranking()["factor"], study.ranking()["verdict"], strict=True))
        assert verdicts["object.color"] == none, study.ranking()
        assert verdicts["payload.mass"] == "effect" and verdicts["controller.gain"] == "effect"
    color = sobol.ranking().set_index("factor").loc["object.color"]
    assert color["estimate"] == 0.0  # common random numbers: a null factor gets exactly 0
    ds = vr.open_dataset(result.dataset)
    assert sorted(ds.run_ids()) == sorted([result.sobol_run, result.random_run])
    assert ds.run(result.sobol_run).metadata["design"]["common_random_numbers"] is True
    assert "data:image/png;base64," in result.report.read_text()


def test_demo_command_prints_ranking_and_paths(tmp_path) -> None:
    out = subprocess.run(
        [SCRIPT, "demo", "--size", "tiny", "--out", str(tmp_path / "d"), "--resamples", "100"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "'success' by sobol" in out.stdout and "'success' by binning" in out.stdout
    assert "report:" in out.stdout and (tmp_path / "d").is_dir()
    # where it fails (issue 11): printed, and the same sentence in the report
    region = next(line for line in out.stdout.splitlines() if line.startswith("Failure region: "))
    (report,) = (tmp_path / "d").glob("report_*.html")
    sentence = region.removeprefix("Failure region: ").rstrip(".")
    assert html.escape(sentence) in report.read_text()
    again = subprocess.run(
        [SCRIPT, "demo", "--size", "nope", "--out", str(tmp_path / "e")],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2 and "invalid choice: 'nope'" in again.stderr


@pytest.mark.parametrize(
    "kwargs, message",
    [({"resamples": 1}, "at least 2, got 1"), ({"out": ""}, "`out` is empty")],
)
def test_demo_refuses_bad_arguments_before_recording(tmp_path, monkeypatch, kwargs, message):
    """``--resamples 1`` failed after both runs were recorded; ``--out ''`` wrote the
    dataset into the current folder (found by a CLI probe)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message):
        run_demo(**{"out": tmp_path / "d", "size": "tiny", **kwargs})
    assert list(tmp_path.iterdir()) == []
