"""Forget: a user's data erased on request (deployment ``forget``, run from the UI with the user's id).

    python -m flows.forget --user-id A2EFCYXHNK06IS
    python -m flows.forget --workspace workspace/movielens-latest-small --user-id 42
    python -m flows.forget --help

Deletes the user's rows from every table of the workspace (raw included), the serving log, the fit store and
working folders, and marks the published bundles trained on them; the next run trains without them
(``tasks/erasure.py``). ``python -m serve.registry forget USER_ID`` does the same without Prefect (which keeps
a flow run's parameters, the id among them).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the command line, before the imports below: --help answers at once
    from flows.cli import main

    sys.exit(main("forget", __doc__))

from prefect import flow

from flows.params import ForgetParams
from tasks.erasure import erase
from tasks.store import DEFAULT_WORKSPACE, Workspace


@flow(name="reclab-forget")
def forget(params: ForgetParams) -> dict:
    """Erase one user's data from the workspace; what was removed (counts, never the id)."""
    workspace = Workspace.existing(params.workspace or DEFAULT_WORKSPACE)
    return erase(workspace, params.user_id)
