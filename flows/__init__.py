"""Prefect flows: wiring only. Each module is one flow, runnable as ``python -m flows.<name>``."""

import os

# Without a Prefect server, flows run against a temporary local one. Its anonymous usage analytics
# write to the same fresh SQLite file while it starts and fail with "database is locked"; keep them
# off unless the user chose otherwise.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The temporary server gets 20 s to start by default; on a busy 2-core machine (two runs starting at once,
# or another job beside them) it can take longer, and the run then fails before it begins.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
