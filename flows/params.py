"""The flows' parameter models: what each flow takes, validated, with a working default for every field.

Each stage takes two things: its **settings**, how to run it (``PrepareSettings``, ``TrainSettings``,
``ReportSettings``: made of the components' typed configs, each concept once), and its **inputs**, what it runs
on (``TrainInputs``: a prepared workspace and its split ids; ``ReportInputs``: a workspace and an evaluated run).
Inside the full experiment the inputs are what the previous stage made (``flows/full.py`` builds them from its
result), so the experiment's parameters (``FullParams``, and each dataset's ``ExperimentSettings`` in a study)
are settings only; a stage run on its own is pointed at its inputs by the user. The command line
(``flows/cli.py``), the deployments (``prefect.yaml``) and the Prefect UI's forms all build these.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from data_checks import DataCardConfig, ValidationConfig
from models.evaluation import DEFAULT_SPLITS, EvalConfig, SplitConfig
from models.registry import TrainConfig
from models.serving import RETENTION_DAYS, PromotionConfig
from readers import DEFAULT_DATASET, ColumnMapping, DatasetSpec, ItemMapping, UserMapping, resolve_dataset
from readers.spec import Format
from tasks import IngestConfig
from tasks.store import Workspace


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


class DatasetParams(BaseModel):
    """Which dataset, read how, and which workspace it is prepared in."""

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

    def dataset(self) -> DatasetSpec:
        """The dataset these fields name, resolved (a catalogue name fetched and verified, a format detected)
        once per process for the same fields and unchanged input files: the command line's check, the full
        experiment and its prepare stage share one resolution."""
        fields = self.model_dump_json(include=set(DatasetParams.model_fields) - {"workspace"})
        return _resolved(fields, _stamp(self.data, self.items, self.users, self.tags))

    def resolve(self) -> DatasetSpec:
        """The dataset resolved afresh (:meth:`dataset` caches this)."""
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


@lru_cache(maxsize=32)
def _resolved(fields: str, stamp: tuple) -> DatasetSpec:
    return DatasetParams.model_validate_json(fields).resolve()


def _stamp(*paths: str | None) -> tuple:
    """What tells a changed input file from an unchanged one: each existing path's files' names, sizes and
    modification times (a folder's files one level down)."""
    out = []
    for given in paths:
        path = Path(given) if given else None
        if path is None or not path.exists():
            out.append(given)
            continue
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        out.append(tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()))
    return tuple(out)


class PrepareSettings(BaseModel):
    """How a dataset is prepared: its ingestion, validation, data card and splits."""

    model_config = ConfigDict(extra="forbid")

    ingest: IngestConfig = Field(IngestConfig(), description="how repeated pairs and duplicate texts are handled")
    validation: ValidationConfig = Field(ValidationConfig(), description="the quarantine and coverage gates")
    data_card: DataCardConfig = Field(DataCardConfig(), description="thresholds of the data card's warnings")
    split: SplitConfig = Field(SplitConfig(), description="which splits to make and how")
    seeds: tuple[int, ...] | None = Field(
        None,
        description="split seeds: every protocol is split once per seed (e.g. 0 1 2; the report adds mean ± sd) "
        "(default: the split's seed, 0)",
    )


class PrepareParams(PrepareSettings, DatasetParams):
    """Everything the prepare flow needs: the dataset and how it is prepared; every field has a working default."""


