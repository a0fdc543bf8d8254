"""The full experiment, one command: ``python -m flows.full`` (embedded default dataset, no server needed).

Stages: prepare (ingest -> validate -> split). The modelling, fusion, evaluation and report stages join
this flow as they are built (see the README's roadmap); today it runs the prepare stage end to end.

    python -m flows.full
    python -m flows.full --data ../shared/data/movielens-latest-small --seed 1
    python -m flows.full --help
"""

from __future__ import annotations

import sys

from prefect import flow
from pydantic import BaseModel, ConfigDict

from flows.prepare import PrepareParams, prepare


class FullParams(BaseModel):
    """Parameters of the whole experiment, one model per stage."""

    model_config = ConfigDict(extra="forbid")

    prepare: PrepareParams = PrepareParams()


@flow(name="full")
def full(params: FullParams = FullParams()) -> dict:
    """Run the experiment end to end and return each stage's summary."""
    # prepare: ingest, validate, split
    prepared = prepare(params.prepare)
    return {"prepare": prepared}


def main(argv: list[str] | None = None) -> int:
    from flows.cli import prepare_params, prepare_parser, print_prepare_summary, run_cli
    from flows.full import FullParams  # the importable module's copies, not __main__'s
    from flows.full import full as full_flow

    args = prepare_parser(__doc__).parse_args(argv)
    params = []
    return run_cli(
        check=lambda: params.append(FullParams(prepare=prepare_params(args))) or params[0].prepare.dataset(),
        body=lambda: print_prepare_summary(full_flow(params[0])["prepare"]),
    )


if __name__ == "__main__":
    sys.exit(main())
