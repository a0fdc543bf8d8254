"""The flows' parameter models: what each flow takes, validated, with a working default for every field.

One model per flow, made of the components' typed configs (``IngestConfig``, ``ValidationConfig``,
``SplitConfig``, ``TrainConfig``, ``EvalConfig``, ``PromotionConfig``, ``RunnerConfig``); the command line
(``flows/cli.py``), the deployments (``prefect.yaml``) and the Prefect UI's forms all build these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from data_checks import DataCardConfig, ValidationConfig
from models.evaluation import DEFAULT_SPLITS, EvalConfig, SplitConfig
from models.registry import TrainConfig
from models.serving import RETENTION_DAYS, PromotionConfig
from readers import DEFAULT_DATASET, ColumnMapping, DatasetSpec, ItemMapping, UserMapping, resolve_dataset
from readers.spec import Format
from tasks import IngestConfig
from tasks.store import Workspace

if TYPE_CHECKING:
    from flows.results import Prepared, Trained


class RunnerConfig(BaseModel):
    """Which Prefect task runner runs a flow's independent work (splits and seeds, search trials).

    On a cluster, each worker must run this project's code and reach the workspace folder (a shared file
    system) and Prefect's result storage (``PREFECT_LOCAL_STORAGE_PATH`` on that shared system, or a remote
    result storage block)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["sequential", "threads", "dask"] = Field(
        "sequential",
        description="Prefect task runner: sequential, threads, or dask (prefect-dask: a local cluster of workers "
        "processes, or the cluster at address)",
    )
    workers: int = Field(2, ge=1, description="threads, or local Dask worker processes (one thread each)")
    address: str | None = Field(
        None, description="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a local one)"
    )

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

    data: str | None = Field(
        None,
        description="dataset file or folder, or a catalogue name (python -m flows.prepare --list-datasets: fetched "
        "once into the cache and verified) (default: the embedded Amazon Musical Instruments 5-core)",
    )
    format: Format | None = Field(None, description="input format (default: detected from the path)")
    items: str | None = Field(
        None,
        description="item metadata file: an Amazon meta_*.json.gz, or for tabular input a CSV/Parquet table of items "
        "(id, title, description, brand, categories, genres, price; see --items-map) (default: detected)",
    )
    users: str | None = Field(
        None,
        description="user attributes file: MovieLens 100K u.user, or for tabular input a CSV/Parquet table of users "
        "(id, age, gender, occupation, zip_code; see --users-map) (default: detected)",
    )
    tags: str | None = Field(None, description="MovieLens tags.csv (default: detected)")
    mapping: str | None = Field(
        None,
        description="tabular input: canonical field to input column, e.g. "
        "'user_id=reviewer,item_id=product,rating=stars,timestamp=time,review_text=body' (default: the canonical "
        "names)",
    )
    items_mapping: str | None = Field(
        None,
        description="tabular items table: canonical field to column, e.g. 'item_id=sku,title=name,description=body,"
        "categories=cat' (default: each field reads the column of its own name when there is one)",
    )
    users_mapping: str | None = Field(
        None,
        description="tabular users table: canonical field to column, e.g. 'user_id=customer,age=years' (default: "
        "each field reads the column of its own name when there is one)",
    )
    rating_scale: tuple[float, float] | None = Field(
        None, description="declared rating scale (default: the format's, e.g. 1 5 or 0.5 5)"
    )
    delimiter: str = Field(",", description="tabular CSV field delimiter")
    na_values: tuple[str, ...] = Field(
        (),
        description="tabular input: cells read as absent in every table, e.g. NA '(no genres listed)' (a rating "
        "cell so marked is a missing rating: the row is quarantined) (default: none)",
    )
    name: str | None = Field(None, description="dataset name; names the default workspace (default: from the path)")
    workspace: str | None = Field(
        None,
        description="folder holding reclab.duckdb and run outputs (default: workspace/ and the dataset's name, in the project folder)",
    )
    ingest: IngestConfig = Field(IngestConfig(), description="how repeated pairs and duplicate texts are handled")
    validation: ValidationConfig = Field(ValidationConfig(), description="the quarantine and coverage gates")
    data_card: DataCardConfig = Field(DataCardConfig(), description="thresholds of the data card's warnings")
    split: SplitConfig = Field(SplitConfig(), description="which splits to make and how")
    seeds: tuple[int, ...] | None = Field(
        None,
        description="split seeds: every protocol is split once per seed (e.g. 0 1 2; the report adds mean ± sd) "
        "(default: the split's seed, 0)",
    )

    def dataset(self) -> DatasetSpec:
        return resolve_dataset(
            self.data or str(DEFAULT_DATASET),
            self.format,
            items=self.items,
            users=self.users,
            tags=self.tags,
            mapping=ColumnMapping.parse(self.mapping) if self.mapping else None,
            rating_scale=self.rating_scale,
            delimiter=self.delimiter,
            name=self.name,
            items_mapping=ItemMapping.parse(self.items_mapping) if self.items_mapping else None,
            users_mapping=UserMapping.parse(self.users_mapping) if self.users_mapping else None,
            na_values=self.na_values,
        )

    def workspace_for(self, spec: DatasetSpec) -> Workspace:
        return Workspace.for_dataset(spec.name, self.workspace)


