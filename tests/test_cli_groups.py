"""Factor groups from the command line (``--group``, ``--groups-file``, ``--split-vectors``)
and categorical factors in the printed table and the HTML report, through the real
``varirec`` entry point on a small recorded dataset.

Truth: the estimators called directly on the episode table (knn with the same groups),
a pandas groupby for the per-category success rates, scipy's Wilson interval.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

import varirec as vr
from varirec.analysis.estimators.knn_total import knn_indices
from varirec.analysis.tables.episode_table import episode_table
from varirec.cli.commands import main

SCRIPT = Path(sys.executable).parent / "varirec"
GRIP = ["gripper.force", "gripper.width"]
SCENES = ("kitchen", "garage", "lab")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Success needs force and width both high, and is likelier in the lab; a 3-vector
    camera pose, the scene choice and an interval-mode gust are recorded too."""
    path = tmp_path_factory.mktemp("groups")
    n = 300
    state: dict[str, np.ndarray] = {
        "force": np.zeros(n),
        "width": np.zeros(n),
        "scene": np.zeros(n, dtype=object),
    }

    def setter(name: str):
        def apply(env, ids, values):
            state[name][ids] = values

        return apply

    uniform = vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1))
    variations = [
        vr.Variation("gripper.force", uniform, setter("force")),
        vr.Variation("gripper.width", uniform, setter("width")),
        vr.Variation(
            "cam", vr.VariationCfg(sampler=vr.UniformCfg(low=(-1.0,) * 3, high=(1.0,) * 3))
        ),
        vr.Variation(
            "scene", vr.VariationCfg(sampler=vr.ChoiceCfg(choices=SCENES)), setter("scene")
        ),
        vr.Variation(
            "gust", vr.VariationCfg(sampler=vr.UniformCfg(), mode="interval", interval_steps=(1, 1))
        ),
    ]
    rng = np.random.default_rng(0)
    with vr.RecorderManager(n, variations=variations, output=path, run_id="r", seed=0) as m:
        m.reset(None, None)
        for _ in range(4):
            p = 0.15 + 0.6 * (state["force"] > 0.5) * (state["width"] > 0.5)
            p = p + 0.2 * (state["scene"] == "lab")
            success = rng.random(n) < p
            m.record_step(
                reward=success.astype(float), success=success, terminated=np.ones(n, bool)
            )
            m.reset(None, None)
    return path


