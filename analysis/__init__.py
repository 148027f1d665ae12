"""varirec.analysis: turn a recorded dataset into sensitivity indices, plots and a report.

Runs in notebooks and the CLI, never inside the simulator; it needs the ``analysis``
extra (pandas, SALib, matplotlib): ``pip install "varirec[analysis]"``.
"""

from varirec.analysis.designs import morris_design, sobol_design
from varirec.analysis.reports.report import write_report
from varirec.analysis.runner import StudyRun, run_study
from varirec.analysis.study import Study, analyze
from varirec.analysis.tables.episode_table import EpisodeTable, episode_table

__all__ = [
    "EpisodeTable",
    "Study",
    "StudyRun",
    "analyze",
    "episode_table",
    "morris_design",
    "run_study",
    "sobol_design",
    "write_report",
]