class TrainParams(BaseModel):
    """Which workspace and splits, which models and how, how to evaluate, what to publish."""

    model_config = ConfigDict(extra="forbid")

    workspace: str | None = Field(None, description="a prepared workspace folder (default: the default dataset's)")
    splits: tuple[str, ...] = Field(DEFAULT_SPLITS, description="split ids made by prepare")
    train: TrainConfig = Field(TrainConfig(), description="which models to train and how")
    evaluation: EvalConfig = Field(EvalConfig(), description="how models are evaluated and compared")
    refresh_cache: bool = Field(
        False,
        description="refit every model even where the workspace's fit store holds a fit of the same split, "
        "settings and code (and keep the fresh fits there)",
    )
    publish: bool = Field(
        True, description="publish the fused model to the workspace's registry (the first becomes champion)"
    )
    publish_split: str | None = Field(
        None, description="whose fit to publish; default: the first temporal split, else the first"
    )
    promotion: PromotionConfig = Field(PromotionConfig(), description="when a published model replaces the champion")
    runner: RunnerConfig = Field(
        RunnerConfig(), description="where the splits' fits run: in turn (default), threads, or Dask"
    )


class ReportParams(BaseModel):
    """Which run to report and where to write it."""

    model_config = ConfigDict(extra="forbid")

    workspace: str | None = Field(None, description="a prepared workspace folder (default: the default dataset's)")
    run_id: str | None = Field(None, description="an evaluated run (default: the latest one)")
    output: str | None = Field(
        None, description="folder for report.md/report.html (default: `<workspace>/reports/<run_id>`)"
    )
    dataset: str | None = Field(None, description="the title's dataset name (default: the workspace folder's name)")


class StageTrainParams(TrainParams):
    """The train stage inside the full experiment: its workspace and splits are the prepare stage's, so they
    are not offered as parameters."""

    workspace: SkipJsonSchema[str | None] = None
    splits: SkipJsonSchema[tuple[str, ...]] = DEFAULT_SPLITS

    def on(self, prepared: Prepared) -> StageTrainParams:
        """These parameters on what the prepare stage made: its workspace and every split."""
        return self.model_copy(update={"workspace": prepared.workspace, "splits": tuple(prepared.splits)})


class StageReportParams(ReportParams):
    """The report stage inside the full experiment: it reports the run the earlier stages made."""

    workspace: SkipJsonSchema[str | None] = None
    run_id: SkipJsonSchema[str | None] = None

    def of(self, prepared: Prepared, trained: Trained) -> StageReportParams:
        """These parameters for the run the earlier stages made (titled with the dataset's name unless given)."""
        run = {"workspace": prepared.workspace, "run_id": trained.run_id, "dataset": self.dataset or prepared.dataset}
        return self.model_copy(update=run)


class FullParams(BaseModel):
    """Parameters of the whole experiment, one model per stage."""

    model_config = ConfigDict(extra="forbid")

    prepare: PrepareParams = Field(PrepareParams(), description="the dataset, its ingestion, validation and splits")
    train: StageTrainParams = Field(
        StageTrainParams(), description="models, evaluation, publishing (workspace and splits: the prepare stage's)"
    )
    report: StageReportParams = Field(
        StageReportParams(), description="where the report goes (its workspace and run: the earlier stages')"
    )

    @field_validator("train", "report", mode="before")
    @classmethod
    def _as_stage(cls, value):
        """A train or report flow's parameters are accepted for its stage (their fields as values)."""
        return value.model_dump() if isinstance(value, TrainParams | ReportParams) else value