def _json(capsys, argv: list[str]) -> dict:
    assert main([*argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def _index(doc: dict, index: str) -> dict[str, float]:
    return {r["factor"]: r["estimate"] for r in doc["result"]["indices"] if r["index"] == index}


def test_group_rows_in_the_table_equal_knn_on_the_episode_table(dataset, capsys) -> None:
    assert main(["analyze", str(dataset), "--group", "grip=gripper.force,gripper.width"]) == 0
    out = capsys.readouterr().out
    assert "'success' by knn" in out  # auto picks the method that takes groups
    header = next(line for line in out.splitlines() if line.split()[:2] == ["factor", "index"])
    assert header.split()[-1] == "members"
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()[:1] in
            (["grip"], ["cam"], ["scene"])}  # fmt: skip
    assert rows["grip"].endswith("gripper.force, gripper.width")
    assert rows["cam"].endswith("cam[0], cam[1], cam[2]")  # a vector is one factor by default
    # The same numbers as the estimator on the episode table with the same groups.
    table = episode_table(dataset)
    y, valid = table.outcome("success")
    groups = {"grip": GRIP, "cam": ["cam[0]", "cam[1]", "cam[2]"]}
    truth = knn_indices(table.frame.loc[valid, table.factors].reset_index(drop=True), y[valid],
                        groups=groups, shapley=True, seed=0, outcome="success")  # fmt: skip
    doc = _json(capsys, ["analyze", str(dataset), "--group", "grip=gripper.force,gripper.width"])
    assert doc["groups"] == groups
    assert tuple(doc["result"]["factor_names"]) == truth.factor_names == ("grip", "cam", "scene")
    for index, values in (("ST", truth.ST), ("Shapley", truth.shapley)):
        got = _index(doc, index)
        np.testing.assert_allclose([got[f] for f in truth.factor_names], values, rtol=1e-12)


def test_groups_file_json_and_toml_and_split_vectors(dataset, tmp_path, capsys) -> None:
    flag = _json(capsys, ["analyze", str(dataset), "--group", "grip=gripper.force, gripper.width",
                          "--group", "pose=cam[0],cam[1]"])  # fmt: skip
    (tmp_path / "g.json").write_text(json.dumps({"grip": GRIP, "pose": ["cam[0]", "cam[1]"]}))
    (tmp_path / "g.toml").write_text(
        '[groups]\ngrip = ["gripper.force", "gripper.width"]\npose = ["cam[0]", "cam[1]"]\n'
    )
    for name in ("g.json", "g.toml"):
        doc = _json(capsys, ["analyze", str(dataset), "--groups-file", str(tmp_path / name)])
        assert doc["groups"] == flag["groups"] == {"grip": GRIP, "pose": ["cam[0]", "cam[1]"]}
        assert _index(doc, "ST") == _index(flag, "ST")
    # cam[2], outside every group, is a factor of its own.
    assert flag["result"]["factor_names"] == ["grip", "pose", "cam[2]", "scene"]
    split = _json(capsys, ["analyze", str(dataset), "--method", "knn", "--split-vectors"])
    assert split["groups"] == {}
    assert split["result"]["factor_names"] == [*GRIP, "cam[0]", "cam[1]", "cam[2]", "scene"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--group", "grip=gripper.forse,gripper.width"], "did you mean 'gripper.force'"),
        (["--group", "a=cam", "--group", "b=cam[1],scene"], "'cam[1]' is in groups 'a' and 'b'"),
        (["--group", "grip="], "group 'grip' is empty"),
        (["--group", "grip"], "must be NAME=VARIATION,VARIATION"),
        (["--group", "grip=a,,b"], "empty name"),
        (["--group", "g=scene", "--group", "g=cam"], "group 'g' is declared twice"),
        (["--group", "cam=scene"], "name the group otherwise"),
        (["--group", "g=scene,gust"], "'gust', an interval-mode variation"),
        (["--group", "g=cam", "--method", "binning"], "--method binning takes one column"),
        (["--groups-file", "{tmp}/g.yaml"], "must be a .json or .toml file"),
        (["--groups-file", "{tmp}/bad.json"], "must be a list of variation names"),
        # A file's unknown member is blamed on the file, not on --group.
        (["--groups-file", "{tmp}/typo.json"], "argument --groups-file: group 'grip' names"),
    ],
)
def test_group_errors_stop_before_anything_is_written(dataset, tmp_path, capsys, args, message):
    (tmp_path / "bad.json").write_text(json.dumps({"grip": "gripper.force"}))
    (tmp_path / "typo.json").write_text(json.dumps({"grip": ["gripper.forse"]}))
    out, report = tmp_path / "out.json", tmp_path / "r.html"
    argv = ["analyze", str(dataset), "-o", str(out), "--report", str(report)]
    with pytest.raises(SystemExit) as exc:
        main([*argv, *(a.format(tmp=tmp_path) for a in args)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: varirec analyze" in err and message in err
    assert not out.exists() and not report.exists()


def test_group_error_exit_2_from_the_installed_script(dataset) -> None:
    run = subprocess.run([SCRIPT, "analyze", str(dataset), "--group", "grip=gripper.forse"],
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1] == (
        "varirec analyze: error: argument --group: group 'grip' names 'gripper.forse', which is "
        "no variation of the dataset; did you mean 'gripper.force', 'gripper.width'? (known: "
        "cam, cam[0], cam[1], cam[2], gripper.force, gripper.width, scene)"
    )


def _category_rows(text: str, factor: str) -> list[list[str]]:
    block = re.search(rf'<div class="categories" data-factor="{re.escape(factor)}">(.*?)</div>',
                      text, re.S)  # fmt: skip
    assert block is not None
    table = re.search(r'<table class="categories">(.*?)</table>', block.group(1), re.S)
    assert table is not None
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)
    return [[html.unescape(c) for c in re.findall(r"<t[hd]>(.*?)</t[hd]>", r)] for r in rows]


def test_report_per_category_rates_equal_a_pandas_groupby(dataset, tmp_path, capsys) -> None:
    report = tmp_path / "r.html"
    assert main(["analyze", str(dataset), "--resamples", "50", "--report", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "'success' per category of scene" in printed
    frame = episode_table(dataset).frame
    truth = frame.groupby("scene", observed=True)["success"].agg(["mean", "size", "sum"])
    rows = _category_rows(report.read_text(), "scene")
    assert rows[0][:5] == ["category", "episodes", "success rate", "conf low", "conf high"]
    assert [r[0] for r in rows[1:]] == list(SCENES)  # labels in the spec's order, never codes
    for label, n, rate, low, high, _ in rows[1:]:
        assert int(n) == truth.loc[label, "size"]
        assert rate == f"{truth.loc[label, 'mean']:.3f}"
        wilson = binomtest(int(truth.loc[label, "sum"]), int(n)).proportion_ci(0.95, "wilson")
        assert (low, high) == (f"{wilson.low:.3f}", f"{wilson.high:.3f}")
        assert re.search(rf"^\s+{label}\s+{n}\s+{rate}\s+{low}\s+{high}", printed, re.M)
    assert 'data-plot="categories" data-factor="scene"' in report.read_text()


def test_category_plot_has_labels_on_the_axis(dataset) -> None:
    from varirec.analysis import analyze
    from varirec.analysis.reports.categories import category_figure

    study = analyze(dataset, num_resamples=0)
    rows = study.category_effects
    fig = category_figure(rows[rows["factor"] == "scene"], "scene", "success rate")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(SCENES)
    heights = [bar.get_height() for bar in ax.patches]
    np.testing.assert_allclose(heights, rows["mean"].to_numpy())
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_report_group_rows_list_their_members(dataset, tmp_path) -> None:
    report = tmp_path / "g.html"
    code = main(["analyze", str(dataset), "--group", "grip=gripper.force,gripper.width",
                 "--report", str(report)])  # fmt: skip
    assert code == 0
    text = report.read_text()
    assert "<th>members</th>" in text
    assert re.search(r"<td>grip</td>.*?<td class=\"members\">gripper.force, gripper.width</td>",
                     text)  # fmt: skip


def test_knn_report_says_how_its_intervals_were_made(dataset, tmp_path) -> None:
    """knn intervals are linearized standard errors, not bootstrap resamples."""
    report = tmp_path / "r.html"
    argv = ["analyze", str(dataset), "--method", "knn", "--report", str(report)]
    assert main(argv) == 0
    text = report.read_text()
    assert "standard errors linearized over the neighbour pairs" in text
    assert "0 bootstrap resamples" not in text
