"""The flows' parameter models: what each flow takes, validated, with a working default for every field.

One model per flow, made of the components' typed configs (``IngestConfig``, ``ValidationConfig``,
``SplitConfig``, ``TrainConfig``, ``EvalConfig``, ``PromotionConfig``, ``RunnerConfig``); the command line
(``flows/cli.py``), the deployments (``prefect.yaml``) and the Prefect UI's forms all build these.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from data_checks import DataCardConfig, ValidationConfig
from models.evaluation.harness import EvalConfig
from models.evaluation.split import SplitConfig
from models.registry import TrainConfig
from models.serving.promotion import PromotionConfig
from readers import DEFAULT_DATASET, ColumnMapping, DatasetSpec, resolve_dataset
from readers.spec import Format
from tasks.ingest import IngestConfig
from tasks.store import DEFAULT_WORKSPACE, Workspace


class RunnerConfig(BaseModel):
    """Which Prefect task runner runs a flow's independent work (splits and seeds, search trials).

    On a cluster, each worker must run this project's code and reach the workspace folder (a shared file
    system) and Prefect's result storage (``PREFECT_LOCAL_STORAGE_PATH`` on that shared system, or a remote
    result storage block)."""

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


class PrepareParams(BaseModel):
    """Everything the prepare flow needs; every field has a working default."""

    model_config = ConfigDict(extra="forbid")

    data: str = str(DEFAULT_DATASET)  # dataset file or folder
    format: Format | None = None  # detected from the path when None
    items: str | None = None  # item metadata file (Amazon meta_*.json.gz, ...), overrides detection
    users: str | None = None  # user attributes file (MovieLens 100K u.user), overrides detection
    tags: str | None = None  # MovieLens tags.csv, overrides detection
    mapping: str | None = None  # tabular only: "user_id=col,item_id=col,rating=col,timestamp=col,..."
    rating_scale: tuple[float, float] | None = None  # declared scale; the format's own by default
    delimiter: str = ","  # tabular CSV only
    name: str | None = None  # dataset name (names the default workspace); from the path by default
    workspace: str | None = None  # folder for reclab.duckdb and run outputs; workspace/<name> by default
    ingest: IngestConfig = IngestConfig()
    validation: ValidationConfig = ValidationConfig()
    data_card: DataCardConfig = DataCardConfig()
    split: SplitConfig = SplitConfig()
    seeds: tuple[int, ...] | None = None  # split seeds to make (each protocol once per seed); None: split.seed

    def dataset(self) -> DatasetSpec:
        return resolve_dataset(
            self.data,
            self.format,
            items=self.items,
            users=self.users,
            tags=self.tags,
            mapping=ColumnMapping.parse(self.mapping) if self.mapping else None,
            rating_scale=self.rating_scale,
            delimiter=self.delimiter,
            name=self.name,
        )

    def workspace_for(self, spec: DatasetSpec) -> Workspace:
        return Workspace.for_dataset(spec.name, self.workspace)


DEFAULT_SPLITS = ("random_s0", "temporal_s0", "cold_items_s0")


class TrainParams(BaseModel):
    """Which workspace and splits, which models and how, how to evaluate, what to publish."""

    model_config = ConfigDict(extra="forbid")

    workspace: str = str(DEFAULT_WORKSPACE)  # a prepared workspace
    splits: tuple[str, ...] = DEFAULT_SPLITS  # split ids made by prepare
    train: TrainConfig = TrainConfig()
    evaluation: EvalConfig = EvalConfig()
    refresh_cache: bool = False  # refit even when a cached fit of the same split, configs and code exists
    publish: bool = True  # publish the fused model to the workspace's registry (the first becomes champion)
    publish_split: str | None = None  # whose fit to publish; default: the first temporal split, else the first
    promotion: PromotionConfig = PromotionConfig()  # when a published model replaces the champion
    runner: RunnerConfig = RunnerConfig()  # where the splits' fits run: in turn (default), threads, or Dask


class ReportParams(BaseModel):
    """Which run to report and where to write it."""

    model_config = ConfigDict(extra="forbid")

    workspace: str = str(DEFAULT_WORKSPACE)
    run_id: str | None = None  # an evaluated run (default: the latest one)
    output: str | None = None  # folder for report.md/report.html (default: <workspace>/reports/<run_id>)
    dataset: str | None = None  # the title's dataset name (default: the workspace folder's name)


class FullParams(BaseModel):
    """Parameters of the whole experiment, one model per stage."""

    model_config = ConfigDict(extra="forbid")

    prepare: PrepareParams = PrepareParams()
    train: TrainParams = TrainParams()  # its workspace and splits come from the prepare stage
    report: ReportParams = ReportParams()  # its workspace and run come from the earlier stages


class StudyParams(BaseModel):
    """The cross-dataset study: the full experiment on each dataset, then one report across them."""

    model_config = ConfigDict(extra="forbid")

    data: tuple[str, ...] = ()  # dataset files or folders; empty: the embedded default dataset alone
    # the experiment each dataset gets (its dataset path, name and workspace are set per dataset)
    experiment: FullParams = FullParams()
    runner: RunnerConfig = RunnerConfig()  # where the datasets' experiments run: in turn, threads, or Dask
    workspaces: str | None = None  # each dataset's workspace is <this>/<dataset name>; workspace/ by default
    output: str | None = None  # folder for study.md/study.html (default: <workspaces>/studies/<study id>)

    def datasets(self) -> tuple[str, ...]:
        return self.data or (str(DEFAULT_DATASET),)


class SearchParams(BaseModel):
    """Which split, how many trials, how LightFM trains, where the trials run."""

    model_config = ConfigDict(extra="forbid")

    workspace: str = str(DEFAULT_WORKSPACE)
    split: str = "random_s0"
    trials: int = Field(8, ge=1)  # configurations tried, the default one included
    seed: int = 0  # which configurations are drawn
    train: TrainConfig = TrainConfig()  # loss, threads, max epochs, model seed
    runner: RunnerConfig = RunnerConfig()


class RecommendParams(BaseModel):
    """Whose recommendations, how many, from which workspace's champion."""

    model_config = ConfigDict(extra="forbid")

    workspace: str = str(DEFAULT_WORKSPACE)
    users: tuple[str, ...] = Field(min_length=1)
    k: int = Field(10, ge=1, le=1000)
