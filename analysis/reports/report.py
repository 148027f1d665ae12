"""A self-contained HTML report of sensitivity studies: tables, plots (embedded PNG), notes.

:func:`write_report` takes the :class:`~varirec.analysis.study.Study` objects of
:func:`varirec.analysis.study.analyze` (and, optionally, a failure analysis and policy
comparisons) and writes one HTML file that needs nothing else to open: a summary in
plain words at the top; per study the ranked factors with intervals and verdicts (a
group's row lists its columns), the plot in the table's order, the controls
(shuffled-outcome null band, rank stability, convergence and an episode budget;
given-data studies), per categorical factor its success rate (or mean) per label with
intervals, as a table and a bar plot, the notes and all estimates;
where it fails; how policies differ; then the dataset's runs.

A few lines of inline script record, once the page has loaded, how many of its images
decoded and how many external resources it asked for (``data-images-decoded``,
``data-external-resources`` on ``<body>``), so a headless browser can prove the file is
self-contained.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from varirec._version import __version__
from varirec.analysis.compare import Comparison
from varirec.analysis.controls import Controls, study_controls
from varirec.analysis.design_controls import sobol_controls
from varirec.analysis.estimators.results import GivenDataResult
from varirec.analysis.failures import FailureAnalysis
from varirec.analysis.reports.categories import categories_html
from varirec.analysis.reports.sections import (
    comparison_html,
    controls_html,
    failures_html,
    ranking_plot_png,
    summary_html,
)
from varirec.analysis.study import Study
from varirec.analysis.tables.episode_table import episode_table
from varirec.paths import check_output_file
from varirec.storage import Dataset

__all__ = ["check_report_path", "render_report", "write_report"]

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2rem auto;
       max-width: 70rem; color: #1b1f24; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem;
     border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .6rem; text-align: right; }
th { background: #f6f8fa; } td:first-child, th:first-child { text-align: left; }
.meta { color: #57606a; font-size: .9rem; } .notes li { color: #57606a; }
.effect { color: #1a7f37; font-weight: 600; } .none { color: #8c959f; }
img { max-width: 100%; border: 1px solid #d0d7de; }
#summary { background: #f6f8fa; border: 1px solid #d0d7de; padding: .2rem 1rem; }
.rule { font-size: 1.05rem; font-weight: 600; }
"""

_CHECK_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  var external = performance.getEntriesByType("resource").length;
  document.body.setAttribute("data-images-total", String(imgs.length));
  document.body.setAttribute("data-images-decoded", String(ok.length));
  document.body.setAttribute("data-external-resources", String(external));
});
"""


def _ranking_html(study: Study) -> str:
    frame = study.ranking()
    numbers = ("estimate", "conf_low", "conf_high") if study.has_intervals else ("estimate",)
    groups = study.groups  # a group's row lists its columns
    rows = []
    for _, r in frame.iterrows():
        verdict = html.escape(str(r["verdict"]))
        cls = "effect" if r["verdict"] == "effect" else "none"
        cells = [
            html.escape(str(r["factor"])),
            html.escape(str(r["index"])),
            *(f"{r[c]:.3f}" if pd.notna(r[c]) else "not estimated" for c in numbers),
        ]
        members = groups.get(str(r["factor"]), [])
        rows.append(
            "<tr>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + f'<td class="{cls}">{verdict}</td>'
            + (f'<td class="members">{html.escape(", ".join(members))}</td>' if groups else "")
            + "</tr>"
        )
    names = [c.replace("_", " ") for c in numbers]
    extra = ("members",) if groups else ()
    head = "".join(f"<th>{h}</th>" for h in ("factor", "index", *names, "verdict", *extra))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _controls_for(study: Study, seed: int) -> Controls | None:
    """Controls of a given-data or Sobol study (Morris studies have none: no verdict)."""
    if study.method == "sobol" and study.design:
        return sobol_controls(study, seed=seed)
    if not isinstance(study.result, GivenDataResult):
        return None
    table = episode_table(study.dataset, study.runs)
    factors = [f for f in study.result.factor_names if f in table.frame.columns]
    return study_controls(table.frame, study.outcome, factors, seed=seed)


def _interval_fact(study: Study) -> str:
    """How the study's intervals were made, as the report states it."""
    result = study.result
    if not study.has_intervals:
        return "no confidence intervals"
    intervals = f"{result.conf_level:.0%} intervals"
    if result.num_resamples:
        return f"{result.num_resamples} bootstrap resamples, {intervals}"
    if study.method == "knn":  # linearized over the neighbour pairs, not resampled
        return f"{intervals} from standard errors linearized over the neighbour pairs"
    return intervals


