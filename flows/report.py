"""Report: the experiment's conclusions for one evaluated run, as Markdown + self-contained HTML and as
Prefect artifacts (key ``reclab-report``).

    python -m flows.report                                   # the latest evaluated run of the default workspace
    python -m flows.report --workspace workspace/movielens-latest-small --run RUN_ID --output reports/ml
    python -m flows.report --help
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the command line, before the imports below: --help answers at once
    from flows.cli import main

    sys.exit(main("report", __doc__))

from prefect import flow

from flows.params import ReportInputs, ReportSettings
from flows.results import Written
from flows.stop import stop_promptly
from tasks.report import latest_evaluated_run, write_report
from tasks.store import DEFAULT_WORKSPACE, Workspace


@flow(name="reclab-report")
def report(settings: ReportSettings = ReportSettings(), inputs: ReportInputs = ReportInputs()) -> Written:
    """Write the report files of ``inputs``' run (a workspace's evaluated run) as ``settings`` say, and publish its
    artifacts; return their paths."""
    stop_promptly()  # SIGTERM / Ctrl-C: exit within seconds, fits kept (flows/stop.py)
    workspace = Workspace.existing(inputs.workspace or DEFAULT_WORKSPACE)
    with workspace.lock("flow report"):  # one run at a time per workspace
        run_id = inputs.run_id or latest_evaluated_run(workspace.db)
        out = settings.output or str(workspace.root / "reports" / run_id)
        meta = {"dataset": settings.dataset or inputs.dataset or workspace.root.name}
        paths = write_report(workspace, run_id, out, meta)
        return Written(run_id, markdown=paths["markdown"], html=paths["html"])