class TrainInputs(BaseModel):
    """What the train stage runs on: a prepared workspace and the split ids prepare made there (inside the full
    experiment: the prepare stage's, :meth:`of`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workspace: str | None = Field(None, description="a prepared workspace folder (default: the default dataset's)")
    splits: tuple[str, ...] = Field(DEFAULT_SPLITS, description="split ids made by prepare")

    @classmethod
    def of(cls, prepared) -> TrainInputs:
        """What the prepare stage made: its workspace and every split (``flows.results.Prepared``)."""
        return cls(workspace=prepared.workspace, splits=tuple(prepared.splits))


class TrainSettings(BaseModel):
    """Which models and how, how to evaluate, what to publish, where the fits run."""

    model_config = ConfigDict(extra="forbid")

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


class TrainParams(TrainSettings, TrainInputs):
    """``python -m flows.train``'s parameters, one flat model (its flags and ``--config`` file): the inputs
    (which workspace and splits), then the settings; the flow takes them apart (:meth:`inputs`,
    :meth:`settings`)."""

    model_config = ConfigDict(extra="forbid", frozen=False)

    def inputs(self) -> TrainInputs:
        return _part(self, TrainInputs)

    def settings(self) -> TrainSettings:
        return _part(self, TrainSettings)


class ReportInputs(BaseModel):
    """What the report stage reports: a workspace and one of its evaluated runs (inside the full experiment: the
    train stage's, titled with the prepared dataset's name, :meth:`of`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workspace: str | None = Field(None, description="a prepared workspace folder (default: the default dataset's)")
    run_id: str | None = Field(None, description="an evaluated run (default: the latest one)")
    dataset: str | None = Field(None, description="the dataset's name (default: the workspace folder's name)")

    @classmethod
    def of(cls, prepared, trained) -> ReportInputs:
        """The run the earlier stages made (``flows.results.Prepared``, ``Trained``)."""
        return cls(workspace=prepared.workspace, run_id=trained.run_id, dataset=prepared.dataset)


class ReportSettings(BaseModel):
    """Where the report goes and how it is titled."""

    model_config = ConfigDict(extra="forbid")

    output: str | None = Field(
        None, description="folder for report.md/report.html (default: `<workspace>/reports/<run_id>`)"
    )
    dataset: str | None = Field(None, description="the title's dataset name (default: the workspace folder's name)")


class ReportParams(ReportSettings):
    """``python -m flows.report``'s parameters, one flat model: which workspace and run, then where the report
    goes; the flow takes them apart (:meth:`inputs`, :meth:`settings`)."""

    workspace: str | None = Field(None, description="a prepared workspace folder (default: the default dataset's)")
    run_id: str | None = Field(None, description="an evaluated run (default: the latest one)")

    def inputs(self) -> ReportInputs:
        return _part(self, ReportInputs)

    def settings(self) -> ReportSettings:
        return _part(self, ReportSettings)


def _part(params: BaseModel, model: type[BaseModel]):
    """The fields of ``model`` that the flat command-line ``params`` hold, as a ``model``."""
    return model.model_validate(params.model_dump(include=set(model.model_fields) & set(type(params).model_fields)))


class ExperimentSettings(BaseModel):
    """How each stage of the experiment runs, one model per stage (settings only: each stage's inputs are the
    previous stage's result). A study gives every dataset these."""

    model_config = ConfigDict(extra="forbid")

    prepare: PrepareSettings = Field(
        PrepareSettings(), description="each dataset's ingestion, validation, data card and splits"
    )
    train: TrainSettings = Field(TrainSettings(), description="models, evaluation, publishing")
    report: ReportSettings = Field(ReportSettings(), description="where the report goes")


class FullParams(ExperimentSettings):
    """Parameters of the whole experiment: the dataset, then how each stage runs."""

    prepare: PrepareParams = Field(PrepareParams(), description="the dataset, its ingestion, validation and splits")


class StudyParams(BaseModel):
    """The cross-dataset study: the full experiment on each dataset, then one report across them."""

    model_config = ConfigDict(extra="forbid")

    data: tuple[str, ...] = Field(
        (),
        description="dataset files, folders or catalogue names (python -m flows.prepare --list-datasets) (default: "
        "the embedded default dataset alone)",
    )
    experiment: ExperimentSettings = Field(
        ExperimentSettings(),
        description="how each dataset's experiment runs (its dataset and workspace: data and workspaces)",
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

    def datasets(self) -> tuple[str, ...]:
        return self.data or (str(DEFAULT_DATASET),)

    def prepare_for(self, path: str) -> PrepareParams:
        """The prepare parameters of one dataset of the study: its path and the study's settings."""
        return PrepareParams(data=path, **self.experiment.prepare.model_dump())


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
