"""Progress lines for long work: rate and ETA by hand, silence for short work, LightFM's epochs and the run
log's forwarding per task thread."""

from __future__ import annotations

import functools
import logging
import threading

import numpy as np
from builders import genre_world

from models.progress import Progress, duration


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_carry_rate_and_eta_and_short_work_stays_silent(caplog):
    clock = Clock()
    log = logging.getLogger("test.progress")
    with caplog.at_level(logging.INFO, logger="test.progress"):
        quick = Progress("quick", 10, "steps", every=10, logger=log, clock=clock)
        clock.now += 3
        quick.advance(10)
        quick.finish()
        assert caplog.messages == []  # 3 s of work: no line at all
        work = Progress("lightfm_hybrid", 120, "epochs", every=10, logger=log, clock=clock)
        clock.now += 12
        work.advance(30)  # 30 of 120 epochs in 12 s: 2.5 epochs/s, 90 left: 36 s
        clock.now += 4
        work.advance(5)  # within 10 s of the last line: nothing
        clock.now += 10
        work.advance(35, total=100, note="(the final fit)")  # 70 of 100 in 26 s: 2.69/s, 30 left: 11 s
        work.finish()
    assert caplog.messages == [
        "lightfm_hybrid: 30/120 epochs (25%), 2.5 epochs/s, ETA 36 s",
        "lightfm_hybrid: 70/100 epochs (70%) (the final fit), 2.69 epochs/s, ETA 11 s",
        "lightfm_hybrid: 70 epochs in 26 s",
    ]


def test_unknown_totals_and_durations():
    clock = Clock()
    lines = []
    logger = logging.getLogger("test.progress.unknown")
    logger.info = lines.append  # type: ignore[method-assign]
    reading = Progress("reading r.json", 0, "records", every=1, logger=logger, clock=clock)
    clock.now += 2
    reading.advance(50_000)
    assert lines == ["reading r.json: 50000/0 records, 2.5e+04 records/s"]
    assert [duration(s) for s in (0.4, 59.6, 185, 3725)] == ["0 s", "1 min 00 s", "3 min 05 s", "1 h 02 min"]


def test_lightfm_trains_in_chunks_exactly_as_in_one_call_and_logs_its_epochs(monkeypatch, caplog):
    import scipy.sparse as sp
    from lightfm import LightFM

    import models.recommenders.lightfm_hybrid as module
    from models.recommenders.lightfm_hybrid import LightFMHybrid

    monkeypatch.setattr(module, "Progress", functools.partial(Progress, every=0.0))  # a line per chunk
    train, items = genre_world()
    with caplog.at_level(logging.INFO, logger="reclab.progress"):
        model = LightFMHybrid(no_components=8, max_epochs=7, eval_every=5, search_trials=0).fit(train, items=items)
    # 7 epochs in chunks of 5 and 2 train exactly as LightFM's one call of 7 epochs
    u, i = model.user_index(train["user_id"]), model.item_index(train["item_id"])
    interactions = sp.coo_matrix(
        (np.ones(len(u), dtype=np.float32), (u, i)), shape=(len(model.user_ids), len(model.item_ids))
    )
    raw = LightFM(loss="warp", no_components=8, learning_rate=0.05, item_alpha=1e-6, user_alpha=1e-6, random_state=0)
    raw.fit_partial(interactions, user_features=model.user_features, item_features=model.item_features, epochs=7)
    np.testing.assert_array_equal(raw.item_embeddings, model.model_.item_embeddings)
    np.testing.assert_array_equal(raw.user_embeddings, model.model_.user_embeddings)
    lines = [m for m in caplog.messages if m.startswith("lightfm_hybrid: ")]
    assert [line.split(",")[0] for line in lines] == [
        "lightfm_hybrid: 5/7 epochs (71%)",
        "lightfm_hybrid: 7/7 epochs (100%)",
        "lightfm_hybrid: 7 epochs in 0 s",
    ]
    assert "ETA" in lines[0]
    assert not hasattr(model, "_progress")  # nothing of the progress stays on the fitted model


def test_each_task_thread_forwards_only_its_own_records(monkeypatch):
    import prefect

    from tasks.logs import forward_to_run_logger

    received: dict[str, list[str]] = {"a": [], "b": []}

    class RunLogger:
        def __init__(self, name):
            self.name = name

        def log(self, level, message):
            received[self.name].append(message)

    loggers = {}
    monkeypatch.setattr(prefect, "get_run_logger", lambda: loggers[threading.current_thread().name])
    source = logging.getLogger("reclab")
    before = (source.level, source.propagate)
    inside = threading.Barrier(2)
    b_done = threading.Event()

    def run(name):
        loggers[name] = RunLogger(name)
        with forward_to_run_logger():
            inside.wait()
            logging.getLogger("reclab.progress").info(f"from {name}")
            if name == "a":
                b_done.wait(timeout=10)  # b leaves first: a's records still reach a's log
                logging.getLogger("reclab.progress").info("a again")
            else:
                b_done.set()

    threads = [threading.Thread(target=run, args=(name,), name=name) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert received == {"a": ["from a", "a again"], "b": ["from b"]}
    assert (source.level, source.propagate) == before  # restored after the last run


def test_a_line_only_once_the_interval_passed(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="reclab.progress"):
        work = Progress("x", 10, "steps", every=10, clock=clock)
        clock.now += 9.99
        work.advance(1)
        assert caplog.messages == []
        clock.now += 0.01
        work.advance(1)
    assert caplog.messages == ["x: 2/10 steps (20%), 0.2 steps/s, ETA 40 s"]
