"""The command line, in-process and as the installed script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import varirec as vr
from varirec.cli.commands import main

SCRIPT = Path(sys.executable).parent / "varirec"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Plain random draws of two factors; success depends on 'mass' only."""
    path = tmp_path_factory.mktemp("ds")
    mass = vr.Variation("cube.mass", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)))
    color = vr.Variation(
        "cube.color", vr.VariationCfg(sampler=vr.ChoiceCfg(choices=("red", "blue")))
    )
    n = 500
    with vr.RecorderManager(n, variations=[mass, color], output=path, run_id="plain", seed=0) as m:
        for _ in range(4):
            m.reset(None, None)
            m.record_step(reward=np.ones(n))
            m.record_pre_reset(None)
    # A second run where success depends on the mass alone (color is a null factor).
    env_mass = np.zeros(n)

    def apply(env, ids, values):
        env_mass[ids] = values

    mass2 = vr.Variation("cube.mass", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)), apply)
    color2 = vr.Variation(
        "cube.color", vr.VariationCfg(sampler=vr.ChoiceCfg(choices=("red", "blue")))
    )
    rng = np.random.default_rng(0)
    with vr.RecorderManager(n, variations=[mass2, color2], output=path, run_id="lift", seed=1) as m:
        m.reset(None, None)
        for _ in range(8):
            success = rng.random(n) < env_mass
            m.record_step(
                reward=success.astype(float), success=success, terminated=np.ones(n, bool)
            )
            m.reset(None, None)
    return path


