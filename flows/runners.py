"""Where a flow's independent tasks run: one after another, on threads, or on a Dask cluster (prefect-dask).

    --runner sequential                      # default: one fit at a time, in this process
    --runner dask --workers 3                # a local Dask cluster of 3 worker processes
    --runner dask --dask-address tcp://scheduler:8786   # an existing cluster (dask-scheduler, dask-jobqueue, ...)

On a cluster, each worker must run this project's code and reach the workspace folder (a shared file
system) and Prefect's result storage (``PREFECT_LOCAL_STORAGE_PATH`` on that shared system, or a remote
result storage block).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RunnerConfig(BaseModel):
    """Which Prefect task runner runs a flow's independent work (splits and seeds, search trials)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["sequential", "threads", "dask"] = "sequential"
    workers: int = Field(2, ge=1)  # threads, or local Dask worker processes (one thread each)
    address: str | None = None  # an existing Dask scheduler; a local cluster is started when None

    def build(self):
        """A fresh (not yet started) Prefect task runner; use it as a context manager inside a flow."""
        from prefect.task_runners import ThreadPoolTaskRunner

        if self.kind == "sequential":
            return ThreadPoolTaskRunner(max_workers=1)
        if self.kind == "threads":
            return ThreadPoolTaskRunner(max_workers=self.workers)
        from prefect_dask import DaskTaskRunner

        if self.address:
            return DaskTaskRunner(address=self.address)
        # processes: LightFM and torch hold the GIL in places; one thread per worker keeps fits independent
        return DaskTaskRunner(cluster_kwargs={"n_workers": self.workers, "threads_per_worker": 1, "processes": True})
