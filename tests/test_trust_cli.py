"""Issue 8, command line: arguments checked before any work, errors that name the fix."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

import varirec as vr
from varirec.cli.commands import describe_os_error, main
from varirec.cli.demo import run_demo


def _small_run(path, run_id: str = "r") -> None:
    factors = [vr.Variation(k, vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1))) for k in "ab"]
    rng = np.random.default_rng(0)
    with vr.RecorderManager(64, variations=factors, output=path, run_id=run_id, seed=0) as m:
        for _ in range(8):
            m.reset(None, None)
            m.record_step(reward=rng.random(64), success=rng.random(64) < 0.5)
        m.record_pre_reset(None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--resamples", "-5"],
            "argument --resamples: must be 0 (no intervals) or at least 2, got -5",
        ),
        (
            ["--resamples", "1"],
            "argument --resamples: must be 0 (no intervals) or at least 2, got 1",
        ),
        (["--resamples", "many"], "argument --resamples: must be an integer >= 0, got 'many'"),
        (["--seed", "-1"], "argument --seed: must be an integer >= 0, got -1"),
    ],
)
def test_demo_rejects_bad_arguments_before_recording(tmp_path, capsys, argv, message) -> None:
    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--size", "tiny", "--out", str(out), *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing was recorded


def test_run_demo_checks_its_arguments_before_recording(tmp_path) -> None:
    out = tmp_path / "demo"
    with pytest.raises(ValueError, match=r"`resamples` must be an integer >= 0, got -5"):
        run_demo(out, size="tiny", resamples=-5, echo=lambda *a: None)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"`out` must be a directory for the dataset, got the"):
        run_demo(tmp_path / "file", size="tiny", echo=lambda *a: None)
    assert not out.exists()


def test_analyze_rejects_bad_arguments_at_parse_time(tmp_path, capsys) -> None:
    _small_run(tmp_path / "ds")
    for argv, message in (
        (
            ["--resamples", "-5"],
            "argument --resamples: must be 0 (no intervals) or at least 2, got -5",
        ),
        (
            ["--resamples", "1"],
            "argument --resamples: must be 0 (no intervals) or at least 2, got 1",
        ),
        (["--conf-level", "95"], "argument --conf-level: must be a number from 0.5 up to"),
        # Below one half every factor read as an effect (the dummy threshold fell below
        # the null's median).
        (["--conf-level", "0.2"], "argument --conf-level: must be a number from 0.5 up to"),
    ):
        with pytest.raises(SystemExit):
            main(["analyze", str(tmp_path / "ds"), *argv])
        assert message in capsys.readouterr().err


def test_report_onto_a_directory_is_refused_and_leaves_nothing(tmp_path, capsys) -> None:
    _small_run(tmp_path / "ds")
    target = tmp_path / "reports"
    target.mkdir()
    code = main(["analyze", str(tmp_path / "ds"), "--report", str(target), "--resamples", "20"])
    err = capsys.readouterr()
    assert code == 2
    assert (
        f"varirec analyze: error: `--report` must be a file path, got the directory "
        f"'{target}'; give a file name inside it, e.g. '{target / 'report.html'}'" in err.err
    )
    assert err.out == ""  # refused before the analysis ran
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "reports"]  # no .reports.tmp
    assert list(target.iterdir()) == []


def test_output_under_a_file_is_refused_with_the_fix(tmp_path, capsys) -> None:
    _small_run(tmp_path / "ds")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    code = main(["analyze", str(tmp_path / "ds"), "-o", str(blocker / "out.csv")])
    assert code == 2
    assert f"'{blocker}' is a file, not a folder; pick another path" in capsys.readouterr().err


def test_os_errors_name_the_path_and_the_fix() -> None:
    denied = PermissionError(errno.EACCES, "Permission denied", "/data/out.html")
    assert describe_os_error(denied) == (
        "cannot use '/data/out.html': permission denied; check its permissions (reading "
        "needs read access, recording write access)"
    )
    full = OSError(errno.ENOSPC, "No space left on device", "/data/x")
    assert "[Errno" not in describe_os_error(full)
    assert describe_os_error(full).endswith("free disk space or write elsewhere")


def _readme_python_blocks() -> list[str]:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch, capsys) -> None:
    import pandas as pd

    from varirec.analysis.study import analyze

    blocks = _readme_python_blocks()
    assert len(blocks) >= 3  # quickstart, the RecorderManager loop, reading it back
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})
    # The quickstart's ranking: what the README says it shows.
    ds = vr.open_dataset("runs/")
    gym_run = [r for r in ds.run_ids() if "pole_length" in str(ds.run(r).metadata)]
    assert len(gym_run) == 1
    ranking = analyze("runs/", runs=gym_run, outcome="return").ranking()
    verdicts = dict(zip(ranking["factor"], ranking["verdict"], strict=True))
    assert {k for k, v in verdicts.items() if v == "effect"} == {
        "pole_length",
        "force_mag",
        "masscart",
    }
    assert "effect" in capsys.readouterr().out
    # What the README says about pandas: the dataset root is not a Parquet dataset.
    import pyarrow as pa

    with pytest.raises(pa.ArrowInvalid, match=r"\.json': Parquet magic bytes not found"):
        pd.read_parquet("runs/")


def test_analyze_command_refuses_duplicate_runs_unless_asked(tmp_path, capsys) -> None:
    for run_id in ("r1", "r2"):
        _small_run(tmp_path / "ds", run_id)  # the same script twice, seed 0
    ds = str(tmp_path / "ds")
    assert main(["analyze", ds, "--resamples", "20"]) == 2
    assert (
        "varirec analyze: error: runs 'r1' and 'r2' repeat each other: same seed 0"
        in capsys.readouterr().err
    )
    assert main(["analyze", ds, "--resamples", "20", "--runs", "r1"]) == 0
    assert "over 512 episodes (runs: r1;" in capsys.readouterr().out
    assert main(["analyze", ds, "--resamples", "20", "--allow-duplicate-runs"]) == 0
    assert "over 1024 episodes (runs: r1, r2;" in capsys.readouterr().out


def test_output_and_report_on_one_path_are_refused_before_any_work(tmp_path, capsys) -> None:
    _small_run(tmp_path / "ds")
    same = tmp_path / "same.html"
    code = main(["analyze", str(tmp_path / "ds"), "-o", str(same), "--report", str(same)])
    err = capsys.readouterr()
    assert code == 2 and "`--output` and `--report` name the same file" in err.err
    assert err.out == "" and not same.exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("command", ["analyze", "failures"])
def test_a_report_folder_that_refuses_files_is_named_before_any_work(
    tmp_path, capsys, command
) -> None:
    _small_run(tmp_path / "ds")
    table = tmp_path / "table.csv"
    extra = ["-o", str(table)] if command == "analyze" else []
    code = main([command, str(tmp_path / "ds"), *extra, "--report", "/proc/r.html"])
    err = capsys.readouterr()
    assert code == 2
    assert "`--report` '/proc/r.html' cannot be written: '/proc' refuses new files" in err.err
    assert err.out == "" and not table.exists()  # nothing written, the work not begun
