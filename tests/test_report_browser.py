"""The report proves itself (issue 11): its controls (shuffled-outcome null band, rank
stability, convergence and budget) and the page itself, opened in a real headless
browser (Debian's chromium) and read back from the DOM."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from varirec import open_dataset
from varirec.analysis import run_study
from varirec.analysis.compare import compare
from varirec.analysis.controls import binned_s1, study_controls
from varirec.analysis.estimators.binning import default_num_bins, first_order_binning
from varirec.analysis.failures import failures
from varirec.analysis.failures._inputs import bin_codes
from varirec.analysis.reports.report import write_report
from varirec.analysis.study import analyze
from varirec.analysis.tables.episode_table import episode_table
from varirec.envs import make_reach_env, make_reach_variations

N = 6000
REAL = {"payload.mass", "controller.gain", "actuator.delay"}


@pytest.fixture(scope="module")
def reach(tmp_path_factory):
    out = tmp_path_factory.mktemp("reach")
    run = run_study(make_reach_env, make_reach_variations(), method="random", n=N,
                    num_envs=N, output=out, progress=False, seed=0, run_id="A",
                    policy="baseline")  # fmt: skip
    return run, episode_table(run.dataset, "A")


def test_binned_s1_equals_first_order_binning(reach) -> None:
    _, table = reach
    y = table.frame["success"].to_numpy(float)
    x = table.factor_matrix()
    ref = first_order_binning(table.frame[table.factors], y, num_resamples=0, noise_share=False)
    # first_order_binning adds a slope within each bin (about 1/M² of an effect), and
    # its bins put a few tied rows on the other side of an edge
    np.testing.assert_allclose(binned_s1(x, y), ref.estimate, atol=2e-3)
    # brute force with pandas on the same bins: Kelley's corrected correlation ratio
    j = table.factors.index("payload.mass")
    codes, _ = bin_codes(x[:, j], default_num_bins(N))
    g = pd.Series(y).groupby(codes)
    m = g.ngroups
    ss_b = float((g.count() * (g.mean() - y.mean()) ** 2).sum())
    ss_t = float(((y - y.mean()) ** 2).sum())
    truth = (ss_b - (m - 1) * (ss_t - ss_b) / (N - m)) / ss_t
    assert binned_s1(x, y)[j] == pytest.approx(truth, abs=1e-12)


def test_real_factors_leave_the_null_band_and_the_control_stays(reach) -> None:
    _, table = reach
    c = study_controls(table.frame, "success", table.factors, seed=0).factors.set_index("factor")
    assert set(c.index[~c["in_null_band"]]) == REAL
    assert c.loc["object.color", "in_null_band"]
    assert (c.loc[sorted(REAL), "top3_stability"] > 0.9).all()


def test_shuffled_outcome_puts_every_factor_in_the_null_band(reach) -> None:
    _, table = reach
    frame = table.frame.copy()
    frame["success"] = np.random.default_rng(7).permutation(frame["success"].to_numpy())
    c = study_controls(frame, "success", table.factors, seed=1)
    assert c.factors["in_null_band"].all(), c.factors


def test_convergence_and_budget(reach) -> None:
    _, table = reach
    c = study_controls(table.frame, "success", table.factors, seed=0, target=0.01)
    conv = c.convergence[c.convergence["factor"] == "payload.mass"]
    assert list(conv["episodes"]) == [N // 16, N // 8, N // 4, N // 2, N]
    width = (conv["conf_high"] - conv["conf_low"]).to_numpy()
    assert width[0] > 2 * width[-1]  # narrows about like 1/sqrt(N): 4x the data, half the width
    row = c.factors.set_index("factor").loc["payload.mass"]
    # the budget extrapolates the half-width c/sqrt(N) to the target
    assert row["episodes_needed"] == pytest.approx(N * (row["half_width"] / 0.01) ** 2, rel=0.35)


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str | None] = {}
        self.order: list[str] = []  # h2 headings and section ids, in document order
        self.plots: list[str] = []
        self._h2 = False

    def handle_starttag(self, tag, attrs) -> None:  # type: ignore[no-untyped-def]
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "section" and a.get("id"):
            self.order.append(f"#{a['id']}")
        if tag == "img" and a.get("data-plot"):
            self.plots.append(a["data-plot"] or "")
        self._h2 = tag == "h2"

    def handle_data(self, data) -> None:  # type: ignore[no-untyped-def]
        if self._h2:
            self.order.append(data.strip())
            self._h2 = False


def test_report_opens_in_headless_chromium(reach, tmp_path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    run, _ = reach
    run_study(make_reach_env, make_reach_variations(), method="random", n=N, num_envs=N,
              output=run.dataset.path, progress=False, seed=0, run_id="B",
              policy="same again")  # fmt: skip
    ds = open_dataset(run.dataset.path)  # reopened: it now holds run B too
    study = analyze(ds, runs="A", num_resamples=100)
    fa = failures(ds, runs="A", seed=0)
    cmp = compare(ds, ["A", "B"], num_resamples=100)
    path = write_report([study], tmp_path / "report.html", dataset=ds, failures=fa,
                        comparisons=[cmp])  # fmt: skip
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    parsed = _Dom()
    parsed.feed(dom)
    # the load check ran in the browser: every image decoded, nothing fetched from outside
    total = int(parsed.body["data-images-total"] or 0)
    assert total >= 5 and parsed.body["data-images-decoded"] == str(total)
    assert parsed.body["data-external-resources"] == "0"
    # the summary comes first, then the study, where it fails, the comparison
    assert parsed.order[:2] == ["#summary", "Summary"]
    assert parsed.order.index("#failures") > parsed.order.index("1. success — binning")
    assert parsed.plots[:2] == ["ranking", "convergence"] and "map" in parsed.plots
    assert "success falls from" in dom and "shuffled-outcome null band" in dom.lower()


def test_sobol_controls_rank_stability_and_budget(tmp_path) -> None:
    from varirec.analysis.controls import budget
    from varirec.analysis.design_controls import sobol_controls

    run = run_study(make_reach_env, make_reach_variations(), method="sobol", n=128,
                    num_envs=1408, output=tmp_path, progress=False, seed=0)  # fmt: skip
    study = run.analyze(num_resamples=200)
    c = sobol_controls(study, seed=0)
    assert c.null_band is None and c.index == "ST"
    rows = c.factors.set_index("factor")
    assert set(rows.index[:3]) == REAL  # ranked by ST
    assert rows.loc["object.color", "estimate"] == 0.0  # never read: exactly 0 with CRN
    assert rows.loc["object.color", "rank_stability"] == 1.0  # always last
    conv = c.convergence[c.convergence["factor"] == "controller.gain"]
    assert list(conv["episodes"]) == [8, 16, 32, 64, 128]
    # the budget in episodes: base samples for ±0.02 × (D + 2) rows × 1 replicate
    expected = int(np.ceil(budget(conv, 0.02))) * (9 + 2)
    assert rows.loc["controller.gain", "episodes_needed"] == expected
    html = write_report([study], tmp_path / "r.html", dataset=run.dataset).read_text()
    assert "not defined for a Saltelli design" in html and "Rank stability of ST" in html