def _study_html(study: Study, number: int, controls: Controls | None = None) -> str:
    result = study.result
    facts = [
        f"outcome <b>{html.escape(study.outcome)}</b>",
        f"method <b>{html.escape(study.method)}</b>",
        f"{study.num_episodes} episodes",
        f"runs {html.escape(', '.join(study.runs))}",
        _interval_fact(study),
    ]
    if study.design:
        d = study.design
        facts.append(
            f"design N={d['base_size']}, {d['num_rows']} rows × {d.get('replicates', 1)} replicates"
            + (", common random numbers" if d.get("common_random_numbers") else "")
        )
    noise = getattr(result, "noise_share", None)
    if noise is not None:
        facts.append(f"noise share {noise:.2f} (outcome variance no factor explains)")
    threshold = getattr(result, "dummy_threshold", None)
    if threshold is not None:
        facts.append(f"dummy threshold {threshold:.3f}")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in study.notes)
    full = study.to_frame().to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="")
    alt = f"indices of {html.escape(study.outcome)}"
    return (
        f"<h2>{number}. {html.escape(study.outcome)} — {html.escape(study.method)}</h2>"
        f'<p class="meta">{" · ".join(facts)}</p>'
        f"{_ranking_html(study)}"
        f'<img class="plot" data-plot="ranking" alt="{alt}" '
        f'src="data:image/png;base64,{ranking_plot_png(study, controls)}">'
        + (
            controls_html(controls)
            if controls is not None
            else '<p class="meta">Controls: computed for given-data and Sobol studies; none '
            "for this study.</p>"
        )
        + categories_html(study)
        + (f'<ul class="notes">{notes}</ul>' if notes else "")
        + f"<details><summary>All estimates</summary>{full}</details>"
    )


def _runs_html(dataset: Dataset | None) -> str:
    if dataset is None:
        return ""
    rows = []
    for run in dataset.runs():
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(run.counts.items()))
        variations = ", ".join(v["key"] for v in run.metadata.get("variations", []))
        rows.append(
            f"<tr><td>{html.escape(run.run_id)}</td><td>{html.escape(run.status)}</td>"
            f"<td>{html.escape(counts)}</td><td>{html.escape(variations)}</td></tr>"
        )
    return (
        "<h2>Runs</h2><table><tr><th>run</th><th>status</th><th>rows</th><th>variations</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def render_report(
    studies: Sequence[Study],
    *,
    title: str = "varirec sensitivity report",
    dataset: Dataset | None = None,
    failures: FailureAnalysis | None = None,
    comparisons: Sequence[Comparison] = (),
    controls: bool = True,
    seed: int = 0,
) -> str:
    """The report as one HTML string (images embedded, no external files).

    Args:
        studies: sensitivity studies (may be empty when ``failures`` or
            ``comparisons`` are given).
        title: the page title.
        dataset: the dataset, for the table of runs.
        failures: a failure analysis to show (where it fails).
        comparisons: policy comparisons to show.
        controls: compute the controls of given-data studies (null band, rank
            stability, convergence).
        seed: the controls' shuffles and resamples.
    """
    if not studies and failures is None and not comparisons:
        raise ValueError(
            "`studies` must hold at least one Study (or give `failures` or `comparisons`)"
        )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    ctls = [_controls_for(s, seed) if controls else None for s in studies]
    pairs = enumerate(zip(studies, ctls, strict=True))
    body = "".join(_study_html(s, i + 1, c) for i, (s, c) in pairs)
    if failures is not None:
        body += failures_html(failures)
    body += "".join(comparison_html(c) for c in comparisons)
    source = studies[0].dataset if studies else (dataset.path if dataset is not None else "")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="meta">dataset {html.escape(str(source))} · written {when} · '
        f"varirec {__version__}</p>"
        f"{summary_html(studies, ctls, failures, comparisons)}{body}{_runs_html(dataset)}"
        f"<script>{_CHECK_SCRIPT}</script></body></html>"
    )


def write_report(
    studies: Sequence[Study],
    path: str | os.PathLike[str],
    *,
    title: str = "varirec sensitivity report",
    dataset: Dataset | None = None,
    **sections: Any,
) -> Path:
    """Write :func:`render_report` to ``path`` (atomically); returns the path.

    ``sections`` go to :func:`render_report` (``failures``, ``comparisons``,
    ``controls``, ``seed``).

    Raises:
        ValueError: ``path`` is a directory (checked before anything is written).
    """
    path = Path(path)
    check_report_path(path)
    if path.is_symlink():  # the file it names is written, the link kept
        path = Path(os.path.realpath(path))
    text = render_report(studies, title=title, dataset=dataset, **sections)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # nothing left behind if the write or rename failed
    return path


def check_report_path(
    path: str | os.PathLike[str],
    name: str = "path",
    dataset: str | os.PathLike[str] | None = None,
) -> None:
    """Refuse a report path that cannot be a file, or lies inside a run of ``dataset``,
    before any work is done (``name``: the argument, as the message calls it)."""
    check_output_file(path, name, example="report.html", dataset=dataset, replaced=True)
