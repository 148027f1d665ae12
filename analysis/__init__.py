"""varirec.analysis: turn a recorded dataset into sensitivity indices, plots and a report.

Runs in notebooks and the CLI, never inside the simulator; it needs the ``analysis``
extra (pandas, SALib, matplotlib): ``pip install "varirec[analysis]"``.
"""
