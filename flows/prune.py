"""Prune: the serving log keeps requests for its retention period only (deployment ``prune``, daily).

    python -m flows.prune                                    # the default workspace, 90 days
    python -m flows.prune --workspace workspace/movielens-latest-small --retention-days 30
    python -m flows.prune --help

The service (``python -m serve --retention-days N``) prunes at start-up too.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the command line, before the imports below: --help answers at once
    from flows.cli import main

    sys.exit(main("prune", __doc__))

from prefect import flow

from flows.params import PruneParams
from tasks.retention import prune_serving_log
from tasks.store import DEFAULT_WORKSPACE, Workspace


@flow(name="reclab-prune")
def prune(params: PruneParams = PruneParams()) -> dict:
    """Remove the serving log's requests older than the retention period; return how many."""
    workspace = Workspace.existing(params.workspace or DEFAULT_WORKSPACE)
    removed = prune_serving_log(workspace, params.retention_days)
    return {"workspace": workspace.root.name, "removed": removed, "retention_days": params.retention_days}
