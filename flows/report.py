"""Report: the experiment's conclusions for one evaluated run, as Markdown + self-contained HTML and as
Prefect artifacts (key ``reclab-report``).

python -m flows.report                                   # the latest evaluated run of the default workspace
python -m flows.report --workspace workspace/movielens-latest-small --run RUN_ID --output reports/ml
python -m flows.report --help
"""

from __future__ import annotations

import sys

from prefect import flow
from pydantic import BaseModel, ConfigDict

from tasks.report import write_report
from tasks.store import DEFAULT_WORKSPACES, Workspace


class ReportParams(BaseModel):
    """Which run to report and where to write it."""

    model_config = ConfigDict(extra="forbid")

    workspace: str = str(DEFAULT_WORKSPACES / "amazon-musical-instruments-5core")
    run_id: str | None = None  # an evaluated run (default: the latest one)
    output: str | None = None  # folder for report.md/report.html (default: <workspace>/reports/<run_id>)
    dataset: str | None = None  # the title's dataset name (default: the workspace folder's name)


@flow(name="report")
def report(params: ReportParams = ReportParams()) -> dict:
    """Write the run's report files and publish its artifacts; return their paths."""
    from tasks.report import latest_evaluated_run

    workspace = Workspace.existing(params.workspace)
    with workspace.lock("flow report"):  # one run at a time per workspace
        run_id = params.run_id or latest_evaluated_run(workspace.db)
        out = params.output or str(workspace.root / "reports" / run_id)
        meta = {"dataset": params.dataset or workspace.root.name}
        return {"run_id": run_id, **write_report(workspace.db, run_id, out, meta)}


def main(argv: list[str] | None = None) -> int:
    import argparse

    from flows.cli import run_cli
    from flows.report import ReportParams  # the importable copies
    from flows.report import report as report_flow

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--workspace",
        default=ReportParams.model_fields["workspace"].default,
        help="workspace folder (default: the default dataset's)",
    )
    parser.add_argument("--run", dest="run_id", help="run id of a models/full run (default: the latest evaluated)")
    parser.add_argument("--output", help="output folder (default: <workspace>/reports/<run id>)")
    args = parser.parse_args(argv)
    params = ReportParams(workspace=args.workspace, run_id=args.run_id, output=args.output)

    def body() -> None:
        paths = report_flow(params)
        print(f"\nreport of run {paths['run_id']}:\n  {paths['html']}\n  {paths['markdown']}")

    return run_cli(check=lambda: Workspace.existing(params.workspace), body=body)


if __name__ == "__main__":
    sys.exit(main())
