"""The full experiment, one command: ``python -m flows.full`` (embedded default dataset, no server needed).

Stages, each a sub-flow: prepare (ingest -> validate -> split), models (global mean, bias ALS, popularity,
biased MF, LightFM collaborative and hybrid, the fine-tuned transformer, then the fusion learned on
validation; all evaluated on test with CIs and paired tests, on every split), report (Markdown + HTML with
the conclusions, and Prefect artifacts).

    python -m flows.full
    python -m flows.full --seeds 0 1 2                     # repeat on three seeded splits: mean ± sd
    python -m flows.full --data ../shared/data/movielens-latest-small --lm-profile cpu
    python -m flows.full --help
"""

from __future__ import annotations

import sys

from prefect import flow
from pydantic import BaseModel, ConfigDict

from flows.baselines import BaselinesParams, baselines
from flows.prepare import PrepareParams, prepare
from flows.report import ReportParams, report


class FullParams(BaseModel):
    """Parameters of the whole experiment, one model per stage."""

    model_config = ConfigDict(extra="forbid")

    prepare: PrepareParams = PrepareParams()
    baselines: BaselinesParams = BaselinesParams()  # its workspace and splits come from the prepare stage
    report: ReportParams = ReportParams()  # its workspace and run come from the earlier stages


@flow(name="full")
def full(params: FullParams = FullParams()) -> dict:
    """Run the experiment end to end and return each stage's summary."""
    with params.prepare.workspace_for(params.prepare.dataset()).lock("flow full"):  # the stages re-enter it
        return _stages(params)


def _stages(params: FullParams) -> dict:
    # prepare: ingest, validate, split
    prepared = prepare(params.prepare)
    # baselines: traditional models and LightFM, trained and evaluated on every split prepare made
    stage = params.baselines.model_copy(
        update={"workspace": prepared["workspace"], "splits": tuple(prepared["splits"])}
    )
    evaluated = baselines(stage)
    # report: conclusions, tables and plots of this run; Prefect artifacts
    written = report(
        params.report.model_copy(
            update={
                "workspace": prepared["workspace"],
                "run_id": evaluated["run_id"],
                "dataset": params.report.dataset or prepared["dataset"],
            }
        )
    )
    return {"prepare": prepared, "baselines": evaluated, "report": written}


def main(argv: list[str] | None = None) -> int:
    from flows.cli import (
        add_model_arguments,
        model_params,
        prepare_params,
        prepare_parser,
        print_evaluation,
        print_prepare_summary,
        run_cli,
    )
    from flows.full import FullParams, ReportParams  # the importable module's copies, not __main__'s
    from flows.full import full as full_flow

    parser = prepare_parser(__doc__)
    add_model_arguments(parser)
    parser.add_argument_group("report").add_argument(
        "--output", help="report folder (default: <workspace>/reports/<run id>)"
    )
    args = parser.parse_args(argv)
    params = []

    def show(summary: dict) -> None:
        print_prepare_summary(summary["prepare"])
        print_evaluation(summary["baselines"])
        print(f"\nreport: {summary['report']['html']}\n        {summary['report']['markdown']}")

    return run_cli(
        check=lambda: (
            params.append(
                FullParams(
                    prepare=prepare_params(args), baselines=model_params(args), report=ReportParams(output=args.output)
                )
            )
            or params[0].prepare.dataset()
        ),
        body=lambda: show(full_flow(params[0])),
    )


if __name__ == "__main__":
    sys.exit(main())
