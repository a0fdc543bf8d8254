"""Recommend from the workspace's champion model (the one ``python -m serve`` serves), from the shell.

    python -m flows.recommend --user A2EZWZ8MBEDOLN --k 10
    python -m flows.recommend --user A2EZWZ8MBEDOLN --user nobody --k 5 --json
    python -m flows.recommend --help

The command line calls the flow's function directly (no Prefect run: answers in about a second); the
``recommend`` flow itself can be deployed like the others, e.g. for batch recommendations.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the command line, before the imports below: --help answers at once
    from flows.cli import main

    sys.exit(main("recommend", __doc__))

from dataclasses import asdict
from pathlib import Path

from prefect import flow

from flows.params import RecommendParams
from models.serving.published import load_champion
from tasks.store import DEFAULT_WORKSPACE, Workspace


@flow(name="reclab-recommend")
def recommend(params: RecommendParams) -> dict:
    """Each user's top-K unseen items from the champion, with scores and explanations."""
    workspace = Workspace(Path(params.workspace or DEFAULT_WORKSPACE))
    champion = load_champion(workspace.root, workspace.user_key(create=False))
    recommendations = [asdict(champion.recommend(user, params.k)) for user in params.users]
    return {"model_version": champion.version, "recommendations": recommendations}
