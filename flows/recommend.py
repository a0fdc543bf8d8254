"""Recommend from the workspace's champion model (the one ``python -m serve`` serves), from the shell.

    python -m flows.recommend --user A2EZWZ8MBEDOLN -k 10
    python -m flows.recommend --user A2EZWZ8MBEDOLN --user nobody -k 5 --json
    python -m flows.recommend --help

The CLI calls the flow's function directly (no Prefect run: answers in about a second); the ``recommend``
flow itself can be deployed like the others, e.g. for batch recommendations.
"""

from __future__ import annotations

import sys

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from tasks.store import DEFAULT_WORKSPACES


class RecommendParams(BaseModel):
    """Whose recommendations, how many, from which workspace's champion."""

    model_config = ConfigDict(extra="forbid")

    workspace: str = str(DEFAULT_WORKSPACES / "amazon-musical-instruments-5core")
    users: tuple[str, ...] = Field(min_length=1)
    k: int = Field(10, ge=1, le=1000)


@flow(name="recommend")
def recommend(params: RecommendParams) -> dict:
    """Each user's top-K unseen items from the champion, with scores and explanations."""
    from dataclasses import asdict

    from tasks.registry import load_champion

    champion = load_champion(params.workspace)
    return {
        "model_version": champion.version,
        "recommendations": [asdict(champion.recommend(user, params.k)) for user in params.users],
    }


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    from flows.cli import run_cli
    from flows.recommend import RecommendParams  # the importable copies
    from flows.recommend import recommend as recommend_flow

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--user", dest="users", action="append", required=True, help="user id (repeatable)")
    parser.add_argument("-k", type=int, default=10, help="items per user (default 10, at most 1000)")
    parser.add_argument(
        "--workspace",
        default=RecommendParams.model_fields["workspace"].default,
        help="workspace whose champion answers (default: the default dataset's)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    params = []

    def body() -> None:
        result = recommend_flow.fn(params[0])
        if args.json:
            print(json.dumps(result, indent=1))
            return
        print(f"model {result['model_version']}")
        for rec in result["recommendations"]:
            print(f"\n{rec['user_id']} ({rec['strategy']})")
            for n, (item, score) in enumerate(zip(rec["items"], rec["scores"], strict=True)):
                why = rec["explanations"][n] if rec["explanations"] else {}
                drivers = ", ".join(f"{name} {value:+.2f}" for name, value in why.get("drivers", {}).items())
                similar = (
                    "; like " + ", ".join(s["item_id"] for s in why["similar_to"]) if why.get("similar_to") else ""
                )
                print(f"  {n + 1:>3}. {item:<14} {score:8.3f}   {drivers}{similar}")

    return run_cli(
        check=lambda: params.append(RecommendParams(workspace=args.workspace, users=tuple(args.users), k=args.k)),
        body=body,
    )


if __name__ == "__main__":
    sys.exit(main())
