"""The full experiment, one command: ``python -m flows.full`` (embedded default dataset, no server needed).

Stages: prepare (ingest -> validate -> split), then baselines (global mean, bias ALS, popularity, biased MF,
LightFM collaborative and hybrid, evaluated with CIs and paired tests on every split). The transformer,
fusion and report stages join this flow as they are built (see the README's roadmap).

    python -m flows.full
    python -m flows.full --data ../shared/data/movielens-latest-small --seed 1
    python -m flows.full --help
"""

from __future__ import annotations

import sys

from prefect import flow
from pydantic import BaseModel, ConfigDict

from flows.baselines import BaselinesParams, baselines
from flows.prepare import PrepareParams, prepare


class FullParams(BaseModel):
    """Parameters of the whole experiment, one model per stage."""

    model_config = ConfigDict(extra="forbid")

    prepare: PrepareParams = PrepareParams()
    baselines: BaselinesParams = BaselinesParams()  # its workspace and splits come from the prepare stage


@flow(name="full")
def full(params: FullParams = FullParams()) -> dict:
    """Run the experiment end to end and return each stage's summary."""
    # prepare: ingest, validate, split
    prepared = prepare(params.prepare)
    # baselines: traditional models and LightFM, trained and evaluated on every split prepare made
    stage = params.baselines.model_copy(
        update={"workspace": prepared["workspace"], "splits": tuple(prepared["splits"])}
    )
    evaluated = baselines(stage)
    return {"prepare": prepared, "baselines": evaluated}


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
    from flows.full import FullParams  # the importable module's copies, not __main__'s
    from flows.full import full as full_flow

    parser = prepare_parser(__doc__)
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    params = []

    def report(summary: dict) -> None:
        print_prepare_summary(summary["prepare"])
        print_evaluation(summary["baselines"])

    return run_cli(
        check=lambda: (
            params.append(FullParams(prepare=prepare_params(args), baselines=model_params(args)))
            or params[0].prepare.dataset()
        ),
        body=lambda: report(full_flow(params[0])),
    )


if __name__ == "__main__":
    sys.exit(main())