class StudyPrepareParams(PrepareParams):
    """The prepare stage of each dataset in a study: its path comes from the study's ``data``, its name from
    the path and its workspace from ``workspaces``, so those are not offered as parameters."""

    data: SkipJsonSchema[str | None] = None
    name: SkipJsonSchema[str | None] = None
    workspace: SkipJsonSchema[str | None] = None


class StudyExperimentParams(FullParams):
    """The experiment each dataset of a study gets."""

    prepare: StudyPrepareParams = Field(
        StudyPrepareParams(),
        description="each dataset's ingestion, validation and splits (its path, name and workspace: the study's)",
    )


class StudyParams(BaseModel):
    """The cross-dataset study: the full experiment on each dataset, then one report across them."""

    model_config = ConfigDict(extra="forbid")

    data: tuple[str, ...] = Field(
        (),
        description="dataset files, folders or catalogue names (python -m flows.prepare --list-datasets) (default: "
        "the embedded default dataset alone)",
    )
    experiment: StudyExperimentParams = Field(
        StudyExperimentParams(),
        description="the experiment each dataset gets (its dataset path, name and workspace are set per dataset)",
    )
    runner: RunnerConfig = Field(
        RunnerConfig(), description="where the datasets' experiments run: in turn, threads, or Dask"
    )
    workspaces: str | None = Field(
        None, description="each dataset's workspace is `<this folder>/<dataset name>` (default: `workspace/`)"
    )
    output: str | None = Field(
        None, description="folder for study.md/study.html (default: `<workspaces>/studies/<study id>`)"
    )
    report_only: bool = Field(
        False,
        description="train nothing: write the report from each dataset's latest evaluated run in its workspace",
    )

    @field_validator("experiment", mode="before")
    @classmethod
    def _as_experiment(cls, value):
        """A full experiment's parameters are accepted (the study sets their dataset path, name and workspace)."""
        if isinstance(value, FullParams) and not isinstance(value, StudyExperimentParams):
            return value.model_dump(exclude={"prepare": {"data", "name", "workspace"}})
        return value

    def datasets(self) -> tuple[str, ...]:
        return self.data or (str(DEFAULT_DATASET),)


class SearchParams(BaseModel):
    """Which split, how many trials, how LightFM trains, where the trials run."""

    model_config = ConfigDict(extra="forbid")

    workspace: str | None = Field(None, description="a prepared workspace folder (default: the default dataset's)")
    split: str = Field("kfold_s0_f1", description="the split whose validation fold judges the trials")
    trials: int = Field(8, ge=1, description="configurations tried, the default one included")
    seed: int = Field(0, description="which configurations are drawn")
    train: TrainConfig = Field(TrainConfig(), description="loss, threads, max epochs, model seed")
    runner: RunnerConfig = Field(RunnerConfig(), description="where the trials run")


class RecommendParams(BaseModel):
    """Whose recommendations, how many, from which workspace's champion."""

    model_config = ConfigDict(extra="forbid")

    workspace: str | None = Field(None, description="a prepared workspace folder (default: the default dataset's)")
    users: tuple[str, ...] = Field(min_length=1, description="the users to recommend for")
    k: int = Field(10, ge=1, le=1000, description="how many items per user")


class PruneParams(BaseModel):
    """Whose serving log, and how long it keeps a request."""

    model_config = ConfigDict(extra="forbid")

    workspace: str | None = Field(None, description="a workspace folder (default: the default dataset's)")
    retention_days: int = Field(
        RETENTION_DAYS, ge=1, description="days the serving log keeps a request; older requests are removed"
    )


class ForgetParams(BaseModel):
    """Whose data to erase, from which workspace."""

    model_config = ConfigDict(extra="forbid")

    workspace: str | None = Field(None, description="a prepared workspace folder (default: the default dataset's)")
    user_id: str = Field(
        min_length=1,
        description="the user's id as in the dataset, whose every row is erased (no default: required; Prefect keeps "
        "a flow run's parameters, so `python -m serve.registry forget` keeps the id out of Prefect's database)",
    )
