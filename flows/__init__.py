"""Prefect flows: wiring only. Each module is one flow, runnable as ``python -m flows.<name>``."""

import os

# Without a Prefect server, flows run against a temporary local one. Its anonymous usage analytics
# write to the same fresh SQLite file while it starts and fail with "database is locked"; keep them
# off unless the user chose otherwise.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