def test_version_and_help_as_installed_script() -> None:
    out = subprocess.run([SCRIPT, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"varirec {vr.__version__}"
    out = subprocess.run([SCRIPT, "--help"], capture_output=True, text=True, check=True)
    for command in ("demo", "analyze", "inspect"):
        assert command in out.stdout


def test_a_reader_that_leaves_early_gets_no_error_message(dataset) -> None:
    """`varirec inspect ... | head -1`: the pipe closes before the output is written; no
    "cannot use 'a file': broken pipe" error, no traceback, the shell's SIGPIPE status."""
    script = Path(sys.executable).with_name("varirec")
    with subprocess.Popen([str(script), "inspect", str(dataset), "--json"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:  # fmt: skip
        proc.stdout.close()  # before the CLI has imported anything: its first write fails
        err = proc.stderr.read().decode()
        code = proc.wait()
    assert code == 141 and err == "", err


def test_analyze_table_ranks_the_real_factor_first(dataset, capsys) -> None:
    assert main(["analyze", str(dataset), "--runs", "lift", "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "'success' by binning" in out
    lines = out.splitlines()
    first = next(line for line in lines if "S1_binning" in line)
    assert first.split()[0] == "cube.mass" and first.split()[-1] == "effect"
    assert "noise share:" in out


def test_analyze_csv_json_and_report(dataset, tmp_path, capsys) -> None:
    assert (
        main(["analyze", str(dataset), "--runs", "lift", "--format", "csv", "--resamples", "50"])
        == 0
    )
    csv = capsys.readouterr().out
    assert csv.splitlines()[0].startswith("factor,index,estimate,conf_low,conf_high")
    out = tmp_path / "s.json"
    report = tmp_path / "r.html"
    code = main(
        [
            "analyze",
            str(dataset),
            "--runs",
            "lift",
            "--format",
            "json",
            "-o",
            str(out),
            "--report",
            str(report),
            "--resamples",
            "50",
        ]
    )
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["method"] == "binning" and doc["outcome"] == "success"
    assert "data:image/png;base64," in report.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["analyze", "{missing}"], "does not exist"),
        (["analyze", "{ds}", "--outcome", "sucess"], "did you mean 'success'"),
        (["analyze", "{ds}", "--runs", "nope"], "unknown run id"),
        (
            ["analyze", "{ds}", "--method", "sobol", "--runs", "lift"],
            "needs a run recorded with a sobol design",
        ),
        (["inspect", "{missing}"], "does not exist"),
    ],
)
def test_errors_print_one_line_and_exit_2(dataset, tmp_path, args, message) -> None:
    argv = [a.format(ds=dataset, missing=tmp_path / "missing") for a in args]
    out = subprocess.run([SCRIPT, *argv], capture_output=True, text=True)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in out.stderr


def test_an_output_inside_a_run_is_refused_and_the_run_kept(dataset, tmp_path, capsys) -> None:
    """``-o`` or ``--report`` naming a file inside a run (a part, run.json) is refused
    before any work: it had written CSV over a part of the dataset it read."""
    (part,) = (dataset / "run_id=lift" / "episodes").glob("part-*.parquet")
    before = part.read_bytes()
    for argv in (
        ["analyze", str(dataset), "--runs", "lift", "--format", "csv", "-o", str(part)],
        ["analyze", str(dataset), "--runs", "lift", "--report", str(part.with_suffix(".html"))],
        ["failures", str(dataset), "--runs", "lift", "--report", str(part.parent / "r.html")],
    ):  # fmt: skip
        assert main(argv) == 2
        assert "is inside a run of the dataset" in capsys.readouterr().err
    assert part.read_bytes() == before and not part.with_suffix(".html").exists()
    report = dataset / "report_lift.html"  # beside the runs is fine (the demo writes there)
    assert main(["analyze", str(dataset), "--runs", "lift", "--resamples", "20",
                 "--report", str(report)]) == 0  # fmt: skip
    assert report.is_file()
    report.unlink()


def test_an_output_through_a_linked_run_folder_is_refused(dataset, tmp_path, capsys) -> None:
    """A run folder that is a link to elsewhere: ``-o`` through it replaced its run.json
    with the ranking (found by a CLI probe)."""
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "run_id=lift").symlink_to(dataset / "run_id=lift")
    run_json = dataset / "run_id=lift" / "run.json"
    before = run_json.read_bytes()
    for argv in (
        ["analyze", str(linked), "--format", "csv", "-o", str(linked / "run_id=lift/run.json")],
        ["analyze", str(linked), "--report", str(dataset / "run_id=lift" / "x.html")],
    ):
        assert main(argv) == 2
        assert "is inside a run of the dataset" in capsys.readouterr().err
    assert run_json.read_bytes() == before
    beside = str(dataset / "run_id=lift" / ".." / "summary.csv")  # out of the run again
    assert main(["analyze", str(dataset), "--runs", "lift", "--format", "csv", "-o", beside]) == 0
    assert (dataset / "summary.csv").is_file()
    (dataset / "summary.csv").unlink()


def test_a_report_over_a_device_is_refused_and_through_a_link_written_to_its_file(
    dataset, tmp_path, capsys
) -> None:
    """The report is written beside its path and renamed over it: that replaced
    /dev/null with a file (as root), and a link with a file."""
    argv = ["analyze", str(dataset), "--runs", "lift", "--resamples", "20", "--report"]
    assert main([*argv, "/dev/null"]) == 2
    assert "is not a regular file (a device or a pipe)" in capsys.readouterr().err
    assert Path("/dev/null").is_char_device()
    real = tmp_path / "real.html"
    real.write_text("mine")
    (tmp_path / "link.html").symlink_to(real)
    assert main([*argv, str(tmp_path / "link.html")]) == 0
    assert (tmp_path / "link.html").is_symlink() and "<html" in real.read_text()
    assert main(["analyze", str(dataset), "--runs", "lift", "-o", ""]) == 2
    assert "`--output` is empty" in capsys.readouterr().err


def test_analyze_failures_refuses_a_graded_outcome_before_writing_anything(
    dataset, tmp_path, capsys
) -> None:
    graded = tmp_path / "graded"
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)))
    with vr.RecorderManager(200, variations=[mass], output=graded, run_id="g") as m:
        for _ in range(3):
            m.reset(None, None)
            m.record_step(reward=np.random.default_rng(0).random(200))
            m.record_pre_reset(None)
    out = tmp_path / "out.csv"
    code = main(["analyze", str(graded), "--outcome", "return", "--failures", "--format",
                 "csv", "-o", str(out), "--resamples", "20"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert f"run `varirec failures {graded} --outcome return --threshold T`" in err


def test_inspect_text_json_and_skipped_parts(dataset, tmp_path, capsys) -> None:
    assert main(["inspect", str(dataset)]) == 0
    text = capsys.readouterr().out
    assert (
        "run lift  [complete]" in text
        and "cube.mass" in text
        and "uniform(low=0.0, high=1.0)" in text
    )
    assert main(["inspect", str(dataset), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    lift = next(r for r in info["runs"] if r["run_id"] == "lift")
    assert lift["episodes"] == 8 * 500 and lift["outcomes"]["success"]["recorded"] == 4000
    # A corrupt part is skipped with a warning that names it; nothing is deleted.
    part = next((dataset / "run_id=plain" / "draws").glob("part-*.parquet"))
    broken = tmp_path / "copy"
    import shutil

    shutil.copytree(dataset, broken)
    bad = broken / "run_id=plain" / "draws" / part.name
    bad.write_bytes(b"not parquet")
    assert main(["inspect", str(broken)]) == 0
    captured = capsys.readouterr()
    assert part.name in captured.out + captured.err
    assert bad.exists()
