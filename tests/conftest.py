"""Shared fixtures: an ingest helper, one Prefect test backend, the MiniLM tokenizer, and a fitted fusion of
every model on a tiny two-genre world (built from ``builders.py``)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import duckdb
import numpy as np
import pytest
from builders import NOW, fake_lm, genre_world

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Every process the suite starts inherits this mark; at the end, none may be left (see pytest_sessionfinish).
SESSION_MARK = "RECLAB_TEST_SESSION"
os.environ[SESSION_MARK] = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _left_over() -> list:
    """Processes other than this one that carry this session's mark (servers, workers, trainers the tests
    started, orphaned or not)."""
    import psutil

    mark, found = os.environ[SESSION_MARK], []
    for process in psutil.process_iter(["pid"]):
        if process.pid == os.getpid():
            continue
        try:
            if process.environ().get(SESSION_MARK) == mark and not _ends_with_us(process):
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def _ends_with_us(process) -> bool:
    """Python's own helper processes of this interpreter (multiprocessing's resource tracker, forkserver):
    they exit when it does."""
    return process.ppid() == os.getpid() and "from multiprocessing." in " ".join(process.cmdline())


def pytest_sessionfinish(session, exitstatus):
    """No process the suite started may outlive it: wait a little for those shutting down, then kill the rest
    and fail the session, naming them."""
    import psutil

    deadline = time.monotonic() + 15
    left = _left_over()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _left_over()
    if left:
        names = []
        for process in left:
            try:
                names.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
                process.kill()
            except psutil.Error:
                continue
        print("\nprocesses started by the tests were still running at the end (now killed):\n  " + "\n  ".join(names))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def ingest(tmp_path):
    """Ingest a DatasetSpec into a fresh database; returns (connection, accounting)."""
    from tasks import IngestConfig
    from tasks.ingest import build_canonical_tables, load_raw_tables

    opened = []

    def run(spec, policy: str = "latest", db: Path | None = None, text_duplicates: str = "keep"):
        con = duckdb.connect(str(db or tmp_path / "ws.duckdb"))
        opened.append(con)
        load_raw_tables(con, spec)
        config = IngestConfig(duplicate_policy=policy, text_duplicates=text_duplicates)
        return con, build_canonical_tables(con, spec, config, now=NOW)

    yield run
    for con in opened:
        con.close()


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect backend for every flow test of the session, with results (the fit cache's
    records) stored in this session's own folder: a fit cached by an earlier session whose files still exist
    is not found (tests that expect a fit would otherwise see it restored)."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    results = tmp_path_factory.mktemp("prefect-results")
    with prefect_test_harness(server_startup_timeout=120), temporary_settings({PREFECT_LOCAL_STORAGE_PATH: results}):
        yield


@pytest.fixture(scope="session")
def tokenizer():
    """The packaged all-MiniLM-L6-v2 tokenizer (offline)."""
    from transformers import AutoTokenizer

    from models.lm.network import resolve_encoder

    return AutoTokenizer.from_pretrained(resolve_encoder("minilm"))


@pytest.fixture(scope="session")
def fitted(tmp_path_factory):
    """(fusion of every component fitted on the genre world, its training fold, its noisy validation fold)."""
    from models.recommenders.baselines import BiasALS, BiasedMF, GlobalMean, Popularity
    from models.recommenders.fusion import Fusion, FusionConfig
    from models.recommenders.lightfm_hybrid import LightFMHybrid

    train, items = genre_world()
    rng = np.random.default_rng(0)
    validation = train.sample(frac=0.2, random_state=0)
    train = train.drop(validation.index)
    validation = validation.assign(rating=validation["rating"] + rng.normal(0, 0.3, len(validation)))
    components = {
        "global_mean": GlobalMean(),
        "popularity": Popularity(),
        "bias_als": BiasALS(),
        "biased_mf": BiasedMF(),
        "lightfm_hybrid": LightFMHybrid(content=True, max_epochs=10, search_trials=0),
    }
    for model in components.values():
        model.fit(train, validation, items=items)
    components["lm_two_tower"] = fake_lm(tmp_path_factory.mktemp("lm"), train, items)
    fusion = Fusion(components, FusionConfig(grid_points=20)).fit(train, validation, items=items)
    return fusion, train, validation
